// brokerclient — the gateway's side of JGP/1 (docs/protocol.md §3.1, §3.3):
// a DEALER to the broker's frontend and a SUB to its publisher.
//
// It owns everything in flight to the broker:
// * calls: each request gets a correlation id (corr) and stays pending,
//   its encoded body kept, until the broker answers or its owner gives up
//   (brokerclient_cancel). The requests of one loop turn leave as one batch
//   (§2.1) when the turn ends (brokerclient_flush). Every request is
//   idempotent at the broker (a SUBMIT carries its job id), so one not
//   answered within BROKERCLIENT_RESEND_MS — lost with a broker restart, or
//   never sent while the broker was away — is sent again, through proto.c
//   like the first time, until its owner gives up. While no broker is
//   connected nothing is sent (the socket queues only to a live connection:
//   a submission must not arrive long after its client was told 503);
// * liveness: a PING every BROKERCLIENT_PING_MS; the broker is reachable
//   while its last PONG is at most BROKERCLIENT_PONG_AGE_MS old, and the PONG
//   carries its counts (workers, queued and running jobs);
// * the event stream: each EVENT body is handed over read in place (no
//   copy), and a gap in its seq or a new epoch is reported instead: PUB
//   drops under load and for slow joiners, so the events in between are
//   lost and whoever waits on a job must read the store (the truth).
//
// It knows nothing of HTTP: a call's owner is any pointer, answered through
// the function given with the call.
#ifndef JOBGATE_BROKERCLIENT_H
#define JOBGATE_BROKERCLIENT_H

#include "curve.h"
#include "evloop.h"
#include "job.h"
#include "proto.h"
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

// A PING this often (§5)...
#define BROKERCLIENT_PING_MS 1000
// ...and the broker counts as reachable while its last PONG is this young.
#define BROKERCLIENT_PONG_AGE_MS 3000
// An unanswered request is sent again after this long (§3.1: 1 s).
#define BROKERCLIENT_RESEND_MS 1000

typedef struct _brokerclient_t brokerclient_t;

// One job event (§3.3), read in place: valid during the callback only.
typedef struct {
    char id[JOB_ID_LEN + 1];    // the job
    bool is_status;             // type "status": a state transition
    bool is_chunk;              // type "chunk": partial upstream data
    int status;                 // the job's status (job_status_t) the event names, -1 = none
    int64_t attempts;           // status: the record's attempts (the budget)
    int64_t attempt;            // chunk, status: its attempt's identity (§3.2.1), -1 = not sent
    int64_t index;              // chunk: its index in the attempt, -1 = none
    const char *data;           // chunk: its data (not NUL-terminated), or NULL
    size_t data_len;            // bytes in data
    const void *record;         // status, the end of a job submitted "waiting": its
                                // committed record (a packed JOB body), or NULL
    size_t record_len;          // bytes in record
} brokerclient_event_t;

// Answers a call: msg is the broker's answer (its body one map of a batch).
// The call is over when this runs (the owner's handle is 0 already).
typedef void (brokerclient_answer_fn) (proto_msg_t *msg, void *owner);

// Called for each event, with the arg given to brokerclient_new.
typedef void (brokerclient_event_fn) (const brokerclient_event_t *event, void *arg);

// Called instead of the event that shows a gap (events were lost).
typedef void (brokerclient_gap_fn) (void *arg);

// What the client knows of the broker, for /readyz and /metrics.
typedef struct {
    bool reachable;             // a PONG came in the last BROKERCLIENT_PONG_AGE_MS
    int64_t workers;            // workers the last PONG reported
    int64_t queued;             // jobs waiting, as it reported
    int64_t running;            // jobs running, as it reported
    uint64_t events;            // events received
    uint64_t gaps;              // gaps seen in their sequence
    size_t pending;             // calls not answered yet
} brokerclient_stats_t;

// brokerclient_new connects to the broker's frontend and publisher (frames
// over max_frame_bytes disconnect the broker: proto_set_limits), both with
// CURVE when curve (borrowed, may be NULL; it must outlive the client) is
// enabled, and serves both on loop; events go to on_event, gaps to on_gap
// (both get arg). On error returns NULL and writes one line into error.
brokerclient_t *brokerclient_new (evloop_t *loop, const char *frontend, const char *publisher,
                                  size_t max_frame_bytes, curve_t *curve,
                                  brokerclient_event_fn *on_event,
                                  brokerclient_gap_fn *on_gap, void *arg, char *error,
                                  size_t error_size);

// brokerclient_destroy closes the sockets and drops the calls still pending
// (their owners' handles are not touched); nulls *self_p.
void brokerclient_destroy (brokerclient_t **self_p);

// brokerclient_call sends cmd with body (a "corr" field is added to it; the
// body stays the caller's) and keeps it until answered, when fn (owner) is
// called. job_id (may be NULL) names the job in log lines. *call_p is set
// to the call's id, and to 0 when the call ends (answered or cancelled); a
// call already in *call_p is cancelled first. This function can't fail: a
// request the broker cannot take now is sent again later.
void brokerclient_call (brokerclient_t *self, proto_cmd_t cmd, pack_writer_t *body,
                        const char *job_id, brokerclient_answer_fn *fn, void *owner,
                        uint64_t *call_p);

// brokerclient_cancel forgets the call in *call_p (its answer, if one
// comes, is dropped) and zeroes *call_p; a 0 is ignored.
void brokerclient_cancel (brokerclient_t *self, uint64_t *call_p);

// brokerclient_flush sends the requests of this loop turn as one batch:
// call it once per turn, from the idle hook.
void brokerclient_flush (brokerclient_t *self);

// brokerclient_reachable is true while the broker answers PINGs.
bool brokerclient_reachable (brokerclient_t *self);

// brokerclient_stats returns what the client knows of the broker.
brokerclient_stats_t brokerclient_stats (brokerclient_t *self);

// brokerclient_set_timing changes the PING period and the resend delay
// (self-tests).
void brokerclient_set_timing (brokerclient_t *self, int64_t ping_ms, int64_t resend_ms);

// brokerclient_test runs the self-test.
void brokerclient_test (bool verbose);

#endif
