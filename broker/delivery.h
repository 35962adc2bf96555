// delivery — the webhook delivery of a finished job (SPEC §3;
// docs/protocol.md §4): a job of kind "webhook" whose spec is
// {"kind": "webhook", "request": {"url", "job_id", "payload"}}, the payload
// being the Standard Webhooks envelope {"type": "job.succeeded" |
// "job.failed" | "job.canceled", "timestamp": the finish (RFC 3339),
// "data": the finished job object as job_render makes it (the stored
// result, error and metadata texts spliced in, not parsed again)}. A
// delivery is as
// durable, retried and SSRF-checked as any job; it is recorded under the
// tenant's delivery owner (broker/tenant.h), so no client lists or reads
// it, and it counts against that tenant's quotas.
//
// The spec must stay readable under common/jsontext's policy, which is how
// the worker reads it: when wrapping makes the payload too deep or too
// large, its result is replaced by {"omitted": "…"} (and if that is not
// enough, its metadata by null); the client reads the job with GET then.
//
// The job it reports shows how its delivery goes (the job object's
// "webhook" member, docs/protocol.md §4): delivery_state renders that
// state, which the broker writes into the job's record at each step.
//
// No I/O, no state (the counts of outcomes are the caller's).
#ifndef JOBGATE_DELIVERY_H
#define JOBGATE_DELIVERY_H

#include "config.h"
#include "job.h"
#include <stdbool.h>
#include <stdint.h>

// delivery_url returns the callback URL of a job's spec ("callback":
// {"url": …}) as a new string, or NULL when it asks for none.
char *delivery_url (const job_t *job);

// delivery_spec renders the spec of the delivery of job to url. Returns a
// new string, or NULL when even without its result and metadata the payload
// would not fit the policy.
char *delivery_spec (const job_t *job, const char *url);

// delivery_new makes the delivery record of job to url, created at wall time
// now_ms: a new id, the tenant's delivery owner, the webhooks section's
// attempts and timeout, status queued. Returns NULL when its spec cannot be
// made (delivery_spec).
job_t *delivery_new (const job_t *job, const char *url, const config_t *config, int64_t now_ms);

// delivery_job_id writes into id (JOB_ID_LEN + 1 bytes) the id of the job a
// delivery reports (its spec's request.job_id) and returns 0, or -1 when
// the record is no delivery of this module's making. Reads the spec's
// text, which delivery_spec wrote (its url, a JSON string, cannot hold an
// unescaped quote), without parsing the payload.
int delivery_job_id (const job_t *delivery, char *id);

// Where a delivery stands, as the job it reports shows it.
typedef enum {
    DELIVERY_PENDING,           // queued, running or waiting for its next attempt
    DELIVERY_DELIVERED,         // an attempt was answered 2xx
    DELIVERY_GIVEN_UP,          // its attempts are spent, or it could not be queued
    DELIVERY_STATE_COUNT_
} delivery_state_kind_t;

// The delivery state of a job (the job object's "webhook" member).
typedef struct {
    const char *id;             // the delivery's id (its webhook-id), NULL when none was made
    delivery_state_kind_t state; // where it stands
    int attempts;               // attempts made
    int max_attempts;           // attempts it may make (webhooks.max_attempts)
    int last_status;            // HTTP status of the last answer, 0 = none (or no attempt)
    const char *last_error;     // error type of the last attempt, or why it was not queued; NULL
    int64_t last_attempt_at;    // wall ms the last attempt ended, 0 = none
    int64_t next_attempt_at;    // wall ms the next attempt is due (pending), 0 = none
} delivery_state_t;

// delivery_state renders state as the JSON text of the job object's
// "webhook" member: {"id", "state": "pending" | "delivered" | "given_up",
// "attempts", "max_attempts", "last_status", "last_error",
// "last_attempt_at", "next_attempt_at"} (absent values null, times RFC
// 3339). Returns a new string. This function can't fail.
char *delivery_state (const delivery_state_t *state);

// delivery_state_is_of is true when state_text (a job's "webhook" member,
// may be NULL) reports the delivery whose id is delivery_id: a delivery
// that reports on a job run again since (RETRY) is no longer its news.
bool delivery_state_is_of (const char *state_text, const char *delivery_id);

// What became of delivery attempts and deliveries, for the metrics
// (jobgate_webhook_deliveries_total{outcome}).
typedef enum {
    DELIVERY_OUTCOME_DELIVERED, // an attempt answered 2xx: delivered
    DELIVERY_OUTCOME_RETRIED,   // an attempt failed; another is due
    DELIVERY_OUTCOME_GIVEN_UP,  // the last allowed attempt failed
    DELIVERY_OUTCOME_NOT_QUEUED, // refused before any attempt (tenant quota, payload too big)
    DELIVERY_OUTCOME_COUNT_
} delivery_outcome_t;

// delivery_outcome_name returns "delivered", "retried", "given_up" or
// "not_queued" (the metric's label values). This function can't fail.
const char *delivery_outcome_name (delivery_outcome_t outcome);

// delivery_test runs the self-test.
void delivery_test (bool verbose);

#endif
