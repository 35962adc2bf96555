// throughput — what happened to jobs over the last 15 minutes, per
// interval: the dashboard's charts (GET /v1/stats, docs/protocol.md §3.1
// STATS).
//
// A ring of THROUGHPUT_INTERVALS intervals of THROUGHPUT_INTERVAL_MS each,
// aligned on the wall clock (so every gateway and the page agree on where
// an interval starts), counting the committed transitions of client jobs:
// submissions acknowledged (cache hits included), attempts started, jobs
// queued again after an attempt (a retryable failure, a lost worker, a
// RETRY of a job that had run), and jobs finished by status. broker/outbox.h
// feeds it at the flush, so what is counted is what the store holds and the
// gateways were told; webhook deliveries are the broker's own work and are
// not counted.
//
// The memory is fixed (the ring); nothing allocates per event. A count for
// an interval older than the ring (the wall clock stepped back over 15
// minutes) is dropped; a step back within the ring counts in its interval.
//
// State only: no I/O; time is passed in (wall milliseconds).
#ifndef JOBGATE_THROUGHPUT_H
#define JOBGATE_THROUGHPUT_H

#include "job.h"
#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

// One interval of the ring, and how many the ring holds (15 minutes).
#define THROUGHPUT_INTERVAL_MS 10000
#define THROUGHPUT_INTERVALS 90

// What is counted.
typedef enum {
    THROUGHPUT_SUBMITTED,       // a new job acknowledged (SUBMIT_OK, not a duplicate)
    THROUGHPUT_STARTED,         // an attempt started (status running)
    THROUGHPUT_REQUEUED,        // queued again after an attempt (attempt identity > 0)
    THROUGHPUT_SUCCEEDED,       // finished: succeeded
    THROUGHPUT_FAILED,          // finished: failed
    THROUGHPUT_CANCELED,        // finished: canceled
    THROUGHPUT_KINDS_
} throughput_kind_t;

typedef struct _throughput_t throughput_t;

// throughput_new makes an empty ring. This function can't fail (out of
// memory aborts: common/mem.h).
throughput_t *throughput_new (void);

// throughput_destroy frees the ring; nulls *self_p.
void throughput_destroy (throughput_t **self_p);

// throughput_count counts one event of kind at wall_ms.
void throughput_count (throughput_t *self, throughput_kind_t kind, int64_t wall_ms);

// throughput_status counts a committed status event (docs/protocol.md §3.3):
// running is an attempt started, queued after an attempt (attempt > 0) a
// requeue, a terminal status a finish; a first queued (attempt 0) is not
// counted here (the submission is, by its SUBMIT_OK).
void throughput_status (throughput_t *self, job_status_t status, int64_t attempt,
                        int64_t wall_ms);

// throughput_total returns the count of kind over the whole ring at wall_ms.
uint64_t throughput_total (throughput_t *self, throughput_kind_t kind, int64_t wall_ms);

// throughput_json describes the ring at wall_ms, oldest interval first, the
// last one the current (partial) interval:
// {"interval_s":10,"intervals":90,"from":RFC3339,"now":RFC3339,
//  "series":{"submitted":[…90 counts],"started":[…],"requeued":[…],
//            "succeeded":[…],"failed":[…],"canceled":[…]}}
// This function can't fail.
json_t *throughput_json (throughput_t *self, int64_t wall_ms);

// throughput_test runs the self-test.
void throughput_test (bool verbose);

#endif
