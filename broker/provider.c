// provider — one upstream's live state: rate limit, concurrency cap, pauses, breaker.
#include "provider.h"
#include "bucket.h"
#include "clock.h"
#include "log.h"
#include "mem.h"

#include <assert.h>
#include <czmq.h>
#include <stdlib.h>
#include <string.h>

#define LATENCY_SAMPLES 512
#define RECENT_ERRORS 10
// Slow start ends when this many calls may run at once again.
#define RAMP_DONE 1024
// How long a tenant's pause is remembered when deciding whether its next one
// is the provider's overload or the tenant's own doing.
#define PAUSE_MEMORY_MS (10 * 60 * 1000)
// Tenants whose pauses are remembered at most; older entries are dropped.
#define PAUSE_TENANTS_MAX 10000

// What a provider remembers of one tenant's pauses.
typedef struct {
    int64_t last_pause_ms;      // when its call last triggered a pause
    int64_t paused_until_ms;    // its own calls wait until then (0 = not)
} tenant_pause_t;

typedef enum { CIRCUIT_CLOSED, CIRCUIT_OPEN, CIRCUIT_HALF_OPEN } circuit_t;

typedef struct {
    int64_t at_ms;              // wall time
    char type[32];              // error type
    int upstream_status;        // HTTP status, 0 = none
} recent_error_t;

struct _provider_t {
    const config_provider_t *config; // borrowed; NULL for unlimited direct calls
    bool direct;                // direct calls: limits only, no breaker or pauses
    zhashx_t *pauses;           // tenant → tenant_pause_t, tenants that triggered pauses
    char *answered[2];          // the two tenants last answered (distinct), newest first
    int64_t answered_ms[2];     // when each was last answered
    bucket_t calls;             // the rate limit (rate_limit, burst)
    int in_flight;              // calls running
    circuit_t circuit;          // breaker state
    int consecutive_failures;   // failures since the last answer
    int64_t blocked_until_ms;   // paused (Retry-After) or open until then
    bool paused;                // blocked by a Retry-After, not the breaker
    int ramp_limit;             // slow start: calls allowed in flight, 0 = none
    int64_t latencies[LATENCY_SAMPLES]; // recent call durations, ms
    size_t latency_count;       // samples taken (ring index = count % size)
    recent_error_t errors[RECENT_ERRORS]; // most recent failures (ring)
    size_t error_count;         // failures recorded
    int64_t second_start_ms;    // start of the current rate window
    int64_t started_this_second; // calls started in the current window
    int64_t started_last_second; // calls started in the previous window
    int64_t started_total;      // calls started
    int64_t answered_total;     // calls the upstream answered
    int64_t failed_total;       // calls that failed or were refused
    provider_counts_t counts;   // transitions and pauses since the start (metrics)
};

provider_t *
provider_new (const config_provider_t *config, bool direct)
{
    provider_t *self = mem_calloc (1, sizeof *self);
    self->config = config;
    self->direct = direct;
    self->pauses = zhashx_new ();
    zhashx_set_destructor (self->pauses, (zhashx_destructor_fn *) zstr_free);
    self->second_start_ms = clock_mono_ms ();
    bucket_init (&self->calls, config ? config->rate_limit : 0, config ? config->burst : 0,
                 self->second_start_ms);
    return self;
}

void
provider_config_changed (provider_t *self, int64_t now_ms)
{
    if (self->config)
        bucket_set_rate (&self->calls, self->config->rate_limit, self->config->burst, now_ms);
}

void
provider_destroy (provider_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    provider_t *self = *self_p;
    zhashx_destroy (&self->pauses);
    free (self->answered[0]);
    free (self->answered[1]);
    free (self);
    *self_p = NULL;
}

static const char *
s_name (provider_t *self)
{
    return self->config && !self->direct ? self->config->name : "(direct)";
}

// s_shared is true for a configured provider: one upstream that breakers and
// pauses protect.
static bool
s_shared (const provider_t *self)
{
    return self->config && !self->direct;
}

static bool s_limits_allow (provider_t *self, int64_t now_ms, int64_t *wake_ms);

// s_roll moves the rate window forward.
static void
s_roll (provider_t *self, int64_t now_ms)
{
    if (now_ms - self->second_start_ms >= 2000) {
        self->started_last_second = 0;
        self->started_this_second = 0;
        self->second_start_ms = now_ms;
    }
    else if (now_ms - self->second_start_ms >= 1000) {
        self->started_last_second = self->started_this_second;
        self->started_this_second = 0;
        self->second_start_ms += 1000;
    }
}

bool
provider_can_start (provider_t *self, const char *tenant, int64_t now_ms, int64_t *wake_ms)
{
    *wake_ms = 0;
    if (!self->config)
        return true;
    if (self->direct)
        return s_limits_allow (self, now_ms, wake_ms);
    tenant_pause_t *pause = zhashx_lookup (self->pauses, tenant);
    if (pause && now_ms < pause->paused_until_ms) {
        *wake_ms = pause->paused_until_ms;
        return false;
    }
    if (now_ms < self->blocked_until_ms) {
        *wake_ms = self->blocked_until_ms;
        return false;
    }
    if (self->circuit == CIRCUIT_OPEN || self->paused) {
        // The pause or the open period is over: probe with one call.
        if (self->circuit == CIRCUIT_OPEN) {
            log_info (NULL, "provider %s: breaker half-open, probing", s_name (self));
            self->counts.half_opened++;
        }
        self->circuit = self->circuit == CIRCUIT_OPEN ? CIRCUIT_HALF_OPEN : self->circuit;
        self->paused = false;
        self->ramp_limit = 1;
    }
    if (self->ramp_limit > 0 && self->in_flight >= self->ramp_limit)
        return false;
    return s_limits_allow (self, now_ms, wake_ms);
}

// s_limits_allow is true when the concurrency cap and the rate limit allow
// one more call at now_ms; *wake_ms as provider_can_start.
static bool
s_limits_allow (provider_t *self, int64_t now_ms, int64_t *wake_ms)
{
    if (self->config->max_concurrency > 0 && self->in_flight >= self->config->max_concurrency)
        return false;
    int64_t wait_ms;
    if (!bucket_ready (&self->calls, now_ms, &wait_ms)) {
        *wake_ms = now_ms + wait_ms;
        return false;
    }
    return true;
}

void
provider_started (provider_t *self, const char *tenant, int64_t now_ms)
{
    self->in_flight++;
    self->started_total++;
    s_roll (self, now_ms);
    self->started_this_second++;
    bucket_take (&self->calls);
}

// s_record_error keeps a failure for /v1/providers.
static void
s_record_error (provider_t *self, const char *type, int upstream_status)
{
    recent_error_t *error = &self->errors[self->error_count++ % RECENT_ERRORS];
    error->at_ms = clock_wall_ms ();
    snprintf (error->type, sizeof error->type, "%s", type ? type : "failed");
    error->upstream_status = upstream_status;
}

// s_answered remembers that tenant's call was answered at now_ms: the two
// most recent distinct tenants are enough to tell whether anyone other than
// a given tenant was answered since a given time.
static void
s_answered (provider_t *self, const char *tenant, int64_t now_ms)
{
    if (self->answered[0] && strcmp (self->answered[0], tenant) == 0) {
        self->answered_ms[0] = now_ms;
        return;
    }
    free (self->answered[1]);
    self->answered[1] = self->answered[0];
    self->answered_ms[1] = self->answered_ms[0];
    self->answered[0] = mem_strdup (tenant);
    self->answered_ms[0] = now_ms;
}

// s_others_answered_since is true when a tenant other than tenant had a call
// answered after since_ms.
static bool
s_others_answered_since (const provider_t *self, const char *tenant, int64_t since_ms)
{
    for (int i = 0; i < 2; i++)
        if (self->answered[i] && self->answered_ms[i] > since_ms
            && strcmp (self->answered[i], tenant) != 0)
            return true;
    return false;
}

// s_tenant_pause returns what the provider remembers of tenant's pauses,
// made on first use; stale memories are dropped when there are too many.
static tenant_pause_t *
s_tenant_pause (provider_t *self, const char *tenant, int64_t now_ms)
{
    tenant_pause_t *pause = zhashx_lookup (self->pauses, tenant);
    if (pause)
        return pause;
    if (zhashx_size (self->pauses) >= PAUSE_TENANTS_MAX) {
        zlistx_t *names = zhashx_keys (self->pauses);
        for (const char *name = zlistx_first (names); name; name = zlistx_next (names)) {
            tenant_pause_t *old = zhashx_lookup (self->pauses, name);
            if (now_ms - old->last_pause_ms > PAUSE_MEMORY_MS && now_ms >= old->paused_until_ms)
                zhashx_delete (self->pauses, name);
        }
        zlistx_destroy (&names);
    }
    pause = mem_calloc (1, sizeof *pause);
    pause->last_pause_ms = INT64_MIN / 2;
    zhashx_insert (self->pauses, tenant, pause);
    return pause;
}

// s_pause applies an overloaded answer to one of tenant's calls: the pause
// is capped, and falls on the tenant alone when it is the one that keeps
// triggering pauses while others are answered.
static void
s_pause (provider_t *self, const char *tenant, int64_t now_ms, int64_t retry_after_ms)
{
    int64_t pause_ms = retry_after_ms;
    if (pause_ms > self->config->max_pause_ms)
        pause_ms = self->config->max_pause_ms;
    if (pause_ms <= 0)
        return;
    tenant_pause_t *pause = s_tenant_pause (self, tenant, now_ms);
    bool again = now_ms - pause->last_pause_ms <= PAUSE_MEMORY_MS;
    if (again && s_others_answered_since (self, tenant, pause->last_pause_ms)) {
        // The upstream answers the others: what it refuses is this
        // tenant's calls. They wait; nobody else does.
        pause->last_pause_ms = now_ms;
        pause->paused_until_ms = now_ms + pause_ms;
        self->counts.tenant_pauses++;
        log_info (NULL, "provider %s: tenant \"%s\" paused %lld ms (its calls keep getting %s)",
                  s_name (self), tenant, (long long) pause_ms, "429/503");
        return;
    }
    pause->last_pause_ms = now_ms;
    // Everyone waits as long as the upstream asked (capped), then probes.
    int64_t until = now_ms + pause_ms;
    if (until > self->blocked_until_ms) {
        self->blocked_until_ms = until;
        if (self->circuit == CIRCUIT_CLOSED || self->circuit == CIRCUIT_HALF_OPEN)
            self->paused = true;
        self->counts.pauses++;
        log_info (NULL, "provider %s: paused %lld ms (Retry-After %lld ms)", s_name (self),
                  (long long) pause_ms, (long long) retry_after_ms);
    }
    self->ramp_limit = 1;
}

// s_provider_caused is false for a failure a tenant's choice explains: a
// timeout shorter than the provider is expected to take.
static bool
s_provider_caused (const provider_t *self, const provider_call_t *call)
{
    return !(call->error_type && strcmp (call->error_type, "upstream_timeout") == 0
             && call->timeout_ms > 0 && call->timeout_ms < self->config->breaker_min_timeout_ms);
}

void
provider_finished (provider_t *self, const char *tenant, int64_t now_ms,
                   const provider_call_t *call)
{
    if (self->in_flight > 0)
        self->in_flight--;
    if (call->outcome == PROVIDER_NEUTRAL || !s_shared (self))
        return;
    if (call->outcome == PROVIDER_FAILED && !s_provider_caused (self, call))
        return;
    self->latencies[self->latency_count++ % LATENCY_SAMPLES] = call->latency_ms;
    if (call->outcome == PROVIDER_ANSWERED) {
        self->answered_total++;
        self->consecutive_failures = 0;
        s_answered (self, tenant, now_ms);
        if (self->circuit == CIRCUIT_HALF_OPEN) {
            log_info (NULL, "provider %s: breaker closed", s_name (self));
            self->circuit = CIRCUIT_CLOSED;
            self->counts.closed++;
        }
        // Slow start: twice as many in flight after each success.
        if (self->ramp_limit > 0) {
            self->ramp_limit *= 2;
            if (self->ramp_limit >= RAMP_DONE)
                self->ramp_limit = 0;
        }
        return;
    }
    self->failed_total++;
    s_record_error (self, call->error_type, call->upstream_status);
    if (call->outcome == PROVIDER_OVERLOADED) {
        self->counts.overloaded++;
        s_pause (self, tenant, now_ms, call->retry_after_ms);
        return;
    }
    self->consecutive_failures++;
    int threshold = self->config->circuit_failures;
    if (self->circuit == CIRCUIT_HALF_OPEN
        || (threshold > 0 && self->consecutive_failures >= threshold
            && self->circuit == CIRCUIT_CLOSED)) {
        self->circuit = CIRCUIT_OPEN;
        self->paused = false;
        self->blocked_until_ms = now_ms + self->config->circuit_open_ms;
        self->counts.opened++;
        log_warn (NULL, "provider %s: breaker open for %lld ms after %d consecutive failures",
                  s_name (self), (long long) self->config->circuit_open_ms,
                  self->consecutive_failures);
    }
}

provider_availability_t
provider_availability (const provider_t *self, const char *tenant, int64_t now_ms,
                       int64_t *until_ms)
{
    *until_ms = 0;
    if (!s_shared (self))
        return PROVIDER_AVAILABLE;
    tenant_pause_t *pause = zhashx_lookup (self->pauses, tenant);
    if (pause && now_ms < pause->paused_until_ms) {
        *until_ms = pause->paused_until_ms;
        return PROVIDER_PAUSED;
    }
    if (now_ms < self->blocked_until_ms) {
        *until_ms = self->blocked_until_ms;
        return self->circuit == CIRCUIT_OPEN ? PROVIDER_BROKEN : PROVIDER_PAUSED;
    }
    // A half-open breaker lets its one probe through; the others wait for
    // its answer, which comes within the probe's timeout at most.
    if (self->circuit == CIRCUIT_HALF_OPEN && self->ramp_limit > 0
        && self->in_flight >= self->ramp_limit)
        return PROVIDER_BROKEN;
    return PROVIDER_AVAILABLE;
}

bool
provider_fail_fast (provider_t *self, int64_t now_ms)
{
    return s_shared (self) && self->config->circuit_fail_fast && self->circuit == CIRCUIT_OPEN
           && now_ms < self->blocked_until_ms;
}

int
provider_in_flight (provider_t *self)
{
    return self->in_flight;
}

static int
s_compare (const void *a, const void *b)
{
    int64_t x = *(const int64_t *) a, y = *(const int64_t *) b;
    return (x > y) - (x < y);
}

provider_counts_t
provider_counts (const provider_t *self, int64_t now_ms)
{
    provider_counts_t counts = self->counts;
    counts.circuit = self->circuit == CIRCUIT_OPEN        ? "open"
                     : self->circuit == CIRCUIT_HALF_OPEN ? "half_open"
                                                          : "closed";
    counts.paused = self->paused && now_ms < self->blocked_until_ms;
    return counts;
}

json_t *
provider_state_json (provider_t *self, int64_t now_ms, size_t queued)
{
    s_roll (self, now_ms);
    const char *state = self->circuit == CIRCUIT_OPEN        ? "open"
                        : self->circuit == CIRCUIT_HALF_OPEN ? "half_open"
                        : self->paused && now_ms < self->blocked_until_ms ? "paused"
                                                             : "closed";
    json_t *object = json_object ();
    json_object_set_new (object, "name", json_string (s_name (self)));
    if (s_shared (self)) {
        json_object_set_new (object, "base_url", json_string (self->config->base_url));
        json_object_set_new (object, "rate_limit", json_real (self->config->rate_limit));
        json_object_set_new (object, "max_concurrency",
                             json_integer (self->config->max_concurrency));
    }
    json_object_set_new (object, "rate", json_integer (self->started_last_second));
    json_object_set_new (object, "in_flight", json_integer (self->in_flight));
    json_object_set_new (object, "queued", json_integer ((json_int_t) queued));
    json_object_set_new (object, "circuit", json_string (state));
    json_object_set_new (object, "consecutive_failures", json_integer (self->consecutive_failures));
    json_object_set_new (object, "blocked_for_ms",
                         json_integer (now_ms < self->blocked_until_ms
                                           ? self->blocked_until_ms - now_ms : 0));
    size_t tenants_paused = 0;
    for (tenant_pause_t *pause = zhashx_first (self->pauses); pause;
         pause = zhashx_next (self->pauses))
        tenants_paused += now_ms < pause->paused_until_ms;
    json_object_set_new (object, "tenants_paused", json_integer ((json_int_t) tenants_paused));
    size_t samples = self->latency_count < LATENCY_SAMPLES ? self->latency_count : LATENCY_SAMPLES;
    json_t *latency = json_object ();
    if (samples > 0) {
        int64_t sorted[LATENCY_SAMPLES];
        memcpy (sorted, self->latencies, samples * sizeof *sorted);
        qsort (sorted, samples, sizeof *sorted, s_compare);
        json_object_set_new (latency, "p50", json_integer (sorted[(samples - 1) / 2]));
        json_object_set_new (latency, "p99", json_integer (sorted[(samples - 1) * 99 / 100]));
    }
    else {
        json_object_set_new (latency, "p50", json_null ());
        json_object_set_new (latency, "p99", json_null ());
    }
    json_object_set_new (object, "latency_ms", latency);
    json_t *errors = json_array ();
    size_t kept = self->error_count < RECENT_ERRORS ? self->error_count : RECENT_ERRORS;
    for (size_t i = 0; i < kept; i++) {
        const recent_error_t *error = &self->errors[(self->error_count - 1 - i) % RECENT_ERRORS];
        char stamp[40];
        clock_rfc3339 (error->at_ms, stamp, sizeof stamp);
        json_t *item = json_pack ("{s:s, s:s}", "at", stamp, "type", error->type);
        if (error->upstream_status)
            json_object_set_new (item, "upstream_status", json_integer (error->upstream_status));
        json_array_append_new (errors, item);
    }
    json_object_set_new (object, "recent_errors", errors);
    json_object_set_new (object, "totals",
                         json_pack ("{s:I, s:I, s:I}", "started", (json_int_t) self->started_total,
                                    "answered", (json_int_t) self->answered_total, "failed",
                                    (json_int_t) self->failed_total));
    return object;
}

// s_test_end finishes a call of tenant at at_ms (latency 10 ms).
static void
s_test_end (provider_t *provider, const char *tenant, int64_t at_ms, provider_outcome_t outcome,
            int64_t retry_after_ms, int64_t timeout_ms, const char *type, int status)
{
    provider_call_t call = { .outcome = outcome, .latency_ms = 10,
                             .retry_after_ms = retry_after_ms, .timeout_ms = timeout_ms,
                             .error_type = type, .upstream_status = status };
    provider_finished (provider, tenant, at_ms, &call);
}

// s_test_tenants covers issue 17 #2: what one tenant can and cannot do to a
// shared provider.
static void
s_test_tenants (int64_t now)
{
    config_provider_t config = { .name = "shared", .base_url = "http://127.0.0.1:1",
                                 .circuit_failures = 2, .circuit_open_ms = 1000,
                                 .max_pause_ms = 60000, .breaker_min_timeout_ms = 1000 };
    provider_t *provider = provider_new (&config, false);
    int64_t wake;

    // Timeouts the tenant chose below the floor are not the provider's
    // failures: five of them leave the breaker closed.
    for (int i = 0; i < 5; i++) {
        provider_started (provider, "a", now);
        s_test_end (provider, "a", now, PROVIDER_FAILED, 0, 1, "upstream_timeout", 0);
    }
    assert (provider_can_start (provider, "b", now, &wake));
    json_t *state = provider_state_json (provider, now, 0);
    assert (strcmp (json_string_value (json_object_get (state, "circuit")), "closed") == 0);
    assert (json_integer_value (json_object_get (state, "consecutive_failures")) == 0);
    json_decref (state);
    // At the floor they are: two open it (the threshold).
    for (int i = 0; i < 2; i++) {
        provider_started (provider, "a", now);
        s_test_end (provider, "a", now, PROVIDER_FAILED, 0, 1000, "upstream_timeout", 0);
    }
    assert (!provider_can_start (provider, "b", now, &wake) && wake == now + 1000);
    assert (provider_can_start (provider, "b", now + 1000, &wake));
    provider_started (provider, "b", now + 1000);
    s_test_end (provider, "b", now + 1000, PROVIDER_ANSWERED, 0, 30000, NULL, 200);
    provider_destroy (&provider);

    // Retry-After: 99999999 s pauses everyone 60 s at most.
    now += 10000;
    provider = provider_new (&config, false);
    provider_started (provider, "a", now);
    s_test_end (provider, "a", now, PROVIDER_OVERLOADED, 99999999000LL, 30000, "upstream_status", 429);
    assert (!provider_can_start (provider, "b", now + 1, &wake) && wake == now + 60000);
    assert (!provider_can_start (provider, "a", now + 59999, &wake));
    // Probe after the pause: b is answered, so the upstream is fine.
    now += 60000;
    assert (provider_can_start (provider, "b", now, &wake));
    provider_started (provider, "b", now);
    s_test_end (provider, "b", now, PROVIDER_ANSWERED, 0, 30000, NULL, 200);
    // a triggers a pause again: only a waits now (capped too), b does not.
    provider_started (provider, "a", now + 10);
    s_test_end (provider, "a", now + 10, PROVIDER_OVERLOADED, 99999999000LL, 30000,
                "upstream_status", 429);
    assert (provider_can_start (provider, "b", now + 11, &wake));
    assert (!provider_can_start (provider, "a", now + 11, &wake) && wake == now + 10 + 60000);
    int64_t until;
    assert (provider_availability (provider, "a", now + 11, &until) == PROVIDER_PAUSED
            && until == now + 10 + 60000);
    assert (provider_availability (provider, "b", now + 11, &until) == PROVIDER_AVAILABLE);
    state = provider_state_json (provider, now + 11, 0);
    assert (strcmp (json_string_value (json_object_get (state, "circuit")), "closed") == 0);
    assert (json_integer_value (json_object_get (state, "blocked_for_ms")) == 0);
    assert (json_integer_value (json_object_get (state, "tenants_paused")) == 1);
    json_decref (state);
    // And again, as long as it keeps doing it.
    assert (provider_can_start (provider, "a", now + 60010, &wake));
    provider_started (provider, "b", now + 60010);
    s_test_end (provider, "b", now + 60010, PROVIDER_ANSWERED, 0, 30000, NULL, 200);
    provider_started (provider, "a", now + 60020);
    s_test_end (provider, "a", now + 60020, PROVIDER_OVERLOADED, 5000, 30000, "upstream_status", 429);
    assert (!provider_can_start (provider, "a", now + 60021, &wake) && wake == now + 65020);
    assert (provider_can_start (provider, "b", now + 60021, &wake));
    provider_destroy (&provider);

    // A real overload: nobody else is answered between the refusals, so
    // each pauses everyone.
    now += 200000;
    provider = provider_new (&config, false);
    provider_started (provider, "a", now);
    s_test_end (provider, "a", now, PROVIDER_OVERLOADED, 2000, 30000, "upstream_status", 429);
    assert (!provider_can_start (provider, "b", now + 1, &wake) && wake == now + 2000);
    provider_started (provider, "b", now + 2000);
    s_test_end (provider, "b", now + 2000, PROVIDER_OVERLOADED, 2000, 30000, "upstream_status", 503);
    provider_started (provider, "a", now + 2000);
    s_test_end (provider, "a", now + 2000, PROVIDER_OVERLOADED, 3000, 30000, "upstream_status", 429);
    assert (!provider_can_start (provider, "b", now + 2001, &wake) && wake == now + 5000);
    provider_destroy (&provider);

    // max_pause_ms 0: Retry-After never pauses the provider.
    config.max_pause_ms = 0;
    provider = provider_new (&config, false);
    provider_started (provider, "a", now);
    s_test_end (provider, "a", now, PROVIDER_OVERLOADED, 2000, 30000, "upstream_status", 429);
    assert (provider_can_start (provider, "a", now + 1, &wake));
    provider_destroy (&provider);

    // Direct calls: the direct section's limits, no pauses, no breaker.
    config_provider_t direct = { .max_concurrency = 2, .rate_limit = 0 };
    provider = provider_new (&direct, true);
    provider_started (provider, "a", now);
    s_test_end (provider, "a", now, PROVIDER_OVERLOADED, 2000, 30000, "upstream_status", 429);
    for (int i = 0; i < 10; i++) {
        provider_started (provider, "a", now);
        s_test_end (provider, "a", now, PROVIDER_FAILED, 0, 30000, "connect_failed", 0);
    }
    assert (provider_can_start (provider, "b", now, &wake));
    provider_started (provider, "a", now);
    provider_started (provider, "b", now);
    assert (!provider_can_start (provider, "c", now, &wake) && wake == 0);
    assert (!provider_fail_fast (provider, now));
    assert (provider_availability (provider, "c", now, &until) == PROVIDER_AVAILABLE);
    s_test_end (provider, "b", now, PROVIDER_ANSWERED, 0, 30000, NULL, 200);
    assert (provider_can_start (provider, "c", now, &wake));
    provider_destroy (&provider);
}

void
provider_test (bool verbose)
{
    if (verbose)
        printf (" * provider: ");
    config_provider_t config = { .name = "t", .base_url = "http://127.0.0.1:1",
                                 .rate_limit = 10, .burst = 2, .max_concurrency = 3,
                                 .circuit_failures = 2, .circuit_open_ms = 1000,
                                 .max_pause_ms = 60000, .breaker_min_timeout_ms = 5000 };
    provider_t *provider = provider_new (&config, false);
    int64_t now = clock_mono_ms (), wake;

    // The bucket holds 2 tokens, then one every 100 ms.
    assert (provider_can_start (provider, "", now, &wake));
    provider_started (provider, "", now);
    assert (provider_can_start (provider, "", now, &wake));
    provider_started (provider, "", now);
    assert (!provider_can_start (provider, "", now, &wake));
    assert (wake > now && wake <= now + 101);
    assert (provider_can_start (provider, "", now + 100, &wake));
    provider_started (provider, "", now + 100);
    // Concurrency cap: 3 in flight.
    assert (!provider_can_start (provider, "", now + 1000, &wake) && wake == 0);
    s_test_end (provider, "", now + 1000, PROVIDER_ANSWERED, 0, 0, NULL, 200);
    assert (provider_can_start (provider, "", now + 1000, &wake));

    // Retry-After pauses everyone, then one probe, then slow start.
    s_test_end (provider, "", now + 1000, PROVIDER_OVERLOADED, 2000, 0, "upstream_status", 429);
    assert (!provider_can_start (provider, "", now + 1500, &wake) && wake == now + 3000);
    int64_t paused_until;
    assert (provider_availability (provider, "x", now + 1500, &paused_until) == PROVIDER_PAUSED
            && paused_until == now + 3000);
    s_test_end (provider, "", now + 2000, PROVIDER_NEUTRAL, 0, 0, NULL, 0);
    assert (provider_in_flight (provider) == 0);
    assert (provider_can_start (provider, "", now + 3000, &wake));
    provider_started (provider, "", now + 3000);
    assert (!provider_can_start (provider, "", now + 3000, &wake)); // one probe only
    s_test_end (provider, "", now + 3100, PROVIDER_ANSWERED, 0, 0, NULL, 200);
    assert (provider_can_start (provider, "", now + 3100, &wake));

    // Two consecutive failures open the breaker; the probe's failure reopens it.
    provider_started (provider, "", now + 3100);
    s_test_end (provider, "", now + 3100, PROVIDER_FAILED, 0, 0, "connect_failed", 0);
    provider_started (provider, "", now + 3200);
    s_test_end (provider, "", now + 3200, PROVIDER_FAILED, 0, 0, "connect_failed", 0);
    assert (!provider_can_start (provider, "", now + 3300, &wake) && wake == now + 4200);
    int64_t until;
    assert (provider_availability (provider, "", now + 3300, &until) == PROVIDER_BROKEN
            && until == now + 4200);
    json_t *state = provider_state_json (provider, now + 3300, 4);
    assert (strcmp (json_string_value (json_object_get (state, "circuit")), "open") == 0);
    assert (json_integer_value (json_object_get (state, "queued")) == 4);
    assert (json_array_size (json_object_get (state, "recent_errors")) == 3);
    json_decref (state);
    assert (provider_can_start (provider, "", now + 4200, &wake)); // half-open probe
    provider_started (provider, "", now + 4200);
    // While the probe runs, the breaker still keeps the others away.
    assert (provider_availability (provider, "", now + 4250, &until) == PROVIDER_BROKEN
            && until == 0);
    s_test_end (provider, "", now + 4300, PROVIDER_FAILED, 0, 30000, "upstream_timeout", 0);
    assert (!provider_can_start (provider, "", now + 4400, &wake) && wake == now + 5300);
    assert (provider_can_start (provider, "", now + 5300, &wake));
    provider_started (provider, "", now + 5300);
    s_test_end (provider, "", now + 5400, PROVIDER_ANSWERED, 0, 0, NULL, 200);
    assert (provider_availability (provider, "", now + 5400, &until) == PROVIDER_AVAILABLE
            && until == 0);
    state = provider_state_json (provider, now + 5400, 0);
    assert (strcmp (json_string_value (json_object_get (state, "circuit")), "closed") == 0);
    json_decref (state);
    // What the metrics count of it all: one 429 and its pause; the breaker
    // opened twice (the probe's failure reopened it), half-opened twice,
    // closed once.
    provider_counts_t counts = provider_counts (provider, now + 5400);
    assert (counts.overloaded == 1 && counts.pauses == 1 && counts.tenant_pauses == 0);
    assert (counts.opened == 2 && counts.half_opened == 2 && counts.closed == 1);
    assert (strcmp (counts.circuit, "closed") == 0 && !counts.paused);
    provider_destroy (&provider);

    s_test_tenants (now + 10000);

    // Direct calls without a direct section have no limits.
    provider = provider_new (NULL, true);
    for (int i = 0; i < 10000; i++) {
        assert (provider_can_start (provider, "", now, &wake));
        provider_started (provider, "", now);
    }
    provider_destroy (&provider);
    provider_destroy (&provider);
    if (verbose)
        printf ("OK\n");
}
