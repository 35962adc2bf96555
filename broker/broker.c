#include "broker.h"
#include "jsontext.h"
#include "log.h"
#include "proto.h"
#include "provider.h"
#include "queue.h"
#include "store.h"

#include <assert.h>
#include <errno.h>
#include <sodium.h>
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
// How often the store's fill is measured (near full, its free-page list is
// walked).
#define STORE_MEASURE_MS TICK_MS
// After commits have failed this long for want of space, versions too large
// to fit lose their result (result_not_stored), so a finished job's state
// reaches the disk and nothing waits for space forever (issue 10 #4).
#define STORE_DEGRADE_MS 2000
// Retry-After of refusals that last until space or quota frees up.
#define STORE_FULL_RETRY_MS 5000
#define STORED_QUOTA_RETRY_MS 10000
// An error text from a worker is at most this long (a type and a message).
#define ERROR_TEXT_MAX (64 * 1024)
// A lease token: 16 bytes of a keyed BLAKE2b of (job id, attempt), in hex.
#define LEASE_TOKEN_LEN 32
// A worker's self-chosen identity (READY's "worker") is at most this long.
#define WORKER_KEY_MAX 64
// Tenant names longer than this are refused (they come from API keys).
#define TENANT_NAME_MAX 256
// How often idle tenants' state is dropped.
#define TENANT_SWEEP_MS 10000
// The record tenant of a tenant's webhook deliveries is this prefix and the
// tenant's name: no API key maps to a '#' tenant, so deliveries never show
// in a listing, and the prefix names whose quotas they count against.
#define WEBHOOK_TENANT_PREFIX "#webhooks/"

typedef struct _tenant_t tenant_t;

typedef struct {
    zframe_t *identity;         // its routing id on the backend now
    char *name;                 // that routing id in hex, its key in workers
    char *key;                  // its identity across reconnects: READY's "worker", or name
    int64_t credit;             // DISPATCHes it can still take
    int64_t concurrency;        // calls it announced it runs at once (bounded)
    entry_list_t running;       // entries it runs
    int64_t last_seen_ms;       // monotonic time of its last message
    int64_t last_sent_ms;       // when we last sent it anything
    bool draining;              // sent DISCONNECT: no more dispatches
} worker_t;

// A tenant's admission and share of execution (SPEC §5, issue 17 #5/#6),
// kept by the broker so the limits hold across every gateway. Webhook
// deliveries count against the tenant of the job they report.
struct _tenant_t {
    char *name;                 // the tenant ("" in open mode)
    const config_quota_t *quota; // its configured quota, or NULL
    uint64_t max_stored_bytes;  // bytes its records may take in the store
    double tokens;              // submissions it may make now
    int64_t refilled_ms;        // monotonic time of the last refill
    size_t active;              // its jobs not yet finished (deliveries included)
    size_t running;             // its calls running now
    size_t queued;              // its entries in its queues
    queue_t *queues;            // its waiting entries, one queue per provider + direct
    bool in_ring;               // on the dispatch ring (it has entries queued)
    tenant_t *ring_prev;        // neighbours on the ring
    tenant_t *ring_next;
};

typedef enum {
    DEFERRED_SUBMIT_OK, DEFERRED_GET, DEFERRED_EVENT, DEFERRED_CHUNK, DEFERRED_DROPPED
} deferred_kind_t;

// Partial data kept per running attempt for subscribers that join late or
// reconnect (SSE Last-Event-ID); past this, chunks are only relayed live.
#define CHUNKS_KEPT_MAX (256 * 1024)

// A reply or event that may leave only after the job's version is committed.
typedef struct {
    deferred_kind_t kind;       // what to send
    zframe_t *identity;         // gateway routing id (replies)
    int64_t corr;               // gateway's correlation id (replies)
    char id[JOB_ID_LEN + 1];    // the job
    job_status_t status;        // event status, SUBMIT_OK status
    int attempts;               // event attempts; CHUNK: the attempt's identity
    int64_t created_at;         // SUBMIT_OK created_at
    bool duplicate;             // SUBMIT_OK of a resubmission
    bool with_chunks;           // GET: add the running attempt's chunks
    char *tenant;               // GET: the asking tenant (owned)
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
    zhashx_t *workers;          // hex routing id → worker_t
    zhashx_t *worker_keys;      // worker key → worker_t (not owned)
    zhashx_t *worker_aliases;   // earlier routing ids (hex) of reconnected workers → key
    provider_t **providers;     // live state per provider + direct (last)
    size_t slots;               // providers_count + 1
    size_t queued_count;        // entries in all queues
    tenant_t *ring_head;        // tenants with entries queued, next to serve first
    tenant_t *ring_tail;        // the last of them
    size_t ring_size;           // tenants on the ring
    evloop_timer_t *dispatch_timer; // wakes the dispatcher for a rate limit or pause
    entry_list_t orphans;       // running at start-up, waiting for their worker
    size_t delayed_count;       // entries waiting for a retry timer
    size_t running_count;       // entries running
    size_t *provider_active;    // active jobs per configured provider
    zhashx_t *tenants;          // tenant name → tenant_t
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
    int64_t next_store_measure_ms; // monotonic time of the next fill measure
    int64_t next_tenant_sweep_ms; // monotonic time of the next idle-tenant sweep
    int64_t last_tick_ms;       // when housekeeping last ran (stall detection)
    bool commit_failing;        // the last commit left versions unwritten
    int64_t commit_failing_since_ms; // monotonic time the failures began
    bool store_high;            // the store's free space is below its reserve
};

static void s_tick (evloop_t *loop, void *arg);
static void s_on_idle (evloop_t *loop, void *arg);
static void s_frontend_ready (evloop_t *loop, zsock_t *sock, void *arg);
static void s_backend_ready (evloop_t *loop, zsock_t *sock, void *arg);
static void s_handle_chunk (broker_t *self, worker_t *worker, proto_msg_t *msg);

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

// s_deferred_free releases what a deferred entry owns.
static void
s_deferred_free (deferred_t *deferred)
{
    zframe_destroy (&deferred->identity);
    free (deferred->data);
    deferred->data = NULL;
    free (deferred->tenant);
    deferred->tenant = NULL;
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

// s_reply_refusal answers a gateway request with ERROR at once (errors
// change nothing); retry_after_ms > 0 tells when trying again may succeed.
static void
s_reply_refusal (broker_t *self, zframe_t *identity, int64_t corr, int code,
                 const char *message, int64_t retry_after_ms)
{
    pack_writer_t *body = pack_writer_new ();
    s_error_body (body, corr, code, message);
    if (retry_after_ms > 0)
        pack_put_int (body, "retry_after_ms", retry_after_ms);
    if (proto_send (self->frontend, identity, PROTO_ERROR, body) < 0)
        log_warn (NULL, "cannot answer gateway: %s", zmq_strerror (errno));
    pack_writer_destroy (&body);
}

// s_reply_error answers a gateway request at once with ERROR.
static void
s_reply_error (broker_t *self, zframe_t *identity, int64_t corr, int code, const char *message)
{
    s_reply_refusal (self, identity, corr, code, message, 0);
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

// s_send_deferred sends one deferred reply or event.
static void
s_send_deferred (broker_t *self, deferred_t *deferred)
{
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
    else if (deferred->kind == DEFERRED_GET) {
        job_t *job = store_get (self->store, deferred->id);
        // Defence in depth: the gateway checks the tenant too, but a peer
        // that asks for another tenant's job learns nothing (§3.1).
        if (job && deferred->tenant && strcmp (job->tenant, deferred->tenant) == 0) {
            pack_put_int (body, "corr", deferred->corr);
            job_pack (job, body);
            entry_t *entry = deferred->with_chunks ? zhashx_lookup (self->entries, job->id) : NULL;
            if (entry && entry->state == ENTRY_RUNNING && entry->chunks_size > 0)
                pack_put_strn (body, "chunks", entry->chunks, entry->chunks_size);
            s_reply (self, deferred->identity, PROTO_JOB, body);
        }
        else {
            s_error_body (body, deferred->corr, 404, "no such job");
            s_reply (self, deferred->identity, PROTO_ERROR, body);
        }
        job_destroy (&job);
    }
    pack_writer_destroy (&body);
}

// s_flush sends every deferred reply and event whose job has no version
// waiting in the batch (all of them after a whole commit; after a partial
// one, those of jobs still waiting for space stay, in order).
static void
s_flush (broker_t *self)
{
    if (!self->replies)
        return;                 // broker_new failed before its sockets
    bool partial = store_pending (self->store) > 0;
    size_t kept = 0;
    for (size_t i = 0; i < self->deferred_count; i++) {
        deferred_t *deferred = &self->deferred[i];
        if (partial && deferred->kind != DEFERRED_DROPPED
            && store_pending_has (self->store, deferred->id)) {
            self->deferred[kept++] = *deferred;
            continue;
        }
        if (deferred->kind != DEFERRED_DROPPED)
            s_send_deferred (self, deferred);
        s_deferred_free (deferred);
    }
    self->deferred_count = kept;
    size_t replies = proto_batch_count (self->replies);
    if (proto_batch_flush (self->replies) < 0)
        log_warn (NULL, "gateway gone: %zu replies dropped", replies);
    if (proto_batch_flush (self->events) < 0)
        log_warn (NULL, "events dropped: %s", zmq_strerror (errno));
}

// --- tenants: admission and their share of execution ---

// s_quota_tenant returns the tenant whose quotas a record counts against:
// its own, or for a webhook delivery, the tenant of the job it reports.
static const char *
s_quota_tenant (const char *record_tenant)
{
    size_t prefix = strlen (WEBHOOK_TENANT_PREFIX);
    return strncmp (record_tenant, WEBHOOK_TENANT_PREFIX, prefix) == 0 ? record_tenant + prefix
                                                                         : record_tenant;
}

static void
s_tenant_destroy (void **item)
{
    tenant_t *tenant = *item;
    if (tenant) {
        free (tenant->name);
        free (tenant->queues);
        free (tenant);
        *item = NULL;
    }
}

// s_tenant returns the state of a tenant, created on first use.
static tenant_t *
s_tenant (broker_t *self, const char *name)
{
    tenant_t *tenant = zhashx_lookup (self->tenants, name);
    if (!tenant) {
        tenant = calloc (1, sizeof *tenant);
        assert (tenant);
        tenant->name = strdup (name);
        tenant->queues = calloc (self->slots, sizeof *tenant->queues);
        assert (tenant->name && tenant->queues);
        // Internal work ('#' tenants) has no quota.
        tenant->quota = name[0] == '#' ? NULL : config_quota (self->config, name);
        tenant->max_stored_bytes = config_max_stored_bytes (self->config, tenant->quota);
        tenant->tokens = tenant->quota && tenant->quota->submit_rate > 1 ? tenant->quota->submit_rate : 1;
        tenant->refilled_ms = clock_mono_ms ();
        zhashx_insert (self->tenants, name, tenant);
    }
    return tenant;
}

// s_tenant_stored_bytes is what a tenant's records take in the store, its
// webhook deliveries' included.
static uint64_t
s_tenant_stored_bytes (broker_t *self, const tenant_t *tenant)
{
    char deliveries[TENANT_NAME_MAX + sizeof WEBHOOK_TENANT_PREFIX];
    snprintf (deliveries, sizeof deliveries, "%s%s", WEBHOOK_TENANT_PREFIX, tenant->name);
    return store_tenant_bytes (self->store, tenant->name)
           + store_tenant_bytes (self->store, deliveries);
}

// s_refill tops up a tenant's submission bucket; returns its size.
static double
s_refill (broker_t *self, tenant_t *tenant)
{
    const config_quota_t *quota = tenant->quota;
    double burst = quota && quota->submit_rate > 1 ? quota->submit_rate : 1;
    if (!quota || quota->submit_rate <= 0)
        return burst;
    int64_t now = evloop_now_ms (self->loop);
    tenant->tokens += (double) (now - tenant->refilled_ms) * quota->submit_rate / 1000.0;
    tenant->refilled_ms = now;
    if (tenant->tokens > burst)
        tenant->tokens = burst;
    return burst;
}

// What creates work (docs/protocol.md §3.1 "Admission").
typedef enum {
    ADMIT_SUBMIT,               // SUBMIT: a client's new job
    ADMIT_RETRY,                // RETRY: a client runs a finished job again
    ADMIT_WEBHOOK               // a finishing job's callback delivery
} admit_path_t;

// Why work was refused: an ERROR's code, message and Retry-After.
typedef struct {
    int code;                   // 429 (the tenant's limits) or 503 (the broker's)
    const char *why;            // the ERROR's message
    int64_t retry_after_ms;     // when trying again may succeed
} refusal_t;

// s_admit is the one admission check of every path that creates work:
// submit, batch (one SUBMIT per item), retry and webhook. A client's work is
// refused while the store cannot take it, over the tenant's active jobs,
// stored bytes or submission rate, or over the broker's or the provider's
// queue. A delivery is one more active job of the tenant whose job it
// reports, which that job's finish just freed; it is never refused for
// space, rate or queue length, which would break a promise made at submit.
// Returns true (and takes one submission from the tenant's rate), or false
// with *refusal set.
static bool
s_admit (broker_t *self, tenant_t *tenant, const char *provider, admit_path_t path,
         refusal_t *refusal)
{
    const config_quota_t *quota = tenant->quota;
    bool client = path != ADMIT_WEBHOOK;
    if (client && (self->commit_failing || self->store_high)) {
        *refusal = (refusal_t) { 503, "the job store is full or cannot write; retry later",
                                 STORE_FULL_RETRY_MS };
        return false;
    }
    if (quota && quota->max_queued && tenant->active >= quota->max_queued) {
        *refusal = (refusal_t) { 429, "the tenant has its maximum of jobs queued", 1000 };
        return false;
    }
    if (client && tenant->name[0] != '#'
        && s_tenant_stored_bytes (self, tenant) >= tenant->max_stored_bytes) {
        *refusal = (refusal_t) { 429, "the tenant's finished jobs fill its share of the store",
                                 STORED_QUOTA_RETRY_MS };
        return false;
    }
    if (client && self->queued_count + self->delayed_count + self->running_count
                      >= self->config->max_queued) {
        *refusal = (refusal_t) { 503, "queue full", 1000 };
        return false;
    }
    for (size_t i = 0; client && provider && i < self->config->providers_count; i++) {
        const config_provider_t *configured = &self->config->providers[i];
        if (configured->max_queued && strcmp (configured->name, provider) == 0
            && self->provider_active[i] >= configured->max_queued) {
            *refusal = (refusal_t) { 503, "the provider's queue is full", 1000 };
            return false;
        }
    }
    // The rate last: a refused request takes no submission.
    if (client && quota && quota->submit_rate > 0) {
        s_refill (self, tenant);
        if (tenant->tokens < 1.0) {
            int64_t wait = (int64_t) ((1.0 - tenant->tokens) * 1000.0 / quota->submit_rate) + 1;
            *refusal = (refusal_t) { 429, "the tenant is over its submission rate", wait };
            return false;
        }
        tenant->tokens -= 1.0;
    }
    return true;
}

// s_tenant_at_limit is true while a tenant runs as many calls as its quota
// allows.
static bool
s_tenant_at_limit (const tenant_t *tenant)
{
    return tenant->quota && tenant->quota->max_running
           && tenant->running >= tenant->quota->max_running;
}

// The dispatch ring: tenants with entries queued, served in turn.

static void
s_ring_add (broker_t *self, tenant_t *tenant)
{
    tenant->ring_prev = self->ring_tail;
    tenant->ring_next = NULL;
    if (self->ring_tail)
        self->ring_tail->ring_next = tenant;
    else
        self->ring_head = tenant;
    self->ring_tail = tenant;
    tenant->in_ring = true;
    self->ring_size++;
}

static void
s_ring_remove (broker_t *self, tenant_t *tenant)
{
    if (!tenant->in_ring)
        return;
    if (tenant->ring_prev)
        tenant->ring_prev->ring_next = tenant->ring_next;
    else
        self->ring_head = tenant->ring_next;
    if (tenant->ring_next)
        tenant->ring_next->ring_prev = tenant->ring_prev;
    else
        self->ring_tail = tenant->ring_prev;
    tenant->ring_prev = tenant->ring_next = NULL;
    tenant->in_ring = false;
    self->ring_size--;
}

// s_sweep_tenants forgets tenants with nothing active whose submission
// bucket is full again: what they were is what they would be made as.
static void
s_sweep_tenants (broker_t *self)
{
    zlistx_t *names = zhashx_keys (self->tenants);
    for (const char *name = zlistx_first (names); name; name = zlistx_next (names)) {
        tenant_t *tenant = zhashx_lookup (self->tenants, name);
        if (tenant->active == 0 && tenant->running == 0 && tenant->queued == 0
            && tenant->tokens >= s_refill (self, tenant))
            zhashx_delete (self->tenants, name);
    }
    zlistx_destroy (&names);
}

// --- job lifecycle ---

// s_slot is the queue and provider index of an entry.
static size_t
s_slot (broker_t *self, const entry_t *entry)
{
    return entry->provider >= 0 ? (size_t) entry->provider : self->slots - 1;
}

// s_enqueue puts an entry in its tenant's queue of its provider (at the
// front: a job handed back keeps its place).
static void
s_enqueue (broker_t *self, entry_t *entry, bool front)
{
    tenant_t *tenant = entry->tenant;
    queue_t *queue = &tenant->queues[s_slot (self, entry)];
    if (front)
        queue_push_front (queue, entry);
    else
        queue_push (queue, entry);
    tenant->queued++;
    self->queued_count++;
    if (!tenant->in_ring)
        s_ring_add (self, tenant);
}

// s_unqueued accounts for an entry taken out of its tenant's queues.
static void
s_unqueued (broker_t *self, tenant_t *tenant)
{
    tenant->queued--;
    self->queued_count--;
    if (tenant->queued == 0)
        s_ring_remove (self, tenant);
}

// s_pop takes the next entry of a tenant's queue of slot.
static entry_t *
s_pop (broker_t *self, tenant_t *tenant, size_t slot)
{
    entry_t *entry = queue_pop (&tenant->queues[slot]);
    if (entry)
        s_unqueued (self, tenant);
    return entry;
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
    provider_call_t call = { .outcome = outcome, .latency_ms = now - entry->dispatched_ms,
                             .retry_after_ms = retry_after_ms,
                             .timeout_ms = entry->attempt_timeout_ms,
                             .error_type = error_type, .upstream_status = upstream_status };
    provider_finished (self->providers[s_slot (self, entry)], ((tenant_t *) entry->tenant)->name,
                       now, &call);
}

// s_leave_running takes a running entry off its worker (or the orphans) and
// out of the running counts; the caller says where it goes next.
static void
s_leave_running (broker_t *self, entry_t *entry)
{
    entry_list_remove (entry);
    self->running_count--;
    ((tenant_t *) entry->tenant)->running--;
    entry->worker = NULL;
}

static void
s_entry_free (broker_t *self, entry_t *entry)
{
    s_provider_release (self, entry, PROVIDER_NEUTRAL, 0, NULL, 0);
    evloop_timer_cancel (self->loop, &entry->timer);
    tenant_t *tenant = entry->tenant;
    if (entry->state == ENTRY_QUEUED && entry->list) {
        queue_remove (&tenant->queues[s_slot (self, entry)], entry);
        s_unqueued (self, tenant);
    }
    else if (entry->state == ENTRY_RUNNING)
        s_leave_running (self, entry);
    else
        entry_list_remove (entry);
    if (entry->state == ENTRY_DELAYED)
        self->delayed_count--;
    if (entry->provider >= 0)
        self->provider_active[entry->provider]--;
    tenant->active--;
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

// s_entry_new makes the in-memory entry of an active job (on no list yet).
static entry_t *
s_entry_new (broker_t *self, const job_t *job)
{
    entry_t *entry = calloc (1, sizeof *entry);
    assert (entry);
    memcpy (entry->id, job->id, sizeof entry->id);
    entry->owner = self;
    entry->priority = job->priority;
    tenant_t *tenant = s_tenant (self, s_quota_tenant (job->tenant));
    entry->tenant = tenant;
    tenant->active++;
    entry->provider = -1;
    for (size_t i = 0; job->provider && i < self->config->providers_count; i++)
        if (strcmp (self->config->providers[i].name, job->provider) == 0) {
            entry->provider = (int) i;
            self->provider_active[i]++;
        }
    entry->attempt = (int) job->attempt_seq;
    entry->attempt_timeout_ms = job->timeout_ms;
    entry->expire_at_ms = job->expire_after_ms > 0 ? job->created_at + job->expire_after_ms : 0;
    zhashx_insert (self->entries, entry->id, entry);
    return entry;
}

// s_splice_json appends text to a growing JSON text; false when memory ran
// out (*out is then freed and NULL).
static bool
s_splice_json (char **out, size_t *len, const char *text)
{
    size_t add = strlen (text);
    char *grown = *out ? realloc (*out, *len + add + 1) : NULL;
    if (!grown) {
        free (*out);
        *out = NULL;
        return false;
    }
    memcpy (grown + *len, text, add + 1);
    *out = grown;
    *len += add;
    return true;
}

// s_delivery_spec renders a webhook delivery's spec as text:
// {"kind":"webhook","request":{"url":…,"job_id":…,"payload":<job object>}},
// the job object made by job_render (stored texts spliced, not parsed
// again). A spec must stay readable under common/jsontext's policy, which is
// how the worker reads it: a payload too deep or too large for it loses its
// result (then its metadata), replaced by a note that says where to read
// it. Returns a new string, or NULL when memory ran out.
static char *
s_delivery_spec (const job_t *job, const char *url)
{
    job_t *copy = job_dup (job);
    json_t *url_json = json_string (url);
    char *url_text = url_json ? jsontext_dump (url_json) : NULL;
    json_decref (url_json);
    char *spec = NULL;
    for (int fallback = 0; copy && url_text && fallback < 3; fallback++) {
        if (fallback >= 1)
            job_set_str (&copy->result, "{\"omitted\":\"too large or deep for a webhook; "
                                        "GET /v1/jobs/{id} has it\"}");
        if (fallback >= 2)
            job_set_str (&copy->metadata, NULL);
        char *payload = job_render (copy);
        size_t len = 0;
        spec = strdup ("");
        bool ok = payload && spec
                  && s_splice_json (&spec, &len, "{\"kind\":\"webhook\",\"request\":{\"url\":")
                  && s_splice_json (&spec, &len, url_text)
                  && s_splice_json (&spec, &len, ",\"job_id\":\"")
                  && s_splice_json (&spec, &len, job->id)
                  && s_splice_json (&spec, &len, "\",\"payload\":")
                  && s_splice_json (&spec, &len, payload) && s_splice_json (&spec, &len, "}}");
        free (payload);
        if (!ok) {
            free (spec);
            spec = NULL;
            break;
        }
        if (jsontext_within (spec, len))
            break;
        free (spec);
        spec = NULL;
    }
    free (url_text);
    job_destroy (&copy);
    return spec;
}

// s_webhook_for creates, in the same batch as the job's terminal state, the
// delivery of its callback (SPEC §3): a job of kind "webhook" whose request
// is the callback URL and the finished job object, so that delivery is as
// durable, retried and SSRF-checked as any job. It belongs to the job's
// tenant: it is admitted like any work of the tenant's and counts against
// its active and running limits (issue 17 #5).
static void
s_webhook_for (broker_t *self, const job_t *job)
{
    if (!job->spec || !strstr (job->spec, "\"callback\""))
        return;
    json_t *spec = jsontext_loads (job->spec, NULL);
    const char *url = json_string_value (json_object_get (json_object_get (spec, "callback"), "url"));
    if (!url) {
        json_decref (spec);
        return;
    }
    refusal_t refusal;
    tenant_t *tenant = s_tenant (self, job->tenant);
    if (!s_admit (self, tenant, NULL, ADMIT_WEBHOOK, &refusal)) {
        log_warn (job->id, "webhook not queued: %s", refusal.why);
        json_decref (spec);
        return;
    }
    char *text = s_delivery_spec (job, url);
    json_decref (spec);
    if (!text) {
        log_error (job->id, "webhook not queued: out of memory");
        return;
    }
    job_t *delivery = job_new ();
    job_id_generate (delivery->id);
    char owner[TENANT_NAME_MAX + sizeof WEBHOOK_TENANT_PREFIX];
    snprintf (owner, sizeof owner, "%s%s", WEBHOOK_TENANT_PREFIX, job->tenant);
    job_set_str (&delivery->tenant, owner);
    job_set_str (&delivery->kind, "webhook");
    delivery->max_attempts = self->config->webhook_max_attempts;
    delivery->timeout_ms = self->config->webhook_timeout_ms;
    delivery->created_at = clock_wall_ms ();
    delivery->spec = text;
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
        s_leave_running (self, entry);
        job->status = JOB_QUEUED;
        s_put (self, job);
        s_event (self, job);
        s_enqueue (self, entry, true);
        log_warn (job->id, "attempt %d lost (%s); requeued", entry->attempt, why);
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
        free (worker->key);
        free (worker);
        *item = NULL;
    }
}

// s_worker_lookup finds the worker a message came from: by its routing id,
// or by an earlier one (what a worker sent before it reconnected may still
// arrive on its old connection after its READY on the new one).
static worker_t *
s_worker_lookup (broker_t *self, zframe_t *identity)
{
    char *name = zframe_strhex (identity);
    worker_t *worker = zhashx_lookup (self->workers, name);
    const char *key = worker ? NULL : zhashx_lookup (self->worker_aliases, name);
    if (key)
        worker = zhashx_lookup (self->worker_keys, key);
    free (name);
    return worker;
}

// s_worker_forget removes a worker from the tables (and frees it).
static void
s_worker_forget (broker_t *self, worker_t *worker)
{
    zlistx_t *aliases = zhashx_keys (self->worker_aliases);
    for (const char *alias = zlistx_first (aliases); alias; alias = zlistx_next (aliases))
        if (strcmp (zhashx_lookup (self->worker_aliases, alias), worker->key) == 0)
            zhashx_delete (self->worker_aliases, alias);
    zlistx_destroy (&aliases);
    if (zhashx_lookup (self->worker_keys, worker->key) == worker)
        zhashx_delete (self->worker_keys, worker->key);
    zhashx_delete (self->workers, worker->name);
}

// s_worker_dead requeues everything a worker ran and forgets it.
static void
s_worker_dead (broker_t *self, worker_t *worker, const char *why)
{
    log_warn (NULL, "worker %s dead (%s); requeuing %zu jobs", worker->name, why,
              worker->running.count);
    while (worker->running.head)
        s_requeue_lost (self, worker->running.head, why);
    s_worker_forget (self, worker);
}

static void
s_worker_send (broker_t *self, worker_t *worker, proto_cmd_t cmd, pack_writer_t *body)
{
    if (proto_send (self->backend, worker->identity, cmd, body) == 0)
        worker->last_sent_ms = evloop_now_ms (self->loop);
}

// s_credit_cap is the most credit a worker may hold: the calls it announced
// it runs at once, less those the broker has it running. Credit is never
// more, whatever a READY, CREDIT or RESULT claims (issue 10 #3).
static int64_t
s_credit_cap (const worker_t *worker)
{
    int64_t free_calls = worker->concurrency - (int64_t) worker->running.count;
    return worker->draining || free_calls < 0 ? 0 : free_calls;
}

// s_credit_add gives a worker more credit (int64 arithmetic), up to its cap.
static void
s_credit_add (worker_t *worker, int64_t credit)
{
    int64_t cap = s_credit_cap (worker);
    if (credit > cap)
        credit = cap;
    worker->credit = worker->credit > cap - credit ? cap : worker->credit + credit;
    if (worker->credit < 0)
        worker->credit = 0;
}

// s_worker_ready handles READY (§3.2): a worker announces itself, or comes
// back under a new routing id after a reconnect (same "worker" key), with
// the credit it has free now.
static worker_t *
s_worker_ready (broker_t *self, worker_t *worker, proto_msg_t *msg)
{
    int64_t credit = 0, concurrency = 0;
    pack_get_int (msg->body, "credit", &credit);
    if (pack_get_int (msg->body, "concurrency", &concurrency) < 0 || concurrency <= 0)
        concurrency = credit;
    if (concurrency < 0)
        concurrency = 0;
    if (concurrency > CONFIG_WORKER_CONCURRENCY_MAX)
        concurrency = CONFIG_WORKER_CONCURRENCY_MAX;
    size_t key_len = 0;
    const char *key_field = pack_get_str (msg->body, "worker", &key_len);
    char key[WORKER_KEY_MAX + 1];
    bool has_key = key_field && key_len > 0 && key_len <= WORKER_KEY_MAX;
    for (size_t i = 0; has_key && i < key_len; i++)
        has_key = key_field[i] > ' ' && key_field[i] < 0x7f;
    if (has_key) {
        memcpy (key, key_field, key_len);
        key[key_len] = '\0';
    }
    char *name = zframe_strhex (msg->envelope);
    worker_t *known = has_key ? zhashx_lookup (self->worker_keys, key) : NULL;
    if (known && known != worker && !worker) {
        // The same worker on a new socket (it reconnected): its leases and
        // running calls move with it; the old routing id is gone.
        log_info (NULL, "worker %s reconnected as %s with %zu calls running", known->name, name,
                  known->running.count);
        zhashx_rename (self->workers, known->name, name);
        zhashx_update (self->worker_aliases, known->name, known->key);
        free (known->name);
        known->name = strdup (name);
        zframe_destroy (&known->identity);
        known->identity = zframe_dup (msg->envelope);
        worker = known;
    }
    if (!worker) {
        worker = calloc (1, sizeof *worker);
        assert (worker);
        worker->identity = zframe_dup (msg->envelope);
        worker->name = strdup (name);
        worker->key = strdup (has_key && !known ? key : name);
        zhashx_insert (self->workers, worker->name, worker);
        if (!zhashx_lookup (self->worker_keys, worker->key))
            zhashx_insert (self->worker_keys, worker->key, worker);
        log_info (NULL, "worker %s ready, credit %lld of %lld", worker->name, (long long) credit,
                  (long long) concurrency);
    }
    free (name);
    worker->last_seen_ms = evloop_now_ms (self->loop);
    // READY states the worker's free capacity from its own count.
    worker->concurrency = concurrency;
    worker->draining = false;
    worker->credit = 0;
    s_credit_add (worker, credit);
    return worker;
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

// s_lease_token writes the lease token of a job's attempt into token
// (LEASE_TOKEN_LEN + 1 bytes): a keyed hash of (id, attempt) under the
// store's secret, so only the worker the DISPATCH went to knows it, and a
// restarted broker can still check the results of its earlier run.
static void
s_lease_token (broker_t *self, const char *id, int64_t attempt, char *token)
{
    unsigned char input[JOB_ID_LEN + 8], hash[LEASE_TOKEN_LEN / 2];
    memcpy (input, id, JOB_ID_LEN);
    for (int i = 0; i < 8; i++)
        input[JOB_ID_LEN + i] = (unsigned char) ((uint64_t) attempt >> (56 - 8 * i));
    crypto_generichash (hash, sizeof hash, input, sizeof input, store_lease_key (self->store),
                        STORE_LEASE_KEY_BYTES);
    sodium_bin2hex (token, LEASE_TOKEN_LEN + 1, hash, sizeof hash);
}

// s_leased_entry returns the running entry a RESULT or CHUNK reports on,
// when the sender holds its lease: the job runs at that attempt, the body's
// lease token is the attempt's, and the sender is the worker it was
// dispatched to (for an attempt of the broker's previous run, whose worker
// is not known yet, the token alone). Otherwise logs and returns NULL.
static entry_t *
s_leased_entry (broker_t *self, worker_t *worker, proto_msg_t *msg, bool quiet)
{
    size_t id_len, lease_len = 0;
    const char *id = pack_get_str (msg->body, "id", &id_len);
    const char *lease = pack_get_str (msg->body, "lease", &lease_len);
    int64_t attempt;
    if (!id || !job_id_valid (id, id_len) || pack_get_int (msg->body, "attempt", &attempt) < 0) {
        log_warn (NULL, "malformed %s dropped", proto_cmd_name (msg->cmd));
        return NULL;
    }
    char key[JOB_ID_LEN + 1];
    job_id_copy (key, id, JOB_ID_LEN);
    entry_t *entry = zhashx_lookup (self->entries, key);
    if (!entry || entry->state != ENTRY_RUNNING || entry->attempt != attempt) {
        // Expected after a cancel; otherwise the attempt was presumed lost.
        if (msg->cmd == PROTO_RESULT)
            log_line (quiet ? LOG_DEBUG_ : LOG_WARN_, __FILE__, __LINE__, key,
                      "late result for attempt %lld discarded", (long long) attempt);
        return NULL;
    }
    char token[LEASE_TOKEN_LEN + 1];
    s_lease_token (self, key, attempt, token);
    bool token_ok = lease && lease_len == LEASE_TOKEN_LEN
                    && sodium_memcmp (lease, token, LEASE_TOKEN_LEN) == 0;
#ifdef FUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION
    // The fuzz target cannot know the secret: it may name the lease "fuzz".
    token_ok = token_ok || (lease && lease_len == 4 && memcmp (lease, "fuzz", 4) == 0);
#endif
    if (!token_ok || (entry->worker && entry->worker != worker)) {
        log_warn (key, "%s for attempt %lld refused: %s", proto_cmd_name (msg->cmd),
                  (long long) attempt,
                  !token_ok ? "its lease token is wrong" : "the sender does not hold the lease");
        return NULL;
    }
    return entry;
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
    char *error = s_error_json ("circuit_open",
                                "the provider's circuit breaker is open after repeated failures");
    zlistx_t *waiting = zlistx_new ();
    for (tenant_t *tenant = self->ring_head; tenant; tenant = tenant->ring_next)
        for (int level = 0; level < QUEUE_PRIORITIES; level++)
            for (entry_t *entry = tenant->queues[slot].levels[level].head; entry; entry = entry->next)
                zlistx_add_end (waiting, entry);
    for (entry_t *entry = zlistx_first (waiting); entry; entry = zlistx_next (waiting)) {
        job_t *job = store_get (self->store, entry->id);
        if (job) {
            s_finish (self, entry, job, JOB_FAILED, job->result, error);
            job_destroy (&job);
        }
        else
            s_entry_free (self, entry);
    }
    zlistx_destroy (&waiting);
    free (error);
}

// s_next_entry picks the entry to run next (issue 17 #5): tenants take
// turns, in ring order, so one tenant's flood (of any priority) never holds
// back another tenant; a tenant at its max_running is skipped; within the
// tenant, the highest priority among the providers whose limits allow a
// call now. Returns NULL when nothing may start; *wake_ms then says when a
// limit lifts (0: only a finishing call can lift it).
static entry_t *
s_next_entry (broker_t *self, int64_t now, int64_t *wake_ms)
{
    *wake_ms = 0;
    for (size_t slot = 0; slot < self->slots; slot++)
        if (provider_fail_fast (self->providers[slot], now))
            s_fail_waiting (self, slot);
    size_t visits = self->ring_size;
    for (size_t i = 0; i < visits && self->ring_head; i++) {
        tenant_t *tenant = self->ring_head;
        // To the back of the ring: the others come first next time.
        s_ring_remove (self, tenant);
        s_ring_add (self, tenant);
        if (s_tenant_at_limit (tenant))
            continue;
        int best = -1, best_priority = -1;
        for (size_t slot = 0; slot < self->slots; slot++) {
            int priority = queue_top_priority (&tenant->queues[slot]);
            if (priority <= best_priority)
                continue;
            int64_t wake;
            if (!provider_can_start (self->providers[slot], tenant->name, now, &wake)) {
                if (wake && (!*wake_ms || wake < *wake_ms))
                    *wake_ms = wake;
                continue;
            }
            best = (int) slot;
            best_priority = priority;
        }
        if (best >= 0)
            return s_pop (self, tenant, (size_t) best);
    }
    return NULL;
}

// s_dispatch hands queued jobs to workers while both exist (credit flow)
// and the providers' and tenants' limits allow.
static void
s_dispatch (broker_t *self)
{
    while (self->queued_count > 0) {
        worker_t *worker = s_pick_worker (self);
        if (!worker)
            return;
        int64_t now_mono = evloop_now_ms (self->loop), wake;
        entry_t *entry = s_next_entry (self, now_mono, &wake);
        if (!entry) {
            if (wake && !self->dispatch_timer)
                self->dispatch_timer = evloop_timer_start (self->loop, wake - now_mono,
                                                           s_dispatch_wake, self);
            return;
        }
        size_t slot = s_slot (self, entry);
        tenant_t *tenant = entry->tenant;
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
        // A new attempt identity, never used before for this job, whatever
        // retries reset (issue 17 #3).
        job->status = JOB_RUNNING;
        job->attempts++;
        job->attempt_seq++;
        job->started_at = now;
        s_put (self, job);
        s_event (self, job);

        entry->state = ENTRY_RUNNING;
        entry->attempt = (int) job->attempt_seq;
        entry->attempt_timeout_ms = job->timeout_ms;
        entry->worker = worker;
        entry->dispatched_ms = now_mono;
        free (entry->chunks);
        entry->chunks = NULL;
        entry->chunks_size = 0;
        entry->lease_until_ms = now_mono + job->timeout_ms + LEASE_GRACE_MS;
        entry->in_provider = true;
        provider_started (self->providers[slot], tenant->name, now_mono);
        entry_list_append (&worker->running, entry);
        self->running_count++;
        tenant->running++;
        worker->credit--;

        char lease[LEASE_TOKEN_LEN + 1];
        s_lease_token (self, job->id, job->attempt_seq, lease);
        pack_writer_t *body = pack_writer_new ();
        job_pack (job, body);
        pack_put_int (body, "attempt", job->attempt_seq);
        pack_put_str (body, "lease", lease);
        if (proto_send (self->backend, worker->identity, PROTO_DISPATCH, body) < 0) {
            // The worker is gone (it reconnected under a new identity or
            // died): this attempt never started, so it does not count (its
            // identity stays used).
            pack_writer_destroy (&body);
            s_provider_release (self, entry, PROVIDER_NEUTRAL, 0, NULL, 0);
            s_leave_running (self, entry);
            job->attempts--;
            job->status = JOB_QUEUED;
            s_put (self, job);
            s_enqueue (self, entry, true);
            job_destroy (&job);
            s_worker_dead (self, worker, "unreachable");
            continue;
        }
        worker->last_sent_ms = now_mono;
        log_debug (job->id, "dispatched attempt=%d to worker %s", entry->attempt, worker->name);
        pack_writer_destroy (&body);
        job_destroy (&job);
    }
}

// s_classify tells what a RESULT says about the upstream, for its
// provider's limits and breaker.
static provider_outcome_t
s_classify (const char *outcome, json_t *error, int64_t *retry_after_ms, char *type,
            size_t type_size, int *upstream_status)
{
    *upstream_status = 0;
    type[0] = '\0';
    if (strcmp (outcome, "succeeded") == 0)
        return PROVIDER_ANSWERED;
    if (strcmp (outcome, "handback") == 0 || strcmp (outcome, "canceled") == 0)
        return PROVIDER_NEUTRAL;
    const char *error_type = json_string_value (json_object_get (error, "type"));
    snprintf (type, type_size, "%s", error_type ? error_type : "failed");
    json_int_t status = json_integer_value (json_object_get (error, "upstream_status"));
    *upstream_status = status >= 0 && status < 1000 ? (int) status : 0;
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

// A RESULT's fields once checked (issue 10 #4, issue 17 #4): what a worker
// sends is stored only when it is what the protocol says it is.
typedef struct {
    char outcome[16];           // succeeded | failed | retry | handback | canceled
    char *result;               // result object text, or NULL
    char *error;                // error object text, or NULL
    json_t *error_object;       // error parsed, or NULL
    int64_t retry_after_ms;     // the upstream's Retry-After, 0..24 h
} result_fields_t;

// s_result_fields reads a RESULT's fields. A result over
// broker.max_result_bytes fails the job as response_too_large and is not
// kept; a result or error that is not a JSON object under common/jsontext's
// policy, or an unknown outcome, is the worker's fault: the attempt is
// retried as worker_invalid_result and nothing of it is kept.
static void
s_result_fields (broker_t *self, proto_msg_t *msg, const char *id, result_fields_t *fields)
{
    memset (fields, 0, sizeof *fields);
    size_t outcome_len = 0, result_len = 0, error_len = 0;
    const char *outcome = pack_get_str (msg->body, "outcome", &outcome_len);
    const char *result = pack_get_str (msg->body, "result", &result_len);
    const char *error = pack_get_str (msg->body, "error", &error_len);
    pack_get_int (msg->body, "retry_after_ms", &fields->retry_after_ms);
    if (fields->retry_after_ms < 0 || fields->retry_after_ms > 24LL * 3600 * 1000)
        fields->retry_after_ms = 0;
    static const char *const outcomes[] = { "succeeded", "failed", "retry", "handback",
                                            "canceled", NULL };
    const char *problem = "an unknown outcome";
    for (int i = 0; outcome && outcomes[i]; i++)
        if (outcome_len == strlen (outcomes[i]) && memcmp (outcome, outcomes[i], outcome_len) == 0)
            problem = NULL;
    if (!problem)
        memcpy (fields->outcome, outcome, outcome_len);
    if (!problem && result && result_len > self->config->max_result_bytes) {
        char message[160];
        snprintf (message, sizeof message, "the result is %zu bytes, over broker.max_result_bytes "
                  "(%zu)", result_len, self->config->max_result_bytes);
        log_warn (id, "%s: not stored", message);
        snprintf (fields->outcome, sizeof fields->outcome, "failed");
        fields->error = s_error_json ("response_too_large", message);
        fields->error_object = jsontext_loads (fields->error, NULL);
        return;
    }
    // (json_is_* are macros that evaluate their argument twice: parse first.)
    json_t *parsed = !problem && result ? jsontext_load (result, result_len, NULL) : NULL;
    if (!problem && result && !json_is_object (parsed))
        problem = "a result that is not a JSON object within the policy";
    json_decref (parsed);
    if (!problem && error && error_len <= ERROR_TEXT_MAX)
        fields->error_object = jsontext_load (error, error_len, NULL);
    if (!problem && error && !json_is_string (json_object_get (fields->error_object, "type")))
        problem = "an error that is not a JSON object with a type";
    if (problem) {
        char message[160];
        snprintf (message, sizeof message, "the worker sent %s", problem);
        log_warn (id, "RESULT refused: %s", message);
        json_decref (fields->error_object);
        snprintf (fields->outcome, sizeof fields->outcome, "retry");
        fields->error = s_error_json ("worker_invalid_result", message);
        fields->error_object = jsontext_loads (fields->error, NULL);
        return;
    }
    fields->result = result ? strndup (result, result_len) : NULL;
    fields->error = error ? strndup (error, error_len) : NULL;
}

// s_handle_result applies a worker's RESULT (docs/protocol.md §3.2) when the
// sender holds the attempt's lease.
static void
s_handle_result (broker_t *self, worker_t *worker, proto_msg_t *msg)
{
    size_t outcome_len = 0;
    const char *outcome_field = pack_get_str (msg->body, "outcome", &outcome_len);
    bool canceled = outcome_field && outcome_len == 8 && memcmp (outcome_field, "canceled", 8) == 0;
    entry_t *entry = s_leased_entry (self, worker, msg, canceled);
    if (!entry) {
        // The call it reports has ended all the same: its slot is free.
        if (worker)
            s_credit_add (worker, 1);
        return;
    }
    job_t *job = store_get (self->store, entry->id);
    if (!job) {
        s_entry_free (self, entry);
        if (worker)
            s_credit_add (worker, 1);
        return;
    }
    result_fields_t fields;
    s_result_fields (self, msg, job->id, &fields);
    const char *outcome = fields.outcome;
    char error_type[32];
    int upstream_status;
    int64_t pause_ms = fields.retry_after_ms;
    provider_outcome_t verdict = s_classify (outcome, fields.error_object, &pause_ms, error_type,
                                             sizeof error_type, &upstream_status);
    s_provider_release (self, entry, verdict, pause_ms, error_type, upstream_status);

    if (strcmp (outcome, "handback") == 0) {
        // A draining worker gave the job back unfinished: it did not fail,
        // so the attempt is not counted, and it runs again at once.
        s_leave_running (self, entry);
        if (job->attempts > 0)
            job->attempts--;
        job->status = JOB_QUEUED;
        s_put (self, job);
        s_event (self, job);
        s_enqueue (self, entry, true);
        log_info (job->id, "handed back by a draining worker; requeued");
    }
    else if (strcmp (outcome, "succeeded") == 0)
        s_finish (self, entry, job, JOB_SUCCEEDED, fields.result, NULL);
    else if (strcmp (outcome, "retry") == 0 && job->attempts < job->max_attempts) {
        s_leave_running (self, entry);
        job->status = JOB_QUEUED;
        job_set_str (&job->result, fields.result);
        job_set_str (&job->error, fields.error);
        s_put (self, job);
        s_event (self, job);
        const config_provider_t *provider = entry->provider >= 0
                                                ? &self->config->providers[entry->provider]
                                                : NULL;
        int64_t delay = s_backoff_ms (job->attempts, fields.retry_after_ms,
                                      provider ? provider->retry_base_ms : BACKOFF_BASE_MS,
                                      provider ? provider->retry_max_ms : BACKOFF_CAP_MS);
        entry->state = ENTRY_DELAYED;
        self->delayed_count++;
        entry->timer = evloop_timer_start (self->loop, delay, s_retry_due, entry);
        log_info (job->id, "attempt %d failed (%s); retry in %lld ms", entry->attempt,
                  error_type[0] ? error_type : "no detail", (long long) delay);
    }
    else
        s_finish (self, entry, job, JOB_FAILED, fields.result,
                  fields.error ? fields.error : "{\"type\":\"failed\"}");
    if (worker)
        s_credit_add (worker, 1);
    free (fields.result);
    free (fields.error);
    json_decref (fields.error_object);
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

    if (msg->cmd == PROTO_READY)
        worker = s_worker_ready (self, worker, msg);
    else if (msg->cmd == PROTO_RESULT)
        s_handle_result (self, worker, msg);
    else if (msg->cmd == PROTO_CHUNK)
        s_handle_chunk (self, worker, msg);
    else if (!worker) {
        if (msg->cmd != PROTO_DISCONNECT) {
            pack_writer_t *body = pack_writer_new ();
            proto_send (self->backend, msg->envelope, PROTO_RECONNECT, body);
            pack_writer_destroy (&body);
        }
    }
    else if (msg->cmd == PROTO_CREDIT) {
        int64_t credit = 0;
        if (pack_get_int (msg->body, "credit", &credit) == 0 && credit > 0)
            s_credit_add (worker, credit);
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

// s_handle_chunk relays partial upstream data of a running attempt to the
// subscribers (after the commit, so it never overtakes the "running" event)
// and keeps it for those who join later. Only the lease holder's count.
static void
s_handle_chunk (broker_t *self, worker_t *worker, proto_msg_t *msg)
{
    size_t data_len;
    const char *data = pack_get_str (msg->body, "data", &data_len);
    int64_t index;
    if (!data || memchr (data, '\0', data_len) || pack_get_int (msg->body, "index", &index) < 0
        || index < 0 || index > UINT32_MAX || data_len > UINT32_MAX) {
        log_warn (NULL, "malformed CHUNK dropped");
        return;
    }
    entry_t *entry = s_leased_entry (self, worker, msg, true);
    if (!entry)
        return; // a chunk of an attempt that no longer runs, or not the holder's
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
    deferred_t *chunk = s_defer (self, DEFERRED_CHUNK, entry->id);
    chunk->attempts = entry->attempt;
    chunk->index = index;
    chunk->data = malloc (data_len + 1);
    assert (chunk->data);
    memcpy (chunk->data, data, data_len);
    chunk->data[data_len] = '\0';
}

// --- gateways ---

// s_defer_job answers a gateway request with the job's record after the
// commit, if the job belongs to tenant.
static deferred_t *
s_defer_job (broker_t *self, zframe_t *identity, int64_t corr, const char *id, const char *tenant)
{
    deferred_t *get = s_defer (self, DEFERRED_GET, id);
    get->identity = zframe_dup (identity);
    get->corr = corr;
    get->tenant = strdup (tenant);
    assert (get->tenant);
    return get;
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

// s_handle_get answers GET with the job's record, after the commit, when it
// belongs to the request's tenant (404 otherwise, §3.1).
static void
s_handle_get (broker_t *self, proto_msg_t *msg, int64_t corr)
{
    size_t len;
    const char *id = pack_get_str (msg->body, "id", &len);
    char *tenant = pack_get_strdup (msg->body, "tenant");
    if (!tenant)
        s_reply_error (self, msg->envelope, corr, 400, "GET needs the caller's tenant");
    else if (!id || !job_id_valid (id, len))
        s_reply_error (self, msg->envelope, corr, 404, "no such job");
    else {
        // Answered after the commit so a reader never sees a state the
        // store could still lose.
        char key[JOB_ID_LEN + 1];
        job_id_copy (key, id, JOB_ID_LEN);
        deferred_t *get = s_defer_job (self, msg->envelope, corr, key, tenant);
        pack_get_bool (msg->body, "with_chunks", &get->with_chunks);
    }
    free (tenant);
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
    s_defer_job (self, msg->envelope, corr, job->id, job->tenant);
    job_destroy (&job);
}

// s_handle_retry runs a failed or canceled job again with a new budget of
// attempts, if the tenant may create the work (§3.1 "Admission"). The
// attempt identities go on from where they were.
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
    refusal_t refusal;
    if (!s_admit (self, s_tenant (self, s_quota_tenant (job->tenant)), job->provider, ADMIT_RETRY,
                  &refusal)) {
        s_reply_refusal (self, msg->envelope, corr, refusal.code, refusal.why,
                         refusal.retry_after_ms);
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
    s_defer_job (self, msg->envelope, corr, job->id, job->tenant);
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

// s_submission_problem says why a SUBMIT's record cannot be a client's job,
// or NULL. A gateway speaks for tenants: it may not create the broker's own
// work (webhook deliveries and other internal kinds) nor act for an internal
// ('#') tenant, and what the store splices into answers unparsed (metadata)
// must already be a JSON object under common/jsontext's policy.
static const char *
s_submission_problem (const job_t *job)
{
    static const char *const kinds[] = { "http", "crawl", "search", "llm", NULL };
    bool kind_ok = false;
    for (int i = 0; kinds[i]; i++)
        kind_ok = kind_ok || strcmp (job->kind, kinds[i]) == 0;
    if (!kind_ok)
        return "kind not accepted from a gateway";
    if (job->tenant[0] == '#')
        return "tenant names starting with '#' are reserved";
    if (strlen (job->tenant) > TENANT_NAME_MAX || !store_indexable (job->tenant, job->idempotency_key))
        return "tenant or idempotency key too long";
    if (job->timeout_ms < 0 || job->timeout_ms > 600000 || job->expire_after_ms < 0
        || job->max_attempts > 10 || job->created_at < 0)
        return "a field is out of range";
    if (!job->spec[0] || job->spec[0] != '{' || !jsontext_within (job->spec, strlen (job->spec)))
        return "spec is not a JSON object within the policy";
    if (job->metadata) {
        json_t *metadata = jsontext_loads (job->metadata, NULL);
        bool ok = json_is_object (metadata);
        json_decref (metadata);
        if (!ok)
            return "metadata is not a JSON object within the policy";
    }
    return NULL;
}

static void
s_handle_submit (broker_t *self, proto_msg_t *msg, int64_t corr)
{
    job_t *job = job_unpack (msg->body);
    if (!job) {
        s_reply_error (self, msg->envelope, corr, 400, "malformed job record");
        return;
    }
    const char *problem = s_submission_problem (job);
    if (problem) {
        log_warn (job->id, "SUBMIT refused: %s", problem);
        s_reply_error (self, msg->envelope, corr, 400, problem);
        job_destroy (&job);
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
    refusal_t refusal;
    if (!s_admit (self, s_tenant (self, job->tenant), job->provider, ADMIT_SUBMIT, &refusal)) {
        s_reply_refusal (self, msg->envelope, corr, refusal.code, refusal.why,
                         refusal.retry_after_ms);
        job_destroy (&job);
        return;
    }
    // The broker owns the state: whatever the record said of it is reset.
    job->status = JOB_QUEUED;
    job->attempts = 0;
    job->attempt_seq = 0;
    job->started_at = job->finished_at = 0;
    job_set_str (&job->result, NULL);
    job_set_str (&job->error, NULL);
    job_set_str (&job->lease, NULL);
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
    else if (msg->cmd == PROTO_GET)
        s_handle_get (self, msg, corr);
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

// s_refuse_unacknowledged answers ERROR 503 to the submissions of a batch
// that could not be committed, and forgets them: a SUBMIT is acknowledged
// only after its commit, so it is refused rather than left half accepted
// (its client would be told 503 by the gateway's deadline while the job
// might still run). Attempts already dispatched are canceled at the worker.
static void
s_refuse_unacknowledged (broker_t *self)
{
    zhashx_t *dropped = zhashx_new ();
    for (size_t i = 0; i < self->deferred_count; i++) {
        deferred_t *deferred = &self->deferred[i];
        if (deferred->kind != DEFERRED_SUBMIT_OK)
            continue;
        if (store_discard (self->store, deferred->id) == 0) {
            entry_t *entry = zhashx_lookup (self->entries, deferred->id);
            if (entry && entry->state == ENTRY_RUNNING && entry->worker) {
                pack_writer_t *body = pack_writer_new ();
                pack_put_str (body, "id", entry->id);
                pack_put_int (body, "attempt", entry->attempt);
                s_worker_send (self, entry->worker, PROTO_CANCEL, body);
                pack_writer_destroy (&body);
            }
            if (entry)
                s_entry_free (self, entry);
            zhashx_insert (dropped, deferred->id, (void *) "");
            log_warn (deferred->id, "submission refused: the store cannot commit");
        }
        if (zhashx_lookup (dropped, deferred->id)) {
            s_reply_refusal (self, deferred->identity, deferred->corr, 503,
                             "the job store cannot write; retry later", STORE_FULL_RETRY_MS);
            deferred->kind = DEFERRED_DROPPED;
        }
    }
    for (size_t i = 0; i < self->deferred_count && zhashx_size (dropped) > 0; i++)
        if (zhashx_lookup (dropped, self->deferred[i].id))
            self->deferred[i].kind = DEFERRED_DROPPED;
    zhashx_destroy (&dropped);
}

// s_degrade_version drops the result of a version that did not fit in the
// full store (what fits has been written): the job keeps its state, and a
// finished one says why its result is missing.
static void
s_degrade_version (const char *id, size_t size, bool terminal, void *arg)
{
    broker_t *self = arg;
    job_t *job = store_get (self->store, id);
    if (!job || !job->result) {
        job_destroy (&job);
        return;
    }
    job_set_str (&job->result, NULL);
    if (terminal) {
        char *error = s_error_json ("result_not_stored",
                                    "the job store was full: the result was dropped");
        job_set_str (&job->error, error);
        free (error);
    }
    log_error (id, "the store is full: a %zu-byte version loses its result", size);
    s_put (self, job);
    job_destroy (&job);
}

// s_commit_failed handles a commit that left versions unwritten: new
// submissions are refused, and when space has been lacking for a while, the
// versions too large to fit lose their results, so that no batch waits for
// space forever (issue 10 #4).
static void
s_commit_failed (broker_t *self, int error)
{
    int64_t now = evloop_now_ms (self->loop);
    if (!self->commit_failing)
        self->commit_failing_since_ms = now;
    self->commit_failing = true;
    s_refuse_unacknowledged (self);
    if (error == ENOSPC && now - self->commit_failing_since_ms >= STORE_DEGRADE_MS)
        store_pending_each (self->store, s_degrade_version, self);
}

// s_commit writes the batch and sends what waited for it.
static void
s_commit (broker_t *self)
{
    if (store_commit (self->store) < 0) {
        // Keep what could not be written and try again shortly; what was
        // written (a full map writes what fits) is answered now.
        s_commit_failed (self, errno);
        s_flush (self);
        self->commit_retry = evloop_timer_start (self->loop, COMMIT_RETRY_MS, s_commit_retry, self);
        return;
    }
    if (self->commit_failing)
        log_info (NULL, "store commits again");
    self->commit_failing = false;
    s_flush (self);
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
    s_commit (self);
}

// s_measure_store decides whether the store is too full to take new work:
// refusing it while a reserve is left keeps room for the state changes and
// results of the work already accepted, and for the sweep's deletes (which
// need pages too). The reserve is a tenth of the map, or two results at the
// cap, whichever is more (at most half the map).
static void
s_measure_store (broker_t *self)
{
    uint64_t map = 0, used = store_used_bytes (self->store, &map);
    uint64_t reserve = map / 10, results = 2 * (uint64_t) self->config->max_result_bytes;
    if (results > reserve)
        reserve = results < map / 2 ? results : map / 2;
    bool high = map > 0 && used + reserve > map;
    if (high != self->store_high)
        log_line (high ? LOG_WARN_ : LOG_INFO_, __FILE__, __LINE__, NULL,
                  high ? "store %llu of %llu bytes used: new work refused until space frees"
                       : "store %llu of %llu bytes used: new work accepted again",
                  (unsigned long long) used, (unsigned long long) map);
    self->store_high = high;
}

// s_housekeeping is one tick's work: liveness, leases, expiry, the store's
// fill, idle tenants.
static void
s_housekeeping (broker_t *self)
{
    int64_t now = evloop_now_ms (self->loop);
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

    // Expired jobs are deleted also while commits fail: that is how a full
    // store gets its space back by itself.
    if (now >= self->next_expiry_sweep_ms) {
        self->next_expiry_sweep_ms = now + EXPIRY_SWEEP_MS;
        long deleted = store_expire (self->store, clock_wall_ms (), EXPIRY_SWEEP_LIMIT);
        if (deleted > 0)
            log_info (NULL, "deleted %ld finished jobs past their TTL", deleted);
        if (deleted == EXPIRY_SWEEP_LIMIT)
            self->next_expiry_sweep_ms = now + TICK_MS;
        if (deleted > 0)
            self->next_store_measure_ms = now;
    }
    if (now >= self->next_store_measure_ms) {
        self->next_store_measure_ms = now + STORE_MEASURE_MS;
        s_measure_store (self);
    }
    if (now >= self->next_tenant_sweep_ms) {
        self->next_tenant_sweep_ms = now + TENANT_SWEEP_MS;
        s_sweep_tenants (self);
    }
}

static void
s_tick (evloop_t *loop, void *arg)
{
    broker_t *self = arg;
    self->tick = evloop_timer_start (loop, TICK_MS, s_tick, self);
    s_housekeeping (self);
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
        ((tenant_t *) entry->tenant)->running++;
    }
    else
        s_enqueue (self, entry, false);
    job_destroy (&job);
}

static zsock_t *
s_bind (int type, const char *endpoint, size_t max_frame_bytes, char *error, size_t error_size)
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
    if (proto_set_limits (sock, max_frame_bytes) < 0) {
        snprintf (error, error_size, "broker: cannot limit frames: %s", zmq_strerror (zmq_errno ()));
        zsock_destroy (&sock);
        return NULL;
    }
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
    self->slots = config->providers_count + 1;
    self->tenants = zhashx_new ();
    zhashx_set_destructor (self->tenants, s_tenant_destroy);
    self->provider_active = calloc (config->providers_count + 1, sizeof *self->provider_active);
    self->providers = calloc (self->slots, sizeof *self->providers);
    for (size_t i = 0; i < self->slots; i++)
        self->providers[i] = i < config->providers_count
                                 ? provider_new (&config->providers[i], false)
                                 : provider_new (&config->direct, true);
    self->workers = zhashx_new ();
    zhashx_set_destructor (self->workers, s_worker_destroy);
    self->worker_keys = zhashx_new ();
    self->worker_aliases = zhashx_new ();
    zhashx_set_destructor (self->worker_aliases, (zhashx_destructor_fn *) zstr_free);
    zhashx_set_duplicator (self->worker_aliases, (zhashx_duplicator_fn *) strdup);
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
    s_measure_store (self);

    self->frontend = s_bind (ZMQ_ROUTER, config->broker_frontend, config->max_frame_bytes,
                             error, error_size);
    self->backend = self->frontend ? s_bind (ZMQ_ROUTER, config->broker_backend,
                                             config->max_frame_bytes, error, error_size)
                                   : NULL;
    self->publisher = self->backend ? s_bind (ZMQ_PUB, config->broker_publisher,
                                              config->max_frame_bytes, error, error_size)
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
    log_info (NULL, "broker listening: frontend %s, backend %s, publisher %s, durability %s, "
              "frames at most %zu bytes", config->broker_frontend, config->broker_backend,
              config->broker_publisher, config->durability_fsync ? "fsync" : "os",
              config->max_frame_bytes);
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
    for (size_t i = 0; i < self->deferred_count; i++)
        s_deferred_free (&self->deferred[i]);
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
    zhashx_destroy (&self->worker_keys);
    zhashx_destroy (&self->worker_aliases);
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
broker_run_once (broker_t *self, bool tick)
{
    while (zsock_events (self->frontend) & ZMQ_POLLIN)
        s_frontend_ready (self->loop, self->frontend, self);
    while (zsock_events (self->backend) & ZMQ_POLLIN)
        s_backend_ready (self->loop, self->backend, self);
    if (tick)
        s_housekeeping (self);
    if (!self->commit_failing)
        s_dispatch (self);
    s_commit (self);
    evloop_timer_cancel (self->loop, &self->commit_retry);
}

// s_mismatch reports a broken invariant; returns false.
static bool
s_mismatch (const char *what, size_t counted, size_t kept)
{
    fprintf (stderr, "broker: %s: counted %zu, kept %zu\n", what, counted, kept);
    return false;
}

bool
broker_consistent (broker_t *self)
{
    // Per tenant: active, queued, running, as counted from the entries.
    typedef struct { size_t active, queued, running; } counts_t;
    zhashx_t *counted = zhashx_new ();
    zhashx_set_destructor (counted, (zhashx_destructor_fn *) zstr_free);
    size_t queued = 0, running = 0, delayed = 0;
    bool ok = true;
    for (entry_t *entry = zhashx_first (self->entries); entry; entry = zhashx_next (self->entries)) {
        tenant_t *tenant = entry->tenant;
        counts_t *counts = zhashx_lookup (counted, tenant->name);
        if (!counts) {
            counts = calloc (1, sizeof *counts);
            zhashx_insert (counted, tenant->name, counts);
        }
        counts->active++;
        if (entry->state == ENTRY_QUEUED) {
            queued++;
            counts->queued++;
            ok = ok && entry->list == &tenant->queues[s_slot (self, entry)].levels[entry->priority];
        }
        else if (entry->state == ENTRY_RUNNING) {
            running++;
            counts->running++;
            ok = ok && entry->list
                 && entry->list == (entry->worker ? &((worker_t *) entry->worker)->running
                                                  : &self->orphans);
        }
        else
            delayed++;
    }
    if (!ok)
        fprintf (stderr, "broker: an entry is not on the list its state says\n");
    ok = ok && (queued == self->queued_count || s_mismatch ("queued", queued, self->queued_count));
    ok = ok && (running == self->running_count || s_mismatch ("running", running, self->running_count));
    ok = ok && (delayed == self->delayed_count || s_mismatch ("delayed", delayed, self->delayed_count));
    size_t in_ring = 0;
    for (tenant_t *tenant = zhashx_first (self->tenants); tenant && ok;
         tenant = zhashx_next (self->tenants)) {
        counts_t none = { 0, 0, 0 }, *counts = zhashx_lookup (counted, tenant->name);
        if (!counts)
            counts = &none;
        ok = (counts->active == tenant->active || s_mismatch ("active", counts->active, tenant->active))
             && (counts->queued == tenant->queued || s_mismatch ("tenant queued", counts->queued, tenant->queued))
             && (counts->running == tenant->running || s_mismatch ("tenant running", counts->running, tenant->running))
             && (tenant->in_ring == (tenant->queued > 0) || s_mismatch ("ring", tenant->in_ring, tenant->queued));
        in_ring += tenant->in_ring;
    }
    ok = ok && (in_ring == self->ring_size || s_mismatch ("ring size", in_ring, self->ring_size));
    for (worker_t *worker = zhashx_first (self->workers); worker && ok;
         worker = zhashx_next (self->workers))
        ok = worker->credit >= 0 && worker->credit <= s_credit_cap (worker)
             ? true : s_mismatch ("credit", (size_t) worker->credit, (size_t) s_credit_cap (worker));
    zhashx_destroy (&counted);
    return ok;
}

// --- self-test ---
//
// A broker hosted on its own loop over inproc sockets; the test plays the
// gateway and the workers (and a hostile peer) on DEALER sockets, as
// worker.c's self-test plays the broker.

typedef struct {
    zsock_t *sock;              // DEALER connected to the broker
    zlist_t *held;              // single-body messages received, not yet read
} test_peer_t;

typedef struct {
    char dir[64];               // the store's directory
    char path[96];              // the config file
    config_t *config;           // the configuration
    evloop_t *loop;             // the broker's loop
    broker_t *broker;           // the broker under test
    test_peer_t *gateway;       // plays a gateway
    int64_t corr;               // the gateway's last correlation id
} test_rig_t;

// s_test_peer connects a DEALER to endpoint.
static test_peer_t *
s_test_peer (const char *endpoint)
{
    test_peer_t *peer = calloc (1, sizeof *peer);
    assert (peer);
    peer->sock = zsock_new (ZMQ_DEALER);
    assert (peer->sock && zsock_connect (peer->sock, "%s", endpoint) == 0);
    zsock_set_rcvtimeo (peer->sock, 0);
    peer->held = zlist_new ();
    return peer;
}

static void
s_test_peer_destroy (test_peer_t **peer_p)
{
    test_peer_t *peer = *peer_p;
    zmsg_t *held;
    while ((held = zlist_pop (peer->held)))
        zmsg_destroy (&held);
    zlist_destroy (&peer->held);
    zsock_destroy (&peer->sock);
    free (peer);
    *peer_p = NULL;
}

// s_test_poll moves what the peer received into its held list, one body
// per message.
static void
s_test_poll (test_peer_t *peer)
{
    zmsg_t *batch;
    while ((batch = zmsg_recv (peer->sock)) != NULL) {
        zframe_t *version = zmsg_pop (batch), *command = zmsg_pop (batch), *body;
        while ((body = zmsg_pop (batch)) != NULL) {
            zmsg_t *single = zmsg_new ();
            zmsg_append (single, &(zframe_t *) { zframe_dup (version) });
            zmsg_append (single, &(zframe_t *) { zframe_dup (command) });
            zmsg_append (single, &body);
            zlist_append (peer->held, single);
        }
        zframe_destroy (&version);
        zframe_destroy (&command);
        zmsg_destroy (&batch);
    }
}

static void
s_test_stop (evloop_t *loop, void *arg)
{
    evloop_stop (loop);
}

// s_test_run runs the broker's loop for about ms.
static void
s_test_run (test_rig_t *rig, int64_t ms)
{
    evloop_timer_start (rig->loop, ms, s_test_stop, NULL);
    evloop_run (rig->loop);
}

// s_test_take returns the peer's next message but heartbeats, or NULL.
static proto_msg_t *
s_test_take (test_peer_t *peer)
{
    s_test_poll (peer);
    zmsg_t *next;
    while ((next = zlist_pop (peer->held)) != NULL) {
        const char *error;
        proto_msg_t *msg = proto_decode (&next, false, &error);
        assert (msg);
        if (msg->cmd != PROTO_HEARTBEAT)
            return msg;
        proto_msg_destroy (&msg);
    }
    return NULL;
}

// s_test_wait runs the loop up to 3 s for the peer's next message (but
// heartbeats); NULL if none came.
static proto_msg_t *
s_test_wait (test_rig_t *rig, test_peer_t *peer)
{
    for (int round = 0; round < 300; round++) {
        proto_msg_t *msg = s_test_take (peer);
        if (msg)
            return msg;
        s_test_run (rig, 10);
    }
    return NULL;
}

// s_test_next returns the peer's next message, which must be a cmd.
static proto_msg_t *
s_test_next (test_rig_t *rig, test_peer_t *peer, proto_cmd_t cmd)
{
    proto_msg_t *msg = s_test_wait (rig, peer);
    if (msg && msg->cmd != cmd)
        fprintf (stderr, "broker: expected %s, got %s\n", proto_cmd_name (cmd),
                 proto_cmd_name (msg->cmd));
    assert (!msg || msg->cmd == cmd);
    return msg;
}

// s_test_quiet runs the loop ms and checks the peer got nothing but
// heartbeats meanwhile.
static void
s_test_quiet (test_rig_t *rig, test_peer_t *peer, int64_t ms)
{
    s_test_run (rig, ms);
    proto_msg_t *msg = s_test_take (peer);
    if (msg)
        fprintf (stderr, "broker: unexpected %s\n", proto_cmd_name (msg->cmd));
    assert (!msg);
}

static void
s_test_send (test_peer_t *peer, proto_cmd_t cmd, pack_writer_t **body_p)
{
    assert (proto_send (peer->sock, NULL, cmd, *body_p) == 0);
    pack_writer_destroy (body_p);
}

// s_test_rig starts a broker with the config's JSON members extra (after a
// comma, may be "") and a gateway peer.
static void
s_test_rig (test_rig_t *rig, const char *name, const char *extra)
{
    memset (rig, 0, sizeof *rig);
    snprintf (rig->dir, sizeof rig->dir, "/tmp/jobgate-broker-test-XXXXXX");
    assert (mkdtemp (rig->dir));
    snprintf (rig->path, sizeof rig->path, "%s/config.json", rig->dir);
    FILE *file = fopen (rig->path, "w");
    assert (file);
    fprintf (file, "{\"broker\":{\"frontend\":\"inproc://%s-front\",\"backend\":\"inproc://%s-back\","
             "\"publisher\":\"inproc://%s-pub\",\"data_dir\":\"%s/data\",\"durability\":\"os\","
             "\"max_result_bytes\":4096,\"max_frame_bytes\":200000,\"result_ttl_s\":1},\"gateway\":{\"max_body_bytes\":65536},"
             "\"providers\":{\"p\":{\"base_url\":\"http://127.0.0.1:9\",\"retry_base_ms\":1,"
             "\"retry_max_ms\":1}}%s%s}",
             name, name, name, rig->dir, *extra ? "," : "", extra);
    fclose (file);
    char error[256];
    rig->config = config_load (rig->path, error, sizeof error);
    if (!rig->config)
        fprintf (stderr, "broker: %s\n", error);
    assert (rig->config);
    rig->loop = evloop_new ();
    rig->broker = broker_new (rig->config, rig->loop, error, sizeof error);
    assert (rig->broker);
    rig->gateway = s_test_peer (rig->config->broker_frontend);
}

static void
s_test_rig_end (test_rig_t *rig)
{
    assert (broker_consistent (rig->broker));
    s_test_peer_destroy (&rig->gateway);
    broker_destroy (&rig->broker);
    evloop_destroy (&rig->loop);
    config_destroy (&rig->config);
    char command[200];
    snprintf (command, sizeof command, "rm -rf '%s'", rig->dir);
    assert (system (command) == 0);
}

// s_test_submit sends a SUBMIT of a job of tenant (kind, provider may be
// NULL, spec and metadata texts) and writes its id into id.
static void
s_test_submit (test_rig_t *rig, const char *tenant, const char *kind, const char *provider,
               int priority, const char *spec, const char *metadata, char *id)
{
    job_t *job = job_new ();
    job_id_generate (job->id);
    strcpy (id, job->id);
    job_set_str (&job->tenant, tenant);
    job_set_str (&job->kind, kind);
    job_set_str (&job->provider, provider);
    job_set_str (&job->spec, spec ? spec : "{\"request\":{\"path\":\"/json\"}}");
    job_set_str (&job->metadata, metadata);
    job->priority = priority;
    job->created_at = clock_wall_ms ();
    pack_writer_t *body = pack_writer_new ();
    pack_put_int (body, "corr", ++rig->corr);
    job_pack (job, body);
    s_test_send (rig->gateway, PROTO_SUBMIT, &body);
    job_destroy (&job);
}

// s_test_answer reads the gateway's next answer: its command and, for an
// ERROR, its code (and Retry-After).
static proto_cmd_t
s_test_answer (test_rig_t *rig, int64_t *code, int64_t *retry_after_ms)
{
    proto_msg_t *msg = s_test_wait (rig, rig->gateway);
    assert (msg);
    proto_cmd_t cmd = msg->cmd;
    if (code) {
        *code = 0;
        pack_get_int (msg->body, "code", code);
    }
    if (retry_after_ms) {
        *retry_after_ms = 0;
        pack_get_int (msg->body, "retry_after_ms", retry_after_ms);
    }
    proto_msg_destroy (&msg);
    return cmd;
}

// s_test_accepted submits a job and checks it is accepted.
static void
s_test_accepted (test_rig_t *rig, const char *tenant, const char *provider, int priority,
                 const char *spec, char *id)
{
    s_test_submit (rig, tenant, "http", provider, priority, spec, NULL, id);
    assert (s_test_answer (rig, NULL, NULL) == PROTO_SUBMIT_OK);
}

// s_test_ask sends GET, CANCEL or RETRY for a job as tenant (NULL: none).
static void
s_test_ask (test_rig_t *rig, proto_cmd_t cmd, const char *id, const char *tenant)
{
    pack_writer_t *body = pack_writer_new ();
    pack_put_int (body, "corr", ++rig->corr);
    pack_put_str (body, "id", id);
    if (tenant)
        pack_put_str (body, "tenant", tenant);
    if (cmd == PROTO_GET)
        pack_put_bool (body, "with_chunks", true);
    s_test_send (rig->gateway, cmd, &body);
}

// s_test_job asks for a job as tenant and returns it (NULL: ERROR).
static job_t *
s_test_job (test_rig_t *rig, const char *id, const char *tenant, char **chunks, int64_t *code)
{
    s_test_ask (rig, PROTO_GET, id, tenant);
    proto_msg_t *msg = s_test_wait (rig, rig->gateway);
    assert (msg);
    job_t *job = msg->cmd == PROTO_JOB ? job_unpack (msg->body) : NULL;
    if (code) {
        *code = 0;
        pack_get_int (msg->body, "code", code);
    }
    if (chunks) {
        size_t size = 0;
        const char *data = pack_get_str (msg->body, "chunks", &size);
        *chunks = data ? strndup (data + 8, size - 8) : NULL;
    }
    proto_msg_destroy (&msg);
    return job;
}

// s_test_ready announces a worker on peer.
static void
s_test_ready (test_peer_t *peer, int64_t credit, int64_t concurrency, const char *key)
{
    pack_writer_t *body = pack_writer_new ();
    pack_put_int (body, "credit", credit);
    pack_put_int (body, "concurrency", concurrency);
    if (key)
        pack_put_str (body, "worker", key);
    s_test_send (peer, PROTO_READY, &body);
}

// s_test_dispatched reads a worker's next DISPATCH: the job's id, the
// attempt and the lease token.
static job_t *
s_test_dispatched (test_rig_t *rig, test_peer_t *worker, int64_t *attempt, char *lease)
{
    proto_msg_t *msg = s_test_next (rig, worker, PROTO_DISPATCH);
    assert (msg);
    job_t *job = job_unpack (msg->body);
    assert (job && pack_get_int (msg->body, "attempt", attempt) == 0);
    assert (job->attempt_seq == *attempt && job->lease);
    snprintf (lease, LEASE_TOKEN_LEN + 1, "%s", job->lease);
    proto_msg_destroy (&msg);
    return job;
}

// s_test_report sends a RESULT (or with data, a CHUNK) for an attempt.
static void
s_test_report (test_peer_t *peer, const char *id, int64_t attempt, const char *lease,
               const char *outcome, const char *result, const char *error)
{
    pack_writer_t *body = pack_writer_new ();
    pack_put_str (body, "id", id);
    pack_put_int (body, "attempt", attempt);
    if (lease)
        pack_put_str (body, "lease", lease);
    pack_put_str (body, "outcome", outcome);
    pack_put_str (body, "result", result);
    pack_put_str (body, "error", error);
    pack_put_int (body, "retry_after_ms", 0);
    s_test_send (peer, PROTO_RESULT, &body);
}

static void
s_test_chunk (test_peer_t *peer, const char *id, int64_t attempt, const char *lease,
              const char *data)
{
    pack_writer_t *body = pack_writer_new ();
    pack_put_str (body, "id", id);
    pack_put_int (body, "attempt", attempt);
    pack_put_str (body, "lease", lease);
    pack_put_int (body, "index", 0);
    pack_put_str (body, "data", data);
    s_test_send (peer, PROTO_CHUNK, &body);
}

// s_test_worker returns the broker's state of the worker with key.
static worker_t *
s_test_worker (test_rig_t *rig, const char *key)
{
    return zhashx_lookup (rig->broker->worker_keys, key);
}

// s_test_peers covers issue 10 #3: peers on the broker's sockets are not
// trusted with other peers' leases, internal work, unbounded credit, or
// other tenants' jobs.
static void
s_test_peers (void)
{
    test_rig_t rig;
    s_test_rig (&rig, "broker-test-peers", "");
    test_peer_t *worker = s_test_peer (rig.config->broker_backend);
    test_peer_t *forger = s_test_peer (rig.config->broker_backend);
    test_peer_t *stranger = s_test_peer (rig.config->broker_backend);
    s_test_ready (worker, 2, 2, "w1");
    s_test_ready (forger, 0, 0, "w2");
    char id[JOB_ID_LEN + 1], other[JOB_ID_LEN + 1];
    s_test_accepted (&rig, "a", "p", 5, NULL, id);
    int64_t attempt;
    char lease[LEASE_TOKEN_LEN + 1];
    job_t *dispatched = s_test_dispatched (&rig, worker, &attempt, lease);
    assert (strcmp (dispatched->id, id) == 0 && attempt == 1 && dispatched->attempts == 1);
    job_destroy (&dispatched);

    // Forged results: no token, a wrong token, the right token from a peer
    // that does not hold the lease, or from one never announced.
    const char *forged = "{\"status\":200,\"body\":\"forged\"}";
    s_test_report (forger, id, attempt, NULL, "succeeded", forged, NULL);
    s_test_report (forger, id, attempt, "00000000000000000000000000000000", "succeeded", forged, NULL);
    s_test_report (worker, id, attempt, "00000000000000000000000000000000", "succeeded", forged, NULL);
    s_test_report (forger, id, attempt, lease, "succeeded", forged, NULL);
    s_test_report (stranger, id, attempt, lease, "succeeded", forged, NULL);
    s_test_chunk (forger, id, attempt, lease, "forged chunk");
    s_test_chunk (worker, id, attempt, "00000000000000000000000000000000", "forged chunk");
    s_test_chunk (worker, id, attempt, lease, "token-1");
    proto_msg_t *reconnect = s_test_next (&rig, stranger, PROTO_RECONNECT);
    assert (reconnect);
    proto_msg_destroy (&reconnect);
    char *chunks = NULL;
    job_t *job = s_test_job (&rig, id, "a", &chunks, NULL);
    assert (job && job->status == JOB_RUNNING && !job->result && !job->lease);
    assert (chunks && strcmp (chunks, "token-1") == 0);
    free (chunks);
    job_destroy (&job);

    // A worker that reconnects (a new socket, the same "worker" key) keeps
    // its leases; what it sent on the old socket still counts.
    char moved[JOB_ID_LEN + 1];
    int64_t moved_attempt;
    char moved_lease[LEASE_TOKEN_LEN + 1];
    s_test_accepted (&rig, "a", "p", 5, NULL, moved);
    job_destroy (&(job_t *) { s_test_dispatched (&rig, worker, &moved_attempt, moved_lease) });
    test_peer_t *reconnected = s_test_peer (rig.config->broker_backend);
    s_test_ready (reconnected, 1, 2, "w1");
    s_test_run (&rig, 20);
    s_test_report (worker, moved, moved_attempt, moved_lease, "succeeded", "{\"status\":200}", NULL);
    job = s_test_job (&rig, moved, "a", NULL, NULL);
    assert (job && job->status == JOB_SUCCEEDED);
    job_destroy (&job);
    assert (s_test_worker (&rig, "w1")->running.count == 1);
    test_peer_t *old_socket = worker;
    worker = reconnected;

    // GET of another tenant's job is 404; without a tenant, 400.
    int64_t code;
    assert (s_test_job (&rig, id, "b", NULL, &code) == NULL && code == 404);
    assert (s_test_job (&rig, id, NULL, NULL, &code) == NULL && code == 400);

    // The holder's RESULT, with its token, is applied.
    s_test_report (worker, id, attempt, lease, "succeeded", "{\"status\":200,\"body\":\"real\"}", NULL);
    job = s_test_job (&rig, id, "a", NULL, NULL);
    assert (job && job->status == JOB_SUCCEEDED && strstr (job->result, "real"));
    job_destroy (&job);

    // A gateway may not create internal work nor act for internal tenants,
    // nor store metadata that is not a JSON object under the policy.
    s_test_submit (&rig, "a", "webhook", NULL, 5, "{\"request\":{\"url\":\"http://x/\"}}", NULL, other);
    assert (s_test_answer (&rig, &code, NULL) == PROTO_ERROR && code == 400);
    s_test_submit (&rig, "a", "gopher", NULL, 5, NULL, NULL, other);
    assert (s_test_answer (&rig, &code, NULL) == PROTO_ERROR && code == 400);
    s_test_submit (&rig, "#webhooks/a", "http", "p", 5, NULL, NULL, other);
    assert (s_test_answer (&rig, &code, NULL) == PROTO_ERROR && code == 400);
    s_test_submit (&rig, "a", "http", "p", 5, NULL, "1},\"injected\":{", other);
    assert (s_test_answer (&rig, &code, NULL) == PROTO_ERROR && code == 400);
    s_test_submit (&rig, "a", "http", "p", 5, NULL, "[1]", other);
    assert (s_test_answer (&rig, &code, NULL) == PROTO_ERROR && code == 400);
    s_test_submit (&rig, "a", "http", "p", 5, "not json", NULL, other);
    assert (s_test_answer (&rig, &code, NULL) == PROTO_ERROR && code == 400);
    assert (s_test_job (&rig, other, "a", NULL, &code) == NULL && code == 404);

    // Credit: bounded by the announced concurrency and the maximum, in
    // 64-bit arithmetic, whatever READY and CREDIT claim.
    test_peer_t *greedy = s_test_peer (rig.config->broker_backend);
    s_test_ready (greedy, INT64_MAX, INT64_MAX, "greedy");
    s_test_run (&rig, 20);
    assert (s_test_worker (&rig, "greedy")->credit == CONFIG_WORKER_CONCURRENCY_MAX);
    pack_writer_t *body = pack_writer_new ();
    pack_put_int (body, "credit", INT64_MAX);
    s_test_send (greedy, PROTO_CREDIT, &body);
    s_test_ready (forger, 5, 2, "w2");
    s_test_run (&rig, 20);
    assert (s_test_worker (&rig, "greedy")->credit == CONFIG_WORKER_CONCURRENCY_MAX);
    assert (s_test_worker (&rig, "w2")->credit == 2);
    body = pack_writer_new ();
    pack_put_int (body, "credit", 1LL << 62);
    s_test_send (forger, PROTO_CREDIT, &body);
    s_test_report (forger, id, 99, lease, "succeeded", forged, NULL);
    s_test_run (&rig, 20);
    assert (s_test_worker (&rig, "w2")->credit == 2);
    s_test_ready (greedy, -5, -5, "greedy");
    s_test_run (&rig, 20);
    assert (s_test_worker (&rig, "greedy")->credit == 0);
    // Every socket refuses frames over broker.max_frame_bytes.
    assert (zsock_maxmsgsize (rig.broker->frontend) == 200000);
    assert (zsock_maxmsgsize (rig.broker->backend) == 200000);
    assert (zsock_maxmsgsize (rig.broker->publisher) == 200000);

    s_test_peer_destroy (&greedy);
    s_test_peer_destroy (&old_socket);
    s_test_peer_destroy (&worker);
    s_test_peer_destroy (&forger);
    s_test_peer_destroy (&stranger);
    s_test_rig_end (&rig);
}

// s_test_attempts covers issue 17 #3: cancel + retry never applies the old
// run's result to the new run, in any order the results arrive; and the
// RESULT checks of issue 10 #4 / 17 #4 (size cap, JSON policy).
static void
s_test_attempts (void)
{
    test_rig_t rig;
    s_test_rig (&rig, "broker-test-attempts", "");
    test_peer_t *worker = s_test_peer (rig.config->broker_backend);
    s_test_ready (worker, 2, 2, "w1");
    zsock_t *events = zsock_new_sub (rig.config->broker_publisher, "");
    assert (events);
    zsock_set_rcvtimeo (events, 0);
    zsock_set_rcvhwm (events, 100000);
    char id[JOB_ID_LEN + 1];
    s_test_accepted (&rig, "a", "p", 5, NULL, id);
    int64_t attempt, last_attempt = 0;
    char lease[LEASE_TOKEN_LEN + 1], old_lease[LEASE_TOKEN_LEN + 1];
    job_destroy (&(job_t *) { s_test_dispatched (&rig, worker, &attempt, lease) });
    for (int round = 0; round < 12; round++) {
        assert (attempt > last_attempt);
        last_attempt = attempt;
        int64_t old_attempt = attempt;
        strcpy (old_lease, lease);
        s_test_chunk (worker, id, attempt, lease, "old chunk");
        s_test_run (&rig, 5);
        s_test_ask (&rig, PROTO_CANCEL, id, "a");
        assert (s_test_answer (&rig, NULL, NULL) == PROTO_JOB);
        proto_msg_t *cancel = s_test_next (&rig, worker, PROTO_CANCEL);
        int64_t canceled_attempt = 0;
        assert (cancel && pack_get_int (cancel->body, "attempt", &canceled_attempt) == 0
                && canceled_attempt == old_attempt);
        proto_msg_destroy (&cancel);
        if (round % 3 == 0)
            // The old run's answer arrives before the retry.
            s_test_report (worker, id, old_attempt, old_lease, "succeeded",
                           "{\"status\":200,\"body\":\"old\"}", NULL);
        s_test_ask (&rig, PROTO_RETRY, id, "a");
        assert (s_test_answer (&rig, NULL, NULL) == PROTO_JOB);
        job_t *job = s_test_dispatched (&rig, worker, &attempt, lease);
        assert (job->attempts == 1 && attempt == old_attempt + 1);
        job_destroy (&job);
        if (round % 3 == 1)
            // ... after the new run started: its identity differs.
            s_test_report (worker, id, old_attempt, old_lease, "succeeded",
                           "{\"status\":200,\"body\":\"old\"}", NULL);
        if (round % 3 == 2)
            // ... claiming the new attempt with the old lease.
            s_test_report (worker, id, attempt, old_lease, "succeeded",
                           "{\"status\":200,\"body\":\"old\"}", NULL);
        s_test_report (worker, id, old_attempt, old_lease, "canceled", NULL,
                       "{\"type\":\"canceled\"}");
        s_test_run (&rig, 5);
        job = s_test_job (&rig, id, "a", NULL, NULL);
        assert (job && job->status == JOB_RUNNING && !job->result);
        job_destroy (&job);
    }
    // The last run's own result is the one kept.
    s_test_report (worker, id, attempt, lease, "succeeded", "{\"status\":200,\"body\":\"new\"}", NULL);
    job_t *job = s_test_job (&rig, id, "a", NULL, NULL);
    assert (job && job->status == JOB_SUCCEEDED && strstr (job->result, "new"));
    assert (job->attempts == 1 && job->attempt_seq == attempt);
    job_destroy (&job);
    // Chunk events carry the attempt's identity: never the same twice.
    int64_t chunk_attempts[16];
    size_t chunk_count = 0;
    zmsg_t *next;
    while ((next = zmsg_recv (events)) != NULL) {
        zframe_t *topic = zmsg_pop (next);
        zframe_destroy (&topic);
        const char *error;
        proto_msg_t *msg = proto_decode (&next, false, &error);
        assert (msg);
        do {
            size_t type_len;
            const char *type = pack_get_str (msg->body, "type", &type_len);
            if (type && type_len == 5 && memcmp (type, "chunk", 5) == 0 && chunk_count < 16)
                assert (pack_get_int (msg->body, "attempt", &chunk_attempts[chunk_count++]) == 0);
        } while (proto_msg_next (msg));
        proto_msg_destroy (&msg);
    }
    if (chunk_count != 12)
        fprintf (stderr, "broker: %zu chunk events, 12 expected\n", chunk_count);
    assert (chunk_count == 12);
    for (size_t i = 1; i < chunk_count; i++)
        assert (chunk_attempts[i] > chunk_attempts[i - 1]);

    // A result over broker.max_result_bytes fails the job, not stored; one
    // that is not JSON under the policy is the worker's fault: retried.
    char big[5000];
    memset (big, 'x', sizeof big);
    memcpy (big, "{\"body\":\"", 9);
    memcpy (big + sizeof big - 3, "\"}", 3);
    s_test_accepted (&rig, "a", "p", 5, NULL, id);
    job_destroy (&(job_t *) { s_test_dispatched (&rig, worker, &attempt, lease) });
    s_test_report (worker, id, attempt, lease, "succeeded", big, NULL);
    job = s_test_job (&rig, id, "a", NULL, NULL);
    assert (job && job->status == JOB_FAILED && !job->result);
    assert (strstr (job->error, "response_too_large"));
    job_destroy (&job);
    s_test_accepted (&rig, "a", "p", 5, NULL, id);
    job_destroy (&(job_t *) { s_test_dispatched (&rig, worker, &attempt, lease) });
    s_test_report (worker, id, attempt, lease, "succeeded", "{\"body\":", NULL);
    job_destroy (&(job_t *) { s_test_dispatched (&rig, worker, &attempt, lease) });
    s_test_report (worker, id, attempt, lease, "failed", NULL, "[\"no type\"]");
    job_destroy (&(job_t *) { s_test_dispatched (&rig, worker, &attempt, lease) });
    s_test_report (worker, id, attempt, lease, "exploded", "{}", NULL);
    job = s_test_job (&rig, id, "a", NULL, NULL);
    assert (job && job->status == JOB_FAILED && !job->result && job->attempts == 3);
    assert (strstr (job->error, "worker_invalid_result"));
    job_destroy (&job);

    zsock_destroy (&events);
    s_test_peer_destroy (&worker);
    s_test_rig_end (&rig);
}

// s_test_count_dispatched reads the worker's next count DISPATCHes and
// returns how many are of tenant.
static int
s_test_count_dispatched (test_rig_t *rig, test_peer_t *worker, int count, const char *tenant)
{
    int of_tenant = 0;
    for (int i = 0; i < count; i++) {
        int64_t attempt;
        char lease[LEASE_TOKEN_LEN + 1];
        job_t *job = s_test_dispatched (rig, worker, &attempt, lease);
        of_tenant += strcmp (job->tenant, tenant) == 0;
        job_destroy (&job);
    }
    return of_tenant;
}

// s_test_fairness covers issue 17 #5: tenants take turns whatever their
// priorities, max_running holds, direct calls have limits.
static void
s_test_fairness (void)
{
    test_rig_t rig;
    s_test_rig (&rig, "broker-test-fair",
                "\"quotas\":{\"a\":{\"max_running\":2}},\"direct\":{\"max_concurrency\":3}");
    char id[JOB_ID_LEN + 1];
    // a floods at priority 9 before b's job at priority 0.
    for (int i = 0; i < 6; i++)
        s_test_accepted (&rig, "a", "p", 9, NULL, id);
    s_test_accepted (&rig, "b", "p", 0, NULL, id);
    test_peer_t *worker = s_test_peer (rig.config->broker_backend);
    s_test_ready (worker, 4, 8, "w1");
    // b's runs; a holds its max_running of 2, not the other three slots.
    assert (s_test_count_dispatched (&rig, worker, 3, "a") == 2);
    s_test_quiet (&rig, worker, 50);

    // Direct calls: three at once at most, whatever the credit.
    pack_writer_t *body = pack_writer_new ();
    pack_put_int (body, "credit", 4);
    s_test_send (worker, PROTO_CREDIT, &body);
    s_test_quiet (&rig, worker, 50);
    for (int i = 0; i < 5; i++)
        s_test_accepted (&rig, "d", NULL, 5, "{\"request\":{\"url\":\"http://127.0.0.1:9/\"}}", id);
    assert (s_test_count_dispatched (&rig, worker, 3, "d") == 3);
    s_test_quiet (&rig, worker, 50);
    s_test_peer_destroy (&worker);
    s_test_rig_end (&rig);

    // Without running limits, tenants take turns: x's priority-9 flood and
    // y's priority-0 jobs share the four slots two and two.
    s_test_rig (&rig, "broker-test-turns", "");
    for (int i = 0; i < 6; i++)
        s_test_accepted (&rig, "x", "p", 9, NULL, id);
    for (int i = 0; i < 2; i++)
        s_test_accepted (&rig, "y", "p", 0, NULL, id);
    worker = s_test_peer (rig.config->broker_backend);
    s_test_ready (worker, 4, 4, "w2");
    assert (s_test_count_dispatched (&rig, worker, 4, "y") == 2);
    s_test_peer_destroy (&worker);
    s_test_rig_end (&rig);
}

// s_test_webhooks covers issue 17 #5 and #1/#4: a webhook delivery belongs
// to its job's tenant, and its payload is the job as job_render makes it,
// readable under the JSON policy.
static void
s_test_webhooks (void)
{
    test_rig_t rig;
    s_test_rig (&rig, "broker-test-hooks", "\"quotas\":{\"c\":{\"max_queued\":2}}");
    char id[JOB_ID_LEN + 1];
    // c (max_queued 2) with one delivery pending has room for one job only,
    // and cannot read the delivery.
    test_peer_t *worker = s_test_peer (rig.config->broker_backend);
    s_test_ready (worker, 1, 1, "w2");
    s_test_accepted (&rig, "c", "p", 5,
                     "{\"request\":{\"path\":\"/json\"},\"callback\":{\"url\":\"http://127.0.0.1:9/hook\"}}",
                     id);
    int64_t attempt;
    char lease[LEASE_TOKEN_LEN + 1];
    job_t *job = s_test_dispatched (&rig, worker, &attempt, lease);
    job_destroy (&job);
    s_test_report (worker, id, attempt, lease, "succeeded",
                   "{\"status\":200,\"body\":{\"n\":\"a\\u0000b\"}}", NULL);
    job_t *delivery = s_test_dispatched (&rig, worker, &attempt, lease);
    assert (strcmp (delivery->kind, "webhook") == 0);
    assert (strcmp (delivery->tenant, WEBHOOK_TENANT_PREFIX "c") == 0);
    json_t *spec = jsontext_loads (delivery->spec, NULL);
    json_t *payload = json_object_get (json_object_get (spec, "request"), "payload");
    assert (strcmp (json_string_value (json_object_get (payload, "id")), id) == 0);
    json_t *body_n = json_object_get (json_object_get (json_object_get (payload, "result"), "body"), "n");
    assert (json_string_length (body_n) == 3);
    json_decref (spec);
    int64_t code, retry_after;
    char other[JOB_ID_LEN + 1];
    s_test_accepted (&rig, "c", "p", 5, NULL, other);
    s_test_submit (&rig, "c", "http", "p", 5, NULL, NULL, other);
    assert (s_test_answer (&rig, &code, &retry_after) == PROTO_ERROR && code == 429 && retry_after > 0);
    assert (s_test_job (&rig, delivery->id, "c", NULL, &code) == NULL && code == 404);
    s_test_report (worker, delivery->id, attempt, lease, "succeeded", "{\"status\":204}", NULL);
    job_destroy (&delivery);
    s_test_run (&rig, 20);
    s_test_accepted (&rig, "c", "p", 5, NULL, other);

    // A payload too deep for the policy once wrapped is delivered without
    // its result, never unreadable.
    job = job_new ();
    job_id_generate (job->id);
    job_set_str (&job->kind, "http");
    job_set_str (&job->spec, "{}");
    char deep[200] = "";
    for (int i = 0; i < 63; i++)
        strcat (deep, "[");
    for (int i = 0; i < 63; i++)
        strcat (deep, "]");
    assert (jsontext_within (deep, strlen (deep)));
    job->result = deep[0] ? strdup (deep) : NULL;
    char *text = s_delivery_spec (job, "http://127.0.0.1:9/hook");
    assert (text && jsontext_within (text, strlen (text)) && strstr (text, "\"omitted\""));
    free (text);
    job_set_str (&job->result, "{\"status\":200}");
    text = s_delivery_spec (job, "http://127.0.0.1:9/\"hook");
    spec = jsontext_loads (text, NULL);
    assert (spec && strcmp (json_string_value (json_object_get (json_object_get (spec, "request"),
                                                                  "url")), "http://127.0.0.1:9/\"hook") == 0);
    json_decref (spec);
    free (text);
    job_destroy (&job);

    s_test_peer_destroy (&worker);
    s_test_rig_end (&rig);
}

// s_test_admission covers issue 17 #6 and the stored-bytes quota of issue
// 10 #4: every path that creates work passes the same check.
static void
s_test_admission (void)
{
    test_rig_t rig;
    s_test_rig (&rig, "broker-test-admit",
                "\"quotas\":{\"e\":{\"max_queued\":1},\"f\":{\"max_stored_bytes\":600}}");
    test_peer_t *worker = s_test_peer (rig.config->broker_backend);
    s_test_ready (worker, 2, 2, "w1");
    char first[JOB_ID_LEN + 1], second[JOB_ID_LEN + 1];
    s_test_accepted (&rig, "e", "p", 5, NULL, first);
    int64_t attempt, code, retry_after;
    char lease[LEASE_TOKEN_LEN + 1];
    job_destroy (&(job_t *) { s_test_dispatched (&rig, worker, &attempt, lease) });
    s_test_report (worker, first, attempt, lease, "failed", "{\"status\":400}",
                   "{\"type\":\"upstream_status\",\"upstream_status\":400}");
    s_test_run (&rig, 20);
    s_test_accepted (&rig, "e", NULL, 5, "{\"request\":{\"url\":\"http://127.0.0.1:9/\"}}", second);
    // e has its one active job: a retry is one more, refused like a submit.
    s_test_ask (&rig, PROTO_RETRY, first, "e");
    assert (s_test_answer (&rig, &code, &retry_after) == PROTO_ERROR && code == 429 && retry_after > 0);
    job_t *job = s_test_job (&rig, first, "e", NULL, NULL);
    assert (job && job->status == JOB_FAILED);
    job_destroy (&job);

    // f's first job fills its 600 bytes: the next is refused with 429.
    char pad[700];
    snprintf (pad, sizeof pad, "{\"pad\":\"%0600d\"}", 0);
    s_test_submit (&rig, "f", "http", "p", 5, NULL, pad, first);
    assert (s_test_answer (&rig, NULL, NULL) == PROTO_SUBMIT_OK);
    s_test_submit (&rig, "f", "http", "p", 5, NULL, NULL, second);
    assert (s_test_answer (&rig, &code, &retry_after) == PROTO_ERROR && code == 429);
    assert (retry_after == STORED_QUOTA_RETRY_MS);
    s_test_peer_destroy (&worker);
    s_test_rig_end (&rig);
}

// s_test_store_full covers issue 10 #4 with the store's fault seam: a full
// store refuses new work with 503 and Retry-After, keeps sweeping, holds
// back only what does not fit (which loses its result after a while rather
// than wait forever), and recovers by itself.
static void
s_test_store_full (void)
{
    test_rig_t rig;
    s_test_rig (&rig, "broker-test-full", "");
    store_t *store = rig.broker->store;
    test_peer_t *worker = s_test_peer (rig.config->broker_backend);
    s_test_ready (worker, 4, 4, "w1");
    char done[JOB_ID_LEN + 1], big[JOB_ID_LEN + 1], small[JOB_ID_LEN + 1], id[JOB_ID_LEN + 1];
    int64_t attempt, big_attempt, code, retry_after;
    char lease[LEASE_TOKEN_LEN + 1], big_lease[LEASE_TOKEN_LEN + 1];
    s_test_accepted (&rig, "a", "p", 5, NULL, done);
    job_destroy (&(job_t *) { s_test_dispatched (&rig, worker, &attempt, lease) });
    s_test_report (worker, done, attempt, lease, "succeeded", "{\"status\":200}", NULL);
    s_test_accepted (&rig, "a", "p", 5, NULL, big);
    job_destroy (&(job_t *) { s_test_dispatched (&rig, worker, &big_attempt, big_lease) });
    s_test_accepted (&rig, "a", "p", 5, NULL, small);
    job_destroy (&(job_t *) { s_test_dispatched (&rig, worker, &attempt, lease) });

    // Every write fails: a submission is refused, not half accepted.
    store_inject_map_full (store, 0);
    s_test_submit (&rig, "a", "http", "p", 5, NULL, NULL, id);
    assert (s_test_answer (&rig, &code, &retry_after) == PROTO_ERROR && code == 503);
    assert (retry_after > 0);
    store_inject_map_full (store, SIZE_MAX);
    s_test_run (&rig, 300);
    assert (s_test_job (&rig, id, "a", NULL, &code) == NULL && code == 404);

    // Records over 2 KiB fail: the big result waits, the small one and the
    // others are written and answered.
    store_inject_map_full (store, 2048);
    char result[4100];
    snprintf (result, sizeof result, "{\"status\":200,\"body\":\"%03990d\"}", 0);
    s_test_report (worker, big, big_attempt, big_lease, "succeeded", result, NULL);
    s_test_report (worker, small, attempt, lease, "succeeded", "{\"status\":200}", NULL);
    job_t *job = s_test_job (&rig, small, "a", NULL, NULL);
    assert (job && job->status == JOB_SUCCEEDED);
    job_destroy (&job);
    assert (store_pending_has (store, big));
    // New work is refused meanwhile; the sweep goes on (done's TTL is 1 s).
    s_test_submit (&rig, "a", "http", "p", 5, NULL, NULL, id);
    assert (s_test_answer (&rig, &code, NULL) == PROTO_ERROR && code == 503);
    s_test_run (&rig, 1300);
    job = store_get (store, done);
    assert (job == NULL);
    // After STORE_DEGRADE_MS the big result is dropped and the job's state
    // written: nothing waits for space forever.
    for (int round = 0; round < 80 && store_pending_has (store, big); round++)
        s_test_run (&rig, 50);
    job = s_test_job (&rig, big, "a", NULL, NULL);
    assert (job && job->status == JOB_SUCCEEDED && !job->result);
    assert (strstr (job->error, "result_not_stored"));
    job_destroy (&job);
    assert (!store_pending_has (store, big) && !rig.broker->commit_failing);
    // And new work is taken again.
    store_inject_map_full (store, SIZE_MAX);
    s_test_accepted (&rig, "a", "p", 5, NULL, id);

    s_test_peer_destroy (&worker);
    s_test_rig_end (&rig);
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
    log_init ("broker-test", LOG_ERROR_);
    s_test_peers ();
    s_test_attempts ();
    s_test_fairness ();
    s_test_webhooks ();
    s_test_admission ();
    s_test_store_full ();
    log_init ("broker", LOG_INFO_);
    if (verbose)
        printf ("OK\n");
}
