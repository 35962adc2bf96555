// broker — the broker's sockets and what each turn of its loop does.
#include "broker.h"
#include "acks.h"
#include "cache.h"
#include "curve.h"
#include "exporter.h"
#include "jobs.h"
#include "jsontext.h"
#include "ledger.h"
#include "log.h"
#include "metrics.h"
#include "mem.h"
#include "outbox.h"
#include "proto.h"
#include "report.h"
#include "scheduler.h"
#include "store.h"
#include "telemetry.h"
#include "tenant.h"
#include "testpeer.h"
#include "throughput.h"
#include "workers.h"

#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// Housekeeping period: heartbeats, dead workers, leases, expiry.
#define TICK_MS 250
// How often finished jobs past their TTL are deleted, and how many per pass.
// Small, frequent passes: one large deleting transaction leaves a large,
// fragmented free-page list that LMDB then extends the file around instead
// of reusing (the soak grew ~9 bytes per job with 5,000-job passes every
// 10 s; it is flat with these).
#define EXPIRY_SWEEP_MS 250
#define EXPIRY_SWEEP_LIMIT 500
// After a failed commit, wait this long before trying again.
#define COMMIT_RETRY_MS 200
// With durability "fsync", group commits are at least this far apart (µs).
// Each commit then costs an fdatasync and wakes every gateway and worker
// with its replies, whatever it holds; at moderate rates loop turns are
// short and commits were tiny. With "os" a commit costs no disk wait, and
// the spacing only delayed answers: the OpenAI door's sequential added p50
// went 2.65 → 1.22 ms without it (bench scenario door).
#define COMMIT_SPACING_US 1000
// How often the store's fill is measured (near full, its free-page list is
// walked).
#define STORE_MEASURE_MS TICK_MS
// After commits have failed this long for want of space, versions too large
// to fit lose their result (result_not_stored), so a finished job's state
// reaches the disk and nothing waits for space forever (issue 10 #4).
#define STORE_DEGRADE_MS 2000
// How often idle tenants' state is dropped.
#define TENANT_SWEEP_MS 10000
// How often the hours of usage past broker.usage_retention_days are dropped.
#define USAGE_PRUNE_MS 60000

struct _broker_t {
    const config_t *config;     // borrowed configuration
    evloop_t *loop;             // borrowed event loop
    store_t *store;             // durable records
    zsock_t *frontend;          // ROUTER for gateways
    zsock_t *backend;           // ROUTER for workers
    zsock_t *publisher;         // PUB for events
    curve_t *curve;             // CURVE on the three sockets (security.curve), and its refusals
    outbox_t *outbox;           // answers and events until their commit
    acks_t *acks;               // workers' RESULTs handled, acknowledged after the commit
    scheduler_t *scheduler;     // the tenants' queues, fair turns, the providers' limits
    tenants_t *tenants;         // each tenant's quota state, admission
    workers_t *workers;         // the workers, their credit, liveness and leases
    jobs_t *jobs;               // the active jobs and their transitions
    ledger_t *ledger;           // the LLM tokens each tenant used (SPEC §3.3)
    throughput_t *throughput;   // the last 15 minutes' transitions, for the dashboard
    int64_t next_usage_prune_ms; // monotonic time of the next retention pass
    telemetry_t *telemetry;     // the Prometheus series
    exporter_t *exporter;       // GET /metrics on broker.metrics_listen, or NULL (off)
    evloop_timer_t *tick;       // housekeeping, every TICK_MS
    int64_t last_commit_us;     // monotonic time of the last commit (µs)
    int64_t commit_not_before_ms; // no commit before this monotonic time: the spacing, or a retry
    int64_t next_expiry_sweep_ms; // monotonic time of the next TTL sweep
    int64_t next_store_measure_ms; // monotonic time of the next fill measure
    int64_t next_tenant_sweep_ms; // monotonic time of the next idle-tenant sweep
    int64_t last_tick_ms;       // when housekeeping last ran (stall detection)
    bool commit_failing;        // the last commit left versions unwritten
    int64_t commit_failing_since_ms; // monotonic time the failures began
    bool store_high;            // the store's free space is below its reserve
};

// s_reply_error answers a gateway request at once with ERROR.
static void
s_reply_error (broker_t *self, zframe_t *identity, int64_t corr, int code, const char *message)
{
    outbox_refuse (self->outbox, identity, corr, code, message, 0);
}

// --- workers (backend, docs/protocol.md §3.2) ---

// s_worker_send sends a worker one message (DISPATCH, CANCEL and heartbeats
// go one body per message: a refused DISPATCH must be undone at once).
static void
s_worker_send (broker_t *self, remote_worker_t *worker, proto_cmd_t cmd, pack_writer_t *body)
{
    if (proto_send (self->backend, worker->identity, cmd, body) == 0)
        workers_sent (worker, evloop_now_ms (self->loop));
}

// s_cancel_attempt tells the worker running entry's attempt to abort it.
static void
s_cancel_attempt (broker_t *self, entry_t *entry)
{
    pack_writer_t *body = pack_writer_new ();
    pack_put_str (body, "id", entry->id);
    pack_put_int (body, "attempt", entry->attempt);
    s_worker_send (self, entry->worker, PROTO_CANCEL, body);
    pack_writer_destroy (&body);
}

// s_worker_dead requeues every attempt a worker held and forgets it.
static void
s_worker_dead (remote_worker_t *worker, const char *why, void *arg)
{
    broker_t *self = arg;
    log_warn (NULL, "worker %s dead (%s); requeuing %zu jobs", worker->name, why,
              worker->running.count);
    while (worker->running.head)
        jobs_lose (self->jobs, worker->running.head, why);
    workers_forget (self->workers, worker);
}

// s_leased_entry returns the running entry a RESULT or CHUNK reports on,
// when the sender holds its lease (§3.2.1). Otherwise logs (a late result
// quietly when it is the answer to a CANCEL) and returns NULL.
static entry_t *
s_leased_entry (broker_t *self, remote_worker_t *worker, proto_msg_t *msg, bool quiet)
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
    entry_t *entry = jobs_entry (self->jobs, key);
    lease_check_t check = workers_check_lease (self->workers, worker, entry, attempt, lease,
                                               lease_len);
    if (check == LEASE_HELD)
        return entry;
    if (check == LEASE_LATE) {
        // Expected after a cancel; otherwise the attempt was presumed lost.
        if (msg->cmd == PROTO_RESULT)
            log_line (quiet ? LOG_DEBUG_ : LOG_WARN_, __FILE__, __LINE__, key,
                      "late result for attempt %lld discarded", (long long) attempt);
    }
    else
        log_warn (key, "%s for attempt %lld refused: %s", proto_cmd_name (msg->cmd),
                  (long long) attempt,
                  check == LEASE_WRONG_TOKEN ? "its lease token is wrong"
                                             : "the sender does not hold the lease");
    return NULL;
}

// s_handle_result applies a worker's RESULT when the sender holds the
// attempt's lease; either way the call it reports has ended, so its slot
// is free again (within the worker's cap).
static void
s_handle_result (broker_t *self, remote_worker_t *worker, proto_msg_t *msg)
{
    size_t outcome_len = 0;
    const char *outcome = pack_get_str (msg->body, "outcome", &outcome_len);
    bool canceled = outcome && outcome_len == 8 && memcmp (outcome, "canceled", 8) == 0;
    entry_t *entry = s_leased_entry (self, worker, msg, canceled);
    // A RESULT sent before the worker's latest READY (a resend, §3.2.4)
    // reports a call that READY already counted as free: it returns a credit
    // only with an attempt the broker still held against this worker (the
    // READY's credit was cut by it). Any other gives back its call's slot.
    int64_t seq = 0;
    bool before_ready = worker && pack_get_int (msg->body, "seq", &seq) == 0 && seq > 0
                        && seq <= worker->ready_result_seq;
    bool held_here = entry && worker && entry->worker == worker;
    if (entry)
        jobs_report (self->jobs, entry, msg->body);
    if (worker && (!before_ready || held_here))
        workers_add_credit (worker, 1);
}

// s_handle_chunk relays partial upstream data of a running attempt to the
// subscribers (after the commit, so it never overtakes the "running" event)
// and keeps it for those who join later. Only the lease holder's count.
static void
s_handle_chunk (broker_t *self, remote_worker_t *worker, proto_msg_t *msg)
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
    if (entry)
        jobs_chunk (self->jobs, entry, index, data, data_len);
}

// s_reconnect tells a peer the broker does not know that it must READY.
static void
s_reconnect (broker_t *self, zframe_t *identity)
{
    pack_writer_t *body = pack_writer_new ();
    proto_send (self->backend, identity, PROTO_RECONNECT, body);
    pack_writer_destroy (&body);
}

// s_worker_figures keeps what a HEARTBEAT says of the worker's process
// (revision 4, metrics; §5): a HEARTBEAT without them changes nothing.
static void
s_worker_figures (remote_worker_t *worker, pack_reader_t *body)
{
    worker_figures_t figures = { 0 };
    if (pack_get_int (body, "started_at", &figures.started_at_ms) < 0)
        return;
    pack_get_int (body, "cpu_ms", &figures.cpu_ms);
    pack_get_int (body, "rss_bytes", &figures.rss_bytes);
    pack_get_int (body, "open_fds", &figures.open_fds);
    pack_get_int (body, "max_fds", &figures.max_fds);
    pack_get_int (body, "running", &figures.running);
    workers_report (worker, &figures);
}

// s_worker_message handles one message of a worker (one body of a batch).
static void
s_worker_message (proto_msg_t *msg, void *arg)
{
    broker_t *self = arg;
    remote_worker_t *worker = workers_lookup (self->workers, msg->envelope);
    if (worker)
        workers_heard (worker, evloop_now_ms (self->loop));

    if (msg->cmd == PROTO_READY) {
        int64_t credit = 0, concurrency = 0;
        pack_get_int (msg->body, "credit", &credit);
        pack_get_int (msg->body, "concurrency", &concurrency);
        size_t key_len = 0;
        const char *key = pack_get_str (msg->body, "worker", &key_len);
        worker = workers_ready (self->workers, worker, msg->envelope, credit, concurrency, key,
                                key_len, evloop_now_ms (self->loop));
        int64_t result_seq = 0;
        pack_get_int (msg->body, "result_seq", &result_seq);
        workers_set_ready_result_seq (worker, result_seq);
    }
    else if (msg->cmd == PROTO_RESULT) {
        s_handle_result (self, worker, msg);
        // Revision 4: a numbered RESULT is acknowledged after the commit,
        // applied or discarded alike (§3.2.4); its connection is the peer.
        int64_t seq = 0;
        if (pack_get_int (msg->body, "seq", &seq) == 0 && seq > 0)
            acks_add (self->acks, msg->envelope, (uint64_t) seq);
    }
    else if (msg->cmd == PROTO_CHUNK)
        s_handle_chunk (self, worker, msg);
    else if (!worker) {
        if (msg->cmd != PROTO_DISCONNECT)
            s_reconnect (self, msg->envelope);
    }
    else if (msg->cmd == PROTO_CREDIT) {
        int64_t credit = 0;
        if (pack_get_int (msg->body, "credit", &credit) == 0 && credit > 0)
            workers_add_credit (worker, credit);
    }
    else if (msg->cmd == PROTO_DISCONNECT)
        workers_drain (worker);
    else if (msg->cmd == PROTO_HEARTBEAT)
        s_worker_figures (worker, msg->body);
    else
        log_warn (NULL, "backend: unexpected %s dropped", proto_cmd_name (msg->cmd));

    // A RESULT from a worker we do not know (we restarted): it must READY.
    if (!worker && msg->cmd == PROTO_RESULT)
        s_reconnect (self, msg->envelope);
}

static void
s_backend_ready (evloop_t *loop, zsock_t *sock, void *arg)
{
    proto_recv_each (sock, true, "backend", s_worker_message, arg);
}

// s_dispatch hands queued jobs to workers while both exist (credit flow)
// and the providers' and tenants' limits allow; when only time lifts a
// limit, the loop wakes for it.
static void
s_dispatch (broker_t *self)
{
    while (scheduler_queued (self->scheduler) > 0) {
        remote_worker_t *worker = workers_pick (self->workers);
        if (!worker)
            return;
        int64_t now = evloop_now_ms (self->loop), wake;
        jobs_fail_fast (self->jobs, now);
        entry_t *entry = scheduler_next (self->scheduler, now, &wake);
        if (!entry) {
            if (wake)
                evloop_wake_in (self->loop, wake - now);
            return;
        }
        job_t *job = jobs_start (self->jobs, entry, worker, now);
        if (!job)
            continue;
        char lease[LEASE_TOKEN_LEN + 1];
        workers_lease_token (self->workers, job->id, job->attempt_seq, lease);
        pack_writer_t *body = pack_writer_new ();
        job_pack (job, body);
        pack_put_int (body, "attempt", job->attempt_seq);
        pack_put_str (body, "lease", lease);
        // A fallback's attempt: the worker calls that provider (§3.2).
        const char *model, *via = jobs_via (self->jobs, entry, job, &model);
        if (via)
            pack_put_str (body, "via", via);
        if (model)
            pack_put_str (body, "model", model);
        if (proto_send (self->backend, worker->identity, PROTO_DISPATCH, body) == 0) {
            workers_sent (worker, now);
            log_debug (job->id, "dispatched attempt=%d to worker %s%s%s", entry->attempt,
                       worker->name, via ? " via " : "", via ? via : "");
        }
        else {
            // The worker is gone (it reconnected under a new identity or
            // died): this attempt never started, so it does not count (its
            // identity stays used).
            jobs_give_back (self->jobs, entry, job);
            s_worker_dead (worker, "unreachable", self);
        }
        pack_writer_destroy (&body);
        job_destroy (&job);
    }
}

// --- gateways (frontend, docs/protocol.md §3.1) ---

// s_admit passes work that a record of record_tenant creates through the
// admission check, with what the broker knows of its store and queues.
static bool
s_admit (broker_t *self, const char *record_tenant, const char *kind, const char *provider,
         admit_path_t path, refusal_t *refusal)
{
    int64_t now = evloop_now_ms (self->loop), wall = clock_wall_ms ();
    bool llm = kind && strcmp (kind, "llm") == 0;
    admission_t admission = {
        .path = path,
        .store_refuses = self->commit_failing || self->store_high,
        .broker_full = jobs_active (self->jobs) >= self->config->max_queued,
        .provider_full = jobs_provider_full (self->jobs, provider),
        .now_ms = now,
        .llm = llm,
        .tokens_today = llm ? ledger_tenant_today (self->ledger, record_tenant, wall) : 0,
        .wall_ms = wall,
    };
    tenant_t *tenant = tenants_get (self->tenants, record_tenant, now);
    if (tenants_admit (self->tenants, tenant, &admission, refusal))
        return true;
    telemetry_refused (self->telemetry, tenant_name (tenant), refusal);
    return false;
}

// s_client_tenant is true for a tenant a gateway may act for: not an
// internal one ('#', webhook deliveries; docs/protocol.md §7).
static bool
s_client_tenant (const char *tenant)
{
    return tenant && tenant[0] != '#';
}

// s_owned_job reads the job named by the request's "id" if it belongs to
// the request's "tenant", a client's; otherwise answers 404 and returns
// NULL.
static job_t *
s_owned_job (broker_t *self, proto_msg_t *msg, int64_t corr)
{
    size_t len;
    const char *id = pack_get_str (msg->body, "id", &len);
    char *tenant = pack_get_strdup (msg->body, "tenant");
    job_t *job = NULL;
    if (id && s_client_tenant (tenant) && job_id_valid (id, len)) {
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
// belongs to the request's tenant, a client's (404 otherwise, §3.1).
static void
s_handle_get (broker_t *self, proto_msg_t *msg, int64_t corr)
{
    size_t len;
    const char *id = pack_get_str (msg->body, "id", &len);
    char *tenant = pack_get_strdup (msg->body, "tenant");
    if (!tenant)
        s_reply_error (self, msg->envelope, corr, 400, "GET needs the caller's tenant");
    else if (!id || !job_id_valid (id, len) || !s_client_tenant (tenant))
        s_reply_error (self, msg->envelope, corr, 404, "no such job");
    else {
        // Answered after the commit so a reader never sees a state the
        // store could still lose.
        char key[JOB_ID_LEN + 1];
        job_id_copy (key, id, JOB_ID_LEN);
        bool with_chunks = false;
        pack_get_bool (msg->body, "with_chunks", &with_chunks);
        outbox_job (self->outbox, msg->envelope, corr, key, tenant, with_chunks);
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
    entry_t *entry = jobs_entry (self->jobs, job->id);
    if (job_status_terminal (job->status) || !entry) {
        s_reply_error (self, msg->envelope, corr, 409, "the job has already finished");
        job_destroy (&job);
        return;
    }
    if (entry->state == ENTRY_RUNNING && entry->worker)
        s_cancel_attempt (self, entry);
    char *error = report_error_json ("canceled", "canceled by the client");
    jobs_finish (self->jobs, entry, job, JOB_CANCELED, job->result, error);
    free (error);
    outbox_job (self->outbox, msg->envelope, corr, job->id, job->tenant, false);
    job_destroy (&job);
}

// s_handle_retry runs a failed or canceled job again with a new budget of
// attempts, if the tenant may create the work (§3.1 "Admission").
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
    if (!s_admit (self, job->tenant, job->kind, job->provider, ADMIT_RETRY, &refusal)) {
        outbox_refuse (self->outbox, msg->envelope, corr, refusal.code, refusal.why,
                       refusal.retry_after_ms);
        job_destroy (&job);
        return;
    }
    jobs_retry (self->jobs, job);
    outbox_job (self->outbox, msg->envelope, corr, job->id, job->tenant, false);
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
    page->datas[page->count] = mem_alloc (size);
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
    // Internal tenants ('#webhooks/…') are no client's: nobody lists them.
    if (!s_client_tenant (tenant) || limit < 1 || limit > 1000 || max_bytes < 0
        || (status && status_filter < 0)) {
        s_reply_error (self, msg->envelope, corr, 400, "bad list request");
        free (tenant);
        free (status);
        free (cursor);
        return;
    }
    list_page_t page = { .limit = (size_t) limit, .max_bytes = (size_t) max_bytes };
    page.datas = mem_calloc ((size_t) limit, sizeof *page.datas);
    page.sizes = mem_calloc ((size_t) limit, sizeof *page.sizes);
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
        if (strcmp (existing->tenant, job->tenant) == 0 && strcmp (existing->spec, job->spec) == 0)
            outbox_submit_ok (self->outbox, msg->envelope, corr, existing->id, existing->status,
                              existing->created_at, true);
        else
            s_reply_error (self, msg->envelope, corr, 409, "job id already used");
        job_destroy (&existing);
        job_destroy (&job);
        return;
    }
    refusal_t refusal;
    if (!s_admit (self, job->tenant, job->kind, job->provider, ADMIT_SUBMIT, &refusal)) {
        outbox_refuse (self->outbox, msg->envelope, corr, refusal.code, refusal.why,
                       refusal.retry_after_ms);
        job_destroy (&job);
        return;
    }
    jobs_accept (self->jobs, job);
    // A client held until the job ends: its end's event carries the record.
    bool waiting = false;
    if (pack_get_bool (msg->body, "waiting", &waiting) == 0 && waiting)
        jobs_await (self->jobs, job->id);
    // Queued, or already succeeded when the cache answered it (SPEC §3.2).
    outbox_submit_ok (self->outbox, msg->envelope, corr, job->id, job->status, job->created_at,
                      false);
    log_debug (job->id, "accepted kind=%s priority=%d", job->kind, job->priority);
    job_destroy (&job);
}

// s_reply_json answers a gateway's request with cmd carrying value (taken)
// as JSON text, the "json" field of PROVIDERS_OK, USAGE_OK and STATS_OK.
static void
s_reply_json (broker_t *self, zframe_t *envelope, int64_t corr, proto_cmd_t cmd, json_t *value)
{
    char *text = jsontext_dump (value);
    json_decref (value);
    pack_writer_t *body = pack_writer_new ();
    pack_put_int (body, "corr", corr);
    pack_put_str (body, "json", text);
    proto_send (self->frontend, envelope, cmd, body);
    pack_writer_destroy (&body);
    free (text);
}

// s_handle_providers answers with the providers' live state, as JSON text.
static void
s_handle_providers (broker_t *self, proto_msg_t *msg, int64_t corr)
{
    json_t *list = scheduler_providers_json (self->scheduler, evloop_now_ms (self->loop),
                                             jobs_provider_active (self->jobs));
    s_reply_json (self, msg->envelope, corr, PROTO_PROVIDERS_OK,
                  json_pack ("{s:o}", "providers", list));
}

// s_handle_usage answers a tenant's LLM usage totals (SPEC §3.3), from
// the hour of since (wall ms, optional) on, as JSON text.
static void
s_handle_usage (broker_t *self, proto_msg_t *msg, int64_t corr)
{
    char *tenant = pack_get_strdup (msg->body, "tenant");
    int64_t since = 0;
    pack_get_int (msg->body, "since", &since);
    if (!s_client_tenant (tenant) || since < 0) {
        s_reply_error (self, msg->envelope, corr, 400, "bad usage request");
        free (tenant);
        return;
    }
    s_reply_json (self, msg->envelope, corr, PROTO_USAGE_OK,
                  ledger_usage_json (self->ledger, tenant, since, self->config));
    free (tenant);
}

// The most workers STATS lists (the count says how many there are).
#define STATS_WORKERS_MAX 256

// s_handle_stats answers the dashboard's figures (revision 4, §3.1 STATS):
// the last 15 minutes' transitions, the workers, the jobs' counts.
static void
s_handle_stats (broker_t *self, proto_msg_t *msg, int64_t corr)
{
    int64_t now_ms = evloop_now_ms (self->loop);
    json_t *stats = json_pack (
        "{s:o, s:o, s:I, s:I, s:I, s:I, s:I}", "throughput",
        throughput_json (self->throughput, clock_wall_ms ()), "workers",
        workers_json (self->workers, now_ms, STATS_WORKERS_MAX), "workers_live",
        (json_int_t) workers_live (self->workers), "queued",
        (json_int_t) (scheduler_queued (self->scheduler) + jobs_following (self->jobs)),
        "delayed", (json_int_t) jobs_delayed (self->jobs), "running",
        (json_int_t) jobs_running (self->jobs), "active", (json_int_t) jobs_active (self->jobs));
    s_reply_json (self, msg->envelope, corr, PROTO_STATS_OK, stats);
}

// s_handle_ping answers with the live workers and the jobs' counts (§3.1).
static void
s_handle_ping (broker_t *self, proto_msg_t *msg, int64_t corr)
{
    pack_writer_t *body = pack_writer_new ();
    pack_put_int (body, "corr", corr);
    pack_put_int (body, "workers", (int64_t) workers_live (self->workers));
    pack_put_int (body, "queued",
                  (int64_t) (scheduler_queued (self->scheduler) + jobs_delayed (self->jobs)
                             + jobs_following (self->jobs)));
    pack_put_int (body, "running", (int64_t) jobs_running (self->jobs));
    proto_send (self->frontend, msg->envelope, PROTO_PONG, body);
    pack_writer_destroy (&body);
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
    else if (msg->cmd == PROTO_PROVIDERS)
        s_handle_providers (self, msg, corr);
    else if (msg->cmd == PROTO_USAGE)
        s_handle_usage (self, msg, corr);
    else if (msg->cmd == PROTO_STATS)
        s_handle_stats (self, msg, corr);
    else if (msg->cmd == PROTO_PING)
        s_handle_ping (self, msg, corr);
    else
        s_reply_error (self, msg->envelope, corr, 400, "unexpected command");
}

static void
s_frontend_ready (evloop_t *loop, zsock_t *sock, void *arg)
{
    proto_recv_each (sock, true, "frontend", s_gateway_request, arg);
}

// --- the group commit (docs/protocol.md §6) ---

// s_version_waits is true while a version of job id waits in the store's
// batch for a later commit.
static bool
s_version_waits (const char *id, void *arg)
{
    broker_t *self = arg;
    return store_pending_has (self->store, id);
}

// s_flush sends what waited for the commit: all of it after a whole
// commit; after a partial one, what concerns jobs still waiting for space
// stays, in order.
static void
s_flush (broker_t *self)
{
    outbox_flush (self->outbox, store_pending (self->store) > 0 ? s_version_waits : NULL, self);
}

// s_drop_refused forgets the entry of a job whose version was discarded
// from the batch (an attempt already dispatched is canceled at the worker).
static void
s_drop_refused (broker_t *self, const char *id)
{
    entry_t *entry = jobs_entry (self->jobs, id);
    if (entry && entry->state == ENTRY_RUNNING && entry->worker)
        s_cancel_attempt (self, entry);
    if (entry)
        jobs_drop (self->jobs, entry);
}

// s_refused_submission refuses a submission whose commit failed: its
// version is dropped from the batch and its entry forgotten (an attempt
// already dispatched is canceled at the worker). A SUBMIT is acknowledged
// only after its commit, so it is refused rather than left half accepted
// (its client would be told 503 by the gateway's deadline while the job
// might still run).
static bool
s_refused_submission (const char *id, void *arg)
{
    broker_t *self = arg;
    // A hit's callback delivery was made in the same batch: it goes too, so
    // no webhook reports a job its client was told was not accepted.
    char delivery[JOB_ID_LEN + 1] = "";
    const char *made = jobs_hit_delivery (self->jobs, id);
    if (made)
        memcpy (delivery, made, JOB_ID_LEN + 1);
    if (store_discard (self->store, id) < 0)
        return false;
    s_drop_refused (self, id);
    if (delivery[0] && store_discard (self->store, delivery) == 0)
        s_drop_refused (self, delivery);
    log_warn (id, "submission refused: the store cannot commit");
    return true;
}

// s_degrade_version drops the result of a version that did not fit in the
// full store (what fits has been written).
static void
s_degrade_version (const char *id, size_t size, bool terminal, void *arg)
{
    broker_t *self = arg;
    jobs_drop_result (self->jobs, id, size, terminal);
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
    outbox_refuse_submissions (self->outbox, s_refused_submission, self,
                               "the job store cannot write; retry later", ADMIT_STORE_RETRY_MS);
    if (error == ENOSPC && now - self->commit_failing_since_ms >= STORE_DEGRADE_MS)
        store_pending_each (self->store, s_degrade_version, self);
}

// s_commit writes the batch and sends what waited for it.
static void
s_commit (broker_t *self)
{
    bool timed = store_pending (self->store) > 0;
    int64_t started_us = timed ? clock_mono_us () : 0;
    int committed = store_commit (self->store);
    if (timed)
        telemetry_committed (self->telemetry, clock_mono_us () - started_us);
    if (committed < 0) {
        // Keep what could not be written and try again shortly; what was
        // written (a full map writes what fits) is answered now.
        s_commit_failed (self, errno);
        s_flush (self);
        jobs_forget_committed (self->jobs);
        self->commit_not_before_ms = clock_mono_ms () + COMMIT_RETRY_MS;
        evloop_wake_in (self->loop, COMMIT_RETRY_MS);
        return;
    }
    if (self->commit_failing)
        log_info (NULL, "store commits again");
    self->commit_failing = false;
    s_flush (self);
    acks_flush (self->acks, self->backend);
    jobs_forget_committed (self->jobs);
}

// s_on_idle ends each turn of the loop: dispatch, then the group commit of
// everything the turn changed, at most one per COMMIT_SPACING_US, and none
// for COMMIT_RETRY_MS after a failed one.
static void
s_on_idle (evloop_t *loop, void *arg)
{
    broker_t *self = arg;
    if (!self->commit_failing)
        s_dispatch (self);
    // Once a commit is due later, turns before then add to its batch.
    int64_t now = evloop_now_ms (loop);
    if (self->commit_not_before_ms > now) {
        evloop_wake_in (loop, self->commit_not_before_ms - now);
        return;
    }
    if (store_pending (self->store) > 0) {
        int64_t now_us = clock_mono_us ();
        if (self->config->durability_fsync && now_us - self->last_commit_us < COMMIT_SPACING_US) {
            int64_t wait_ms = (COMMIT_SPACING_US - (now_us - self->last_commit_us) + 999) / 1000;
            self->commit_not_before_ms = clock_mono_ms () + wait_ms;
            evloop_wake_in (loop, wait_ms);
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

// --- housekeeping (every tick) ---

static void
s_heartbeat (remote_worker_t *worker, void *arg)
{
    pack_writer_t *body = pack_writer_new ();
    s_worker_send (arg, worker, PROTO_HEARTBEAT, body);
    pack_writer_destroy (&body);
}

static void
s_lease_over (entry_t *entry, const char *why, void *arg)
{
    broker_t *self = arg;
    jobs_lose (self->jobs, entry, why);
}

// s_usage_dropped deletes a usage row the retention dropped (with the
// next commit).
static void
s_usage_dropped (const char *key, size_t key_len, void *arg)
{
    broker_t *self = arg;
    (void) key_len;
    store_put_tokens (self->store, key, NULL);
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
        workers_stalled (self->workers, now);
    }
    // Dead workers first, then heartbeats to the living (§5), then the
    // attempts running far past their timeout.
    workers_each_silent (self->workers, now, s_worker_dead, self);
    workers_each_idle (self->workers, now, s_heartbeat, self);
    workers_each_lease_over (self->workers, now, s_lease_over, self);

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
        tenants_sweep (self->tenants, now);
    }
    if (now >= self->next_usage_prune_ms) {
        self->next_usage_prune_ms = now + USAGE_PRUNE_MS;
        int64_t before = clock_wall_ms () - self->config->usage_retention_days * 86400000LL;
        size_t dropped = ledger_prune (self->ledger, before, s_usage_dropped, self);
        if (dropped > 0)
            log_info (NULL, "dropped %zu hours of usage past broker.usage_retention_days",
                      dropped);
    }
}

static void
s_tick (evloop_t *loop, void *arg)
{
    s_housekeeping (arg);
}

// --- construction ---

// s_render_job writes the JOB answer of a GET, CANCEL or RETRY at the
// flush: the committed record, when it is the asking tenant's, and the
// running attempt's chunks when asked.
static bool
s_render_job (const char *id, const char *tenant, bool with_chunks, pack_writer_t *body,
              void *arg)
{
    broker_t *self = arg;
    job_t *job = store_get (self->store, id);
    bool found = job && strcmp (job->tenant, tenant) == 0;
    if (found) {
        job_pack (job, body);
        entry_t *entry = with_chunks ? jobs_entry (self->jobs, job->id) : NULL;
        if (entry && entry->state == ENTRY_RUNNING && entry->chunks_size > 0)
            pack_put_strn (body, "chunks", entry->chunks, entry->chunks_size);
    }
    job_destroy (&job);
    return found;
}

// s_stored_bytes is what a record tenant's records take in the store.
static uint64_t
s_stored_bytes (const char *record_tenant, void *arg)
{
    broker_t *self = arg;
    return store_tenant_bytes (self->store, record_tenant);
}

// s_load_usage takes back one usage row the store kept.
static void
s_load_usage (const char *key, size_t key_len, const uint64_t *counts, void *arg)
{
    broker_t *self = arg;
    if (ledger_load (self->ledger, key, key_len, counts) < 0)
        log_warn (NULL, "store: a tokens row that is not one skipped (%zu bytes)", key_len);
}

static void
s_recover (job_t *job, void *arg)
{
    broker_t *self = arg;
    jobs_recover (self->jobs, job, clock_mono_ms ());
    job_destroy (&job);
}

// s_bind makes one of the broker's sockets: CURVE server when configured
// (its failed handshakes watched under name), limits, then bound.
static zsock_t *
s_bind (broker_t *self, int type, const char *name, const char *endpoint, char *error,
        size_t error_size)
{
    size_t max_frame_bytes = self->config->max_frame_bytes;
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
    curve_secure (self->curve, sock);
    if (curve_watch (self->curve, self->loop, sock, name) < 0) {
        snprintf (error, error_size, "broker: cannot watch the %s socket's handshakes", name);
        zsock_destroy (&sock);
        return NULL;
    }
    if (zsock_bind (sock, "%s", endpoint) < 0) {
        snprintf (error, error_size, "broker: cannot bind %s: %s", endpoint,
                  zmq_strerror (zmq_errno ()));
        curve_unwatch (self->curve, sock);
        zsock_destroy (&sock);
        return NULL;
    }
    return sock;
}

char *
broker_metrics (broker_t *self, size_t *size)
{
    return telemetry_render (self->telemetry, evloop_now_ms (self->loop), clock_wall_ms (), size);
}

// s_render_metrics answers a scrape of broker.metrics_listen.
static char *
s_render_metrics (void *arg, size_t *size)
{
    return broker_metrics (arg, size);
}

// s_webhook_counts gives the webhook deliveries by outcome (delivery.h) to
// the metrics, every outcome named, zeros included.
static void
s_webhook_counts (void *arg, telemetry_emit_fn *emit, void *emit_arg)
{
    const uint64_t *counts = jobs_delivery_counts (arg);
    for (int outcome = 0; outcome < DELIVERY_OUTCOME_COUNT_; outcome++)
        emit (delivery_outcome_name ((delivery_outcome_t) outcome), counts[outcome], emit_arg);
}

// s_curve_counts gives the refused CURVE handshakes by reason to the
// metrics, every reason named, zeros included.
static void
s_curve_counts (void *arg, telemetry_emit_fn *emit, void *emit_arg)
{
    for (int reason = 0; reason < CURVE_REFUSED_COUNT_; reason++)
        emit (curve_refusal_name ((curve_refusal_t) reason),
              curve_refused (arg, (curve_refusal_t) reason), emit_arg);
}

broker_t *
broker_new (const config_t *config, evloop_t *loop, char *error, size_t error_size)
{
    broker_t *self = mem_calloc (1, sizeof *self);
    self->config = config;
    self->loop = loop;
    self->store = store_new (config->data_dir, config->store_map_mb, config->durability_fsync,
                             error, error_size);
    if (!self->store) {
        broker_destroy (&self);
        return NULL;
    }
    // CURVE's ZAP handler must run before a socket binds (§1.1).
    self->curve = curve_new (config, true, error, error_size);
    if (!self->curve) {
        broker_destroy (&self);
        return NULL;
    }
    self->frontend = s_bind (self, ZMQ_ROUTER, "frontend", config->broker_frontend, error,
                             error_size);
    self->backend = self->frontend ? s_bind (self, ZMQ_ROUTER, "backend", config->broker_backend,
                                             error, error_size)
                                   : NULL;
    self->publisher = self->backend ? s_bind (self, ZMQ_PUB, "publisher",
                                              config->broker_publisher, error, error_size)
                                    : NULL;
    if (!self->publisher) {
        broker_destroy (&self);
        return NULL;
    }
    self->outbox = outbox_new (self->frontend, self->publisher, clock_wall_ms (), s_render_job,
                               self);
    self->acks = acks_new ();
    self->scheduler = scheduler_new (config);
    self->tenants = tenants_new (config, scheduler_slots (self->scheduler), s_stored_bytes, self);
    self->workers = workers_new (store_lease_key (self->store));
    self->jobs = jobs_new (config, loop, self->store, self->outbox, self->tenants,
                           self->scheduler, self->workers);
    self->ledger = ledger_new ();
    self->throughput = throughput_new ();
    outbox_set_throughput (self->outbox, self->throughput);
    jobs_set_ledger (self->jobs, self->ledger);
    self->telemetry = telemetry_new (config);
    jobs_set_telemetry (self->jobs, self->telemetry);
    telemetry_set_sources (self->telemetry, &(telemetry_sources_t) {
        .scheduler = self->scheduler, .tenants = self->tenants, .workers = self->workers,
        .jobs = self->jobs, .store = self->store, .ledger = self->ledger });
    telemetry_add_counts (self->telemetry, "jobgate_webhook_deliveries_total", "outcome",
                          "Webhook delivery attempts by outcome (delivered, retried, given_up), "
                          "and deliveries refused before any attempt (not_queued).",
                          s_webhook_counts, self->jobs);
    if (curve_enabled (self->curve))
        telemetry_add_counts (self->telemetry, "jobgate_curve_refused_total", "reason",
                              "CURVE handshakes refused, by reason (a peer without a key, "
                              "with a wrong one or an unlisted one).",
                              s_curve_counts, self->curve);
    if (config->broker_metrics_listen && *config->broker_metrics_listen) {
        self->exporter = exporter_new (loop, config->broker_metrics_listen, s_render_metrics,
                                       self, error, error_size);
        if (!self->exporter) {
            broker_destroy (&self);
            return NULL;
        }
        log_info (NULL, "broker serving metrics on %s (port %d)", config->broker_metrics_listen,
                  exporter_port (self->exporter));
    }
    long usage_rows = store_scan_tokens (self->store, s_load_usage, self);
    long recovered = store_scan_active (self->store, s_recover, self);
    if (recovered < 0 || usage_rows < 0) {
        snprintf (error, error_size, "broker: cannot read the store in %s", config->data_dir);
        broker_destroy (&self);
        return NULL;
    }
    log_info (NULL, "store %s: %zu records, recovered %ld active jobs (%zu queued, %zu running), "
              "%zu hours of usage", config->data_dir, store_count (self->store), recovered,
              scheduler_queued (self->scheduler), jobs_running (self->jobs),
              ledger_rows (self->ledger));
    s_measure_store (self);
    evloop_sock_add (loop, self->frontend, s_frontend_ready, self);
    evloop_sock_add (loop, self->backend, s_backend_ready, self);
    evloop_on_idle (loop, s_on_idle, self);
    self->tick = evloop_timer_every (loop, TICK_MS, s_tick, self);
    log_info (NULL, "broker listening: frontend %s, backend %s, publisher %s, durability %s, "
              "frames at most %zu bytes", config->broker_frontend, config->broker_backend,
              config->broker_publisher, config->durability_fsync ? "fsync" : "os",
              config->max_frame_bytes);
    return self;
}

void
broker_config_changed (broker_t *self)
{
    int64_t now = evloop_now_ms (self->loop);
    scheduler_config_changed (self->scheduler, now);
    tenants_config_changed (self->tenants, now);
    // A limit raised may let waiting jobs go now.
    s_dispatch (self);
}

void
broker_destroy (broker_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    broker_t *self = *self_p;
    if (self->store) {
        if (store_commit (self->store) < 0)
            log_error (NULL, "final commit failed: %zu records not written",
                       store_pending (self->store));
        else if (self->outbox) {
            outbox_flush (self->outbox, NULL, NULL);
            if (self->acks && self->backend)
                acks_flush (self->acks, self->backend);
        }
    }
    evloop_timer_cancel (self->loop, &self->tick);
    exporter_destroy (&self->exporter);
    if (self->frontend)
        evloop_sock_remove (self->loop, self->frontend);
    if (self->backend)
        evloop_sock_remove (self->loop, self->backend);
    evloop_on_idle (self->loop, NULL, NULL);
    // The entries first: they are on the tenants' lanes and workers' lists.
    jobs_destroy (&self->jobs);
    telemetry_destroy (&self->telemetry);
    ledger_destroy (&self->ledger);
    throughput_destroy (&self->throughput);
    workers_destroy (&self->workers);
    tenants_destroy (&self->tenants);
    scheduler_destroy (&self->scheduler);
    outbox_destroy (&self->outbox);
    acks_destroy (&self->acks);
    curve_unwatch (self->curve, self->frontend);
    curve_unwatch (self->curve, self->backend);
    curve_unwatch (self->curve, self->publisher);
    zsock_destroy (&self->frontend);
    zsock_destroy (&self->backend);
    zsock_destroy (&self->publisher);
    curve_destroy (&self->curve);
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
    self->commit_not_before_ms = 0;
}

void
broker_set_timing (broker_t *self, int64_t lease_grace_ms, int64_t liveness_ms)
{
    workers_set_timing (self->workers, lease_grace_ms, liveness_ms);
}

const curve_t *
broker_curve (const broker_t *self)
{
    return self->curve;
}

bool
broker_consistent (broker_t *self)
{
    return jobs_consistent (self->jobs) && scheduler_consistent (self->scheduler)
           && workers_consistent (self->workers);
}

// --- self-test ---
//
// A broker hosted on its own loop over inproc sockets; the test plays the
// gateway and the workers (and hostile peers) on DEALER sockets and a
// subscriber on a SUB socket (broker/testpeer.h), as worker.c's self-test
// plays the broker.

typedef struct {
    char dir[64];               // the store's directory
    char path[96];              // the config file
    config_t *config;           // the configuration
    evloop_t *loop;             // the broker's loop
    broker_t *broker;           // the broker under test
    testpeer_t *gateway;        // plays a gateway
    int64_t corr;               // the gateway's last correlation id
} test_rig_t;

// s_test_rig_with starts a broker with the providers' JSON members
// providers, the config's JSON members extra (after a comma, may be "")
// and a gateway peer.
static void
s_test_rig_with (test_rig_t *rig, const char *name, const char *providers, const char *extra)
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
             "\"providers\":{%s}%s%s}",
             name, name, name, rig->dir, providers, *extra ? "," : "", extra);
    fclose (file);
    char error[256];
    rig->config = config_load (rig->path, error, sizeof error);
    if (!rig->config)
        fprintf (stderr, "broker: %s\n", error);
    assert (rig->config);
    rig->loop = evloop_new ();
    rig->broker = broker_new (rig->config, rig->loop, error, sizeof error);
    assert (rig->broker);
    rig->gateway = testpeer_new (ZMQ_DEALER, rig->config->broker_frontend);
}

// s_test_rig starts a broker with one provider, p, and the config's JSON
// members extra (after a comma, may be "").
static void
s_test_rig (test_rig_t *rig, const char *name, const char *extra)
{
    s_test_rig_with (rig, name, "\"p\":{\"base_url\":\"http://127.0.0.1:9\",\"retry_base_ms\":1,"
                     "\"retry_max_ms\":1}", extra);
}

static void
s_test_rig_end (test_rig_t *rig)
{
    assert (broker_consistent (rig->broker));
    testpeer_destroy (&rig->gateway);
    broker_destroy (&rig->broker);
    evloop_destroy (&rig->loop);
    config_destroy (&rig->config);
    char command[200];
    snprintf (command, sizeof command, "rm -rf '%s'", rig->dir);
    assert (system (command) == 0);
}

// s_test_job_new makes a job of tenant (kind, provider may be NULL, spec
// and metadata texts) for a SUBMIT.
static job_t *
s_test_job_new (const char *tenant, const char *kind, const char *provider, int priority,
                const char *spec, const char *metadata)
{
    job_t *job = job_new ();
    job_id_generate (job->id);
    job_set_str (&job->tenant, tenant);
    job_set_str (&job->kind, kind);
    job_set_str (&job->provider, provider);
    job_set_str (&job->spec, spec ? spec : "{\"request\":{\"path\":\"/json\"}}");
    job_set_str (&job->metadata, metadata);
    job->priority = priority;
    job->created_at = clock_wall_ms ();
    return job;
}

// s_test_send_job sends a SUBMIT of *job_p, which it destroys.
static void
s_test_send_job (test_rig_t *rig, job_t **job_p)
{
    pack_writer_t *body = pack_writer_new ();
    pack_put_int (body, "corr", ++rig->corr);
    job_pack (*job_p, body);
    testpeer_send (rig->gateway, PROTO_SUBMIT, &body);
    job_destroy (job_p);
}

// s_test_submit sends a SUBMIT of a job of tenant (see s_test_job_new) and
// writes its id into id.
static void
s_test_submit (test_rig_t *rig, const char *tenant, const char *kind, const char *provider,
               int priority, const char *spec, const char *metadata, char *id)
{
    job_t *job = s_test_job_new (tenant, kind, provider, priority, spec, metadata);
    strcpy (id, job->id);
    s_test_send_job (rig, &job);
}

// s_test_answer reads the gateway's next answer: its command and, for an
// ERROR, its code (and Retry-After).
static proto_cmd_t
s_test_answer (test_rig_t *rig, int64_t *code, int64_t *retry_after_ms)
{
    proto_msg_t *msg = testpeer_wait (rig->gateway, rig->loop);
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
    testpeer_send (rig->gateway, cmd, &body);
}

// s_test_job asks for a job as tenant and returns it (NULL: ERROR).
static job_t *
s_test_job (test_rig_t *rig, const char *id, const char *tenant, char **chunks, int64_t *code)
{
    s_test_ask (rig, PROTO_GET, id, tenant);
    proto_msg_t *msg = testpeer_wait (rig->gateway, rig->loop);
    assert (msg);
    job_t *job = msg->cmd == PROTO_JOB ? job_unpack (msg->body) : NULL;
    if (code) {
        *code = 0;
        pack_get_int (msg->body, "code", code);
    }
    if (chunks) {
        size_t size = 0;
        const char *data = pack_get_str (msg->body, "chunks", &size);
        *chunks = data ? mem_strndup (data + 8, size - 8) : NULL;
    }
    proto_msg_destroy (&msg);
    return job;
}

// s_test_ready announces a worker on peer.
static void
s_test_ready (testpeer_t *peer, int64_t credit, int64_t concurrency, const char *key)
{
    pack_writer_t *body = pack_writer_new ();
    pack_put_int (body, "credit", credit);
    pack_put_int (body, "concurrency", concurrency);
    if (key)
        pack_put_str (body, "worker", key);
    testpeer_send (peer, PROTO_READY, &body);
}

// s_test_dispatched reads a worker's next DISPATCH: the job's id, the
// attempt and the lease token.
static job_t *
s_test_dispatched (test_rig_t *rig, testpeer_t *worker, int64_t *attempt, char *lease)
{
    proto_msg_t *msg = testpeer_expect (worker, rig->loop, PROTO_DISPATCH);
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
s_test_report (testpeer_t *peer, const char *id, int64_t attempt, const char *lease,
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
    testpeer_send (peer, PROTO_RESULT, &body);
}

static void
s_test_chunk (testpeer_t *peer, const char *id, int64_t attempt, const char *lease,
              const char *data)
{
    pack_writer_t *body = pack_writer_new ();
    pack_put_str (body, "id", id);
    pack_put_int (body, "attempt", attempt);
    pack_put_str (body, "lease", lease);
    pack_put_int (body, "index", 0);
    pack_put_str (body, "data", data);
    testpeer_send (peer, PROTO_CHUNK, &body);
}

// s_test_worker returns the broker's state of the worker with key.
static remote_worker_t *
s_test_worker (test_rig_t *rig, const char *key)
{
    return workers_by_key (rig->broker->workers, key);
}

// s_test_peers covers issue 10 #3: peers on the broker's sockets are not
// trusted with other peers' leases, internal work, unbounded credit, or
// other tenants' jobs.
static void
s_test_peers (void)
{
    test_rig_t rig;
    s_test_rig (&rig, "broker-test-peers", "");
    testpeer_t *worker = testpeer_new (ZMQ_DEALER, rig.config->broker_backend);
    testpeer_t *forger = testpeer_new (ZMQ_DEALER, rig.config->broker_backend);
    testpeer_t *stranger = testpeer_new (ZMQ_DEALER, rig.config->broker_backend);
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
    proto_msg_t *reconnect = testpeer_expect (stranger, rig.loop, PROTO_RECONNECT);
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
    testpeer_t *reconnected = testpeer_new (ZMQ_DEALER, rig.config->broker_backend);
    s_test_ready (reconnected, 1, 2, "w1");
    testpeer_run (rig.loop, 20);
    s_test_report (worker, moved, moved_attempt, moved_lease, "succeeded", "{\"status\":200}", NULL);
    job = s_test_job (&rig, moved, "a", NULL, NULL);
    assert (job && job->status == JOB_SUCCEEDED);
    job_destroy (&job);
    assert (s_test_worker (&rig, "w1")->running.count == 1);
    testpeer_t *old_socket = worker;
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
    testpeer_t *greedy = testpeer_new (ZMQ_DEALER, rig.config->broker_backend);
    s_test_ready (greedy, INT64_MAX, INT64_MAX, "greedy");
    testpeer_run (rig.loop, 20);
    assert (s_test_worker (&rig, "greedy")->credit == CONFIG_WORKER_CONCURRENCY_MAX);
    pack_writer_t *body = pack_writer_new ();
    pack_put_int (body, "credit", INT64_MAX);
    testpeer_send (greedy, PROTO_CREDIT, &body);
    s_test_ready (forger, 5, 2, "w2");
    testpeer_run (rig.loop, 20);
    assert (s_test_worker (&rig, "greedy")->credit == CONFIG_WORKER_CONCURRENCY_MAX);
    assert (s_test_worker (&rig, "w2")->credit == 2);
    body = pack_writer_new ();
    pack_put_int (body, "credit", 1LL << 62);
    testpeer_send (forger, PROTO_CREDIT, &body);
    s_test_report (forger, id, 99, lease, "succeeded", forged, NULL);
    testpeer_run (rig.loop, 20);
    assert (s_test_worker (&rig, "w2")->credit == 2);
    s_test_ready (greedy, -5, -5, "greedy");
    testpeer_run (rig.loop, 20);
    assert (s_test_worker (&rig, "greedy")->credit == 0);
    // A worker's HEARTBEAT figures (revision 4) are kept for the metrics,
    // negative ones as 0; a HEARTBEAT without them (revision 3) changes
    // nothing.
    body = pack_writer_new ();
    pack_put_int (body, "running", 1);
    pack_put_int (body, "cpu_ms", 1500);
    pack_put_int (body, "rss_bytes", 4096);
    pack_put_int (body, "open_fds", -7);
    pack_put_int (body, "started_at", 1700000000000);
    testpeer_send (greedy, PROTO_HEARTBEAT, &body);
    testpeer_run (rig.loop, 20);
    worker_figures_t figures = s_test_worker (&rig, "greedy")->figures;
    assert (figures.cpu_ms == 1500 && figures.rss_bytes == 4096 && figures.open_fds == 0
            && figures.started_at_ms == 1700000000000 && figures.running == 1);
    body = pack_writer_new ();
    pack_put_int (body, "running", 0);
    testpeer_send (greedy, PROTO_HEARTBEAT, &body);
    testpeer_run (rig.loop, 20);
    assert (s_test_worker (&rig, "greedy")->figures.cpu_ms == 1500);
    char *metrics = broker_metrics (rig.broker, NULL);
    assert (metrics_text_has (metrics, "jobgate_worker_cpu_seconds_total{worker=\"greedy\"} 1.5"));
    assert (metrics_text_has (metrics, "jobgate_worker_open_fds{worker=\"greedy\"} 0"));
    assert (metrics_text_has (metrics, "jobgate_worker_in_flight{worker=\"w1\"} 0"));
    free (metrics);

    // Every socket refuses frames over broker.max_frame_bytes.
    assert (zsock_maxmsgsize (rig.broker->frontend) == 200000);
    assert (zsock_maxmsgsize (rig.broker->backend) == 200000);
    assert (zsock_maxmsgsize (rig.broker->publisher) == 200000);

    testpeer_destroy (&greedy);
    testpeer_destroy (&old_socket);
    testpeer_destroy (&worker);
    testpeer_destroy (&forger);
    testpeer_destroy (&stranger);
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
    testpeer_t *worker = testpeer_new (ZMQ_DEALER, rig.config->broker_backend);
    s_test_ready (worker, 2, 2, "w1");
    testpeer_t *events = testpeer_new (ZMQ_SUB, rig.config->broker_publisher);
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
        testpeer_run (rig.loop, 5);
        s_test_ask (&rig, PROTO_CANCEL, id, "a");
        assert (s_test_answer (&rig, NULL, NULL) == PROTO_JOB);
        proto_msg_t *cancel = testpeer_expect (worker, rig.loop, PROTO_CANCEL);
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
        testpeer_run (rig.loop, 5);
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
    const char *chunk = testpeer_events (events, id);
    while ((chunk = strstr (chunk, "chunk/")) != NULL && chunk_count < 16) {
        chunk += strlen ("chunk/");
        chunk_attempts[chunk_count++] = strtoll (chunk, NULL, 10);
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

    testpeer_destroy (&events);
    testpeer_destroy (&worker);
    s_test_rig_end (&rig);
}

// s_test_count_dispatched reads the worker's next count DISPATCHes and
// returns how many are of tenant.
static int
s_test_count_dispatched (test_rig_t *rig, testpeer_t *worker, int count, const char *tenant)
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
    testpeer_t *worker = testpeer_new (ZMQ_DEALER, rig.config->broker_backend);
    s_test_ready (worker, 4, 8, "w1");
    // b's runs; a holds its max_running of 2, not the other three slots.
    assert (s_test_count_dispatched (&rig, worker, 3, "a") == 2);
    testpeer_quiet (worker, rig.loop, 50);

    // Direct calls: three at once at most, whatever the credit.
    pack_writer_t *body = pack_writer_new ();
    pack_put_int (body, "credit", 4);
    testpeer_send (worker, PROTO_CREDIT, &body);
    testpeer_quiet (worker, rig.loop, 50);
    for (int i = 0; i < 5; i++)
        s_test_accepted (&rig, "d", NULL, 5, "{\"request\":{\"url\":\"http://127.0.0.1:9/\"}}", id);
    assert (s_test_count_dispatched (&rig, worker, 3, "d") == 3);
    testpeer_quiet (worker, rig.loop, 50);
    testpeer_destroy (&worker);
    s_test_rig_end (&rig);

    // Without running limits, tenants take turns: x's priority-9 flood and
    // y's priority-0 jobs share the four slots two and two.
    s_test_rig (&rig, "broker-test-turns", "");
    for (int i = 0; i < 6; i++)
        s_test_accepted (&rig, "x", "p", 9, NULL, id);
    for (int i = 0; i < 2; i++)
        s_test_accepted (&rig, "y", "p", 0, NULL, id);
    worker = testpeer_new (ZMQ_DEALER, rig.config->broker_backend);
    s_test_ready (worker, 4, 4, "w2");
    assert (s_test_count_dispatched (&rig, worker, 4, "y") == 2);
    testpeer_destroy (&worker);
    s_test_rig_end (&rig);
}

// s_test_fallback_dispatched reads a worker's next DISPATCH, which must be
// attempt of job id, calling via with model (each NULL: absent).
static void
s_test_fallback_dispatched (test_rig_t *rig, testpeer_t *worker, const char *id,
                            int64_t attempt, const char *via, const char *model, char *lease)
{
    proto_msg_t *msg = testpeer_expect (worker, rig->loop, PROTO_DISPATCH);
    assert (msg);
    job_t *job = job_unpack (msg->body);
    assert (job && strcmp (job->id, id) == 0 && job->attempt_seq == attempt);
    snprintf (lease, LEASE_TOKEN_LEN + 1, "%s", job->lease);
    char *sent_via = pack_get_strdup (msg->body, "via");
    char *sent_model = pack_get_strdup (msg->body, "model");
    assert (via ? sent_via && strcmp (sent_via, via) == 0 : !sent_via);
    assert (model ? sent_model && strcmp (sent_model, model) == 0 : !sent_model);
    free (sent_via);
    free (sent_model);
    job_destroy (&job);
    proto_msg_destroy (&msg);
}

// s_test_fallbacks: a DISPATCH names the fallback an attempt calls and the
// model it sends (docs/protocol.md §3.2.2); the job names who answered.
static void
s_test_fallbacks (void)
{
    test_rig_t rig;
    s_test_rig_with (&rig, "broker-test-fallback",
                     "\"p\":{\"base_url\":\"http://127.0.0.1:9\",\"circuit_failures\":1,"
                     "\"circuit_open_ms\":60000,\"fallback\":[\"b\"]},"
                     "\"b\":{\"base_url\":\"http://127.0.0.1:9\",\"models\":[\"b-model\"]}", "");
    const char *spec = "{\"request\":{\"model\":\"p-model\",\"messages\":[]}}";
    char id[JOB_ID_LEN + 1], second[JOB_ID_LEN + 1], lease[LEASE_TOKEN_LEN + 1];
    s_test_submit (&rig, "t", "llm", "p", 5, spec, NULL, id);
    assert (s_test_answer (&rig, NULL, NULL) == PROTO_SUBMIT_OK);
    testpeer_t *worker = testpeer_new (ZMQ_DEALER, rig.config->broker_backend);
    s_test_ready (worker, 2, 2, "w");
    // Its own provider first; it fails (the breaker opens): the next
    // attempt calls b, with b's model, at once.
    s_test_fallback_dispatched (&rig, worker, id, 1, NULL, NULL, lease);
    s_test_report (worker, id, 1, lease, "retry", NULL, "{\"type\":\"connect_failed\"}");
    s_test_fallback_dispatched (&rig, worker, id, 2, "b", "b-model", lease);
    s_test_report (worker, id, 2, lease, "succeeded", "{\"status\":200}", NULL);
    testpeer_quiet (worker, rig.loop, 50);
    job_t *job = s_test_job (&rig, id, "t", NULL, NULL);
    assert (job && job->status == JOB_SUCCEEDED && strcmp (job->answered_by, "b") == 0);
    job_destroy (&job);
    // While p's breaker is open, its jobs' first attempts call b.
    s_test_submit (&rig, "t", "llm", "p", 5, spec, NULL, second);
    assert (s_test_answer (&rig, NULL, NULL) == PROTO_SUBMIT_OK);
    s_test_fallback_dispatched (&rig, worker, second, 1, "b", "b-model", lease);
    testpeer_destroy (&worker);
    s_test_rig_end (&rig);
}

// s_test_webhook_state reads job id as tenant and checks the state of its
// callback's delivery (the job object's "webhook"): that delivery's, in
// state, after attempts, the last answered last_status (0: none). Returns
// the job (the caller destroys it).
static job_t *
s_test_webhook_state (test_rig_t *rig, const char *id, const char *tenant,
                      const char *delivery_id, const char *state, int attempts, int last_status)
{
    int64_t code;
    job_t *job = s_test_job (rig, id, tenant, NULL, &code);
    assert (job && job->webhook);
    json_t *webhook = jsontext_loads (job->webhook, NULL);
    assert (strcmp (json_string_value (json_object_get (webhook, "id")), delivery_id) == 0);
    assert (strcmp (json_string_value (json_object_get (webhook, "state")), state) == 0);
    assert (json_integer_value (json_object_get (webhook, "attempts")) == attempts);
    json_t *status = json_object_get (webhook, "last_status");
    assert (last_status ? json_integer_value (status) == last_status : json_is_null (status));
    json_decref (webhook);
    return job;
}

// s_test_stats asks the broker for the dashboard's figures (STATS).
static json_t *
s_test_stats (test_rig_t *rig)
{
    pack_writer_t *body = pack_writer_new ();
    pack_put_int (body, "corr", ++rig->corr);
    testpeer_send (rig->gateway, PROTO_STATS, &body);
    proto_msg_t *msg = testpeer_expect (rig->gateway, rig->loop, PROTO_STATS_OK);
    assert (msg);
    int64_t corr = 0;
    assert (pack_get_int (msg->body, "corr", &corr) == 0 && corr == rig->corr);
    size_t len = 0;
    const char *text = pack_get_str (msg->body, "json", &len);
    json_t *stats = text ? jsontext_load (text, len, NULL) : NULL;
    assert (json_is_object (stats));
    proto_msg_destroy (&msg);
    return stats;
}

// s_test_stats_total sums series name of the figures' throughput.
static json_int_t
s_test_stats_total (json_t *stats, const char *name)
{
    json_t *series = json_object_get (json_object_get (json_object_get (stats, "throughput"),
                                                       "series"), name);
    assert (json_array_size (series) == THROUGHPUT_INTERVALS);
    json_int_t total = 0;
    size_t index;
    json_t *count;
    json_array_foreach (series, index, count)
        total += json_integer_value (count);
    return total;
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
    testpeer_t *worker = testpeer_new (ZMQ_DEALER, rig.config->broker_backend);
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
    assert (strcmp (delivery->tenant, TENANT_WEBHOOK_PREFIX "c") == 0);
    json_t *spec = jsontext_loads (delivery->spec, NULL);
    // The Standard Webhooks envelope, the job object as its data.
    json_t *payload = json_object_get (json_object_get (spec, "request"), "payload");
    assert (strcmp (json_string_value (json_object_get (payload, "type")), "job.succeeded") == 0);
    json_t *data = json_object_get (payload, "data");
    assert (strcmp (json_string_value (json_object_get (data, "id")), id) == 0);
    json_t *body_n = json_object_get (json_object_get (json_object_get (data, "result"), "body"), "n");
    assert (json_string_length (body_n) == 3);
    json_decref (spec);
    // The job shows its delivery pending, not yet tried.
    int64_t code, retry_after;
    job_t *seen = s_test_webhook_state (&rig, id, "c", delivery->id, "pending", 0, 0);
    job_destroy (&seen);
    char other[JOB_ID_LEN + 1];
    s_test_accepted (&rig, "c", "p", 5, NULL, other);
    s_test_submit (&rig, "c", "http", "p", 5, NULL, NULL, other);
    assert (s_test_answer (&rig, &code, &retry_after) == PROTO_ERROR && code == 429 && retry_after > 0);
    assert (s_test_job (&rig, delivery->id, "c", NULL, &code) == NULL && code == 404);
    // Nor can a frontend peer naming the internal tenant read, cancel or
    // retry it (docs/protocol.md §7: a gateway never acts for '#' tenants).
    assert (s_test_job (&rig, delivery->id, TENANT_WEBHOOK_PREFIX "c", NULL, &code) == NULL
            && code == 404);
    s_test_ask (&rig, PROTO_CANCEL, delivery->id, TENANT_WEBHOOK_PREFIX "c");
    assert (s_test_answer (&rig, &code, NULL) == PROTO_ERROR && code == 404);
    s_test_ask (&rig, PROTO_RETRY, delivery->id, TENANT_WEBHOOK_PREFIX "c");
    assert (s_test_answer (&rig, &code, NULL) == PROTO_ERROR && code == 404);
    // Nor list them.
    pack_writer_t *list = pack_writer_new ();
    pack_put_int (list, "corr", ++rig.corr);
    pack_put_str (list, "tenant", TENANT_WEBHOOK_PREFIX "c");
    pack_put_int (list, "limit", 10);
    testpeer_send (rig.gateway, PROTO_LIST, &list);
    assert (s_test_answer (&rig, &code, NULL) == PROTO_ERROR && code == 400);
    s_test_report (worker, delivery->id, attempt, lease, "succeeded", "{\"status\":204}", NULL);
    testpeer_run (rig.loop, 20);
    seen = s_test_webhook_state (&rig, id, "c", delivery->id, "delivered", 1, 204);
    job_destroy (&seen);
    job_destroy (&delivery);
    s_test_accepted (&rig, "c", "p", 5, NULL, other);
    const uint64_t *counts = jobs_delivery_counts (rig.broker->jobs);
    assert (counts[DELIVERY_OUTCOME_DELIVERED] == 1 && counts[DELIVERY_OUTCOME_RETRIED] == 0);

    // The dashboard's figures count the clients' jobs as their versions
    // were committed: three accepted (the refused one is not), one
    // succeeded — the webhook delivery's success is the broker's own work.
    json_t *stats = s_test_stats (&rig);
    assert (s_test_stats_total (stats, "submitted") == 3);
    assert (s_test_stats_total (stats, "succeeded") == 1);
    assert (s_test_stats_total (stats, "failed") == 0);
    json_t *workers = json_object_get (stats, "workers");
    assert (json_array_size (workers) == 1 && json_integer_value (json_object_get (stats, "workers_live")) == 1);
    assert (strcmp (json_string_value (json_object_get (json_array_get (workers, 0), "worker")), "w2") == 0);
    json_decref (stats);


    testpeer_destroy (&worker);
    s_test_rig_end (&rig);
}

// s_test_webhook_retries: a delivery that fails shows on its job how it
// goes, attempt by attempt, until it gives up; the outcomes are counted.
static void
s_test_webhook_retries (void)
{
    test_rig_t rig;
    s_test_rig (&rig, "broker-test-hook-retries", "\"webhooks\":{\"max_attempts\":2}");
    testpeer_t *worker = testpeer_new (ZMQ_DEALER, rig.config->broker_backend);
    s_test_ready (worker, 1, 1, "w3");
    char id[JOB_ID_LEN + 1];
    int64_t attempt;
    char lease[LEASE_TOKEN_LEN + 1];
    // A delivery answered 500 is retried: the job shows the status, the
    // error and when the next attempt is due; the last failure gives up.
    s_test_accepted (&rig, "d", "p", 5,
                     "{\"request\":{\"path\":\"/json\"},\"callback\":{\"url\":\"http://127.0.0.1:9/h\"}}",
                     id);
    job_t *job = s_test_dispatched (&rig, worker, &attempt, lease);
    job_destroy (&job);
    s_test_report (worker, id, attempt, lease, "failed", NULL,
                   "{\"type\":\"upstream_status\",\"upstream_status\":404}");
    job_t *delivery = s_test_dispatched (&rig, worker, &attempt, lease);
    assert (strcmp (delivery->kind, "webhook") == 0);
    json_t *spec = jsontext_loads (delivery->spec, NULL);
    json_t *payload = json_object_get (json_object_get (spec, "request"), "payload");
    assert (strcmp (json_string_value (json_object_get (payload, "type")), "job.failed") == 0);
    json_decref (spec);
    s_test_report (worker, delivery->id, attempt, lease, "retry", NULL,
                   "{\"type\":\"upstream_status\",\"upstream_status\":500}");
    testpeer_run (rig.loop, 20);
    job_t *reported = s_test_webhook_state (&rig, id, "d", delivery->id, "pending", 1, 500);
    json_t *state = jsontext_loads (reported->webhook, NULL);
    assert (strcmp (json_string_value (json_object_get (state, "last_error")), "upstream_status") == 0);
    assert (json_is_string (json_object_get (state, "next_attempt_at")));
    json_decref (state);
    job_destroy (&reported);
    const uint64_t *counts = jobs_delivery_counts (rig.broker->jobs);
    assert (counts[DELIVERY_OUTCOME_RETRIED] == 1);
    job_destroy (&delivery);
    delivery = s_test_dispatched (&rig, worker, &attempt, lease);
    s_test_report (worker, delivery->id, attempt, lease, "retry", NULL,
                   "{\"type\":\"connect_failed\"}");
    testpeer_run (rig.loop, 20);
    reported = s_test_webhook_state (&rig, id, "d", delivery->id, "given_up", 2, 0);
    state = jsontext_loads (reported->webhook, NULL);
    assert (strcmp (json_string_value (json_object_get (state, "last_error")), "connect_failed") == 0);
    assert (json_is_null (json_object_get (state, "next_attempt_at")));
    json_decref (state);
    job_destroy (&reported);
    job_destroy (&delivery);
    assert (counts[DELIVERY_OUTCOME_GIVEN_UP] == 1 && counts[DELIVERY_OUTCOME_DELIVERED] == 0);
    testpeer_destroy (&worker);
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
    testpeer_t *worker = testpeer_new (ZMQ_DEALER, rig.config->broker_backend);
    s_test_ready (worker, 2, 2, "w1");
    char first[JOB_ID_LEN + 1], second[JOB_ID_LEN + 1];
    s_test_accepted (&rig, "e", "p", 5, NULL, first);
    int64_t attempt, code, retry_after;
    char lease[LEASE_TOKEN_LEN + 1];
    job_destroy (&(job_t *) { s_test_dispatched (&rig, worker, &attempt, lease) });
    s_test_report (worker, first, attempt, lease, "failed", "{\"status\":400}",
                   "{\"type\":\"upstream_status\",\"upstream_status\":400}");
    testpeer_run (rig.loop, 20);
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
    assert (retry_after == ADMIT_STORED_RETRY_MS);
    testpeer_destroy (&worker);
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
    testpeer_t *worker = testpeer_new (ZMQ_DEALER, rig.config->broker_backend);
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
    testpeer_run (rig.loop, 300);
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
    testpeer_run (rig.loop, 1300);
    job = store_get (store, done);
    assert (job == NULL);
    // After STORE_DEGRADE_MS the big result is dropped and the job's state
    // written: nothing waits for space forever.
    for (int round = 0; round < 80 && store_pending_has (store, big); round++)
        testpeer_run (rig.loop, 50);
    job = s_test_job (&rig, big, "a", NULL, NULL);
    assert (job && job->status == JOB_SUCCEEDED && !job->result);
    assert (strstr (job->error, "result_not_stored"));
    job_destroy (&job);
    assert (!store_pending_has (store, big) && !rig.broker->commit_failing);
    // And new work is taken again.
    store_inject_map_full (store, SIZE_MAX);
    s_test_accepted (&rig, "a", "p", 5, NULL, id);

    testpeer_destroy (&worker);
    s_test_rig_end (&rig);
}

// s_test_second_attempt finishes job id with the result of its second
// attempt, after its first was lost and its late result discarded: the job
// succeeds with that result, both attempts counted, and a subscriber saw
// the lost attempt go back into the queue.
static void
s_test_second_attempt (test_rig_t *rig, testpeer_t *events, testpeer_t *worker, const char *id,
                       int64_t attempt, const char *lease)
{
    assert (attempt == 2);
    s_test_report (worker, id, attempt, lease, "succeeded", "{\"status\":200,\"body\":\"kept\"}",
                   NULL);
    job_t *job = s_test_job (rig, id, "a", NULL, NULL);
    assert (job && job->status == JOB_SUCCEEDED && strstr (job->result, "kept"));
    assert (job->attempts == 2 && job->attempt_seq == 2);
    job_destroy (&job);
    testpeer_expect_events (events, id, "queued/0 running/1 queued/1 running/2 succeeded/2");
}

// s_test_handback: a draining worker hands a job back. It is requeued
// first (before a job that waited), the attempt is not counted, "queued" is
// published, and it runs on another worker.
static void
s_test_handback (void)
{
    test_rig_t rig;
    s_test_rig (&rig, "broker-test-handback", "");
    testpeer_t *events = testpeer_new (ZMQ_SUB, rig.config->broker_publisher);
    testpeer_t *draining = testpeer_new (ZMQ_DEALER, rig.config->broker_backend);
    s_test_ready (draining, 1, 1, "w1");
    char first[JOB_ID_LEN + 1], second[JOB_ID_LEN + 1];
    s_test_accepted (&rig, "a", "p", 5, NULL, first);
    int64_t attempt;
    char lease[LEASE_TOKEN_LEN + 1];
    job_t *job = s_test_dispatched (&rig, draining, &attempt, lease);
    assert (strcmp (job->id, first) == 0 && attempt == 1 && job->attempts == 1);
    job_destroy (&job);
    s_test_accepted (&rig, "a", "p", 5, NULL, second);
    testpeer_send (draining, PROTO_DISCONNECT, &(pack_writer_t *) { pack_writer_new () });
    s_test_report (draining, first, attempt, lease, "handback", NULL,
                   "{\"type\":\"worker_draining\",\"message\":\"the worker is draining\"}");
    testpeer_quiet (draining, rig.loop, 20);
    job = s_test_job (&rig, first, "a", NULL, NULL);
    assert (job && job->status == JOB_QUEUED && job->attempts == 0 && !job->result);
    job_destroy (&job);

    testpeer_t *worker = testpeer_new (ZMQ_DEALER, rig.config->broker_backend);
    s_test_ready (worker, 1, 1, "w2");
    job = s_test_dispatched (&rig, worker, &attempt, lease);
    assert (strcmp (job->id, first) == 0 && attempt == 2 && job->attempts == 1);
    job_destroy (&job);
    s_test_report (worker, first, attempt, lease, "succeeded", "{\"status\":200}", NULL);
    job = s_test_dispatched (&rig, worker, &attempt, lease);
    assert (strcmp (job->id, second) == 0);
    job_destroy (&job);
    job = s_test_job (&rig, first, "a", NULL, NULL);
    assert (job && job->status == JOB_SUCCEEDED && job->attempts == 1 && job->attempt_seq == 2);
    job_destroy (&job);
    testpeer_expect_events (events, first, "queued/0 running/1 queued/0 running/1 succeeded/1");

    testpeer_destroy (&worker);
    testpeer_destroy (&draining);
    testpeer_destroy (&events);
    s_test_rig_end (&rig);
}

// s_test_leases: an attempt running past its lease (its timeout and the
// grace, 300 ms here) is lost: requeued with the attempt counted, "queued"
// published, and run again. The lost attempt's RESULT, arriving late with
// its own valid token, is discarded (its credit comes back); the new
// attempt's is the one kept.
static void
s_test_leases (void)
{
    test_rig_t rig;
    s_test_rig (&rig, "broker-test-leases", "");
    broker_set_timing (rig.broker, 300, 3000);
    testpeer_t *events = testpeer_new (ZMQ_SUB, rig.config->broker_publisher);
    testpeer_t *worker = testpeer_new (ZMQ_DEALER, rig.config->broker_backend);
    s_test_ready (worker, 2, 2, "w1");
    job_t *job = s_test_job_new ("a", "http", "p", 5, NULL, NULL);
    job->timeout_ms = 500;
    char id[JOB_ID_LEN + 1];
    strcpy (id, job->id);
    s_test_send_job (&rig, &job);
    assert (s_test_answer (&rig, NULL, NULL) == PROTO_SUBMIT_OK);
    int64_t lost_attempt, attempt;
    char lost_lease[LEASE_TOKEN_LEN + 1], lease[LEASE_TOKEN_LEN + 1];
    job = s_test_dispatched (&rig, worker, &lost_attempt, lost_lease);
    assert (lost_attempt == 1);
    job_destroy (&job);
    // The worker says nothing: 800 ms later the lease is over.
    job = s_test_dispatched (&rig, worker, &attempt, lease);
    assert (strcmp (job->id, id) == 0 && attempt == 2 && job->attempts == 2);
    job_destroy (&job);
    assert (s_test_worker (&rig, "w1")->credit == 0);
    s_test_report (worker, id, lost_attempt, lost_lease, "succeeded",
                   "{\"status\":200,\"body\":\"late\"}", NULL);
    job = s_test_job (&rig, id, "a", NULL, NULL);
    assert (job && job->status == JOB_RUNNING && !job->result);
    job_destroy (&job);
    assert (s_test_worker (&rig, "w1")->credit == 1);
    s_test_second_attempt (&rig, events, worker, id, attempt, lease);

    testpeer_destroy (&worker);
    testpeer_destroy (&events);
    s_test_rig_end (&rig);
}

// s_test_silence: a worker silent past the liveness (400 ms here) is dead:
// its attempts are requeued, counted, and run on another worker. What it
// sends later comes from a peer the broker does not know: answered
// RECONNECT, its result discarded.
static void
s_test_silence (void)
{
    test_rig_t rig;
    s_test_rig (&rig, "broker-test-silence", "");
    broker_set_timing (rig.broker, 10000, 400);
    testpeer_t *events = testpeer_new (ZMQ_SUB, rig.config->broker_publisher);
    testpeer_t *silent = testpeer_new (ZMQ_DEALER, rig.config->broker_backend);
    s_test_ready (silent, 1, 1, "w1");
    char id[JOB_ID_LEN + 1];
    s_test_accepted (&rig, "a", "p", 5, NULL, id);
    int64_t lost_attempt, attempt;
    char lost_lease[LEASE_TOKEN_LEN + 1], lease[LEASE_TOKEN_LEN + 1];
    job_destroy (&(job_t *) { s_test_dispatched (&rig, silent, &lost_attempt, lost_lease) });
    job_t *job = NULL;
    for (int round = 0; round < 100; round++) {
        job = s_test_job (&rig, id, "a", NULL, NULL);
        if (job->status == JOB_QUEUED)
            break;
        job_destroy (&job);
        testpeer_run (rig.loop, 20);
    }
    assert (job && job->status == JOB_QUEUED && job->attempts == 1);
    job_destroy (&job);
    assert (!s_test_worker (&rig, "w1"));

    testpeer_t *worker = testpeer_new (ZMQ_DEALER, rig.config->broker_backend);
    s_test_ready (worker, 1, 1, "w2");
    job = s_test_dispatched (&rig, worker, &attempt, lease);
    assert (attempt == 2 && job->attempts == 2);
    job_destroy (&job);
    s_test_report (silent, id, lost_attempt, lost_lease, "succeeded",
                   "{\"status\":200,\"body\":\"late\"}", NULL);
    proto_msg_destroy (&(proto_msg_t *) { testpeer_expect (silent, rig.loop, PROTO_RECONNECT) });
    s_test_second_attempt (&rig, events, worker, id, attempt, lease);

    testpeer_destroy (&worker);
    testpeer_destroy (&silent);
    testpeer_destroy (&events);
    s_test_rig_end (&rig);
}

// s_test_unsent: a DISPATCH that cannot be sent (its worker vanished
// without a word) did not start. The job goes back first, the attempt not
// counted, with a "queued" event like every way back into the queue (this
// path once published none, leaving subscribers with a stale "running"),
// and the worker is forgotten.
static void
s_test_unsent (void)
{
    test_rig_t rig;
    s_test_rig (&rig, "broker-test-unsent", "");
    testpeer_t *events = testpeer_new (ZMQ_SUB, rig.config->broker_publisher);
    testpeer_t *ghost = testpeer_new (ZMQ_DEALER, rig.config->broker_backend);
    s_test_ready (ghost, 1, 1, "ghost");
    for (int round = 0; round < 300 && !s_test_worker (&rig, "ghost"); round++)
        testpeer_run (rig.loop, 10);
    zframe_t *identity = zframe_dup (s_test_worker (&rig, "ghost")->identity);
    testpeer_destroy (&ghost);
    // Until the backend has noticed the peer gone, a send to it succeeds.
    pack_writer_t *probe = pack_writer_new ();
    int round = 0;
    while (round++ < 300 && proto_send (rig.broker->backend, identity, PROTO_HEARTBEAT, probe) == 0)
        testpeer_run (rig.loop, 10);
    assert (round < 300);
    pack_writer_destroy (&probe);
    zframe_destroy (&identity);

    char id[JOB_ID_LEN + 1];
    s_test_accepted (&rig, "a", "p", 5, NULL, id);
    job_t *job = s_test_job (&rig, id, "a", NULL, NULL);
    assert (job && job->status == JOB_QUEUED && job->attempts == 0 && job->attempt_seq == 1);
    job_destroy (&job);
    assert (!s_test_worker (&rig, "ghost"));
    testpeer_t *worker = testpeer_new (ZMQ_DEALER, rig.config->broker_backend);
    s_test_ready (worker, 1, 1, "w1");
    int64_t attempt;
    char lease[LEASE_TOKEN_LEN + 1];
    job = s_test_dispatched (&rig, worker, &attempt, lease);
    assert (attempt == 2 && job->attempts == 1);
    job_destroy (&job);
    s_test_report (worker, id, attempt, lease, "succeeded", "{\"status\":200}", NULL);
    job = s_test_job (&rig, id, "a", NULL, NULL);
    assert (job && job->status == JOB_SUCCEEDED && job->attempts == 1);
    job_destroy (&job);
    testpeer_expect_events (events, id, "queued/0 running/1 queued/0 running/1 succeeded/1");

    testpeer_destroy (&worker);
    testpeer_destroy (&events);
    s_test_rig_end (&rig);
}

// s_test_cache_refused: a hit answers at once (SUBMIT_OK says succeeded);
// one whose batch cannot be committed is refused with the delivery of its
// callback, so no webhook reports a job its client was told was not
// accepted.
static void
s_test_cache_refused (void)
{
    test_rig_t rig;
    s_test_rig (&rig, "broker-test-cache", "");
    testpeer_t *worker = testpeer_new (ZMQ_DEALER, rig.config->broker_backend);
    s_test_ready (worker, 1, 1, "w3");
    const char *spec = "{\"request\":{\"path\":\"/c\"},\"cache\":{\"ttl_ms\":60000}}";
    const char *hooked = "{\"request\":{\"path\":\"/c\"},\"cache\":{\"ttl_ms\":60000},"
                         "\"callback\":{\"url\":\"http://127.0.0.1:9/hook\"}}";
    char id[JOB_ID_LEN + 1], hit[JOB_ID_LEN + 1];
    int64_t attempt, code;
    char lease[LEASE_TOKEN_LEN + 1];
    s_test_accepted (&rig, "a", "p", 5, spec, id);
    job_destroy (&(job_t *) { s_test_dispatched (&rig, worker, &attempt, lease) });
    s_test_report (worker, id, attempt, lease, "succeeded", "{\"status\":200}", NULL);
    testpeer_run (rig.loop, 20);
    s_test_submit (&rig, "a", "http", "p", 5, spec, NULL, hit);
    proto_msg_t *answer = testpeer_expect (rig.gateway, rig.loop, PROTO_SUBMIT_OK);
    char *status = pack_get_strdup (answer->body, "status");
    assert (status && strcmp (status, "succeeded") == 0);
    free (status);
    proto_msg_destroy (&answer);

    store_inject_map_full (rig.broker->store, 0);
    s_test_submit (&rig, "a", "http", "p", 5, hooked, NULL, hit);
    assert (s_test_answer (&rig, &code, NULL) == PROTO_ERROR && code == 503);
    store_inject_map_full (rig.broker->store, SIZE_MAX);
    testpeer_run (rig.loop, 100);
    assert (s_test_job (&rig, hit, "a", NULL, &code) == NULL && code == 404);
    assert (jobs_active (rig.broker->jobs) == 0);
    testpeer_destroy (&worker);
    s_test_rig_end (&rig);
}

// s_test_numbered sends a RESULT numbered seq (revision 4), succeeded.
static void
s_test_numbered (testpeer_t *peer, const char *id, int64_t attempt, const char *lease,
                 int64_t seq)
{
    pack_writer_t *body = pack_writer_new ();
    pack_put_str (body, "id", id);
    pack_put_int (body, "attempt", attempt);
    pack_put_str (body, "lease", lease);
    pack_put_int (body, "seq", seq);
    pack_put_str (body, "outcome", "succeeded");
    pack_put_str (body, "result", "{\"status\":200}");
    pack_put_int (body, "retry_after_ms", 0);
    testpeer_send (peer, PROTO_RESULT, &body);
}

// s_test_expect_ack receives an ACK and checks its run.
static void
s_test_expect_ack (test_rig_t *rig, testpeer_t *worker, int64_t seq, int64_t count)
{
    proto_msg_t *ack = testpeer_expect (worker, rig->loop, PROTO_ACK);
    int64_t got_seq = 0, got_count = 0;
    assert (ack && pack_get_int (ack->body, "seq", &got_seq) == 0 && got_seq == seq);
    assert (pack_get_int (ack->body, "count", &got_count) == 0 && got_count == count);
    proto_msg_destroy (&ack);
}

// s_test_acks covers docs/protocol.md §3.2.4: a numbered RESULT is
// acknowledged only after a commit has made what it changed durable (not
// while the store cannot commit); a resent or refused one is acknowledged
// too; an unnumbered one (revision 3) never.
static void
s_test_acks (void)
{
    test_rig_t rig;
    s_test_rig (&rig, "broker-test-acks", "");
    testpeer_t *worker = testpeer_new (ZMQ_DEALER, rig.config->broker_backend);
    s_test_ready (worker, 2, 2, "w-acks");
    char id[JOB_ID_LEN + 1], other[JOB_ID_LEN + 1];
    int64_t attempt, code;
    char lease[LEASE_TOKEN_LEN + 1];
    s_test_accepted (&rig, "a", "p", 5, NULL, id);
    job_destroy (&(job_t *) { s_test_dispatched (&rig, worker, &attempt, lease) });

    store_inject_map_full (rig.broker->store, 0);
    s_test_numbered (worker, id, attempt, lease, 7);
    testpeer_quiet (worker, rig.loop, 400);
    store_inject_map_full (rig.broker->store, SIZE_MAX);
    s_test_expect_ack (&rig, worker, 7, 1);
    job_t *job = s_test_job (&rig, id, "a", NULL, &code);
    assert (job && job->status == JOB_SUCCEEDED);
    job_destroy (&job);

    // The same RESULT again (a worker's resend) is discarded as late, and
    // acknowledged; so are RESULTs the broker refuses, consecutive ones in
    // one run.
    s_test_numbered (worker, id, attempt, lease, 7);
    s_test_expect_ack (&rig, worker, 7, 1);
    job_id_generate (other);
    s_test_numbered (worker, other, 1, lease, 8);
    s_test_numbered (worker, other, 1, lease, 9);
    s_test_expect_ack (&rig, worker, 8, 2);
    // Revision 3: no number, no ACK.
    s_test_report (worker, id, attempt, lease, "succeeded", "{\"status\":200}", NULL);
    testpeer_quiet (worker, rig.loop, 200);
    testpeer_destroy (&worker);

    // Credit after a broker restart: the worker's READY counts the calls it
    // finished meanwhile as free, so their resent RESULTs (numbered up to
    // READY's result_seq) return no credit; a RESULT sent after it does.
    worker = testpeer_new (ZMQ_DEALER, rig.config->broker_backend);
    s_test_ready (worker, 2, 2, "w-restart");
    s_test_accepted (&rig, "a", "p", 5, NULL, id);
    s_test_accepted (&rig, "a", "p", 5, NULL, other);
    int64_t attempt_b;
    char lease_b[LEASE_TOKEN_LEN + 1];
    job_t *first = s_test_dispatched (&rig, worker, &attempt, lease);
    job_t *second = s_test_dispatched (&rig, worker, &attempt_b, lease_b);
    char id_a[JOB_ID_LEN + 1], id_b[JOB_ID_LEN + 1];
    snprintf (id_a, sizeof id_a, "%s", first->id);
    snprintf (id_b, sizeof id_b, "%s", second->id);
    job_destroy (&first);
    job_destroy (&second);
    testpeer_destroy (&worker);
    testpeer_destroy (&rig.gateway);
    broker_destroy (&rig.broker);
    char error[256];
    rig.broker = broker_new (rig.config, rig.loop, error, sizeof error);
    assert (rig.broker);
    rig.gateway = testpeer_new (ZMQ_DEALER, rig.config->broker_frontend);
    worker = testpeer_new (ZMQ_DEALER, rig.config->broker_backend);
    pack_writer_t *ready = pack_writer_new ();
    pack_put_int (ready, "credit", 1);          // B still runs; A finished meanwhile
    pack_put_int (ready, "concurrency", 2);
    pack_put_str (ready, "worker", "w-restart");
    pack_put_int (ready, "result_seq", 20);     // A's RESULT, 20, went into the outage
    testpeer_send (worker, PROTO_READY, &ready);
    s_test_numbered (worker, id_a, attempt, lease, 20);
    s_test_expect_ack (&rig, worker, 20, 1);
    remote_worker_t *known = s_test_worker (&rig, "w-restart");
    assert (known && known->credit == 1);
    s_test_numbered (worker, id_b, attempt_b, lease_b, 21);
    s_test_expect_ack (&rig, worker, 21, 1);
    assert (known->credit == 2);
    job = s_test_job (&rig, id_a, "a", NULL, &code);
    assert (job && job->status == JOB_SUCCEEDED);
    job_destroy (&job);
    testpeer_destroy (&worker);
    s_test_rig_end (&rig);
}

void
broker_test (bool verbose)
{
    if (verbose)
        printf (" * broker: ");
    log_init ("broker-test", LOG_ERROR_);
    s_test_peers ();
    s_test_attempts ();
    s_test_fairness ();
    s_test_fallbacks ();
    s_test_webhooks ();
    s_test_webhook_retries ();
    s_test_admission ();
    s_test_store_full ();
    s_test_cache_refused ();
    s_test_handback ();
    s_test_leases ();
    s_test_silence ();
    s_test_unsent ();
    s_test_acks ();
    log_init ("broker", LOG_INFO_);
    if (verbose)
        printf ("OK\n");
}
