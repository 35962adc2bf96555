// provider — the broker's live state of one upstream: the global rate limit
// (a token bucket), the concurrency cap, pauses after 429/503 with
// Retry-After, the circuit breaker, and the figures /v1/providers shows.
//
// The broker schedules for every worker, so these limits hold across all of
// them (workers do not guess). After a pause or an open breaker the provider
// recovers in slow start: one probe call, then twice as many in flight after
// each success, so a recovering upstream never sees a burst of retries.
#ifndef JOBGATE_PROVIDER_H
#define JOBGATE_PROVIDER_H

#include "config.h"
#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

typedef struct _provider_t provider_t;

typedef enum {
    PROVIDER_ANSWERED,   // the upstream answered (2xx, or a final 4xx)
    PROVIDER_OVERLOADED, // 429 or 503: back off for Retry-After
    PROVIDER_FAILED,     // timeout, connection error, other 5xx
    PROVIDER_NEUTRAL     // no verdict on the upstream (canceled, handed back, lost)
} provider_outcome_t;

// provider_new creates the state of a configured provider (borrowed config),
// or of direct calls (config NULL: no limits, no breaker).
provider_t *provider_new (const config_provider_t *config);

// provider_destroy frees it; nulls *self_p.
void provider_destroy (provider_t **self_p);

// provider_can_start is true when one more call may start at now_ms. When
// false, *wake_ms is the monotonic time worth looking again (0: only a
// finishing call can change the answer).
bool provider_can_start (provider_t *self, int64_t now_ms, int64_t *wake_ms);

// provider_started records a call started at now_ms (takes a token).
void provider_started (provider_t *self, int64_t now_ms);

// provider_finished records a call's end: its outcome, how long it took and
// what the upstream said (retry_after_ms, error type, status; may be 0/NULL).
void provider_finished (provider_t *self, int64_t now_ms, int64_t latency_ms,
                        provider_outcome_t outcome, int64_t retry_after_ms,
                        const char *error_type, int upstream_status);

// provider_fail_fast is true when the breaker is open and the provider is
// configured to fail waiting jobs rather than hold them.
bool provider_fail_fast (provider_t *self, int64_t now_ms);

// provider_state_json describes the live state for GET /v1/providers; queued
// is the broker's count of its waiting jobs. Returns a new reference.
json_t *provider_state_json (provider_t *self, int64_t now_ms, size_t queued);

// provider_in_flight returns the calls running now.
int provider_in_flight (provider_t *self);

// provider_test runs the self-test.
void provider_test (bool verbose);

#endif
