// telemetry — the broker's Prometheus series.
#include "telemetry.h"
#include "cache.h"
#include "jobs.h"
#include "jsontext.h"
#include "ledger.h"
#include "mem.h"
#include "metrics.h"
#include "scheduler.h"
#include "store.h"
#include "workers.h"

#include <assert.h>
#include <stdio.h>
#include <string.h>

// The label of direct calls (user URLs, webhooks), as /v1/providers names them.
#define DIRECT "(direct)"

// Group commits take from tens of microseconds (durability "os") to tens
// of milliseconds (an fdatasync on a busy disk).
static const double s_commit_buckets[] = { 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005,
                                           0.01,   0.025,   0.05,   0.1,   0.25,   0.5, 1 };

// The error types jobgate makes (SPEC §3 and the worker's, broker's own);
// any other type a worker reports is counted as "other".
static const char *const s_error_types[]
    = { "upstream_status",      "upstream_timeout",    "connect_failed",
        "blocked_by_policy",    "response_too_large",  "upstream_protocol_error",
        "too_many_redirects",   "invalid_request",     "expired",
        "canceled",             "circuit_open",        "worker_lost",
        "worker_invalid_result", "worker_overloaded",  "worker_out_of_memory",
        "worker_draining",      "worker_stopped",      "result_not_stored",
        "failed",               "other" };

static const char *const s_statuses[] = { "succeeded", "failed", "canceled" };
static const char *const s_kinds[] = { "http", "crawl", "search", "llm" };
static const char *const s_reasons[] = { "store",          "max_queued",          "max_stored_bytes",
                                         "broker_max_queued", "provider_max_queued",
                                         "tokens_per_day", "submit_rate" };
static const char *const s_circuits[] = { "closed", "open", "half_open" };

#define COUNT(array) (sizeof (array) / sizeof (array)[0])

struct _telemetry_t {
    const config_t *config;     // borrowed configuration
    telemetry_sources_t sources; // what scrapes read (borrowed)
    metrics_t *metrics;         // the registry
    // Events.
    metric_t *finished;         // jobs finished {provider,status} (SPEC §7)
    metric_t *failed;           // jobs failed {provider,error_type}
    metric_t *job_duration;     // submission to end {kind}
    metric_t *queue_wait;       // queued to started {provider} (SPEC §7)
    metric_t *attempts;         // attempts started {provider}
    metric_t *retries;          // attempts after the first {provider}
    metric_t *upstream;         // upstream call durations {provider} (SPEC §7)
    metric_t *overloaded;       // 429/503 answers {provider}
    metric_t *refused;          // admissions refused {tenant,reason}
    metric_t *commit;           // group commit durations
    // Read from the providers when scraped.
    metric_t *pauses;           // pauses {provider,scope}
    metric_t *breaker;          // breaker transitions {provider,to}
    metric_t *breaker_state;    // 1 for the state a breaker is in {provider,state}
    metric_t *paused;           // 1 while a provider waits out a Retry-After {provider}
    metric_t *in_flight;        // calls running {provider}
    metric_t *cache[CACHE_OUTCOMES_]; // result cache outcomes {provider}
    // State, read when scraped.
    metric_t *queued;           // jobs queued {provider,priority}
    metric_t *oldest;           // age of the oldest queued job {provider}
    metric_t *running;          // jobs running
    metric_t *delayed;          // jobs waiting for a retry
    metric_t *following;        // jobs waiting for an identical job's call
    metric_t *workers;          // workers connected, not draining
    metric_t *worker_in_flight; // attempts the broker has on each worker {worker}
    metric_t *worker_concurrency; // calls each worker runs at once at most {worker}
    metric_t *worker_cpu;       // each worker's CPU seconds {worker}
    metric_t *worker_rss;       // each worker's resident memory {worker}
    metric_t *worker_fds;       // each worker's open fds {worker}
    metric_t *worker_max_fds;   // each worker's fd limit {worker}
    metric_t *worker_start;     // each worker's start time {worker}
    metric_t *store_used;       // bytes of the store's map in use
    metric_t *store_size;       // the map's size (broker.store_map_mb)
    metric_t *store_records;    // job records in the store
    metric_t *llm_requests;     // LLM calls that reported usage {tenant,provider,model}
    metric_t *llm_tokens;       // their tokens {tenant,provider,model,type}
    metric_t *llm_cost;         // what they cost where priced {tenant,provider,model}
    // Counts other modules keep, read when scraped (telemetry_add_counts).
    struct {
        metric_t *family;       // the counter family
        telemetry_counts_fn *fn; // gives its counts
        void *arg;              // fn's argument
    } counts[TELEMETRY_COUNTS_MAX];
    size_t counts_count;        // how many
};

// s_provider returns the label of a provider index (-1: direct).
static const char *
s_provider (const telemetry_t *self, int provider)
{
    return provider >= 0 && (size_t) provider < self->config->providers_count
               ? self->config->providers[provider].name
               : DIRECT;
}

telemetry_t *
telemetry_new (const config_t *config)
{
    telemetry_t *self = mem_calloc (1, sizeof *self);
    self->config = config;
    metrics_t *m = self->metrics = metrics_new ("broker");
    const double *seconds = metrics_seconds_buckets;
    size_t seconds_count = metrics_seconds_buckets_count;
    self->finished = metrics_counter (m, "jobgate_jobs_finished_total", "provider,status",
                                      "Jobs finished, by their provider and status.");
    self->failed = metrics_counter (m, "jobgate_jobs_failed_total", "provider,error_type",
                                    "Jobs failed, by their provider and error type.");
    self->job_duration = metrics_histogram (
        m, "jobgate_job_duration_seconds", "kind", seconds, seconds_count,
        "Time from submission to the end of a job (end to end), by kind.");
    self->queue_wait = metrics_histogram (
        m, "jobgate_queue_wait_seconds", "provider", seconds, seconds_count,
        "Time a job waited in its provider's queue before an attempt started.");
    self->attempts = metrics_counter (m, "jobgate_attempts_total", "provider",
                                      "Attempts started, by the provider called.");
    self->retries = metrics_counter (m, "jobgate_retries_total", "provider",
                                     "Attempts started that were not their job's first.");
    self->upstream = metrics_histogram (
        m, "jobgate_upstream_duration_seconds", "provider", seconds, seconds_count,
        "Upstream call durations, dispatch to result, by the provider called.");
    self->overloaded = metrics_counter (m, "jobgate_upstream_overloaded_total", "provider",
                                        "Upstream answers 429 or 503 (overloaded).");
    self->pauses = metrics_counter (
        m, "jobgate_provider_pauses_total", "provider,scope",
        "Pauses after a 429/503 with Retry-After: of every tenant, or of one tenant.");
    self->breaker = metrics_counter (m, "jobgate_breaker_transitions_total", "provider,to",
                                     "Circuit breaker transitions, by the state entered.");
    self->breaker_state = metrics_gauge (m, "jobgate_breaker_state", "provider,state",
                                         "1 for the state the provider's breaker is in.");
    self->paused = metrics_gauge (m, "jobgate_provider_paused", "provider",
                                  "1 while the provider waits out a Retry-After for everyone.");
    self->in_flight = metrics_gauge (m, "jobgate_provider_in_flight", "provider",
                                     "Upstream calls running, by provider.");
    self->refused = metrics_counter (m, "jobgate_admission_refused_total", "tenant,reason",
                                     "Work refused at admission (quotas, store, queues).");
    self->cache[CACHE_HIT] = metrics_counter (
        m, "jobgate_result_cache_hits_total", "provider",
        "Jobs answered from the result cache (no upstream call), by provider.");
    self->cache[CACHE_SHARED] = metrics_counter (
        m, "jobgate_result_cache_shared_total", "provider",
        "Jobs answered by the upstream call of an identical job in flight, by provider.");
    self->cache[CACHE_MISS] = metrics_counter (
        m, "jobgate_result_cache_misses_total", "provider",
        "Jobs with a cache that made their own upstream call, by provider.");
    self->commit = metrics_histogram (m, "jobgate_store_commit_duration_seconds", "",
                                      s_commit_buckets, COUNT (s_commit_buckets),
                                      "Group commit durations of the job store.");
    self->queued = metrics_gauge (m, "jobgate_queued_jobs", "provider,priority",
                                  "Jobs queued, by provider and priority.");
    self->oldest = metrics_gauge (m, "jobgate_oldest_queued_job_age_seconds", "provider",
                                  "Age of the provider's oldest queued job (0: none).");
    self->running = metrics_gauge (m, "jobgate_running_jobs", "",
                                   "Jobs running on workers.");
    self->delayed = metrics_gauge (m, "jobgate_delayed_jobs", "",
                                   "Jobs waiting for their retry's backoff.");
    self->following = metrics_gauge (m, "jobgate_following_jobs", "",
                                     "Jobs waiting for the call of an identical job.");
    self->workers = metrics_gauge (m, "jobgate_workers", "",
                                   "Workers connected and taking work.");
    self->worker_in_flight = metrics_gauge (m, "jobgate_worker_in_flight", "worker",
                                            "Attempts running on each worker.");
    self->worker_concurrency = metrics_gauge (m, "jobgate_worker_concurrency", "worker",
                                              "Calls each worker runs at once at most.");
    self->worker_cpu = metrics_counter (m, "jobgate_worker_cpu_seconds_total", "worker",
                                        "Each worker process's CPU time, as it reported it.");
    self->worker_rss = metrics_gauge (m, "jobgate_worker_resident_memory_bytes", "worker",
                                      "Each worker process's resident memory.");
    self->worker_fds = metrics_gauge (m, "jobgate_worker_open_fds", "worker",
                                      "Each worker process's open file descriptors.");
    self->worker_max_fds = metrics_gauge (m, "jobgate_worker_max_fds", "worker",
                                          "Each worker process's file descriptor limit.");
    self->worker_start = metrics_gauge (m, "jobgate_worker_start_time_seconds", "worker",
                                        "When each worker process started, Unix seconds.");
    self->store_used = metrics_gauge (m, "jobgate_store_used_bytes", "",
                                      "Bytes of the job store's map in use.");
    self->store_size = metrics_gauge (m, "jobgate_store_size_bytes", "",
                                      "The job store's map size (broker.store_map_mb).");
    self->store_records = metrics_gauge (m, "jobgate_store_records", "",
                                         "Job records in the store.");
    self->llm_requests = metrics_counter (
        m, "jobgate_llm_requests_total", "tenant,provider,model",
        "LLM calls that reported usage, by tenant, provider and model.");
    self->llm_tokens = metrics_counter (
        m, "jobgate_llm_tokens_total", "tenant,provider,model,type",
        "LLM tokens the upstreams reported, by tenant, provider, model and type "
        "(prompt, completion).");
    self->llm_cost = metrics_counter (
        m, "jobgate_llm_cost_usd_total", "tenant,provider,model",
        "What the LLM tokens cost at the configured prices (USD), by tenant, provider and model.");

    // Every label set known now, at zero.
    for (int p = -1; p < (int) config->providers_count; p++) {
        const char *provider = s_provider (self, p);
        for (size_t s = 0; s < COUNT (s_statuses); s++)
            metric_touch (self->finished, provider, s_statuses[s]);
        for (size_t e = 0; e < COUNT (s_error_types); e++)
            metric_touch (self->failed, provider, s_error_types[e]);
        metric_touch (self->queue_wait, provider);
        metric_touch (self->attempts, provider);
        metric_touch (self->retries, provider);
        metric_touch (self->upstream, provider);
        metric_touch (self->overloaded, provider);
    }
    for (size_t k = 0; k < COUNT (s_kinds); k++)
        metric_touch (self->job_duration, s_kinds[k]);
    for (size_t t = 0; t < config->api_keys_count + config->quotas_count; t++) {
        const char *tenant = t < config->api_keys_count
                                 ? config->api_keys[t].tenant
                                 : config->quotas[t - config->api_keys_count].tenant;
        if (strcmp (tenant, "*") == 0)
            continue;
        for (size_t r = 0; r < COUNT (s_reasons); r++)
            metric_touch (self->refused, tenant, s_reasons[r]);
    }
    metric_touch (self->commit);
    return self;
}

void
telemetry_destroy (telemetry_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    telemetry_t *self = *self_p;
    metrics_destroy (&self->metrics);
    free (self);
    *self_p = NULL;
}

void
telemetry_add_counts (telemetry_t *self, const char *name, const char *label, const char *help,
                      telemetry_counts_fn *fn, void *arg)
{
    assert (self->counts_count < TELEMETRY_COUNTS_MAX);
    self->counts[self->counts_count].family = metrics_counter (self->metrics, name, label, help);
    self->counts[self->counts_count].fn = fn;
    self->counts[self->counts_count].arg = arg;
    self->counts_count++;
}

static void
s_emit (const char *label_value, uint64_t count, void *emit_arg)
{
    metric_set (emit_arg, (double) count, label_value);
}

void
telemetry_set_sources (telemetry_t *self, const telemetry_sources_t *sources)
{
    self->sources = *sources;
}

const char *
telemetry_error_type (const char *type)
{
    for (size_t i = 0; type && i < COUNT (s_error_types); i++)
        if (strcmp (type, s_error_types[i]) == 0)
            return s_error_types[i];
    return "other";
}

void
telemetry_finished (telemetry_t *self, const job_t *job, int provider, job_status_t status,
                    const char *error)
{
    if (!self || !job->kind || strcmp (job->kind, "webhook") == 0)
        return;
    const char *label = s_provider (self, provider);
    metric_add (self->finished, 1, label, job_status_name (status));
    if (status == JOB_FAILED) {
        json_t *parsed = error ? jsontext_loads (error, NULL) : NULL;
        const char *type = json_string_value (json_object_get (parsed, "type"));
        metric_add (self->failed, 1, label, telemetry_error_type (type));
        json_decref (parsed);
    }
    // The kind is checked at submission; the closed list keeps it so.
    const char *kind = "other";
    for (size_t k = 0; k < COUNT (s_kinds); k++)
        if (strcmp (job->kind, s_kinds[k]) == 0)
            kind = s_kinds[k];
    if (job->finished_at >= job->created_at && job->created_at > 0)
        metric_observe (self->job_duration, (double) (job->finished_at - job->created_at) / 1000,
                        kind);
}

void
telemetry_started (telemetry_t *self, int provider, int called, int64_t waited_ms, bool retry)
{
    if (!self)
        return;
    metric_observe (self->queue_wait, (double) (waited_ms > 0 ? waited_ms : 0) / 1000,
                    s_provider (self, provider));
    metric_add (self->attempts, 1, s_provider (self, called));
    if (retry)
        metric_add (self->retries, 1, s_provider (self, called));
}

void
telemetry_call_ended (telemetry_t *self, int called, const provider_call_t *call,
                      int64_t duration_ms)
{
    if (!self || call->outcome == PROVIDER_NEUTRAL)
        return;
    const char *label = s_provider (self, called);
    metric_observe (self->upstream, (double) (duration_ms > 0 ? duration_ms : 0) / 1000, label);
    if (call->outcome == PROVIDER_OVERLOADED)
        metric_add (self->overloaded, 1, label);
}

void
telemetry_refused (telemetry_t *self, const char *tenant, const refusal_t *refusal)
{
    if (!self)
        return;
    metric_add (self->refused, 1, tenant, refusal->reason ? refusal->reason : "other");
}

void
telemetry_committed (telemetry_t *self, int64_t duration_us)
{
    if (self)
        metric_observe (self->commit, (double) (duration_us > 0 ? duration_us : 0) / 1e6);
}

// --- what a scrape reads ---

// s_providers reads each provider's counts and state.
static void
s_providers (telemetry_t *self, int64_t now_ms)
{
    scheduler_t *scheduler = self->sources.scheduler;
    metric_clear (self->breaker_state);
    for (int p = -1; p < (int) self->config->providers_count; p++) {
        const char *label = s_provider (self, p);
        size_t slot = p >= 0 ? (size_t) p : scheduler_slots (scheduler) - 1;
        provider_t *provider = scheduler_provider_at (scheduler, slot);
        provider_counts_t counts = provider_counts (provider, now_ms);
        metric_set (self->in_flight, provider_in_flight (provider), label);
        if (p < 0)
            continue; // direct calls have no breaker or pauses
        metric_set (self->pauses, (double) counts.pauses, label, "provider");
        metric_set (self->pauses, (double) counts.tenant_pauses, label, "tenant");
        metric_set (self->breaker, (double) counts.opened, label, "open");
        metric_set (self->breaker, (double) counts.half_opened, label, "half_open");
        metric_set (self->breaker, (double) counts.closed, label, "closed");
        for (size_t c = 0; c < COUNT (s_circuits); c++)
            metric_set (self->breaker_state, strcmp (counts.circuit, s_circuits[c]) == 0, label,
                        s_circuits[c]);
        metric_set (self->paused, counts.paused, label);
    }
}

// s_queues counts the queued entries by provider and priority, and the
// oldest one's age by provider: a walk over the tenants' lanes.
static void
s_queues (telemetry_t *self, int64_t wall_ms)
{
    size_t slots = scheduler_slots (self->sources.scheduler);
    size_t *counts = mem_calloc (slots * QUEUE_PRIORITIES, sizeof *counts);
    int64_t *oldest = mem_calloc (slots, sizeof *oldest);
    for (tenant_t *tenant = tenants_first (self->sources.tenants); tenant;
         tenant = tenants_next (self->sources.tenants)) {
        tenant_lane_t *lane = tenant_lane (tenant);
        if (lane->queued == 0)
            continue;
        for (size_t slot = 0; slot < slots; slot++)
            for (int p = 0; p < QUEUE_PRIORITIES; p++) {
                entry_list_t *level = &lane->queues[slot].levels[p];
                counts[slot * QUEUE_PRIORITIES + (size_t) p] += level->count;
                for (entry_t *entry = level->head; entry; entry = entry->next)
                    if (oldest[slot] == 0 || entry->queued_at_ms < oldest[slot])
                        oldest[slot] = entry->queued_at_ms;
            }
    }
    for (size_t slot = 0; slot < slots; slot++) {
        const char *label = s_provider (self, slot + 1 < slots ? (int) slot : -1);
        for (int p = 0; p < QUEUE_PRIORITIES; p++) {
            char priority[4];
            snprintf (priority, sizeof priority, "%d", p);
            metric_set (self->queued, (double) counts[slot * QUEUE_PRIORITIES + (size_t) p],
                        label, priority);
        }
        double age = oldest[slot] > 0 && wall_ms > oldest[slot]
                         ? (double) (wall_ms - oldest[slot]) / 1000 : 0;
        metric_set (self->oldest, age, label);
    }
    free (counts);
    free (oldest);
}

static void
s_worker (remote_worker_t *worker, void *arg)
{
    telemetry_t *self = arg;
    const char *key = worker->key;
    metric_set (self->worker_in_flight, (double) worker->running.count, key);
    metric_set (self->worker_concurrency, (double) worker->concurrency, key);
    // A worker of revision 3 reports nothing of its process: no series.
    const worker_figures_t *figures = &worker->figures;
    if (figures->started_at_ms == 0)
        return;
    metric_set (self->worker_cpu, (double) figures->cpu_ms / 1000, key);
    metric_set (self->worker_rss, (double) figures->rss_bytes, key);
    metric_set (self->worker_fds, (double) figures->open_fds, key);
    metric_set (self->worker_max_fds, (double) figures->max_fds, key);
    metric_set (self->worker_start, (double) figures->started_at_ms / 1000, key);
}

// s_workers rebuilds the workers' series: those gone lose theirs.
static void
s_workers (telemetry_t *self)
{
    metric_t *per_worker[] = { self->worker_in_flight, self->worker_concurrency,
                               self->worker_cpu,       self->worker_rss,
                               self->worker_fds,       self->worker_max_fds,
                               self->worker_start };
    for (size_t i = 0; i < COUNT (per_worker); i++)
        metric_clear (per_worker[i]);
    metric_set (self->workers, (double) workers_live (self->sources.workers));
    workers_each (self->sources.workers, s_worker, self);
}

// s_llm_total reads one row of the LLM usage totals (SPEC §3.3).
static void
s_llm_total (const ledger_total_t *total, void *arg)
{
    telemetry_t *self = arg;
    metric_set (self->llm_requests, (double) total->requests, total->tenant, total->provider,
                total->model);
    metric_set (self->llm_tokens, (double) total->prompt_tokens, total->tenant, total->provider,
                total->model, "prompt");
    metric_set (self->llm_tokens, (double) total->completion_tokens, total->tenant,
                total->provider, total->model, "completion");
    if (total->cost_usd >= 0)
        metric_set (self->llm_cost, total->cost_usd, total->tenant, total->provider, total->model);
}

char *
telemetry_render (telemetry_t *self, int64_t now_ms, int64_t wall_ms, size_t *size)
{
    const telemetry_sources_t *from = &self->sources;
    if (from->scheduler)
        s_providers (self, now_ms);
    if (from->scheduler && from->tenants)
        s_queues (self, wall_ms);
    if (from->workers)
        s_workers (self);
    if (from->jobs) {
        metric_set (self->running, (double) jobs_running (from->jobs));
        metric_set (self->delayed, (double) jobs_delayed (from->jobs));
        metric_set (self->following, (double) jobs_following (from->jobs));
        cache_t *cache = jobs_cache (from->jobs);
        for (int p = -1; p < (int) self->config->providers_count; p++)
            for (cache_outcome_t o = 0; o < CACHE_OUTCOMES_; o++)
                metric_set (self->cache[o], (double) cache_counted (cache, p, o),
                            s_provider (self, p));
    }
    if (from->store) {
        uint64_t map = 0, used = store_used_bytes (from->store, &map);
        metric_set (self->store_used, (double) used);
        metric_set (self->store_size, (double) map);
        metric_set (self->store_records, (double) store_count (from->store));
    }
    for (size_t i = 0; i < self->counts_count; i++)
        self->counts[i].fn (self->counts[i].arg, s_emit, self->counts[i].family);
    if (from->ledger)
        ledger_each_total (from->ledger, self->config, s_llm_total, self);
    return metrics_render (self->metrics, size);
}

// --- self-test ---

static void
s_test_counts (void *arg, telemetry_emit_fn *emit, void *emit_arg)
{
    const uint64_t *counts = arg;
    emit ("delivered", counts[0], emit_arg);
    emit ("given_up", counts[1], emit_arg);
}

void
telemetry_test (bool verbose)
{
    if (verbose)
        printf (" * telemetry: ");
    config_provider_t providers[] = { { .name = "mock" } };
    config_api_key_t keys[] = { { .tenant = "a" } };
    config_quota_t quotas[] = { { .tenant = "*" }, { .tenant = "b" } };
    config_t config = { .providers = providers, .providers_count = 1, .api_keys = keys,
                        .api_keys_count = 1, .quotas = quotas, .quotas_count = 2 };
    telemetry_t *telemetry = telemetry_new (&config);

    // Before any event, every known label set is there at zero.
    char *text = telemetry_render (telemetry, 0, 0, NULL);
    assert (metrics_text_has (text, "jobgate_jobs_finished_total{provider=\"mock\",status=\"failed\"} 0"));
    assert (metrics_text_has (text, "jobgate_jobs_finished_total{provider=\"(direct)\","
                              "status=\"succeeded\"} 0"));
    assert (metrics_text_has (text, "jobgate_jobs_failed_total{provider=\"mock\","
                              "error_type=\"upstream_timeout\"} 0"));
    assert (metrics_text_has (text, "jobgate_upstream_duration_seconds_count{provider=\"mock\"} 0"));
    assert (metrics_text_has (text, "jobgate_queue_wait_seconds_bucket{provider=\"mock\",le=\"+Inf\"} 0"));
    assert (metrics_text_has (text, "jobgate_admission_refused_total{tenant=\"a\",reason=\"submit_rate\"} 0"));
    assert (metrics_text_has (text, "jobgate_admission_refused_total{tenant=\"b\",reason=\"max_queued\"} 0"));
    assert (!strstr (text, "tenant=\"*\""));
    assert (metrics_text_has (text, "jobgate_job_duration_seconds_count{kind=\"llm\"} 0"));
    assert (metrics_text_has (text, "jobgate_store_commit_duration_seconds_count 0"));
    assert (strstr (text, "\njobgate_build_info{version=\"") && strstr (text, "\",process=\"broker\"} 1\n"));
    free (text);

    // Events: a success after a 1.5 s wait and a 2 s call, a failure of a
    // type jobgate makes and one it does not, a webhook delivery (not a
    // job), a retry, a 429, a refusal, a commit.
    job_t job = { .kind = "http", .created_at = 1000, .finished_at = 4500 };
    telemetry_started (telemetry, 0, 0, 1500, false);
    provider_call_t call = { .outcome = PROVIDER_ANSWERED };
    telemetry_call_ended (telemetry, 0, &call, 2000);
    telemetry_finished (telemetry, &job, 0, JOB_SUCCEEDED, NULL);
    telemetry_finished (telemetry, &job, 0, JOB_FAILED,
                        "{\"type\":\"upstream_timeout\",\"message\":\"slow\"}");
    telemetry_finished (telemetry, &job, -1, JOB_FAILED, "{\"type\":\"made_up\"}");
    telemetry_finished (telemetry, &job, -1, JOB_FAILED, "not json");
    job_t delivery = { .kind = "webhook", .created_at = 1000, .finished_at = 2000 };
    telemetry_finished (telemetry, &delivery, -1, JOB_SUCCEEDED, NULL);
    telemetry_started (telemetry, 0, -1, 10, true); // a fallback to a direct call
    call.outcome = PROVIDER_OVERLOADED;
    telemetry_call_ended (telemetry, 0, &call, 5);
    call.outcome = PROVIDER_NEUTRAL;
    telemetry_call_ended (telemetry, 0, &call, 5);
    refusal_t refusal = { 429, "over", 100, "submit_rate" };
    telemetry_refused (telemetry, "c", &refusal);
    telemetry_committed (telemetry, 300);

    text = telemetry_render (telemetry, 0, 0, NULL);
    assert (metrics_text_has (text, "jobgate_jobs_finished_total{provider=\"mock\",status=\"succeeded\"} 1"));
    assert (metrics_text_has (text, "jobgate_jobs_finished_total{provider=\"mock\",status=\"failed\"} 1"));
    assert (metrics_text_has (text, "jobgate_jobs_finished_total{provider=\"(direct)\",status=\"failed\"} 2"));
    assert (metrics_text_has (text, "jobgate_jobs_finished_total{provider=\"(direct)\","
                              "status=\"succeeded\"} 0"));
    assert (metrics_text_has (text, "jobgate_jobs_failed_total{provider=\"mock\","
                              "error_type=\"upstream_timeout\"} 1"));
    assert (metrics_text_has (text, "jobgate_jobs_failed_total{provider=\"(direct)\","
                              "error_type=\"other\"} 2"));
    assert (!strstr (text, "made_up"));
    assert (metrics_text_has (text, "jobgate_job_duration_seconds_count{kind=\"http\"} 4"));
    assert (metrics_text_has (text, "jobgate_job_duration_seconds_bucket{kind=\"http\",le=\"2.5\"} 0"));
    assert (metrics_text_has (text, "jobgate_job_duration_seconds_bucket{kind=\"http\",le=\"5\"} 4"));
    assert (metrics_text_has (text, "jobgate_queue_wait_seconds_bucket{provider=\"mock\",le=\"1\"} 1"));
    assert (metrics_text_has (text, "jobgate_queue_wait_seconds_bucket{provider=\"mock\",le=\"2.5\"} 2"));
    assert (metrics_text_has (text, "jobgate_queue_wait_seconds_sum{provider=\"mock\"} 1.51"));
    assert (metrics_text_has (text, "jobgate_attempts_total{provider=\"mock\"} 1"));
    assert (metrics_text_has (text, "jobgate_attempts_total{provider=\"(direct)\"} 1"));
    assert (metrics_text_has (text, "jobgate_retries_total{provider=\"(direct)\"} 1"));
    assert (metrics_text_has (text, "jobgate_retries_total{provider=\"mock\"} 0"));
    assert (metrics_text_has (text, "jobgate_upstream_duration_seconds_count{provider=\"mock\"} 2"));
    assert (metrics_text_has (text, "jobgate_upstream_duration_seconds_sum{provider=\"mock\"} 2.005"));
    assert (metrics_text_has (text, "jobgate_upstream_overloaded_total{provider=\"mock\"} 1"));
    assert (metrics_text_has (text, "jobgate_admission_refused_total{tenant=\"c\",reason=\"submit_rate\"} 1"));
    assert (metrics_text_has (text, "jobgate_store_commit_duration_seconds_bucket{le=\"0.00025\"} 0"));
    assert (metrics_text_has (text, "jobgate_store_commit_duration_seconds_bucket{le=\"0.0005\"} 1"));
    free (text);
    // Another module's counts, wired in one line, read at each scrape.
    uint64_t deliveries[2] = { 0, 0 };
    telemetry_add_counts (telemetry, "jobgate_test_deliveries_total", "outcome",
                          "Deliveries by outcome.", s_test_counts, deliveries);
    text = telemetry_render (telemetry, 0, 0, NULL);
    assert (metrics_text_has (text, "jobgate_test_deliveries_total{outcome=\"given_up\"} 0"));
    free (text);
    deliveries[0] = 7;
    text = telemetry_render (telemetry, 0, 0, NULL);
    assert (metrics_text_has (text, "# TYPE jobgate_test_deliveries_total counter"));
    assert (metrics_text_has (text, "jobgate_test_deliveries_total{outcome=\"delivered\"} 7"));
    free (text);
    assert (strcmp (telemetry_error_type ("expired"), "expired") == 0);
    assert (strcmp (telemetry_error_type (NULL), "other") == 0);
    telemetry_destroy (&telemetry);
    telemetry_destroy (&telemetry);
    if (verbose)
        printf ("OK\n");
}
