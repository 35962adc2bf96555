// telemetry — the broker's Prometheus series (SPEC §7; issue 13
// "Metrics"), served on broker.metrics_listen by broker/exporter.h.
//
// The broker owns the truth, so the job figures are counted here, once,
// whatever the number of gateways: events as they happen (a job finished,
// an attempt started, a call ended, a submission refused, a commit), state
// read from its owners when Prometheus scrapes (queues, providers, workers,
// the store). Workers' own figures come with their HEARTBEATs (revision 4,
// docs/protocol.md §5) and are served here with a `worker` label (their
// identity across reconnects), so `--scale worker=N` needs no port per
// worker.
//
// Label values are bounded: providers are the configured ones plus
// "(direct)" (user URLs, as /v1/providers names them); error types a
// closed list (anything else is "other"); tenants the configured ones
// (made at zero) and those refused; workers the live ones. Every label set
// known at start exists at zero.
//
// Webhook deliveries (kind "webhook") are the broker's own work, not a
// client's job: they are not in the job series.
#ifndef JOBGATE_TELEMETRY_H
#define JOBGATE_TELEMETRY_H

#include "config.h"
#include "job.h"
#include "provider.h"
#include "queue.h"
#include "tenant.h"
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct _telemetry_t telemetry_t;
struct _scheduler_t;
struct _tenants_t;
struct _workers_t;
struct _jobs_t;
struct _store_t;
struct _ledger_t;

// What the broker's render reads when scraped (all borrowed; any may be
// NULL in a test: its series are then left out).
typedef struct {
    struct _scheduler_t *scheduler; // queues, providers
    struct _tenants_t *tenants;     // the tenants' lanes
    struct _workers_t *workers;     // the workers and their figures
    struct _jobs_t *jobs;           // running, delayed, following jobs; the cache's counts
    struct _store_t *store;         // the store's size and records
    struct _ledger_t *ledger;       // the LLM usage counters
} telemetry_sources_t;

// telemetry_new registers the broker's families for config (borrowed) and
// makes the label sets known at start. This function can't fail.
telemetry_t *telemetry_new (const config_t *config);

// telemetry_destroy frees it; nulls *self_p.
void telemetry_destroy (telemetry_t **self_p);

// telemetry_set_sources tells where the scrape-time figures live.
void telemetry_set_sources (telemetry_t *self, const telemetry_sources_t *sources);

// telemetry_finished counts a job's end: by its own provider (index in the
// config, -1 for direct) and status; a failure by its error type (error is
// the job's error as JSON text, or NULL); its time from submission to end
// by kind.
void telemetry_finished (telemetry_t *self, const job_t *job, int provider,
                         job_status_t status, const char *error);

// telemetry_started counts an attempt that starts: its job's provider's
// queue wait (waited_ms), the attempt on the provider it calls, and a retry
// when it is not the job's first attempt.
void telemetry_started (telemetry_t *self, int provider, int called, int64_t waited_ms,
                        bool retry);

// telemetry_call_ended counts an upstream call's end on the provider it
// called: its duration, and a 429/503. Neutral ends (canceled, handed back,
// lost) are not upstream figures.
void telemetry_call_ended (telemetry_t *self, int called, const provider_call_t *call,
                           int64_t duration_ms);

// telemetry_refused counts a refused admission of tenant's work.
void telemetry_refused (telemetry_t *self, const char *tenant, const refusal_t *refusal);

// telemetry_committed counts one group commit that took duration_us.
void telemetry_committed (telemetry_t *self, int64_t duration_us);

// Called by a counts source for each of its label values and count.
typedef void (telemetry_emit_fn) (const char *label_value, uint64_t count, void *emit_arg);

// A module that counts something itself (and renders no metric lines)
// gives its counts through such a function: it calls emit for every label
// value it knows, zeros included.
typedef void (telemetry_counts_fn) (void *arg, telemetry_emit_fn *emit, void *emit_arg);

// telemetry_add_counts serves a counter family name{label} (help: one
// line) whose counts fn(arg) gives at each scrape: the one line that wires
// another module's counter, e.g. webhook deliveries by outcome or refused
// CURVE peers by reason. At most TELEMETRY_COUNTS_MAX of them.
#define TELEMETRY_COUNTS_MAX 16
void telemetry_add_counts (telemetry_t *self, const char *name, const char *label,
                           const char *help, telemetry_counts_fn *fn, void *arg);

// telemetry_render reads the state series from the sources at now_ms
// (monotonic) and wall_ms, and returns every series in the text format
// (the caller frees it); *size is its length. Suits exporter_render_fn
// when wrapped.
char *telemetry_render (telemetry_t *self, int64_t now_ms, int64_t wall_ms, size_t *size);

// telemetry_error_type returns the label an error type gets: itself when it
// is one jobgate makes, else "other".
const char *telemetry_error_type (const char *type);

// telemetry_test runs the self-test.
void telemetry_test (bool verbose);

#endif
