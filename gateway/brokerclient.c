// brokerclient — the gateway's side of JGP/1: calls to the broker, its
// liveness, and its event stream.
#include "brokerclient.h"
#include "log.h"
#include "mem.h"

#include <assert.h>
#include <stdio.h>
#include <string.h>

// The resend check runs this many times per resend delay, so a request
// goes again at most a quarter of the delay late.
#define RESEND_TICKS 4

// One request in flight, with its encoded body (one allocation).
typedef struct {
    uint64_t corr;              // its correlation id
    proto_cmd_t cmd;            // its command
    brokerclient_answer_fn *fn; // who takes the answer...
    void *owner;                // ...for whom
    uint64_t *call_p;           // the owner's handle, zeroed when the call ends
    int64_t sent_ms;            // monotonic time it was last handed to the socket
    char job_id[JOB_ID_LEN + 1]; // the job it concerns, for log lines; "" = none
    size_t size;                // bytes in data
    char data[];                // the body as sent (corr included)
} call_t;

struct _brokerclient_t {
    evloop_t *loop;             // borrowed event loop
    zsock_t *dealer;            // requests to the broker's frontend
    zsock_t *sub;               // the broker's events
    curve_t *curve;             // CURVE of both sockets (borrowed), or NULL
    proto_batch_t *outbox;      // this loop turn's requests, sent at its end
    bool outbox_refused;        // the last send found no broker: resend all
    zhashx_t *pending;          // corr → call_t not answered yet
    uint64_t next_corr;         // the last correlation id given
    uint64_t ping_corr;         // corr of the last PING
    int64_t last_pong_ms;       // monotonic time of the last PONG, 0 = none yet
    int64_t workers;            // the broker's counts, from the last PONG
    int64_t queued;
    int64_t running;
    uint64_t last_seq;          // seq of the last event
    int64_t last_epoch;         // the broker run the events come from, 0 = none yet
    uint64_t events;            // events received
    uint64_t gaps;              // gaps seen
    brokerclient_event_fn *on_event; // where events go...
    brokerclient_gap_fn *on_gap;     // ...and gaps
    void *arg;                  // their argument
    int64_t ping_ms;            // PING period
    int64_t resend_ms;          // resend delay
    evloop_timer_t *ping_timer; // repeating: PING
    evloop_timer_t *resend_timer; // repeating: resends
};

// Correlation ids and socket numbers key the hashes as they are.
static uint64_t
s_number_hash (const void *key)
{
    return (uint64_t) (uintptr_t) key;
}

static int
s_number_compare (const void *a, const void *b)
{
    return (uintptr_t) a < (uintptr_t) b ? -1 : (uintptr_t) a > (uintptr_t) b;
}

// s_call_end takes call off the pending calls and frees it; its owner's
// handle reads 0 from then on.
static void
s_call_end (brokerclient_t *self, call_t *call)
{
    zhashx_delete (self->pending, (void *) (uintptr_t) call->corr);
    if (call->call_p && *call->call_p == call->corr)
        *call->call_p = 0;
    free (call);
}

// s_answer takes one answer of the broker (one body of a batch).
static void
s_answer (proto_msg_t *msg, void *arg)
{
    brokerclient_t *self = arg;
    int64_t corr = 0;
    pack_get_int (msg->body, "corr", &corr);
    if (msg->cmd == PROTO_PONG) {
        if ((uint64_t) corr == self->ping_corr) {
            self->last_pong_ms = evloop_now_ms (self->loop);
            pack_get_int (msg->body, "workers", &self->workers);
            pack_get_int (msg->body, "queued", &self->queued);
            pack_get_int (msg->body, "running", &self->running);
        }
        return;
    }
    call_t *call = corr > 0 ? zhashx_lookup (self->pending, (void *) (uintptr_t) corr) : NULL;
    if (!call)
        return;     // its owner gave up before the answer came, or a duplicate
    brokerclient_answer_fn *fn = call->fn;
    void *owner = call->owner;
    s_call_end (self, call);
    fn (msg, owner);
}

static void
s_dealer_ready (evloop_t *loop, zsock_t *sock, void *arg)
{
    proto_recv_each (sock, false, "broker", s_answer, arg);
}

// s_event takes one event (one body of a batch): §3.3.
static void
s_event (proto_msg_t *msg, void *arg)
{
    brokerclient_t *self = arg;
    int64_t seq = 0, epoch = 0;
    pack_get_int (msg->body, "seq", &seq);
    pack_get_int (msg->body, "epoch", &epoch);
    bool gap = epoch != self->last_epoch || (uint64_t) seq != self->last_seq + 1;
    self->events++;
    if (gap && self->last_epoch != 0) {
        self->gaps++;
        log_info (NULL, "event gap (seq %llu after %llu); rechecking waiters",
                  (unsigned long long) seq, (unsigned long long) self->last_seq);
    }
    self->last_seq = (uint64_t) seq;
    self->last_epoch = epoch;
    if (gap) {
        // The first event of a broker run too: what came before it is unknown.
        self->on_gap (self->arg);
        return;
    }
    // Every job sends three or more events and most have nobody waiting at
    // this gateway: the fields are read in place, nothing is copied but the id.
    size_t id_len = 0, status_len = 0, type_len = 0;
    const char *id = pack_get_str (msg->body, "id", &id_len);
    const char *status = pack_get_str (msg->body, "status", &status_len);
    const char *type = pack_get_str (msg->body, "type", &type_len);
    if (!id || id_len != JOB_ID_LEN || !type)
        return;
    brokerclient_event_t event = { .status = -1, .index = -1, .attempt = -1 };
    memcpy (event.id, id, JOB_ID_LEN);
    event.is_status = type_len == 6 && memcmp (type, "status", 6) == 0;
    event.is_chunk = type_len == 5 && memcmp (type, "chunk", 5) == 0;
    char name[16];
    if (status && status_len < sizeof name) {
        memcpy (name, status, status_len);
        name[status_len] = '\0';
        event.status = job_status_parse (name);
    }
    pack_get_int (msg->body, "attempts", &event.attempts);
    pack_get_int (msg->body, "attempt", &event.attempt);
    pack_get_int (msg->body, "index", &event.index);
    event.data = pack_get_str (msg->body, "data", &event.data_len);
    event.record = pack_get_str (msg->body, "record", &event.record_len);
    self->on_event (&event, self->arg);
}

static void
s_sub_ready (evloop_t *loop, zsock_t *sock, void *arg)
{
    proto_recv_each (sock, true, "events", s_event, arg);
}

// s_ping asks the broker whether it is there (PONG: s_answer).
static void
s_ping (evloop_t *loop, void *arg)
{
    brokerclient_t *self = arg;
    pack_writer_t *body = pack_writer_new ();
    self->ping_corr = ++self->next_corr;
    pack_put_int (body, "corr", (int64_t) self->ping_corr);
    proto_send (self->dealer, NULL, PROTO_PING, body);
    pack_writer_destroy (&body);
}

// s_resend_tick sends again every request the broker has not answered for
// the resend delay, or every one when the last send found no broker.
static void
s_resend_tick (evloop_t *loop, void *arg)
{
    brokerclient_t *self = arg;
    // With no broker connected the socket takes nothing (ZMQ_IMMEDIATE):
    // try again next tick, and then send everything.
    if (!(zsock_events (self->dealer) & ZMQ_POLLOUT)) {
        self->outbox_refused = true;
        return;
    }
    int64_t now = evloop_now_ms (loop);
    bool all = self->outbox_refused;
    self->outbox_refused = false;
    for (call_t *call = zhashx_first (self->pending); call; call = zhashx_next (self->pending)) {
        if (!all && now - call->sent_ms < self->resend_ms)
            continue;
        if (proto_batch_add_bytes (self->outbox, NULL, call->cmd, call->data, call->size) < 0) {
            self->outbox_refused = true;    // the broker went away meanwhile
            break;
        }
        log_info (call->job_id[0] ? call->job_id : NULL, "%s not answered yet; sent again",
                  proto_cmd_name (call->cmd));
        call->sent_ms = now;
    }
}

// s_timers_start (re)starts the repeating timers with the current timing.
static void
s_timers_start (brokerclient_t *self)
{
    evloop_timer_cancel (self->loop, &self->ping_timer);
    evloop_timer_cancel (self->loop, &self->resend_timer);
    self->ping_timer = evloop_timer_every (self->loop, self->ping_ms, s_ping, self);
    int64_t tick = self->resend_ms / RESEND_TICKS;
    self->resend_timer = evloop_timer_every (self->loop, tick > 0 ? tick : 1, s_resend_tick, self);
}

brokerclient_t *
brokerclient_new (evloop_t *loop, const char *frontend, const char *publisher,
                  size_t max_frame_bytes, curve_t *curve, brokerclient_event_fn *on_event,
                  brokerclient_gap_fn *on_gap, void *arg, char *error, size_t error_size)
{
    brokerclient_t *self = mem_calloc (1, sizeof *self);
    self->loop = loop;
    self->curve = curve;
    self->on_event = on_event;
    self->on_gap = on_gap;
    self->arg = arg;
    self->ping_ms = BROKERCLIENT_PING_MS;
    self->resend_ms = BROKERCLIENT_RESEND_MS;
    self->pending = zhashx_new ();
    zhashx_set_key_hasher (self->pending, (zhashx_hash_fn *) s_number_hash);
    zhashx_set_key_comparator (self->pending, s_number_compare);
    zhashx_set_key_duplicator (self->pending, NULL);
    zhashx_set_key_destructor (self->pending, NULL);
    self->dealer = zsock_new (ZMQ_DEALER);
    self->sub = zsock_new (ZMQ_SUB);
    if (!self->dealer || !self->sub) {
        snprintf (error, error_size, "cannot create the broker sockets: %s",
                  zmq_strerror (zmq_errno ()));
        brokerclient_destroy (&self);
        return NULL;
    }
    self->outbox = proto_batch_new (self->dealer);
    zsock_set_linger (self->dealer, 0);
    zsock_set_linger (self->sub, 0);
    // Queue only to a live connection: while the broker is away a send
    // fails at once and the request waits for a resend, instead of piling
    // up to be delivered long after its client was told 503.
    zsock_set_immediate (self->dealer, 1);
    zsock_set_sndhwm (self->dealer, 100000);
    zsock_set_rcvhwm (self->dealer, 100000);
    zsock_set_rcvhwm (self->sub, 100000);
    proto_set_limits (self->dealer, max_frame_bytes);
    proto_set_limits (self->sub, max_frame_bytes);
    zsock_set_subscribe (self->sub, "");
    curve_secure (curve, self->dealer);
    curve_secure (curve, self->sub);
    if (curve_watch (curve, loop, self->dealer, "frontend") < 0
        || curve_watch (curve, loop, self->sub, "publisher") < 0) {
        snprintf (error, error_size, "cannot watch the broker sockets' handshakes");
        brokerclient_destroy (&self);
        return NULL;
    }
    if (zsock_connect (self->dealer, "%s", frontend) < 0
        || zsock_connect (self->sub, "%s", publisher) < 0) {
        snprintf (error, error_size, "cannot connect to the broker at %s / %s", frontend,
                  publisher);
        brokerclient_destroy (&self);
        return NULL;
    }
    evloop_sock_add (loop, self->dealer, s_dealer_ready, self);
    evloop_sock_add (loop, self->sub, s_sub_ready, self);
    s_timers_start (self);
    s_ping (loop, self);
    return self;
}

void
brokerclient_destroy (brokerclient_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    brokerclient_t *self = *self_p;
    evloop_timer_cancel (self->loop, &self->ping_timer);
    evloop_timer_cancel (self->loop, &self->resend_timer);
    if (self->pending) {
        for (call_t *call = zhashx_first (self->pending); call;
             call = zhashx_next (self->pending))
            free (call);
        zhashx_destroy (&self->pending);
    }
    proto_batch_destroy (&self->outbox);
    if (self->dealer) {
        curve_unwatch (self->curve, self->dealer);
        evloop_sock_remove (self->loop, self->dealer);
        zsock_destroy (&self->dealer);
    }
    if (self->sub) {
        curve_unwatch (self->curve, self->sub);
        evloop_sock_remove (self->loop, self->sub);
        zsock_destroy (&self->sub);
    }
    free (self);
    *self_p = NULL;
}

void
brokerclient_call (brokerclient_t *self, proto_cmd_t cmd, pack_writer_t *body,
                   const char *job_id, brokerclient_answer_fn *fn, void *owner,
                   uint64_t *call_p)
{
    brokerclient_cancel (self, call_p);
    uint64_t corr = ++self->next_corr;
    pack_put_int (body, "corr", (int64_t) corr);
    size_t size;
    const void *data = pack_writer_data (body, &size);
    call_t *call = mem_alloc (sizeof *call + size);
    *call = (call_t) { .corr = corr, .cmd = cmd, .fn = fn, .owner = owner, .call_p = call_p,
                       .sent_ms = evloop_now_ms (self->loop), .size = size };
    if (job_id)
        snprintf (call->job_id, sizeof call->job_id, "%s", job_id);
    memcpy (call->data, data, size);
    zhashx_insert (self->pending, (void *) (uintptr_t) corr, call);
    *call_p = corr;
    // Batched: every request of this loop turn leaves in one message at its
    // end (brokerclient_flush), so the broker wakes once per batch.
    if (proto_batch_add_bytes (self->outbox, NULL, cmd, call->data, size) < 0)
        self->outbox_refused = true;
}

void
brokerclient_cancel (brokerclient_t *self, uint64_t *call_p)
{
    if (!call_p || !*call_p)
        return;
    call_t *call = zhashx_lookup (self->pending, (void *) (uintptr_t) *call_p);
    if (call)
        s_call_end (self, call);
    *call_p = 0;
}

void
brokerclient_flush (brokerclient_t *self)
{
    if (proto_batch_flush (self->outbox) < 0)
        self->outbox_refused = true;
}

bool
brokerclient_reachable (brokerclient_t *self)
{
    return self->last_pong_ms > 0
           && evloop_now_ms (self->loop) - self->last_pong_ms <= BROKERCLIENT_PONG_AGE_MS;
}

brokerclient_stats_t
brokerclient_stats (brokerclient_t *self)
{
    return (brokerclient_stats_t) { .reachable = brokerclient_reachable (self),
                                    .workers = self->workers, .queued = self->queued,
                                    .running = self->running, .events = self->events,
                                    .gaps = self->gaps, .pending = zhashx_size (self->pending) };
}

void
brokerclient_set_timing (brokerclient_t *self, int64_t ping_ms, int64_t resend_ms)
{
    assert (ping_ms > 0 && resend_ms > 0);
    self->ping_ms = ping_ms;
    self->resend_ms = resend_ms;
    s_timers_start (self);
}

// --- self-test: a fake broker over inproc ---

// What the test's owners and event handler saw.
typedef struct {
    int answers;                // answers taken
    void *last_owner;           // the owner of the last one
    proto_cmd_t last_cmd;       // its command
    int events;                 // events taken
    brokerclient_event_t last_event; // the last one (its data copied below)
    char last_data[32];         // its data
    char last_record[32];       // its record (binary: 0 bytes kept as they are)
    int gaps;                   // gaps reported
} s_test_seen_t;

static s_test_seen_t s_seen;

static void
s_test_answer (proto_msg_t *msg, void *owner)
{
    s_seen.answers++;
    s_seen.last_owner = owner;
    s_seen.last_cmd = msg->cmd;
}

static void
s_test_event (const brokerclient_event_t *event, void *arg)
{
    s_seen.events++;
    s_seen.last_event = *event;
    snprintf (s_seen.last_data, sizeof s_seen.last_data, "%.*s", (int) event->data_len,
              event->data ? event->data : "");
    s_seen.last_event.data = NULL;
    if (event->record && event->record_len <= sizeof s_seen.last_record)
        memcpy (s_seen.last_record, event->record, event->record_len);
    s_seen.last_event.record = NULL;
}

static void
s_test_gap (void *arg)
{
    s_seen.gaps++;
}

static void
s_test_idle (evloop_t *loop, void *arg)
{
    brokerclient_flush (arg);
}

// s_test_expect receives the gateway's next request other than PING (each
// body of a batch in turn), checks its command and returns its corr; the
// routing id is kept in *envelope_p.
static int64_t
s_test_expect (zsock_t *router, proto_cmd_t cmd, zframe_t **envelope_p)
{
    static proto_msg_t *batch = NULL;
    while (true) {
        if (batch && !proto_msg_next (batch))
            proto_msg_destroy (&batch);
        if (!batch) {
            const char *error;
            batch = proto_recv (router, true, &error);
            assert (batch);
        }
        if (batch->cmd == PROTO_PING)
            continue;
        assert (batch->cmd == cmd);
        zframe_destroy (envelope_p);
        *envelope_p = zframe_dup (batch->envelope);
        int64_t corr = 0;
        assert (pack_get_int (batch->body, "corr", &corr) == 0 && corr > 0);
        if (!batch->rest)
            proto_msg_destroy (&batch);
        return corr;
    }
}

// s_test_nothing_but_pings is true when the router holds no request but
// PINGs (it is drained).
static bool
s_test_nothing_but_pings (zsock_t *router)
{
    zsock_set_rcvtimeo (router, 0);
    bool clean = true;
    const char *error;
    proto_msg_t *msg;
    while ((msg = proto_recv (router, true, &error)) != NULL) {
        clean = clean && msg->cmd == PROTO_PING;
        proto_msg_destroy (&msg);
    }
    zsock_set_rcvtimeo (router, 1000);
    return clean;
}

// s_test_reply answers the gateway with cmd and corr (and the PONG counts).
static void
s_test_reply (zsock_t *router, zframe_t *envelope, proto_cmd_t cmd, int64_t corr)
{
    pack_writer_t *body = pack_writer_new ();
    pack_put_int (body, "corr", corr);
    if (cmd == PROTO_PONG) {
        pack_put_int (body, "workers", 3);
        pack_put_int (body, "queued", 4);
        pack_put_int (body, "running", 5);
    }
    assert (proto_send (router, envelope, cmd, body) == 0);
    pack_writer_destroy (&body);
}

// s_test_publish publishes one event.
static void
s_test_publish (zsock_t *pub, int64_t epoch, int64_t seq, const char *id, const char *type,
                const char *status)
{
    pack_writer_t *body = pack_writer_new ();
    pack_put_int (body, "seq", seq);
    pack_put_int (body, "epoch", epoch);
    if (id)
        pack_put_str (body, "id", id);
    pack_put_str (body, "type", type);
    if (status) {
        pack_put_str (body, "status", status);
        pack_put_int (body, "attempts", 2);
        if (strcmp (status, "succeeded") == 0)    // as for a job submitted "waiting"
            pack_put_strn (body, "record", "rec\0ord", 7);
    }
    else {
        pack_put_int (body, "attempt", 7);
        pack_put_int (body, "index", 3);
        pack_put_str (body, "data", "tok");
    }
    zframe_t *topic = zframe_new ("", 0);
    assert (proto_send (pub, topic, PROTO_EVENT, body) == 0);
    zframe_destroy (&topic);
    pack_writer_destroy (&body);
}

void
brokerclient_test (bool verbose)
{
    if (verbose)
        printf (" * brokerclient: ");
    log_init ("brokerclient-test", LOG_ERROR_);
    memset (&s_seen, 0, sizeof s_seen);
    evloop_t *loop = evloop_new ();
    char error[256];

    // No broker yet: a call waits, nothing is lost and nothing is queued
    // to be delivered late.
    brokerclient_t *client = brokerclient_new (loop, "inproc://brokerclient-front",
                                               "inproc://brokerclient-pub", 1 << 20, NULL,
                                               s_test_event, s_test_gap, NULL, error,
                                               sizeof error);
    assert (client);
    brokerclient_set_timing (client, 40, 80);
    evloop_on_idle (loop, s_test_idle, client);
    uint64_t early = 0;
    pack_writer_t *body = pack_writer_new ();
    brokerclient_call (client, PROTO_SUBMIT, body, "early", s_test_answer, &early, &early);
    pack_writer_destroy (&body);
    assert (early > 0);
    evloop_run_for (loop, 100);
    assert (!brokerclient_reachable (client) && brokerclient_stats (client).pending == 1);

    // The broker comes: the waiting call goes (resent), PINGs are answered.
    zsock_t *router = zsock_new (ZMQ_ROUTER);
    zsock_t *pub = zsock_new (ZMQ_PUB);
    assert (router && pub);
    zsock_set_rcvtimeo (router, 1000);
    assert (zsock_bind (router, "inproc://brokerclient-front") == 0);
    assert (zsock_bind (pub, "inproc://brokerclient-pub") == 0);
    evloop_run_for (loop, 100);
    zframe_t *envelope = NULL;
    int64_t corr = s_test_expect (router, PROTO_SUBMIT, &envelope);
    assert ((uint64_t) corr == early);
    s_test_reply (router, envelope, PROTO_SUBMIT_OK, corr);
    evloop_run_for (loop, 10);
    assert (s_seen.answers == 1 && s_seen.last_owner == &early && early == 0);
    assert (s_seen.last_cmd == PROTO_SUBMIT_OK);
    // A duplicate answer (the broker answered a resend too) is dropped.
    s_test_reply (router, envelope, PROTO_SUBMIT_OK, corr);
    evloop_run_for (loop, 10);
    assert (s_seen.answers == 1);

    // Liveness: a PONG to the last PING makes the broker reachable, with
    // its counts. (What the router holds is drained first: resends of the
    // call that left before its answer came; then no more PINGs for now,
    // so the last one read is the last one sent.)
    s_test_nothing_but_pings (router);
    evloop_run_for (loop, 60);
    brokerclient_set_timing (client, 60000, 80);
    const char *error_text;
    proto_msg_t *ping = NULL;
    proto_msg_t *one;
    zsock_set_rcvtimeo (router, 0);
    while ((one = proto_recv (router, true, &error_text)) != NULL) {
        assert (one->cmd == PROTO_PING);
        proto_msg_destroy (&ping);
        ping = one;
    }
    zsock_set_rcvtimeo (router, 1000);
    assert (ping);
    assert (pack_get_int (ping->body, "corr", &corr) == 0);
    s_test_reply (router, ping->envelope, PROTO_PONG, corr - 1);  // not the last PING's
    evloop_run_for (loop, 5);
    assert (!brokerclient_reachable (client));
    s_test_reply (router, ping->envelope, PROTO_PONG, corr);
    proto_msg_destroy (&ping);
    evloop_run_for (loop, 5);
    brokerclient_stats_t stats = brokerclient_stats (client);
    assert (stats.reachable && stats.workers == 3 && stats.queued == 4 && stats.running == 5);

    // The calls of one loop turn leave as one batch; an unanswered one is
    // sent again (the same corr, the same body) until answered; a
    // cancelled one's answer is dropped.
    uint64_t first = 0, second = 0;
    body = pack_writer_new ();
    pack_put_str (body, "id", "a");
    brokerclient_call (client, PROTO_GET, body, NULL, s_test_answer, &first, &first);
    pack_writer_destroy (&body);
    body = pack_writer_new ();
    pack_put_str (body, "id", "b");
    brokerclient_call (client, PROTO_GET, body, NULL, s_test_answer, &second, &second);
    pack_writer_destroy (&body);
    assert (first && second && first != second);
    evloop_run_for (loop, 5);
    zmsg_t *raw = NULL;
    do {
        zmsg_destroy (&raw);
        raw = zmsg_recv (router);
        assert (raw);
        zframe_t *command = zmsg_first (raw);
        command = zmsg_next (raw);
        command = zmsg_next (raw);
        if (!zframe_streq (command, "PING"))
            break;
    } while (true);
    assert (zmsg_size (raw) == 5);     // envelope, version, command, two bodies
    zmsg_destroy (&raw);
    brokerclient_cancel (client, &second);
    assert (second == 0 && brokerclient_stats (client).pending == 1);
    brokerclient_cancel (client, &second);
    evloop_run_for (loop, 150);
    corr = s_test_expect (router, PROTO_GET, &envelope);
    assert ((uint64_t) corr == first);
    s_test_reply (router, envelope, PROTO_JOB, corr);
    s_test_reply (router, envelope, PROTO_JOB, corr + 1);     // the cancelled one
    evloop_run_for (loop, 10);
    assert (s_seen.answers == 2 && s_seen.last_owner == &first && first == 0);
    assert (s_seen.last_cmd == PROTO_JOB && brokerclient_stats (client).pending == 0);
    // Once answered, a call is never sent again (resends that left before
    // the answer came are drained first).
    s_test_nothing_but_pings (router);
    evloop_run_for (loop, 150);
    assert (s_test_nothing_but_pings (router));
    // A call made again cancels the one before it (the first's answer is
    // dropped).
    body = pack_writer_new ();
    brokerclient_call (client, PROTO_GET, body, NULL, s_test_answer, &first, &first);
    uint64_t replaced = first;
    brokerclient_call (client, PROTO_GET, body, NULL, s_test_answer, &first, &first);
    pack_writer_destroy (&body);
    assert (first != replaced && brokerclient_stats (client).pending == 1);
    s_test_reply (router, envelope, PROTO_JOB, (int64_t) replaced);
    evloop_run_for (loop, 10);
    assert (s_seen.answers == 2 && first != 0);
    // Malformed answers are dropped; the client lives on.
    zmsg_t *bad = zmsg_new ();
    zmsg_append (bad, &(zframe_t *) { zframe_dup (envelope) });
    zmsg_addstr (bad, "JGP1");
    zmsg_addstr (bad, "JOB");
    zmsg_addmem (bad, "\x81", 1);
    assert (zmsg_send (&bad, router) == 0);
    s_test_reply (router, envelope, PROTO_JOB, (int64_t) first);
    evloop_run_for (loop, 10);
    assert (s_seen.answers == 3 && first == 0);

    // Events: the first of a broker run, a gap in seq and a new epoch are
    // reported as gaps (not as events); the others come read in place.
    const char *id = "0190a0b2-1c3d-7e4f-8a5b-6c7d8e9f0a1b";
    uint64_t gaps_before = brokerclient_stats (client).gaps;
    for (int i = 0; i < 50 && s_seen.gaps == 0; i++) {
        s_test_publish (pub, 7, 1, id, "status", "queued");   // until the SUB has joined
        evloop_run_for (loop, 5);
    }
    assert (s_seen.gaps >= 1 && s_seen.events == 0);
    int gaps = s_seen.gaps;
    s_test_publish (pub, 7, 2, id, "status", "running");
    evloop_run_for (loop, 5);
    assert (s_seen.events == 1 && s_seen.last_event.is_status && !s_seen.last_event.is_chunk);
    assert (strcmp (s_seen.last_event.id, id) == 0 && s_seen.last_event.status == JOB_RUNNING);
    assert (s_seen.last_event.attempts == 2);
    s_test_publish (pub, 7, 3, id, "chunk", NULL);
    evloop_run_for (loop, 5);
    assert (s_seen.events == 2 && s_seen.last_event.is_chunk && s_seen.last_event.status == -1);
    assert (s_seen.last_event.attempt == 7 && s_seen.last_event.index == 3);
    assert (strcmp (s_seen.last_data, "tok") == 0);
    s_test_publish (pub, 7, 5, id, "status", "succeeded");    // seq 4 lost
    evloop_run_for (loop, 5);
    assert (s_seen.gaps == gaps + 1 && s_seen.events == 2);
    s_test_publish (pub, 7, 6, NULL, "status", "failed");     // no id: dropped
    s_test_publish (pub, 7, 7, "short", "status", "failed");  // not an id: dropped
    evloop_run_for (loop, 5);
    assert (s_seen.gaps == gaps + 1 && s_seen.events == 2);
    s_test_publish (pub, 8, 1, id, "status", "queued");       // the broker restarted
    evloop_run_for (loop, 5);
    assert (s_seen.gaps == gaps + 2 && s_seen.events == 2);
    // The end of a job a client waits on carries its record, as it came.
    assert (s_seen.last_event.record_len == 0);
    s_test_publish (pub, 8, 2, id, "status", "succeeded");
    evloop_run_for (loop, 5);
    assert (s_seen.events == 3 && s_seen.last_event.status == JOB_SUCCEEDED);
    assert (s_seen.last_event.record_len == 7 && memcmp (s_seen.last_record, "rec\0ord", 7) == 0);
    stats = brokerclient_stats (client);
    assert (stats.gaps == gaps_before + 2 && stats.events >= 8);

    zframe_destroy (&envelope);
    evloop_on_idle (loop, NULL, NULL);
    brokerclient_destroy (&client);
    brokerclient_destroy (&client);
    zsock_destroy (&router);
    zsock_destroy (&pub);
    evloop_destroy (&loop);
    log_init ("gateway", LOG_INFO_);
    if (verbose)
        printf ("OK\n");
}
