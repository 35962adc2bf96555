// jobs — the broker's active jobs and every transition of their lifecycle,
// one function each (docs/protocol.md §3.1, §3.2.1, §4, §6).
//
// Each active job (not finished) has an entry (broker/queue.h): what the
// scheduler needs to decide, about 150 bytes; the store holds the record.
// An entry is queued (in its tenant's lane, broker/scheduler.h), running
// (held by a worker under a lease, or by nobody after a restart,
// broker/workers.h) or delayed (waiting for its retry timer). The jobs
// count them, in all and per provider, and each tenant counts its own
// (broker/tenant.h).
//
// Every transition writes the job's new version into the store's batch and
// its status event into the outbox (broker/outbox.h), which sends nothing
// before the commit:
//
//   jobs_accept     SUBMIT             → queued; with a cache (broker/cache.h):
//                                      → succeeded at once from the store (hit), or
//                                      queued following an identical job's call (shared)
//   jobs_retry      RETRY              failed | canceled → queued, a new budget
//   jobs_start      dispatch           queued → running: a new attempt, counted, leased
//   jobs_give_back  handback, a DISPATCH not sent    running → queued, first, not counted
//   jobs_lose       worker dead, lease over          running → queued, first, counted;
//                                      failed (worker_lost) when its attempts are spent
//   jobs_report     RESULT             running → succeeded | failed | (delayed → queued)
//                                      | handback (jobs_give_back); a retryable failure of
//                                      the provider moves the job on to its next
//                                      fallback, queued at once (broker/scheduler.h)
//   jobs_finish     any end            → succeeded | failed | canceled, and the
//                                      webhook delivery of its callback, if any (whose
//                                      state the job's record shows, updated by each
//                                      of the delivery's own transitions)
//                                      (a leader's success finishes its followers with its
//                                      result; any other end queues them for their own call)
//   jobs_fail_fast  a provider's breaker fails fast  queued → failed (circuit_open)
//   jobs_drop       a submission the store could not commit: forgotten, nothing written
//
// Every way back into the queue goes through one function, so each
// publishes the same "queued" event. A webhook delivery is made in the
// batch of the finish it reports and publishes nothing (no client can read
// it).
#ifndef JOBGATE_JOBS_H
#define JOBGATE_JOBS_H

#include "config.h"
#include "delivery.h"
#include "evloop.h"
#include "job.h"
#include "ledger.h"
#include "outbox.h"
#include "pack.h"
#include "queue.h"
#include "scheduler.h"
#include "store.h"
#include "telemetry.h"
#include "tenant.h"
#include "workers.h"
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct _jobs_t jobs_t;

// jobs_new makes the broker's active jobs over its parts (all borrowed);
// retry timers run on loop. This function can't fail.
jobs_t *jobs_new (const config_t *config, evloop_t *loop, store_t *store, outbox_t *outbox,
                  tenants_t *tenants, scheduler_t *scheduler, workers_t *workers);

// jobs_delivery_counts returns the webhook delivery attempts and
// deliveries counted since start, indexed by delivery_outcome_t
// (broker/delivery.h): for jobgate_webhook_deliveries_total{outcome}.
// Borrowed; DELIVERY_OUTCOME_COUNT_ entries.
const uint64_t *jobs_delivery_counts (jobs_t *self);

// jobs_set_ledger makes RESULTs count their LLM usage in ledger (borrowed;
// NULL: not counted): broker/ledger.h.
void jobs_set_ledger (jobs_t *self, ledger_t *ledger);

// jobs_set_telemetry makes the transitions count in the broker's series
// (borrowed; NULL: not counted): broker/telemetry.h.
void jobs_set_telemetry (jobs_t *self, telemetry_t *telemetry);

// jobs_destroy frees every entry (nothing is written); nulls *self_p.
void jobs_destroy (jobs_t **self_p);

// jobs_entry returns the entry of active job id, or NULL.
entry_t *jobs_entry (jobs_t *self, const char *id);

// jobs_active returns how many jobs are active; jobs_running and
// jobs_delayed, how many of them run or wait for their retry timer.
size_t jobs_active (jobs_t *self);
size_t jobs_running (jobs_t *self);
size_t jobs_delayed (jobs_t *self);

// jobs_following returns how many jobs wait for the call of an identical
// job (broker/cache.h); jobs_cache, the shared calls and the cache's counts.
size_t jobs_following (jobs_t *self);
struct _cache_t *jobs_cache (jobs_t *self);

// jobs_hit_delivery returns the id of the callback delivery made for job id,
// answered from the cache (a hit) in the batch not committed yet, or NULL:
// when its submission is refused, the delivery must go with it.
const char *jobs_hit_delivery (jobs_t *self, const char *id);

// jobs_forget_committed forgets the deliveries of hits whose version is no
// longer waiting in the store's batch (written, or dropped); called after
// each commit.
void jobs_forget_committed (jobs_t *self);

// jobs_provider_active returns the active jobs of each configured provider
// (an array in the config's order).
const size_t *jobs_provider_active (jobs_t *self);

// jobs_provider_full is true when provider (may be NULL) has its
// max_queued active jobs.
bool jobs_provider_full (jobs_t *self, const char *provider);

// jobs_accept makes a submitted job active: its first version (the state
// fields as the broker sets them) and its entry, queued.
void jobs_accept (jobs_t *self, job_t *job);

// jobs_await marks active job id as awaited: a gateway holds a client until
// it ends (SUBMIT's waiting), so its end's status event carries the
// committed record (docs/protocol.md §3.3) and the gateway answers without
// reading it back. Not active (answered from the cache at once): nothing.
void jobs_await (jobs_t *self, const char *id);

// jobs_recover makes a job found active in the store at start active again:
// queued, or, if it was running, held for its worker's return.
void jobs_recover (jobs_t *self, job_t *job, int64_t now_ms);

// jobs_retry runs a failed or canceled job again with a new budget of
// attempts; its attempt identities go on.
void jobs_retry (jobs_t *self, job_t *job);

// jobs_start starts the next attempt of a queued entry (just taken from the
// scheduler) on worker at monotonic now_ms: a new identity, counted,
// running, leased, a call of its provider and tenant. Returns the running
// record for the DISPATCH (the caller destroys it), or NULL when the job
// did not start: missing from the store (dropped) or expired (failed).
job_t *jobs_start (jobs_t *self, entry_t *entry, remote_worker_t *worker, int64_t now_ms);

// jobs_via returns the provider that the attempt of entry just started (job
// is its record) calls when it is not the job's own — a fallback, DISPATCH's
// `via` (docs/protocol.md §3.2) — else NULL; *model is then the model an llm
// job sends there (the fallback's first configured model), or NULL to keep
// the request's. Borrowed from the configuration.
const char *jobs_via (jobs_t *self, const entry_t *entry, const job_t *job, const char **model);

// jobs_give_back puts a running job whose attempt did not run (handed back
// by a draining worker, or whose DISPATCH could not be sent) back first in
// its queue; the attempt is not counted.
void jobs_give_back (jobs_t *self, entry_t *entry, job_t *job);

// jobs_lose handles a running attempt that was lost (its worker dead, its
// lease over): the job goes back first in its queue, the attempt counted,
// or fails as worker_lost when its attempts are spent.
void jobs_lose (jobs_t *self, entry_t *entry, const char *why);

// jobs_report applies a RESULT (body) of the running attempt of entry, whose
// sender holds the lease.
void jobs_report (jobs_t *self, entry_t *entry, pack_reader_t *body);

// jobs_chunk keeps a CHUNK (data, size bytes, no NUL) of the running attempt
// of entry for subscribers who join later (up to 256 KiB per attempt) and
// relays it after the commit.
void jobs_chunk (jobs_t *self, entry_t *entry, int64_t index, const char *data, size_t size);

// jobs_finish moves a job to a terminal state (result and error may be
// NULL) and forgets its entry; its callback's delivery is made.
void jobs_finish (jobs_t *self, entry_t *entry, job_t *job, job_status_t status,
                  const char *result, const char *error);

// jobs_fail_fast fails every job waiting for a provider whose breaker is
// open and configured to fail fast.
void jobs_fail_fast (jobs_t *self, int64_t now_ms);

// jobs_drop forgets an active job whose first version is dropped from the
// store's batch (a refused submission): nothing is written or published.
void jobs_drop (jobs_t *self, entry_t *entry);

// jobs_drop_result drops the result of job id's version (size bytes) that
// did not fit the full store (terminal: the job is finished in it): the job
// keeps its state, and a finished one says why its result is missing
// (result_not_stored).
void jobs_drop_result (jobs_t *self, const char *id, size_t size, bool terminal);

// jobs_consistent checks the counts against the entries: in all, per
// tenant, and each entry on the list its state says. A line on stderr says
// what does not agree.
bool jobs_consistent (jobs_t *self);

// jobs_test runs the self-test.
void jobs_test (bool verbose);

#endif
