// outbox — what the broker tells gateways and subscribers, and when:
// nothing that reports a state leaves before the commit that makes the
// state durable (docs/protocol.md §3.1, §3.3, §6).
//
// SUBMIT_OK, the JOB answers of GET, CANCEL and RETRY, status events and
// chunk events are kept, in order, until outbox_flush after a group commit.
// A JOB answer is rendered at the flush, from the committed record, so it
// shows every change made before it. After a partial commit (a full map
// writes the versions that fit), what concerns a job whose version still
// waits stays, in order, for a later flush; the rest leaves. When a commit
// fails, the submissions it held are refused and forgotten with everything
// kept about them (outbox_refuse_submissions): a SUBMIT is acknowledged only
// after its commit, never left half accepted. An ERROR changes nothing and
// leaves at once (outbox_refuse).
//
// Events carry seq (one more per event of this broker run) and epoch (the
// run's start), so a subscriber notices a gap (§3.3). At a flush, the
// answers to one gateway leave as one message, and all events as one, under
// the empty topic (§2.1).
//
// What leaves is what the dashboard counts (broker/throughput.h, when one is
// set): each new job's SUBMIT_OK and each tallied status event, at the flush
// that sends it — a refused submission is never counted.
#ifndef JOBGATE_OUTBOX_H
#define JOBGATE_OUTBOX_H

#include "job.h"
#include "pack.h"
#include "throughput.h"
#include <czmq.h>
#include <stdbool.h>
#include <stdint.h>

typedef struct _outbox_t outbox_t;

// Writes the JOB answer to a request of tenant about job id into body (the
// record, and with with_chunks the running attempt's chunks). Returns false
// when tenant has no such job: the answer is then ERROR 404.
typedef bool (outbox_job_fn) (const char *id, const char *tenant, bool with_chunks,
                              pack_writer_t *body, void *arg);

// Returns true while a version of job id waits for a later commit.
typedef bool (outbox_held_fn) (const char *id, void *arg);

// Returns true when the submission of job id is refused (the store's
// version dropped and its entry forgotten).
typedef bool (outbox_refused_fn) (const char *id, void *arg);

// outbox_new makes an empty outbox that answers on frontend (a ROUTER) and
// publishes on publisher (both borrowed), with job_fn(arg) rendering JOB
// answers; epoch is the run's start (wall ms). This function can't fail.
outbox_t *outbox_new (zsock_t *frontend, zsock_t *publisher, int64_t epoch, outbox_job_fn *job_fn,
                      void *arg);

// outbox_destroy drops what is left unsent; nulls *self_p.
void outbox_destroy (outbox_t **self_p);

// outbox_submit_ok keeps the SUBMIT_OK of job id for gateway identity.
void outbox_submit_ok (outbox_t *self, zframe_t *identity, int64_t corr, const char *id,
                       job_status_t status, int64_t created_at, bool duplicate);

// outbox_job keeps a JOB answer for gateway identity: job id as tenant sees
// it at the flush (with_chunks: with its running attempt's chunks).
void outbox_job (outbox_t *self, zframe_t *identity, int64_t corr, const char *id,
                 const char *tenant, bool with_chunks);

// outbox_set_throughput makes the flushes count what they send in
// throughput (borrowed; NULL: nothing counted).
void outbox_set_throughput (outbox_t *self, throughput_t *throughput);

// outbox_event keeps a status event: job id is now status, after attempts
// (the budget count), in the attempt whose identity is attempt (§3.2.1).
// tallied: the event counts in the throughput (client work, not a webhook
// delivery). With record_tenant (the job's tenant; NULL: none) the event
// carries the committed record, rendered at the flush like a JOB answer, so
// that a gateway holding a client on the job answers it without reading
// the job back (§3.3).
void outbox_event (outbox_t *self, const char *id, job_status_t status, int attempts,
                   int64_t attempt, bool tallied, const char *record_tenant);

// outbox_chunk keeps a chunk event: partial data (size bytes, copied) of
// job id's attempt, the index-th of that attempt.
void outbox_chunk (outbox_t *self, const char *id, int attempt, int64_t index, const char *data,
                   size_t size);

// outbox_refuse answers a request of gateway identity at once with ERROR
// code; retry_after_ms > 0 tells when trying again may succeed.
void outbox_refuse (outbox_t *self, zframe_t *identity, int64_t corr, int code,
                    const char *message, int64_t retry_after_ms);

// outbox_refuse_submissions asks refused about the job of each SUBMIT_OK
// kept; each refused one is answered at once with ERROR 503, message and
// retry_after_ms, and everything kept about that job is dropped.
void outbox_refuse_submissions (outbox_t *self, outbox_refused_fn *refused, void *arg,
                                const char *message, int64_t retry_after_ms);

// outbox_flush sends what is kept, except (with held) what concerns a job
// held(id, arg) says still waits: that stays, in order.
void outbox_flush (outbox_t *self, outbox_held_fn *held, void *arg);

// outbox_pending returns how many answers and events are kept.
size_t outbox_pending (outbox_t *self);

// outbox_test runs the self-test.
void outbox_test (bool verbose);

#endif
