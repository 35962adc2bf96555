#include "provider.h"
#include "clock.h"
#include "log.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

#define LATENCY_SAMPLES 512
#define RECENT_ERRORS 10
// Slow start ends when this many calls may run at once again.
#define RAMP_DONE 1024

typedef enum { CIRCUIT_CLOSED, CIRCUIT_OPEN, CIRCUIT_HALF_OPEN } circuit_t;

typedef struct {
    int64_t at_ms;              // wall time
    char type[32];              // error type
    int upstream_status;        // HTTP status, 0 = none
} recent_error_t;

struct _provider_t {
    const config_provider_t *config; // borrowed; NULL for direct calls
    double tokens;              // token bucket level
    int64_t refilled_ms;        // monotonic time of the last refill
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
};

provider_t *
provider_new (const config_provider_t *config)
{
    provider_t *self = calloc (1, sizeof *self);
    if (!self)
        return NULL;
    self->config = config;
    self->tokens = config && config->rate_limit > 0 ? config->burst : 0;
    self->refilled_ms = clock_mono_ms ();
    self->second_start_ms = self->refilled_ms;
    return self;
}

void
provider_destroy (provider_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    free (*self_p);
    *self_p = NULL;
}

static const char *
s_name (provider_t *self)
{
    return self->config ? self->config->name : "(direct)";
}

// s_refill adds the tokens earned since the last refill, up to the burst.
static void
s_refill (provider_t *self, int64_t now_ms)
{
    if (!self->config || self->config->rate_limit <= 0)
        return;
    double earned = (double) (now_ms - self->refilled_ms) * self->config->rate_limit / 1000.0;
    self->refilled_ms = now_ms;
    self->tokens += earned;
    if (self->tokens > self->config->burst)
        self->tokens = self->config->burst;
}

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
provider_can_start (provider_t *self, int64_t now_ms, int64_t *wake_ms)
{
    *wake_ms = 0;
    if (!self->config)
        return true;
    if (now_ms < self->blocked_until_ms) {
        *wake_ms = self->blocked_until_ms;
        return false;
    }
    if (self->circuit == CIRCUIT_OPEN || self->paused) {
        // The pause or the open period is over: probe with one call.
        if (self->circuit == CIRCUIT_OPEN)
            log_info (NULL, "provider %s: breaker half-open, probing", s_name (self));
        self->circuit = self->circuit == CIRCUIT_OPEN ? CIRCUIT_HALF_OPEN : self->circuit;
        self->paused = false;
        self->ramp_limit = 1;
    }
    if (self->config->max_concurrency > 0 && self->in_flight >= self->config->max_concurrency)
        return false;
    if (self->ramp_limit > 0 && self->in_flight >= self->ramp_limit)
        return false;
    if (self->config->rate_limit > 0) {
        s_refill (self, now_ms);
        if (self->tokens < 1.0) {
            double missing = 1.0 - self->tokens;
            *wake_ms = now_ms + (int64_t) (missing * 1000.0 / self->config->rate_limit) + 1;
            return false;
        }
    }
    return true;
}

void
provider_started (provider_t *self, int64_t now_ms)
{
    self->in_flight++;
    self->started_total++;
    s_roll (self, now_ms);
    self->started_this_second++;
    if (self->config && self->config->rate_limit > 0)
        self->tokens -= 1.0;
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

void
provider_finished (provider_t *self, int64_t now_ms, int64_t latency_ms,
                   provider_outcome_t outcome, int64_t retry_after_ms,
                   const char *error_type, int upstream_status)
{
    if (self->in_flight > 0)
        self->in_flight--;
    if (outcome == PROVIDER_NEUTRAL || !self->config)
        return;
    self->latencies[self->latency_count++ % LATENCY_SAMPLES] = latency_ms;
    if (outcome == PROVIDER_ANSWERED) {
        self->answered_total++;
        self->consecutive_failures = 0;
        if (self->circuit == CIRCUIT_HALF_OPEN) {
            log_info (NULL, "provider %s: breaker closed", s_name (self));
            self->circuit = CIRCUIT_CLOSED;
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
    s_record_error (self, error_type, upstream_status);
    if (outcome == PROVIDER_OVERLOADED && retry_after_ms > 0) {
        // Everyone waits as long as the upstream asked, then probes.
        int64_t until = now_ms + retry_after_ms;
        if (until > self->blocked_until_ms) {
            self->blocked_until_ms = until;
            if (self->circuit == CIRCUIT_CLOSED || self->circuit == CIRCUIT_HALF_OPEN)
                self->paused = true;
            log_info (NULL, "provider %s: paused %lld ms (Retry-After)", s_name (self),
                      (long long) retry_after_ms);
        }
        self->ramp_limit = 1;
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
        log_warn (NULL, "provider %s: breaker open for %lld ms after %d consecutive failures",
                  s_name (self), (long long) self->config->circuit_open_ms,
                  self->consecutive_failures);
    }
}

bool
provider_fail_fast (provider_t *self, int64_t now_ms)
{
    return self->config && self->config->circuit_fail_fast && self->circuit == CIRCUIT_OPEN
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
    if (self->config) {
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

void
provider_test (bool verbose)
{
    if (verbose)
        printf (" * provider: ");
    config_provider_t config = { .name = "t", .base_url = "http://127.0.0.1:1",
                                 .rate_limit = 10, .burst = 2, .max_concurrency = 3,
                                 .circuit_failures = 2, .circuit_open_ms = 1000 };
    provider_t *provider = provider_new (&config);
    int64_t now = clock_mono_ms (), wake;

    // The bucket holds 2 tokens, then one every 100 ms.
    assert (provider_can_start (provider, now, &wake));
    provider_started (provider, now);
    assert (provider_can_start (provider, now, &wake));
    provider_started (provider, now);
    assert (!provider_can_start (provider, now, &wake));
    assert (wake > now && wake <= now + 101);
    assert (provider_can_start (provider, now + 100, &wake));
    provider_started (provider, now + 100);
    // Concurrency cap: 3 in flight.
    assert (!provider_can_start (provider, now + 1000, &wake) && wake == 0);
    provider_finished (provider, now + 1000, 50, PROVIDER_ANSWERED, 0, NULL, 200);
    assert (provider_can_start (provider, now + 1000, &wake));

    // Retry-After pauses everyone, then one probe, then slow start.
    provider_finished (provider, now + 1000, 50, PROVIDER_OVERLOADED, 2000, "upstream_status", 429);
    assert (!provider_can_start (provider, now + 1500, &wake) && wake == now + 3000);
    provider_finished (provider, now + 2000, 10, PROVIDER_NEUTRAL, 0, NULL, 0);
    assert (provider_in_flight (provider) == 0);
    assert (provider_can_start (provider, now + 3000, &wake));
    provider_started (provider, now + 3000);
    assert (!provider_can_start (provider, now + 3000, &wake)); // one probe only
    provider_finished (provider, now + 3100, 10, PROVIDER_ANSWERED, 0, NULL, 200);
    assert (provider_can_start (provider, now + 3100, &wake));

    // Two consecutive failures open the breaker; the probe's failure reopens it.
    provider_started (provider, now + 3100);
    provider_finished (provider, now + 3100, 10, PROVIDER_FAILED, 0, "connect_failed", 0);
    provider_started (provider, now + 3200);
    provider_finished (provider, now + 3200, 10, PROVIDER_FAILED, 0, "connect_failed", 0);
    assert (!provider_can_start (provider, now + 3300, &wake) && wake == now + 4200);
    json_t *state = provider_state_json (provider, now + 3300, 4);
    assert (strcmp (json_string_value (json_object_get (state, "circuit")), "open") == 0);
    assert (json_integer_value (json_object_get (state, "queued")) == 4);
    assert (json_array_size (json_object_get (state, "recent_errors")) == 3);
    json_decref (state);
    assert (provider_can_start (provider, now + 4200, &wake)); // half-open probe
    provider_started (provider, now + 4200);
    provider_finished (provider, now + 4300, 10, PROVIDER_FAILED, 0, "upstream_timeout", 0);
    assert (!provider_can_start (provider, now + 4400, &wake) && wake == now + 5300);
    assert (provider_can_start (provider, now + 5300, &wake));
    provider_started (provider, now + 5300);
    provider_finished (provider, now + 5400, 10, PROVIDER_ANSWERED, 0, NULL, 200);
    state = provider_state_json (provider, now + 5400, 0);
    assert (strcmp (json_string_value (json_object_get (state, "circuit")), "closed") == 0);
    json_decref (state);
    provider_destroy (&provider);

    // Direct calls have no limits.
    provider = provider_new (NULL);
    for (int i = 0; i < 10000; i++) {
        assert (provider_can_start (provider, now, &wake));
        provider_started (provider, now);
    }
    provider_destroy (&provider);
    provider_destroy (&provider);
    if (verbose)
        printf ("OK\n");
}
