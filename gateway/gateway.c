// gateway — the HTTP API (SPEC §3): one request's life, from its route to
// its answer, and the wiring of the modules that own the rest.
#include "gateway.h"
#include "batch.h"
#include "brokerclient.h"
#include "frontdoor.h"
#include "headers.h"
#include "jobcache.h"
#include "jobspec.h"
#include "jsontext.h"
#include "listenaddr.h"
#include "listpage.h"
#include "log.h"
#include "mem.h"
#include "metrics.h"
#include "mhdloop.h"
#include "openai.h"
#include "problem.h"
#include "routes.h"
#include "sse.h"
#include "waiters.h"

#include <arpa/inet.h>
#include <assert.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

// Longest wait a client may ask for (SPEC §3: ?wait=N ≤ 60 s).
#define MAX_WAIT_S 60
// How long an OpenAI-compatible call waits for its job (SPEC §3.1): as long
// as OpenAI's SDKs wait by default (10 minutes); then 504 names the job,
// which goes on.
#define DOOR_WAIT_S 600
// A waiter parked this long without reading its job reads it again, in case
// an event was lost in a way the sequence numbers cannot show (e.g. a
// reconnecting SUB). Only those: rereading every waiter each period cost a
// GET per parked request (4,000 parked → 400 extra GETs/s).
#define WAITER_RECHECK_MS 10000
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
// How often an idle event stream gets a comment, so proxies keep it open
// and a client that left is noticed (a suspended connection is not).
#define SSE_KEEPALIVE_MS 15000
// The most the HTTP server asks at once of an event stream.
#define SSE_BLOCK 4096

// What a routed request waits for.
typedef enum { OP_NONE, OP_SUBMIT, OP_GET, OP_CANCEL, OP_RETRY, OP_LIST, OP_PROVIDERS,
               OP_BATCH, OP_USAGE, OP_STATS, OP_SPEC } op_t;

typedef struct _request_t request_t;

// One HTTP request, from its first byte to its completion.
struct _request_t {
    gateway_t *gateway;             // owner
    request_t *live_prev;           // neighbours among all live requests
    request_t *live_next;
    mhdloop_conn_t conn;            // its connection and whether it is parked (mhdloop.h)
    int fd;                         // the connection's socket in MHD, -1 if unknown
    char *body;                     // request body received so far
    size_t body_size;               // bytes in body
    size_t body_capacity;           // allocated bytes
    bool body_too_large;            // over max_body_bytes: discarded
    op_t op;                        // what the request waits for
    uint64_t call;                  // its call to the broker in flight, 0 = none
    bool read_again;                // an event came while a call was in flight: read
                                    // the job again once it is answered
    char job_id[JOB_ID_LEN + 1];    // the job concerned
    char *tenant;                   // caller's tenant
    bool is_operator;               // the caller may see internal topology
    waiter_t waiter;                // parked on job_id (waiters.h)
    int wait_s;                     // requested wait (0 = none)
    bool prefer_wait;               // POST with Prefer: wait=N
    int64_t created_at;             // submitted job's created_at
    int64_t started_ms;             // monotonic time the request was routed
    evloop_timer_t *timer;          // submit timeout or wait deadline
    jobtext_t *last_job;            // last job object seen (rendered), for deadlines
    // The answer, once decided (sent when MHD calls us again after resume).
    bool answered;                  // status and one answer_* hold the response
    unsigned int status;            // HTTP status
    char *answer_body;              // response body
    jobtext_t *answer_job;          // or: a rendered job, sent without a copy
    listpage_t *answer_list;        // or: a list page, rendered as it is sent
    const char *content_type;       // its type
    bool with_location;             // add Location + Retry-After
    bool preference_applied;        // add Preference-Applied: wait=N
    int retry_after_s;              // Retry-After on 429/503, 0 = none
    const char *allow;              // Allow header of a 405
    batch_t *batch;                 // POST /v1/batch: its items and their answers
    sse_t *sse;                     // GET /v1/jobs/{id}/events: the stream
    bool streaming;                 // the stream's 200 is queued
    bool door;                      // an OpenAI-compatible call (SPEC §3.1): its errors
                                    // in OpenAI's shape, its answer the upstream's
    openai_stream_t *door_stream;   // a streamed OpenAI call: the relay (openai.h)
    evloop_timer_t *keepalive;      // the stream's keep-alive comments
};

struct _gateway_t {
    const config_t *config;         // borrowed configuration
    evloop_t *loop;                 // borrowed event loop
    frontdoor_t *door;              // listening socket and client connections
    mhdloop_t *http;                // the HTTP server on the loop
    brokerclient_t *broker;         // calls to the broker, its liveness and events
    curve_t *curve;                 // CURVE of the broker sockets (security.curve)
    waiters_t *waiters;             // requests parked on a job
    jobcache_t *cache;              // finished jobs seen
    char **hosts;                   // Host names answered (open mode or allowed_hosts)
    size_t hosts_count;             // entries in hosts; 0 = any Host
    request_t **by_fd;              // MHD socket → its request, for clients that leave
                                    // (sockets are small numbers: an array)
    size_t by_fd_size;              // entries in by_fd
    request_t *live;                // every live request, so none is left
                                    // parked when the gateway drains or stops
    size_t requests;                // live requests
    uint64_t answers[600];          // HTTP answers by status code (metrics)
    uint64_t accepted;              // jobs acknowledged by the broker (metrics)
    uint64_t clients_gone;          // parked requests ended because their client left
    uint64_t sse_held_back;         // times a stream held chunks back (slow reader)
    uint64_t answered_from_events;  // waiters answered from an end event's record
    evloop_timer_t *recheck_timer;  // repeating: waiters that have not read their job
    int64_t started_s;              // wall time the gateway started (the models' "created")
    bool draining;                  // SIGTERM seen
};

// The OpenAPI document and the dashboard, embedded at build time
// (scripts/embed.py) so the gateway needs no files at run time.
extern const char asset_openapi[];
extern const size_t asset_openapi_size;
extern const char asset_dashboard[];
extern const size_t asset_dashboard_size;

// --- answers ---

// s_answer_text sets the response of req (body_owned: its body, taken) and
// lets its connection go on if it was parked. The first answer wins.
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
    mhdloop_resume (req->gateway->http, &req->conn);
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
    s_answer_text (req, status, text, "application/json");
}

// s_answer_problem answers an error: problem details (RFC 9457), or for an
// OpenAI-compatible call OpenAI's error shape, which its SDKs read.
static void
s_answer_problem (request_t *req, int status, const char *slug, const char *detail,
                  json_t *errors)
{
    if (req->door) {
        s_answer_text (req, (unsigned) status, openai_problem_text ((unsigned) status, slug,
                                                                    detail, errors),
                       "application/json");
        json_decref (errors);
        return;
    }
    json_t *problem = problem_new (status, slug, detail, errors);
    s_answer_text (req, (unsigned) status, json_dumps (problem, JSON_COMPACT),
                   "application/problem+json");
    json_decref (problem);
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

// s_park suspends req until its answer (or next event) comes.
static void
s_park (request_t *req)
{
    if (!req->answered)
        mhdloop_suspend (req->gateway->http, &req->conn);
}

// --- calls to the broker ---

static void s_request_timer (evloop_t *loop, void *arg);
static void s_broker_answer (proto_msg_t *msg, void *owner);

// s_call sends a request for req to the broker: it is kept and sent again
// until answered (brokerclient.h) or req stops waiting for it.
static void
s_call (request_t *req, op_t op, proto_cmd_t cmd, pack_writer_t *body)
{
    req->op = op;
    brokerclient_call (req->gateway->broker, cmd, body, req->job_id[0] ? req->job_id : NULL,
                       s_broker_answer, req, &req->call);
}

// s_call_and_park sends a one-shot request for req and parks req until the
// answer or the submit timeout.
static void
s_call_and_park (request_t *req, op_t op, proto_cmd_t cmd, pack_writer_t *body)
{
    s_call (req, op, cmd, body);
    req->timer = evloop_timer_start (req->gateway->loop, req->gateway->config->submit_timeout_ms,
                                     s_request_timer, req);
    s_park (req);
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

// s_read_job reads req's job from the broker (GET): the store is the truth.
// With a call of req in flight (a GET, or the SUBMIT of a Prefer: wait),
// what its answer says may predate whatever woke req: it is read again
// once that answer is in. Every wake-up of a waiter comes here.
static void
s_read_job (request_t *req)
{
    if (req->call) {
        req->read_again = true;
        return;
    }
    req->read_again = false;
    pack_writer_t *body = pack_writer_new ();
    pack_put_str (body, "id", req->job_id);
    // The broker answers only the caller's tenant's jobs (§3.1).
    pack_put_str (body, "tenant", req->tenant ? req->tenant : "");
    if (req->sse)
        pack_put_bool (body, "with_chunks", true);
    waiters_read (&req->waiter, evloop_now_ms (req->gateway->loop));
    s_call (req, OP_GET, PROTO_GET, body);
    pack_writer_destroy (&body);
}

// s_wake is s_read_job for a waiter (waiters_each).
static void
s_wake (waiter_t *waiter, void *arg)
{
    s_read_job (waiter->owner);
}

// s_wait makes req a waiter on its job (before it asks the broker, so that
// an event racing the answer is not missed).
static void
s_wait (request_t *req)
{
    gateway_t *self = req->gateway;
    waiters_add (self->waiters, &req->waiter, req->job_id, req, evloop_now_ms (self->loop));
}

// s_stop_waiting takes req off its job's waiters.
static void
s_stop_waiting (request_t *req)
{
    waiters_remove (req->gateway->waiters, &req->waiter);
}

// --- Server-Sent Events (GET /v1/jobs/{id}/events; the stream: sse.h) ---

// s_stream_wake lets the HTTP server read what the stream holds.
static void
s_stream_wake (request_t *req)
{
    if (req->streaming)
        mhdloop_resume (req->gateway->http, &req->conn);
}

// s_stream_ended is true when req's stream (an event stream or an OpenAI
// relay) takes nothing more.
static bool
s_stream_ended (request_t *req)
{
    return req->door_stream ? openai_stream_ended (req->door_stream) : sse_ended (req->sse);
}

// s_stream_end ends req's stream after what it holds (drain, deadline,
// client gone, or it is complete): it stops waiting and keeping alive.
static void
s_stream_end (request_t *req)
{
    if (req->door_stream) {
        char message[160];
        snprintf (message, sizeof message, "the stream was interrupted; the job goes on: "
                  "GET /v1/jobs/%s", req->job_id);
        openai_stream_end (req->door_stream, message);
    }
    else
        sse_end (req->sse);
    s_stop_waiting (req);
    evloop_timer_cancel (req->gateway->loop, &req->keepalive);
    s_stream_wake (req);
}

// s_stream_held_back counts a stream that went behind its client.
static void
s_stream_held_back (request_t *req, sse_chunk_t outcome)
{
    if (outcome != SSE_CHUNK_HELD_BACK)
        return;
    log_debug (req->job_id, "event stream client reads slowly; chunks held back");
    req->gateway->sse_held_back++;
}

static void
s_stream_keepalive (evloop_t *loop, void *arg)
{
    request_t *req = arg;
    if (req->door_stream)
        openai_stream_comment (req->door_stream, "keep-alive");
    else
        sse_comment (req->sse, "keep-alive");
    s_stream_wake (req);
}

// s_stream_read is the stream's content reader: what the stream holds, or,
// with nothing to hand over, the connection parks until the next event
// (libmicrohttpd allows suspending from here).
static ssize_t
s_stream_read (void *cls, uint64_t pos, char *buf, size_t max)
{
    request_t *req = cls;
    size_t n = req->door_stream ? openai_stream_read (req->door_stream, buf, max)
                                : sse_read (req->sse, buf, max);
    if (n > 0)
        return (ssize_t) n;
    if (req->door_stream ? openai_stream_over (req->door_stream) : sse_over (req->sse))
        return MHD_CONTENT_READER_END_OF_STREAM;
    if (req->sse && sse_stale (req->sse) && !req->call)
        s_read_job (req);   // the client caught up: fetch the chunks held back
    mhdloop_suspend (req->gateway->http, &req->conn);
    return 0;
}

// s_stream_start queues req's stream's 200 (once): what the stream holds
// is read as it comes.
static void
s_stream_start (request_t *req)
{
    gateway_t *self = req->gateway;
    if (req->streaming)
        return;
    req->streaming = true;
    req->answered = true;
    req->status = 200;
    evloop_timer_cancel (self->loop, &req->timer);
    req->keepalive = evloop_timer_every (self->loop, SSE_KEEPALIVE_MS, s_stream_keepalive, req);
    mhdloop_resume (self->http, &req->conn);
}

// s_stream_job applies a fresh job record to req's stream, starting it on
// the first (the job is the caller's: the stream's 200 can go).
static void
s_stream_job (request_t *req, const job_t *job, proto_msg_t *msg)
{
    if (sse_ended (req->sse))
        return;
    s_stream_start (req);
    size_t size = 0;
    const char *chunks = pack_get_str (msg->body, "chunks", &size);
    s_stream_held_back (req, sse_job (req->sse, job, chunks, size, req->last_job));
    if (sse_ended (req->sse))
        s_stream_end (req);
    else if (req->read_again) {
        // An event came while this was read: it may be newer.
        sse_set_stale (req->sse);
        s_read_job (req);
    }
    s_stream_wake (req);
}

// --- the request's deadline ---

// s_request_deadline answers req with what is known when its time is up
// (or the gateway drains): a submission the broker never acknowledged
// 503, a Prefer: wait its 202, a long poll the job as last read.
static void
s_request_deadline (request_t *req)
{
    gateway_t *self = req->gateway;
    evloop_timer_cancel (self->loop, &req->timer);
    if (req->batch) {
        s_answer_json (req, 202, batch_body (req->batch));
        return;
    }
    if (req->streaming) {
        s_stream_end (req);
        return;
    }
    s_stop_waiting (req);
    brokerclient_cancel (self->broker, &req->call);
    if (req->op == OP_SUBMIT && !req->created_at) {
        // The broker never acknowledged: the job may or may not exist, but
        // it was not durably accepted as far as the client can know.
        log_warn (req->job_id, "broker did not acknowledge the submission in time");
        s_broker_unavailable (req);
    }
    else if (req->door && req->prefer_wait) {
        // The job goes on; the caller can fetch it.
        unsigned status = self->draining ? 503 : 504;
        char message[200];
        snprintf (message, sizeof message, "%s; the job goes on: GET /v1/jobs/%s",
                  self->draining ? "this gateway is shutting down"
                                 : "the job did not finish within 600 s", req->job_id);
        s_answer_text (req, status, openai_error_text (status, message, NULL,
                                                       self->draining ? "shutting_down"
                                                                      : "job_timeout"),
                       "application/json");
    }
    else if (req->prefer_wait) {
        req->with_location = true;
        s_answer_json (req, 202, s_accepted_body (req, "queued"));
    }
    else if (req->last_job)
        s_answer_job (req, 200, req->last_job);
    else if (req->op == OP_GET) {
        const char *owner = NULL;
        jobtext_t *cached = jobcache_get (self->cache, req->job_id, &owner);
        if (cached && strcmp (owner, req->tenant) == 0)
            s_answer_job (req, 200, cached);
        else
            s_broker_unavailable (req);
    }
    else
        s_broker_unavailable (req);
}

// s_request_timer is req's deadline timer (one-shot: gone once fired).
static void
s_request_timer (evloop_t *loop, void *arg)
{
    request_t *req = arg;
    req->timer = NULL;
    s_request_deadline (req);
}

// --- the broker's answers ---

// s_door_job applies a fresh record of the job of an OpenAI-compatible
// call: a relay under way takes it; otherwise, once the job is finished,
// the answer is the upstream's (openai.h) — a streamed call that succeeded
// before any chunk came is relayed whole.
static void
s_door_job (request_t *req, const job_t *job, bool terminal)
{
    if (req->streaming) {
        openai_stream_job (req->door_stream, job);
        if (openai_stream_ended (req->door_stream))
            s_stream_end (req);
        s_stream_wake (req);
        return;
    }
    if (!terminal) {
        if (req->read_again)
            s_read_job (req);
        return;
    }
    s_stop_waiting (req);
    if (req->door_stream && job->status == JOB_SUCCEEDED) {
        openai_stream_job (req->door_stream, job);
        s_stream_start (req);
        s_stream_end (req);
        return;
    }
    unsigned status;
    const char *content_type;
    char *text = openai_answer (job, &status, &content_type);
    s_answer_text (req, status, text, content_type);
}

// s_on_spec answers GET /v1/jobs/{id}/spec: the job's normalized spec as
// the broker stored it (a JSON object within common/jsontext's policy,
// checked again: it is spliced unparsed).
static void
s_on_spec (request_t *req, const job_t *job)
{
    if (!jsontext_within (job->spec, strlen (job->spec))) {
        log_warn (req->job_id, "stored spec is not within the JSON policy");
        s_broker_unavailable (req);
        return;
    }
    s_answer_text (req, 200, mem_strdup (job->spec), "application/json");
}

// s_take_job applies a fresh record of req's job (the broker's JOB answer,
// or the record a job's end event carries, s_on_event): msg is the JOB
// answer (NULL for an event's record).
static void
s_take_job (request_t *req, const job_t *job, proto_msg_t *msg)
{
    gateway_t *self = req->gateway;
    if (strcmp (job->tenant, req->tenant) != 0) {
        // Another tenant's job does not exist for this caller.
        s_answer_problem (req, 404, "not-found", "no such job", NULL);
        return;
    }
    if (req->op == OP_SPEC) {
        s_on_spec (req, job);
        return;
    }
    jobtext_unref (&req->last_job);
    char *rendered = job_render (job);
    req->last_job = jobtext_new (rendered, strlen (rendered));
    bool terminal = job_status_terminal (job->status);
    if (terminal)
        jobcache_put (self->cache, job->id, job->tenant, req->last_job);
    else
        jobcache_forget (self->cache, job->id);
    if (req->door) {
        s_door_job (req, job, terminal);
        return;
    }
    if (req->sse) {
        s_stream_job (req, job, msg);
        return;
    }
    if (req->op == OP_RETRY) {
        // Accepted again: answered like a submission.
        req->created_at = clock_wall_ms ();
        req->with_location = true;
        s_answer_job (req, 202, req->last_job);
        return;
    }
    if (req->waiter.linked && !terminal) {
        if (req->read_again)
            s_read_job (req);
        return;
    }
    s_stop_waiting (req);
    req->preference_applied = req->prefer_wait;
    s_answer_job (req, 200, req->last_job);
}

static void
s_on_job (request_t *req, proto_msg_t *msg)
{
    job_t *job = job_unpack (msg->body);
    if (!job) {
        log_warn (req->job_id, "malformed JOB from broker");
        s_broker_unavailable (req);
        return;
    }
    s_take_job (req, job, msg);
    job_destroy (&job);
}

static void
s_on_submit_ok (request_t *req, proto_msg_t *msg)
{
    gateway_t *self = req->gateway;
    int64_t created_at = 0;
    pack_get_int (msg->body, "created_at", &created_at);
    char *status = pack_get_strdup (msg->body, "status");
    req->created_at = created_at > 0 ? created_at : clock_wall_ms ();
    int status_value = status ? job_status_parse (status) : JOB_QUEUED;
    // An Idempotency-Key may name an earlier job: that one is the answer.
    size_t id_len;
    const char *id = pack_get_str (msg->body, "id", &id_len);
    if (id && job_id_valid (id, id_len) && memcmp (id, req->job_id, JOB_ID_LEN) != 0) {
        bool was_waiting = req->waiter.linked;
        s_stop_waiting (req);
        memcpy (req->job_id, id, JOB_ID_LEN);
        if (was_waiting)
            s_wait (req);
        log_info (req->job_id, "idempotent resubmission: answering with the original job");
    }
    log_debug (req->job_id, "accepted");
    self->accepted++;
    if (req->prefer_wait) {
        // Stay parked until the job finishes or the client's wait runs out;
        // the waiter was registered before the SUBMIT.
        evloop_timer_cancel (self->loop, &req->timer);
        int64_t left = req->started_ms + (int64_t) req->wait_s * 1000 - evloop_now_ms (self->loop);
        if (!req->streaming)    // an OpenAI relay under way ends with its job
            req->timer = evloop_timer_start (self->loop, left, s_request_timer, req);
        req->op = OP_GET;
        if ((status_value >= 0 && job_status_terminal ((job_status_t) status_value))
            || req->read_again)
            s_read_job (req);
        free (status);
        return;
    }
    req->with_location = true;
    s_answer_json (req, 202, s_accepted_body (req, status ? status : "queued"));
    free (status);
}

static void
s_on_list (request_t *req, proto_msg_t *msg)
{
    req->answer_list = listpage_new (msg->body, req->tenant);
    s_answer_text (req, 200, NULL, "application/json");
}

// What a caller who is not an operator sees of a provider: its name, its
// limits and its live state — nothing of where it is or how it is reached
// (base_url, and whatever a later version adds: an allow-list, not a
// deny-list).
static const char *const s_provider_public_fields[] = {
    "name", "rate_limit", "max_concurrency", "rate", "in_flight", "queued", "circuit",
    "consecutive_failures", "blocked_for_ms", "tenants_paused", "latency_ms", "recent_errors",
    "totals", "tokens_per_minute", "tokens_in_last_minute", "tokens_held_ms", NULL
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

// s_on_json_answer answers with the broker's JSON text: GET /v1/usage its
// totals (SPEC §3.3), GET /v1/stats the dashboard's figures (revision 4,
// docs/protocol.md §3.1.2).
static void
s_on_json_answer (request_t *req, proto_msg_t *msg)
{
    size_t len = 0;
    const char *text = pack_get_str (msg->body, "json", &len);
    if (!text || !jsontext_within (text, len)) {
        s_broker_unavailable (req);
        return;
    }
    s_answer_text (req, 200, mem_strndup (text, len), "application/json");
}

// s_retry_after_s is the Retry-After of a refusal: the broker's
// retry_after_ms when it said (a full store says 5 s), else 1 s.
static int
s_retry_after_s (proto_msg_t *msg)
{
    int64_t retry_after_ms = 1000;
    pack_get_int (msg->body, "retry_after_ms", &retry_after_ms);
    int64_t seconds = (retry_after_ms + 999) / 1000;
    return seconds < 1 ? 1 : seconds > 86400 ? 86400 : (int) seconds;
}

static void
s_on_error (request_t *req, proto_msg_t *msg)
{
    int64_t code = 503;
    pack_get_int (msg->body, "code", &code);
    char *message = pack_get_strdup (msg->body, "message");
    s_stop_waiting (req);
    if (code == 404)
        s_answer_problem (req, 404, "not-found", "no such job", NULL);
    else if (code == 409)
        s_answer_problem (req, 409, "conflict", message ? message : "conflict", NULL);
    else if (code == 400)
        s_answer_problem (req, 400, "invalid-job", message ? message : "rejected", NULL);
    else if (code == 429) {
        req->retry_after_s = s_retry_after_s (msg);
        s_answer_problem (req, 429, "over-quota", message ? message : "over quota", NULL);
    }
    else {
        req->retry_after_s = s_retry_after_s (msg);
        s_answer_problem (req, 503, "unavailable", message ? message : "unavailable", NULL);
    }
    free (message);
}

// s_broker_answer takes the broker's answer to a call of req.
static void
s_broker_answer (proto_msg_t *msg, void *owner)
{
    request_t *req = owner;
    if (msg->cmd == PROTO_LIST_OK)
        s_on_list (req, msg);
    else if (msg->cmd == PROTO_PROVIDERS_OK)
        s_on_providers (req, msg);
    else if (msg->cmd == PROTO_USAGE_OK || msg->cmd == PROTO_STATS_OK)
        s_on_json_answer (req, msg);
    else if (msg->cmd == PROTO_ERROR && req->op == OP_STATS)
        s_broker_unavailable (req);     // a revision 3 broker: no STATS
    else if (msg->cmd == PROTO_SUBMIT_OK)
        s_on_submit_ok (req, msg);
    else if (msg->cmd == PROTO_JOB)
        s_on_job (req, msg);
    else if (msg->cmd == PROTO_ERROR)
        s_on_error (req, msg);
    else
        log_warn (req->job_id, "broker: unexpected %s", proto_cmd_name (msg->cmd));
}

// --- the broker's events ---

// s_takes_event_record is true when req, waiting on its job, takes the
// record an end event carries as it would the JOB answer of a GET: it
// reads its job now (no GET under way whose answer could be older) and
// needs nothing but the record (an event stream replays the chunks a GET
// brings).
static bool
s_takes_event_record (const request_t *req)
{
    return req->op == OP_GET && !req->call && !req->sse;
}

// s_take_event_record answers the waiters of a job that ended from the
// committed record its end event carries (docs/protocol.md §3.3), instead
// of each reading the job back: two hops fewer for a client held until
// its job ends. A waiter that cannot take it reads the job as before.
static void
s_take_event_record (gateway_t *self, const brokerclient_event_t *event)
{
    job_t *job = NULL;
    size_t count = 0;
    waiter_t *next;
    // Each taker leaves the list as it is answered: walk with the next one
    // saved.
    for (waiter_t *waiter = waiters_first (self->waiters, event->id); waiter; waiter = next) {
        next = waiter->next;
        request_t *req = waiter->owner;
        if (!s_takes_event_record (req))
            continue;
        if (!job) {
            pack_reader_t *reader = pack_reader_new (event->record, event->record_len);
            job = reader ? job_unpack (reader) : NULL;
            pack_reader_destroy (&reader);
            if (!job || memcmp (job->id, event->id, JOB_ID_LEN) != 0
                || !job_status_terminal (job->status)) {
                log_warn (event->id, "malformed record in an end event; the job is read instead");
                job_destroy (&job);
                return;
            }
        }
        s_take_job (req, job, NULL);
        s_stop_waiting (req);     // answered: not woken by the caller
        count++;
    }
    if (job)
        log_debug (job->id, "ended: %zu waiter(s) answered from the end event", count);
    self->answered_from_events += count;
    job_destroy (&job);
}

// s_on_event wakes the waiters of the event's job: a stream takes a chunk
// or a status as it comes (the event names the attempt's identity its event
// id carries); a terminal status wakes every waiter of the job, which reads
// it for the result.
static void
s_on_event (const brokerclient_event_t *event, void *arg)
{
    gateway_t *self = arg;
    bool terminal = event->status >= 0 && job_status_terminal ((job_status_t) event->status);
    if (event->status >= 0 && !terminal)
        jobcache_forget (self->cache, event->id);
    waiter_t *first = waiters_first (self->waiters, event->id);
    if (!first)
        return;
    for (waiter_t *waiter = first; waiter; waiter = waiter->next) {
        request_t *req = waiter->owner;
        if (req->door_stream) {
            // An OpenAI relay takes the chunks; its first starts the stream.
            if (event->is_chunk && event->data && event->index >= 0
                && openai_stream_chunk (req->door_stream, event->attempt, event->index,
                                        event->data, event->data_len)) {
                s_stream_start (req);
                s_stream_wake (req);
            }
            continue;
        }
        if (!req->streaming || sse_ended (req->sse))
            continue;
        if (event->is_chunk && event->data && event->index >= 0) {
            s_stream_held_back (req, sse_chunk (req->sse, event->attempt, event->index,
                                                event->data, event->data_len));
            s_stream_wake (req);
        }
        else if (event->is_status && event->status >= 0 && !terminal && event->attempt >= 0) {
            sse_status (req->sse, (job_status_t) event->status, (int) event->attempts,
                        event->attempt);
            s_stream_wake (req);
        }
        else if (event->is_status && event->status >= 0 && !terminal) {
            // A broker that does not name the attempt: only the record does.
            sse_set_stale (req->sse);
            s_read_job (req);
        }
    }
    if (terminal && event->record)
        s_take_event_record (self, event);
    if (terminal)
        waiters_each (self->waiters, event->id, evloop_now_ms (self->loop), 0, s_wake, NULL);
}

// s_on_gap: events were lost; every waiter reads its job.
static void
s_on_gap (void *arg)
{
    gateway_t *self = arg;
    waiters_each (self->waiters, NULL, evloop_now_ms (self->loop), 0, s_wake, NULL);
}

// s_recheck_tick makes every waiter that has not read its job for
// WAITER_RECHECK_MS read it.
static void
s_recheck_tick (evloop_t *loop, void *arg)
{
    gateway_t *self = arg;
    waiters_each (self->waiters, NULL, evloop_now_ms (loop), WAITER_RECHECK_MS, s_wake, NULL);
}

// --- POST /v1/batch (batch.h) ---

// s_batch_item_answer takes the broker's answer to one item; the batch is
// answered when it has them all.
static void
s_batch_item_answer (proto_msg_t *msg, void *owner)
{
    batch_item_t *item = owner;
    if (batch_answer (item, msg)) {
        request_t *req = batch_owner (item->batch);
        s_answer_json (req, 202, batch_body (req->batch));
    }
}

// s_batch_cancel stops waiting for the items of req's batch.
static void
s_batch_cancel (request_t *req)
{
    for (size_t i = 0; req->batch && i < batch_count (req->batch); i++) {
        batch_item_t *item = batch_item (req->batch, i);
        if (item)
            brokerclient_cancel (req->gateway->broker, &item->call);
    }
}

// --- HTTP handling ---

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
    MHD_get_connection_values (req->conn.connection, MHD_HEADER_KIND, s_header_line, &lines);
    return lines;
}

// s_header returns the value of header name of req, or NULL.
static const char *
s_header (request_t *req, const char *name)
{
    return MHD_lookup_connection_value (req->conn.connection, MHD_HEADER_KIND, name);
}

// s_query returns the value of query parameter name of req, or NULL.
static const char *
s_query (request_t *req, const char *name)
{
    return MHD_lookup_connection_value (req->conn.connection, MHD_GET_ARGUMENT_KIND, name);
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
        req->tenant = mem_strdup ("");
        req->is_operator = true;
        return true;
    }
    const char *header = s_header (req, MHD_HTTP_HEADER_AUTHORIZATION);
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
    req->tenant = mem_strdup (tenant);
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

// s_check_json_post answers 415/413 when the body is not acceptable JSON;
// returns false then.
static bool
s_check_json_post (request_t *req)
{
    const char *content_type = s_header (req, MHD_HTTP_HEADER_CONTENT_TYPE);
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

// s_check_submission checks a submission's type and size
// (s_check_json_post) and takes its Idempotency-Key into *key; false
// (answered) when refused.
static bool
s_check_submission (request_t *req, const char **key)
{
    return s_check_json_post (req) && s_idempotency_key (req, key);
}

// s_job_submission packs job (given its id and the caller's tenant now) as
// a SUBMIT body with its deadline (caller destroys).
static pack_writer_t *
s_job_submission (gateway_t *self, job_t *job, const char *tenant, int64_t created_at)
{
    job_id_generate (job->id);
    job_set_str (&job->tenant, tenant);
    job->created_at = created_at;
    pack_writer_t *body = pack_writer_new ();
    job_pack (job, body);
    pack_put_int (body, "deadline", s_submit_deadline (self, created_at));
    return body;
}

// s_submit sends job (taken) for req with Idempotency-Key key (may be
// NULL) and parks req: a wait_s > 0 keeps it waiting that long for the
// finished job once the broker committed it (s_on_submit_ok).
static void
s_submit (request_t *req, job_t *job, const char *key, int wait_s)
{
    gateway_t *self = req->gateway;
    if (key)
        job_set_str (&job->idempotency_key, key);
    pack_writer_t *body = s_job_submission (self, job, req->tenant, clock_wall_ms ());
    memcpy (req->job_id, job->id, sizeof req->job_id);
    if (wait_s > 0) {
        req->prefer_wait = true;
        req->wait_s = wait_s;
        s_wait (req);
        // The job's end event then carries its record (s_take_event_record).
        pack_put_bool (body, "waiting", true);
    }
    req->started_ms = evloop_now_ms (self->loop);
    s_call_and_park (req, OP_SUBMIT, PROTO_SUBMIT, body);
    pack_writer_destroy (&body);
    job_destroy (&job);
}

// s_handle_submit: POST /v1/jobs. The 202 waits for the broker's commit
// (bounded); a Prefer: wait then waits for the result until its own
// deadline (s_on_submit_ok).
static void
s_handle_submit (request_t *req)
{
    gateway_t *self = req->gateway;
    const char *key;
    if (!s_check_submission (req, &key))
        return;
    json_t *errors = NULL;
    job_t *job = jobspec_parse (req->body ? req->body : "", req->body_size, self->config, &errors);
    if (!job) {
        s_answer_problem (req, 400, "invalid-job", "the job spec is invalid", errors);
        return;
    }
    s_submit (req, job, key, s_prefer_wait (req));
}

// s_handle_openai: POST /v1/chat/completions or /v1/embeddings (SPEC
// §3.1). The call becomes an llm job submitted like POST /v1/jobs; the
// answer waits for the job (up to DOOR_WAIT_S), and a streamed call is
// relayed as its chunks come; Prefer: respond-async answers 202 at once.
static void
s_handle_openai (request_t *req, openai_endpoint_t endpoint)
{
    gateway_t *self = req->gateway;
    const char *key;
    if (!s_check_submission (req, &key))
        return;
    openai_call_t call;
    openai_refusal_t refusal;
    job_t *job = openai_job (endpoint, req->body ? req->body : "", req->body_size, self->config,
                             &call, &refusal);
    if (!job) {
        s_answer_text (req, refusal.status, openai_error_text (refusal.status, refusal.message,
                                                               refusal.param, refusal.code),
                       "application/json");
        return;
    }
    header_lines_t prefer = s_header_lines (req, "Prefer");
    bool async = headers_prefer_respond_async (prefer.values, prefer.count);
    s_submit (req, job, key, async ? 0 : DOOR_WAIT_S);
    if (call.stream && !async)
        req->door_stream = openai_stream_new (req->job_id, &call, clock_wall_ms () / 1000,
                                              self->config->sse_buffer_bytes);
}

// s_handle_models: GET /v1/models, or /v1/models/{id} (SPEC §3.1).
static void
s_handle_models (request_t *req, const char *id)
{
    gateway_t *self = req->gateway;
    if (!id) {
        s_answer_text (req, 200, openai_models_text (self->config, self->started_s),
                       "application/json");
        return;
    }
    char *text = openai_model_text (self->config, id, self->started_s);
    if (text) {
        s_answer_text (req, 200, text, "application/json");
        return;
    }
    char message[OPENAI_MODEL_MAX + 64];
    snprintf (message, sizeof message, "the model '%.256s' does not exist", id);
    s_answer_text (req, 404, openai_error_text (404, message, "model", "model_not_found"),
                   "application/json");
}

// s_job_id takes the job id of a path into req; false (and a 404) when it
// is not one.
static bool
s_job_id (request_t *req, const char *id, size_t id_len)
{
    if (job_id_copy (req->job_id, id, id_len))
        return true;
    s_answer_problem (req, 404, "not-found", "no such job", NULL);
    return false;
}

// s_handle_get: GET /v1/jobs/{id}, ?wait=N or Prefer: wait=N long-polls.
static void
s_handle_get (request_t *req, const char *id, size_t id_len)
{
    gateway_t *self = req->gateway;
    if (!s_job_id (req, id, id_len))
        return;
    const char *wait_arg = s_query (req, "wait");
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
    if (cached && !brokerclient_reachable (self->broker)) {
        if (strcmp (owner, req->tenant) == 0)
            s_answer_job (req, 200, cached);
        else
            s_answer_problem (req, 404, "not-found", "no such job", NULL);
        return;
    }
    if (wait > 0) {
        req->wait_s = wait;
        s_wait (req);
        req->timer = evloop_timer_start (self->loop, (int64_t) wait * 1000, s_request_timer, req);
    }
    else
        req->timer = evloop_timer_start (self->loop, self->config->submit_timeout_ms,
                                         s_request_timer, req);
    s_read_job (req);
    s_park (req);
}

// s_job_command sends CANCEL or RETRY for the job in the path and parks req.
static void
s_job_command (request_t *req, const char *id, size_t id_len, proto_cmd_t cmd, op_t op)
{
    gateway_t *self = req->gateway;
    if (!s_job_id (req, id, id_len))
        return;
    jobcache_forget (self->cache, req->job_id);
    pack_writer_t *body = pack_writer_new ();
    pack_put_str (body, "id", req->job_id);
    pack_put_str (body, "tenant", req->tenant);
    s_call_and_park (req, op, cmd, body);
    pack_writer_destroy (&body);
}

// s_handle_events starts GET /v1/jobs/{id}/events: the stream begins once
// the broker confirms the job belongs to the caller. Last-Event-ID resumes
// after what the client has (sse.h).
static void
s_handle_events (request_t *req, const char *id, size_t id_len)
{
    gateway_t *self = req->gateway;
    if (!s_job_id (req, id, id_len))
        return;
    req->sse = sse_new (self->config->sse_buffer_bytes);
    sse_resume_after (req->sse, s_header (req, "Last-Event-ID"));
    s_wait (req);
    req->timer = evloop_timer_start (self->loop, self->config->submit_timeout_ms,
                                     s_request_timer, req);
    s_read_job (req);
    s_park (req);
}

// s_handle_batch: POST /v1/batch {"jobs": [spec, …]} → 202 with one answer
// per spec, in order (batch.h). Each valid job is submitted like POST
// /v1/jobs (committed before it is reported).
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
    req->batch = batch_new (json_array_size (jobs), req);
    int64_t now = clock_wall_ms ();
    for (size_t i = 0; i < json_array_size (jobs); i++) {
        json_t *item_errors = NULL;
        job_t *job = jobspec_from_json (json_array_get (jobs, i), self->config, &item_errors);
        if (!job) {
            batch_refuse (req->batch, i, problem_new (400, "invalid-job", "the job spec is invalid",
                                                      item_errors));
            continue;
        }
        pack_writer_t *body = s_job_submission (self, job, req->tenant, now);
        batch_item_t *item = batch_submit (req->batch, i, job->id);
        brokerclient_call (self->broker, PROTO_SUBMIT, body, item->job_id, s_batch_item_answer,
                           item, &item->call);
        pack_writer_destroy (&body);
        job_destroy (&job);
    }
    json_decref (root);
    if (batch_waiting (req->batch) == 0) {
        s_answer_json (req, 202, batch_body (req->batch));
        return;
    }
    req->timer = evloop_timer_start (self->loop, self->config->submit_timeout_ms,
                                     s_request_timer, req);
    s_park (req);
}

// s_handle_list: GET /v1/jobs?status=&limit=&cursor= (newest first).
static void
s_handle_list (request_t *req)
{
    const char *status = s_query (req, "status");
    const char *limit_arg = s_query (req, "limit");
    const char *cursor = s_query (req, "cursor");
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
    s_call_and_park (req, OP_LIST, PROTO_LIST, body);
    pack_writer_destroy (&body);
}

// s_handle_providers: GET /v1/providers, the broker's live view.
static void
s_handle_providers (request_t *req)
{
    pack_writer_t *body = pack_writer_new ();
    s_call_and_park (req, OP_PROVIDERS, PROTO_PROVIDERS, body);
    pack_writer_destroy (&body);
}

// s_handle_stats: GET /v1/stats, the dashboard's figures (the last 15
// minutes' throughput, the workers, the jobs' counts): the broker's, across
// tenants, so for operators only.
static void
s_handle_stats (request_t *req)
{
    if (!req->is_operator) {
        s_answer_problem (req, 403, "operator-only",
                          "the broker's figures are for operator keys only", NULL);
        return;
    }
    pack_writer_t *body = pack_writer_new ();
    s_call_and_park (req, OP_STATS, PROTO_STATS, body);
    pack_writer_destroy (&body);
}

// s_handle_spec: GET /v1/jobs/{id}/spec, the job's normalized spec (the
// dashboard's job detail); another tenant's job does not exist.
static void
s_handle_spec (request_t *req, const char *id, size_t id_len)
{
    if (!s_job_id (req, id, id_len))
        return;
    pack_writer_t *body = pack_writer_new ();
    pack_put_str (body, "id", req->job_id);
    pack_put_str (body, "tenant", req->tenant);
    s_call_and_park (req, OP_SPEC, PROTO_GET, body);
    pack_writer_destroy (&body);
}

// s_handle_usage: GET /v1/usage?since=RFC3339, the caller's tenant's LLM
// usage totals per provider and model (SPEC §3.3). The broker keeps them
// per UTC hour: since counts from the start of the hour it falls in.
static void
s_handle_usage (request_t *req)
{
    const char *since_arg = s_query (req, "since");
    int64_t since = 0;
    if (since_arg && clock_rfc3339_parse (since_arg, strlen (since_arg), &since) < 0) {
        json_t *errors = json_pack ("[{s:s, s:s}]", "field", "since", "message",
                                    "must be an RFC 3339 date-time, e.g. 2026-11-30T00:00:00Z");
        s_answer_problem (req, 400, "invalid-parameter", "invalid query parameter", errors);
        return;
    }
    pack_writer_t *body = pack_writer_new ();
    pack_put_str (body, "tenant", req->tenant);
    if (since > 0)
        pack_put_int (body, "since", since);
    s_call_and_park (req, OP_USAGE, PROTO_USAGE, body);
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

// s_handle_metrics: GET /metrics in the Prometheus text format. Every
// figure is read from the module that owns it, and is this gateway's own:
// the jobs', queues' and workers' are the broker's, on its own /metrics
// (broker.metrics_listen), so that a sum over gateways counts nothing twice.
static void
s_handle_metrics (request_t *req)
{
    gateway_t *self = req->gateway;
    zchunk_t *out = mem_lib (zchunk_new (NULL, 4096));
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
    brokerclient_stats_t broker = brokerclient_stats (self->broker);
    s_metric (out, "jobgate_jobs_accepted_total", "counter",
              "Jobs the broker acknowledged through this gateway.", (double) self->accepted);
    s_metric (out, "jobgate_http_requests_in_progress", "gauge",
              "HTTP requests being handled, parked ones included.", (double) self->requests);
    s_metric (out, "jobgate_parked_requests", "gauge",
              "Requests parked on a job (long-poll, Prefer: wait, event streams).",
              (double) waiters_count (self->waiters));
    s_metric (out, "jobgate_events_total", "counter", "Job events received from the broker.",
              (double) broker.events);
    s_metric (out, "jobgate_event_gaps_total", "counter",
              "Gaps in the broker's event sequence (waiters re-read the store).",
              (double) broker.gaps);
    s_metric (out, "jobgate_broker_up", "gauge", "1 when the broker answered in the last 3 s.",
              broker.reachable ? 1 : 0);
    s_metric (out, "jobgate_sse_held_back_total", "counter",
              "Times an event stream held chunks back for a slow reader (sent later, in order).",
              (double) self->sse_held_back);
    s_metric (out, "jobgate_answered_from_events_total", "counter",
              "Requests held until their job ended, answered from the record its end event "
              "carried (no read back).", (double) self->answered_from_events);
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
    char *process = metrics_process_text ("gateway");
    zchunk_extend (out, process, strlen (process));
    free (process);
    char *text = mem_strndup ((const char *) zchunk_data (out), zchunk_size (out));
    zchunk_destroy (&out);
    s_answer_text (req, 200, text, "text/plain; version=0.0.4");
}

static void
s_handle_readyz (request_t *req)
{
    gateway_t *self = req->gateway;
    brokerclient_stats_t broker = brokerclient_stats (self->broker);
    bool ready = broker.reachable && broker.workers > 0 && !self->draining;
    json_t *body = json_pack ("{s:s, s:b, s:I}", "status", ready ? "ready" : "not ready",
                              "broker", broker.reachable, "workers", (json_int_t) broker.workers);
    s_answer_json (req, ready ? 200 : 503, body);
    if (!ready)
        req->retry_after_s = 1;
}

// s_method_not_allowed answers 405 with the methods path takes.
static void
s_method_not_allowed (request_t *req, const char *allow, const char *detail)
{
    req->allow = allow;
    s_answer_problem (req, 405, "method-not-allowed", detail, NULL);
}

// s_shutting_down answers 503 when the gateway drains; true then.
static bool
s_shutting_down (request_t *req)
{
    if (!req->gateway->draining)
        return false;
    req->retry_after_s = 1;
    s_answer_problem (req, 503, "shutting-down", "this gateway is shutting down", NULL);
    return true;
}

// s_route decides what a complete request gets, by the one table of paths
// (gateway/routes.h): no such path is 404 whatever the method; a method the
// path does not take is 405 with Allow. The probes and the documents take
// no key; the API authenticates first and, while the gateway drains, takes
// no new work.
static void
s_route (request_t *req, const char *url, const char *method)
{
    route_t route = routes_match (url, method);
    if (route.id == ROUTE_NONE) {
        s_answer_problem (req, 404, "not-found", "no such resource", NULL);
        return;
    }
    if (route.authenticated && !s_authenticate (req))
        return;
    if (route.takes_work && s_shutting_down (req))
        return;
    if (!route.method_allowed) {
        char detail[96];
        snprintf (detail, sizeof detail, "use %s %s", route.allow, route.template);
        s_method_not_allowed (req, route.allow, detail);
        return;
    }
    switch (route.id) {
    case ROUTE_HEALTHZ:
        s_answer_json (req, 200, json_pack ("{s:s}", "status", "ok"));
        break;
    case ROUTE_OPENAPI:
        s_answer_text (req, 200, mem_strndup (asset_openapi, asset_openapi_size),
                       "application/json");
        break;
    case ROUTE_DASHBOARD:
        s_answer_text (req, 200, mem_strndup (asset_dashboard, asset_dashboard_size),
                       "text/html; charset=utf-8");
        break;
    case ROUTE_METRICS:
        s_handle_metrics (req);
        break;
    case ROUTE_READYZ:
        s_handle_readyz (req);
        break;
    case ROUTE_PROVIDERS:
        s_handle_providers (req);
        break;
    case ROUTE_USAGE:
        s_handle_usage (req);
        break;
    case ROUTE_STATS:
        s_handle_stats (req);
        break;
    case ROUTE_CHAT:
        s_handle_openai (req, OPENAI_CHAT);
        break;
    case ROUTE_EMBEDDINGS:
        s_handle_openai (req, OPENAI_EMBEDDINGS);
        break;
    case ROUTE_MODELS:
        s_handle_models (req, NULL);
        break;
    case ROUTE_MODEL:
        s_handle_models (req, route.param);
        break;
    case ROUTE_BATCH:
        s_handle_batch (req);
        break;
    case ROUTE_JOBS:
        if (strcmp (method, "POST") == 0)
            s_handle_submit (req);
        else
            s_handle_list (req);
        break;
    case ROUTE_JOB:
        if (strcmp (method, "DELETE") == 0)
            s_job_command (req, route.param, route.param_len, PROTO_CANCEL, OP_CANCEL);
        else
            s_handle_get (req, route.param, route.param_len);
        break;
    case ROUTE_JOB_EVENTS:
        s_handle_events (req, route.param, route.param_len);
        break;
    case ROUTE_JOB_SPEC:
        s_handle_spec (req, route.param, route.param_len);
        break;
    case ROUTE_JOB_RETRY:
        s_job_command (req, route.param, route.param_len, PROTO_RETRY, OP_RETRY);
        break;
    default:
        s_answer_problem (req, 404, "not-found", "no such resource", NULL);
    }
}

// --- answers to the HTTP server ---

// s_job_text_release is the free callback of a response that sends a
// shared rendered job.
static void
s_job_text_release (void *cls)
{
    jobtext_t *text = cls;
    jobtext_unref (&text);
}

// s_list_read is a list page's content reader (listpage.h).
static ssize_t
s_list_read (void *cls, uint64_t pos, char *buf, size_t max)
{
    size_t n = listpage_read (cls, buf, max);
    return n > 0 ? (ssize_t) n : MHD_CONTENT_READER_END_OF_STREAM;
}

static void
s_list_release (void *cls)
{
    listpage_t *page = cls;
    listpage_destroy (&page);
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
        listpage_t *page = req->answer_list;
        req->answer_list = NULL;
        return MHD_create_response_from_callback (MHD_SIZE_UNKNOWN, STREAM_BLOCK, s_list_read,
                                                  page, s_list_release);
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
    if (req->streaming) {
        struct MHD_Response *stream = MHD_create_response_from_callback (
            MHD_SIZE_UNKNOWN, SSE_BLOCK, s_stream_read, req, NULL);
        MHD_add_response_header (stream, MHD_HTTP_HEADER_CONTENT_TYPE, "text/event-stream");
        MHD_add_response_header (stream, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache");
        MHD_add_response_header (stream, "X-Accel-Buffering", "no");
        if (req->door)
            MHD_add_response_header (stream, "X-Jobgate-Job-Id", req->job_id);
        enum MHD_Result rc = MHD_queue_response (req->conn.connection, 200, stream);
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
    if (req->door && req->job_id[0])
        MHD_add_response_header (response, "X-Jobgate-Job-Id", req->job_id);
    if (req->status == 401)
        MHD_add_response_header (response, MHD_HTTP_HEADER_WWW_AUTHENTICATE, "Bearer");
    if (req->status == 405)
        MHD_add_response_header (response, MHD_HTTP_HEADER_ALLOW, req->allow ? req->allow : "GET");
    enum MHD_Result rc = MHD_queue_response (req->conn.connection, req->status, response);
    MHD_destroy_response (response);
    return rc;
}

// s_request_new makes the state of a request on connection.
static request_t *
s_request_new (gateway_t *self, struct MHD_Connection *connection)
{
    request_t *req = mem_calloc (1, sizeof *req);
    req->gateway = self;
    req->conn.connection = connection;
    self->requests++;
    // One request at a time per connection: its socket names it when the
    // front door sees the client leave.
    const union MHD_ConnectionInfo *info
        = MHD_get_connection_info (connection, MHD_CONNECTION_INFO_CONNECTION_FD);
    req->fd = info ? info->connect_fd : -1;
    if (req->fd >= 0) {
        if ((size_t) req->fd >= self->by_fd_size) {
            size_t size = self->by_fd_size ? self->by_fd_size * 2 : 1024;
            while (size <= (size_t) req->fd)
                size *= 2;
            self->by_fd = mem_realloc (self->by_fd, size * sizeof *self->by_fd);
            memset (self->by_fd + self->by_fd_size, 0,
                    (size - self->by_fd_size) * sizeof *self->by_fd);
            self->by_fd_size = size;
        }
        self->by_fd[req->fd] = req;
    }
    req->live_next = self->live;
    if (self->live)
        self->live->live_prev = req;
    self->live = req;
    return req;
}

// s_request_admit refuses a request before its body is read: a Host this
// gateway is not known by (DNS rebinding, issue 17 #8: a web page the
// developer visits can send requests to a local gateway under its own host
// name; browsers always send Host), or a hugely oversized body (a body
// somewhat over the limit is read and dropped so that the client, still
// sending, sees the 413; beyond that the connection closes). False when
// refused (answered).
static bool
s_request_admit (request_t *req)
{
    gateway_t *self = req->gateway;
    const char *host = s_header (req, MHD_HTTP_HEADER_HOST);
    if (self->hosts_count > 0 && host
        && !headers_host_allowed (host, (const char *const *) self->hosts, self->hosts_count)) {
        s_answer_problem (req, 403, "host-not-allowed",
                          "this gateway answers only requests addressed to its own names "
                          "(localhost, 127.0.0.1, [::1], its listen address and "
                          "gateway.allowed_hosts); the Host header names another",
                          NULL);
        return false;
    }
    const char *length = s_header (req, MHD_HTTP_HEADER_CONTENT_LENGTH);
    size_t drain_limit = self->config->max_body_bytes * 8;
    if (drain_limit < 16 * 1024 * 1024)
        drain_limit = 16 * 1024 * 1024;
    if (length && strtoull (length, NULL, 10) > drain_limit) {
        req->body_too_large = true;
        char detail[96];
        snprintf (detail, sizeof detail, "the body is over the limit of %zu bytes",
                  self->config->max_body_bytes);
        s_answer_problem (req, 413, "body-too-large", detail, NULL);
        return false;
    }
    return true;
}

// s_body_add keeps size bytes more of req's body (beyond max_body_bytes
// they are dropped, and the request will be answered 413).
static void
s_body_add (request_t *req, const char *data, size_t size)
{
    if (req->body_too_large || req->body_size + size > req->gateway->config->max_body_bytes) {
        req->body_too_large = true;
        return;
    }
    if (req->body_size + size > req->body_capacity) {
        size_t capacity = req->body_capacity ? req->body_capacity : 1024;
        while (capacity < req->body_size + size)
            capacity *= 2;
        req->body = mem_realloc (req->body, capacity);
        req->body_capacity = capacity;
    }
    memcpy (req->body + req->body_size, data, size);
    req->body_size += size;
}

// s_access is libmicrohttpd's access handler: called when a request's head
// arrived, for each piece of its body, once it is whole, and again after
// each resume.
static enum MHD_Result
s_access (void *cls, struct MHD_Connection *connection, const char *url, const char *method,
          const char *version, const char *upload_data, size_t *upload_data_size, void **con_cls)
{
    gateway_t *self = cls;
    request_t *req = *con_cls;
    if (!req) {
        req = *con_cls = s_request_new (self, connection);
        req->door = routes_match (url, method).door;
        return s_request_admit (req) ? MHD_YES : s_queue_answer (req);
    }
    if (*upload_data_size > 0) {
        s_body_add (req, upload_data, *upload_data_size);
        *upload_data_size = 0;
        return MHD_YES;
    }
    if (!req->answered && !req->conn.suspended && req->op == OP_NONE)
        s_route (req, url, method);
    if (req->answered)
        return s_queue_answer (req);
    // Parked until the broker, an event or the deadline answers.
    return MHD_YES;
}

// s_completed is libmicrohttpd's completion handler: the request is over
// (answered, or its connection closed), and all it held goes.
static void
s_completed (void *cls, struct MHD_Connection *connection, void **con_cls,
             enum MHD_RequestTerminationCode code)
{
    gateway_t *self = cls;
    request_t *req = *con_cls;
    if (!req)
        return;
    s_stop_waiting (req);
    brokerclient_cancel (self->broker, &req->call);
    s_batch_cancel (req);
    mhdloop_forget (self->http, &req->conn);
    if (req->fd >= 0 && self->by_fd[req->fd] == req)
        self->by_fd[req->fd] = NULL;
    evloop_timer_cancel (self->loop, &req->timer);
    evloop_timer_cancel (self->loop, &req->keepalive);
    free (req->body);
    free (req->tenant);
    jobtext_unref (&req->last_job);
    jobtext_unref (&req->answer_job);
    listpage_destroy (&req->answer_list);
    free (req->answer_body);
    batch_destroy (&req->batch);
    sse_destroy (&req->sse);
    openai_stream_destroy (&req->door_stream);
    if (req->live_prev)
        req->live_prev->live_next = req->live_next;
    else
        self->live = req->live_next;
    if (req->live_next)
        req->live_next->live_prev = req->live_prev;
    free (req);
    *con_cls = NULL;
    self->requests--;
}

// --- the front door and the loop ---

// s_client_gone ends the request parked on the connection whose client
// left (the front door saw its end of file): a long poll or a Prefer: wait
// is answered to nobody (499, nginx's "client closed request"), an event
// stream ends, and either stops being a waiter now instead of at its
// deadline or next keep-alive.
static void
s_client_gone (int fd, void *arg)
{
    gateway_t *self = arg;
    request_t *req = fd >= 0 && (size_t) fd < self->by_fd_size ? self->by_fd[fd] : NULL;
    if (!req || !req->conn.suspended)
        return;     // being answered, or not parked: it ends by itself
    self->clients_gone++;
    if (req->streaming) {
        if (!s_stream_ended (req))
            s_stream_end (req);
        return;
    }
    if (req->answered)
        return;
    s_stop_waiting (req);
    brokerclient_cancel (self->broker, &req->call);
    s_answer_problem (req, 499, "client-closed-request",
                      "the client left before the answer was ready", NULL);
}

// s_kick makes the HTTP server run in this loop turn: the front door
// passed it bytes.
static void
s_kick (int handed_fd, void *arg)
{
    gateway_t *self = arg;
    mhdloop_kick (self->http, handed_fd);
}

// s_handoff gives a new connection (a socketpair end) to the HTTP server.
static int
s_handoff (int fd, void *arg)
{
    gateway_t *self = arg;
    return mhdloop_add_connection (self->http, fd);
}

// s_on_idle ends each loop turn: the HTTP server runs if the turn gave it
// work, what it wrote for the connections of this turn goes out now (not
// one turn later), and the requests for the broker leave as one batch.
static void
s_on_idle (evloop_t *loop, void *arg)
{
    gateway_t *self = arg;
    mhdloop_on_idle (self->http);
    frontdoor_relay_answers (self->door);
    brokerclient_flush (self->broker);
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
    self->hosts = mem_calloc (config->allowed_hosts_count + 4, sizeof *self->hosts);
    self->hosts[self->hosts_count++] = mem_strdup ("localhost");
    self->hosts[self->hosts_count++] = mem_strdup ("127.0.0.1");
    self->hosts[self->hosts_count++] = mem_strdup ("[::1]");
    // The listen host, unless a wildcard: a name or address clients use.
    const char *colon = strrchr (config->gateway_listen, ':');
    size_t len = colon ? (size_t) (colon - config->gateway_listen) : 0;
    char *host = len ? mem_strndup (config->gateway_listen, len) : NULL;
    if (host && strcmp (host, "0.0.0.0") && strcmp (host, "[::]") && strcmp (host, "*")) {
        for (char *c = host; *c; c++)
            *c = (char) tolower ((unsigned char) *c);
        self->hosts[self->hosts_count++] = host;
    }
    else
        free (host);
    for (size_t i = 0; i < config->allowed_hosts_count; i++)
        self->hosts[self->hosts_count++] = mem_strdup (config->allowed_hosts[i]);
}

// s_config_ok is gateway_check_config for the configuration it borrows;
// *addr is the listen address parsed.
static int
s_config_ok (const config_t *config, struct sockaddr_storage *addr, char *error,
             size_t error_size)
{
    if (listenaddr_parse (config->gateway_listen, addr) < 0) {
        snprintf (error, error_size, "gateway: listen address \"%s\" is not HOST:PORT",
                  config->gateway_listen);
        return -1;
    }
    // Open mode trusts every caller: only this machine may be one, unless
    // the operator says otherwise in so many words (issue 17 #8).
    if (config->api_keys_count == 0 && !config->allow_open_mode && !s_loopback (addr)) {
        snprintf (error, error_size,
                  "gateway: no gateway.api_keys, so open mode, which listens on loopback only; "
                  "\"%s\" is not loopback: configure api_keys, listen on 127.0.0.1, or set "
                  "gateway.allow_open_mode: true",
                  config->gateway_listen);
        return -1;
    }
    return 0;
}

int
gateway_check_config (config_t *config, char *error, size_t error_size)
{
    // API keys kept apart from the config (gateway.api_keys_file, a
    // Kubernetes Secret as a file): read with every configuration checked,
    // at start, by --check-config and on a reload, before open mode is judged.
    if (config_load_api_keys (config, error, error_size) < 0)
        return -1;
    struct sockaddr_storage addr;
    return s_config_ok (config, &addr, error, error_size);
}

gateway_t *
gateway_new (const config_t *config, evloop_t *loop, char *error, size_t error_size)
{
    struct sockaddr_storage addr;
    if (s_config_ok (config, &addr, error, error_size) < 0)
        return NULL;
    gateway_t *self = mem_calloc (1, sizeof *self);
    self->config = config;
    self->loop = loop;
    self->waiters = waiters_new ();
    self->cache = jobcache_new (CACHE_ENTRIES, config->cache_max_bytes);
    s_hosts_set (self);

    char part_error[256];
    // libmicrohttpd never listens: the front door accepts and hands each
    // connection over (frontdoor.h). Its limit leaves room for connections
    // the front door closed and it has not yet noticed.
    mhdloop_limits_t http_limits = {
        .max_connections = (unsigned int) config->max_connections * 2 + 64,
        .timeout_s = 60, .connection_memory = CONNECTION_MEMORY };
    self->http = mhdloop_new (loop, &http_limits, s_access, s_completed, self, part_error,
                              sizeof part_error);
    if (!self->http) {
        snprintf (error, error_size, "gateway: %s", part_error);
        gateway_destroy (&self);
        return NULL;
    }
    frontdoor_limits_t limits = { .max_connections = (size_t) config->max_connections,
                                  .header_timeout_ms = config->header_timeout_ms,
                                  .min_body_rate = config->min_body_rate,
                                  .max_head_bytes = MAX_HEAD_BYTES,
                                  .reuse_port = config->gateway_reuse_port };
    self->door = frontdoor_new (loop, (struct sockaddr *) &addr,
                                addr.ss_family == AF_INET6 ? sizeof (struct sockaddr_in6)
                                                           : sizeof (struct sockaddr_in),
                                &limits, s_handoff, s_kick, self, part_error, sizeof part_error);
    if (!self->door) {
        snprintf (error, error_size, "gateway: cannot listen on %s: %s", config->gateway_listen,
                  part_error);
        gateway_destroy (&self);
        return NULL;
    }
    frontdoor_on_gone (self->door, s_client_gone);
    self->curve = curve_new (config, false, part_error, sizeof part_error);
    self->broker = self->curve ? brokerclient_new (loop, config->broker_frontend,
                                                   config->broker_publisher,
                                                   config->max_frame_bytes, self->curve,
                                                   s_on_event, s_on_gap, self, part_error,
                                                   sizeof part_error)
                               : NULL;
    if (!self->broker) {
        snprintf (error, error_size, "gateway: %s", part_error);
        gateway_destroy (&self);
        return NULL;
    }
    evloop_on_idle (loop, s_on_idle, self);
    self->started_s = clock_wall_ms () / 1000;
    self->recheck_timer = evloop_timer_every (loop, WAITER_RECHECK_MS / 2, s_recheck_tick, self);
    if (config->api_keys_count == 0)
        log_warn (NULL, "NO API KEYS CONFIGURED: open local mode, every caller is one tenant");
    log_info (NULL, "gateway serving http://%s (port %d), broker %s", config->gateway_listen,
              frontdoor_port (self->door), config->broker_frontend);
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
    // Answer every parked request with what is known now (a submission the
    // broker has not acknowledged yet waits for it, a batch for its items);
    // event streams end (a client reconnects to another gateway and resumes
    // with Last-Event-ID).
    for (request_t *req = self->live; req; req = req->live_next) {
        if (req->streaming) {
            if (!s_stream_ended (req))
                s_stream_end (req);
        }
        else if (!req->answered && (req->call || req->waiter.linked)
                 && (req->op != OP_SUBMIT || req->created_at))
            s_request_deadline (req);
    }
    mhdloop_resume_all (self->http);
    mhdloop_run (self->http);
    return self->requests == 0;
}

void
gateway_destroy (gateway_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    gateway_t *self = *self_p;
    evloop_timer_cancel (self->loop, &self->recheck_timer);
    evloop_on_idle (self->loop, NULL, NULL);
    // Every request gets its answer before the HTTP server stops (it
    // resumes what is parked, sends, and completes them all): what waits is
    // told the broker is unavailable, every stream ends.
    for (request_t *req = self->live; req; req = req->live_next) {
        s_stop_waiting (req);
        brokerclient_cancel (self->broker, &req->call);
        s_batch_cancel (req);
        if (req->streaming)
            s_stream_end (req);
        else if (!req->answered)
            s_broker_unavailable (req);
    }
    mhdloop_destroy (&self->http);
    frontdoor_destroy (&self->door);
    brokerclient_destroy (&self->broker);
    curve_destroy (&self->curve);
    waiters_destroy (&self->waiters);
    free (self->by_fd);
    jobcache_destroy (&self->cache);
    for (size_t i = 0; i < self->hosts_count; i++)
        free (self->hosts[i]);
    free (self->hosts);
    free (self);
    *self_p = NULL;
}

// --- self-test: a real client over TCP, a fake broker over inproc ---

// s_test_connect opens a client connection to the gateway and sends
// request on it; the socket is non-blocking.
static int
s_test_connect (gateway_t *self, const char *request)
{
    int fd = socket (AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert (fd >= 0);
    struct sockaddr_in address = { .sin_family = AF_INET,
                                   .sin_port = htons ((uint16_t) frontdoor_port (self->door)),
                                   .sin_addr.s_addr = htonl (INADDR_LOOPBACK) };
    assert (connect (fd, (struct sockaddr *) &address, sizeof address) == 0);
    assert (write (fd, request, strlen (request)) == (ssize_t) strlen (request));
    assert (fcntl (fd, F_SETFL, O_NONBLOCK) == 0);
    return fd;
}

// s_test_read returns what the gateway sent on fd so far (caller frees).
static char *
s_test_read (int fd)
{
    char *text = mem_alloc (1);
    size_t len = 0;
    char buf[4096];
    ssize_t n;
    while ((n = read (fd, buf, sizeof buf)) > 0) {
        text = mem_realloc (text, len + (size_t) n + 1);
        memcpy (text + len, buf, (size_t) n);
        len += (size_t) n;
    }
    text[len] = '\0';
    return text;
}

// s_test_expect receives the gateway's next request to the broker other
// than PING and checks its command; the routing id goes to *envelope_p.
static proto_msg_t *
s_test_expect (zsock_t *router, proto_cmd_t cmd, zframe_t **envelope_p)
{
    while (true) {
        const char *error;
        proto_msg_t *msg = proto_recv (router, true, &error);
        assert (msg);
        if (msg->cmd == PROTO_PING) {
            proto_msg_destroy (&msg);
            continue;
        }
        assert (msg->cmd == cmd && !msg->rest);
        zframe_destroy (envelope_p);
        *envelope_p = zframe_dup (msg->envelope);
        return msg;
    }
}

// s_test_reply starts the body of the answer to request (its corr).
static pack_writer_t *
s_test_reply (proto_msg_t *request)
{
    int64_t corr = 0;
    assert (pack_get_int (request->body, "corr", &corr) == 0);
    pack_writer_t *body = pack_writer_new ();
    pack_put_int (body, "corr", corr);
    return body;
}

// s_test_refusal answers a request with ERROR code, with retry_after_ms
// unless it is 0.
static void
s_test_refusal (zsock_t *router, zframe_t *envelope, proto_msg_t *request, int64_t code,
                int64_t retry_after_ms)
{
    pack_writer_t *body = s_test_reply (request);
    pack_put_int (body, "code", code);
    pack_put_str (body, "message", "refused by the test");
    if (retry_after_ms)
        pack_put_int (body, "retry_after_ms", retry_after_ms);
    assert (proto_send (router, envelope, PROTO_ERROR, body) == 0);
    pack_writer_destroy (&body);
}

// s_test_job answers a GET with the job id in a state; chunks (may be
// NULL) is its chunks field. A finished job's result is s_test_result
// ({"status":200} when NULL).
static const char *s_test_result;

static void
s_test_job (zsock_t *router, zframe_t *envelope, proto_msg_t *request, const char *id,
            job_status_t status, int attempts, int64_t attempt_seq, const char *chunks,
            size_t size)
{
    int64_t corr = 0;
    assert (pack_get_int (request->body, "corr", &corr) == 0);
    job_t *job = job_new ();
    memcpy (job->id, id, JOB_ID_LEN);
    job_set_str (&job->tenant, "");
    job_set_str (&job->kind, "llm");
    job_set_str (&job->spec, "{}");
    job->status = status;
    job->attempts = attempts;
    job->attempt_seq = attempt_seq;
    job->created_at = clock_wall_ms ();
    if (job_status_terminal (status))
        job_set_str (&job->result, s_test_result ? s_test_result : "{\"status\":200}");
    pack_writer_t *body = pack_writer_new ();
    job_pack (job, body);
    pack_put_int (body, "corr", corr);
    if (chunks)
        pack_put_strn (body, "chunks", chunks, size);
    assert (proto_send (router, envelope, PROTO_JOB, body) == 0);
    pack_writer_destroy (&body);
    job_destroy (&job);
}

// s_test_event publishes a status event (data NULL) or a chunk (attempt,
// index, data).
static void
s_test_event (zsock_t *pub, int64_t seq, const char *id, const char *status, int64_t attempt,
              int64_t index, const char *data)
{
    pack_writer_t *body = pack_writer_new ();
    pack_put_int (body, "seq", seq);
    pack_put_int (body, "epoch", 1);
    pack_put_str (body, "id", id);
    pack_put_str (body, "type", data ? "chunk" : "status");
    if (data) {
        pack_put_int (body, "attempt", attempt);
        pack_put_int (body, "index", index);
        pack_put_str (body, "data", data);
    }
    else {
        pack_put_str (body, "status", status);
        pack_put_int (body, "attempts", 1);
        // A broker of revision 2 names the attempt (0 here: an older one).
        if (attempt > 0)
            pack_put_int (body, "attempt", attempt);
    }
    zframe_t *topic = zframe_new ("", 0);
    assert (proto_send (pub, topic, PROTO_EVENT, body) == 0);
    zframe_destroy (&topic);
    pack_writer_destroy (&body);
}

// s_test_answer_get takes the gateway's next GET and answers it with the
// job in a state (no chunks), then lets the gateway take the answer.
static void
s_test_answer_get (gateway_t *self, zsock_t *router, const char *id, job_status_t status,
                   int attempts, int64_t attempt_seq)
{
    zframe_t *envelope = NULL;
    proto_msg_t *get = s_test_expect (router, PROTO_GET, &envelope);
    s_test_job (router, envelope, get, id, status, attempts, attempt_seq, NULL, 0);
    proto_msg_destroy (&get);
    zframe_destroy (&envelope);
    evloop_run_for (self->loop, 30);
}

// s_test_retry_after submits a job the fake broker refuses with code and
// retry_after_ms, and checks the status and Retry-After the client gets.
static void
s_test_retry_after (gateway_t *self, zsock_t *router, int64_t code, int64_t retry_after_ms,
                    const char *expected)
{
    const char *spec = "{\"kind\":\"http\",\"request\":{\"url\":\"http://a.example/\"}}";
    char request[512];
    snprintf (request, sizeof request,
              "POST /v1/jobs HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
              "Content-Length: %zu\r\nConnection: close\r\n\r\n%s", strlen (spec), spec);
    int client = s_test_connect (self, request);
    evloop_run_for (self->loop, 30);
    zframe_t *envelope = NULL;
    proto_msg_t *submit = s_test_expect (router, PROTO_SUBMIT, &envelope);
    s_test_refusal (router, envelope, submit, code, retry_after_ms);
    proto_msg_destroy (&submit);
    zframe_destroy (&envelope);
    evloop_run_for (self->loop, 30);
    char *answer = s_test_read (client);
    if (!strstr (answer, expected))
        fprintf (stderr, "gateway: expected %s in\n%s\n", expected, answer);
    assert (strstr (answer, expected));
    free (answer);
    close (client);
}

// s_test_door_submit sends an OpenAI-compatible call (body) to path, takes
// the gateway's SUBMIT (an llm job for provider mock) and acknowledges
// it; returns the client's socket and the job's id in id.
static int
s_test_door_submit (gateway_t *self, zsock_t *router, const char *path, const char *body,
                    char *id)
{
    char request[1024];
    snprintf (request, sizeof request,
              "POST %s HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
              "Content-Length: %zu\r\n\r\n%s", path, strlen (body), body);
    int client = s_test_connect (self, request);
    evloop_run_for (self->loop, 30);
    zframe_t *envelope = NULL;
    proto_msg_t *submit = s_test_expect (router, PROTO_SUBMIT, &envelope);
    job_t *job = job_unpack (submit->body);
    assert (job && strcmp (job->kind, "llm") == 0 && strcmp (job->provider, "mock") == 0);
    memcpy (id, job->id, JOB_ID_LEN + 1);
    pack_writer_t *ok = s_test_reply (submit);
    pack_put_str (ok, "id", id);
    pack_put_str (ok, "status", "queued");
    pack_put_int (ok, "created_at", job->created_at);
    assert (proto_send (router, envelope, PROTO_SUBMIT_OK, ok) == 0);
    pack_writer_destroy (&ok);
    job_destroy (&job);
    proto_msg_destroy (&submit);
    zframe_destroy (&envelope);
    evloop_run_for (self->loop, 30);
    return client;
}

// s_test_door: an OpenAI-compatible call waits for its job and gets the
// upstream's status and body; a streamed one relays the chunk events as
// they come, then the finished job's rest and [DONE] (SPEC §3.1).
static void
s_test_door (gateway_t *self, zsock_t *router, zsock_t *pub, int64_t *seq)
{
    const char *result = "{\"status\":201,\"headers\":{},\"body\":{\"choices\":[{\"index\":0,"
                         "\"message\":{\"role\":\"assistant\",\"content\":\"Hello!\"},"
                         "\"finish_reason\":\"stop\"}]},\"latency_ms\":3}";
    s_test_result = result;
    char id[JOB_ID_LEN + 1];
    int client = s_test_door_submit (self, router, "/v1/chat/completions",
                                     "{\"model\":\"mock/m\",\"messages\":[{\"role\":\"user\"}]}", id);
    char *answer = s_test_read (client);
    assert (strcmp (answer, "") == 0);     // waits for the job
    free (answer);
    s_test_event (pub, (*seq)++, id, "succeeded", 1, 0, NULL);
    evloop_run_for (self->loop, 30);
    s_test_answer_get (self, router, id, JOB_SUCCEEDED, 1, 1);
    answer = s_test_read (client);
    char header[64];
    snprintf (header, sizeof header, "\r\nX-Jobgate-Job-Id: %s\r\n", id);
    assert (strncmp (answer, "HTTP/1.1 201", 12) == 0 && strstr (answer, header));
    assert (strstr (answer, "\r\n\r\n{\"choices\":[{\"index\":0,\"message\":{\"role\":"
                            "\"assistant\",\"content\":\"Hello!\"},\"finish_reason\":\"stop\"}]}"));
    free (answer);
    close (client);

    client = s_test_door_submit (self, router, "/v1/chat/completions",
                                 "{\"model\":\"mock/m\",\"messages\":[{\"role\":\"user\"}],"
                                 "\"stream\":true}", id);
    s_test_event (pub, (*seq)++, id, NULL, 1, 0, "He");
    s_test_event (pub, (*seq)++, id, NULL, 1, 1, "llo");
    evloop_run_for (self->loop, 30);
    answer = s_test_read (client);
    assert (strncmp (answer, "HTTP/1.1 200", 12) == 0 && strstr (answer, "text/event-stream"));
    char *first = strstr (answer, "\"delta\":{\"role\":\"assistant\",\"content\":\"He\"}");
    assert (first && strstr (first, "\"delta\":{\"content\":\"llo\"}"));
    free (answer);
    s_test_event (pub, (*seq)++, id, "succeeded", 1, 0, NULL);
    evloop_run_for (self->loop, 30);
    s_test_answer_get (self, router, id, JOB_SUCCEEDED, 1, 1);
    answer = s_test_read (client);
    first = strstr (answer, "\"delta\":{\"content\":\"!\"}");
    assert (first && strstr (first, "\"finish_reason\":\"stop\"}]}\n\ndata: [DONE]\n\n"));
    assert (strstr (answer, "\r\n0\r\n\r\n"));     // the end of the chunked body
    free (answer);
    close (client);

    // jobgate's own errors in OpenAI's shape.
    int unknown = s_test_connect (self, "POST /v1/embeddings HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                                        "Content-Type: application/json\r\nContent-Length: 28\r\n"
                                        "\r\n{\"model\":\"nope\",\"input\":\"x\"}");
    evloop_run_for (self->loop, 30);
    answer = s_test_read (unknown);
    assert (strncmp (answer, "HTTP/1.1 404", 12) == 0
            && strstr (answer, "\"param\":\"model\",\"code\":\"model_not_found\"}}"));
    free (answer);
    close (unknown);
    evloop_run_for (self->loop, 30);
    s_test_result = NULL;
}

void
gateway_test (bool verbose)
{
    if (verbose)
        printf (" * gateway: ");
    log_init ("gateway-test", LOG_ERROR_);
    char error[256];
    config_t *config = config_load (NULL, error, sizeof error);
    assert (config);
    // One provider, for the OpenAI door (added by hand: no config file).
    config->providers = mem_calloc (1, sizeof *config->providers);
    config->providers[0].name = mem_strdup ("mock");
    config->providers[0].base_url = mem_strdup ("http://127.0.0.1:9");
    config->providers_count = 1;
    free (config->gateway_listen);
    config->gateway_listen = mem_strdup ("127.0.0.1:0");
    free (config->broker_frontend);
    config->broker_frontend = mem_strdup ("inproc://gateway-test-front");
    free (config->broker_publisher);
    config->broker_publisher = mem_strdup ("inproc://gateway-test-pub");
    zsock_t *router = zsock_new (ZMQ_ROUTER);
    zsock_t *pub = zsock_new (ZMQ_PUB);
    assert (router && pub);
    zsock_set_rcvtimeo (router, 2000);
    assert (zsock_bind (router, "%s", config->broker_frontend) == 0);
    assert (zsock_bind (pub, "%s", config->broker_publisher) == 0);
    evloop_t *loop = evloop_new ();
    gateway_t *self = gateway_new (config, loop, error, sizeof error);
    assert (self);

    // A refusal's Retry-After is the broker's retry_after_ms, rounded up
    // to seconds (a full store says 5 s), 1 s when it gives none.
    s_test_retry_after (self, router, 503, 5000, "\r\nRetry-After: 5\r\n");
    s_test_retry_after (self, router, 503, 0, "\r\nRetry-After: 1\r\n");
    s_test_retry_after (self, router, 503, 1, "\r\nRetry-After: 1\r\n");
    s_test_retry_after (self, router, 429, 10000, "\r\nRetry-After: 10\r\n");
    s_test_retry_after (self, router, 409, 5000, "HTTP/1.1 409");

    // The events reach the gateway (the first of a broker run is a gap:
    // nobody waits yet).
    const char *id = "0190a0b2-1c3d-7e4f-8a5b-6c7d8e9f0a1b";
    int64_t seq = 1;
    while (brokerclient_stats (self->broker).events == 0) {
        assert (seq < 100);
        s_test_event (pub, seq++, "0190a0b2-1c3d-7e4f-8a5b-000000000000", "queued", 0, 0, NULL);
        evloop_run_for (loop, 10);
    }
    seq = 2;

    // An event stream after a retry, resumed with the Last-Event-ID of the
    // first run's running status ("s2.running"): the second run's events
    // carry new attempt identities, so none is taken for one the client has.
    char request[512];
    snprintf (request, sizeof request,
              "GET /v1/jobs/%s/events HTTP/1.1\r\nHost: 127.0.0.1\r\n"
              "Last-Event-ID: s2.running\r\n\r\n", id);
    int client = s_test_connect (self, request);
    evloop_run_for (loop, 30);
    zframe_t *envelope = NULL;
    proto_msg_t *get = s_test_expect (router, PROTO_GET, &envelope);
    bool with_chunks = false;
    assert (pack_get_bool (get->body, "with_chunks", &with_chunks) == 0 && with_chunks);
    char chunks[64];
    uint32_t header[2] = { 0, 2 };
    memcpy (chunks, header, 8);
    memcpy (chunks + 8, "He", 2);
    s_test_job (router, envelope, get, id, JOB_RUNNING, 1, 3, chunks, 10);
    proto_msg_destroy (&get);
    evloop_run_for (loop, 30);
    char *stream = s_test_read (client);
    assert (strstr (stream, "HTTP/1.1 200") && strstr (stream, "text/event-stream"));
    assert (strstr (stream, "id: s3.running\nevent: status\n"
                            "data: {\"status\":\"running\",\"attempts\":1}\n\n"));
    assert (strstr (stream, "id: c3.0\nevent: chunk\n"));
    free (stream);
    // A live chunk goes out as it comes; one the client has does not.
    s_test_event (pub, seq++, id, NULL, 3, 0, "He");
    s_test_event (pub, seq++, id, NULL, 3, 1, "llo");
    evloop_run_for (loop, 30);
    stream = s_test_read (client);
    assert (strcmp (strstr (stream, "id: "),
                    "id: c3.1\nevent: chunk\ndata: {\"attempt\":3,\"index\":1,\"data\":\"llo\"}\n\n"
                    "\r\n") == 0);
    free (stream);
    // A status event: the stream reads the job for the attempt's identity
    // (here a new attempt began after a failed one).
    s_test_event (pub, seq++, id, "running", 0, 0, NULL);
    evloop_run_for (loop, 30);
    s_test_answer_get (self, router, id, JOB_RUNNING, 2, 4);
    s_test_event (pub, seq++, id, NULL, 4, 0, "new");
    evloop_run_for (loop, 30);
    stream = s_test_read (client);
    assert (strstr (stream, "id: s4.running\n"));
    assert (strstr (stream, "id: c4.0\nevent: chunk\ndata: {\"attempt\":4,\"index\":0,\"data\":\"new\"}"));
    free (stream);
    // Status events that name their attempt are applied as they come: no
    // read of the job, and the ids still never repeat (attempt 4 queued
    // again, attempt 5 running).
    s_test_event (pub, seq++, id, "queued", 4, 0, NULL);
    s_test_event (pub, seq++, id, "running", 5, 0, NULL);
    evloop_run_for (loop, 30);
    assert (!(zsock_events (router) & ZMQ_POLLIN));
    stream = s_test_read (client);
    assert (strstr (stream, "id: s4.queued\n") && strstr (stream, "id: s5.running\n"));
    free (stream);
    // The terminal status: the result, and the stream ends.
    s_test_event (pub, seq++, id, "succeeded", 5, 0, NULL);
    evloop_run_for (loop, 30);
    s_test_answer_get (self, router, id, JOB_SUCCEEDED, 3, 5);
    stream = s_test_read (client);
    assert (strstr (stream, "id: s5.succeeded\n") && strstr (stream, "id: r\nevent: result\n"));
    assert (strstr (stream, "\r\n0\r\n\r\n"));     // the end of the chunked body
    free (stream);
    close (client);
    evloop_run_for (loop, 30);
    assert (waiters_count (self->waiters) == 0 && self->requests == 0);

    s_test_door (self, router, pub, &seq);
    assert (waiters_count (self->waiters) == 0 && self->requests == 0);

    // Draining answers a long poll at once with the job as last read; its
    // deadline's timer goes with it (it once stayed armed, and fired on the
    // freed request: ASan's heap-use-after-free).
    const char *other = "0190a0b2-1c3d-7e4f-8a5b-6c7d8e9f0a1c";
    snprintf (request, sizeof request,
              "GET /v1/jobs/%s?wait=1 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", other);
    client = s_test_connect (self, request);
    evloop_run_for (loop, 30);
    s_test_answer_get (self, router, other, JOB_RUNNING, 1, 5);
    assert (waiters_count (self->waiters) == 1);
    assert (!gateway_drain (self));
    evloop_run_for (loop, 30);
    stream = s_test_read (client);
    assert (strstr (stream, "HTTP/1.1 200") && strstr (stream, "\"status\":\"running\""));
    free (stream);
    assert (gateway_drain (self) && self->requests == 0);
    evloop_run_for (loop, 1200);
    close (client);

    zframe_destroy (&envelope);
    gateway_destroy (&self);
    gateway_destroy (&self);
    evloop_destroy (&loop);
    zsock_destroy (&router);
    zsock_destroy (&pub);
    config_destroy (&config);
    log_init ("gateway", LOG_INFO_);
    if (verbose)
        printf ("OK\n");
}
