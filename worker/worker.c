// worker — the worker process's engine: JGP/1 on one side, libcurl on the
// other, both on the process's one event loop.
#include "worker.h"
#include "clock.h"
#include "curve.h"
#include "job.h"
#include "log.h"
#include "metrics.h"
#include "mem.h"
#include "pack.h"
#include "proto.h"
#include "transfer.h"

#include <assert.h>
#include <curl/curl.h>
#include <errno.h>
#include <limits.h>
#include <sodium.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

// Messages the DEALER holds each way before refusing more (§1).
#define WORKER_HWM 100000
// How long queued RESULTs and DISCONNECT may take to leave at exit.
#define WORKER_EXIT_LINGER_MS 1000
// The tick checks heartbeat and liveness this many times per heartbeat
// interval: a HEARTBEAT leaves within a quarter interval of the silence §5
// allows, and a silent broker is noticed at most a quarter interval late.
#define WORKER_TICKS_PER_HEARTBEAT 4
// The longest a worker's figures (HEARTBEAT's revision 4 fields) go unsent,
// however busy it is: about a Prometheus scrape interval.
#define WORKER_FIGURES_MS 5000
// RESULTs kept until the broker acknowledges them (§3.2.4): at most this
// many bytes, and twice the concurrency in number (an outage leaves at most
// the calls then running to report, and a few sent just before it).
#define WORKER_HELD_MAX_BYTES (64 * 1024 * 1024)
// Calls per libcurl multi handle. libcurl 7.88 looks for a reusable
// connection by walking every connection the multi holds to the host, busy
// or not: with 2,500 calls in flight on one handle that walk cost ~100 µs
// per new call, more than the call itself. Sharding the calls over several
// multi handles of at most this many keeps the walk short.
#define WORKER_SHARD_CALLS 128
// How long a finished call's RESULT may wait for others to leave with it
// while more calls are running. At 500 jobs/s each RESULT otherwise left
// alone: one message, one wake-up of both ends' I/O threads, one broker
// commit and one ACK back per job (docs/performance.md). A worker with no
// other call running (sequential use) sends at once.
#define WORKER_RESULT_LINGER_MS 3
// Turns of a busy loop begin at most this often. At 500 jobs/s each event
// (a DISPATCH, an answer, an ACK) had a turn of its own, ~7 per job, and
// each turn's fixed cost (the wait, a context switch, the ZeroMQ checks,
// libcurl's timer) made up most of a worker's CPU per job: ~410 µs against
// ~120 µs at 5,000/s, where a turn handles many. Paced, a turn handles
// what arrived meanwhile. Only while this many calls are running, and none
// streams (a CHUNK's relay is a client's time to first token): a call
// then waits at most this much longer to start and to be reported.
// Neither waits while credit is scarce (s_credit_ample).
#define WORKER_PACE_US 4000
#define WORKER_PACE_MIN_CALLS 64

// One libcurl multi handle, its connections and its timer.
typedef struct {
    worker_t *worker;           // the owner
    CURLM *multi;               // the multi handle
    evloop_timer_t *timer;      // libcurl's one timeout for it, or NULL
    int running;                // transfers added and not yet removed
} shard_t;

struct _worker_t {
    const config_t *config;     // borrowed configuration
    evloop_t *loop;             // the process's event loop (borrowed)
    zsock_t *dealer;            // DEALER to the broker's backend, or NULL
    curve_t *curve;             // CURVE of the DEALER (security.curve)
    proto_batch_t *outbox;      // what this loop turn sends, one message
    int64_t outbox_since_ms;    // monotonic time the outbox's first body was added
    bool outbox_lingers;        // it holds only RESULTs, which may wait (WORKER_RESULT_LINGER_MS)
    size_t streams;             // streamed calls among the transfers (never paced)
    shard_t *shards;            // the multi handles running the calls: provider shards, then direct ones
    size_t shards_count;        // 2 × (concurrency / WORKER_SHARD_CALLS, rounded up)
    evloop_timer_t *tick_timer; // repeating heartbeat and liveness check, or NULL
    evloop_timer_t *drain_timer;// drain deadline, or NULL
    zlistx_t *transfers;        // transfers in flight (transfer_t *)
    int concurrency;            // calls in flight at most (credit ceiling)
    int64_t heartbeat_ms;       // send HEARTBEAT after this much silence
    int64_t liveness_ms;        // reconnect after this much broker silence
    int64_t drain_timeout_ms;   // abandon a drain after this long
    int64_t last_sent_ms;       // monotonic time the last message left for the broker
    int64_t last_heard_ms;      // monotonic time of the last message heard
    int64_t last_figures_ms;    // monotonic time this process's figures last left (§5)
    bool draining;              // SIGTERM seen: DISCONNECT sent, no new work
    size_t reconnects;          // times the socket was recreated
    char key[33];               // identity across reconnects (READY's "worker"), random
    uint64_t result_seq;        // the number of the last RESULT sent (§3.2.4)
    zlistx_t *held;             // held_t * of RESULTs not acknowledged, by number
    size_t held_bytes;          // their bodies' sizes
    bool broker_acks;           // the broker has acknowledged a RESULT (revision 4)
    int64_t broker_heard_ms;    // monotonic time a message of the broker last arrived
                                // (last_heard_ms is also reset by a reconnect)
};

// A RESULT sent and not acknowledged yet: its encoded body, to send again
// after a reconnect.
typedef struct {
    uint64_t seq;               // its number
    char id[JOB_ID_LEN + 1];    // the job, for the log
    size_t size;                // bytes in body
    unsigned char body[];       // the msgpack body as sent
} held_t;

// --- the broker socket ---

// s_send sends one command to the broker; a refusal (HWM) is logged, since
// the broker will requeue what it does not hear about.
static void
s_send (worker_t *self, proto_cmd_t cmd, pack_writer_t *body)
{
    if (!self->dealer)
        return;
    if (proto_batch_count (self->outbox) == 0) {
        self->outbox_since_ms = clock_mono_ms ();
        self->outbox_lingers = true;
    }
    // Anything but a RESULT (a CHUNK's delta, READY, HEARTBEAT) leaves at
    // the turn's end, and takes the RESULTs waiting with it.
    if (cmd != PROTO_RESULT)
        self->outbox_lingers = false;
    // Batched (docs/protocol.md §2.1): what one loop turn sends leaves
    // together at its end (s_on_idle).
    if (proto_batch_add (self->outbox, NULL, cmd, body) < 0)
        log_warn (NULL, "cannot send to the broker: %s", zmq_strerror (zmq_errno ()));
}

// s_flush sends what is batched now; the broker counts any message as a
// heartbeat (§5), so this is when the worker was last heard.
static void
s_flush (worker_t *self)
{
    if (!self->outbox || proto_batch_count (self->outbox) == 0)
        return;
    if (proto_batch_flush (self->outbox) < 0)
        log_warn (NULL, "cannot send to the broker: %s", zmq_strerror (zmq_errno ()));
    self->last_sent_ms = clock_mono_ms ();
}

// s_credit_ample is true while a quarter or more of the concurrency is
// free: a RESULT then returns credit the broker is not waiting for. A
// worker near its concurrency (5,000 jobs/s at 1 s upstream on two
// workers of 2,500) neither lingers nor paces: every ms a call's slot
// waits there is a ms more for the next job in the broker's queue.
static bool
s_credit_ample (const worker_t *self)
{
    return zlistx_size (self->transfers) * 4 <= (size_t) self->concurrency * 3;
}

// s_linger_or_flush sends what the loop turn batched, except RESULTs that
// may wait for others: while other calls run and credit is ample, for up
// to WORKER_RESULT_LINGER_MS after the first (the loop wakes for it then).
static void
s_linger_or_flush (worker_t *self)
{
    if (!self->outbox || proto_batch_count (self->outbox) == 0)
        return;
    if (self->outbox_lingers && zlistx_size (self->transfers) > 0 && !self->draining
        && s_credit_ample (self)) {
        int64_t wait_ms = self->outbox_since_ms + WORKER_RESULT_LINGER_MS - clock_mono_ms ();
        if (wait_ms > 0) {
            evloop_wake_in (self->loop, wait_ms);
            return;
        }
    }
    s_flush (self);
}

// s_paced is true when the loop's turns should be spaced (evloop_pace,
// WORKER_PACE_US): while enough calls run, none streams and credit is
// ample.
static bool
s_paced (const worker_t *self)
{
    return !self->draining && self->streams == 0
           && zlistx_size (self->transfers) >= WORKER_PACE_MIN_CALLS && s_credit_ample (self);
}

// s_on_idle ends each loop turn: what it batched leaves (or lingers), and a
// busy worker lets events gather for the next turn. Nothing is ready then
// that could not wait WORKER_PACE_US (the broker's messages are taken at
// the next turn, seconds inside their deadlines).
static void
s_on_idle (evloop_t *loop, void *arg)
{
    worker_t *self = arg;
    s_linger_or_flush (self);
    evloop_pace (loop, s_paced (self) ? WORKER_PACE_US : 0);
}

static void s_send_heartbeat (worker_t *self);

// s_heartbeat_if_late sends at once what is batched, or a HEARTBEAT, when
// the work of this loop turn has kept the worker silent for a heartbeat
// interval: the broker must never take a long turn (many large answers
// finishing together) for a dead worker.
static void
s_heartbeat_if_late (worker_t *self)
{
    if (clock_mono_ms () - self->last_sent_ms < self->heartbeat_ms)
        return;
    if (self->outbox && proto_batch_count (self->outbox) == 0)
        s_send_heartbeat (self);
    s_flush (self);
}

// s_stop ends the loop after sending what is batched (the idle hook does
// not run once the loop is stopping).
static void
s_stop (worker_t *self)
{
    s_flush (self);
    evloop_stop (self->loop);
}

// s_send_empty sends a command whose body is an empty map.
static void
s_send_empty (worker_t *self, proto_cmd_t cmd)
{
    pack_writer_t *body = pack_writer_new ();
    s_send (self, cmd, body);
    pack_writer_destroy (&body);
}

// s_credit returns the calls this worker can take now.
static int
s_credit (const worker_t *self)
{
    if (self->draining)
        return 0;
    int running = (int) zlistx_size (self->transfers);
    return running < self->concurrency ? self->concurrency - running : 0;
}

// s_send_heartbeat tells the broker the worker lives, with its calls in
// flight (§5) and this process's own figures for the broker's /metrics
// (revision 4, metrics).
static void
s_send_heartbeat (worker_t *self)
{
    pack_writer_t *body = pack_writer_new ();
    pack_put_int (body, "running", (int64_t) zlistx_size (self->transfers));
    metrics_process_t facts = metrics_process_read ();
    pack_put_int (body, "cpu_ms", (int64_t) (facts.cpu_seconds * 1000));
    pack_put_int (body, "rss_bytes", (int64_t) facts.resident_bytes);
    pack_put_int (body, "open_fds", (int64_t) facts.open_fds);
    pack_put_int (body, "max_fds", (int64_t) facts.max_fds);
    pack_put_int (body, "started_at", (int64_t) (facts.start_time_seconds * 1000));
    pack_put_int (body, "concurrency", self->concurrency);
    self->last_figures_ms = clock_mono_ms ();
    s_send (self, PROTO_HEARTBEAT, body);
    pack_writer_destroy (&body);
}

// s_send_ready announces the worker with the credit it has left (§3.2);
// a draining worker also repeats its DISCONNECT.
static void
s_send_ready (worker_t *self)
{
    pack_writer_t *body = pack_writer_new ();
    pack_put_int (body, "credit", s_credit (self));
    pack_put_int (body, "concurrency", self->concurrency);
    pack_put_str (body, "worker", self->key);
    // Revision 4: RESULTs numbered up to this were sent before this READY,
    // whose credit already counts their calls as free (§3.2.4).
    pack_put_int (body, "result_seq", (int64_t) self->result_seq);
    s_send (self, PROTO_READY, body);
    pack_writer_destroy (&body);
    if (self->draining)
        s_send_empty (self, PROTO_DISCONNECT);
    // What the broker may not have (it was away, or the old socket took it
    // along) goes again, in order, after the READY (§3.2.4).
    size_t count = 0;
    for (held_t *held = zlistx_first (self->held); held && self->outbox;
         held = zlistx_next (self->held), count++)
        if (proto_batch_add_bytes (self->outbox, NULL, PROTO_RESULT, held->body, held->size) < 0)
            log_warn (NULL, "cannot send to the broker: %s", zmq_strerror (zmq_errno ()));
    if (count > 0)
        log_info (NULL, "%zu RESULTs not acknowledged by the broker resent after the READY",
                  count);
}

// s_hold keeps a RESULT's body until the broker acknowledges it, within
// the bounds: past them the oldest is forgotten (its call may be made again
// if the broker never got it: at-least-once, as before revision 4).
static void
s_hold (worker_t *self, uint64_t seq, const char *id, pack_writer_t *body)
{
    size_t size;
    const void *data = pack_writer_data (body, &size);
    // An answer's size is the upstream's doing (common/mem.h's exception):
    // without memory for the copy the RESULT is only not held.
    held_t *held = malloc (sizeof *held + size);
    if (!held) {
        log_warn (id, "RESULT %llu not held for a resend: out of memory for %zu bytes",
                  (unsigned long long) seq, size);
        return;
    }
    held->seq = seq;
    snprintf (held->id, sizeof held->id, "%s", id);
    held->size = size;
    memcpy (held->body, data, size);
    zlistx_add_end (self->held, held);
    self->held_bytes += size;
    while (zlistx_size (self->held) > 1
           && (zlistx_size (self->held) > 2 * (size_t) self->concurrency
               || self->held_bytes > WORKER_HELD_MAX_BYTES)) {
        held_t *oldest = zlistx_detach (self->held, NULL);
        // A revision 3 broker never acknowledges: forgetting is routine then.
        log_line (self->broker_acks ? LOG_WARN_ : LOG_DEBUG_, __FILE__, __LINE__, oldest->id,
                  "RESULT %llu forgotten unacknowledged (%zu held)",
                  (unsigned long long) oldest->seq, zlistx_size (self->held));
        self->held_bytes -= oldest->size;
        free (oldest);
    }
}

// s_drained is true when a draining worker may stop: every call finished
// and, while a broker that acknowledges (revision 4) is heard, every RESULT
// acknowledged — one sent into a broker restart is then resent after the
// reconnect instead of leaving with the process (§3.2.4). A broker silent
// for the liveness interval is not waited for: what it has not
// acknowledged may be called again (at-least-once, §7).
static bool
s_drained (const worker_t *self)
{
    return zlistx_size (self->transfers) == 0
           && (zlistx_size (self->held) == 0 || !self->broker_acks
               || clock_mono_ms () - self->broker_heard_ms >= self->liveness_ms);
}

// s_stop_if_drained ends a drain that is complete.
static void
s_stop_if_drained (worker_t *self)
{
    if (!self->draining || !s_drained (self))
        return;
    log_info (NULL, "drained: every call finished and reported");
    s_stop (self);
}

// s_ack forgets the RESULTs an ACK names: seq and count following (§3.2.4).
static void
s_ack (worker_t *self, pack_reader_t *body)
{
    int64_t seq = 0, count = 1;
    if (pack_get_int (body, "seq", &seq) < 0 || seq < 1
        || (pack_get_int (body, "count", &count) == 0 && count < 1)) {
        log_warn (NULL, "dropped ACK without a valid seq and count");
        return;
    }
    self->broker_acks = true;
    uint64_t first = (uint64_t) seq, last = first + (uint64_t) count - 1;
    // Numbers rise along the list; detaching moves the cursor back one.
    for (held_t *held = zlistx_first (self->held); held && held->seq <= last;
         held = zlistx_next (self->held)) {
        if (held->seq < first)
            continue;
        zlistx_detach_cur (self->held);
        self->held_bytes -= held->size;
        free (held);
    }
    s_stop_if_drained (self);
}

// s_send_result reports one attempt (§3.2) with the lease token DISPATCH
// gave it. It returns a credit implicitly.
static void
s_send_result (worker_t *self, const char *id, int attempt, const char *lease,
               const response_outcome_t *out)
{
    pack_writer_t *body = pack_writer_new ();
    pack_put_str (body, "id", id);
    pack_put_int (body, "attempt", attempt);
    pack_put_str (body, "lease", lease);
    // Revision 4: numbered, kept until acknowledged (§3.2.4).
    uint64_t seq = ++self->result_seq;
    pack_put_int (body, "seq", (int64_t) seq);
    pack_put_str (body, "outcome", out->outcome);
    pack_put_str (body, "result", out->result);
    pack_put_str (body, "error", out->error);
    pack_put_int (body, "retry_after_ms", out->retry_after_ms);
    // Revision 3: what an llm answer says it cost and what is left of the
    // provider's token budget, each only when known.
    if (out->usage)
        pack_put_str (body, "usage", out->usage);
    if (out->model)
        pack_put_str (body, "model", out->model);
    if (out->ratelimit && (out->remaining_tokens >= 0 || out->reset_tokens_ms >= 0)) {
        const char *names[2];
        int64_t values[2];
        size_t count = 0;
        if (out->remaining_tokens >= 0) {
            names[count] = "remaining_tokens";
            values[count++] = out->remaining_tokens;
        }
        if (out->reset_tokens_ms >= 0) {
            names[count] = "reset_tokens_ms";
            values[count++] = out->reset_tokens_ms;
        }
        pack_put_int_map (body, "ratelimit", names, values, count);
    }
    s_hold (self, seq, id, body);
    s_send (self, PROTO_RESULT, body);
    pack_writer_destroy (&body);
}

// s_on_chunk relays one delta of a streamed answer as a CHUNK (§3.2); the
// broker publishes it to the job's subscribers (SSE "chunk" events).
static void
s_on_chunk (transfer_t *transfer, int index, const char *text, size_t len, void *arg)
{
    worker_t *self = arg;
    pack_writer_t *body = pack_writer_new ();
    const job_t *job = transfer_job (transfer);
    pack_put_str (body, "id", job->id);
    pack_put_int (body, "attempt", transfer_attempt (transfer));
    pack_put_str (body, "lease", job->lease);
    pack_put_int (body, "index", index);
    pack_put_strn (body, "data", text, len);
    s_send (self, PROTO_CHUNK, body);
    pack_writer_destroy (&body);
    log_debug (job->id, "attempt %d chunk %d (%zu bytes)", transfer_attempt (transfer), index, len);
}

// s_refuse answers a DISPATCH that never becomes a transfer.
static void
s_refuse (worker_t *self, const char *id, int attempt, const char *lease, const char *outcome,
          const char *type, const char *message)
{
    response_outcome_t out;
    response_outcome_error (&out, outcome, type, message);
    s_send_result (self, id, attempt, lease, &out);
    log_warn (id, "attempt %d %s: %s: %s", attempt, outcome, type, message);
    response_outcome_free (&out);
}

static void s_on_broker (evloop_t *loop, zsock_t *sock, void *arg);

// s_socket_open creates the DEALER and connects it. Returns 0 or -1.
static int
s_socket_open (worker_t *self)
{
    zsock_t *dealer = zsock_new (ZMQ_DEALER);
    if (!dealer) {
        log_error (NULL, "cannot create the broker socket: %s", zmq_strerror (zmq_errno ()));
        return -1;
    }
    // Linger 0: a reconnect must not wait for a dead broker; exit sets it.
    zsock_set_linger (dealer, 0);
    zsock_set_sndhwm (dealer, WORKER_HWM);
    zsock_set_rcvhwm (dealer, WORKER_HWM);
    proto_set_limits (dealer, self->config->max_frame_bytes);
    curve_secure (self->curve, dealer);
    if (curve_watch (self->curve, self->loop, dealer, "backend") < 0) {
        zsock_destroy (&dealer);
        return -1;
    }
    if (zsock_connect (dealer, "%s", self->config->broker_backend) < 0) {
        log_error (NULL, "cannot connect to broker.backend %s: %s",
                   self->config->broker_backend, zmq_strerror (zmq_errno ()));
        curve_unwatch (self->curve, dealer);
        zsock_destroy (&dealer);
        return -1;
    }
    if (evloop_sock_add (self->loop, dealer, s_on_broker, self) < 0) {
        log_error (NULL, "cannot watch the broker socket: %s", strerror (errno));
        curve_unwatch (self->curve, dealer);
        zsock_destroy (&dealer);
        return -1;
    }
    self->dealer = dealer;
    self->outbox = proto_batch_new (dealer);
    return 0;
}

// s_socket_close stops watching and destroys the DEALER.
static void
s_socket_close (worker_t *self, int linger_ms)
{
    if (!self->dealer)
        return;
    s_flush (self);
    proto_batch_destroy (&self->outbox);
    evloop_sock_remove (self->loop, self->dealer);
    curve_unwatch (self->curve, self->dealer);
    zsock_set_linger (self->dealer, linger_ms);
    zsock_destroy (&self->dealer);
}

// s_reconnect replaces the socket (a new routing id, §5) and announces the
// worker again. Running calls go on; their RESULTs take the new socket.
static void
s_reconnect (worker_t *self)
{
    self->reconnects++;
    s_socket_close (self, 0);
    self->last_heard_ms = clock_mono_ms ();
    if (s_socket_open (self) == 0)
        s_send_ready (self);
}

// --- libcurl on the event loop ---

// s_remove takes a transfer's easy handle out of its multi handle.
static void
s_remove (transfer_t *transfer)
{
    shard_t *shard = transfer_owner (transfer);
    if (!shard)
        return;
    curl_multi_remove_handle (shard->multi, transfer_easy (transfer));
    shard->running--;
    transfer_set_owner (transfer, NULL);
}

// s_untrack forgets a transfer leaving the list for the pacing's count of
// streamed calls.
static void
s_untrack (worker_t *self, transfer_t *transfer)
{
    if (request_is_stream (transfer_request (transfer)) && self->streams > 0)
        self->streams--;
}

// s_finish_done reports every transfer a multi handle has finished.
static void
s_finish_done (shard_t *shard)
{
    worker_t *self = shard->worker;
    CURLMsg *message;
    int left;
    while ((message = curl_multi_info_read (shard->multi, &left)) != NULL) {
        if (message->msg != CURLMSG_DONE)
            continue;
        CURL *easy = message->easy_handle;
        CURLcode code = message->data.result;
        transfer_t *transfer = transfer_of (easy);
        if (!transfer) {
            curl_multi_remove_handle (shard->multi, easy);
            continue;
        }
        s_remove (transfer);
        s_untrack (self, transfer);
        response_outcome_t out;
        int64_t now = clock_mono_ms ();
        transfer_finish (transfer, code, now, &out);
        const job_t *job = transfer_job (transfer);
        int attempt = transfer_attempt (transfer);
        s_send_result (self, job->id, attempt, job->lease, &out);
        // An attempt that got an HTTP answer is an ordinary event; one that
        // got none (timeout, connect, policy) is worth a warning.
        char chunks[32] = "";
        if (request_is_stream (transfer_request (transfer)))
            snprintf (chunks, sizeof chunks, " chunks=%d", transfer_chunks (transfer));
        log_line (out.status ? LOG_INFO_ : LOG_WARN_, __FILE__, __LINE__, job->id,
                  "attempt %d %s status=%ld latency_ms=%lld%s%s%s", attempt, out.outcome,
                  out.status, (long long) (now - transfer_started_ms (transfer)), chunks,
                  out.error ? " error=" : "", out.error ? out.error : "");
        response_outcome_free (&out);
        zlistx_delete (self->transfers, transfer_handle (transfer));
        transfer_destroy (&transfer);
        s_heartbeat_if_late (self);
    }
    s_stop_if_drained (self);
}

// s_on_curl_fd passes socket readiness to libcurl.
static void
s_on_curl_fd (evloop_t *loop, int fd, int events, void *arg)
{
    shard_t *shard = arg;
    int flags = (events & EVLOOP_READ ? CURL_CSELECT_IN : 0)
                | (events & EVLOOP_WRITE ? CURL_CSELECT_OUT : 0);
    int running;
    curl_multi_socket_action (shard->multi, fd, flags, &running);
    s_finish_done (shard);
}

// s_on_curl_socket is CURLMOPT_SOCKETFUNCTION: libcurl says which of its
// sockets to watch for what. socket_arg marks sockets already on the loop.
static int
s_on_curl_socket (CURL *easy, curl_socket_t fd, int what, void *arg, void *socket_arg)
{
    shard_t *shard = arg;
    worker_t *self = shard->worker;
    if (what == CURL_POLL_REMOVE) {
        if (socket_arg) {
            evloop_fd_remove (self->loop, fd);
            curl_multi_assign (shard->multi, fd, NULL);
        }
        return 0;
    }
    int events = (what & CURL_POLL_IN ? EVLOOP_READ : 0) | (what & CURL_POLL_OUT ? EVLOOP_WRITE : 0);
    if (socket_arg) {
        if (evloop_fd_modify (self->loop, fd, events) < 0)
            log_warn (NULL, "cannot watch curl socket %d: %s", (int) fd, strerror (errno));
        return 0;
    }
    int rc = evloop_fd_add (self->loop, fd, events, s_on_curl_fd, shard);
    if (rc < 0 && errno == EEXIST)
        rc = evloop_fd_modify (self->loop, fd, events);
    if (rc < 0) {
        // The transfer will time out; that beats aborting all of them.
        log_warn (NULL, "cannot watch curl socket %d: %s", (int) fd, strerror (errno));
        return 0;
    }
    curl_multi_assign (shard->multi, fd, shard);
    return 0;
}

// s_on_curl_timeout runs libcurl's timeouts.
static void
s_on_curl_timeout (evloop_t *loop, void *arg)
{
    shard_t *shard = arg;
    shard->timer = NULL;  // the loop freed it
    int running;
    curl_multi_socket_action (shard->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    s_finish_done (shard);
}

// s_on_curl_timer is CURLMOPT_TIMERFUNCTION: libcurl's single timeout is
// moved (or, with -1, cancelled).
static int
s_on_curl_timer (CURLM *multi, long timeout_ms, void *arg)
{
    shard_t *shard = arg;
    evloop_t *loop = shard->worker->loop;
    evloop_timer_cancel (loop, &shard->timer);
    if (timeout_ms >= 0)
        shard->timer = evloop_timer_start (loop, timeout_ms, s_on_curl_timeout, shard);
    return 0;
}

// s_abort_all stops every running call and hands each job back to the
// broker (RESULT "handback"), which requeues it at once without counting
// the attempt (the worker is going away or has given up draining).
static void
s_abort_all (worker_t *self)
{
    transfer_t *transfer;
    while ((transfer = zlistx_detach (self->transfers, NULL)) != NULL) {
        const char *id = transfer_job (transfer)->id;
        int attempt = transfer_attempt (transfer);
        log_warn (id, "attempt %d handed back at shutdown", attempt);
        response_outcome_t out;
        response_outcome_error (&out, "handback", "worker_stopped",
                                "the worker stopped before the call finished");
        s_send_result (self, id, attempt, transfer_job (transfer)->lease, &out);
        response_outcome_free (&out);
        s_remove (transfer);
        s_untrack (self, transfer);
        transfer_destroy (&transfer);
    }
}

// s_cancel aborts the running attempt a CANCEL names (the client canceled
// the job); the RESULT "canceled" returns its credit.
static void
s_cancel (worker_t *self, pack_reader_t *body)
{
    size_t id_len = 0;
    const char *id = pack_get_str (body, "id", &id_len);
    int64_t attempt = 0;
    if (!id || !job_id_valid (id, id_len) || pack_get_int (body, "attempt", &attempt) < 0) {
        log_warn (NULL, "dropped CANCEL without a valid id and attempt");
        return;
    }
    for (transfer_t *transfer = zlistx_first (self->transfers); transfer;
         transfer = zlistx_next (self->transfers)) {
        if (memcmp (transfer_job (transfer)->id, id, JOB_ID_LEN) != 0
            || transfer_attempt (transfer) != attempt)
            continue;
        zlistx_detach_cur (self->transfers);
        shard_t *shard = transfer_owner (transfer);
        s_remove (transfer);
        s_untrack (self, transfer);
        response_outcome_t out;
        response_outcome_error (&out, "canceled", "canceled", "canceled by the client");
        s_send_result (self, transfer_job (transfer)->id, (int) attempt,
                       transfer_job (transfer)->lease, &out);
        response_outcome_free (&out);
        log_info (transfer_job (transfer)->id, "attempt %d canceled: transfer aborted", (int) attempt);
        transfer_destroy (&transfer);
        if (shard)
            s_finish_done (shard);
        return;
    }
}

// --- JGP/1 commands from the broker ---

// s_shard_for picks the multi handle for a call: a user's URL (http without
// provider, crawl, webhook) only ever runs in a direct shard and a provider
// call in a provider shard, so no connection one kind opened is ever
// reused by the other (libcurl reuses a pooled connection for a redirect
// hop without asking the open-socket check). Within its kind, the least
// busy: its idle connections are the likeliest to be free for reuse.
static shard_t *
s_shard_for (worker_t *self, bool user_url)
{
    size_t per_kind = self->shards_count / 2;
    shard_t *first = &self->shards[user_url ? per_kind : 0];
    shard_t *shard = first;
    for (size_t i = 1; i < per_kind; i++)
        if (first[i].running < shard->running)
            shard = &first[i];
    return shard;
}

// s_dispatch starts the attempt a DISPATCH asks for (§3.2).
static void
s_dispatch (worker_t *self, pack_reader_t *body)
{
    size_t id_len = 0;
    const char *id_field = pack_get_str (body, "id", &id_len);
    char id[JOB_ID_LEN + 1] = "";
    if (id_field && job_id_valid (id_field, id_len)) {
        memcpy (id, id_field, JOB_ID_LEN);
        id[JOB_ID_LEN] = '\0';
    }
    int64_t attempt = 0;
    if (!*id || pack_get_int (body, "attempt", &attempt) < 0 || attempt < 1
        || attempt > INT_MAX) {
        // Without an id and attempt no RESULT could be matched: drop it.
        log_warn (*id ? id : NULL, "dropped DISPATCH without a valid id and attempt");
        return;
    }
    // Every RESULT of this attempt echoes its lease token (§3.2).
    char *lease = pack_get_strdup (body, "lease");
    job_t *job = job_unpack (body);
    if (!job) {
        s_refuse (self, id, (int) attempt, lease, "failed", "invalid_request",
                  "the DISPATCH carries an invalid job record");
        free (lease);
        return;
    }
    // A fallback's attempt names the provider to call and the model to send.
    job->via = pack_get_strdup (body, "via");
    job->model = pack_get_strdup (body, "model");
    if (self->draining)
        s_refuse (self, id, (int) attempt, lease, "handback", "worker_draining",
                  "the worker is shutting down");
    else if ((int) zlistx_size (self->transfers) >= self->concurrency)
        // The broker sent more than our credit: refuse rather than exceed
        // the concurrency we promised to hold.
        s_refuse (self, id, (int) attempt, lease, "retry", "worker_overloaded",
                  "DISPATCH beyond the worker's credit");
    else {
        char reason[256];
        transfer_t *transfer = transfer_new (&job, (int) attempt, self->config, reason,
                                             sizeof reason);
        if (!transfer)
            s_refuse (self, id, (int) attempt, lease, "failed", "invalid_request", reason);
        else {
            transfer_start (transfer, clock_mono_ms ());
            transfer_set_chunk_fn (transfer, s_on_chunk, self);
            void *handle = zlistx_add_end (self->transfers, transfer);
            transfer_set_handle (transfer, handle);
            const request_t *request = transfer_request (transfer);
            shard_t *shard = s_shard_for (self, request_user_url (request));
            if (curl_multi_add_handle (shard->multi, transfer_easy (transfer)) != CURLM_OK) {
                zlistx_delete (self->transfers, handle);
                transfer_destroy (&transfer);
                s_refuse (self, id, (int) attempt, lease, "retry", "transfer_failed",
                          "libcurl refused the transfer");
            }
            else {
                transfer_set_owner (transfer, shard);
                shard->running++;
                if (request_is_stream (request))
                    self->streams++;
                // The query string may carry secrets: log up to the path.
                const char *url = request_url (request);
                log_debug (id, "attempt %d started: %s %.*s", (int) attempt,
                           request_method (request), (int) strcspn (url, "?"), url);
            }
        }
    }
    free (lease);
    job_destroy (&job);
}

// s_broker_message handles one message from the broker (one body of a
// batch).
static void
s_broker_message (proto_msg_t *msg, void *arg)
{
    worker_t *self = arg;
    switch (msg->cmd) {
    case PROTO_DISPATCH:
        s_dispatch (self, msg->body);
        break;
    case PROTO_CANCEL:
        s_cancel (self, msg->body);
        break;
    case PROTO_HEARTBEAT:
        break;
    case PROTO_ACK:
        s_ack (self, msg->body);
        break;
    case PROTO_RECONNECT:
        log_info (NULL, "the broker does not know this worker: sending READY again");
        s_send_ready (self);
        break;
    default:
        log_warn (NULL, "dropped %s: not a broker-to-worker command",
                  proto_cmd_name (msg->cmd));
        break;
    }
}

static void
s_on_broker (evloop_t *loop, zsock_t *sock, void *arg)
{
    worker_t *self = arg;
    // Anything at all from the broker proves it alive (§5).
    self->last_heard_ms = self->broker_heard_ms = clock_mono_ms ();
    proto_recv_each (sock, false, "broker", s_broker_message, self);
}

// --- heartbeats, liveness, drain ---

// s_on_tick sends HEARTBEAT after a quiet interval and reconnects when the
// broker has been silent too long (§5).
static void
s_on_tick (evloop_t *loop, void *arg)
{
    worker_t *self = arg;
    int64_t now = clock_mono_ms ();
    // After a long loop turn the broker's messages may be waiting unread:
    // they prove it alive as well as reading them would.
    if (self->dealer && (zsock_events (self->dealer) & ZMQ_POLLIN))
        self->last_heard_ms = self->broker_heard_ms = now;
    if (now - self->last_heard_ms >= self->liveness_ms) {
        log_warn (NULL, "broker silent for %lld ms: reconnecting to %s",
                  (long long) (now - self->last_heard_ms), self->config->broker_backend);
        s_reconnect (self);
    }
    // A busy worker sends no HEARTBEAT for liveness (its RESULTs are), but
    // its figures still go every WORKER_FIGURES_MS.
    if (now - self->last_sent_ms >= self->heartbeat_ms
        || now - self->last_figures_ms >= WORKER_FIGURES_MS)
        s_send_heartbeat (self);
    // A drain that waits for ACKs ends when the broker falls silent.
    s_stop_if_drained (self);
}

// s_tick_start (re)starts the repeating tick for the heartbeat interval.
static void
s_tick_start (worker_t *self)
{
    evloop_timer_cancel (self->loop, &self->tick_timer);
    int64_t period = self->heartbeat_ms / WORKER_TICKS_PER_HEARTBEAT;
    self->tick_timer = evloop_timer_every (self->loop, period > 10 ? period : 10, s_on_tick, self);
}

// s_on_drain_timeout gives up on calls that outlive the drain.
static void
s_on_drain_timeout (evloop_t *loop, void *arg)
{
    worker_t *self = arg;
    self->drain_timer = NULL;  // the loop freed it
    log_warn (NULL, "drain timeout after %lld ms: abandoning %zu calls (%zu RESULTs not "
              "acknowledged)", (long long) self->drain_timeout_ms, zlistx_size (self->transfers),
              zlistx_size (self->held));
    s_abort_all (self);
    s_stop (self);
}

void
worker_drain (worker_t *self)
{
    if (self->draining) {
        log_warn (NULL, "second stop signal: abandoning %zu calls",
                  zlistx_size (self->transfers));
        s_abort_all (self);
        s_stop (self);
        return;
    }
    self->draining = true;
    log_info (NULL, "draining: %zu calls running, no new work accepted",
              zlistx_size (self->transfers));
    s_send_empty (self, PROTO_DISCONNECT);
    if (s_drained (self))
        s_stop (self);
    else
        self->drain_timer = evloop_timer_start (self->loop, self->drain_timeout_ms,
                                                s_on_drain_timeout, self);
}

// --- the class ---

// s_held_free is the held list's destructor.
static void
s_held_free (void **item)
{
    free (*item);
    *item = NULL;
}

worker_t *
worker_new (const config_t *config, evloop_t *loop)
{
    worker_t *self = mem_calloc (1, sizeof *self);
    self->config = config;
    self->loop = loop;
    self->concurrency = config->worker_concurrency > 0 ? config->worker_concurrency : 1;
    self->heartbeat_ms = WORKER_HEARTBEAT_MS;
    self->liveness_ms = WORKER_LIVENESS_MS;
    self->drain_timeout_ms = WORKER_DRAIN_TIMEOUT_MS;
    unsigned char key[16];
    randombytes_buf (key, sizeof key);
    sodium_bin2hex (self->key, sizeof self->key, key, sizeof key);
    self->transfers = zlistx_new ();
    self->held = zlistx_new ();
    zlistx_set_destructor (self->held, s_held_free);
    self->shards_count = 2 * (((size_t) self->concurrency + WORKER_SHARD_CALLS - 1)
                              / WORKER_SHARD_CALLS);
    self->shards = mem_calloc (self->shards_count, sizeof *self->shards);
    for (size_t i = 0; i < self->shards_count; i++) {
        shard_t *shard = &self->shards[i];
        shard->worker = self;
        // curl_multi_init fails only when it cannot allocate the handle.
        shard->multi = mem_lib (curl_multi_init ());
        curl_multi_setopt (shard->multi, CURLMOPT_SOCKETFUNCTION, s_on_curl_socket);
        curl_multi_setopt (shard->multi, CURLMOPT_SOCKETDATA, shard);
        curl_multi_setopt (shard->multi, CURLMOPT_TIMERFUNCTION, s_on_curl_timer);
        curl_multi_setopt (shard->multi, CURLMOPT_TIMERDATA, shard);
        // Keep as many idle connections as calls may run on this handle,
        // so a steady load reuses connections instead of opening new ones.
        curl_multi_setopt (shard->multi, CURLMOPT_MAXCONNECTS, (long) WORKER_SHARD_CALLS);
    }
    char error[512];
    self->curve = curve_new (config, false, error, sizeof error);
    if (!self->curve)
        log_error (NULL, "%s", error);
    if (!self->curve || s_socket_open (self) < 0) {
        worker_destroy (&self);
        return NULL;
    }
    self->last_heard_ms = self->broker_heard_ms = clock_mono_ms ();
    evloop_on_idle (loop, s_on_idle, self);
    s_send_ready (self);
    s_flush (self);
    s_tick_start (self);
    log_info (NULL, "worker connected to %s with concurrency %d", config->broker_backend,
              self->concurrency);
    return self;
}

void
worker_destroy (worker_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    worker_t *self = *self_p;
    if (self->transfers)
        s_abort_all (self);
    evloop_timer_cancel (self->loop, &self->tick_timer);
    evloop_timer_cancel (self->loop, &self->drain_timer);
    for (size_t i = 0; self->shards && i < self->shards_count; i++) {
        shard_t *shard = &self->shards[i];
        if (!shard->multi)
            continue;
        // Closing cached connections still reports sockets (kept on the
        // loop until then); libcurl's timer is of no use any more.
        curl_multi_setopt (shard->multi, CURLMOPT_TIMERFUNCTION, NULL);
        evloop_timer_cancel (self->loop, &shard->timer);
        curl_multi_cleanup (shard->multi);
    }
    free (self->shards);
    // The last RESULTs and DISCONNECT get a moment to reach the broker.
    s_socket_close (self, WORKER_EXIT_LINGER_MS);
    curve_destroy (&self->curve);
    if (self->loop)
        evloop_on_idle (self->loop, NULL, NULL);
    zlistx_destroy (&self->transfers);
    zlistx_destroy (&self->held);
    free (self);
    *self_p = NULL;
}

void
worker_set_timing (worker_t *self, int64_t heartbeat_ms, int64_t liveness_ms,
                   int64_t drain_timeout_ms)
{
    if (heartbeat_ms > 0)
        self->heartbeat_ms = heartbeat_ms;
    if (liveness_ms > 0)
        self->liveness_ms = liveness_ms;
    if (drain_timeout_ms > 0)
        self->drain_timeout_ms = drain_timeout_ms;
    s_tick_start (self);
}

size_t
worker_running (const worker_t *self)
{
    return zlistx_size (self->transfers);
}

size_t
worker_reconnects (const worker_t *self)
{
    return self->reconnects;
}

// --- self-test ---

// s_test_drain plays the SIGTERM handler.
static void
s_test_drain (evloop_t *loop, void *arg)
{
    worker_drain (arg);
}

// s_test_recv receives the worker's next message, one body at a time: a
// batch (docs/protocol.md §2.1) is split into single-body messages kept for
// the next calls.
static proto_msg_t *
s_test_recv (zsock_t *router)
{
    static zlist_t *held = NULL;
    if (!held)
        held = zlist_new ();
    if (zlist_size (held) == 0) {
        zmsg_t *batch = zmsg_recv (router);
        assert (batch && zmsg_size (batch) >= 4);
        zframe_t *envelope = zmsg_pop (batch);
        zframe_t *version = zmsg_pop (batch);
        zframe_t *command = zmsg_pop (batch);
        zframe_t *body;
        while ((body = zmsg_pop (batch)) != NULL) {
            zmsg_t *single = zmsg_new ();
            zmsg_append (single, &(zframe_t *) { zframe_dup (envelope) });
            zmsg_append (single, &(zframe_t *) { zframe_dup (version) });
            zmsg_append (single, &(zframe_t *) { zframe_dup (command) });
            zmsg_append (single, &body);
            zlist_append (held, single);
        }
        zframe_destroy (&envelope);
        zframe_destroy (&version);
        zframe_destroy (&command);
        zmsg_destroy (&batch);
    }
    zmsg_t *next = zlist_pop (held);
    const char *error = NULL;
    proto_msg_t *msg = proto_decode (&next, true, &error);
    if (zlist_size (held) == 0)
        zlist_destroy (&held);
    return msg;
}

// s_test_expect receives the next non-HEARTBEAT message from the worker and
// checks its command; the routing id is kept in *envelope_p.
static proto_msg_t *
s_test_expect (zsock_t *router, proto_cmd_t cmd, zframe_t **envelope_p)
{
    while (true) {
        proto_msg_t *msg = s_test_recv (router);
        assert (msg);
        if (msg->cmd == PROTO_HEARTBEAT && cmd != PROTO_HEARTBEAT) {
            proto_msg_destroy (&msg);
            continue;
        }
        if (msg->cmd != cmd)
            fprintf (stderr, "worker: expected %s, got %s\n", proto_cmd_name (cmd),
                     proto_cmd_name (msg->cmd));
        assert (msg->cmd == cmd);
        zframe_destroy (envelope_p);
        *envelope_p = zframe_dup (msg->envelope);
        return msg;
    }
}

// s_test_dispatch sends a DISPATCH of a job with kind and spec; the new id
// is written to id.
static void
s_test_dispatch (zsock_t *router, zframe_t *envelope, const char *kind, const char *spec,
                 int attempt, char *id)
{
    job_t *job = job_new ();
    assert (job);
    job_id_generate (job->id);
    strcpy (id, job->id);
    job_set_str (&job->kind, kind);
    job_set_str (&job->spec, spec);
    job->status = JOB_RUNNING;
    job->timeout_ms = 2000;
    job->created_at = clock_wall_ms ();
    pack_writer_t *body = pack_writer_new ();
    job_pack (job, body);
    pack_put_int (body, "attempt", attempt);
    assert (proto_send (router, envelope, PROTO_DISPATCH, body) == 0);
    pack_writer_destroy (&body);
    job_destroy (&job);
}

// s_test_ack_run acknowledges count RESULTs from seq on as the broker does
// after its commit.
static void
s_test_ack_run (zsock_t *router, zframe_t *envelope, int64_t seq, int64_t count)
{
    pack_writer_t *body = pack_writer_new ();
    pack_put_int (body, "seq", seq);
    pack_put_int (body, "count", count);
    assert (proto_send (router, envelope, PROTO_ACK, body) == 0);
    pack_writer_destroy (&body);
}

// s_test_ack acknowledges RESULT seq.
static void
s_test_ack (zsock_t *router, zframe_t *envelope, int64_t seq)
{
    s_test_ack_run (router, envelope, seq, 1);
}

// s_test_result receives a RESULT, checks outcome and error type, and
// acknowledges it.
static void
s_test_result (zsock_t *router, zframe_t **envelope_p, const char *id, int attempt,
               const char *outcome, const char *error_type)
{
    proto_msg_t *msg = s_test_expect (router, PROTO_RESULT, envelope_p);
    char *got_id = pack_get_strdup (msg->body, "id");
    char *got_outcome = pack_get_strdup (msg->body, "outcome");
    char *got_error = pack_get_strdup (msg->body, "error");
    int64_t got_attempt = 0;
    assert (pack_get_int (msg->body, "attempt", &got_attempt) == 0);
    if (id)
        assert (got_id && strcmp (got_id, id) == 0 && got_attempt == attempt);
    if (!got_outcome || strcmp (got_outcome, outcome) != 0 || !got_error
        || !strstr (got_error, error_type))
        fprintf (stderr, "worker: RESULT %s %s\n", got_outcome ? got_outcome : "-",
                 got_error ? got_error : "-");
    assert (got_outcome && strcmp (got_outcome, outcome) == 0);
    assert (got_error && strstr (got_error, error_type));
    // The broker's part (§3.2.4): acknowledged, so never sent again.
    int64_t seq = 0;
    assert (pack_get_int (msg->body, "seq", &seq) == 0 && seq > 0);
    s_test_ack (router, *envelope_p, seq);
    free (got_id);
    free (got_outcome);
    free (got_error);
    proto_msg_destroy (&msg);
}

// s_test_send_raw sends frames as they are, for malformed messages.
static void
s_test_send_raw (zsock_t *router, zframe_t *envelope, const char *version,
                 const char *command, const void *body, size_t size)
{
    zmsg_t *msg = zmsg_new ();
    zmsg_append (msg, &(zframe_t *) { zframe_dup (envelope) });
    zmsg_addstr (msg, version);
    if (command)
        zmsg_addstr (msg, command);
    if (body)
        zmsg_addmem (msg, body, size);
    assert (zmsg_send (&msg, router) == 0);
}

// s_test_result_leaves sends a RESULT of id and checks that it leaves at
// the turn's end, alone in its message.
static void
s_test_result_leaves (worker_t *worker, zsock_t *router, const char *id,
                      const response_outcome_t *out)
{
    s_send_result (worker, id, 1, NULL, out);
    s_on_idle (worker->loop, worker);
    assert (proto_batch_count (worker->outbox) == 0);
    zmsg_t *batch = zmsg_recv (router);
    assert (batch && zmsg_size (batch) == 4);   // envelope, version, command, one body
    zmsg_destroy (&batch);
}

void
worker_test (bool verbose)
{
    if (verbose)
        printf (" * worker: ");
    log_init ("worker-test", LOG_ERROR_);
    char error[256];
    config_t *config = config_load (NULL, error, sizeof error);
    assert (config);
    free (config->broker_backend);
    config->broker_backend = mem_strdup ("inproc://worker-selftest");
    config->worker_concurrency = 2;
    config->allow_private_networks = false;

    zsock_t *router = zsock_new (ZMQ_ROUTER);
    assert (router);
    zsock_set_rcvtimeo (router, 2000);
    assert (zsock_bind (router, "inproc://worker-selftest") == 0);
    evloop_t *loop = evloop_new ();
    assert (loop);
    worker_t *worker = worker_new (config, loop);
    assert (worker);
    // Liveness out of the way until it is tested.
    worker_set_timing (worker, 100, 60000, 2000);

    // READY announces the full credit.
    evloop_run_for (loop, 20);
    zframe_t *envelope = NULL;
    proto_msg_t *msg = s_test_expect (router, PROTO_READY, &envelope);
    int64_t value = 0;
    assert (pack_get_int (msg->body, "credit", &value) == 0 && value == 2);
    assert (pack_get_int (msg->body, "concurrency", &value) == 0 && value == 2);
    proto_msg_destroy (&msg);

    // An invalid spec fails at once, as invalid_request.
    char id[JOB_ID_LEN + 1];
    s_test_dispatch (router, envelope, "http", "{\"request\":{}}", 1, id);
    s_test_dispatch (router, envelope, "http", "{\"request\":{\"url\":[]}", 1, id);
    s_test_dispatch (router, envelope, "gopher", "{\"request\":{}}", 3, id);
    evloop_run_for (loop, 20);
    s_test_result (router, &envelope, NULL, 1, "failed", "invalid_request");
    s_test_result (router, &envelope, NULL, 1, "failed", "invalid_request");
    s_test_result (router, &envelope, id, 3, "failed", "invalid_request");

    // Malformed and misdirected messages are dropped; the worker lives on
    // and answers a heartbeat.
    s_test_send_raw (router, envelope, "JGP1", "DISPATCH", "\x81", 1);
    s_test_send_raw (router, envelope, "JGP9", "DISPATCH", "\x80", 1);
    s_test_send_raw (router, envelope, "JGP1", "SUBMIT", "\x80", 1);
    s_test_send_raw (router, envelope, "JGP1", "DISPATCH", "\x80", 1);
    s_test_send_raw (router, envelope, "JGP1", NULL, NULL, 0);
    s_test_send_raw (router, envelope, "JGP1", "LAUNCH", "\x80", 1);
    // A record with the right id but a broken field is answered, not dropped.
    s_test_send_raw (router, envelope, "JGP1", "DISPATCH",
                     "\x82\xa2id\xd9\x24" "00000000-0000-4000-8000-000000000000"
                     "\xa7" "attempt\x01", 1 + 3 + 2 + 36 + 8 + 1);
    evloop_run_for (loop, 150);
    s_test_result (router, &envelope, "00000000-0000-4000-8000-000000000000", 1, "failed",
                   "invalid_request");
    msg = s_test_expect (router, PROTO_HEARTBEAT, &envelope);
    assert (pack_get_int (msg->body, "running", &value) == 0 && value == 0);
    // It carries this process's figures for the broker's /metrics
    // (revision 4, docs/protocol.md §3.2.4).
    int64_t now_ms = clock_wall_ms ();
    assert (pack_get_int (msg->body, "started_at", &value) == 0 && value <= now_ms
            && value > now_ms - 365LL * 86400 * 1000);
    assert (pack_get_int (msg->body, "rss_bytes", &value) == 0 && value > 0);
    assert (pack_get_int (msg->body, "open_fds", &value) == 0 && value > 0);
    assert (pack_get_int (msg->body, "max_fds", &value) == 0 && value > 0);
    assert (pack_get_int (msg->body, "cpu_ms", &value) == 0 && value >= 0);
    assert (pack_get_int (msg->body, "concurrency", &value) == 0 && value == 2);
    proto_msg_destroy (&msg);

    // Three DISPATCHes against a credit of two: two run (and meet the SSRF
    // policy: loopback is refused before any packet leaves), the third is
    // refused as overloaded.
    char ids[3][JOB_ID_LEN + 1];
    for (int i = 0; i < 3; i++)
        s_test_dispatch (router, envelope, "http",
                         "{\"request\":{\"url\":\"http://127.0.0.1:9/\"}}", 1, ids[i]);
    evloop_run_for (loop, 200);
    assert (worker_running (worker) == 0);
    s_test_result (router, &envelope, ids[2], 1, "retry", "worker_overloaded");
    s_test_result (router, &envelope, NULL, 1, "failed", "blocked_by_policy");
    s_test_result (router, &envelope, NULL, 1, "failed", "blocked_by_policy");

    // A loop turn that ran longer than the heartbeat interval sends a
    // HEARTBEAT at once, without waiting for the turn's end or the timer.
    // (What the timer sent so far is read first.)
    zsock_set_rcvtimeo (router, 50);
    zmsg_t *earlier;
    while ((earlier = zmsg_recv (router)) != NULL)
        zmsg_destroy (&earlier);
    usleep (150 * 1000);
    s_heartbeat_if_late (worker);
    msg = s_test_expect (router, PROTO_HEARTBEAT, &envelope);
    assert (pack_get_int (msg->body, "running", &value) == 0 && value == 0);
    proto_msg_destroy (&msg);
    s_heartbeat_if_late (worker);
    earlier = zmsg_recv (router);
    assert (earlier == NULL);
    zsock_set_rcvtimeo (router, 2000);

    // While other calls run, a RESULT waits at the turn's end for others to
    // leave with it, up to WORKER_RESULT_LINGER_MS after the first; then
    // they go as one message (a batch of two bodies after the command).
    void *running = zlistx_add_end (worker->transfers, worker);    // stands for a call
    response_outcome_t refused;
    response_outcome_error (&refused, "failed", "invalid_request", "lingering");
    uint64_t linger_first = worker->result_seq + 1;
    s_send_result (worker, ids[0], 1, NULL, &refused);
    s_on_idle (loop, worker);
    assert (proto_batch_count (worker->outbox) == 1);
    s_send_result (worker, ids[1], 1, NULL, &refused);
    s_on_idle (loop, worker);
    assert (proto_batch_count (worker->outbox) == 2);
    worker->outbox_since_ms -= WORKER_RESULT_LINGER_MS;     // the wait is over
    s_on_idle (loop, worker);
    assert (proto_batch_count (worker->outbox) == 0);
    zmsg_t *batch = zmsg_recv (router);
    assert (batch && zmsg_size (batch) == 5);
    zmsg_destroy (&batch);
    // Anything but a RESULT leaves at the turn's end, and takes the waiting
    // RESULTs along.
    s_send_result (worker, ids[0], 1, NULL, &refused);
    s_send_heartbeat (worker);
    s_on_idle (loop, worker);
    assert (proto_batch_count (worker->outbox) == 0);
    batch = zmsg_recv (router);
    assert (batch && zmsg_size (batch) == 4);   // the RESULT's message
    zmsg_destroy (&batch);
    batch = zmsg_recv (router);
    assert (batch && zmsg_size (batch) == 4);   // the HEARTBEAT's
    zmsg_destroy (&batch);
    // A busy worker's turns begin at most every WORKER_PACE_US; one with few
    // calls, or a streamed call among them, or draining, or near its
    // concurrency, is never paced.
    worker->concurrency = 4 * WORKER_PACE_MIN_CALLS;
    assert (!s_paced (worker));
    void *more_running[WORKER_PACE_MIN_CALLS - 1];
    for (size_t i = 0; i < WORKER_PACE_MIN_CALLS - 1; i++)
        more_running[i] = zlistx_add_end (worker->transfers, worker);
    assert (s_paced (worker));
    worker->streams = 1;
    assert (!s_paced (worker));
    worker->streams = 0;
    worker->draining = true;
    assert (!s_paced (worker));
    worker->draining = false;
    worker->concurrency = WORKER_PACE_MIN_CALLS + 1;   // 1 call of credit left
    assert (!s_paced (worker));
    // Nor does a RESULT wait then: its credit is wanted.
    s_test_result_leaves (worker, router, ids[0], &refused);
    worker->concurrency = config->worker_concurrency;
    for (size_t i = 0; i < WORKER_PACE_MIN_CALLS - 1; i++)
        zlistx_delete (worker->transfers, more_running[i]);
    // With no other call running (sequential use) it leaves at once.
    zlistx_delete (worker->transfers, running);
    s_test_result_leaves (worker, router, ids[1], &refused);
    response_outcome_free (&refused);
    s_test_ack_run (router, envelope, (int64_t) linger_first,
                    (int64_t) (worker->result_seq - linger_first + 1));
    evloop_run_for (loop, 20);
    assert (zlistx_size (worker->held) == 0);

    // RECONNECT is answered with READY and the free credit.
    pack_writer_t *empty = pack_writer_new ();
    assert (proto_send (router, envelope, PROTO_RECONNECT, empty) == 0);
    evloop_run_for (loop, 20);
    msg = s_test_expect (router, PROTO_READY, &envelope);
    assert (pack_get_int (msg->body, "credit", &value) == 0 && value == 2);
    proto_msg_destroy (&msg);

    // Revision 4 (§3.2.4): a RESULT not acknowledged goes again, with the
    // same number, after the READY that follows a RECONNECT; once
    // acknowledged it does not.
    s_test_dispatch (router, envelope, "http", "{\"request\":{}}", 4, id);
    evloop_run_for (loop, 20);
    msg = s_test_expect (router, PROTO_RESULT, &envelope);
    int64_t first_seq = 0;
    assert (pack_get_int (msg->body, "seq", &first_seq) == 0 && first_seq > 0);
    proto_msg_destroy (&msg);
    assert (proto_send (router, envelope, PROTO_RECONNECT, empty) == 0);
    evloop_run_for (loop, 20);
    msg = s_test_expect (router, PROTO_READY, &envelope);
    proto_msg_destroy (&msg);
    msg = s_test_expect (router, PROTO_RESULT, &envelope);
    assert (pack_get_int (msg->body, "seq", &value) == 0 && value == first_seq);
    char *resent_id = pack_get_strdup (msg->body, "id");
    assert (resent_id && strcmp (resent_id, id) == 0);
    free (resent_id);
    proto_msg_destroy (&msg);
    s_test_ack (router, envelope, first_seq);
    // A malformed ACK is dropped.
    s_test_send_raw (router, envelope, "JGP1", "ACK", "\x81\xa3seq\x00", 6);
    evloop_run_for (loop, 20);
    assert (proto_send (router, envelope, PROTO_RECONNECT, empty) == 0);
    evloop_run_for (loop, 150);
    msg = s_test_expect (router, PROTO_READY, &envelope);
    proto_msg_destroy (&msg);
    msg = s_test_expect (router, PROTO_HEARTBEAT, &envelope);
    proto_msg_destroy (&msg);
    assert (zlistx_size (worker->held) == 0 && worker->held_bytes == 0);

    // A silent broker makes the worker reconnect (new routing id) and send
    // READY again.
    // The silence counts from now: counted from the RECONNECT above (a
    // turn of 150 ms earlier), a second reconnect fell inside the 450 ms.
    zframe_t *old_envelope = zframe_dup (envelope);
    worker->last_heard_ms = clock_mono_ms ();
    worker_set_timing (worker, 100, 300, 2000);
    evloop_run_for (loop, 450);
    assert (worker_reconnects (worker) == 1);
    msg = s_test_expect (router, PROTO_READY, &envelope);
    assert (!zframe_eq (envelope, old_envelope));
    proto_msg_destroy (&msg);
    zframe_destroy (&old_envelope);

    // The broker's heartbeats keep it connected.
    for (int i = 0; i < 6; i++) {
        assert (proto_send (router, envelope, PROTO_HEARTBEAT, empty) == 0);
        evloop_run_for (loop, 100);
    }
    assert (worker_reconnects (worker) == 1);

    // Drain with nothing running: DISCONNECT; the loop stops once the last
    // RESULT is acknowledged (§3.2.4), not before.
    worker_set_timing (worker, 100, 60000, 2000);
    s_test_dispatch (router, envelope, "http", "{\"request\":{}}", 6, id);
    evloop_run_for (loop, 20);
    msg = s_test_expect (router, PROTO_RESULT, &envelope);
    int64_t last_seq = 0;
    assert (pack_get_int (msg->body, "seq", &last_seq) == 0 && last_seq > first_seq);
    proto_msg_destroy (&msg);
    evloop_timer_start (loop, 0, s_test_drain, worker);
    assert (!evloop_run_for (loop, 100));
    msg = s_test_expect (router, PROTO_DISCONNECT, &envelope);
    proto_msg_destroy (&msg);
    s_test_ack (router, envelope, last_seq);
    assert (evloop_run_for (loop, 1000));
    // A DISPATCH that crosses the DISCONNECT is handed back.
    s_test_dispatch (router, envelope, "http", "{\"request\":{\"url\":\"http://a/\"}}", 2, id);
    evloop_run_for (loop, 50);
    s_test_result (router, &envelope, id, 2, "handback", "worker_draining");

    worker_destroy (&worker);
    worker_destroy (&worker);

    // A drain does not wait for the ACKs of a broker that fell silent.
    zsock_set_rcvtimeo (router, 50);
    while ((earlier = zmsg_recv (router)) != NULL)
        zmsg_destroy (&earlier);
    zsock_set_rcvtimeo (router, 2000);
    worker = worker_new (config, loop);
    assert (worker);
    worker->broker_acks = true;     // as after an earlier ACK
    worker_set_timing (worker, 100, 200, 5000);
    evloop_run_for (loop, 20);
    msg = s_test_expect (router, PROTO_READY, &envelope);
    proto_msg_destroy (&msg);
    s_test_dispatch (router, envelope, "http", "{\"request\":{}}", 1, id);
    evloop_run_for (loop, 20);
    msg = s_test_expect (router, PROTO_RESULT, &envelope);
    proto_msg_destroy (&msg);
    evloop_timer_start (loop, 0, s_test_drain, worker);
    assert (evloop_run_for (loop, 3000));
    assert (zlistx_size (worker->held) == 1);
    worker_destroy (&worker);

    pack_writer_destroy (&empty);
    zframe_destroy (&envelope);
    evloop_destroy (&loop);
    zsock_destroy (&router);
    config_destroy (&config);
    log_init ("worker", LOG_INFO_);
    if (verbose)
        printf ("OK\n");
}
