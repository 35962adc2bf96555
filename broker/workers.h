// workers — the worker processes the broker knows and the attempts each
// holds (docs/protocol.md §3.2, §3.2.1, §5; issue 10 #3).
//
// A worker is known by its routing id on the backend; by its identity across
// reconnects (READY's "worker", up to 64 printable bytes; without one, the
// routing id); and by the routing ids it had before it reconnected: what it
// sent on an old connection may still arrive after its READY on the new one,
// so those ids stay its aliases until it is declared dead.
//
// Credit (§3.2) is bounded whatever a peer claims: never more than the calls
// a worker announced it runs at once (taken between 0 and
// CONFIG_WORKER_CONCURRENCY_MAX) less the attempts it holds, in 64-bit
// arithmetic; a draining worker has none.
//
// Liveness (§5): a worker silent for 3 s is dead; the broker sends a
// heartbeat to each worker it has sent nothing for 1 s. A broker that was
// stalled itself restarts the clocks instead (workers_stalled).
//
// Leases (§3.2.1): a running attempt is on the running list of the worker it
// was dispatched to until it ends, by the attempt's timeout and a grace of
// 10 s at the latest. Its token is a keyed BLAKE2b of (job id, attempt) under
// the store's secret: only the worker that received the DISPATCH knows it,
// and a restarted broker can still check it. Attempts found running when the
// broker started are held by nobody (orphans) for 5 s: their token alone
// proves a result.
//
// No I/O: the broker sends what this decides; time is passed in.
#ifndef JOBGATE_WORKERS_H
#define JOBGATE_WORKERS_H

#include "queue.h"
#include <czmq.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

// A lease token: 16 bytes of a keyed BLAKE2b of (job id, attempt), in hex.
#define LEASE_TOKEN_LEN 32

typedef struct _workers_t workers_t;
typedef struct _remote_worker_t remote_worker_t;

// What a worker said of its own process in its last HEARTBEAT that did
// (revision 4, metrics; docs/protocol.md §5); all 0 until then.
typedef struct {
    int64_t cpu_ms;             // CPU time used, user + system
    int64_t rss_bytes;          // resident memory
    int64_t open_fds;           // file descriptors open
    int64_t max_fds;            // their limit
    int64_t started_at_ms;      // when the process started, wall ms
    int64_t running;            // the calls it says it has in flight
} worker_figures_t;

// A worker as the broker sees it. Read it freely; only workers.c writes it.
struct _remote_worker_t {
    zframe_t *identity;         // its routing id on the backend now
    char *name;                 // that routing id in hex, its key in the registry
    char *key;                  // its identity across reconnects: READY's "worker", or name
    int64_t credit;             // DISPATCHes it can still take
    int64_t concurrency;        // calls it announced it runs at once (bounded)
    entry_list_t running;       // the attempts it holds
    int64_t last_seen_ms;       // monotonic time of its last message
    int64_t last_sent_ms;       // when the broker last sent it anything
    bool draining;              // sent DISCONNECT: no more dispatches
    worker_figures_t figures;   // its process's figures, as it last reported them
    int64_t ready_result_seq;   // its latest READY's result_seq (revision 4): RESULTs numbered
                                // up to it were sent before that READY, which counted their
                                // calls as free (docs/protocol.md §3.2.4)
};

// What a RESULT's or CHUNK's claim on an attempt is worth.
typedef enum {
    LEASE_HELD,                 // the sender holds the attempt's lease
    LEASE_LATE,                 // the job does not run at that attempt (anymore)
    LEASE_WRONG_TOKEN,          // the token is not the attempt's
    LEASE_NOT_HOLDER            // the token is right, the sender is not the holder
} lease_check_t;

// Called for a worker declared dead, and why; it must take every attempt
// off the worker's running list and then call workers_forget.
typedef void (workers_dead_fn) (remote_worker_t *worker, const char *why, void *arg);

// Called for a worker that is due a heartbeat.
typedef void (workers_fn) (remote_worker_t *worker, void *arg);

// Called for an attempt whose lease is over, and why; it must take the
// entry off its running list.
typedef void (workers_lease_fn) (entry_t *entry, const char *why, void *arg);

// workers_new makes an empty registry; lease_key (STORE_LEASE_KEY_BYTES,
// borrowed) is the secret of the lease tokens. This function can't fail.
workers_t *workers_new (const unsigned char *lease_key);

// workers_destroy forgets every worker; nulls *self_p. The entries on their
// running lists are not freed (they are broker/jobs.h's).
void workers_destroy (workers_t **self_p);

// workers_set_timing shortens the lease grace and the liveness, for tests.
void workers_set_timing (workers_t *self, int64_t lease_grace_ms, int64_t liveness_ms);

// workers_lookup returns the worker a message came from: by its routing id,
// or an earlier one (an alias); NULL when unknown.
remote_worker_t *workers_lookup (workers_t *self, zframe_t *identity);

// workers_by_key returns the worker of an identity across reconnects, or
// NULL.
remote_worker_t *workers_by_key (workers_t *self, const char *key);

// workers_ready handles READY (§3.2) from identity: a worker announces
// itself, or comes back under a new routing id after a reconnect (the same
// key: its attempts and leases move with it), with the credit it has free
// now. sender is the worker the routing id already names, or NULL. A
// concurrency of 0 or less is taken as the credit. Returns the worker.
remote_worker_t *workers_ready (workers_t *self, remote_worker_t *sender, zframe_t *identity,
                                int64_t credit, int64_t concurrency, const char *key,
                                size_t key_len, int64_t now_ms);

// workers_heard notes that a message of worker arrived at now_ms.
void workers_heard (remote_worker_t *worker, int64_t now_ms);

// workers_sent notes that the broker sent worker a message at now_ms.
void workers_sent (remote_worker_t *worker, int64_t now_ms);

// workers_set_ready_result_seq records the result_seq of the READY just
// handled (0: none, a revision 3 worker).
void workers_set_ready_result_seq (remote_worker_t *worker, int64_t result_seq);

// workers_credit_cap is the most credit a worker may hold now.
int64_t workers_credit_cap (const remote_worker_t *worker);

// workers_add_credit gives a worker more credit, up to its cap.
void workers_add_credit (remote_worker_t *worker, int64_t credit);

// workers_drain handles DISCONNECT: the worker takes no more DISPATCHes.
void workers_drain (remote_worker_t *worker);

// workers_pick returns the worker with the most credit, or NULL when none
// can take a DISPATCH.
remote_worker_t *workers_pick (workers_t *self);

// workers_report keeps what a worker's HEARTBEAT said of its process;
// negative figures (a confused peer) are taken as 0.
void workers_report (remote_worker_t *worker, const worker_figures_t *figures);

// workers_each calls fn for every worker (none may be made or forgotten
// meanwhile).
void workers_each (workers_t *self, workers_fn *fn, void *arg);

// workers_live returns how many workers are not draining.
size_t workers_live (workers_t *self);

// workers_json describes the workers for the dashboard (GET /v1/stats) at
// monotonic now_ms, at most max of them, ordered by identity:
// [{"worker","concurrency","running","credit","draining","silent_ms"},…].
// This function can't fail.
json_t *workers_json (workers_t *self, int64_t now_ms, size_t max);

// workers_forget removes a worker and its aliases and frees it; its running
// list must be empty.
void workers_forget (workers_t *self, remote_worker_t *worker);

// workers_each_silent calls fn for every worker silent too long at now_ms.
void workers_each_silent (workers_t *self, int64_t now_ms, workers_dead_fn *fn, void *arg);

// workers_each_idle calls fn for every worker the broker has sent nothing
// for a heartbeat interval at now_ms.
void workers_each_idle (workers_t *self, int64_t now_ms, workers_fn *fn, void *arg);

// workers_stalled restarts the liveness clocks at now_ms and extends the
// leases to at least a grace from now: after a stall of the broker itself,
// the others' silence is its own (their messages are still unread).
void workers_stalled (workers_t *self, int64_t now_ms);

// workers_hold puts a starting attempt (the entry, on no list) on worker's
// running list with a lease until its timeout and the grace from now_ms, and
// takes one credit.
void workers_hold (workers_t *self, remote_worker_t *worker, entry_t *entry, int64_t now_ms);

// workers_hold_orphan puts an attempt found running at start on nobody's
// list until its worker returns or the orphan grace from now_ms is over.
void workers_hold_orphan (workers_t *self, entry_t *entry, int64_t now_ms);

// workers_release takes an attempt off its running list (it ended).
void workers_release (workers_t *self, entry_t *entry);

// workers_holds is true when a running entry is on the list of its holder.
bool workers_holds (workers_t *self, const entry_t *entry);

// workers_each_lease_over calls fn for every attempt whose lease is over at
// now_ms, the orphans' last.
void workers_each_lease_over (workers_t *self, int64_t now_ms, workers_lease_fn *fn, void *arg);

// workers_lease_token writes the lease token of a job's attempt into token
// (LEASE_TOKEN_LEN + 1 bytes).
void workers_lease_token (workers_t *self, const char *id, int64_t attempt, char *token);

// workers_check_lease says whether sender (NULL: unknown) holds the lease of
// entry's (NULL: no such job) attempt with the token lease (lease_len bytes,
// may be NULL): the job runs at that attempt, the token is the attempt's
// (compared in constant time), and the sender is the worker it was
// dispatched to (an orphan's: anyone with the token).
lease_check_t workers_check_lease (workers_t *self, const remote_worker_t *sender,
                                   const entry_t *entry, int64_t attempt, const char *lease,
                                   size_t lease_len);

// workers_consistent checks every worker's credit against its cap; a line
// on stderr says what does not agree.
bool workers_consistent (workers_t *self);

// workers_test runs the self-test.
void workers_test (bool verbose);

#endif
