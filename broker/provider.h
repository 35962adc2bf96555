// provider — the broker's live state of one upstream: the global rate limit
// (a token bucket), the concurrency cap, pauses after 429/503 with
// Retry-After, the circuit breaker, and the figures /v1/providers shows.
//
// The broker schedules for every worker, so these limits hold across all of
// them (workers do not guess). After a pause or an open breaker the provider
// recovers in slow start: one probe call, then twice as many in flight after
// each success, so a recovering upstream never sees a burst of retries.
//
// One tenant's choices never switch a shared provider off for the others
// (issue 17 #2):
// * only failures the provider caused count toward its breaker: a timeout
//   counts only when the attempt was given at least breaker_min_timeout_ms
//   (a shorter timeout is the tenant's choice, not the provider's failure);
// * a pause is capped by max_pause_ms, whatever Retry-After says;
// * a tenant whose calls trigger a pause again after another tenant's calls
//   were answered since its last one is the one paused: its calls to this
//   provider wait, the others' do not. A pause while no other tenant is
//   answered (a real overload) still holds everyone.
//
// Direct calls (user URLs, webhooks) have one provider of their own, with
// the direct section's rate limit and concurrency cap and no breaker or
// pauses (they go to many hosts).
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

// What one finished call tells about the upstream.
typedef struct {
    provider_outcome_t outcome; // the verdict (broker/report.h)
    int64_t latency_ms;         // how long the call took
    int64_t retry_after_ms;     // the pause the upstream asked for, 0 = none
    int64_t timeout_ms;         // the attempt's own timeout, 0 = unknown
    const char *error_type;     // error type, or NULL
    int upstream_status;        // HTTP status, 0 = none
} provider_call_t;

// Whether calls may go to a provider, for the choice of a fallback
// (providers.NAME.fallback): its rate limit and concurrency cap are only
// waited for, an unavailable provider is passed over.
typedef enum {
    PROVIDER_AVAILABLE,  // calls may go (once its rate and concurrency allow)
    PROVIDER_PAUSED,     // waiting out a Retry-After, for everyone or for this tenant
    PROVIDER_BROKEN      // its breaker is open, or half-open with the probe running
} provider_availability_t;

// What a provider counted since the broker started, and its state now,
// for the metrics (broker/telemetry.h).
typedef struct {
    uint64_t opened;            // breaker transitions to open
    uint64_t half_opened;       // … to half-open (a probe)
    uint64_t closed;            // … back to closed
    uint64_t pauses;            // pauses of every tenant after a 429/503 with Retry-After
    uint64_t tenant_pauses;     // pauses of one tenant whose calls kept being refused
    uint64_t overloaded;        // 429/503 answers
    const char *circuit;        // breaker state now: "closed", "open", "half_open"
    bool paused;                // waiting out a Retry-After now
} provider_counts_t;

// provider_new creates the state of a configured provider (borrowed config),
// or with direct, of direct calls (config may then be NULL: no limits).
provider_t *provider_new (const config_provider_t *config, bool direct);

// provider_config_changed applies its configuration's values after a
// reload (common/service.h): the call rate and burst (the other limits are
// read where they are used). This function can't fail.
void provider_config_changed (provider_t *self, int64_t now_ms);

// provider_destroy frees it; nulls *self_p.
void provider_destroy (provider_t **self_p);

// provider_can_start is true when one more call of tenant may start at
// now_ms. When false, *wake_ms is the monotonic time worth looking again (0:
// only a finishing call can change the answer).
bool provider_can_start (provider_t *self, const char *tenant, int64_t now_ms, int64_t *wake_ms);

// provider_started records a call of tenant started at now_ms (takes a token).
void provider_started (provider_t *self, const char *tenant, int64_t now_ms);

// provider_finished records the end of a call of tenant and what it said
// about the upstream.
void provider_finished (provider_t *self, const char *tenant, int64_t now_ms,
                        const provider_call_t *call);

// provider_availability says whether tenant's calls may go to the provider at
// now_ms; *until_ms is when the pause or the open breaker ends (0 when
// unknown: a half-open breaker waits for its probe). Nothing changes.
provider_availability_t provider_availability (const provider_t *self, const char *tenant,
                                               int64_t now_ms, int64_t *until_ms);

// provider_fail_fast is true when the breaker is open and the provider is
// configured to fail waiting jobs rather than hold them.
bool provider_fail_fast (provider_t *self, int64_t now_ms);

// provider_state_json describes the live state for GET /v1/providers; queued
// is the broker's count of its waiting jobs. Returns a new reference.
json_t *provider_state_json (provider_t *self, int64_t now_ms, size_t queued);

// provider_counts returns what the provider counted, and its state at now_ms.
provider_counts_t provider_counts (const provider_t *self, int64_t now_ms);

// provider_in_flight returns the calls running now.
int provider_in_flight (provider_t *self);

// provider_test runs the self-test.
void provider_test (bool verbose);

#endif
