// delivery — the webhook delivery of a finished job (SPEC §3;
// docs/protocol.md §4): a job of kind "webhook" whose spec is
// {"kind": "webhook", "request": {"url", "job_id", "payload"}}, the payload
// being the finished job object as job_render makes it (the stored result,
// error and metadata texts spliced in, not parsed again). A delivery is as
// durable, retried and SSRF-checked as any job; it is recorded under the
// tenant's delivery owner (broker/tenant.h), so no client lists or reads
// it, and it counts against that tenant's quotas.
//
// The spec must stay readable under common/jsontext's policy, which is how
// the worker reads it: when wrapping makes the payload too deep or too
// large, its result is replaced by {"omitted": "…"} (and if that is not
// enough, its metadata by null); the client reads the job with GET then.
//
// No I/O, no state.
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

// delivery_test runs the self-test.
void delivery_test (bool verbose);

#endif
