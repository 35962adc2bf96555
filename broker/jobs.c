// jobs — the active jobs and the transitions of their lifecycle.
#include "jobs.h"
#include "cache.h"
#include "delivery.h"
#include "jsontext.h"
#include "ledger.h"
#include "log.h"
#include "mem.h"
#include "report.h"
#include "testpeer.h"

#include <assert.h>
#include <stdio.h>
#include <string.h>

// Retry backoff without a provider's own: full jitter over an exponential
// ceiling.
#define BACKOFF_BASE_MS 500
#define BACKOFF_CAP_MS 60000
// Partial data kept per running attempt for subscribers that join late or
// reconnect (SSE Last-Event-ID); past this, chunks are only relayed live.
#define CHUNKS_KEPT_MAX (256 * 1024)

struct _jobs_t {
    const config_t *config;     // borrowed configuration
    evloop_t *loop;             // borrowed loop (retry timers)
    store_t *store;             // the records (borrowed)
    outbox_t *outbox;           // where events wait for the commit (borrowed)
    tenants_t *tenants;         // the tenants' quota state (borrowed)
    scheduler_t *scheduler;     // the queues and providers (borrowed)
    workers_t *workers;         // the workers and their leases (borrowed)
    zhashx_t *entries;          // id → entry_t, every active job
    size_t running;             // entries running (held by a worker, or by nobody)
    size_t delayed;             // entries waiting for their retry timer
    size_t *provider_active;    // active jobs per configured provider
    ledger_t *ledger;           // the LLM usage totals (borrowed), or NULL
    telemetry_t *telemetry;     // the broker's series (borrowed), or NULL
    cache_t *cache;             // the shared calls in flight, the cache's counts
    zhashx_t *hit_deliveries;   // id of a hit not committed yet → its callback delivery's id
    uint64_t deliveries[DELIVERY_OUTCOME_COUNT_]; // webhook attempts and deliveries, by outcome
};

jobs_t *
jobs_new (const config_t *config, evloop_t *loop, store_t *store, outbox_t *outbox,
          tenants_t *tenants, scheduler_t *scheduler, workers_t *workers)
{
    jobs_t *self = mem_calloc (1, sizeof *self);
    *self = (jobs_t) { .config = config, .loop = loop, .store = store, .outbox = outbox,
                       .tenants = tenants, .scheduler = scheduler, .workers = workers };
    self->entries = zhashx_new ();
    // Keyed by the entry's own id (an entry leaves the table before it is
    // freed): no copy of the key per active job.
    zhashx_set_key_duplicator (self->entries, NULL);
    zhashx_set_key_destructor (self->entries, NULL);
    self->provider_active = mem_calloc (config->providers_count + 1,
                                        sizeof *self->provider_active);
    self->cache = cache_new (config->providers_count);
    self->hit_deliveries = zhashx_new ();
    zhashx_set_destructor (self->hit_deliveries, (zhashx_destructor_fn *) zstr_free);
    zhashx_set_duplicator (self->hit_deliveries, (zhashx_duplicator_fn *) strdup);
    return self;
}

void
jobs_destroy (jobs_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    jobs_t *self = *self_p;
    for (entry_t *entry = zhashx_first (self->entries); entry;
         entry = zhashx_next (self->entries)) {
        evloop_timer_cancel (self->loop, &entry->timer);
        free (entry->chunks);
        free (entry);
    }
    zhashx_destroy (&self->entries);
    cache_destroy (&self->cache);
    zhashx_destroy (&self->hit_deliveries);
    free (self->provider_active);
    free (self);
    *self_p = NULL;
}

entry_t *
jobs_entry (jobs_t *self, const char *id)
{
    return zhashx_lookup (self->entries, id);
}

size_t
jobs_active (jobs_t *self)
{
    return zhashx_size (self->entries);
}

size_t
jobs_running (jobs_t *self)
{
    return self->running;
}

size_t
jobs_delayed (jobs_t *self)
{
    return self->delayed;
}

size_t
jobs_following (jobs_t *self)
{
    return cache_following (self->cache);
}

cache_t *
jobs_cache (jobs_t *self)
{
    return self->cache;
}

const char *
jobs_hit_delivery (jobs_t *self, const char *id)
{
    return zhashx_lookup (self->hit_deliveries, id);
}

void
jobs_forget_committed (jobs_t *self)
{
    if (zhashx_size (self->hit_deliveries) == 0)
        return;
    zlistx_t *ids = zhashx_keys (self->hit_deliveries);
    for (const char *id = zlistx_first (ids); id; id = zlistx_next (ids))
        if (!store_pending_has (self->store, id))
            zhashx_delete (self->hit_deliveries, id);
    zlistx_destroy (&ids);
}

const size_t *
jobs_provider_active (jobs_t *self)
{
    return self->provider_active;
}

bool
jobs_provider_full (jobs_t *self, const char *provider)
{
    int index = scheduler_provider (self->scheduler, provider);
    return index >= 0 && self->config->providers[index].max_queued
           && self->provider_active[index] >= self->config->providers[index].max_queued;
}

// --- what every transition shares ---

// s_put writes a job's version into the store's batch: a finished job's
// with its expiry; is_new indexes it (listing, Idempotency-Key).
static void
s_put (jobs_t *self, const job_t *job, bool is_new)
{
    int64_t expire_at = job_status_terminal (job->status)
                            ? clock_wall_ms () + self->config->result_ttl_ms
                            : 0;
    store_put (self->store, job, expire_at, is_new);
}

// s_answer_policy returns the cache policy under which a finished job
// answers later identical jobs (SPEC §3.2): a success of its own call; one
// answered by another's call or by the cache is no new answer (disabled).
static cache_policy_t
s_answer_policy (jobs_t *self, const job_t *job)
{
    cache_policy_t policy = { .enabled = false };
    if (job->status == JOB_SUCCEEDED && job->result && job->cache
        && strcmp (job->cache, cache_outcome_name (CACHE_MISS)) == 0)
        policy = cache_policy_of (job, self->config);
    return policy;
}

// s_cached_keep_ms returns how long a success that answers identical jobs
// is kept: its result TTL or its cache TTL, whichever is longer.
static int64_t
s_cached_keep_ms (jobs_t *self, const cache_policy_t *policy)
{
    return self->config->result_ttl_ms > policy->ttl_ms ? self->config->result_ttl_ms
                                                        : policy->ttl_ms;
}

// s_put_cached writes a success that answers later identical jobs (SPEC
// §3.2): kept for s_cached_keep_ms, and indexed under its key.
static void
s_put_cached (jobs_t *self, const job_t *job, const cache_policy_t *policy)
{
    store_put (self->store, job, job->finished_at + s_cached_keep_ms (self, policy), false);
    store_cache_index (self->store, job->id, policy->key.bytes, job->finished_at);
}

// s_put_finished writes a finished job's version: under its answer's cache
// policy when it has one.
static void
s_put_finished (jobs_t *self, const job_t *job, const cache_policy_t *policy)
{
    if (policy->enabled)
        s_put_cached (self, job, policy);
    else
        s_put (self, job, false);
}

// s_put_news writes a later version of a finished job (the delivery state
// of its callback changed): kept no shorter than its finish asked. In the
// batch of its finish, the version replaces that one, index and all; in a
// later one, the cache's index (written then) stands as it is: indexing
// again could make an older success the answer over a newer one.
static void
s_put_news (jobs_t *self, const job_t *job)
{
    cache_policy_t policy = s_answer_policy (self, job);
    if (!policy.enabled)
        s_put (self, job, false);
    else if (store_pending_has (self->store, job->id))
        s_put_cached (self, job, &policy);
    else {
        int64_t expire_at = clock_wall_ms () + self->config->result_ttl_ms;
        int64_t cached_until = job->finished_at + s_cached_keep_ms (self, &policy);
        store_put (self->store, job, cached_until > expire_at ? cached_until : expire_at, false);
    }
}

// s_publish keeps the job's status event for after the commit; with_record:
// the event carries the committed record (a client waits on the job).
static void
s_publish_with (jobs_t *self, const job_t *job, bool with_record)
{
    // A webhook delivery is the broker's own work, not the clients' jobs.
    outbox_event (self->outbox, job->id, job->status, job->attempts, job->attempt_seq,
                  strcmp (job->kind, "webhook") != 0, with_record ? job->tenant : NULL);
}

static void
s_publish (jobs_t *self, const job_t *job)
{
    s_publish_with (self, job, false);
}

// The tokens a call's prompt is taken to hold: one per this many bytes of
// its spec (the messages and all around them: an estimate on the high side
// for English text, which averages about four characters a token).
#define TOKEN_ESTIMATE_BYTES 4

// s_token_estimate returns what an llm call of job reserves of its
// provider's token budget (broker/tokens.h): its spec's bytes / 4 plus the
// completion tokens it may take, its request's max_completion_tokens or
// max_tokens, else the provider's default_max_tokens; 0 for other kinds.
// The spec is read only for a provider with tokens_per_minute (the budget
// then is the operator's wish: its cost, a parse of the spec when the job is
// queued, is paid for it); without, the default stands (the upstream's
// word on what is left, x-ratelimit-remaining-tokens, holds calls too).
static int64_t
s_token_estimate (const job_t *job, const config_provider_t *provider)
{
    if (!provider || !job->kind || strcmp (job->kind, "llm") != 0)
        return 0;
    int64_t completion = (int64_t) provider->default_max_tokens;
    if (provider->tokens_per_minute > 0) {
        json_t *spec = jsontext_loads (job->spec, NULL);
        json_t *request = json_object_get (spec, "request");
        json_t *max = json_object_get (request, "max_completion_tokens");
        if (!json_is_integer (max))
            max = json_object_get (request, "max_tokens");
        if (json_is_integer (max) && json_integer_value (max) > 0
            && json_integer_value (max) <= 1000000000)
            completion = json_integer_value (max);
        json_decref (spec);
    }
    size_t spec_bytes = job->spec ? strlen (job->spec) : 0;
    return (int64_t) (spec_bytes / TOKEN_ESTIMATE_BYTES) + (completion > 0 ? completion : 1);
}

// s_entry_new makes the entry of an active job (on no list yet), counted
// against its tenant and its provider.
static entry_t *
s_entry_new (jobs_t *self, const job_t *job)
{
    entry_t *entry = mem_calloc (1, sizeof *entry);
    memcpy (entry->id, job->id, sizeof entry->id);
    entry->jobs = self;
    entry->priority = job->priority;
    entry->tenant = tenants_get (self->tenants, job->tenant, evloop_now_ms (self->loop));
    tenant_job_added (entry->tenant);
    entry->provider = scheduler_provider (self->scheduler, job->provider);
    if (entry->provider >= 0) {
        self->provider_active[entry->provider]++;
        entry->token_estimate = s_token_estimate (job,
                                                  &self->config->providers[entry->provider]);
    }
    entry->attempt = (int) job->attempt_seq;
    entry->attempt_timeout_ms = job->timeout_ms;
    entry->expire_at_ms = job->expire_after_ms > 0 ? job->created_at + job->expire_after_ms : 0;
    zhashx_insert (self->entries, entry->id, entry);
    return entry;
}

// s_call_ended ends an entry's call for its provider: neutral unless the
// RESULT said otherwise (a no-op once ended).
static void
s_call_ended (jobs_t *self, entry_t *entry, provider_call_t call)
{
    if (entry->in_provider)
        telemetry_call_ended (self->telemetry, scheduler_call_provider (self->scheduler, entry),
                              &call, evloop_now_ms (self->loop) - entry->dispatched_ms);
    scheduler_call_ended (self->scheduler, entry, evloop_now_ms (self->loop), call);
}

// s_leave_running takes a running entry off its worker (or the orphans) and
// out of the running counts; the caller says where it goes next.
static void
s_leave_running (jobs_t *self, entry_t *entry)
{
    workers_release (self->workers, entry);
    self->running--;
    tenant_call_ended (entry->tenant);
}

// s_release makes each follower of a call that ended without a success run
// on its own call (SPEC §3.2: nothing is lost), in the order they came.
static void
s_release (jobs_t *self, entry_list_t *released, const char *leader_id)
{
    while (released->head) {
        entry_t *entry = released->head;
        entry_list_remove (entry);
        job_t *job = store_get (self->store, entry->id);
        if (job) {
            job_set_str (&job->cache, cache_outcome_name (CACHE_MISS));
            s_put (self, job, false);
            job_destroy (&job);
        }
        cache_count (self->cache, entry->provider, CACHE_MISS);
        scheduler_enqueue (self->scheduler, entry, false);
        log_info (entry->id, "the call it shared (job %s) ended without a success: queued for "
                  "its own", leader_id);
    }
}

// s_entry_free forgets an entry, wherever it is; the followers of a call it
// led run on their own.
static void
s_entry_free (jobs_t *self, entry_t *entry)
{
    s_call_ended (self, entry, (provider_call_t) { .outcome = PROVIDER_NEUTRAL });
    evloop_timer_cancel (self->loop, &entry->timer);
    if (entry->state == ENTRY_QUEUED)
        scheduler_remove (self->scheduler, entry);
    else if (entry->state == ENTRY_RUNNING)
        s_leave_running (self, entry);
    else if (entry->state == ENTRY_DELAYED)
        self->delayed--;
    entry_list_t released = { NULL, NULL, 0 };
    cache_leave (self->cache, entry, &released);
    s_release (self, &released, entry->id);
    // Off any other list (jobs_fail_fast's).
    entry_list_remove (entry);
    if (entry->provider >= 0)
        self->provider_active[entry->provider]--;
    tenant_job_removed (entry->tenant);
    zhashx_delete (self->entries, entry->id);
    free (entry->chunks);
    free (entry);
}

// s_requeue is the one way back into the queue: a running job goes first in
// its tenant's queue (it keeps its place), its call ended as neutral for its
// provider (the upstream said nothing), its version and event say queued.
// An attempt that did not run leaves the budget; a lost one stays in it.
static void
s_requeue (jobs_t *self, entry_t *entry, job_t *job, bool counted)
{
    s_call_ended (self, entry, (provider_call_t) { .outcome = PROVIDER_NEUTRAL });
    s_leave_running (self, entry);
    if (!counted && job->attempts > 0)
        job->attempts--;
    job->status = JOB_QUEUED;
    s_put (self, job, false);
    s_publish (self, job);
    scheduler_enqueue (self->scheduler, entry, true);
}

// s_backoff_ms returns the delay before the next attempt: full jitter over
// an exponential ceiling, never shorter than the upstream asked.
static int64_t
s_backoff_ms (int attempt, int64_t retry_after_ms, int64_t base_ms, int64_t cap_ms)
{
    int64_t ceiling = base_ms;
    for (int i = 1; i < attempt && ceiling < cap_ms; i++)
        ceiling *= 2;
    if (ceiling > cap_ms)
        ceiling = cap_ms;
    int64_t delay = (int64_t) randof ((int) ceiling + 1);
    return delay > retry_after_ms ? delay : retry_after_ms;
}

// s_retry_due ends a retry's wait: the entry is queued again (its "queued"
// event left with the RESULT).
static void
s_retry_due (evloop_t *loop, void *arg)
{
    entry_t *entry = arg;
    // The timer handle is freed by the loop after this call.
    entry->timer = NULL;
    entry->jobs->delayed--;
    scheduler_enqueue (entry->jobs->scheduler, entry, false);
}

// s_retry_later makes a running job wait for its next attempt: queued, with
// the failed attempt's result and error, after a backoff. Returns the wait
// in ms (0: queued at once, on a fallback).
static int64_t
s_retry_later (jobs_t *self, entry_t *entry, job_t *job, const report_t *report)
{
    s_leave_running (self, entry);
    job->status = JOB_QUEUED;
    job_set_str (&job->result, report->result);
    job_set_str (&job->error, report->error);
    s_put (self, job, false);
    s_publish (self, job);
    int called = scheduler_call_provider (self->scheduler, entry);
    const config_provider_t *provider = called >= 0 ? &self->config->providers[called] : NULL;
    // The provider failed (not the worker): the next attempt goes to the
    // next of its fallbacks, at once and first in the tenant's queue: the
    // backoff and Retry-After protect the provider that failed, not that
    // one.
    if ((report->verdict == PROVIDER_FAILED || report->verdict == PROVIDER_OVERLOADED)
        && scheduler_route_next (self->scheduler, entry)) {
        scheduler_enqueue (self->scheduler, entry, true);
        log_info (job->id, "attempt %d failed (%s) at %s; next attempt at %s", entry->attempt,
                  report->error_type[0] ? report->error_type : "no detail", provider->name,
                  self->config->providers[scheduler_call_provider (self->scheduler, entry)].name);
        return 0;
    }
    int64_t delay = s_backoff_ms (job->attempts, report->retry_after_ms,
                                  provider ? provider->retry_base_ms : BACKOFF_BASE_MS,
                                  provider ? provider->retry_max_ms : BACKOFF_CAP_MS);
    entry->state = ENTRY_DELAYED;
    self->delayed++;
    entry->timer = evloop_timer_start (self->loop, delay, s_retry_due, entry);
    log_info (job->id, "attempt %d failed (%s); retry in %lld ms", entry->attempt,
              report->error_type[0] ? report->error_type : "no detail", (long long) delay);
    return delay;
}

// s_webhook_for makes, in the batch of the job's terminal state, the
// delivery of its callback (broker/delivery.h), admitted like any work of
// the tenant's: it counts against its active and running limits (issue 17
// #5). The job's record is given the delivery's state (pending, or given
// up when it could not be queued); the caller writes it. Writes the
// delivery's id into delivery_id (JOB_ID_LEN + 1 bytes, may be NULL; ""
// when none was made). Returns true when the job asked for a callback.
static bool
s_webhook_for (jobs_t *self, job_t *job, char *delivery_id)
{
    if (delivery_id)
        delivery_id[0] = '\0';
    char *url = delivery_url (job);
    if (!url)
        return false;
    int64_t now = evloop_now_ms (self->loop);
    tenant_t *tenant = tenants_get (self->tenants, job->tenant, now);
    admission_t admission = { .path = ADMIT_WEBHOOK, .now_ms = now };
    refusal_t refusal;
    job_t *delivery = NULL;
    delivery_state_t state = { .state = DELIVERY_GIVEN_UP,
                               .max_attempts = self->config->webhook_max_attempts };
    if (!tenants_admit (self->tenants, tenant, &admission, &refusal)) {
        log_warn (job->id, "webhook not queued: %s", refusal.why);
        state.last_error = "not_queued_over_quota";
    }
    else if (!(delivery = delivery_new (job, url, self->config, clock_wall_ms ()))) {
        log_error (job->id, "webhook not queued: its payload does not fit the JSON policy");
        state.last_error = "not_queued_too_large";
    }
    free (url);
    if (delivery) {
        s_put (self, delivery, true);
        scheduler_enqueue (self->scheduler, s_entry_new (self, delivery), false);
        log_info (job->id, "webhook %s queued for the callback", delivery->id);
        if (delivery_id)
            memcpy (delivery_id, delivery->id, JOB_ID_LEN + 1);
        state = (delivery_state_t) { .id = delivery->id, .state = DELIVERY_PENDING,
                                     .max_attempts = delivery->max_attempts,
                                     .next_attempt_at = delivery->created_at };
    }
    else
        self->deliveries[DELIVERY_OUTCOME_NOT_QUEUED]++;
    free (job->webhook);
    job->webhook = delivery_state (&state);
    job_destroy (&delivery);
    return true;
}

// s_answer_status returns the HTTP status that answered an attempt, 0 when
// none did (a success's is in its result).
static int
s_answer_status (const report_t *report)
{
    if (report->upstream_status > 0 || report->outcome != REPORT_SUCCEEDED || !report->result)
        return report->upstream_status;
    json_t *result = jsontext_loads (report->result, NULL);
    json_int_t status = json_integer_value (json_object_get (result, "status"));
    json_decref (result);
    return status > 0 && status < 1000 ? (int) status : 0;
}

// s_delivery_news counts how a webhook delivery's attempt ended and writes
// where the delivery now stands into the record of the job it reports
// (unless that job expired, or was run again since and awaits another
// delivery). delivery is the delivery's record after the transition;
// last_status and last_error (may be NULL) say how the attempt ended;
// next_in_ms is the wait before the next attempt, when one is due.
static void
s_delivery_news (jobs_t *self, const job_t *delivery, int last_status, const char *last_error,
                 int64_t next_in_ms)
{
    delivery_outcome_t outcome = delivery->status == JOB_SUCCEEDED ? DELIVERY_OUTCOME_DELIVERED
                                 : job_status_terminal (delivery->status) ? DELIVERY_OUTCOME_GIVEN_UP
                                 : DELIVERY_OUTCOME_RETRIED;
    self->deliveries[outcome]++;
    char id[JOB_ID_LEN + 1];
    job_t *job = delivery_job_id (delivery, id) == 0 ? store_get (self->store, id) : NULL;
    if (!job || !delivery_state_is_of (job->webhook, delivery->id)) {
        job_destroy (&job);
        return;
    }
    int64_t now = clock_wall_ms ();
    delivery_state_t state = {
        .id = delivery->id,
        .state = outcome == DELIVERY_OUTCOME_DELIVERED ? DELIVERY_DELIVERED
                 : outcome == DELIVERY_OUTCOME_GIVEN_UP ? DELIVERY_GIVEN_UP : DELIVERY_PENDING,
        .attempts = delivery->attempts, .max_attempts = delivery->max_attempts,
        .last_status = last_status, .last_error = last_error, .last_attempt_at = now,
        .next_attempt_at = outcome == DELIVERY_OUTCOME_RETRIED ? now + next_in_ms : 0,
    };
    free (job->webhook);
    job->webhook = delivery_state (&state);
    s_put_news (self, job);
    log_info (job->id, "webhook %s: %s after %d attempt(s)", delivery->id,
              delivery_outcome_name (outcome), delivery->attempts);
    job_destroy (&job);
}

// s_answer_from_cache finishes a new job at once with the newest success of
// its key, when that is fresh for the job's own ttl (SPEC §3.2 "hit"):
// written, published, its callback delivered; no entry, no upstream call.
// False (nothing done) when there is no such success.
static bool
s_answer_from_cache (jobs_t *self, job_t *job, const cache_policy_t *policy)
{
    char id[JOB_ID_LEN + 1];
    int64_t succeeded_at = 0, now = clock_wall_ms ();
    if (store_cache_find (self->store, policy->key.bytes, id, &succeeded_at) < 0
        || !cache_fresh (succeeded_at, policy->ttl_ms, now))
        return false;
    // The key names the tenant; the record is checked all the same, and a
    // success whose result the store could not keep answers nothing.
    job_t *source = store_get (self->store, id);
    bool usable = source && source->status == JOB_SUCCEEDED && source->result
                  && strcmp (source->tenant, job->tenant) == 0
                  && strcmp (source->kind, job->kind) == 0;
    if (usable) {
        job->status = JOB_SUCCEEDED;
        job->started_at = job->finished_at = now;
        job_set_str (&job->result, source->result);
        // The answer's usage and who gave it come with it (the ledger
        // counted the call once, when it was made).
        job_set_str (&job->usage, source->usage);
        job_set_str (&job->answered_by, source->answered_by);
        job_set_str (&job->cache, cache_outcome_name (CACHE_HIT));
        // The delivery first: its state goes into this version.
        char delivery_id[JOB_ID_LEN + 1];
        s_webhook_for (self, job, delivery_id);
        s_put (self, job, true);
        s_publish (self, job);
        cache_count (self->cache, scheduler_provider (self->scheduler, job->provider), CACHE_HIT);
        log_info (job->id, "answered from the cache with the result of job %s (%lld ms old)", id,
                  (long long) (now - succeeded_at));
        // Until the commit, a refused submission takes its delivery with it
        // (jobs_hit_delivery).
        if (delivery_id[0])
            zhashx_update (self->hit_deliveries, job->id, delivery_id);
    }
    job_destroy (&source);
    return usable;
}

// s_enqueue_cached queues a queued job with a cache (new or recovered, its
// version already in the batch): it follows the call of an identical job in
// flight, or makes its own and leads it (a streamed request does neither).
// Its record says which (rewritten when that changes). Returns the outcome.
static cache_outcome_t
s_enqueue_cached (jobs_t *self, entry_t *entry, job_t *job, const cache_policy_t *policy)
{
    entry_t *leader = policy->streamed ? NULL : cache_leader (self->cache, &policy->key);
    cache_outcome_t outcome = leader ? CACHE_SHARED : CACHE_MISS;
    if (!job->cache || strcmp (job->cache, cache_outcome_name (outcome)) != 0) {
        job_set_str (&job->cache, cache_outcome_name (outcome));
        s_put (self, job, false);
    }
    if (leader) {
        cache_follow (self->cache, leader, entry);
        log_info (job->id, "shares the call of job %s", leader->id);
        // The call runs at the most urgent priority of the jobs it answers:
        // a follower never waits behind its leader's lower one.
        if (entry->priority > leader->priority) {
            bool queued = leader->state == ENTRY_QUEUED;
            if (queued)
                scheduler_remove (self->scheduler, leader);
            leader->priority = entry->priority;
            if (queued)
                scheduler_enqueue (self->scheduler, leader, false);
        }
    }
    else {
        if (!policy->streamed)
            cache_lead (self->cache, &policy->key, entry);
        scheduler_enqueue (self->scheduler, entry, false);
    }
    return outcome;
}

// --- the transitions ---

void
jobs_accept (jobs_t *self, job_t *job)
{
    // The broker owns the state: whatever the record said of it is reset.
    job->status = JOB_QUEUED;
    job->attempts = 0;
    job->attempt_seq = 0;
    job->started_at = job->finished_at = 0;
    job_set_str (&job->result, NULL);
    job_set_str (&job->error, NULL);
    job_set_str (&job->usage, NULL);
    job_set_str (&job->lease, NULL);
    job_set_str (&job->answered_by, NULL);
    job_set_str (&job->cache, NULL);
    if (job->created_at <= 0)
        job->created_at = clock_wall_ms ();
    cache_policy_t policy = cache_policy_of (job, self->config);
    if (policy.enabled && s_answer_from_cache (self, job, &policy))
        return;
    if (policy.enabled)
        job_set_str (&job->cache, cache_outcome_name (CACHE_MISS));
    s_put (self, job, true);
    entry_t *entry = s_entry_new (self, job);
    if (!policy.enabled)
        scheduler_enqueue (self->scheduler, entry, false);
    else if (s_enqueue_cached (self, entry, job, &policy) == CACHE_MISS)
        cache_count (self->cache, entry->provider, CACHE_MISS);
    s_publish (self, job);
}

void
jobs_await (jobs_t *self, const char *id)
{
    entry_t *entry = zhashx_lookup (self->entries, id);
    if (entry)
        entry->awaited = true;
}

void
jobs_recover (jobs_t *self, job_t *job, int64_t now_ms)
{
    entry_t *entry = s_entry_new (self, job);
    // The calls in flight are rebuilt from the records: a queued job with a
    // cache follows the call of an identical one recovered before it (the
    // store scans in id order, oldest first) or leads its own.
    cache_policy_t policy = job->cache ? cache_policy_of (job, self->config)
                                       : (cache_policy_t) { .enabled = false };
    if (policy.enabled && job->status == JOB_QUEUED) {
        s_enqueue_cached (self, entry, job, &policy);
        return;
    }
    if (policy.enabled && !policy.streamed && !cache_leader (self->cache, &policy.key))
        cache_lead (self->cache, &policy.key, entry);
    if (job->status == JOB_RUNNING) {
        // Its worker may still be running it and will send the result
        // after it reconnects; give it a moment before running it again.
        entry->state = ENTRY_RUNNING;
        workers_hold_orphan (self->workers, entry, now_ms);
        self->running++;
        tenant_call_started (entry->tenant);
    }
    else
        scheduler_enqueue (self->scheduler, entry, false);
}

void
jobs_retry (jobs_t *self, job_t *job)
{
    job->status = JOB_QUEUED;
    job->attempts = 0;
    job->started_at = job->finished_at = 0;
    job_set_str (&job->result, NULL);
    job_set_str (&job->error, NULL);
    job_set_str (&job->answered_by, NULL);
    job_set_str (&job->usage, NULL);
    // Its next finish makes a delivery of its own.
    job_set_str (&job->webhook, NULL);
    // A retry makes its own call (a canceled follower's included).
    if (job->cache)
        job_set_str (&job->cache, cache_outcome_name (CACHE_MISS));
    s_put (self, job, false);
    s_publish (self, job);
    scheduler_enqueue (self->scheduler, s_entry_new (self, job), false);
    log_info (job->id, "retry requested: queued again");
}

job_t *
jobs_start (jobs_t *self, entry_t *entry, remote_worker_t *worker, int64_t now_ms)
{
    job_t *job = store_get (self->store, entry->id);
    if (!job) {
        log_error (entry->id, "queued job missing from the store; dropped");
        s_entry_free (self, entry);
        return NULL;
    }
    int64_t now = clock_wall_ms ();
    if (entry->expire_at_ms > 0 && now > entry->expire_at_ms) {
        char *error = report_error_json ("expired", "the job was not started before expire_after_ms");
        jobs_finish (self, entry, job, JOB_FAILED, job->result, error);
        free (error);
        job_destroy (&job);
        return NULL;
    }
    // A new attempt identity, never used before for this job, whatever
    // retries reset (issue 17 #3).
    job->status = JOB_RUNNING;
    job->attempts++;
    job->attempt_seq++;
    job->started_at = now;
    s_put (self, job, false);
    s_publish (self, job);

    entry->state = ENTRY_RUNNING;
    entry->attempt = (int) job->attempt_seq;
    entry->attempt_timeout_ms = job->timeout_ms;
    free (entry->chunks);
    entry->chunks = NULL;
    entry->chunks_size = 0;
    workers_hold (self->workers, worker, entry, now_ms);
    scheduler_call_started (self->scheduler, entry, now_ms);
    telemetry_started (self->telemetry, entry->provider,
                       scheduler_call_provider (self->scheduler, entry), now - entry->queued_at_ms,
                       job->attempts > 1);
    self->running++;
    tenant_call_started (entry->tenant);
    return job;
}

void
jobs_give_back (jobs_t *self, entry_t *entry, job_t *job)
{
    s_requeue (self, entry, job, false);
}

void
jobs_lose (jobs_t *self, entry_t *entry, const char *why)
{
    job_t *job = store_get (self->store, entry->id);
    if (!job) {
        log_error (entry->id, "active job missing from the store; dropped");
        s_entry_free (self, entry);
        return;
    }
    if (job->attempts >= job->max_attempts) {
        char *error = report_error_json ("worker_lost", why);
        jobs_finish (self, entry, job, JOB_FAILED, job->result, error);
        free (error);
    }
    else {
        s_requeue (self, entry, job, true);
        log_warn (job->id, "attempt %d lost (%s); requeued", entry->attempt, why);
    }
    if (strcmp (job->kind, "webhook") == 0)
        s_delivery_news (self, job, 0, "worker_lost", 0);
    job_destroy (&job);
}

// s_answered_by names, on a job that a RESULT finishes, the provider whose
// HTTP answer it was (its own or a fallback): none when the attempt got no
// answer (a timeout, a connect error, a worker's refusal) or had no provider.
static void
s_answered_by (jobs_t *self, const entry_t *entry, job_t *job, const report_t *report)
{
    int called = scheduler_call_provider (self->scheduler, entry);
    bool answered = report->outcome == REPORT_SUCCEEDED || report->upstream_status > 0;
    job_set_str (&job->answered_by,
                 called >= 0 && answered ? self->config->providers[called].name : NULL);
}

const char *
jobs_via (jobs_t *self, const entry_t *entry, const job_t *job, const char **model)
{
    *model = NULL;
    int called = scheduler_call_provider (self->scheduler, entry);
    if (called < 0 || called == entry->provider)
        return NULL;
    const config_provider_t *via = &self->config->providers[called];
    if (job->kind && strcmp (job->kind, "llm") == 0 && via->models_count > 0)
        *model = via->models[0];
    return via->name;
}

// s_model_asked returns the model an llm job's request names (caller
// frees), or NULL.
static char *
s_model_asked (const job_t *job)
{
    json_t *spec = jsontext_loads (job->spec, NULL);
    const char *model = json_string_value (json_object_get (json_object_get (spec, "request"),
                                                            "model"));
    char *copy = model && strlen (model) <= REPORT_MODEL_MAX ? mem_strdup (model) : NULL;
    json_decref (spec);
    return copy;
}

_Static_assert (LEDGER_COUNTS == STORE_TOKENS_COUNTS, "the store keeps a ledger row's counts");

// s_account keeps what an attempt's RESULT says it cost (revision 3): its
// provider's token budget is settled with it and takes the upstream's word
// on what is left; an llm job keeps its usage (its job object shows it,
// SPEC §3.1) and the ledger counts it, the row going into the store with
// this RESULT's commit (SPEC §3.3).
static void
s_account (jobs_t *self, entry_t *entry, job_t *job, const report_t *report)
{
    int64_t now = evloop_now_ms (self->loop);
    // A call handed back unstarted used nothing; one that reported no
    // usage keeps its estimate.
    int64_t used = report->outcome == REPORT_HANDBACK ? 0
                   : report->usage ? report->total_tokens : -1;
    scheduler_tokens_used (self->scheduler, entry, used, report->remaining_tokens,
                           report->reset_tokens_ms, now);
    if (!report->usage || strcmp (job->kind, "llm") != 0)
        return;
    job_set_str (&job->usage, report->usage);
    // The row is the provider's the call went to (a fallback's, with its
    // model, when the job's own was unavailable).
    int called = scheduler_call_provider (self->scheduler, entry);
    if (!self->ledger || called < 0)
        return;
    char *asked = report->model[0] ? NULL : s_model_asked (job);
    ledger_call_t call = {
        .tenant = job->tenant, .provider = self->config->providers[called].name,
        .model = report->model[0] ? report->model : asked ? asked : "(unnamed)",
        .prompt_tokens = report->prompt_tokens, .completion_tokens = report->completion_tokens,
        .total_tokens = report->total_tokens,
    };
    char key[LEDGER_KEY_MAX + 1];
    size_t key_len;
    uint64_t counts[LEDGER_COUNTS];
    if (ledger_add (self->ledger, &call, clock_wall_ms (), key, &key_len, counts) == 0)
        store_put_tokens (self->store, key, counts);
    else
        log_warn (job->id, "usage not counted: a name holds a control character or is too long");
    free (asked);
}

const uint64_t *
jobs_delivery_counts (jobs_t *self)
{
    return self->deliveries;
}

void
jobs_set_ledger (jobs_t *self, ledger_t *ledger)
{
    self->ledger = ledger;
}

void
jobs_set_telemetry (jobs_t *self, telemetry_t *telemetry)
{
    self->telemetry = telemetry;
}

void
jobs_report (jobs_t *self, entry_t *entry, pack_reader_t *body)
{
    job_t *job = store_get (self->store, entry->id);
    if (!job) {
        s_entry_free (self, entry);
        return;
    }
    report_t report;
    report_read (&report, body, self->config->max_result_bytes, job->id);
    s_account (self, entry, job, &report);
    s_call_ended (self, entry, report_call (&report));
    int64_t retry_in_ms = 0;
    if (report.outcome == REPORT_HANDBACK) {
        // A draining worker gave the job back unfinished: it did not fail,
        // so the attempt is not counted, and it runs again at once.
        jobs_give_back (self, entry, job);
        log_info (job->id, "handed back by a draining worker; requeued");
    }
    else if (report.outcome == REPORT_SUCCEEDED) {
        s_answered_by (self, entry, job, &report);
        jobs_finish (self, entry, job, JOB_SUCCEEDED, report.result, NULL);
    }
    else if (report.outcome == REPORT_RETRY && job->attempts < job->max_attempts)
        retry_in_ms = s_retry_later (self, entry, job, &report);
    else {
        s_answered_by (self, entry, job, &report);
        jobs_finish (self, entry, job, JOB_FAILED, report.result,
                     report.error ? report.error : "{\"type\":\"failed\"}");
    }
    if (report.outcome != REPORT_HANDBACK && strcmp (job->kind, "webhook") == 0)
        s_delivery_news (self, job, s_answer_status (&report),
                         report.error_type[0] ? report.error_type : NULL, retry_in_ms);
    report_free (&report);
    job_destroy (&job);
}

void
jobs_chunk (jobs_t *self, entry_t *entry, int64_t index, const char *data, size_t size)
{
    if (entry->chunks_size + 8 + size <= CHUNKS_KEPT_MAX) {
        entry->chunks = mem_realloc (entry->chunks, entry->chunks_size + 8 + size);
        uint32_t header[2] = { (uint32_t) index, (uint32_t) size };
        memcpy (entry->chunks + entry->chunks_size, header, 8);
        memcpy (entry->chunks + entry->chunks_size + 8, data, size);
        entry->chunks_size += 8 + size;
    }
    outbox_chunk (self->outbox, entry->id, entry->attempt, index, data, size);
}

// s_finish_followers finishes the jobs waiting for the call of leader,
// which succeeded with job's result: each with that result, as shared.
static void
s_finish_followers (jobs_t *self, entry_t *leader, const job_t *job)
{
    entry_t *follower;
    while ((follower = cache_first_follower (leader))) {
        job_t *copy = store_get (self->store, follower->id);
        if (!copy) {
            log_error (follower->id, "active job missing from the store; dropped");
            s_entry_free (self, follower);
            continue;
        }
        job_set_str (&copy->cache, cache_outcome_name (CACHE_SHARED));
        job_set_str (&copy->usage, job->usage);
        job_set_str (&copy->answered_by, job->answered_by);
        copy->started_at = job->started_at;
        cache_count (self->cache, follower->provider, CACHE_SHARED);
        log_info (copy->id, "answered by the call of job %s", job->id);
        jobs_finish (self, follower, copy, JOB_SUCCEEDED, job->result, NULL);
        job_destroy (&copy);
    }
}

void
jobs_finish (jobs_t *self, entry_t *entry, job_t *job, job_status_t status, const char *result,
             const char *error)
{
    job->status = status;
    job->finished_at = clock_wall_ms ();
    job_set_str (&job->result, result);
    job_set_str (&job->error, error);
    // A success of its own call answers identical jobs later (SPEC §3.2).
    cache_policy_t policy = s_answer_policy (self, job);
    s_put_finished (self, job, &policy);
    s_publish_with (self, job, entry->awaited);
    log_info (job->id, "finished status=%s attempts=%d", job_status_name (status), job->attempts);
    telemetry_finished (self->telemetry, job, entry->provider, status, error);
    if (status == JOB_SUCCEEDED)
        s_finish_followers (self, entry, job);
    // The entry first: the delivery is one more active job of the tenant,
    // which this finish just freed. (The followers of a call that did not
    // succeed run on their own from here.)
    s_entry_free (self, entry);
    // The version with its delivery's state replaces, in the same batch,
    // the one written above.
    if (strcmp (job->kind, "webhook") != 0 && s_webhook_for (self, job, NULL))
        s_put_finished (self, job, &policy);
}

void
jobs_fail_fast (jobs_t *self, int64_t now_ms)
{
    entry_list_t failing = { NULL, NULL, 0 };
    scheduler_take_failing (self->scheduler, now_ms, &failing);
    if (!failing.head)
        return;
    char *error = report_error_json ("circuit_open",
                                     "the provider's circuit breaker is open after repeated failures");
    while (failing.head) {
        // Finishing takes the entry off the list.
        entry_t *entry = failing.head;
        job_t *job = store_get (self->store, entry->id);
        if (job) {
            jobs_finish (self, entry, job, JOB_FAILED, job->result, error);
            job_destroy (&job);
        }
        else
            s_entry_free (self, entry);
    }
    free (error);
}

void
jobs_drop (jobs_t *self, entry_t *entry)
{
    s_entry_free (self, entry);
}

void
jobs_drop_result (jobs_t *self, const char *id, size_t size, bool terminal)
{
    job_t *job = store_get (self->store, id);
    if (!job || !job->result) {
        job_destroy (&job);
        return;
    }
    job_set_str (&job->result, NULL);
    if (terminal) {
        char *error = report_error_json ("result_not_stored",
                                         "the job store was full: the result was dropped");
        job_set_str (&job->error, error);
        free (error);
    }
    log_error (id, "the store is full: a %zu-byte version loses its result", size);
    s_put (self, job, false);
    job_destroy (&job);
}

// s_mismatch reports a count that does not agree; returns false.
static bool
s_mismatch (const char *what, const char *tenant, size_t counted, size_t kept)
{
    fprintf (stderr, "jobs: %s%s%s: counted %zu, kept %zu\n", what, tenant ? " of " : "",
             tenant ? tenant : "", counted, kept);
    return false;
}

bool
jobs_consistent (jobs_t *self)
{
    // Per tenant: active, queued, running, as counted from the entries.
    typedef struct { size_t active, queued, running; } counts_t;
    zhashx_t *counted = zhashx_new ();
    zhashx_set_destructor (counted, (zhashx_destructor_fn *) zstr_free);
    size_t queued = 0, running = 0, delayed = 0, shared = 0, leaders = 0;
    bool ok = true;
    for (entry_t *entry = zhashx_first (self->entries); entry; entry = zhashx_next (self->entries)) {
        const char *name = tenant_name (entry->tenant);
        counts_t *counts = zhashx_lookup (counted, name);
        if (!counts) {
            counts = mem_calloc (1, sizeof *counts);
            zhashx_insert (counted, name, counts);
        }
        counts->active++;
        if (entry->state == ENTRY_QUEUED) {
            queued++;
            counts->queued++;
            queue_t *queue = &tenant_lane (entry->tenant)->queues[scheduler_slot (self->scheduler,
                                                                                  entry)];
            ok = ok && entry->list == &queue->levels[entry->priority];
        }
        else if (entry->state == ENTRY_RUNNING) {
            running++;
            counts->running++;
            ok = ok && workers_holds (self->workers, entry);
        }
        else if (entry->state == ENTRY_SHARED) {
            shared++;
            ok = ok && entry->group && !cache_is_leader (entry) && entry->list;
        }
        else
            delayed++;
        // A leader is queued, running or delayed, and leads its key's call.
        if (cache_is_leader (entry))
            leaders++;
    }
    if (!ok)
        fprintf (stderr, "jobs: an entry is not on the list its state says\n");
    ok = ok && (queued == scheduler_queued (self->scheduler)
                || s_mismatch ("queued", NULL, queued, scheduler_queued (self->scheduler)));
    ok = ok && (running == self->running || s_mismatch ("running", NULL, running, self->running));
    ok = ok && (delayed == self->delayed || s_mismatch ("delayed", NULL, delayed, self->delayed));
    ok = ok && (shared == cache_following (self->cache)
                || s_mismatch ("shared", NULL, shared, cache_following (self->cache)));
    ok = ok && (leaders == cache_calls (self->cache)
                || s_mismatch ("calls", NULL, leaders, cache_calls (self->cache)));
    for (tenant_t *tenant = tenants_first (self->tenants); tenant && ok;
         tenant = tenants_next (self->tenants)) {
        const char *name = tenant_name (tenant);
        counts_t none = { 0, 0, 0 }, *counts = zhashx_lookup (counted, name);
        if (!counts)
            counts = &none;
        tenant_lane_t *lane = tenant_lane (tenant);
        ok = (counts->active == tenant_active (tenant)
              || s_mismatch ("active", name, counts->active, tenant_active (tenant)))
             && (counts->queued == lane->queued
                 || s_mismatch ("queued", name, counts->queued, lane->queued))
             && (counts->running == tenant_running (tenant)
                 || s_mismatch ("running", name, counts->running, tenant_running (tenant)))
             && (lane->in_ring == (lane->queued > 0)
                 || s_mismatch ("on the ring", name, lane->in_ring, lane->queued));
    }
    zhashx_destroy (&counted);
    return ok;
}

// --- self-test ---
//
// The jobs over a real store, scheduler, tenants and workers; the outbox
// publishes on a PAIR socket that a test peer reads, so each transition's
// events are checked as a subscriber sees them.

typedef struct {
    char dir[64];               // the store's directory
    config_t config;            // the configuration
    config_provider_t providers[3]; // "p"; "q", whose fallback is "b"; "b"
    evloop_t *loop;             // for retry timers
    store_t *store;             // the records
    zsock_t *frontend;          // the outbox's (unused) ROUTER
    zsock_t *publisher;         // the outbox's events
    testpeer_t *subscriber;     // reads them
    outbox_t *outbox;           // events until the flush
    tenants_t *tenants;         // quota state
    scheduler_t *scheduler;     // queues and providers
    workers_t *workers;         // one worker, w
    remote_worker_t *worker;    // it
    jobs_t *jobs;               // under test
} test_rig_t;

// s_test_render renders a JOB answer (or an event's record) from the store
// (arg), as the broker does.
static bool
s_test_render (const char *id, const char *tenant, bool with_chunks, pack_writer_t *body,
               void *arg)
{
    job_t *job = store_get (arg, id);
    bool found = job && strcmp (job->tenant, tenant) == 0;
    if (found)
        job_pack (job, body);
    job_destroy (&job);
    return found;
}

static uint64_t
s_test_usage (const char *record_tenant, void *arg)
{
    return store_tenant_bytes (arg, record_tenant);
}

static void
s_test_rig (test_rig_t *rig)
{
    memset (rig, 0, sizeof *rig);
    snprintf (rig->dir, sizeof rig->dir, "/tmp/jobgate-jobs-test-XXXXXX");
    assert (mkdtemp (rig->dir));
    rig->providers[0] = (config_provider_t) { .name = "p", .base_url = "http://127.0.0.1:9",
                                              .circuit_failures = 1, .circuit_open_ms = 60000,
                                              .circuit_fail_fast = true, .retry_base_ms = 1,
                                              .retry_max_ms = 1, .max_pause_ms = 1000 };
    static char *q_fallback[1] = { "b" }, *b_models[1] = { "b-model" };
    rig->providers[1] = (config_provider_t) { .name = "q", .base_url = "http://127.0.0.1:9",
                                              .retry_base_ms = 60000, .retry_max_ms = 60000,
                                              .max_pause_ms = 1000, .fallback = q_fallback,
                                              .fallback_count = 1 };
    rig->providers[2] = (config_provider_t) { .name = "b", .base_url = "http://127.0.0.1:9",
                                              .max_pause_ms = 1000, .models = b_models,
                                              .models_count = 1 };
    rig->config = (config_t) { .providers = rig->providers, .providers_count = 3,
                               .result_ttl_ms = 60000, .max_result_bytes = 4096,
                               .store_map_mb = 16, .webhook_max_attempts = 2,
                               .webhook_timeout_ms = 1000 };
    char error[256];
    rig->store = store_new (rig->dir, 16, false, error, sizeof error);
    assert (rig->store);
    rig->loop = evloop_new ();
    // Each rig binds names of its own: libzmq releases an inproc name when
    // its reaper thread has closed the socket, which may be after the next
    // rig binds (seen under ASan, where everything is slower).
    static int rigs = 0;
    char front[64], pub[64];
    snprintf (front, sizeof front, "inproc://jobs-test-front-%d", rigs);
    snprintf (pub, sizeof pub, "inproc://jobs-test-pub-%d", rigs++);
    rig->frontend = zsock_new_router (front);
    rig->publisher = zsock_new (ZMQ_PAIR);
    assert (rig->frontend && rig->publisher && zsock_bind (rig->publisher, "%s", pub) == 0);
    rig->subscriber = testpeer_new (ZMQ_PAIR, pub);
    rig->outbox = outbox_new (rig->frontend, rig->publisher, 1, s_test_render, rig->store);
    rig->scheduler = scheduler_new (&rig->config);
    rig->tenants = tenants_new (&rig->config, scheduler_slots (rig->scheduler), s_test_usage,
                                rig->store);
    rig->workers = workers_new (store_lease_key (rig->store));
    zframe_t *identity = zframe_new ("w", 1);
    rig->worker = workers_ready (rig->workers, NULL, identity, 100, 100, "w", 1,
                                 evloop_now_ms (rig->loop));
    zframe_destroy (&identity);
    rig->jobs = jobs_new (&rig->config, rig->loop, rig->store, rig->outbox, rig->tenants,
                          rig->scheduler, rig->workers);
}

static void
s_test_rig_end (test_rig_t *rig)
{
    assert (jobs_consistent (rig->jobs) && scheduler_consistent (rig->scheduler));
    // Entries first: they point into the tenants' lanes.
    jobs_destroy (&rig->jobs);
    jobs_destroy (&rig->jobs);
    workers_destroy (&rig->workers);
    tenants_destroy (&rig->tenants);
    scheduler_destroy (&rig->scheduler);
    outbox_destroy (&rig->outbox);
    testpeer_destroy (&rig->subscriber);
    zsock_destroy (&rig->frontend);
    zsock_destroy (&rig->publisher);
    evloop_destroy (&rig->loop);
    store_destroy (&rig->store);
    char command[128];
    snprintf (command, sizeof command, "rm -rf '%s'", rig->dir);
    assert (system (command) == 0);
}

// s_test_expect commits, flushes the outbox and checks the events of job
// id that the subscriber received since it last looked.
static void
s_test_expect (test_rig_t *rig, const char *id, const char *expected)
{
    assert (store_commit (rig->store) == 0);
    outbox_flush (rig->outbox, NULL, NULL);
    assert (jobs_consistent (rig->jobs) && scheduler_consistent (rig->scheduler));
    testpeer_expect_events (rig->subscriber, id, expected);
}

// s_test_accept_as submits a job of tenant (provider "p" or NULL) at
// priority and writes its id.
static void
s_test_accept_as (test_rig_t *rig, const char *tenant, int priority, const char *provider,
                  const char *spec, int max_attempts, char *id)
{
    job_t *job = job_new ();
    job->priority = priority;
    job_id_generate (job->id);
    strcpy (id, job->id);
    job_set_str (&job->tenant, tenant);
    job_set_str (&job->kind, "http");
    job_set_str (&job->provider, provider);
    job_set_str (&job->spec, spec ? spec : "{\"request\":{\"path\":\"/json\"}}");
    job->status = JOB_SUCCEEDED;    // the broker resets what a record says of its state
    job->attempts = 7;
    job->max_attempts = max_attempts;
    job->timeout_ms = 1000;
    jobs_accept (rig->jobs, job);
    job_destroy (&job);
}

// s_test_accept submits a job of tenant t (provider "p" or NULL) and writes
// its id.
static void
s_test_accept (test_rig_t *rig, const char *provider, const char *spec, int max_attempts,
               char *id)
{
    s_test_accept_as (rig, "t", 5, provider, spec, max_attempts, id);
}

// s_test_start dispatches the next entry, which must be job id's, on the
// worker; returns the record it would carry.
static entry_t *
s_test_start (test_rig_t *rig, const char *id, int attempts, int attempt_seq)
{
    int64_t wake;
    jobs_fail_fast (rig->jobs, evloop_now_ms (rig->loop));
    entry_t *entry = scheduler_next (rig->scheduler, evloop_now_ms (rig->loop), &wake);
    assert (entry && strcmp (entry->id, id) == 0);
    job_t *job = jobs_start (rig->jobs, entry, rig->worker, evloop_now_ms (rig->loop));
    assert (job && job->status == JOB_RUNNING);
    assert (job->attempts == attempts && job->attempt_seq == attempt_seq);
    assert (entry->worker == rig->worker && entry->attempt == attempt_seq);
    job_destroy (&job);
    return entry;
}

// s_test_report applies a RESULT of entry's running attempt.
static void
s_test_report (test_rig_t *rig, entry_t *entry, const char *outcome, const char *result,
               const char *error)
{
    pack_writer_t *writer = pack_writer_new ();
    pack_put_str (writer, "outcome", outcome);
    pack_put_str (writer, "result", result);
    pack_put_str (writer, "error", error);
    size_t size;
    const void *data = pack_writer_data (writer, &size);
    pack_reader_t *reader = pack_reader_new (data, size);
    jobs_report (rig->jobs, entry, reader);
    pack_reader_destroy (&reader);
    pack_writer_destroy (&writer);
}

// s_test_job reads a job's newest version.
static job_t *
s_test_job (test_rig_t *rig, const char *id)
{
    job_t *job = store_get (rig->store, id);
    assert (job);
    return job;
}

// s_test_delivery runs the delivery of job id's callback, which must be
// next: queued for direct calls under t's delivery owner, its creation
// publishing nothing.
static void
s_test_delivery (test_rig_t *rig, const char *id)
{
    int64_t wake;
    entry_t *hook = scheduler_next (rig->scheduler, evloop_now_ms (rig->loop), &wake);
    assert (hook && hook->provider == -1 && strcmp (tenant_name (hook->tenant), "t") == 0);
    char hook_id[JOB_ID_LEN + 1];
    strcpy (hook_id, hook->id);
    job_t *delivery = s_test_job (rig, hook_id);
    assert (strcmp (delivery->kind, "webhook") == 0 && strstr (delivery->spec, id));
    assert (strcmp (delivery->tenant, "#webhooks/t") == 0 && delivery->max_attempts == 2);
    job_destroy (&delivery);
    job_t *running = jobs_start (rig->jobs, hook, rig->worker, evloop_now_ms (rig->loop));
    assert (running);
    job_destroy (&running);
    s_test_report (rig, hook, "succeeded", "{\"status\":204}", NULL);
    // No "queued" first: its creation published nothing.
    s_test_expect (rig, hook_id, "running/1 succeeded/1");
}

// s_test_cache_of checks job id's status and cache field.
static void
s_test_cache_of (test_rig_t *rig, const char *id, job_status_t status, const char *cache)
{
    job_t *job = s_test_job (rig, id);
    assert (job->status == status);
    assert (cache ? job->cache && strcmp (job->cache, cache) == 0 : !job->cache);
    job_destroy (&job);
}

// s_test_event_record takes the subscriber's next event, which must be
// job id's with status, and returns the record it carries (NULL: none).
static job_t *
s_test_event_record (test_rig_t *rig, const char *id, const char *status)
{
    proto_msg_t *event = testpeer_take (rig->subscriber);
    assert (event);
    size_t len = 0, size = 0;
    const char *event_id = pack_get_str (event->body, "id", &len);
    assert (event_id && len == JOB_ID_LEN && memcmp (event_id, id, JOB_ID_LEN) == 0);
    const char *event_status = pack_get_str (event->body, "status", &len);
    assert (event_status && len == strlen (status) && memcmp (event_status, status, len) == 0);
    const char *data = pack_get_str (event->body, "record", &size);
    job_t *job = NULL;
    if (data) {
        pack_reader_t *reader = pack_reader_new (data, size);
        assert (reader);
        job = job_unpack (reader);
        assert (job);
        pack_reader_destroy (&reader);
    }
    proto_msg_destroy (&event);
    return job;
}

// s_test_awaited: the end of a job a client waits on carries its committed
// record (docs/protocol.md §3.3), and only the end, and only of that job.
static void
s_test_awaited (void)
{
    test_rig_t rig;
    s_test_rig (&rig);
    char awaited[JOB_ID_LEN + 1], plain[JOB_ID_LEN + 1];
    s_test_accept (&rig, "p", NULL, 1, awaited);
    jobs_await (rig.jobs, awaited);
    s_test_accept (&rig, "p", NULL, 1, plain);
    jobs_await (rig.jobs, "0190a000-0000-7000-8000-000000000000");  // not active: nothing
    assert (store_commit (rig.store) == 0);
    outbox_flush (rig.outbox, NULL, NULL);
    assert (!s_test_event_record (&rig, awaited, "queued"));
    assert (!s_test_event_record (&rig, plain, "queued"));
    entry_t *entry = s_test_start (&rig, awaited, 1, 1);
    s_test_report (&rig, entry, "succeeded", "{\"status\":200,\"body\":\"ok\"}", NULL);
    entry = s_test_start (&rig, plain, 1, 1);
    s_test_report (&rig, entry, "succeeded", "{\"status\":200}", NULL);
    assert (store_commit (rig.store) == 0);
    outbox_flush (rig.outbox, NULL, NULL);
    assert (!s_test_event_record (&rig, awaited, "running"));
    job_t *job = s_test_event_record (&rig, awaited, "succeeded");
    assert (job && strcmp (job->id, awaited) == 0 && job->status == JOB_SUCCEEDED);
    assert (strcmp (job->tenant, "t") == 0 && job->finished_at > 0 && job->attempts == 1);
    assert (strcmp (job->result, "{\"status\":200,\"body\":\"ok\"}") == 0);
    job_destroy (&job);
    assert (!s_test_event_record (&rig, plain, "running"));
    assert (!s_test_event_record (&rig, plain, "succeeded"));
    assert (!testpeer_take (rig.subscriber));
    s_test_rig_end (&rig);
}

// s_test_cache: the result cache and shared calls (SPEC §3.2, broker/cache.h),
// as the store and a subscriber see them.
static void
s_test_cache (void)
{
    test_rig_t rig;
    s_test_rig (&rig);
    // Failures here are the jobs', not a reason to open p's breaker.
    rig.providers[0].circuit_failures = 0;
    rig.providers[0].circuit_fail_fast = false;
    cache_t *cache = jobs_cache (rig.jobs);
    const char *spec = "{\"request\":{\"path\":\"/json\"},\"cache\":{\"ttl_ms\":60000}}";
    const char *reordered = "{\"cache\":{\"ttl_ms\":1000},\"request\":{\"path\":\"/json\"}}";
    char leader[JOB_ID_LEN + 1], first[JOB_ID_LEN + 1], second[JOB_ID_LEN + 1];
    char other[JOB_ID_LEN + 1], hit[JOB_ID_LEN + 1], plain[JOB_ID_LEN + 1];

    // Without a cache nothing changes.
    s_test_accept (&rig, "p", NULL, 1, plain);
    s_test_cache_of (&rig, plain, JOB_QUEUED, NULL);
    entry_t *entry = s_test_start (&rig, plain, 1, 1);
    s_test_report (&rig, entry, "succeeded", "{\"status\":200}", NULL);
    s_test_expect (&rig, plain, "queued/0 running/1 succeeded/1");

    // The first makes the call; identical ones of the same tenant follow it,
    // off the queue; another tenant's makes its own.
    s_test_accept_as (&rig, "u", 5, "p", spec, 3, other);
    s_test_accept (&rig, "p", spec, 3, leader);
    s_test_accept (&rig, "p", reordered, 3, first);
    s_test_accept (&rig, "p", spec, 3, second);
    s_test_cache_of (&rig, leader, JOB_QUEUED, "miss");
    s_test_cache_of (&rig, first, JOB_QUEUED, "shared");
    s_test_cache_of (&rig, other, JOB_QUEUED, "miss");
    assert (jobs_following (rig.jobs) == 2 && scheduler_queued (rig.scheduler) == 2);
    assert (jobs_entry (rig.jobs, first)->state == ENTRY_SHARED);
    assert (cache_calls (cache) == 2);
    s_test_expect (&rig, first, "queued/0");
    // (u's turn comes first: its job came first.)
    entry = s_test_start (&rig, other, 1, 1);
    s_test_report (&rig, entry, "succeeded", "{\"status\":200,\"body\":\"two\"}", NULL);
    s_test_cache_of (&rig, other, JOB_SUCCEEDED, "miss");
    assert (jobs_following (rig.jobs) == 2);
    // A retry of the leader keeps its followers waiting; its success answers
    // them with its result.
    entry = s_test_start (&rig, leader, 1, 1);
    s_test_report (&rig, entry, "retry", NULL, "{\"type\":\"worker_overloaded\"}");
    for (int round = 0; round < 100 && jobs_delayed (rig.jobs) > 0; round++)
        testpeer_run (rig.loop, 2);
    assert (jobs_following (rig.jobs) == 2);
    entry = s_test_start (&rig, leader, 2, 2);
    s_test_report (&rig, entry, "succeeded", "{\"status\":200,\"body\":\"one\"}", NULL);
    // (The subscriber reads one job's events per flush.)
    s_test_expect (&rig, second, "succeeded/0");
    job_t *job = s_test_job (&rig, second);
    assert (job->status == JOB_SUCCEEDED && strcmp (job->cache, "shared") == 0);
    assert (strcmp (job->result, "{\"status\":200,\"body\":\"one\"}") == 0 && job->attempts == 0);
    assert (job->started_at > 0 && job->finished_at >= job->started_at);
    job_destroy (&job);
    assert (jobs_following (rig.jobs) == 0 && cache_calls (cache) == 0);
    assert (cache_counted (cache, 0, CACHE_SHARED) == 2);
    assert (cache_counted (cache, 0, CACHE_MISS) == 2);

    // Later: answered from the store at once, before and after the commit,
    // whatever its own ttl asks of it as long as the success is that young.
    s_test_accept (&rig, "p", spec, 3, hit);
    s_test_cache_of (&rig, hit, JOB_SUCCEEDED, "hit");
    assert (!jobs_entry (rig.jobs, hit));
    s_test_expect (&rig, hit, "succeeded/0");
    s_test_accept (&rig, "p", reordered, 3, hit);
    job = s_test_job (&rig, hit);
    assert (strcmp (job->cache, "hit") == 0 && strstr (job->result, "\"one\""));
    job_destroy (&job);
    assert (cache_counted (cache, 0, CACHE_HIT) == 2);
    // Another tenant's is answered with its own tenant's success.
    s_test_accept_as (&rig, "u", 5, "p", spec, 3, hit);
    job = s_test_job (&rig, hit);
    assert (strcmp (job->cache, "hit") == 0 && strstr (job->result, "\"two\""));
    job_destroy (&job);

    // A failure answers nothing: the followers run on their own (misses),
    // and an identical job later is no hit.
    const char *failing = "{\"request\":{\"path\":\"/fail\"},\"cache\":{\"ttl_ms\":60000}}";
    s_test_accept (&rig, "p", failing, 1, leader);
    s_test_accept (&rig, "p", failing, 1, first);
    entry = s_test_start (&rig, leader, 1, 1);
    s_test_report (&rig, entry, "failed", "{\"status\":400}", "{\"type\":\"upstream_status\"}");
    s_test_cache_of (&rig, leader, JOB_FAILED, "miss");
    s_test_cache_of (&rig, first, JOB_QUEUED, "miss");
    assert (jobs_entry (rig.jobs, first)->state == ENTRY_QUEUED && cache_calls (cache) == 0);
    // The released job leads nothing: the one after it makes its own call too.
    s_test_accept (&rig, "p", failing, 1, second);
    s_test_cache_of (&rig, second, JOB_QUEUED, "miss");
    assert (jobs_following (rig.jobs) == 0);
    entry = s_test_start (&rig, first, 1, 1);
    s_test_report (&rig, entry, "succeeded", "{\"status\":200}", NULL);
    entry = s_test_start (&rig, second, 1, 1);
    s_test_report (&rig, entry, "succeeded", "{\"status\":200}", NULL);
    s_test_expect (&rig, first, "queued/0 running/1 succeeded/1");

    // A canceled leader's followers run on their own; a canceled follower
    // leaves the call alone.
    const char *third = "{\"request\":{\"path\":\"/3\"},\"cache\":{\"ttl_ms\":60000}}";
    char last[JOB_ID_LEN + 1];
    s_test_accept (&rig, "p", third, 1, leader);
    s_test_accept (&rig, "p", third, 1, first);
    s_test_accept (&rig, "p", third, 1, last);
    job = s_test_job (&rig, last);
    jobs_finish (rig.jobs, jobs_entry (rig.jobs, last), job, JOB_CANCELED, NULL,
                 "{\"type\":\"canceled\"}");
    job_destroy (&job);
    assert (jobs_following (rig.jobs) == 1);
    job = s_test_job (&rig, leader);
    jobs_finish (rig.jobs, jobs_entry (rig.jobs, leader), job, JOB_CANCELED, NULL,
                 "{\"type\":\"canceled\"}");
    job_destroy (&job);
    s_test_cache_of (&rig, first, JOB_QUEUED, "miss");
    s_test_expect (&rig, first, "queued/0");
    entry = s_test_start (&rig, first, 1, 1);
    s_test_report (&rig, entry, "succeeded", "{\"status\":200}", NULL);

    // Recovered at start: the calls are rebuilt from the records, the
    // first one recovered leading.
    const char *fourth = "{\"request\":{\"path\":\"/4\"},\"cache\":{\"ttl_ms\":60000}}";
    s_test_accept (&rig, "p", fourth, 1, leader);
    s_test_accept (&rig, "p", fourth, 1, first);
    assert (store_commit (rig.store) == 0);
    job_t *recovered[2] = { s_test_job (&rig, leader), s_test_job (&rig, first) };
    jobs_drop (rig.jobs, jobs_entry (rig.jobs, first));
    jobs_drop (rig.jobs, jobs_entry (rig.jobs, leader));
    assert (cache_calls (cache) == 0 && jobs_active (rig.jobs) == 0);
    jobs_recover (rig.jobs, recovered[0], evloop_now_ms (rig.loop));
    jobs_recover (rig.jobs, recovered[1], evloop_now_ms (rig.loop));
    assert (jobs_entry (rig.jobs, first)->state == ENTRY_SHARED && cache_calls (cache) == 1);
    job_destroy (&recovered[0]);
    job_destroy (&recovered[1]);
    entry = s_test_start (&rig, leader, 1, 1);
    s_test_report (&rig, entry, "succeeded", "{\"status\":200}", NULL);
    s_test_cache_of (&rig, first, JOB_SUCCEEDED, "shared");
    assert (jobs_active (rig.jobs) == 0);

    // A follower more urgent than its leader raises the call's priority: it
    // runs before a job queued earlier at the leader's.
    const char *fifth = "{\"request\":{\"path\":\"/5\"},\"cache\":{\"ttl_ms\":60000}}";
    s_test_accept_as (&rig, "t", 5, "p", fifth, 1, leader);
    s_test_accept_as (&rig, "t", 5, "p", NULL, 1, plain);
    s_test_accept_as (&rig, "t", 9, "p", fifth, 1, first);
    assert (jobs_entry (rig.jobs, leader)->priority == 9);
    entry = s_test_start (&rig, leader, 1, 1);
    s_test_report (&rig, entry, "succeeded", "{\"status\":200}", NULL);
    entry = s_test_start (&rig, plain, 1, 1);
    s_test_report (&rig, entry, "succeeded", "{\"status\":200}", NULL);
    s_test_cache_of (&rig, first, JOB_SUCCEEDED, "shared");
    assert (jobs_active (rig.jobs) == 0);
    s_test_rig_end (&rig);
}

void
jobs_test (bool verbose)
{
    if (verbose)
        printf (" * jobs: ");
    log_init ("jobs-test", LOG_ERROR_);
    for (int i = 0; i < 100; i++) {
        assert (s_backoff_ms (1, 0, 500, 60000) <= 500);
        assert (s_backoff_ms (3, 0, 500, 60000) <= 2000);
        assert (s_backoff_ms (40, 0, 500, 60000) <= 60000);
        assert (s_backoff_ms (1, 2000, 500, 60000) >= 2000);
        assert (s_backoff_ms (5, 0, 100, 300) <= 300);
    }
    test_rig_t rig;
    s_test_rig (&rig);
    char id[JOB_ID_LEN + 1];
    const char *spec = "{\"request\":{\"path\":\"/json\"},"
                       "\"callback\":{\"url\":\"http://127.0.0.1:9/hook\"}}";
    s_test_accept (&rig, "p", spec, 3, id);
    assert (jobs_active (rig.jobs) == 1 && jobs_provider_active (rig.jobs)[0] == 1);
    job_t *job = s_test_job (&rig, id);
    assert (job->status == JOB_QUEUED && job->attempts == 0 && job->created_at > 0);
    job_destroy (&job);
    s_test_expect (&rig, id, "queued/0");

    // Every way back into the queue publishes "queued", and keeps the place:
    // a DISPATCH not sent and a handback are not counted, a lost attempt is.
    entry_t *entry = s_test_start (&rig, id, 1, 1);
    assert (rig.worker->running.count == 1 && rig.worker->credit == 99);
    assert (jobs_running (rig.jobs) == 1);
    job = s_test_job (&rig, id);
    jobs_give_back (rig.jobs, entry, job);
    job_destroy (&job);
    assert (rig.worker->running.count == 0 && jobs_running (rig.jobs) == 0);
    s_test_expect (&rig, id, "running/1 queued/0");
    entry = s_test_start (&rig, id, 1, 2);
    jobs_lose (rig.jobs, entry, "lease expired");
    s_test_expect (&rig, id, "running/1 queued/1");
    entry = s_test_start (&rig, id, 2, 3);
    s_test_report (&rig, entry, "handback", NULL, "{\"type\":\"worker_draining\"}");
    s_test_expect (&rig, id, "running/2 queued/1");
    // A retry waits for its backoff (1 ms here), with the failed attempt's
    // error, then is queued again. (The worker's fault: p's breaker, which
    // opens at the first failure of p's own, stays closed.)
    entry = s_test_start (&rig, id, 2, 4);
    s_test_report (&rig, entry, "retry", NULL, "{\"type\":\"worker_overloaded\"}");
    assert (entry->state == ENTRY_DELAYED && jobs_delayed (rig.jobs) == 1);
    assert (scheduler_queued (rig.scheduler) == 0);
    s_test_expect (&rig, id, "running/2 queued/2");
    job = s_test_job (&rig, id);
    assert (job->status == JOB_QUEUED && strstr (job->error, "worker_overloaded"));
    job_destroy (&job);
    for (int round = 0; round < 100 && jobs_delayed (rig.jobs) > 0; round++)
        testpeer_run (rig.loop, 2);
    assert (jobs_delayed (rig.jobs) == 0 && scheduler_queued (rig.scheduler) == 1);
    // The last attempt lost: failed as worker_lost, the entry forgotten.
    entry = s_test_start (&rig, id, 3, 5);
    jobs_lose (rig.jobs, entry, "lease expired");
    s_test_expect (&rig, id, "running/3 failed/3");
    job = s_test_job (&rig, id);
    assert (job->status == JOB_FAILED && strstr (job->error, "worker_lost"));
    assert (job->finished_at > 0);
    assert (!jobs_entry (rig.jobs, id) && jobs_active (rig.jobs) == 1);
    assert (jobs_provider_active (rig.jobs)[0] == 0);

    // Its callback's delivery (a failure has one too) is queued, for direct
    // calls, under t's delivery owner; its creation publishes nothing.
    s_test_delivery (&rig, id);

    // RETRY: a new budget, the identities go on; chunks are kept and
    // relayed; the success is stored.
    jobs_retry (rig.jobs, job);
    job_destroy (&job);
    s_test_expect (&rig, id, "queued/0");
    entry = s_test_start (&rig, id, 1, 6);
    jobs_chunk (rig.jobs, entry, 0, "tok", 3);
    jobs_chunk (rig.jobs, entry, 1, "en", 2);
    assert (entry->chunks_size == 8 + 3 + 8 + 2);
    s_test_report (&rig, entry, "succeeded", "{\"status\":200}", NULL);
    s_test_expect (&rig, id, "running/1 chunk/6.0:tok chunk/6.1:en succeeded/1");
    job = s_test_job (&rig, id);
    assert (job->status == JOB_SUCCEEDED && job->attempt_seq == 6 && !job->error);
    assert (strcmp (job->result, "{\"status\":200}") == 0);
    // The full store drops the result of a version that does not fit.
    jobs_drop_result (rig.jobs, id, 5000, true);
    job_destroy (&job);
    job = s_test_job (&rig, id);
    assert (!job->result && strstr (job->error, "result_not_stored"));
    job_destroy (&job);
    s_test_delivery (&rig, id);
    assert (jobs_active (rig.jobs) == 0);

    // A submission the store could not commit is forgotten.
    char dropped[JOB_ID_LEN + 1];
    s_test_accept (&rig, "p", NULL, 1, dropped);
    assert (store_discard (rig.store, dropped) == 0);
    jobs_drop (rig.jobs, jobs_entry (rig.jobs, dropped));
    assert (jobs_active (rig.jobs) == 0 && !store_get (rig.store, dropped));
    assert (scheduler_queued (rig.scheduler) == 0 && jobs_provider_active (rig.jobs)[0] == 0);

    // Not started before expire_after_ms: failed as expired, no attempt.
    job = job_new ();
    job_id_generate (job->id);
    job_set_str (&job->tenant, "t");
    job_set_str (&job->kind, "http");
    job_set_str (&job->spec, "{}");
    job->created_at = clock_wall_ms () - 10000;
    job->expire_after_ms = 1000;
    jobs_accept (rig.jobs, job);
    int64_t wake;
    entry = scheduler_next (rig.scheduler, evloop_now_ms (rig.loop), &wake);
    assert (entry && !jobs_start (rig.jobs, entry, rig.worker, evloop_now_ms (rig.loop)));
    s_test_expect (&rig, job->id, "queued/0 failed/0");
    job_destroy (&job);

    // A provider whose breaker opens and fails fast fails what waits for it.
    char first[JOB_ID_LEN + 1], second[JOB_ID_LEN + 1];
    s_test_accept (&rig, "p", NULL, 1, first);
    s_test_accept (&rig, "p", NULL, 1, second);
    entry = s_test_start (&rig, first, 1, 1);
    s_test_report (&rig, entry, "failed", NULL, "{\"type\":\"connect_failed\"}");
    jobs_fail_fast (rig.jobs, evloop_now_ms (rig.loop));
    s_test_expect (&rig, second, "queued/0 failed/0");
    job = s_test_job (&rig, second);
    assert (strstr (job->error, "circuit_open"));
    job_destroy (&job);

    // Fallbacks: q's attempt fails retryably (q's fault): the next one goes
    // to q's fallback b at once (q's 60 s backoff is q's), first in the
    // queue, with b's model; the job shows that b answered.
    job = job_new ();
    job_id_generate (job->id);
    strcpy (id, job->id);
    job_set_str (&job->tenant, "t");
    job_set_str (&job->kind, "llm");
    job_set_str (&job->provider, "q");
    job_set_str (&job->spec, "{\"request\":{\"model\":\"q-model\",\"messages\":[]}}");
    job->max_attempts = 3;
    job->timeout_ms = 1000;
    jobs_accept (rig.jobs, job);
    job_destroy (&job);
    s_test_expect (&rig, id, "queued/0");
    entry = s_test_start (&rig, id, 1, 1);
    const char *model = "unset";
    job = s_test_job (&rig, id);
    assert (!jobs_via (rig.jobs, entry, job, &model) && !model);
    job_destroy (&job);
    s_test_report (&rig, entry, "retry", NULL, "{\"type\":\"connect_failed\"}");
    assert (entry->state == ENTRY_QUEUED && jobs_delayed (rig.jobs) == 0);
    s_test_expect (&rig, id, "running/1 queued/1");
    entry = s_test_start (&rig, id, 2, 2);
    job = s_test_job (&rig, id);
    assert (strcmp (jobs_via (rig.jobs, entry, job, &model), "b") == 0);
    assert (strcmp (model, "b-model") == 0 && !job->answered_by);
    job_destroy (&job);
    s_test_report (&rig, entry, "succeeded", "{\"status\":200}", NULL);
    s_test_expect (&rig, id, "running/2 succeeded/2");
    job = s_test_job (&rig, id);
    assert (job->answered_by && strcmp (job->answered_by, "b") == 0);
    // RETRY forgets who answered the last run.
    jobs_retry (rig.jobs, job);
    job_destroy (&job);
    job = s_test_job (&rig, id);
    assert (!job->answered_by);
    job_destroy (&job);
    // Its own provider answers: it is named; a worker's refusal is not the
    // provider's failure: the retry waits for q's backoff, on q.
    entry = s_test_start (&rig, id, 1, 3);
    s_test_report (&rig, entry, "retry", NULL, "{\"type\":\"worker_overloaded\"}");
    assert (entry->state == ENTRY_DELAYED && entry->route == 0);
    s_test_expect (&rig, id, "queued/0 running/1 queued/1");
    jobs_drop (rig.jobs, entry);
    char answered[JOB_ID_LEN + 1];
    s_test_accept (&rig, "q", NULL, 1, answered);
    entry = s_test_start (&rig, answered, 1, 1);
    s_test_report (&rig, entry, "failed", "{\"status\":404}",
                   "{\"type\":\"upstream_status\",\"upstream_status\":404}");
    job = s_test_job (&rig, answered);
    assert (job->status == JOB_FAILED && strcmp (job->answered_by, "q") == 0);
    job_destroy (&job);
    s_test_expect (&rig, answered, "queued/0 running/1 failed/1");

    // Recovered at start: a running job is held by nobody; unclaimed, it is
    // lost like any attempt.
    s_test_accept (&rig, NULL, NULL, 2, id);
    entry = s_test_start (&rig, id, 1, 1);
    job = s_test_job (&rig, id);
    jobs_drop (rig.jobs, entry);
    assert (jobs_active (rig.jobs) == 0 && jobs_running (rig.jobs) == 0);
    jobs_recover (rig.jobs, job, evloop_now_ms (rig.loop));
    entry = jobs_entry (rig.jobs, id);
    assert (entry && entry->state == ENTRY_RUNNING && !entry->worker);
    assert (jobs_running (rig.jobs) == 1 && jobs_consistent (rig.jobs));
    jobs_lose (rig.jobs, entry, "not reclaimed after broker restart");
    s_test_expect (&rig, id, "queued/0 running/1 queued/1");
    job_destroy (&job);

    s_test_rig_end (&rig);
    s_test_cache ();
    s_test_awaited ();
    log_init ("jobgate", LOG_INFO_);
    if (verbose)
        printf ("OK\n");
}
