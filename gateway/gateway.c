#include "gateway.h"
#include "frontdoor.h"
#include "headers.h"
#include "jobcache.h"
#include "jobspec.h"
#include "jsontext.h"
#include "log.h"
#include "problem.h"
#include "proto.h"

#include <arpa/inet.h>
#include <assert.h>
#include <errno.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>

// Longest wait a client may ask for (SPEC §3: ?wait=N ≤ 60 s).
#define MAX_WAIT_S 60
// §5: PING period and how old the last PONG may be for /readyz.
#define PING_MS 1000
#define READY_PONG_AGE_MS 3000
// A waiter parked this long without reading its job reads it again, in case
// an event was lost in a way the sequence numbers cannot show (e.g. a
// reconnecting SUB). Only those: rereading every waiter each period cost a
// GET per parked request (4,000 parked → 400 extra GETs/s).
#define WAITER_RECHECK_MS 10000
// How long a draining gateway waits for requests before it stops anyway.
#define DRAIN_TIMEOUT_MS 10000

typedef enum { OP_NONE, OP_SUBMIT, OP_GET, OP_CANCEL, OP_RETRY, OP_LIST, OP_PROVIDERS,
               OP_BATCH } op_t;

// Jobs in one POST /v1/batch at most (SPEC §3).
#define BATCH_MAX 1000

// Finished jobs the gateway has seen, so reads keep working while the
// broker restarts (issue 3) and cost nothing while it runs; bounded by
// gateway.cache_max_bytes as well (jobcache.h).
#define CACHE_ENTRIES 20000
// The longest request head the front door passes on (431 above); the HTTP
// server's per-connection pool (MHD_OPTION_CONNECTION_MEMORY_LIMIT) holds it.
#define MAX_HEAD_BYTES 8192
#define CONNECTION_MEMORY 16384
// Prefer header lines read at most (RFC 7240 allows several).
#define PREFER_LINES_MAX 8
// The most the HTTP server asks at once of an answer rendered as it is sent
// (a list page): no page is built whole.
#define STREAM_BLOCK (64 * 1024)
// How often an unacknowledged submission is sent again (same job id: the
// broker deduplicates, so a resend never creates a second job).
#define RESEND_MS 1000
#define RESEND_TICK_MS 250

typedef struct _list_stream_t list_stream_t;

typedef struct _request_t request_t;

struct _request_t {
    gateway_t *gateway;             // owner
    request_t *live_prev;           // neighbours among all live requests
    request_t *live_next;
    struct MHD_Connection *connection; // the HTTP connection
    char *body;                     // request body received so far
    size_t body_size;               // bytes in body
    size_t body_capacity;           // allocated bytes
    bool body_too_large;            // over max_body_bytes: discarded
    op_t op;                        // what the request waits for
    uint64_t corr;                  // broker request in flight, 0 = none
    char job_id[JOB_ID_LEN + 1];    // the job concerned
    char *tenant;                   // caller's tenant
    bool is_operator;               // the caller may see internal topology
    bool suspended;                 // MHD connection suspended
    int fd;                         // the connection's socket in MHD, -1 if unknown
    bool resume_queued;             // on the gateway's resume list
    struct _request_t *resume_next; // next on that list
    bool waiting;                   // on the waiters list of job_id
    bool recheck;                   // an event came while a GET was in flight
    int wait_s;                     // requested wait (0 = none)
    bool prefer_wait;               // POST with Prefer: wait=N
    int64_t created_at;             // submitted job's created_at
    int64_t started_ms;             // monotonic time the request was routed
    int64_t checked_ms;             // monotonic time a waiter was parked or
                                    // last read its job
    evloop_timer_t *timer;          // submit timeout or wait deadline
    request_t *wait_prev;           // neighbours among the job's waiters
    request_t *wait_next;
    jobtext_t *last_job;            // last job object seen (rendered), for deadlines
    // The answer, once decided (sent when MHD calls us again after resume).
    bool answered;                  // status and one answer_* hold the response
    unsigned int status;            // HTTP status
    char *answer_body;              // response body
    jobtext_t *answer_job;          // or: a rendered job, sent without a copy
    list_stream_t *answer_list;     // or: a list page, rendered as it is sent
    const char *content_type;       // its type
    bool with_location;             // add Location + Retry-After
    bool preference_applied;        // add Preference-Applied: wait=N
    int retry_after_s;              // Retry-After on 503, 0 = none
    const char *allow;              // Allow header of a 405
    request_t *parent;              // batch item: the POST /v1/batch it belongs to
    size_t batch_index;             // batch item: its position
    request_t **items;              // batch: its items in order (NULL where invalid)
    json_t *item_results;           // batch: the answer per item, null until known
    size_t items_count;             // batch: specs in the batch
    size_t items_pending;           // batch: items the broker has not answered
    bool sse;                       // GET /v1/jobs/{id}/events
    bool sse_started;               // the event stream's 200 is queued
    bool sse_done;                  // the result event is buffered: end after it
    bool sse_behind;                // chunks were held back (buffer full): read
                                    // them again once the client caught up
    jobtext_t *sse_result;          // the result event's data, sent after the buffer
    size_t sse_result_offset;       // bytes of it handed over (+2 for its end)
    char *sse_buffer;               // events not yet handed to MHD
    size_t sse_length;              // bytes in sse_buffer
    size_t sse_offset;              // bytes of it already handed over
    size_t sse_capacity;            // allocated bytes
    int sse_attempt;                // attempt of the last chunk sent
    int64_t sse_index;              // index of the last chunk sent, -1 = none
    char sse_status[16];            // last status event sent
    int sse_status_attempts;        // its attempts
    evloop_timer_t *keepalive;      // keep-alive comment timer
    proto_cmd_t sent_cmd;           // the broker request in flight
    void *sent_data;                // its body, kept for resends
    size_t sent_size;               // its size
    int64_t sent_ms;                // when it was last sent, 0 = never
};

struct _gateway_t {
    const config_t *config;         // borrowed configuration
    evloop_t *loop;                 // borrowed event loop
    frontdoor_t *door;              // listening socket and client connections
    char **hosts;                   // Host names answered (open mode or allowed_hosts)
    size_t hosts_count;             // entries in hosts; 0 = any Host
    struct MHD_Daemon *daemon;      // the HTTP server
    int mhd_epoll_fd;               // its epoll fd, watched by our loop
    evloop_timer_t *mhd_timer;      // MHD's own timeouts
    bool mhd_run_needed;            // a connection was resumed
    request_t *resume_list;         // answered requests still suspended
    size_t suspended_count;         // connections suspended in MHD
    int64_t last_resume_ms;         // monotonic time of the last resume batch
    evloop_timer_t *resume_timer;   // wakes the loop for the next batch
    zsock_t *broker;                // DEALER to the broker frontend
    proto_batch_t *outbox;          // requests of this loop iteration, sent
                                    // as one message at its end
    bool outbox_refused;            // the last send found no broker: resend
                                    // at the next tick, not after RESEND_MS
    zsock_t *events;                // SUB to the broker publisher
    zhashx_t *pending;              // corr → request_t awaiting the broker
    zhashx_t *waiters;              // job id → first request_t waiting on it
    zhashx_t *by_fd;                // MHD socket → its request_t, for clients that leave
    uint64_t clients_gone;          // parked requests ended because their client left
    uint64_t next_corr;             // correlation ids
    uint64_t ping_corr;             // corr of the last PING
    int64_t last_pong_ms;           // monotonic time of the last PONG
    int64_t broker_workers;         // workers the broker reported
    int64_t broker_queued;          // jobs waiting, as the broker reported
    int64_t broker_running;         // jobs running, as the broker reported
    uint64_t answers[600];          // HTTP answers by status code (metrics)
    uint64_t accepted;              // jobs acknowledged by the broker (metrics)
    uint64_t events_seen;           // PUB events received (metrics)
    uint64_t event_gaps;            // gaps detected in the event sequence
    uint64_t sse_held_back;         // times a stream held chunks back (slow reader)
    uint64_t last_seq;              // last event sequence number
    int64_t last_epoch;             // broker run the events come from
    size_t requests;                // live request contexts
    request_t *live;                // every live request, so none is left
                                    // suspended when the daemon stops
    evloop_timer_t *ping_timer;     // PING period
    evloop_timer_t *recheck_timer;  // waiter recheck period
    bool draining;                  // SIGTERM seen
    int port;                       // bound port
    jobcache_t *cache;              // finished jobs seen
    evloop_timer_t *resend_timer;   // resends unacknowledged submissions
};

// The OpenAPI document and the dashboard, embedded at build time
// (scripts/embed.py) so the gateway needs no files at run time.
extern const char asset_openapi[];
extern const size_t asset_openapi_size;
extern const char asset_dashboard[];
extern const size_t asset_dashboard_size;

// --- small helpers ---

static uint64_t
s_corr_hash (const void *key)
{
    return (uint64_t) (uintptr_t) key;
}

static int
s_corr_compare (const void *a, const void *b)
{
    return (uintptr_t) a < (uintptr_t) b ? -1 : (uintptr_t) a > (uintptr_t) b;
}

// s_resume lets MHD process a suspended request again. libmicrohttpd
// 0.9.75 walks its whole list of suspended connections in the MHD_run that
// follows any resume; with thousands parked (Prefer: wait) that walk, once
// per loop turn, cost more than the requests. So resumes are batched: the
// list is resumed at once when few connections are parked, and at most
// every parked/1000 ms when many are (4,000 parked: a batch per 4 ms), which
// bounds the walking to about a microsecond per parked connection per ms.
static void
s_resume (request_t *req)
{
    gateway_t *self = req->gateway;
    if (!req->suspended || req->resume_queued)
        return;
    req->resume_queued = true;
    req->resume_next = self->resume_list;
    self->resume_list = req;
}

// s_suspend_now parks req in MHD; s_resume_now undoes it. The two keep
// suspended_count, which spaces the resume batches.
static void
s_suspend_now (request_t *req)
{
    req->suspended = true;
    req->gateway->suspended_count++;
    MHD_suspend_connection (req->connection);
}

// s_resume_now resumes req at once (it must be suspended).
static void
s_resume_now (request_t *req)
{
    gateway_t *self = req->gateway;
    req->suspended = false;
    req->resume_queued = false;
    self->suspended_count--;
    MHD_resume_connection (req->connection);
    self->mhd_run_needed = true;
}

static void s_resume_wake (evloop_t *loop, void *arg);

// s_resume_batch resumes the waiting list when its time has come (or at
// once with force), else makes sure the loop wakes for it.
static void
s_resume_batch (gateway_t *self, bool force)
{
    if (!self->resume_list)
        return;
    int64_t now = evloop_now_ms (self->loop);
    int64_t spacing = (int64_t) (self->suspended_count / 1000);
    if (!force && now - self->last_resume_ms < spacing) {
        if (!self->resume_timer)
            self->resume_timer = evloop_timer_start (
                self->loop, spacing - (now - self->last_resume_ms), s_resume_wake, self);
        return;
    }
    request_t *req = self->resume_list;
    self->resume_list = NULL;
    while (req) {
        request_t *next = req->resume_next;
        req->resume_next = NULL;
        if (req->resume_queued && req->suspended)
            s_resume_now (req);
        req = next;
    }
    self->last_resume_ms = now;
}

// s_resume_wake ends a resume spacing; the idle hook then resumes.
static void
s_resume_wake (evloop_t *loop, void *arg)
{
    gateway_t *self = arg;
    self->resume_timer = NULL;
}

// s_resume_forget takes req off the resume list (it is being freed).
static void
s_resume_forget (request_t *req)
{
    if (!req->resume_queued)
        return;
    for (request_t **at = &req->gateway->resume_list; *at; at = &(*at)->resume_next)
        if (*at == req) {
            *at = req->resume_next;
            break;
        }
    req->resume_queued = false;
}

// s_answer sets the response of req and resumes it if suspended.
static void
s_answer_text (request_t *req, unsigned int status, char *body_owned, const char *content_type)
{
    if (req->answered) {
        free (body_owned);
        return;
    }
    req->answered = true;
    req->status = status;
    req->answer_body = body_owned;
    req->content_type = content_type;
    evloop_timer_cancel (req->gateway->loop, &req->timer);
    s_resume (req);
}

// s_answer_job answers with a rendered job object (a reference is taken:
// the response sends the shared text, no copy is made).
static void
s_answer_job (request_t *req, unsigned int status, jobtext_t *text)
{
    if (req->answered)
        return;
    req->answer_job = jobtext_ref (text);
    s_answer_text (req, status, NULL, "application/json");
}

static void
s_answer_json (request_t *req, unsigned int status, json_t *body)
{
    char *text = json_dumps (body, JSON_COMPACT);
    json_decref (body);
    s_answer_text (req, status, text,
                   status >= 400 ? "application/problem+json" : "application/json");
}

static void
s_answer_problem (request_t *req, int status, const char *slug, const char *detail,
                  json_t *errors)
{
    s_answer_json (req, (unsigned) status, problem_new (status, slug, detail, errors));
}

// s_waiter_remove takes req off its job's waiters list.
static void
s_waiter_remove (request_t *req)
{
    if (!req->waiting)
        return;
    gateway_t *self = req->gateway;
    if (req->wait_prev)
        req->wait_prev->wait_next = req->wait_next;
    else if (req->wait_next)
        zhashx_update (self->waiters, req->job_id, req->wait_next);
    else
        zhashx_delete (self->waiters, req->job_id);
    if (req->wait_next)
        req->wait_next->wait_prev = req->wait_prev;
    req->wait_prev = req->wait_next = NULL;
    req->waiting = false;
}

// s_waiter_add puts req on the waiters list of its job (before asking the
// broker, so that an event racing the answer is not missed).
static void
s_waiter_add (request_t *req)
{
    gateway_t *self = req->gateway;
    request_t *head = zhashx_lookup (self->waiters, req->job_id);
    req->wait_prev = NULL;
    req->wait_next = head;
    if (head)
        head->wait_prev = req;
    zhashx_update (self->waiters, req->job_id, req);
    req->waiting = true;
    req->checked_ms = evloop_now_ms (self->loop);
}

static void
s_pending_drop (request_t *req)
{
    if (req->corr) {
        zhashx_delete (req->gateway->pending, (void *) (uintptr_t) req->corr);
        req->corr = 0;
    }
    free (req->sent_data);
    req->sent_data = NULL;
}

// s_broker_send sends a request for req and keeps it until answered: while
// the broker is away (restarting) it is sent again every RESEND_MS — safe
// because every request is idempotent at the broker (a SUBMIT carries its
// job id) — until the request's deadline answers 503.
static void
s_broker_send (request_t *req, proto_cmd_t cmd, pack_writer_t *body)
{
    gateway_t *self = req->gateway;
    s_pending_drop (req);
    req->corr = ++self->next_corr;
    pack_put_int (body, "corr", (int64_t) req->corr);
    size_t size;
    const void *data = pack_writer_data (body, &size);
    free (req->sent_data);
    req->sent_data = malloc (size);
    assert (req->sent_data);
    memcpy (req->sent_data, data, size);
    req->sent_size = size;
    req->sent_cmd = cmd;
    req->sent_ms = 0;
    zhashx_insert (self->pending, (void *) (uintptr_t) req->corr, req);
    // Batched: every request made in one loop iteration leaves in one
    // message at its end (s_on_idle), so the broker wakes once per batch.
    if (proto_batch_add (self->outbox, NULL, cmd, body) < 0)
        self->outbox_refused = true;
    req->sent_ms = evloop_now_ms (self->loop);
}

static void s_request_deadline (evloop_t *loop, void *arg);
static void s_suspend (request_t *req);

// s_broker_request sends a one-shot request for req (the body is the
// caller's) and parks req until the answer or the submit timeout.
static void
s_broker_request (request_t *req, op_t op, proto_cmd_t cmd, pack_writer_t *body)
{
    req->op = op;
    s_broker_send (req, cmd, body);
    req->timer = evloop_timer_start (req->gateway->loop, req->gateway->config->submit_timeout_ms,
                                     s_request_deadline, req);
    s_suspend (req);
}

// s_submit_deadline is the wall time after which the broker refuses a
// submission made at created_at: a margin (a fifth of the wait, at most
// 1 s) before the gateway itself gives up, so a job is never recorded after
// its client was answered 503 (docs/protocol.md §3.1).
static int64_t
s_submit_deadline (const gateway_t *self, int64_t created_at)
{
    int64_t margin = self->config->submit_timeout_ms / 5;
    return created_at + self->config->submit_timeout_ms - (margin > 1000 ? 1000 : margin);
}

static void
s_send_get (request_t *req)
{
    pack_writer_t *body = pack_writer_new ();
    pack_put_str (body, "id", req->job_id);
    // The broker answers only the caller's tenant's jobs (§3.1).
    pack_put_str (body, "tenant", req->tenant ? req->tenant : "");
    if (req->sse)
        pack_put_bool (body, "with_chunks", true);
    req->op = OP_GET;
    req->checked_ms = evloop_now_ms (req->gateway->loop);
    s_broker_send (req, PROTO_GET, body);
    pack_writer_destroy (&body);
}

static void
s_broker_unavailable (request_t *req)
{
    req->retry_after_s = 1;
    s_answer_problem (req, 503, "broker-unavailable", "the job broker is not reachable; retry later",
                      NULL);
}

// s_accepted_body is the 202 body: {"id", "status", "created_at"}.
static json_t *
s_accepted_body (request_t *req, const char *status)
{
    char stamp[40];
    clock_rfc3339 (req->created_at, stamp, sizeof stamp);
    return json_pack ("{s:s, s:s, s:s}", "id", req->job_id, "status", status, "created_at", stamp);
}

static void s_sse_wake (request_t *req);

static void s_batch_finish (request_t *req);
static bool s_check_json_post (request_t *req);

// --- timers ---

static void
s_request_deadline (evloop_t *loop, void *arg)
{
    request_t *req = arg;
    req->timer = NULL;
    if (req->op == OP_BATCH) {
        s_batch_finish (req);
        return;
    }
    if (req->parent) {
        // A batch item: its batch answers for it.
        s_pending_drop (req);
        return;
    }
    if (req->sse_started) {
        // Draining: end the stream now.
        req->sse_done = true;
        s_waiter_remove (req);
        s_sse_wake (req);
        return;
    }
    s_waiter_remove (req);
    s_pending_drop (req);
    if (req->op == OP_SUBMIT && !req->created_at) {
        // The broker never acknowledged: the job may or may not exist, but
        // it was not durably accepted as far as the client can know.
        log_warn (req->job_id, "broker did not acknowledge the submission in time");
        s_broker_unavailable (req);
    }
    else if (req->prefer_wait) {
        req->with_location = true;
        s_answer_json (req, 202, s_accepted_body (req, "queued"));
    }
    else if (req->last_job)
        s_answer_job (req, 200, req->last_job);
    else if (req->op == OP_GET) {
        const char *owner = NULL;
        jobtext_t *cached = jobcache_get (req->gateway->cache, req->job_id, &owner);
        if (cached && strcmp (owner, req->tenant) == 0)
            s_answer_job (req, 200, cached);
        else
            s_broker_unavailable (req);
    }
    else
        s_broker_unavailable (req);
}

// --- Server-Sent Events (GET /v1/jobs/{id}/events) ---

// How often an idle event stream gets a comment, so proxies keep it open
// and a client that left is noticed (a suspended connection is not).
#define SSE_KEEPALIVE_MS 15000

// s_sse_wake lets MHD read what was buffered.
static void
s_sse_wake (request_t *req)
{
    if (req->sse_started)
        s_resume (req);
}

// s_sse_append buffers one event (or a comment when event is NULL) and
// returns true; false (nothing buffered) when it would take the buffer over
// gateway.sse_buffer_bytes, unless forced: status events and the result's
// head (few and small), and a chunk into an empty buffer (however large,
// it is one event, and the stream must move on).
static bool
s_sse_append (request_t *req, const char *id, const char *event, const char *data, bool force)
{
    char head[160];
    int head_len = event ? snprintf (head, sizeof head, "id: %s\nevent: %s\ndata: ", id, event)
                         : snprintf (head, sizeof head, ": %s\n\n", data);
    size_t data_len = event && data ? strlen (data) + 2 : 0;
    size_t need = req->sse_length + (size_t) head_len + data_len;
    size_t cap = req->gateway->config->sse_buffer_bytes;
    if (need > cap && !force)
        return false;
    if (need > req->sse_capacity) {
        size_t capacity = req->sse_capacity ? req->sse_capacity : 1024;
        while (capacity < need)
            capacity *= 2;
        char *grown = realloc (req->sse_buffer, capacity);
        if (!grown)
            return false;
        req->sse_buffer = grown;
        req->sse_capacity = capacity;
    }
    memcpy (req->sse_buffer + req->sse_length, head, (size_t) head_len);
    req->sse_length += (size_t) head_len;
    if (data_len) {
        memcpy (req->sse_buffer + req->sse_length, data, data_len - 2);
        memcpy (req->sse_buffer + req->sse_length + data_len - 2, "\n\n", 2);
        req->sse_length += data_len;
    }
    s_sse_wake (req);
    return true;
}

// s_sse_status sends a status event unless the client has it already.
static void
s_sse_status (request_t *req, const char *status, int attempts)
{
    if (strcmp (req->sse_status, status) == 0 && req->sse_status_attempts == attempts)
        return;
    snprintf (req->sse_status, sizeof req->sse_status, "%s", status);
    req->sse_status_attempts = attempts;
    char id[48], data[96];
    snprintf (id, sizeof id, "s%d.%s", attempts, status);
    snprintf (data, sizeof data, "{\"status\":\"%s\",\"attempts\":%d}", status, attempts);
    s_sse_append (req, id, "status", data, true);
}

// s_sse_chunk sends a chunk event unless the client has it already. A
// chunk that does not fit the stream's buffer is held back with every one
// after it: the stream is then behind, and reads the job's chunks again
// once the client has taken what was buffered (s_sse_read), so a slow
// client gets every chunk, in order, without the gateway holding more than
// its buffer. Live chunks are skipped while behind (live is false when the
// chunks come from a read of the job).
static void
s_sse_chunk (request_t *req, int attempt, int64_t index, const char *text, size_t len, bool live)
{
    if (live && req->sse_behind)
        return;
    if (attempt < req->sse_attempt || (attempt == req->sse_attempt && index <= req->sse_index))
        return;
    json_t *data = json_pack ("{s:i, s:I, s:s%}", "attempt", attempt, "index", (json_int_t) index,
                              "data", text, len);
    char *json = data ? json_dumps (data, JSON_COMPACT) : NULL;
    json_decref (data);
    char id[48];
    snprintf (id, sizeof id, "c%d.%lld", attempt, (long long) index);
    if (json && !s_sse_append (req, id, "chunk", json, req->sse_length == 0)) {
        if (!req->sse_behind) {
            log_debug (req->job_id, "event stream client reads slowly; chunks held back");
            req->gateway->sse_held_back++;
        }
        req->sse_behind = true;
        free (json);
        return;
    }
    // Sent, or not UTF-8 text (then never sendable as JSON: skipped).
    free (json);
    if (attempt > req->sse_attempt)
        req->sse_index = -1;
    req->sse_attempt = attempt;
    req->sse_index = index;
}

static void
s_sse_keepalive (evloop_t *loop, void *arg)
{
    request_t *req = arg;
    req->keepalive = evloop_timer_start (loop, SSE_KEEPALIVE_MS, s_sse_keepalive, req);
    s_sse_append (req, NULL, NULL, "keep-alive", false);
}

// s_sse_read hands MHD the buffered events, then the result event's data
// straight from the shared rendered job (never copied whole, whatever its
// size: issue 17 #7); with nothing to hand over, parks the connection until
// the next event (MHD allows suspending from here).
static ssize_t
s_sse_read (void *cls, uint64_t pos, char *buf, size_t max)
{
    request_t *req = cls;
    if (req->sse_offset < req->sse_length) {
        size_t n = req->sse_length - req->sse_offset;
        if (n > max)
            n = max;
        memcpy (buf, req->sse_buffer + req->sse_offset, n);
        req->sse_offset += n;
        if (req->sse_offset == req->sse_length)
            req->sse_offset = req->sse_length = 0;
        return (ssize_t) n;
    }
    if (req->sse_result) {
        size_t size = jobtext_size (req->sse_result);
        size_t at = req->sse_result_offset;
        if (at >= size + 2)
            return MHD_CONTENT_READER_END_OF_STREAM;
        size_t n = 0;
        if (at < size) {
            // A rendered job is compact JSON: a CR or LF in it can only be
            // whitespace between tokens, and must not end the data line.
            const char *text = jobtext_data (req->sse_result) + at;
            n = size - at < max ? size - at : max;
            for (size_t i = 0; i < n; i++)
                buf[i] = text[i] == '\n' || text[i] == '\r' ? ' ' : text[i];
        }
        else {
            n = size + 2 - at < max ? size + 2 - at : max;
            memcpy (buf, &"\n\n"[at - size], n);
        }
        req->sse_result_offset += n;
        return (ssize_t) n;
    }
    if (req->sse_done)
        return MHD_CONTENT_READER_END_OF_STREAM;
    if (req->sse_behind && !req->corr)
        s_send_get (req);   // the client caught up: fetch the chunks held back
    s_suspend_now (req);
    return 0;
}

// s_sse_job applies a fresh job record to a stream: its status, the chunks
// of its running attempt the client lacks, and the result when finished.
static void
s_sse_job (request_t *req, const job_t *job, proto_msg_t *msg)
{
    gateway_t *self = req->gateway;
    if (req->sse_done)
        return;
    if (!req->sse_started) {
        req->sse_started = true;
        req->answered = true;
        req->status = 200;
        evloop_timer_cancel (self->loop, &req->timer);
        req->keepalive = evloop_timer_start (self->loop, SSE_KEEPALIVE_MS, s_sse_keepalive, req);
        s_resume (req);
    }
    s_sse_status (req, job_status_name (job->status), job->attempts);
    size_t size = 0;
    const char *chunks = msg ? pack_get_str (msg->body, "chunks", &size) : NULL;
    req->sse_behind = false;
    while (chunks && size >= 8 && !req->sse_behind) {
        uint32_t header[2];
        memcpy (header, chunks, 8);
        if (header[1] > size - 8)
            break;
        // Chunk ids carry the attempt's identity, unique across retries.
        s_sse_chunk (req, (int) job->attempt_seq, header[0], chunks + 8, header[1], false);
        chunks += 8 + header[1];
        size -= 8 + header[1];
    }
    if (job_status_terminal (job->status) && req->last_job) {
        // The result supersedes any chunk held back.
        s_sse_append (req, "r", "result", NULL, true);
        req->sse_result = jobtext_ref (req->last_job);
        req->sse_done = true;
        s_waiter_remove (req);
        evloop_timer_cancel (self->loop, &req->keepalive);
    }
    s_sse_wake (req);
}

// --- POST /v1/batch ---

// s_batch_finish answers a batch with what is known; items the broker has
// not acknowledged (deadline) are reported as not accepted.
static void
s_batch_finish (request_t *req)
{
    if (req->answered)
        return;
    for (size_t i = 0; i < req->items_count; i++)
        if (json_is_null (json_array_get (req->item_results, i)))
            json_array_set_new (req->item_results, i,
                                json_pack ("{s:o}", "error",
                                           problem_new (503, "broker-unavailable",
                                                        "the broker did not acknowledge the job in time; "
                                                        "it was not accepted", NULL)));
    json_t *body = json_pack ("{s:O}", "jobs", req->item_results);
    s_answer_json (req, 202, body);
}

// s_batch_item_answer records the broker's answer to one item.
static void
s_batch_item_answer (request_t *item, proto_msg_t *msg)
{
    request_t *batch = item->parent;
    json_t *answer;
    if (msg->cmd == PROTO_SUBMIT_OK) {
        size_t id_len;
        const char *id = pack_get_str (msg->body, "id", &id_len);
        char *status = pack_get_strdup (msg->body, "status");
        if (id && job_id_valid (id, id_len))
            memcpy (item->job_id, id, JOB_ID_LEN);
        answer = json_pack ("{s:s, s:s}", "id", item->job_id, "status", status ? status : "queued");
        free (status);
    }
    else {
        int64_t code = 503;
        pack_get_int (msg->body, "code", &code);
        char *message = pack_get_strdup (msg->body, "message");
        answer = json_pack ("{s:o}", "error",
                            problem_new ((int) code, code == 503 ? "unavailable" : "rejected",
                                         message ? message : "rejected", NULL));
        free (message);
    }
    json_array_set_new (batch->item_results, item->batch_index, answer);
    if (--batch->items_pending == 0)
        s_batch_finish (batch);
}

// s_batch_free releases a batch's items.
static void
s_batch_free (request_t *req)
{
    for (size_t i = 0; i < req->items_count; i++) {
        request_t *item = req->items[i];
        if (!item)
            continue;
        s_pending_drop (item);
        free (item->tenant);
        free (item);
    }
    free (req->items);
    req->items = NULL;
    json_decref (req->item_results);
    req->item_results = NULL;
}

// --- broker answers ---

static void
s_on_job (gateway_t *self, request_t *req, proto_msg_t *msg)
{
    job_t *job = job_unpack (msg->body);
    if (!job) {
        log_warn (req->job_id, "malformed JOB from broker");
        s_broker_unavailable (req);
        return;
    }
    if (strcmp (job->tenant, req->tenant) != 0) {
        // Another tenant's job does not exist for this caller.
        s_answer_problem (req, 404, "not-found", "no such job", NULL);
        job_destroy (&job);
        return;
    }
    jobtext_unref (&req->last_job);
    char *rendered = job_render (job);
    req->last_job = jobtext_new (rendered, rendered ? strlen (rendered) : 0);
    if (!req->last_job) {
        log_warn (req->job_id, "out of memory rendering a job");
        s_broker_unavailable (req);
        job_destroy (&job);
        return;
    }
    bool terminal = job_status_terminal (job->status);
    if (terminal)
        jobcache_put (self->cache, job->id, job->tenant, req->last_job);
    else
        jobcache_forget (self->cache, job->id);
    if (req->sse) {
        s_sse_job (req, job, msg);
        job_destroy (&job);
        if (req->recheck && !req->sse_done) {
            req->recheck = false;
            s_send_get (req);
        }
        return;
    }
    job_destroy (&job);
    if (req->op == OP_RETRY) {
        // Accepted again: answered like a submission.
        req->created_at = clock_wall_ms ();
        req->with_location = true;
        s_answer_job (req, 202, req->last_job);
        return;
    }
    if (req->waiting && !terminal) {
        if (req->recheck) {
            req->recheck = false;
            s_send_get (req);
        }
        return;
    }
    s_waiter_remove (req);
    req->preference_applied = req->prefer_wait;
    s_answer_job (req, 200, req->last_job);
}

// --- GET /v1/jobs: a page rendered as it is sent ---

// A page of jobs from the broker, sent to the client one rendered job at a
// time: the page is bounded by gateway.list_max_bytes at the broker, and
// the gateway never holds more than its records and one rendered job, nor
// renders more at once than the client is ready to read.
struct _list_stream_t {
    char *tenant;               // the caller: records of others are skipped
    void **records;             // packed job records, newest first
    size_t *sizes;              // their sizes
    size_t count;               // records
    size_t next;                // the record to render next
    char *cursor;               // next_cursor, or NULL at the end
    char *piece;                // what is being handed over
    size_t piece_len;           // its length
    size_t piece_offset;        // bytes of it handed over
    bool any;                   // a job was written (commas)
    bool ended;                 // the closing piece was made
};

static void
s_list_stream_destroy (void *cls)
{
    list_stream_t *stream = cls;
    if (!stream)
        return;
    for (size_t i = 0; i < stream->count; i++)
        free (stream->records[i]);
    free (stream->records);
    free (stream->sizes);
    free (stream->tenant);
    free (stream->cursor);
    free (stream->piece);
    free (stream);
}

// s_list_stream_piece makes the next piece: the opening, one job (comma
// first but for the first), or the closing with next_cursor. False at the end.
static bool
s_list_stream_piece (list_stream_t *stream)
{
    free (stream->piece);
    stream->piece = NULL;
    stream->piece_len = stream->piece_offset = 0;
    while (stream->next < stream->count) {
        size_t index = stream->next++;
        pack_reader_t *reader = pack_reader_new (stream->records[index], stream->sizes[index]);
        job_t *job = reader ? job_unpack (reader) : NULL;
        char *text = job && strcmp (job->tenant, stream->tenant) == 0 ? job_render (job) : NULL;
        job_destroy (&job);
        pack_reader_destroy (&reader);
        free (stream->records[index]);
        stream->records[index] = NULL;
        if (!text)
            continue;
        size_t len = strlen (text);
        stream->piece = malloc (len + 16);
        if (!stream->piece) {
            free (text);
            continue;
        }
        stream->piece_len = (size_t) sprintf (stream->piece, "%s%s",
                                              stream->any ? "," : "{\"jobs\":[", text);
        stream->any = true;
        free (text);
        return true;
    }
    if (stream->ended)
        return false;
    stream->ended = true;
    json_t *cursor = stream->cursor ? json_string (stream->cursor) : json_null ();
    char *cursor_text = jsontext_dump (cursor);
    json_decref (cursor);
    if (asprintf (&stream->piece, "%s],\"next_cursor\":%s}", stream->any ? "" : "{\"jobs\":[",
                  cursor_text ? cursor_text : "null") < 0)
        stream->piece = NULL;
    free (cursor_text);
    stream->piece_len = stream->piece ? strlen (stream->piece) : 0;
    return stream->piece != NULL;
}

// s_list_stream_read is the page's content reader.
static ssize_t
s_list_stream_read (void *cls, uint64_t pos, char *buf, size_t max)
{
    list_stream_t *stream = cls;
    if (stream->piece_offset == stream->piece_len && !s_list_stream_piece (stream))
        return MHD_CONTENT_READER_END_OF_STREAM;
    size_t n = stream->piece_len - stream->piece_offset;
    if (n > max)
        n = max;
    memcpy (buf, stream->piece + stream->piece_offset, n);
    stream->piece_offset += n;
    return (ssize_t) n;
}

static void
s_on_list (gateway_t *self, request_t *req, proto_msg_t *msg)
{
    list_stream_t *stream = calloc (1, sizeof *stream);
    const msgpack_object_array *records = pack_get_array (msg->body, "jobs");
    size_t count = records ? records->size : 0;
    if (stream) {
        stream->tenant = strdup (req->tenant);
        stream->records = calloc (count + 1, sizeof *stream->records);
        stream->sizes = calloc (count + 1, sizeof *stream->sizes);
        stream->cursor = pack_get_strdup (msg->body, "next_cursor");
    }
    if (!stream || !stream->tenant || !stream->records || !stream->sizes) {
        s_list_stream_destroy (stream);
        s_broker_unavailable (req);
        return;
    }
    for (uint32_t i = 0; i < count; i++) {
        const msgpack_object *item = &records->ptr[i];
        if (item->type != MSGPACK_OBJECT_BIN)
            continue;
        void *copy = malloc (item->via.bin.size ? item->via.bin.size : 1);
        if (!copy)
            continue;
        memcpy (copy, item->via.bin.ptr, item->via.bin.size);
        stream->records[stream->count] = copy;
        stream->sizes[stream->count++] = item->via.bin.size;
    }
    req->answer_list = stream;
    s_answer_text (req, 200, NULL, "application/json");
}

static void
s_on_submit_ok (gateway_t *self, request_t *req, proto_msg_t *msg)
{
    int64_t created_at = 0;
    pack_get_int (msg->body, "created_at", &created_at);
    char *status = pack_get_strdup (msg->body, "status");
    req->created_at = created_at > 0 ? created_at : clock_wall_ms ();
    int status_value = status ? job_status_parse (status) : JOB_QUEUED;
    // An Idempotency-Key may name an earlier job: that one is the answer.
    size_t id_len;
    const char *id = pack_get_str (msg->body, "id", &id_len);
    if (id && job_id_valid (id, id_len) && memcmp (id, req->job_id, JOB_ID_LEN) != 0) {
        bool was_waiting = req->waiting;
        s_waiter_remove (req);
        memcpy (req->job_id, id, JOB_ID_LEN);
        if (was_waiting)
            s_waiter_add (req);
        log_info (req->job_id, "idempotent resubmission: answering with the original job");
    }
    log_debug (req->job_id, "accepted");
    self->accepted++;
    if (req->prefer_wait) {
        // Stay parked until the job finishes or the client's wait runs out;
        // the waiter was registered before the SUBMIT.
        evloop_timer_cancel (self->loop, &req->timer);
        int64_t left = req->started_ms + (int64_t) req->wait_s * 1000 - evloop_now_ms (self->loop);
        req->timer = evloop_timer_start (self->loop, left, s_request_deadline, req);
        if (status_value >= 0 && job_status_terminal ((job_status_t) status_value)) {
            s_send_get (req);
        }
        else if (req->recheck) {
            req->recheck = false;
            s_send_get (req);
        }
        else
            req->op = OP_GET;
        free (status);
        return;
    }
    req->with_location = true;
    s_answer_json (req, 202, s_accepted_body (req, status ? status : "queued"));
    free (status);
}

// What a caller who is not an operator sees of a provider: its name, its
// limits and its live state — nothing of where it is or how it is reached
// (base_url, and whatever a later version adds: an allow-list, not a
// deny-list).
static const char *const s_provider_public_fields[] = {
    "name", "rate_limit", "max_concurrency", "rate", "in_flight", "queued", "circuit",
    "consecutive_failures", "blocked_for_ms", "tenants_paused", "latency_ms", "recent_errors",
    "totals", NULL
};

// s_on_providers answers GET /v1/providers: the broker's view, in full for
// an operator, the public fields for everyone else (issue 10 #1).
static void
s_on_providers (request_t *req, proto_msg_t *msg)
{
    size_t len = 0;
    const char *text = pack_get_str (msg->body, "json", &len);
    json_t *root = text ? jsontext_load (text, len, NULL) : NULL;
    json_t *providers = json_object_get (root, "providers");
    if (!json_is_array (providers)) {
        json_decref (root);
        s_broker_unavailable (req);
        return;
    }
    if (!req->is_operator) {
        size_t index;
        json_t *provider;
        json_array_foreach (providers, index, provider) {
            const char *key;
            json_t *value;
            void *tmp;
            json_object_foreach_safe (provider, tmp, key, value) {
                bool public = false;
                for (int i = 0; s_provider_public_fields[i]; i++)
                    public = public || strcmp (key, s_provider_public_fields[i]) == 0;
                if (!public)
                    json_object_del (provider, key);
            }
        }
    }
    s_answer_json (req, 200, root);
}

// s_broker_answer handles one answer of the broker (one body of a batch).
static void
s_broker_answer (proto_msg_t *msg, void *arg)
{
    gateway_t *self = arg;
    int64_t corr = 0;
    pack_get_int (msg->body, "corr", &corr);
    if (msg->cmd == PROTO_PONG) {
        if ((uint64_t) corr == self->ping_corr) {
            self->last_pong_ms = evloop_now_ms (self->loop);
            pack_get_int (msg->body, "workers", &self->broker_workers);
            pack_get_int (msg->body, "queued", &self->broker_queued);
            pack_get_int (msg->body, "running", &self->broker_running);
        }
        return;
    }
    request_t *req = corr > 0 ? zhashx_lookup (self->pending, (void *) (uintptr_t) corr) : NULL;
    if (!req) {
        // The request gave up (deadline) before the answer came.
        return;
    }
    s_pending_drop (req);
    if (req->parent && (msg->cmd == PROTO_SUBMIT_OK || msg->cmd == PROTO_ERROR)) {
        s_batch_item_answer (req, msg);
        return;
    }
    if (msg->cmd == PROTO_LIST_OK)
        s_on_list (self, req, msg);
    else if (msg->cmd == PROTO_PROVIDERS_OK)
        s_on_providers (req, msg);
    else if (msg->cmd == PROTO_SUBMIT_OK)
        s_on_submit_ok (self, req, msg);
    else if (msg->cmd == PROTO_JOB)
        s_on_job (self, req, msg);
    else if (msg->cmd == PROTO_ERROR) {
        int64_t code = 503;
        pack_get_int (msg->body, "code", &code);
        char *message = pack_get_strdup (msg->body, "message");
        s_waiter_remove (req);
        if (code == 404)
            s_answer_problem (req, 404, "not-found", "no such job", NULL);
        else if (code == 409)
            s_answer_problem (req, 409, "conflict", message ? message : "conflict", NULL);
        else if (code == 400)
            s_answer_problem (req, 400, "invalid-job", message ? message : "rejected", NULL);
        else if (code == 429) {
            int64_t retry_after_ms = 1000;
            pack_get_int (msg->body, "retry_after_ms", &retry_after_ms);
            req->retry_after_s = (int) ((retry_after_ms + 999) / 1000);
            if (req->retry_after_s < 1)
                req->retry_after_s = 1;
            s_answer_problem (req, 429, "over-quota", message ? message : "over quota", NULL);
        }
        else {
            req->retry_after_s = 1;
            s_answer_problem (req, 503, "unavailable", message ? message : "unavailable", NULL);
        }
        free (message);
    }
    else
        log_warn (req->job_id, "broker: unexpected %s", proto_cmd_name (msg->cmd));
}

static void
s_broker_ready (evloop_t *loop, zsock_t *sock, void *arg)
{
    proto_recv_each (sock, false, "broker", s_broker_answer, arg);
}

// s_recheck makes every waiter that has not read its job for min_age_ms
// re-read it (events may be lost); 0 rechecks all.
static void
s_recheck (gateway_t *self, int64_t min_age_ms)
{
    int64_t now = evloop_now_ms (self->loop);
    zlistx_t *all = zlistx_new ();
    for (request_t *req = zhashx_first (self->waiters); req; req = zhashx_next (self->waiters))
        for (request_t *one = req; one; one = one->wait_next)
            if (now - one->checked_ms >= min_age_ms)
                zlistx_add_end (all, one);
    for (request_t *req = zlistx_first (all); req; req = zlistx_next (all)) {
        if (req->corr)
            req->recheck = true;
        else
            s_send_get (req);
    }
    zlistx_destroy (&all);
}

// s_event handles one job event (one body of a batch).
static void
s_event (proto_msg_t *msg, void *arg)
{
    gateway_t *self = arg;
    int64_t seq = 0, epoch = 0;
    pack_get_int (msg->body, "seq", &seq);
    pack_get_int (msg->body, "epoch", &epoch);
    bool gap = epoch != self->last_epoch || (uint64_t) seq != self->last_seq + 1;
    self->events_seen++;
    if (gap && self->last_epoch != 0)
        self->event_gaps++;
    if (gap && self->last_epoch != 0)
        log_info (NULL, "event gap (seq %llu after %llu); rechecking waiters",
                  (unsigned long long) seq, (unsigned long long) self->last_seq);
    self->last_seq = (uint64_t) seq;
    self->last_epoch = epoch;
    if (gap) {
        s_recheck (self, 0);
        return;
    }
    // Every job sends three or more events and most have nobody waiting
    // here: read the fields in place and look the id up once.
    size_t id_len = 0, status_len = 0, type_len = 0;
    const char *id_field = pack_get_str (msg->body, "id", &id_len);
    const char *status_field = pack_get_str (msg->body, "status", &status_len);
    const char *type = pack_get_str (msg->body, "type", &type_len);
    if (!id_field || id_len != JOB_ID_LEN || !type)
        return;
    char id[JOB_ID_LEN + 1];
    memcpy (id, id_field, JOB_ID_LEN);
    id[JOB_ID_LEN] = '\0';
    char status[16] = "";
    if (status_field && status_len < sizeof status) {
        memcpy (status, status_field, status_len);
        status[status_len] = '\0';
    }
    int status_value = *status ? job_status_parse (status) : -1;
    bool terminal = status_value >= 0 && job_status_terminal ((job_status_t) status_value);
    if (status_value >= 0 && !terminal)
        jobcache_forget (self->cache, id);
    request_t *first = zhashx_lookup (self->waiters, id);
    if (!first)
        return;
    // Streams see every event of their job as it happens.
    bool is_chunk = type_len == 5 && memcmp (type, "chunk", 5) == 0;
    bool is_status = type_len == 6 && memcmp (type, "status", 6) == 0;
    int64_t attempts = 0, index = -1;
    pack_get_int (msg->body, "attempts", &attempts);
    pack_get_int (msg->body, "attempt", &attempts);
    pack_get_int (msg->body, "index", &index);
    size_t data_len = 0;
    const char *data = pack_get_str (msg->body, "data", &data_len);
    for (request_t *req = first; req; req = req->wait_next) {
        if (!req->sse || !req->sse_started || req->sse_done)
            continue;
        if (is_chunk && data && index >= 0)
            s_sse_chunk (req, (int) attempts, index, data, data_len, true);
        else if (is_status && status_value >= 0 && !terminal)
            s_sse_status (req, status, (int) attempts);
    }
    if (terminal) {
        // Reading the job may answer and unlink a waiter: walk a copy.
        zlistx_t *woken = zlistx_new ();
        for (request_t *req = first; req; req = req->wait_next)
            zlistx_add_end (woken, req);
        for (request_t *req = zlistx_first (woken); req; req = zlistx_next (woken)) {
            if (req->corr)
                req->recheck = true;
            else
                s_send_get (req);
        }
        zlistx_destroy (&woken);
    }
}

static void
s_events_ready (evloop_t *loop, zsock_t *sock, void *arg)
{
    proto_recv_each (sock, true, "events", s_event, arg);
}

// s_resend_tick sends again every submission the broker has not
// acknowledged for RESEND_MS (lost with a broker restart, or never sent
// while it was unreachable).
static void
s_resend_tick (evloop_t *loop, void *arg)
{
    gateway_t *self = arg;
    self->resend_timer = evloop_timer_start (loop, RESEND_TICK_MS, s_resend_tick, self);
    int64_t now = evloop_now_ms (loop);
    void *handle = zsock_resolve (self->broker);
    bool all = self->outbox_refused;
    self->outbox_refused = false;
    for (request_t *req = zhashx_first (self->pending); req; req = zhashx_next (self->pending)) {
        if (!req->sent_data || (!all && now - req->sent_ms < RESEND_MS))
            continue;
        if (zmq_send (handle, PROTO_VERSION, strlen (PROTO_VERSION), ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0)
            break; // no connection to the broker now: try again next tick
        const char *name = proto_cmd_name (req->sent_cmd);
        zmq_send (handle, name, strlen (name), ZMQ_SNDMORE);
        zmq_send (handle, req->sent_data, req->sent_size, 0);
        if (req->sent_ms)
            log_info (req->job_id[0] ? req->job_id : NULL, "%s not answered yet; sent again", name);
        req->sent_ms = now;
    }
}

static void
s_ping (evloop_t *loop, void *arg)
{
    gateway_t *self = arg;
    self->ping_timer = evloop_timer_start (loop, PING_MS, s_ping, self);
    pack_writer_t *body = pack_writer_new ();
    self->ping_corr = ++self->next_corr;
    pack_put_int (body, "corr", (int64_t) self->ping_corr);
    proto_send (self->broker, NULL, PROTO_PING, body);
    pack_writer_destroy (&body);
}

static void
s_recheck_tick (evloop_t *loop, void *arg)
{
    gateway_t *self = arg;
    self->recheck_timer = evloop_timer_start (loop, WAITER_RECHECK_MS / 2, s_recheck_tick, self);
    s_recheck (self, WAITER_RECHECK_MS);
}

// --- HTTP handling ---

static void
s_suspend (request_t *req)
{
    if (!req->suspended && !req->answered)
        s_suspend_now (req);
}

// The lines of one request header, collected in the order received.
typedef struct {
    const char *name;                       // header name
    const char *values[PREFER_LINES_MAX];   // its lines
    size_t count;                           // lines kept
    size_t seen;                            // lines seen (may exceed count)
} header_lines_t;

static enum MHD_Result
s_header_line (void *cls, enum MHD_ValueKind kind, const char *key, const char *value)
{
    header_lines_t *lines = cls;
    if (key && strcasecmp (key, lines->name) == 0) {
        if (lines->count < PREFER_LINES_MAX)
            lines->values[lines->count++] = value;
        lines->seen++;
    }
    return MHD_YES;
}

// s_header_lines collects every line of header name of req.
static header_lines_t
s_header_lines (request_t *req, const char *name)
{
    header_lines_t lines = { .name = name };
    MHD_get_connection_values (req->connection, MHD_HEADER_KIND, s_header_line, &lines);
    return lines;
}

// s_prefer_wait reads the "wait" preference of every Prefer line (RFC 7240,
// parsed exactly by headers.c); -1 when there is none or it is not valid.
static int
s_prefer_wait (request_t *req)
{
    header_lines_t lines = s_header_lines (req, "Prefer");
    return headers_prefer_wait (lines.values, lines.count, MAX_WAIT_S);
}

// s_authenticate sets req->tenant; false (and a 401 answer) when refused.
static bool
s_authenticate (request_t *req)
{
    gateway_t *self = req->gateway;
    if (self->config->api_keys_count == 0) {
        // Open mode: one local tenant, who is also the operator.
        req->tenant = strdup ("");
        req->is_operator = true;
        return true;
    }
    const char *header = MHD_lookup_connection_value (req->connection, MHD_HEADER_KIND,
                                                      MHD_HTTP_HEADER_AUTHORIZATION);
    const config_api_key_t *key = NULL;
    if (header && strncasecmp (header, "Bearer ", 7) == 0)
        key = config_api_key_for (self->config, header + 7, strlen (header + 7));
    const char *tenant = key ? key->tenant : NULL;
    if (!tenant) {
        s_answer_problem (req, 401, "unauthorized",
                          header ? "the API key is not valid" : "an API key is required: Authorization: Bearer KEY",
                          NULL);
        return false;
    }
    req->tenant = strdup (tenant);
    req->is_operator = key->is_operator;
    return true;
}

// s_idempotency_key reads the Idempotency-Key of req into *key (NULL when
// absent). Returns false, with a 400 answered, when it is not acceptable:
// the broker indexes keys in LMDB, whose keys hold 511 bytes, and a key it
// could not index was once silently ignored (issue 10).
static bool
s_idempotency_key (request_t *req, const char **key)
{
    header_lines_t lines = s_header_lines (req, "Idempotency-Key");
    *key = lines.count ? lines.values[0] : NULL;
    const char *problem = lines.seen > 1 ? "must be given once"
                        : *key ? headers_idempotency_key_problem (*key, strlen (*key)) : NULL;
    if (!problem)
        return true;
    json_t *errors = json_pack ("[{s:s, s:s}]", "field", "Idempotency-Key", "message", problem);
    s_answer_problem (req, 400, "invalid-header", "the Idempotency-Key header is not valid",
                      errors);
    return false;
}

static void
s_handle_submit (request_t *req)
{
    gateway_t *self = req->gateway;
    if (!s_check_json_post (req))
        return;
    const char *key;
    if (!s_idempotency_key (req, &key))
        return;
    json_t *errors = NULL;
    job_t *job = jobspec_parse (req->body ? req->body : "", req->body_size, self->config, &errors);
    if (!job) {
        s_answer_problem (req, 400, "invalid-job", "the job spec is invalid", errors);
        return;
    }
    job_id_generate (job->id);
    memcpy (req->job_id, job->id, sizeof req->job_id);
    job_set_str (&job->tenant, req->tenant);
    job->created_at = clock_wall_ms ();
    if (key)
        job_set_str (&job->idempotency_key, key);
    int wait = s_prefer_wait (req);
    if (wait > 0) {
        req->prefer_wait = true;
        req->wait_s = wait;
        s_waiter_add (req);
    }
    pack_writer_t *body = pack_writer_new ();
    job_pack (job, body);
    pack_put_int (body, "deadline", s_submit_deadline (self, job->created_at));
    // The 202 waits for the broker's commit (bounded); a Prefer wait then
    // waits for the result until its own deadline (s_on_submit_ok).
    req->started_ms = evloop_now_ms (self->loop);
    s_broker_request (req, OP_SUBMIT, PROTO_SUBMIT, body);
    pack_writer_destroy (&body);
    job_destroy (&job);
}

static void
s_handle_get (request_t *req, const char *id)
{
    gateway_t *self = req->gateway;
    if (!job_id_copy (req->job_id, id, strlen (id))) {
        s_answer_problem (req, 404, "not-found", "no such job", NULL);
        return;
    }
    const char *wait_arg = MHD_lookup_connection_value (req->connection, MHD_GET_ARGUMENT_KIND,
                                                        "wait");
    int wait = s_prefer_wait (req);
    if (wait_arg) {
        char *end;
        long value = strtol (wait_arg, &end, 10);
        if (*wait_arg == '\0' || *end || value < 0 || value > MAX_WAIT_S) {
            json_t *errors = json_pack ("[{s:s, s:s}]", "field", "wait", "message",
                                        "must be an integer number of seconds from 0 to 60");
            s_answer_problem (req, 400, "invalid-parameter", "invalid query parameter", errors);
            return;
        }
        wait = (int) value;
    }
    // The broker is the truth (a job may be retried or expire); the cache
    // answers only while the broker is unreachable.
    const char *owner = NULL;
    jobtext_t *cached = jobcache_get (self->cache, req->job_id, &owner);
    bool broker_away = evloop_now_ms (self->loop) - self->last_pong_ms > READY_PONG_AGE_MS;
    if (cached && broker_away) {
        if (strcmp (owner, req->tenant) == 0)
            s_answer_job (req, 200, cached);
        else
            s_answer_problem (req, 404, "not-found", "no such job", NULL);
        return;
    }
    if (wait > 0) {
        req->wait_s = wait;
        s_waiter_add (req);
        req->timer = evloop_timer_start (self->loop, (int64_t) wait * 1000, s_request_deadline, req);
    }
    else
        req->timer = evloop_timer_start (self->loop, self->config->submit_timeout_ms,
                                         s_request_deadline, req);
    s_send_get (req);
    s_suspend (req);
}

// s_job_command sends CANCEL or RETRY for the job in url and parks req.
static void
s_job_command (request_t *req, const char *id, size_t id_len, proto_cmd_t cmd, op_t op)
{
    gateway_t *self = req->gateway;
    if (!job_id_copy (req->job_id, id, id_len)) {
        s_answer_problem (req, 404, "not-found", "no such job", NULL);
        return;
    }
    jobcache_forget (self->cache, req->job_id);
    pack_writer_t *body = pack_writer_new ();
    pack_put_str (body, "id", req->job_id);
    pack_put_str (body, "tenant", req->tenant);
    s_broker_request (req, op, cmd, body);
    pack_writer_destroy (&body);
}

// s_handle_events starts GET /v1/jobs/{id}/events: the stream begins once
// the broker confirms the job belongs to the caller.
static void
s_handle_events (request_t *req, const char *id, size_t id_len)
{
    gateway_t *self = req->gateway;
    if (!job_id_copy (req->job_id, id, id_len)) {
        s_answer_problem (req, 404, "not-found", "no such job", NULL);
        return;
    }
    req->sse = true;
    req->sse_index = -1;
    // Last-Event-ID resumes after what the client has: "c<attempt>.<index>"
    // for a chunk, "s<attempts>.<status>" for a status.
    // Anything else is ignored: the stream then starts from the beginning.
    headers_event_id_t last;
    if (headers_last_event_id (MHD_lookup_connection_value (req->connection, MHD_HEADER_KIND,
                                                            "Last-Event-ID"), &last) == 0) {
        if (last.kind == 'c') {
            req->sse_attempt = last.attempt;
            req->sse_index = last.index;
        }
        else {
            snprintf (req->sse_status, sizeof req->sse_status, "%s", last.status);
            req->sse_status_attempts = last.attempt;
        }
    }
    s_waiter_add (req);
    req->timer = evloop_timer_start (self->loop, self->config->submit_timeout_ms,
                                     s_request_deadline, req);
    s_send_get (req);
    s_suspend (req);
}

// s_check_json_post answers 415/413 when the body is not acceptable JSON;
// returns false then.
static bool
s_check_json_post (request_t *req)
{
    const char *content_type = MHD_lookup_connection_value (req->connection, MHD_HEADER_KIND,
                                                            MHD_HTTP_HEADER_CONTENT_TYPE);
    if (!content_type || strncasecmp (content_type, "application/json", 16) != 0
        || (content_type[16] && content_type[16] != ';' && content_type[16] != ' ')) {
        s_answer_problem (req, 415, "unsupported-media-type",
                          "the body must be JSON with Content-Type: application/json", NULL);
        return false;
    }
    if (req->body_too_large) {
        char detail[96];
        snprintf (detail, sizeof detail, "the body is over the limit of %zu bytes",
                  req->gateway->config->max_body_bytes);
        s_answer_problem (req, 413, "body-too-large", detail, NULL);
        return false;
    }
    return true;
}

// s_handle_batch: POST /v1/batch {"jobs": [spec, …]} → 202 with one answer
// per spec, in order: {"id", "status"} or {"error": problem}. Each valid
// job is submitted like POST /v1/jobs (committed before it is reported).
static void
s_handle_batch (request_t *req)
{
    gateway_t *self = req->gateway;
    if (!s_check_json_post (req))
        return;
    json_t *errors = NULL;
    json_t *root = jobspec_load (req->body ? req->body : "", req->body_size, &errors);
    if (!root) {
        s_answer_problem (req, 400, "invalid-batch", "the batch is not valid JSON", errors);
        return;
    }
    json_t *jobs = json_object_get (root, "jobs");
    errors = json_array ();
    if (!json_is_array (jobs) || json_array_size (jobs) == 0 || json_array_size (jobs) > BATCH_MAX)
        json_array_append_new (errors, json_pack ("{s:s, s:s}", "field", "jobs", "message",
                                                  "must be an array of 1 to 1000 job specs"));
    const char *key;
    json_t *value;
    json_object_foreach (root, key, value)
        if (strcmp (key, "jobs") != 0)
            json_array_append_new (errors, json_pack ("{s:s, s:s}", "field", key, "message",
                                                      "unknown field"));
    if (json_array_size (errors) > 0) {
        s_answer_problem (req, 400, "invalid-batch", "the batch is invalid", errors);
        json_decref (root);
        return;
    }
    json_decref (errors);
    req->op = OP_BATCH;
    req->items_count = json_array_size (jobs);
    req->items = calloc (req->items_count, sizeof *req->items);
    req->item_results = json_array ();
    int64_t now = clock_wall_ms ();
    for (size_t i = 0; i < req->items_count; i++) {
        json_t *item_errors = NULL;
        job_t *job = jobspec_from_json (json_array_get (jobs, i), self->config, &item_errors);
        if (!job) {
            json_array_append_new (req->item_results,
                                   json_pack ("{s:o}", "error",
                                              problem_new (400, "invalid-job", "the job spec is invalid",
                                                           item_errors)));
            continue;
        }
        json_array_append_new (req->item_results, json_null ());
        request_t *item = calloc (1, sizeof *item);
        item->gateway = self;
        item->parent = req;
        item->batch_index = i;
        item->op = OP_SUBMIT;
        item->tenant = strdup (req->tenant);
        job_id_generate (job->id);
        memcpy (item->job_id, job->id, sizeof item->job_id);
        job_set_str (&job->tenant, req->tenant);
        job->created_at = now;
        pack_writer_t *body = pack_writer_new ();
        job_pack (job, body);
        pack_put_int (body, "deadline", s_submit_deadline (self, now));
        s_broker_send (item, PROTO_SUBMIT, body);
        pack_writer_destroy (&body);
        job_destroy (&job);
        req->items[i] = item;
        req->items_pending++;
    }
    json_decref (root);
    if (req->items_pending == 0) {
        s_batch_finish (req);
        return;
    }
    req->timer = evloop_timer_start (self->loop, self->config->submit_timeout_ms,
                                     s_request_deadline, req);
    s_suspend (req);
}

// s_handle_list: GET /v1/jobs?status=&limit=&cursor= (newest first).
static void
s_handle_list (request_t *req)
{
    struct MHD_Connection *connection = req->connection;
    const char *status = MHD_lookup_connection_value (connection, MHD_GET_ARGUMENT_KIND, "status");
    const char *limit_arg = MHD_lookup_connection_value (connection, MHD_GET_ARGUMENT_KIND, "limit");
    const char *cursor = MHD_lookup_connection_value (connection, MHD_GET_ARGUMENT_KIND, "cursor");
    json_t *errors = json_array ();
    if (status && job_status_parse (status) < 0)
        json_array_append_new (errors, json_pack ("{s:s, s:s}", "field", "status", "message",
                                                  "must be queued, running, succeeded, failed or canceled"));
    long limit = 50;
    if (limit_arg) {
        char *end;
        limit = strtol (limit_arg, &end, 10);
        if (*limit_arg == '\0' || *end || limit < 1 || limit > 1000)
            json_array_append_new (errors, json_pack ("{s:s, s:s}", "field", "limit", "message",
                                                      "must be an integer from 1 to 1000"));
    }
    if (cursor && (strlen (cursor) > 80 || !*cursor))
        json_array_append_new (errors, json_pack ("{s:s, s:s}", "field", "cursor", "message",
                                                  "is not a cursor this API returned"));
    if (json_array_size (errors) > 0) {
        s_answer_problem (req, 400, "invalid-parameter", "invalid query parameter", errors);
        return;
    }
    json_decref (errors);
    pack_writer_t *body = pack_writer_new ();
    pack_put_str (body, "tenant", req->tenant);
    if (status)
        pack_put_str (body, "status", status);
    if (cursor)
        pack_put_str (body, "cursor", cursor);
    pack_put_int (body, "limit", limit);
    // A page also ends at a byte budget (docs/protocol.md §3.1): 20 results
    // of 8 MB once made one answer of 160 MB.
    pack_put_int (body, "max_bytes", (int64_t) req->gateway->config->list_max_bytes);
    s_broker_request (req, OP_LIST, PROTO_LIST, body);
    pack_writer_destroy (&body);
}

// s_handle_providers: GET /v1/providers, the broker's live view.
static void
s_handle_providers (request_t *req)
{
    pack_writer_t *body = pack_writer_new ();
    s_broker_request (req, OP_PROVIDERS, PROTO_PROVIDERS, body);
    pack_writer_destroy (&body);
}

// s_metric appends one Prometheus metric (HELP, TYPE and a sample).
static void
s_metric (zchunk_t *out, const char *name, const char *type, const char *help, double value)
{
    char line[512];
    int n = snprintf (line, sizeof line, "# HELP %s %s\n# TYPE %s %s\n%s %.17g\n", name, help,
                      name, type, name, value);
    zchunk_extend (out, line, (size_t) n);
}

// s_handle_metrics: GET /metrics in the Prometheus text format.
static void
s_handle_metrics (request_t *req)
{
    gateway_t *self = req->gateway;
    zchunk_t *out = zchunk_new (NULL, 4096);
    const char *help = "# HELP jobgate_http_responses_total HTTP responses sent, by status code.\n"
                       "# TYPE jobgate_http_responses_total counter\n";
    zchunk_extend (out, help, strlen (help));
    for (int code = 100; code < 600; code++)
        if (self->answers[code]) {
            char line[96];
            int n = snprintf (line, sizeof line, "jobgate_http_responses_total{code=\"%d\"} %llu\n",
                              code, (unsigned long long) self->answers[code]);
            zchunk_extend (out, line, (size_t) n);
        }
    bool broker_up = self->last_pong_ms > 0
                     && evloop_now_ms (self->loop) - self->last_pong_ms <= READY_PONG_AGE_MS;
    size_t waiting = 0;
    for (request_t *one = zhashx_first (self->waiters); one; one = zhashx_next (self->waiters))
        for (request_t *w = one; w; w = w->wait_next)
            waiting++;
    s_metric (out, "jobgate_jobs_accepted_total", "counter",
              "Jobs the broker acknowledged through this gateway.", (double) self->accepted);
    s_metric (out, "jobgate_http_requests_in_progress", "gauge",
              "HTTP requests being handled, parked ones included.", (double) self->requests);
    s_metric (out, "jobgate_parked_requests", "gauge",
              "Requests parked on a job (long-poll, Prefer: wait, event streams).", (double) waiting);
    s_metric (out, "jobgate_events_total", "counter", "Job events received from the broker.",
              (double) self->events_seen);
    s_metric (out, "jobgate_event_gaps_total", "counter",
              "Gaps in the broker's event sequence (waiters re-read the store).",
              (double) self->event_gaps);
    s_metric (out, "jobgate_broker_up", "gauge", "1 when the broker answered in the last 3 s.",
              broker_up ? 1 : 0);
    s_metric (out, "jobgate_broker_workers", "gauge", "Workers connected to the broker.",
              (double) self->broker_workers);
    s_metric (out, "jobgate_broker_queued_jobs", "gauge", "Jobs waiting at the broker.",
              (double) self->broker_queued);
    s_metric (out, "jobgate_broker_running_jobs", "gauge", "Jobs running on workers.",
              (double) self->broker_running);
    s_metric (out, "jobgate_sse_held_back_total", "counter",
              "Times an event stream held chunks back for a slow reader (sent later, in order).",
              (double) self->sse_held_back);
    frontdoor_stats_t door = frontdoor_stats (self->door);
    s_metric (out, "jobgate_http_connections", "gauge", "Client connections open.",
              (double) door.open);
    s_metric (out, "jobgate_http_connections_total", "counter", "Client connections accepted.",
              (double) door.accepted);
    s_metric (out, "jobgate_http_refused_total", "counter",
              "Requests refused before parsing: ambiguous or malformed framing (400), "
              "unknown codings (501), heads too large (431).", (double) door.refused);
    s_metric (out, "jobgate_http_timed_out_total", "counter",
              "Requests whose head came too late or whose body came too slowly (408).",
              (double) door.timed_out);
    s_metric (out, "jobgate_http_clients_gone_total", "counter",
              "Parked requests ended because their client left.", (double) self->clients_gone);
    s_metric (out, "jobgate_cache_jobs", "gauge", "Finished jobs in the gateway's cache.",
              (double) jobcache_size (self->cache));
    s_metric (out, "jobgate_cache_bytes", "gauge", "Bytes held by the gateway's cache.",
              (double) jobcache_bytes (self->cache));
    char *text = malloc (zchunk_size (out) + 1);
    memcpy (text, zchunk_data (out), zchunk_size (out));
    text[zchunk_size (out)] = '\0';
    zchunk_destroy (&out);
    s_answer_text (req, 200, text, "text/plain; version=0.0.4");
}

static void
s_handle_readyz (request_t *req)
{
    gateway_t *self = req->gateway;
    int64_t age = evloop_now_ms (self->loop) - self->last_pong_ms;
    bool broker_ok = self->last_pong_ms > 0 && age <= READY_PONG_AGE_MS;
    bool ready = broker_ok && self->broker_workers > 0 && !self->draining;
    json_t *body = json_pack ("{s:s, s:b, s:I}", "status", ready ? "ready" : "not ready",
                              "broker", broker_ok, "workers", (json_int_t) self->broker_workers);
    s_answer_json (req, ready ? 200 : 503, body);
    if (!ready)
        req->retry_after_s = 1;
}

// s_route decides what a complete request gets.
static void
s_route (request_t *req, const char *url, const char *method)
{
    bool is_get = strcmp (method, "GET") == 0 || strcmp (method, "HEAD") == 0;
    if (strcmp (url, "/healthz") == 0 && is_get) {
        s_answer_json (req, 200, json_pack ("{s:s}", "status", "ok"));
        return;
    }
    if (strcmp (url, "/openapi.json") == 0 && is_get) {
        s_answer_text (req, 200, strndup (asset_openapi, asset_openapi_size), "application/json");
        return;
    }
    if (strcmp (url, "/") == 0 && is_get) {
        s_answer_text (req, 200, strndup (asset_dashboard, asset_dashboard_size),
                       "text/html; charset=utf-8");
        return;
    }
    if (strcmp (url, "/metrics") == 0 && is_get) {
        s_handle_metrics (req);
        return;
    }
    if (strcmp (url, "/readyz") == 0 && is_get) {
        s_handle_readyz (req);
        return;
    }
    if (strcmp (url, "/v1/batch") == 0) {
        if (!s_authenticate (req))
            return;
        if (strcmp (method, "POST") == 0 && !req->gateway->draining)
            s_handle_batch (req);
        else if (req->gateway->draining) {
            req->retry_after_s = 1;
            s_answer_problem (req, 503, "shutting-down", "this gateway is shutting down", NULL);
        }
        else {
            req->allow = "POST";
            s_answer_problem (req, 405, "method-not-allowed", "use POST /v1/batch", NULL);
        }
        return;
    }
    if (strcmp (url, "/v1/providers") == 0 && is_get) {
        if (s_authenticate (req))
            s_handle_providers (req);
        return;
    }
    if (strcmp (url, "/v1/jobs") == 0 || strncmp (url, "/v1/jobs/", 9) == 0) {
        if (!s_authenticate (req))
            return;
        if (req->gateway->draining) {
            req->retry_after_s = 1;
            s_answer_problem (req, 503, "shutting-down", "this gateway is shutting down", NULL);
            return;
        }
        if (strcmp (url, "/v1/jobs") == 0) {
            if (strcmp (method, "POST") == 0)
                s_handle_submit (req);
            else if (is_get)
                s_handle_list (req);
            else
            {
                req->allow = "GET, POST";
                s_answer_problem (req, 405, "method-not-allowed", "use POST or GET /v1/jobs", NULL);
            }
            return;
        }
        const char *id = url + 9;
        const char *slash = strchr (id, '/');
        if (slash && strcmp (slash, "/events") == 0) {
            if (is_get)
                s_handle_events (req, id, (size_t) (slash - id));
            else {
                req->allow = "GET";
                s_answer_problem (req, 405, "method-not-allowed", "use GET /v1/jobs/{id}/events", NULL);
            }
            return;
        }
        if (slash && strcmp (slash, "/retry") == 0) {
            if (strcmp (method, "POST") == 0)
                s_job_command (req, id, (size_t) (slash - id), PROTO_RETRY, OP_RETRY);
            else
            {
                req->allow = "POST";
                s_answer_problem (req, 405, "method-not-allowed", "use POST /v1/jobs/{id}/retry", NULL);
            }
            return;
        }
        if (slash) {
            s_answer_problem (req, 404, "not-found", "no such resource", NULL);
            return;
        }
        if (is_get)
            s_handle_get (req, id);
        else if (strcmp (method, "DELETE") == 0)
            s_job_command (req, id, strlen (id), PROTO_CANCEL, OP_CANCEL);
        else
        {
            req->allow = "GET, DELETE";
            s_answer_problem (req, 405, "method-not-allowed", "use GET or DELETE /v1/jobs/{id}", NULL);
        }
        return;
    }
    s_answer_problem (req, 404, "not-found", "no such resource", NULL);
}

// s_job_text_release is the free callback of a response that sends a
// shared rendered job.
static void
s_job_text_release (void *cls)
{
    jobtext_t *text = cls;
    jobtext_unref (&text);
}

// s_response makes the response of an answered request: a rendered job
// sent from its shared text, a list page rendered as it is sent, or a body.
static struct MHD_Response *
s_response (request_t *req)
{
    if (req->answer_job) {
        jobtext_t *text = req->answer_job;
        req->answer_job = NULL;
        return MHD_create_response_from_buffer_with_free_callback_cls (
            jobtext_size (text), (void *) jobtext_data (text), s_job_text_release, text);
    }
    if (req->answer_list) {
        list_stream_t *stream = req->answer_list;
        req->answer_list = NULL;
        return MHD_create_response_from_callback (MHD_SIZE_UNKNOWN, STREAM_BLOCK,
                                                  s_list_stream_read, stream,
                                                  s_list_stream_destroy);
    }
    struct MHD_Response *response = MHD_create_response_from_buffer (
        req->answer_body ? strlen (req->answer_body) : 0, req->answer_body ? req->answer_body : "",
        MHD_RESPMEM_MUST_FREE);
    req->answer_body = NULL;
    return response;
}

static enum MHD_Result
s_queue_answer (request_t *req)
{
    if (req->status < 600)
        req->gateway->answers[req->status]++;
    if (req->sse_started) {
        struct MHD_Response *stream = MHD_create_response_from_callback (
            MHD_SIZE_UNKNOWN, 4096, s_sse_read, req, NULL);
        MHD_add_response_header (stream, MHD_HTTP_HEADER_CONTENT_TYPE, "text/event-stream");
        MHD_add_response_header (stream, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache");
        MHD_add_response_header (stream, "X-Accel-Buffering", "no");
        enum MHD_Result rc = MHD_queue_response (req->connection, 200, stream);
        MHD_destroy_response (stream);
        return rc;
    }
    struct MHD_Response *response = s_response (req);
    if (!response)
        return MHD_NO;
    MHD_add_response_header (response, MHD_HTTP_HEADER_CONTENT_TYPE, req->content_type);
    if (req->with_location) {
        char location[64];
        snprintf (location, sizeof location, "/v1/jobs/%s", req->job_id);
        MHD_add_response_header (response, MHD_HTTP_HEADER_LOCATION, location);
        MHD_add_response_header (response, MHD_HTTP_HEADER_RETRY_AFTER, "1");
    }
    else if (req->retry_after_s > 0) {
        char seconds[16];
        snprintf (seconds, sizeof seconds, "%d", req->retry_after_s);
        MHD_add_response_header (response, MHD_HTTP_HEADER_RETRY_AFTER, seconds);
    }
    if (req->preference_applied) {
        char applied[32];
        snprintf (applied, sizeof applied, "wait=%d", req->wait_s);
        MHD_add_response_header (response, "Preference-Applied", applied);
    }
    if (req->status == 401)
        MHD_add_response_header (response, MHD_HTTP_HEADER_WWW_AUTHENTICATE, "Bearer");
    if (req->status == 405)
        MHD_add_response_header (response, MHD_HTTP_HEADER_ALLOW, req->allow ? req->allow : "GET");
    enum MHD_Result rc = MHD_queue_response (req->connection, req->status, response);
    MHD_destroy_response (response);
    return rc;
}

static enum MHD_Result
s_access (void *cls, struct MHD_Connection *connection, const char *url, const char *method,
          const char *version, const char *upload_data, size_t *upload_data_size, void **con_cls)
{
    gateway_t *self = cls;
    request_t *req = *con_cls;
    if (!req) {
        req = calloc (1, sizeof *req);
        if (!req)
            return MHD_NO;
        req->gateway = self;
        req->connection = connection;
        *con_cls = req;
        self->requests++;
        // One request at a time per connection: its socket names it when
        // the front door sees the client leave.
        const union MHD_ConnectionInfo *info
            = MHD_get_connection_info (connection, MHD_CONNECTION_INFO_CONNECTION_FD);
        req->fd = info ? info->connect_fd : -1;
        if (req->fd >= 0)
            zhashx_update (self->by_fd, (void *) (uintptr_t) req->fd, req);
        req->live_next = self->live;
        if (self->live)
            self->live->live_prev = req;
        self->live = req;
        // DNS rebinding (issue 17 #8): a web page the developer visits can
        // send requests to a local gateway under its own host name. Browsers
        // always send Host: only the names this gateway is known by pass.
        const char *host = MHD_lookup_connection_value (connection, MHD_HEADER_KIND,
                                                        MHD_HTTP_HEADER_HOST);
        if (self->hosts_count > 0 && host
            && !headers_host_allowed (host, (const char *const *) self->hosts, self->hosts_count)) {
            s_answer_problem (req, 403, "host-not-allowed",
                              "this gateway answers only requests addressed to its own names "
                              "(localhost, 127.0.0.1, [::1], its listen address and "
                              "gateway.allowed_hosts); the Host header names another",
                              NULL);
            return s_queue_answer (req);
        }
        // A body somewhat over the limit is read and dropped so that the
        // client, still sending, sees the 413; a hugely oversized one is
        // refused before reading (the connection then closes).
        const char *length = MHD_lookup_connection_value (connection, MHD_HEADER_KIND,
                                                          MHD_HTTP_HEADER_CONTENT_LENGTH);
        size_t drain_limit = self->config->max_body_bytes * 8;
        if (drain_limit < 16 * 1024 * 1024)
            drain_limit = 16 * 1024 * 1024;
        if (length && strtoull (length, NULL, 10) > drain_limit) {
            req->body_too_large = true;
            char detail[96];
            snprintf (detail, sizeof detail, "the body is over the limit of %zu bytes",
                      self->config->max_body_bytes);
            s_answer_problem (req, 413, "body-too-large", detail, NULL);
            return s_queue_answer (req);
        }
        return MHD_YES;
    }
    if (*upload_data_size > 0) {
        size_t size = *upload_data_size;
        *upload_data_size = 0;
        if (req->body_too_large || req->body_size + size > self->config->max_body_bytes) {
            req->body_too_large = true;
            return MHD_YES;
        }
        if (req->body_size + size > req->body_capacity) {
            size_t capacity = req->body_capacity ? req->body_capacity : 1024;
            while (capacity < req->body_size + size)
                capacity *= 2;
            char *grown = realloc (req->body, capacity);
            if (!grown)
                return MHD_NO;
            req->body = grown;
            req->body_capacity = capacity;
        }
        memcpy (req->body + req->body_size, upload_data, size);
        req->body_size += size;
        return MHD_YES;
    }
    if (!req->answered && !req->suspended && req->op == OP_NONE)
        s_route (req, url, method);
    if (req->answered)
        return s_queue_answer (req);
    // Parked until the broker, an event or the deadline answers.
    return MHD_YES;
}

static void
s_completed (void *cls, struct MHD_Connection *connection, void **con_cls,
             enum MHD_RequestTerminationCode code)
{
    gateway_t *self = cls;
    request_t *req = *con_cls;
    if (!req)
        return;
    s_waiter_remove (req);
    s_pending_drop (req);
    s_resume_forget (req);
    if (req->fd >= 0 && zhashx_lookup (self->by_fd, (void *) (uintptr_t) req->fd) == req)
        zhashx_delete (self->by_fd, (void *) (uintptr_t) req->fd);
    if (req->suspended)
        self->suspended_count--;
    evloop_timer_cancel (self->loop, &req->timer);
    free (req->body);
    free (req->tenant);
    jobtext_unref (&req->last_job);
    jobtext_unref (&req->answer_job);
    jobtext_unref (&req->sse_result);
    s_list_stream_destroy (req->answer_list);
    free (req->answer_body);
    if (req->live_prev)
        req->live_prev->live_next = req->live_next;
    else
        self->live = req->live_next;
    if (req->live_next)
        req->live_next->live_prev = req->live_prev;
    free (req->sent_data);
    s_batch_free (req);
    free (req->sse_buffer);
    evloop_timer_cancel (self->loop, &req->keepalive);
    free (req);
    *con_cls = NULL;
    self->requests--;
}

// --- MHD on our loop ---

static void s_mhd_run (gateway_t *self);

static void
s_mhd_timer (evloop_t *loop, void *arg)
{
    gateway_t *self = arg;
    self->mhd_timer = NULL;
    s_mhd_run (self);
}

static void
s_mhd_run (gateway_t *self)
{
    self->mhd_run_needed = false;
    MHD_run (self->daemon);
    evloop_timer_cancel (self->loop, &self->mhd_timer);
    MHD_UNSIGNED_LONG_LONG timeout;
    if (MHD_get_timeout (self->daemon, &timeout) == MHD_YES)
        self->mhd_timer = evloop_timer_start (self->loop, (int64_t) timeout, s_mhd_timer, self);
}

static void
s_mhd_ready (evloop_t *loop, int fd, int events, void *arg)
{
    s_mhd_run (arg);
}

static void
s_on_idle (evloop_t *loop, void *arg)
{
    gateway_t *self = arg;
    s_resume_batch (self, false);
    if (self->mhd_run_needed)
        s_mhd_run (self);
    // Answers written for requests passed on in this turn go out now, not
    // one loop turn later.
    frontdoor_relay_answers (self->door);
    if (proto_batch_flush (self->outbox) < 0)
        self->outbox_refused = true;
}

static void
s_mhd_log (void *cls, const char *fmt, va_list ap)
{
    // Connections reach libmicrohttpd through socketpairs (frontdoor.c),
    // where TCP options do not apply: expected, and said for every answer.
    if (strncmp (fmt, "Setting TCP_", 12) == 0 || strncmp (fmt, "Failed to push", 14) == 0)
        return;
    char line[512];
    vsnprintf (line, sizeof line, fmt, ap);
    size_t len = strlen (line);
    while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
        line[--len] = '\0';
    log_debug (NULL, "http: %s", line);
}

// s_parse_listen turns "HOST:PORT" or "[V6]:PORT" into a socket address.
static int
s_parse_listen (const char *listen, struct sockaddr_storage *addr)
{
    memset (addr, 0, sizeof *addr);
    const char *colon = strrchr (listen, ':');
    if (!colon)
        return -1;
    char *end;
    long port = strtol (colon + 1, &end, 10);
    if (*end || port < 0 || port > 65535)
        return -1;
    char host[64];
    size_t host_len = (size_t) (colon - listen);
    if (host_len >= sizeof host)
        return -1;
    memcpy (host, listen, host_len);
    host[host_len] = '\0';
    if (host[0] == '[' && host_len > 2 && host[host_len - 1] == ']') {
        host[host_len - 1] = '\0';
        struct sockaddr_in6 *in6 = (struct sockaddr_in6 *) addr;
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons ((uint16_t) port);
        return inet_pton (AF_INET6, host + 1, &in6->sin6_addr) == 1 ? 0 : -1;
    }
    struct sockaddr_in *in4 = (struct sockaddr_in *) addr;
    in4->sin_family = AF_INET;
    in4->sin_port = htons ((uint16_t) port);
    if (strcmp (host, "localhost") == 0)
        strcpy (host, "127.0.0.1");
    if (host[0] == '\0' || strcmp (host, "*") == 0)
        strcpy (host, "0.0.0.0");
    return inet_pton (AF_INET, host, &in4->sin_addr) == 1 ? 0 : -1;
}

// s_loopback is true for an address only this machine can reach.
static bool
s_loopback (const struct sockaddr_storage *addr)
{
    if (addr->ss_family == AF_INET)
        return (ntohl (((const struct sockaddr_in *) addr)->sin_addr.s_addr) >> 24) == 127;
    const struct in6_addr *v6 = &((const struct sockaddr_in6 *) addr)->sin6_addr;
    return IN6_IS_ADDR_LOOPBACK (v6)
           || (IN6_IS_ADDR_V4MAPPED (v6) && v6->s6_addr[12] == 127);
}

// s_hosts_set fills the Host names this gateway answers (issue 17 #8): in
// open mode (no keys) always, with keys only when gateway.allowed_hosts is
// set (else any Host). The loopback names and the listen host are always
// among them: no page elsewhere can make a browser send those.
static void
s_hosts_set (gateway_t *self)
{
    const config_t *config = self->config;
    if (config->api_keys_count > 0 && config->allowed_hosts_count == 0)
        return;
    self->hosts = calloc (config->allowed_hosts_count + 4, sizeof *self->hosts);
    if (!self->hosts)
        return;
    self->hosts[self->hosts_count++] = strdup ("localhost");
    self->hosts[self->hosts_count++] = strdup ("127.0.0.1");
    self->hosts[self->hosts_count++] = strdup ("[::1]");
    // The listen host, unless a wildcard: a name or address clients use.
    const char *colon = strrchr (config->gateway_listen, ':');
    size_t len = colon ? (size_t) (colon - config->gateway_listen) : 0;
    char *host = len ? strndup (config->gateway_listen, len) : NULL;
    if (host && strcmp (host, "0.0.0.0") && strcmp (host, "[::]") && strcmp (host, "*")) {
        for (char *c = host; *c; c++)
            *c = (char) tolower ((unsigned char) *c);
        self->hosts[self->hosts_count++] = host;
    }
    else
        free (host);
    for (size_t i = 0; i < config->allowed_hosts_count; i++)
        self->hosts[self->hosts_count++] = strdup (config->allowed_hosts[i]);
}

// s_client_gone ends the request parked on the connection whose client
// left (the front door saw its end of file): a long poll or a Prefer: wait
// is answered to nobody (499, nginx's "client closed request"), an event
// stream ends, and either stops being a waiter now instead of at its
// deadline or next keep-alive.
static void
s_client_gone (int fd, void *arg)
{
    gateway_t *self = arg;
    request_t *req = zhashx_lookup (self->by_fd, (void *) (uintptr_t) fd);
    if (!req || !req->suspended)
        return;     // being answered, or not parked: it ends by itself
    self->clients_gone++;
    if (req->sse_started) {
        if (req->sse_done)
            return;
        req->sse_done = true;
        s_waiter_remove (req);
        evloop_timer_cancel (self->loop, &req->keepalive);
        s_sse_wake (req);
        return;
    }
    if (req->answered)
        return;
    s_waiter_remove (req);
    s_pending_drop (req);
    s_answer_problem (req, 499, "client-closed-request",
                      "the client left before the answer was ready", NULL);
}

// s_kick makes libmicrohttpd run in this loop turn: the front door passed
// it bytes.
static void
s_kick (void *arg)
{
    gateway_t *self = arg;
    self->mhd_run_needed = true;
}

// s_handoff gives a new connection (a socketpair end) to libmicrohttpd.
static int
s_handoff (int fd, void *arg)
{
    gateway_t *self = arg;
    // Not an IP socket: an AF_UNIX address says so (the client's address
    // stays with the front door).
    struct sockaddr_un address = { .sun_family = AF_UNIX };
    if (MHD_add_connection (self->daemon, fd, (const struct sockaddr *) &address,
                            sizeof address) != MHD_YES) {
        log_warn (NULL, "http: the server refused a connection: %s", strerror (errno));
        return -1;
    }
    self->mhd_run_needed = true;
    return 0;
}

gateway_t *
gateway_new (const config_t *config, evloop_t *loop, char *error, size_t error_size)
{
    struct sockaddr_storage addr;
    if (s_parse_listen (config->gateway_listen, &addr) < 0) {
        snprintf (error, error_size, "gateway: listen address \"%s\" is not HOST:PORT",
                  config->gateway_listen);
        return NULL;
    }
    // Open mode trusts every caller: only this machine may be one, unless
    // the operator says otherwise in so many words (issue 17 #8).
    if (config->api_keys_count == 0 && !config->allow_open_mode && !s_loopback (&addr)) {
        snprintf (error, error_size,
                  "gateway: no gateway.api_keys, so open mode, which listens on loopback only; "
                  "\"%s\" is not loopback: configure api_keys, listen on 127.0.0.1, or set "
                  "gateway.allow_open_mode: true",
                  config->gateway_listen);
        return NULL;
    }
    gateway_t *self = calloc (1, sizeof *self);
    self->config = config;
    self->loop = loop;
    self->pending = zhashx_new ();
    zhashx_set_key_hasher (self->pending, (zhashx_hash_fn *) s_corr_hash);
    zhashx_set_key_comparator (self->pending, s_corr_compare);
    zhashx_set_key_duplicator (self->pending, NULL);
    zhashx_set_key_destructor (self->pending, NULL);
    self->waiters = zhashx_new ();
    self->by_fd = zhashx_new ();
    zhashx_set_key_hasher (self->by_fd, (zhashx_hash_fn *) s_corr_hash);
    zhashx_set_key_comparator (self->by_fd, s_corr_compare);
    zhashx_set_key_duplicator (self->by_fd, NULL);
    zhashx_set_key_destructor (self->by_fd, NULL);
    self->cache = jobcache_new (CACHE_ENTRIES, config->cache_max_bytes);
    s_hosts_set (self);

    // libmicrohttpd never listens: the front door accepts and hands each
    // connection over (frontdoor.h). Its limit leaves room for connections
    // the front door closed and it has not yet noticed.
    unsigned int flags = MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG
                         | MHD_USE_NO_LISTEN_SOCKET;
    unsigned int limit = (unsigned int) config->max_connections * 2 + 64;
    self->daemon = MHD_start_daemon (
        flags, 0, NULL, NULL, s_access, self, MHD_OPTION_EXTERNAL_LOGGER, s_mhd_log, self,
        MHD_OPTION_NOTIFY_COMPLETED, s_completed, self, MHD_OPTION_CONNECTION_LIMIT, limit,
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int) 60, MHD_OPTION_CONNECTION_MEMORY_LIMIT,
        (size_t) CONNECTION_MEMORY, MHD_OPTION_STRICT_FOR_CLIENT, (int) 1, MHD_OPTION_END);
    if (!self->daemon) {
        snprintf (error, error_size, "gateway: cannot start the HTTP server: %s", strerror (errno));
        gateway_destroy (&self);
        return NULL;
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info (self->daemon, MHD_DAEMON_INFO_EPOLL_FD);
    self->mhd_epoll_fd = info->epoll_fd;
    evloop_fd_add (loop, self->mhd_epoll_fd, EVLOOP_READ, s_mhd_ready, self);
    frontdoor_limits_t limits = { .max_connections = (size_t) config->max_connections,
                                  .header_timeout_ms = config->header_timeout_ms,
                                  .min_body_rate = config->min_body_rate,
                                  .max_head_bytes = MAX_HEAD_BYTES };
    char door_error[256];
    self->door = frontdoor_new (loop, (struct sockaddr *) &addr,
                                addr.ss_family == AF_INET6 ? sizeof (struct sockaddr_in6)
                                                           : sizeof (struct sockaddr_in),
                                &limits, s_handoff, s_kick, self, door_error, sizeof door_error);
    if (!self->door) {
        snprintf (error, error_size, "gateway: cannot listen on %s: %s", config->gateway_listen,
                  door_error);
        gateway_destroy (&self);
        return NULL;
    }
    frontdoor_on_gone (self->door, s_client_gone);
    self->port = frontdoor_port (self->door);

    self->broker = zsock_new (ZMQ_DEALER);
    self->events = zsock_new (ZMQ_SUB);
    self->outbox = self->broker ? proto_batch_new (self->broker) : NULL;
    if (!self->outbox || !self->events) {
        snprintf (error, error_size, "gateway: out of memory");
        gateway_destroy (&self);
        return NULL;
    }
    zsock_set_linger (self->broker, 0);
    // Queue only to a live connection: while the broker is away a send
    // fails at once and the submission waits for a resend, instead of
    // piling up to be delivered long after its client was told 503.
    zsock_set_immediate (self->broker, 1);
    zsock_set_sndhwm (self->broker, 100000);
    zsock_set_rcvhwm (self->broker, 100000);
    zsock_set_rcvhwm (self->events, 100000);
    proto_set_limits (self->broker, config->max_frame_bytes);
    proto_set_limits (self->events, config->max_frame_bytes);
    zsock_set_linger (self->events, 0);
    zsock_set_subscribe (self->events, "");
    if (zsock_connect (self->broker, "%s", config->broker_frontend) < 0
        || zsock_connect (self->events, "%s", config->broker_publisher) < 0) {
        snprintf (error, error_size, "gateway: cannot connect to the broker at %s / %s",
                  config->broker_frontend, config->broker_publisher);
        gateway_destroy (&self);
        return NULL;
    }
    evloop_sock_add (loop, self->broker, s_broker_ready, self);
    evloop_sock_add (loop, self->events, s_events_ready, self);
    evloop_on_idle (loop, s_on_idle, self);
    s_ping (loop, self);
    self->resend_timer = evloop_timer_start (loop, RESEND_TICK_MS, s_resend_tick, self);
    self->recheck_timer = evloop_timer_start (loop, WAITER_RECHECK_MS / 2, s_recheck_tick, self);
    s_mhd_run (self);
    if (config->api_keys_count == 0)
        log_warn (NULL, "NO API KEYS CONFIGURED: open local mode, every caller is one tenant");
    log_info (NULL, "gateway serving http://%s (port %d), broker %s", config->gateway_listen,
              self->port, config->broker_frontend);
    return self;
}

bool
gateway_drain (gateway_t *self)
{
    if (!self->draining) {
        self->draining = true;
        frontdoor_stop_accepting (self->door);
        log_info (NULL, "draining: %zu requests in progress", self->requests);
    }
    // Answer every parked request with what is known now.
    zlistx_t *parked = zlistx_new ();
    for (request_t *req = zhashx_first (self->pending); req; req = zhashx_next (self->pending))
        zlistx_add_end (parked, req);
    for (request_t *req = zhashx_first (self->waiters); req; req = zhashx_next (self->waiters))
        for (request_t *one = req; one; one = one->wait_next)
            if (!one->corr)
                zlistx_add_end (parked, one);
    for (request_t *req = zlistx_first (parked); req; req = zlistx_next (parked))
        if (!req->answered && (req->op != OP_SUBMIT || req->created_at))
            s_request_deadline (self->loop, req);
    zlistx_destroy (&parked);
    // Event streams end now (a client reconnects to another gateway and
    // resumes with Last-Event-ID).
    for (request_t *req = self->live; req; req = req->live_next)
        if (req->sse_started && !req->sse_done) {
            req->sse_done = true;
            s_waiter_remove (req);
            s_sse_wake (req);
        }
    s_resume_batch (self, true);
    s_mhd_run (self);
    return self->requests == 0;
}

size_t
gateway_busy (gateway_t *self)
{
    return self->requests;
}

int
gateway_port (gateway_t *self)
{
    return self->port;
}

void
gateway_destroy (gateway_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    gateway_t *self = *self_p;
    evloop_timer_cancel (self->loop, &self->ping_timer);
    evloop_timer_cancel (self->loop, &self->recheck_timer);
    evloop_timer_cancel (self->loop, &self->resend_timer);
    evloop_timer_cancel (self->loop, &self->mhd_timer);
    evloop_timer_cancel (self->loop, &self->resume_timer);
    if (self->daemon) {
        // Every suspended connection must be resumed before the daemon
        // stops (an MHD rule): answer what waits, end every stream.
        for (request_t *req = self->live; req; req = req->live_next) {
            s_pending_drop (req);
            s_waiter_remove (req);
            for (size_t i = 0; i < req->items_count; i++)
                if (req->items[i])
                    s_pending_drop (req->items[i]);
            if (req->sse_started) {
                req->sse_done = true;
                s_sse_wake (req);
            }
            else if (!req->answered)
                s_broker_unavailable (req);
            if (req->suspended)
                s_resume_now (req);
        }
        self->resume_list = NULL;
        MHD_run (self->daemon);
        evloop_fd_remove (self->loop, self->mhd_epoll_fd);
        MHD_stop_daemon (self->daemon);
    }
    frontdoor_destroy (&self->door);
    if (self->broker)
        evloop_sock_remove (self->loop, self->broker);
    if (self->events)
        evloop_sock_remove (self->loop, self->events);
    evloop_on_idle (self->loop, NULL, NULL);
    proto_batch_destroy (&self->outbox);
    zsock_destroy (&self->broker);
    zsock_destroy (&self->events);
    zhashx_destroy (&self->pending);
    zhashx_destroy (&self->waiters);
    zhashx_destroy (&self->by_fd);
    jobcache_destroy (&self->cache);
    for (size_t i = 0; i < self->hosts_count; i++)
        free (self->hosts[i]);
    free (self->hosts);
    free (self);
    *self_p = NULL;
}
