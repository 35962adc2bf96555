#include "broker.h"
#include "log.h"
#include "proto.h"
#include "provider.h"
#include "queue.h"
#include "store.h"

#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

// §5 liveness: heartbeat interval and the silence after which a worker is
// dead.
#define HEARTBEAT_MS 1000
#define WORKER_LIVENESS_MS 3000
// Housekeeping period: heartbeats, dead workers, leases, expiry.
#define TICK_MS 250
// Extra time beyond a job's own timeout before its lease ends.
#define LEASE_GRACE_MS 10000
// How long jobs found running at start-up wait for their worker to come back
// with the result before they are requeued.
#define ORPHAN_GRACE_MS 5000
// Retry backoff: full jitter over an exponential ceiling.
#define BACKOFF_BASE_MS 500
#define BACKOFF_CAP_MS 60000
// How often finished jobs past their TTL are deleted, and how many per pass.
// Small, frequent passes: one large deleting transaction leaves a large,
// fragmented free-page list that LMDB then extends the file around instead
// of reusing (the soak grew ~9 bytes per job with 5,000-job passes every
// 10 s; it is flat with these).
#define EXPIRY_SWEEP_MS 250
#define EXPIRY_SWEEP_LIMIT 500
// After a failed commit, wait this long before trying again.
#define COMMIT_RETRY_MS 200
// Group commits are at least this far apart (µs). Each commit costs an
// fdatasync and wakes every gateway and worker with its replies, whatever
// it holds; at moderate rates loop turns are short and commits were tiny.
#define COMMIT_SPACING_US 1000

typedef struct {
    zframe_t *identity;         // routing id on the backend
    char *name;                 // identity in hex, the hash key
    int credit;                 // DISPATCHes it can still take
    int concurrency;            // what it announced
    entry_list_t running;       // entries it runs
    int64_t last_seen_ms;       // monotonic time of its last message
    int64_t last_sent_ms;       // when we last sent it anything
    bool draining;              // sent DISCONNECT: no more dispatches
} worker_t;

// A tenant's quota state (SPEC §5: submissions/s and max queued jobs),
// kept by the broker so the quota holds across every gateway.
typedef struct {
    const config_quota_t *quota; // its configured quota, or NULL
    double tokens;              // submissions it may make now
    int64_t refilled_ms;        // monotonic time of the last refill
    size_t active;              // its jobs not yet finished
} tenant_t;

typedef enum { DEFERRED_SUBMIT_OK, DEFERRED_GET, DEFERRED_EVENT, DEFERRED_CHUNK } deferred_kind_t;

// Partial data kept per running attempt for subscribers that join late or
// reconnect (SSE Last-Event-ID); past this, chunks are only relayed live.
#define CHUNKS_KEPT_MAX (256 * 1024)

// A reply or event that may leave only after the batch is committed.
typedef struct {
    deferred_kind_t kind;       // what to send
    zframe_t *identity;         // gateway routing id (replies)
    int64_t corr;               // gateway's correlation id (replies)
    char id[JOB_ID_LEN + 1];    // the job
    job_status_t status;        // event status, SUBMIT_OK status
    int attempts;               // event attempts
    int64_t created_at;         // SUBMIT_OK created_at
    bool duplicate;             // SUBMIT_OK of a resubmission
    bool with_chunks;           // GET: add the running attempt's chunks
    int64_t index;              // CHUNK index
    char *data;                 // CHUNK data (owned)
} deferred_t;

struct _broker_t {
    const config_t *config;     // borrowed configuration
    evloop_t *loop;             // borrowed event loop
    store_t *store;             // durable records
    zsock_t *frontend;          // ROUTER for gateways
    zsock_t *backend;           // ROUTER for workers
    zsock_t *publisher;         // PUB for events
    proto_batch_t *replies;     // s_flush's answers to one gateway, one message
    proto_batch_t *events;      // s_flush's events, one message
    zframe_t *no_topic;         // the events' (empty) PUB topic
    zhashx_t *entries;          // id → entry_t, every active job
    zhashx_t *workers;          // hex identity → worker_t
    queue_t *queues;            // entries waiting, one queue per provider + direct
    provider_t **providers;     // live state per provider + direct (last)
    size_t slots;               // providers_count + 1
    size_t queued_count;        // entries in all queues
    evloop_timer_t *dispatch_timer; // wakes the dispatcher for a rate limit or pause
    entry_list_t orphans;       // running at start-up, waiting for their worker
    size_t delayed_count;       // entries waiting for a retry timer
    size_t running_count;       // entries running
    size_t *provider_active;    // active jobs per configured provider
    zhashx_t *tenants;          // tenant name → tenant_t, for quotas
    deferred_t *deferred;       // what waits for the commit
    size_t deferred_count;      // used entries
    size_t deferred_size;       // allocated entries
    uint64_t seq;               // last event sequence number
    int64_t epoch;              // wall ms of this run's start
    evloop_timer_t *tick;       // housekeeping timer
    evloop_timer_t *commit_retry; // pending retry of a failed commit
    evloop_timer_t *commit_due; // wakes the loop for a spaced commit
    int64_t last_commit_us;     // monotonic time of the last commit (µs)
    int64_t next_expiry_sweep_ms; // monotonic time of the next TTL sweep
    int64_t last_tick_ms;       // when housekeeping last ran (stall detection)
    bool commit_failing;        // the last commit failed
};

static void s_tick (evloop_t *loop, void *arg);
static void s_on_idle (evloop_t *loop, void *arg);
static void s_frontend_ready (evloop_t *loop, zsock_t *sock, void *arg);
static void s_backend_ready (evloop_t *loop, zsock_t *sock, void *arg);
static void s_handle_chunk (broker_t *self, proto_msg_t *msg);

// --- deferred replies and events ---

static deferred_t *
s_defer (broker_t *self, deferred_kind_t kind, const char *id)
{
    if (self->deferred_count == self->deferred_size) {
        size_t size = self->deferred_size ? self->deferred_size * 2 : 256;
        deferred_t *grown = realloc (self->deferred, size * sizeof *grown);
        assert (grown);
        self->deferred = grown;
        self->deferred_size = size;
    }
    deferred_t *deferred = &self->deferred[self->deferred_count++];
    memset (deferred, 0, sizeof *deferred);
    deferred->kind = kind;
    if (id) {
        memcpy (deferred->id, id, JOB_ID_LEN);
        deferred->id[JOB_ID_LEN] = '\0';
    }
    return deferred;
}

// s_event records a state change to publish after the commit.
static void
s_event (broker_t *self, const job_t *job)
{
    deferred_t *event = s_defer (self, DEFERRED_EVENT, job->id);
    event->status = job->status;
    event->attempts = job->attempts;
}

// s_error_body writes an ERROR's fields into body.
static void
s_error_body (pack_writer_t *body, int64_t corr, int code, const char *message)
{
    pack_put_int (body, "corr", corr);
    pack_put_int (body, "code", code);
    pack_put_str (body, "message", message);
}

// s_reply_error answers a gateway request at once (errors change nothing).
static void
s_reply_error (broker_t *self, zframe_t *identity, int64_t corr, int code, const char *message)
{
    pack_writer_t *body = pack_writer_new ();
    s_error_body (body, corr, code, message);
    if (proto_send (self->frontend, identity, PROTO_ERROR, body) < 0)
        log_warn (NULL, "cannot answer gateway: %s", zmq_strerror (errno));
    pack_writer_destroy (&body);
}

// s_reply adds an answer to the gateway at identity to the replies batch:
// answers to the same gateway, in order, leave as one message.
static void
s_reply (broker_t *self, zframe_t *identity, proto_cmd_t cmd, pack_writer_t *body)
{
    if (proto_batch_add (self->replies, identity, cmd, body) < 0)
        log_warn (NULL, "gateway gone: replies dropped");
}

// s_publish adds an event to the events batch. Events go out batched under
// an empty topic (subscribers take them all: the job id is in each body,
// docs/protocol.md §5).
static void
s_publish (broker_t *self, pack_writer_t *body)
{
    if (proto_batch_add (self->events, self->no_topic, PROTO_EVENT, body) < 0)
        log_warn (NULL, "events dropped: %s", zmq_strerror (errno));
}

// s_flush sends every deferred reply and event (the batch is committed).
static void
s_flush (broker_t *self)
{
    if (!self->replies)
        return;                 // broker_new failed before its sockets
    for (size_t i = 0; i < self->deferred_count; i++) {
        deferred_t *deferred = &self->deferred[i];
        pack_writer_t *body = pack_writer_new ();
        if (deferred->kind == DEFERRED_CHUNK) {
            pack_put_int (body, "seq", (int64_t) ++self->seq);
            pack_put_int (body, "epoch", self->epoch);
            pack_put_str (body, "id", deferred->id);
            pack_put_str (body, "type", "chunk");
            pack_put_int (body, "attempt", deferred->attempts);
            pack_put_int (body, "index", deferred->index);
            pack_put_str (body, "data", deferred->data);
            s_publish (self, body);
            free (deferred->data);
            deferred->data = NULL;
        }
        else if (deferred->kind == DEFERRED_EVENT) {
            pack_put_int (body, "seq", (int64_t) ++self->seq);
            pack_put_int (body, "epoch", self->epoch);
            pack_put_str (body, "id", deferred->id);
            pack_put_str (body, "type", "status");
            pack_put_str (body, "status", job_status_name (deferred->status));
            pack_put_int (body, "attempts", deferred->attempts);
            s_publish (self, body);
        }
        else if (deferred->kind == DEFERRED_SUBMIT_OK) {
            pack_put_int (body, "corr", deferred->corr);
            pack_put_str (body, "id", deferred->id);
            pack_put_str (body, "status", job_status_name (deferred->status));
            pack_put_int (body, "created_at", deferred->created_at);
            pack_put_bool (body, "duplicate", deferred->duplicate);
            s_reply (self, deferred->identity, PROTO_SUBMIT_OK, body);
        }
        else {
            job_t *job = store_get (self->store, deferred->id);
            if (job) {
                pack_put_int (body, "corr", deferred->corr);
                job_pack (job, body);
                entry_t *entry = deferred->with_chunks ? zhashx_lookup (self->entries, job->id) : NULL;
                if (entry && entry->state == ENTRY_RUNNING && entry->chunks_size > 0)
                    pack_put_strn (body, "chunks", entry->chunks, entry->chunks_size);
                s_reply (self, deferred->identity, PROTO_JOB, body);
                job_destroy (&job);
            }
            else {
                s_error_body (body, deferred->corr, 404, "no such job");
                s_reply (self, deferred->identity, PROTO_ERROR, body);
            }
        }
        pack_writer_destroy (&body);
        zframe_destroy (&deferred->identity);
    }
    self->deferred_count = 0;
    size_t replies = proto_batch_count (self->replies);
    if (proto_batch_flush (self->replies) < 0)
        log_warn (NULL, "gateway gone: %zu replies dropped", replies);
    if (proto_batch_flush (self->events) < 0)
        log_warn (NULL, "events dropped: %s", zmq_strerror (errno));
}

// --- job lifecycle ---

// s_slot is the queue and provider index of an entry.
static size_t
s_slot (broker_t *self, const entry_t *entry)
{
    return entry->provider >= 0 ? (size_t) entry->provider : self->slots - 1;
}

static void
s_enqueue (broker_t *self, entry_t *entry, bool front)
{
    if (front)
        queue_push_front (&self->queues[s_slot (self, entry)], entry);
    else
        queue_push (&self->queues[s_slot (self, entry)], entry);
    self->queued_count++;
}

// s_provider_release ends an entry's call for its provider's accounting,
// with what the call said about the upstream.
static void
s_provider_release (broker_t *self, entry_t *entry, provider_outcome_t outcome,
                    int64_t retry_after_ms, const char *error_type, int upstream_status)
{
    if (!entry->in_provider)
        return;
    entry->in_provider = false;
    int64_t now = evloop_now_ms (self->loop);
    provider_finished (self->providers[s_slot (self, entry)], now, now - entry->dispatched_ms,
                       outcome, retry_after_ms, error_type, upstream_status);
}

static void
s_entry_free (broker_t *self, entry_t *entry)
{
    s_provider_release (self, entry, PROVIDER_NEUTRAL, 0, NULL, 0);
    evloop_timer_cancel (self->loop, &entry->timer);
    if (entry->state == ENTRY_QUEUED && entry->list) {
        queue_remove (&self->queues[s_slot (self, entry)], entry);
        self->queued_count--;
    }
    else
        entry_list_remove (entry);
    if (entry->state == ENTRY_RUNNING)
        self->running_count--;
    if (entry->state == ENTRY_DELAYED)
        self->delayed_count--;
    if (entry->provider >= 0)
        self->provider_active[entry->provider]--;
    if (entry->tenant)
        ((tenant_t *) entry->tenant)->active--;
    zhashx_delete (self->entries, entry->id);
    free (entry->chunks);
    free (entry);
}

// s_put writes a job version into the batch; a failure here means memory is
// exhausted, which the broker cannot survive honestly.
static void
s_put_version (broker_t *self, const job_t *job, bool is_new)
{
    int64_t expire_at = job_status_terminal (job->status)
                            ? clock_wall_ms () + self->config->result_ttl_ms
                            : 0;
    if (store_put (self->store, job, expire_at, is_new) < 0) {
        log_error (job->id, "out of memory writing the store batch");
        abort ();
    }
}

static void
s_put (broker_t *self, const job_t *job)
{
    s_put_version (self, job, false);
}

// The tenant of webhook deliveries: no API key maps to it ('#' is reserved),
// so they never show in a client's listing.
#define WEBHOOK_TENANT "#webhooks"

static entry_t *s_entry_new (broker_t *self, const job_t *job);
static void s_enqueue (broker_t *self, entry_t *entry, bool front);

// s_webhook_for creates, in the same batch as the job's terminal state, the
// delivery of its callback (SPEC §3): a job of kind "webhook" whose request
// is the callback URL and the finished job object, so that delivery is as
// durable, retried and SSRF-checked as any job.
static void
s_webhook_for (broker_t *self, const job_t *job)
{
    if (!job->spec || !strstr (job->spec, "\"callback\""))
        return;
    json_t *spec = json_loads (job->spec, 0, NULL);
    const char *url = json_string_value (json_object_get (json_object_get (spec, "callback"), "url"));
    if (!url) {
        json_decref (spec);
        return;
    }
    job_t *delivery = job_new ();
    job_id_generate (delivery->id);
    job_set_str (&delivery->tenant, WEBHOOK_TENANT);
    job_set_str (&delivery->kind, "webhook");
    delivery->max_attempts = self->config->webhook_max_attempts;
    delivery->timeout_ms = self->config->webhook_timeout_ms;
    delivery->created_at = clock_wall_ms ();
    json_t *payload = job_to_json (job);
    json_t *delivery_spec = json_pack ("{s:s, s:{s:s, s:s, s:o}}", "kind", "webhook", "request",
                                       "url", url, "job_id", job->id, "payload", payload);
    char *text = json_dumps (delivery_spec, JSON_COMPACT);
    json_decref (delivery_spec);
    json_decref (spec);
    job_set_str (&delivery->spec, text);
    free (text);
    s_put_version (self, delivery, true);
    s_enqueue (self, s_entry_new (self, delivery), false);
    log_info (job->id, "webhook %s queued for the callback", delivery->id);
    job_destroy (&delivery);
}

// s_finish moves a job to a terminal state and forgets its entry.
static void
s_finish (broker_t *self, entry_t *entry, job_t *job, job_status_t status,
          const char *result, const char *error)
{
    job->status = status;
    job->finished_at = clock_wall_ms ();
    job_set_str (&job->result, result);
    job_set_str (&job->error, error);
    s_put (self, job);
    s_event (self, job);
    log_info (job->id, "finished status=%s attempts=%d", job_status_name (status), job->attempts);
    s_entry_free (self, entry);
    if (strcmp (job->kind, "webhook") != 0)
        s_webhook_for (self, job);
}

// s_error_json builds an error object's JSON text; the caller frees it.
static char *
s_error_json (const char *type, const char *message)
{
    json_t *error = json_pack ("{s:s, s:s}", "type", type, "message", message);
    char *text = json_dumps (error, JSON_COMPACT);
    json_decref (error);
    return text;
}

// s_requeue puts a job whose attempt was lost (worker dead, lease over)
// back in the queue, or fails it when its attempts are spent.
static void
s_requeue_lost (broker_t *self, entry_t *entry, const char *why)
{
    job_t *job = store_get (self->store, entry->id);
    if (!job) {
        log_error (entry->id, "active job missing from the store; dropped");
        s_entry_free (self, entry);
        return;
    }
    if (job->attempts >= job->max_attempts) {
        char *error = s_error_json ("worker_lost", why);
        s_finish (self, entry, job, JOB_FAILED, job->result, error);
        free (error);
    }
    else {
        s_provider_release (self, entry, PROVIDER_NEUTRAL, 0, NULL, 0);
        entry_list_remove (entry);
        self->running_count--;
        entry->worker = NULL;
        job->status = JOB_QUEUED;
        s_put (self, job);
        s_event (self, job);
        s_enqueue (self, entry, true);
        log_warn (job->id, "attempt %d lost (%s); requeued", job->attempts, why);
    }
    job_destroy (&job);
}

static void
s_retry_due (evloop_t *loop, void *arg)
{
    entry_t *entry = arg;
    broker_t *self = entry->owner;
    // The timer handle is freed by the loop after this call.
    entry->timer = NULL;
    self->delayed_count--;
    s_enqueue (self, entry, false);
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

// --- workers ---

static void
s_worker_destroy (void **item)
{
    worker_t *worker = *item;
    if (worker) {
        zframe_destroy (&worker->identity);
        free (worker->name);
        free (worker);
        *item = NULL;
    }
}

static worker_t *
s_worker_lookup (broker_t *self, zframe_t *identity)
{
    char *name = zframe_strhex (identity);
    worker_t *worker = zhashx_lookup (self->workers, name);
    free (name);
    return worker;
}

// s_worker_dead requeues everything a worker ran and forgets it.
static void
s_worker_dead (broker_t *self, worker_t *worker, const char *why)
{
    log_warn (NULL, "worker %s dead (%s); requeuing %zu jobs", worker->name, why,
              worker->running.count);
    while (worker->running.head)
        s_requeue_lost (self, worker->running.head, why);
    zhashx_delete (self->workers, worker->name);
}

static void
s_worker_send (broker_t *self, worker_t *worker, proto_cmd_t cmd, pack_writer_t *body)
{
    if (proto_send (self->backend, worker->identity, cmd, body) == 0)
        worker->last_sent_ms = evloop_now_ms (self->loop);
}

// s_pick_worker returns the live worker with the most free credit, or NULL.
static worker_t *
s_pick_worker (broker_t *self)
{
    worker_t *best = NULL;
    for (worker_t *worker = zhashx_first (self->workers); worker;
         worker = zhashx_next (self->workers))
        if (!worker->draining && worker->credit > 0 && (!best || worker->credit > best->credit))
            best = worker;
    return best;
}

static void
s_dispatch_wake (evloop_t *loop, void *arg)
{
    broker_t *self = arg;
    self->dispatch_timer = NULL; // the idle hook dispatches next
}

// s_fail_waiting fails every job waiting for a provider whose breaker is
// open and configured to fail fast.
static void
s_fail_waiting (broker_t *self, size_t slot)
{
    entry_t *entry;
    char *error = s_error_json ("circuit_open",
                                "the provider's circuit breaker is open after repeated failures");
    while ((entry = queue_pop (&self->queues[slot])) != NULL) {
        self->queued_count--;
        job_t *job = store_get (self->store, entry->id);
        if (job) {
            s_finish (self, entry, job, JOB_FAILED, job->result, error);
            job_destroy (&job);
        }
        else
            s_entry_free (self, entry);
    }
    free (error);
}

// s_next_slot picks the queue to serve next: among providers whose limits
// allow a call now, the one with the highest priority waiting (ties go to
// the first). Returns -1 when none may start; *wake_ms then says when a
// limit lifts (0: only a finishing call can lift it).
static int
s_next_slot (broker_t *self, int64_t now, int64_t *wake_ms)
{
    int best = -1, best_priority = -1;
    *wake_ms = 0;
    for (size_t slot = 0; slot < self->slots; slot++) {
        int priority = queue_top_priority (&self->queues[slot]);
        if (priority <= best_priority)
            continue;
        if (provider_fail_fast (self->providers[slot], now)) {
            s_fail_waiting (self, slot);
            continue;
        }
        int64_t wake;
        if (!provider_can_start (self->providers[slot], now, &wake)) {
            if (wake && (!*wake_ms || wake < *wake_ms))
                *wake_ms = wake;
            continue;
        }
        best = (int) slot;
        best_priority = priority;
    }
    return best;
}

// s_dispatch hands queued jobs to workers while both exist (credit flow)
// and the providers' global limits allow.
static void
s_dispatch (broker_t *self)
{
    while (self->queued_count > 0) {
        worker_t *worker = s_pick_worker (self);
        if (!worker)
            return;
        int64_t now_mono = evloop_now_ms (self->loop), wake;
        int slot = s_next_slot (self, now_mono, &wake);
        if (slot < 0) {
            if (wake && !self->dispatch_timer)
                self->dispatch_timer = evloop_timer_start (self->loop, wake - now_mono,
                                                           s_dispatch_wake, self);
            return;
        }
        entry_t *entry = queue_pop (&self->queues[slot]);
        self->queued_count--;
        job_t *job = store_get (self->store, entry->id);
        if (!job) {
            log_error (entry->id, "queued job missing from the store; dropped");
            s_entry_free (self, entry);
            continue;
        }
        int64_t now = clock_wall_ms ();
        if (entry->expire_at_ms > 0 && now > entry->expire_at_ms) {
            char *error = s_error_json ("expired", "the job was not started before expire_after_ms");
            s_finish (self, entry, job, JOB_FAILED, job->result, error);
            free (error);
            job_destroy (&job);
            continue;
        }
        job->status = JOB_RUNNING;
        job->attempts++;
        job->started_at = now;
        s_put (self, job);
        s_event (self, job);

        entry->state = ENTRY_RUNNING;
        entry->attempt = job->attempts;
        entry->worker = worker;
        entry->dispatched_ms = now_mono;
        free (entry->chunks);
        entry->chunks = NULL;
        entry->chunks_size = 0;
        entry->lease_until_ms = now_mono + job->timeout_ms + LEASE_GRACE_MS;
        entry->in_provider = true;
        provider_started (self->providers[slot], now_mono);
        entry_list_append (&worker->running, entry);
        self->running_count++;
        worker->credit--;

        pack_writer_t *body = pack_writer_new ();
        job_pack (job, body);
        pack_put_int (body, "attempt", job->attempts);
        if (proto_send (self->backend, worker->identity, PROTO_DISPATCH, body) < 0) {
            // The worker is gone (it reconnected under a new identity or
            // died): this attempt never started, so it does not count.
            pack_writer_destroy (&body);
            s_provider_release (self, entry, PROVIDER_NEUTRAL, 0, NULL, 0);
            entry_list_remove (entry);
            self->running_count--;
            entry->worker = NULL;
            entry->state = ENTRY_QUEUED;
            job->attempts--;
            job->status = JOB_QUEUED;
            s_put (self, job);
            s_enqueue (self, entry, true);
            job_destroy (&job);
            s_worker_dead (self, worker, "unreachable");
            continue;
        }
        worker->last_sent_ms = now_mono;
        log_debug (job->id, "dispatched attempt=%d to worker %s", job->attempts, worker->name);
        pack_writer_destroy (&body);
        job_destroy (&job);
    }
}

// s_classify tells what a RESULT says about the upstream, for its
// provider's limits and breaker.
static provider_outcome_t
s_classify (const char *outcome, const char *error, int64_t *retry_after_ms, char *type,
            size_t type_size, int *upstream_status)
{
    *upstream_status = 0;
    type[0] = '\0';
    if (strcmp (outcome, "succeeded") == 0)
        return PROVIDER_ANSWERED;
    if (strcmp (outcome, "handback") == 0 || strcmp (outcome, "canceled") == 0)
        return PROVIDER_NEUTRAL;
    json_t *object = error ? json_loads (error, 0, NULL) : NULL;
    const char *error_type = json_string_value (json_object_get (object, "type"));
    snprintf (type, type_size, "%s", error_type ? error_type : "failed");
    *upstream_status = (int) json_integer_value (json_object_get (object, "upstream_status"));
    json_decref (object);
    if (strncmp (type, "worker_", 7) == 0 || strcmp (type, "invalid_request") == 0
        || strcmp (type, "blocked_by_policy") == 0)
        return PROVIDER_NEUTRAL;
    if (*upstream_status == 429 || *upstream_status == 503) {
        // An overloaded upstream that names no delay still gets a breather.
        if (*retry_after_ms <= 0)
            *retry_after_ms = 1000;
        return PROVIDER_OVERLOADED;
    }
    if (strcmp (outcome, "failed") == 0 && *upstream_status > 0)
        return PROVIDER_ANSWERED; // a final 4xx: the upstream is fine
    if (strcmp (outcome, "failed") == 0 && strcmp (type, "response_too_large") == 0)
        return PROVIDER_ANSWERED;
    return PROVIDER_FAILED;
}

// s_handle_result applies a worker's RESULT (docs/protocol.md §3.2).
static void
s_handle_result (broker_t *self, worker_t *worker, proto_msg_t *msg)
{
    if (worker && !worker->draining)
        worker->credit++;
    size_t id_len;
    const char *id = pack_get_str (msg->body, "id", &id_len);
    int64_t attempt;
    char *outcome = pack_get_strdup (msg->body, "outcome");
    if (!id || !job_id_valid (id, id_len) || pack_get_int (msg->body, "attempt", &attempt) < 0
        || !outcome) {
        log_warn (NULL, "malformed RESULT dropped");
        free (outcome);
        return;
    }
    char key[JOB_ID_LEN + 1];
    job_id_copy (key, id, JOB_ID_LEN);
    entry_t *entry = zhashx_lookup (self->entries, key);
    if (!entry || entry->state != ENTRY_RUNNING || entry->attempt != attempt) {
        // Expected after a cancel; otherwise the attempt was presumed lost.
        log_line (strcmp (outcome, "canceled") == 0 ? LOG_DEBUG_ : LOG_WARN_, __FILE__, __LINE__,
                  key, "late result for attempt %d discarded", (int) attempt);
        free (outcome);
        return;
    }
    job_t *job = store_get (self->store, key);
    if (!job) {
        free (outcome);
        s_entry_free (self, entry);
        return;
    }
    char *result = pack_get_strdup (msg->body, "result");
    char *error = pack_get_strdup (msg->body, "error");
    int64_t retry_after_ms = 0;
    pack_get_int (msg->body, "retry_after_ms", &retry_after_ms);
    if (retry_after_ms < 0 || retry_after_ms > 24LL * 3600 * 1000)
        retry_after_ms = 0;
    char error_type[32];
    int upstream_status;
    int64_t pause_ms = retry_after_ms;
    provider_outcome_t verdict = s_classify (outcome, error, &pause_ms, error_type,
                                             sizeof error_type, &upstream_status);
    s_provider_release (self, entry, verdict, pause_ms, error_type, upstream_status);

    if (strcmp (outcome, "handback") == 0) {
        // A draining worker gave the job back unfinished: it did not fail,
        // so the attempt is not counted, and it runs again at once.
        entry_list_remove (entry);
        self->running_count--;
        entry->worker = NULL;
        if (job->attempts > 0)
            job->attempts--;
        job->status = JOB_QUEUED;
        s_put (self, job);
        s_event (self, job);
        s_enqueue (self, entry, true);
        log_info (key, "handed back by a draining worker; requeued");
    }
    else if (strcmp (outcome, "succeeded") == 0)
        s_finish (self, entry, job, JOB_SUCCEEDED, result, NULL);
    else if (strcmp (outcome, "retry") == 0 && job->attempts < job->max_attempts) {
        entry_list_remove (entry);
        self->running_count--;
        job->status = JOB_QUEUED;
        job_set_str (&job->result, result);
        job_set_str (&job->error, error);
        s_put (self, job);
        s_event (self, job);
        const config_provider_t *provider = entry->provider >= 0
                                                ? &self->config->providers[entry->provider]
                                                : NULL;
        int64_t delay = s_backoff_ms (job->attempts, retry_after_ms,
                                      provider ? provider->retry_base_ms : BACKOFF_BASE_MS,
                                      provider ? provider->retry_max_ms : BACKOFF_CAP_MS);
        entry->state = ENTRY_DELAYED;
        self->delayed_count++;
        entry->timer = evloop_timer_start (self->loop, delay, s_retry_due, entry);
        log_info (key, "attempt %d failed (%s); retry in %lld ms", job->attempts,
                  error ? error : "no detail", (long long) delay);
    }
    else
        s_finish (self, entry, job, JOB_FAILED, result, error ? error : "{\"type\":\"failed\"}");
    free (result);
    free (error);
    free (outcome);
    job_destroy (&job);
}

// s_worker_message handles one message of a worker (one body of a batch).
static void
s_worker_message (proto_msg_t *msg, void *arg)
{
    broker_t *self = arg;
    worker_t *worker = s_worker_lookup (self, msg->envelope);
    if (worker)
        worker->last_seen_ms = evloop_now_ms (self->loop);

    if (msg->cmd == PROTO_READY) {
        int64_t credit = 0, concurrency = 0;
        pack_get_int (msg->body, "credit", &credit);
        pack_get_int (msg->body, "concurrency", &concurrency);
        if (credit < 0 || credit > 1000000)
            credit = 0;
        if (!worker) {
            worker = calloc (1, sizeof *worker);
            worker->identity = zframe_dup (msg->envelope);
            worker->name = zframe_strhex (msg->envelope);
            worker->last_seen_ms = evloop_now_ms (self->loop);
            zhashx_insert (self->workers, worker->name, worker);
            log_info (NULL, "worker %s ready, credit %d", worker->name, (int) credit);
        }
        // READY states the worker's free capacity from its own count.
        worker->credit = (int) credit;
        worker->concurrency = (int) concurrency;
        worker->draining = false;
    }
    else if (msg->cmd == PROTO_RESULT)
        s_handle_result (self, worker, msg);
    else if (msg->cmd == PROTO_CHUNK)
        s_handle_chunk (self, msg);
    else if (!worker) {
        if (msg->cmd != PROTO_DISCONNECT) {
            pack_writer_t *body = pack_writer_new ();
            proto_send (self->backend, msg->envelope, PROTO_RECONNECT, body);
            pack_writer_destroy (&body);
        }
    }
    else if (msg->cmd == PROTO_CREDIT) {
        int64_t credit = 0;
        if (pack_get_int (msg->body, "credit", &credit) == 0 && credit > 0 && credit < 1000000)
            worker->credit += (int) credit;
    }
    else if (msg->cmd == PROTO_DISCONNECT) {
        log_info (NULL, "worker %s draining, %zu jobs running", worker->name,
                  worker->running.count);
        worker->draining = true;
        worker->credit = 0;
    }
    else if (msg->cmd != PROTO_HEARTBEAT)
        log_warn (NULL, "backend: unexpected %s dropped", proto_cmd_name (msg->cmd));

    // A RESULT from a worker we do not know (we restarted): it must READY.
    if (!worker && msg->cmd == PROTO_RESULT) {
        pack_writer_t *body = pack_writer_new ();
        proto_send (self->backend, msg->envelope, PROTO_RECONNECT, body);
        pack_writer_destroy (&body);
    }
}

static void
s_backend_ready (evloop_t *loop, zsock_t *sock, void *arg)
{
    proto_recv_each (sock, true, "backend", s_worker_message, arg);
}

// --- gateways ---

// s_tenant returns the quota state of a tenant, created on first use.
static tenant_t *
s_tenant (broker_t *self, const char *name)
{
    tenant_t *tenant = zhashx_lookup (self->tenants, name);
    if (!tenant) {
        tenant = calloc (1, sizeof *tenant);
        assert (tenant);
        // Internal work ('#' tenants, e.g. webhook deliveries) has no quota.
        tenant->quota = name[0] == '#' ? NULL : config_quota (self->config, name);
        tenant->tokens = tenant->quota && tenant->quota->submit_rate > 1 ? tenant->quota->submit_rate : 1;
        tenant->refilled_ms = clock_mono_ms ();
        zhashx_insert (self->tenants, name, tenant);
    }
    return tenant;
}

// s_over_quota is true (and *retry_after_ms set) when the tenant may not
// submit now; otherwise it takes one submission from the tenant's bucket.
static bool
s_over_quota (broker_t *self, const char *name, int64_t *retry_after_ms, const char **why)
{
    tenant_t *tenant = s_tenant (self, name);
    const config_quota_t *quota = tenant->quota;
    if (!quota)
        return false;
    if (quota->max_queued && tenant->active >= quota->max_queued) {
        *retry_after_ms = 1000;
        *why = "the tenant has its maximum of jobs queued";
        return true;
    }
    if (quota->submit_rate > 0) {
        int64_t now = evloop_now_ms (self->loop);
        double burst = quota->submit_rate > 1 ? quota->submit_rate : 1;
        tenant->tokens += (double) (now - tenant->refilled_ms) * quota->submit_rate / 1000.0;
        tenant->refilled_ms = now;
        if (tenant->tokens > burst)
            tenant->tokens = burst;
        if (tenant->tokens < 1.0) {
            *retry_after_ms = (int64_t) ((1.0 - tenant->tokens) * 1000.0 / quota->submit_rate) + 1;
            *why = "the tenant is over its submission rate";
            return true;
        }
        tenant->tokens -= 1.0;
    }
    return false;
}

// s_entry_new makes the in-memory entry of an active job (on no list yet).
static entry_t *
s_entry_new (broker_t *self, const job_t *job)
{
    entry_t *entry = calloc (1, sizeof *entry);
    assert (entry);
    memcpy (entry->id, job->id, sizeof entry->id);
    entry->owner = self;
    entry->priority = job->priority;
    entry->tenant = s_tenant (self, job->tenant);
    ((tenant_t *) entry->tenant)->active++;
    entry->provider = -1;
    for (size_t i = 0; job->provider && i < self->config->providers_count; i++)
        if (strcmp (self->config->providers[i].name, job->provider) == 0) {
            entry->provider = (int) i;
            self->provider_active[i]++;
        }
    entry->attempt = job->attempts;
    entry->expire_at_ms = job->expire_after_ms > 0 ? job->created_at + job->expire_after_ms : 0;
    zhashx_insert (self->entries, entry->id, entry);
    return entry;
}

// s_defer_job answers a gateway request with the job's record after the
// commit.
static void
s_defer_job (broker_t *self, zframe_t *identity, int64_t corr, const char *id)
{
    deferred_t *get = s_defer (self, DEFERRED_GET, id);
    get->identity = zframe_dup (identity);
    get->corr = corr;
}

// s_handle_chunk relays partial upstream data of a running attempt to the
// subscribers (after the commit, so it never overtakes the "running" event)
// and keeps it for those who join later.
static void
s_handle_chunk (broker_t *self, proto_msg_t *msg)
{
    size_t id_len, data_len;
    const char *id = pack_get_str (msg->body, "id", &id_len);
    const char *data = pack_get_str (msg->body, "data", &data_len);
    int64_t attempt, index;
    if (!id || !job_id_valid (id, id_len) || !data || memchr (data, '\0', data_len)
        || pack_get_int (msg->body, "attempt", &attempt) < 0
        || pack_get_int (msg->body, "index", &index) < 0 || index < 0 || index > UINT32_MAX
        || data_len > UINT32_MAX) {
        log_warn (NULL, "malformed CHUNK dropped");
        return;
    }
    char key[JOB_ID_LEN + 1];
    job_id_copy (key, id, JOB_ID_LEN);
    entry_t *entry = zhashx_lookup (self->entries, key);
    if (!entry || entry->state != ENTRY_RUNNING || entry->attempt != attempt)
        return; // a chunk of an attempt that no longer runs
    if (entry->chunks_size + 8 + data_len <= CHUNKS_KEPT_MAX) {
        char *grown = realloc (entry->chunks, entry->chunks_size + 8 + data_len);
        if (grown) {
            uint32_t header[2] = { (uint32_t) index, (uint32_t) data_len };
            memcpy (grown + entry->chunks_size, header, 8);
            memcpy (grown + entry->chunks_size + 8, data, data_len);
            entry->chunks = grown;
            entry->chunks_size += 8 + data_len;
        }
    }
    deferred_t *chunk = s_defer (self, DEFERRED_CHUNK, key);
    chunk->attempts = (int) attempt;
    chunk->index = index;
    chunk->data = malloc (data_len + 1);
    memcpy (chunk->data, data, data_len);
    chunk->data[data_len] = '\0';
}

// s_owned_job reads the job named by the request's "id" if it belongs to
// the request's "tenant"; otherwise answers 404 and returns NULL.
static job_t *
s_owned_job (broker_t *self, proto_msg_t *msg, int64_t corr)
{
    size_t len;
    const char *id = pack_get_str (msg->body, "id", &len);
    char *tenant = pack_get_strdup (msg->body, "tenant");
    job_t *job = NULL;
    if (id && tenant && job_id_valid (id, len)) {
        char key[JOB_ID_LEN + 1];
        job_id_copy (key, id, JOB_ID_LEN);
        job = store_get (self->store, key);
        if (job && strcmp (job->tenant, tenant) != 0)
            job_destroy (&job);
    }
    free (tenant);
    if (!job)
        s_reply_error (self, msg->envelope, corr, 404, "no such job");
    return job;
}

// s_handle_cancel: queued → canceled at once; running → the worker is told
// to abort and the job is canceled now (its late result is discarded);
// finished → 409.
static void
s_handle_cancel (broker_t *self, proto_msg_t *msg, int64_t corr)
{
    job_t *job = s_owned_job (self, msg, corr);
    if (!job)
        return;
    entry_t *entry = zhashx_lookup (self->entries, job->id);
    if (job_status_terminal (job->status) || !entry) {
        s_reply_error (self, msg->envelope, corr, 409, "the job has already finished");
        job_destroy (&job);
        return;
    }
    if (entry->state == ENTRY_RUNNING && entry->worker) {
        worker_t *worker = entry->worker;
        pack_writer_t *body = pack_writer_new ();
        pack_put_str (body, "id", job->id);
        pack_put_int (body, "attempt", entry->attempt);
        s_worker_send (self, worker, PROTO_CANCEL, body);
        pack_writer_destroy (&body);
    }
    char *error = s_error_json ("canceled", "canceled by the client");
    s_finish (self, entry, job, JOB_CANCELED, job->result, error);
    free (error);
    s_defer_job (self, msg->envelope, corr, job->id);
    job_destroy (&job);
}

// s_handle_retry runs a failed or canceled job again with a new budget.
static void
s_handle_retry (broker_t *self, proto_msg_t *msg, int64_t corr)
{
    job_t *job = s_owned_job (self, msg, corr);
    if (!job)
        return;
    if (job->status != JOB_FAILED && job->status != JOB_CANCELED) {
        s_reply_error (self, msg->envelope, corr, 409, "only failed or canceled jobs can be retried");
        job_destroy (&job);
        return;
    }
    if (self->commit_failing) {
        s_reply_error (self, msg->envelope, corr, 503, "the job store cannot write; retry later");
        job_destroy (&job);
        return;
    }
    job->status = JOB_QUEUED;
    job->attempts = 0;
    job->started_at = job->finished_at = 0;
    job_set_str (&job->result, NULL);
    job_set_str (&job->error, NULL);
    s_put (self, job);
    s_event (self, job);
    s_enqueue (self, s_entry_new (self, job), false);
    log_info (job->id, "retry requested: queued again");
    s_defer_job (self, msg->envelope, corr, job->id);
    job_destroy (&job);
}

typedef struct {
    void **datas;               // packed records
    size_t *sizes;              // their sizes
    size_t count;               // records collected
    size_t limit;               // page size
    size_t bytes;               // bytes of the records collected
    size_t max_bytes;           // the page's byte budget, 0 = none
} list_page_t;

// s_list_add takes one job into a page, unless it would take the page over
// its byte budget (a page always holds at least one job, so a listing
// always moves on).
static store_list_step_t
s_list_add (job_t *job, void *arg)
{
    list_page_t *page = arg;
    pack_writer_t *writer = pack_writer_new ();
    job_pack (job, writer);
    job_destroy (&job);
    size_t size;
    const void *data = pack_writer_data (writer, &size);
    if (page->max_bytes && page->count > 0 && page->bytes + size > page->max_bytes) {
        pack_writer_destroy (&writer);
        return STORE_LIST_FULL;
    }
    page->datas[page->count] = malloc (size);
    memcpy (page->datas[page->count], data, size);
    page->sizes[page->count] = size;
    page->count++;
    page->bytes += size;
    pack_writer_destroy (&writer);
    return page->count < page->limit ? STORE_LIST_MORE : STORE_LIST_LAST;
}

// s_handle_list answers one page of a tenant's jobs, newest first.
static void
s_handle_list (broker_t *self, proto_msg_t *msg, int64_t corr)
{
    char *tenant = pack_get_strdup (msg->body, "tenant");
    char *status = pack_get_strdup (msg->body, "status");
    char *cursor = pack_get_strdup (msg->body, "cursor");
    int64_t limit = 50, max_bytes = 0;
    pack_get_int (msg->body, "limit", &limit);
    pack_get_int (msg->body, "max_bytes", &max_bytes);
    int status_filter = status ? job_status_parse (status) : -1;
    if (!tenant || limit < 1 || limit > 1000 || max_bytes < 0 || (status && status_filter < 0)) {
        s_reply_error (self, msg->envelope, corr, 400, "bad list request");
        free (tenant);
        free (status);
        free (cursor);
        return;
    }
    list_page_t page = { .limit = (size_t) limit, .max_bytes = (size_t) max_bytes };
    page.datas = calloc ((size_t) limit, sizeof *page.datas);
    page.sizes = calloc ((size_t) limit, sizeof *page.sizes);
    char next_cursor[64];
    // A filter may skip many records: scan a bounded number per page and
    // hand back a cursor to continue.
    if (store_list (self->store, tenant, status_filter, cursor, (size_t) limit * 20 + 1000,
                    s_list_add, &page, next_cursor) < 0)
        s_reply_error (self, msg->envelope, corr, 400, "bad cursor");
    else {
        pack_writer_t *body = pack_writer_new ();
        pack_put_int (body, "corr", corr);
        pack_put_bin_array (body, "jobs", (const void *const *) page.datas, page.sizes, page.count);
        pack_put_str (body, "next_cursor", next_cursor[0] ? next_cursor : NULL);
        proto_send (self->frontend, msg->envelope, PROTO_LIST_OK, body);
        pack_writer_destroy (&body);
    }
    for (size_t i = 0; i < page.count; i++)
        free (page.datas[i]);
    free (page.datas);
    free (page.sizes);
    free (tenant);
    free (status);
    free (cursor);
}

static void
s_handle_submit (broker_t *self, proto_msg_t *msg, int64_t corr)
{
    job_t *job = job_unpack (msg->body);
    if (!job) {
        s_reply_error (self, msg->envelope, corr, 400, "malformed job record");
        return;
    }
    int64_t deadline = 0;
    if (pack_get_int (msg->body, "deadline", &deadline) == 0 && deadline > 0
        && clock_wall_ms () > deadline) {
        // The gateway has answered 503 by now: recording the job would run
        // work its client was told was not accepted.
        log_warn (job->id, "submission arrived after its deadline; not recorded");
        s_reply_error (self, msg->envelope, corr, 503, "the submission arrived too late");
        job_destroy (&job);
        return;
    }
    if (self->commit_failing) {
        // Nothing new is accepted while the store cannot commit (disk full):
        // the batch must not grow without bound, and a 202 needs a commit.
        s_reply_error (self, msg->envelope, corr, 503, "the job store cannot write; retry later");
        job_destroy (&job);
        return;
    }
    job_t *existing = store_get (self->store, job->id);
    char idem_id[JOB_ID_LEN + 1];
    if (!existing && job->idempotency_key
        && store_find_idempotent (self->store, job->tenant, job->idempotency_key, idem_id) == 0) {
        existing = store_get (self->store, idem_id);
        if (existing && strcmp (existing->spec, job->spec) != 0) {
            s_reply_error (self, msg->envelope, corr, 409,
                           "Idempotency-Key already used with a different body");
            job_destroy (&existing);
            job_destroy (&job);
            return;
        }
    }
    if (existing) {
        // A resubmission (gateway retry) of the same job is acknowledged
        // again; anything else reusing the id is a conflict.
        if (strcmp (existing->tenant, job->tenant) == 0 && strcmp (existing->spec, job->spec) == 0) {
            deferred_t *reply = s_defer (self, DEFERRED_SUBMIT_OK, existing->id);
            reply->identity = zframe_dup (msg->envelope);
            reply->corr = corr;
            reply->status = existing->status;
            reply->created_at = existing->created_at;
            reply->duplicate = true;
        }
        else
            s_reply_error (self, msg->envelope, corr, 409, "job id already used");
        job_destroy (&existing);
        job_destroy (&job);
        return;
    }
    int64_t retry_after_ms;
    const char *why;
    if (s_over_quota (self, job->tenant, &retry_after_ms, &why)) {
        pack_writer_t *body = pack_writer_new ();
        s_error_body (body, corr, 429, why);
        pack_put_int (body, "retry_after_ms", retry_after_ms);
        proto_send (self->frontend, msg->envelope, PROTO_ERROR, body);
        pack_writer_destroy (&body);
        job_destroy (&job);
        return;
    }
    if (self->queued_count + self->delayed_count + self->running_count >= self->config->max_queued) {
        s_reply_error (self, msg->envelope, corr, 503, "queue full");
        job_destroy (&job);
        return;
    }
    for (size_t i = 0; job->provider && i < self->config->providers_count; i++) {
        const config_provider_t *provider = &self->config->providers[i];
        if (provider->max_queued && strcmp (provider->name, job->provider) == 0
            && self->provider_active[i] >= provider->max_queued) {
            s_reply_error (self, msg->envelope, corr, 503, "the provider's queue is full");
            job_destroy (&job);
            return;
        }
    }
    job->status = JOB_QUEUED;
    job->attempts = 0;
    job->started_at = job->finished_at = 0;
    if (job->created_at <= 0)
        job->created_at = clock_wall_ms ();
    s_put_version (self, job, true);

    s_enqueue (self, s_entry_new (self, job), false);

    deferred_t *reply = s_defer (self, DEFERRED_SUBMIT_OK, job->id);
    reply->identity = zframe_dup (msg->envelope);
    reply->corr = corr;
    reply->status = JOB_QUEUED;
    reply->created_at = job->created_at;
    s_event (self, job);
    log_debug (job->id, "accepted kind=%s priority=%d", job->kind, job->priority);
    job_destroy (&job);
}

// s_gateway_request handles one request of a gateway (one body of a batch).
static void
s_gateway_request (proto_msg_t *msg, void *arg)
{
    broker_t *self = arg;
    int64_t corr;
    if (pack_get_int (msg->body, "corr", &corr) < 0) {
        log_warn (NULL, "frontend: %s without corr dropped", proto_cmd_name (msg->cmd));
        return;
    }
    if (msg->cmd == PROTO_SUBMIT)
        s_handle_submit (self, msg, corr);
    else if (msg->cmd == PROTO_GET) {
        size_t len;
        const char *id = pack_get_str (msg->body, "id", &len);
        if (!id || !job_id_valid (id, len))
            s_reply_error (self, msg->envelope, corr, 404, "no such job");
        else {
            // Answered after the commit so a reader never sees a state the
            // store could still lose.
            char key[JOB_ID_LEN + 1];
            job_id_copy (key, id, JOB_ID_LEN);
            s_defer_job (self, msg->envelope, corr, key);
            bool with_chunks = false;
            pack_get_bool (msg->body, "with_chunks", &with_chunks);
            self->deferred[self->deferred_count - 1].with_chunks = with_chunks;
        }
    }
    else if (msg->cmd == PROTO_CANCEL)
        s_handle_cancel (self, msg, corr);
    else if (msg->cmd == PROTO_RETRY)
        s_handle_retry (self, msg, corr);
    else if (msg->cmd == PROTO_LIST)
        s_handle_list (self, msg, corr);
    else if (msg->cmd == PROTO_PROVIDERS) {
        json_t *list = json_array ();
        int64_t now = evloop_now_ms (self->loop);
        for (size_t i = 0; i + 1 < self->slots; i++) {
            size_t active = self->provider_active[i];
            int in_flight = provider_in_flight (self->providers[i]);
            json_array_append_new (list, provider_state_json (self->providers[i], now,
                                                              active > (size_t) in_flight
                                                                  ? active - (size_t) in_flight
                                                                  : 0));
        }
        json_t *object = json_pack ("{s:o}", "providers", list);
        char *text = json_dumps (object, JSON_COMPACT);
        json_decref (object);
        pack_writer_t *body = pack_writer_new ();
        pack_put_int (body, "corr", corr);
        pack_put_str (body, "json", text);
        proto_send (self->frontend, msg->envelope, PROTO_PROVIDERS_OK, body);
        pack_writer_destroy (&body);
        free (text);
    }
    else if (msg->cmd == PROTO_PING) {
        pack_writer_t *body = pack_writer_new ();
        pack_put_int (body, "corr", corr);
        size_t live = 0;
        for (worker_t *worker = zhashx_first (self->workers); worker;
             worker = zhashx_next (self->workers))
            if (!worker->draining)
                live++;
        pack_put_int (body, "workers", (int64_t) live);
        pack_put_int (body, "queued", (int64_t) (self->queued_count + self->delayed_count));
        pack_put_int (body, "running", (int64_t) self->running_count);
        proto_send (self->frontend, msg->envelope, PROTO_PONG, body);
        pack_writer_destroy (&body);
    }
    else
        s_reply_error (self, msg->envelope, corr, 400, "unexpected command");
}

static void
s_frontend_ready (evloop_t *loop, zsock_t *sock, void *arg)
{
    proto_recv_each (sock, true, "frontend", s_gateway_request, arg);
}

// --- the loop's hooks ---

static void
s_commit_retry (evloop_t *loop, void *arg)
{
    broker_t *self = arg;
    self->commit_retry = NULL;
}

// s_commit_wake ends a commit spacing: the idle hook that follows commits.
static void
s_commit_wake (evloop_t *loop, void *arg)
{
    broker_t *self = arg;
    self->commit_due = NULL;
}

static void
s_on_idle (evloop_t *loop, void *arg)
{
    broker_t *self = arg;
    if (!self->commit_failing)
        s_dispatch (self);
    if (self->commit_retry || self->commit_due)
        return;
    if (store_pending (self->store) > 0) {
        int64_t now_us = clock_mono_us ();
        if (now_us - self->last_commit_us < COMMIT_SPACING_US) {
            int64_t wait_ms = (COMMIT_SPACING_US - (now_us - self->last_commit_us) + 999) / 1000;
            self->commit_due = evloop_timer_start (loop, wait_ms, s_commit_wake, self);
            return;
        }
        self->last_commit_us = now_us;
    }
    if (store_commit (self->store) < 0) {
        // Keep the batch and the waiting replies; try again shortly. The
        // gateways answer 503 to submitters whose wait runs out.
        self->commit_failing = true;
        self->commit_retry = evloop_timer_start (loop, COMMIT_RETRY_MS, s_commit_retry, self);
        return;
    }
    if (self->commit_failing)
        log_info (NULL, "store commits again");
    self->commit_failing = false;
    s_flush (self);
}

static void
s_tick (evloop_t *loop, void *arg)
{
    broker_t *self = arg;
    int64_t now = evloop_now_ms (loop);
    self->tick = evloop_timer_start (loop, TICK_MS, s_tick, self);
    // A broker that was itself stalled (stopped, swapped, starved) cannot
    // judge others by their silence: their messages are still unread.
    // Restart the liveness clocks instead of declaring everyone dead.
    int64_t since_last_tick = self->last_tick_ms ? now - self->last_tick_ms : 0;
    self->last_tick_ms = now;
    if (since_last_tick > 4 * TICK_MS) {
        log_warn (NULL, "the broker was stalled for %lld ms; liveness clocks restarted",
                  (long long) since_last_tick);
        for (worker_t *worker = zhashx_first (self->workers); worker;
             worker = zhashx_next (self->workers))
            worker->last_seen_ms = now;
        for (worker_t *worker = zhashx_first (self->workers); worker;
             worker = zhashx_next (self->workers))
            for (entry_t *entry = worker->running.head; entry; entry = entry->next)
                if (entry->lease_until_ms < now + LEASE_GRACE_MS)
                    entry->lease_until_ms = now + LEASE_GRACE_MS;
    }

    // Dead workers first, then heartbeats to the living (§5).
    zlistx_t *dead = zlistx_new ();
    for (worker_t *worker = zhashx_first (self->workers); worker;
         worker = zhashx_next (self->workers))
        if (now - worker->last_seen_ms > WORKER_LIVENESS_MS)
            zlistx_add_end (dead, worker);
    for (worker_t *worker = zlistx_first (dead); worker; worker = zlistx_next (dead))
        s_worker_dead (self, worker, "silent for 3 s");
    zlistx_destroy (&dead);
    for (worker_t *worker = zhashx_first (self->workers); worker;
         worker = zhashx_next (self->workers))
        if (now - worker->last_sent_ms >= HEARTBEAT_MS) {
            pack_writer_t *body = pack_writer_new ();
            s_worker_send (self, worker, PROTO_HEARTBEAT, body);
            pack_writer_destroy (&body);
        }

    // Leases: an attempt running far past its timeout is lost.
    for (worker_t *worker = zhashx_first (self->workers); worker;
         worker = zhashx_next (self->workers)) {
        entry_t *entry = worker->running.head;
        while (entry) {
            entry_t *next = entry->next;
            if (now > entry->lease_until_ms)
                s_requeue_lost (self, entry, "lease expired");
            entry = next;
        }
    }
    entry_t *entry = self->orphans.head;
    while (entry) {
        entry_t *next = entry->next;
        if (now > entry->lease_until_ms)
            s_requeue_lost (self, entry, "not reclaimed after broker restart");
        entry = next;
    }

    if (now >= self->next_expiry_sweep_ms && !self->commit_failing) {
        self->next_expiry_sweep_ms = now + EXPIRY_SWEEP_MS;
        long deleted = store_expire (self->store, clock_wall_ms (), EXPIRY_SWEEP_LIMIT);
        if (deleted > 0)
            log_info (NULL, "deleted %ld finished jobs past their TTL", deleted);
        if (deleted == EXPIRY_SWEEP_LIMIT)
            self->next_expiry_sweep_ms = now + TICK_MS;
    }
}

// --- construction ---

static void
s_recover (job_t *job, void *arg)
{
    broker_t *self = arg;
    entry_t *entry = s_entry_new (self, job);
    if (job->status == JOB_RUNNING) {
        // Its worker may still be running it and will send the result
        // after it reconnects; give it a moment before running it again.
        entry->state = ENTRY_RUNNING;
        entry->lease_until_ms = clock_mono_ms () + ORPHAN_GRACE_MS;
        entry_list_append (&self->orphans, entry);
        self->running_count++;
    }
    else
        s_enqueue (self, entry, false);
    job_destroy (&job);
}

static zsock_t *
s_bind (int type, const char *endpoint, char *error, size_t error_size)
{
    zsock_t *sock = zsock_new (type);
    if (!sock) {
        snprintf (error, error_size, "broker: cannot create socket");
        return NULL;
    }
    zsock_set_linger (sock, 1000);
    zsock_set_sndhwm (sock, 100000);
    zsock_set_rcvhwm (sock, 100000);
    if (type == ZMQ_ROUTER)
        zsock_set_router_mandatory (sock, 1);
    if (zsock_bind (sock, "%s", endpoint) < 0) {
        snprintf (error, error_size, "broker: cannot bind %s: %s", endpoint,
                  zmq_strerror (zmq_errno ()));
        zsock_destroy (&sock);
        return NULL;
    }
    return sock;
}

broker_t *
broker_new (const config_t *config, evloop_t *loop, char *error, size_t error_size)
{
    broker_t *self = calloc (1, sizeof *self);
    self->config = config;
    self->loop = loop;
    self->epoch = clock_wall_ms ();
    self->entries = zhashx_new ();
    self->tenants = zhashx_new ();
    zhashx_set_destructor (self->tenants, (zhashx_destructor_fn *) zstr_free);
    self->provider_active = calloc (config->providers_count + 1, sizeof *self->provider_active);
    self->slots = config->providers_count + 1;
    self->queues = calloc (self->slots, sizeof *self->queues);
    self->providers = calloc (self->slots, sizeof *self->providers);
    for (size_t i = 0; i < self->slots; i++)
        self->providers[i] = provider_new (i < config->providers_count ? &config->providers[i] : NULL);
    self->workers = zhashx_new ();
    zhashx_set_destructor (self->workers, s_worker_destroy);
    self->store = store_new (config->data_dir, config->store_map_mb, config->durability_fsync,
                             error, error_size);
    if (!self->store) {
        broker_destroy (&self);
        return NULL;
    }
    long recovered = store_scan_active (self->store, s_recover, self);
    if (recovered < 0) {
        snprintf (error, error_size, "broker: cannot read the store in %s", config->data_dir);
        broker_destroy (&self);
        return NULL;
    }
    log_info (NULL, "store %s: %zu records, recovered %ld active jobs (%zu queued, %zu running)",
              config->data_dir, store_count (self->store), recovered, self->queued_count,
              self->running_count);

    self->frontend = s_bind (ZMQ_ROUTER, config->broker_frontend, error, error_size);
    self->backend = self->frontend ? s_bind (ZMQ_ROUTER, config->broker_backend, error, error_size)
                                   : NULL;
    self->publisher = self->backend
                          ? s_bind (ZMQ_PUB, config->broker_publisher, error, error_size)
                          : NULL;
    if (!self->publisher) {
        broker_destroy (&self);
        return NULL;
    }
    self->replies = proto_batch_new (self->frontend);
    self->events = proto_batch_new (self->publisher);
    self->no_topic = zframe_new_empty ();
    if (!self->replies || !self->events || !self->no_topic) {
        snprintf (error, error_size, "broker: out of memory");
        broker_destroy (&self);
        return NULL;
    }
    evloop_sock_add (loop, self->frontend, s_frontend_ready, self);
    evloop_sock_add (loop, self->backend, s_backend_ready, self);
    evloop_on_idle (loop, s_on_idle, self);
    self->tick = evloop_timer_start (loop, TICK_MS, s_tick, self);
    log_info (NULL, "broker listening: frontend %s, backend %s, publisher %s, durability %s",
              config->broker_frontend, config->broker_backend, config->broker_publisher,
              config->durability_fsync ? "fsync" : "os");
    return self;
}

void
broker_destroy (broker_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    broker_t *self = *self_p;
    if (self->store) {
        if (store_commit (self->store) == 0)
            s_flush (self);
        else
            log_error (NULL, "final commit failed: %zu records not written",
                       store_pending (self->store));
    }
    for (size_t i = 0; i < self->deferred_count; i++) {
        zframe_destroy (&self->deferred[i].identity);
        free (self->deferred[i].data);
    }
    free (self->deferred);
    evloop_timer_cancel (self->loop, &self->tick);
    evloop_timer_cancel (self->loop, &self->commit_retry);
    evloop_timer_cancel (self->loop, &self->commit_due);
    evloop_timer_cancel (self->loop, &self->dispatch_timer);
    if (self->frontend)
        evloop_sock_remove (self->loop, self->frontend);
    if (self->backend)
        evloop_sock_remove (self->loop, self->backend);
    evloop_on_idle (self->loop, NULL, NULL);
    for (entry_t *entry = zhashx_first (self->entries); entry;
         entry = zhashx_next (self->entries)) {
        evloop_timer_cancel (self->loop, &entry->timer);
        free (entry->chunks);
        free (entry);
    }
    zhashx_destroy (&self->entries);
    zhashx_destroy (&self->tenants);
    free (self->provider_active);
    for (size_t i = 0; self->providers && i < self->slots; i++)
        provider_destroy (&self->providers[i]);
    free (self->providers);
    free (self->queues);
    zhashx_destroy (&self->workers);
    proto_batch_destroy (&self->replies);
    proto_batch_destroy (&self->events);
    zframe_destroy (&self->no_topic);
    zsock_destroy (&self->frontend);
    zsock_destroy (&self->backend);
    zsock_destroy (&self->publisher);
    store_destroy (&self->store);
    free (self);
    *self_p = NULL;
}

void
broker_test (bool verbose)
{
    if (verbose)
        printf (" * broker: ");
    for (int i = 0; i < 100; i++) {
        assert (s_backoff_ms (1, 0, 500, 60000) <= 500);
        assert (s_backoff_ms (3, 0, 500, 60000) <= 2000);
        assert (s_backoff_ms (40, 0, 500, 60000) <= 60000);
        assert (s_backoff_ms (1, 2000, 500, 60000) >= 2000);
        assert (s_backoff_ms (5, 0, 100, 300) <= 300);
    }
    if (verbose)
        printf ("OK\n");
}
