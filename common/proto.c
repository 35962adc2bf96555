// proto — JGP/1, the ZeroMQ protocol between gateway, broker and worker.
#include "proto.h"

#include "log.h"
#include "mem.h"

#include <assert.h>
#include <string.h>

static const char *s_names[PROTO_CMD_COUNT_] = {
    [PROTO_SUBMIT] = "SUBMIT",       [PROTO_SUBMIT_OK] = "SUBMIT_OK",
    [PROTO_GET] = "GET",             [PROTO_JOB] = "JOB",
    [PROTO_PING] = "PING",           [PROTO_PONG] = "PONG",
    [PROTO_ERROR] = "ERROR",         [PROTO_READY] = "READY",
    [PROTO_CREDIT] = "CREDIT",       [PROTO_DISPATCH] = "DISPATCH",
    [PROTO_RESULT] = "RESULT",       [PROTO_HEARTBEAT] = "HEARTBEAT",
    [PROTO_RECONNECT] = "RECONNECT", [PROTO_EVENT] = "EVENT",
    [PROTO_DISCONNECT] = "DISCONNECT", [PROTO_CANCEL] = "CANCEL",
    [PROTO_RETRY] = "RETRY",         [PROTO_LIST] = "LIST",
    [PROTO_LIST_OK] = "LIST_OK",     [PROTO_CHUNK] = "CHUNK",
    [PROTO_PROVIDERS] = "PROVIDERS", [PROTO_PROVIDERS_OK] = "PROVIDERS_OK",
    [PROTO_USAGE] = "USAGE",         [PROTO_USAGE_OK] = "USAGE_OK",
    [PROTO_ACK] = "ACK",
    [PROTO_STATS] = "STATS",         [PROTO_STATS_OK] = "STATS_OK",
};

const char *
proto_cmd_name (proto_cmd_t cmd)
{
    return (unsigned) cmd < PROTO_CMD_COUNT_ ? s_names[cmd] : "?";
}

// s_cmd_parse maps a wire name to a command; -1 if unknown.
static int
s_cmd_parse (zframe_t *frame)
{
    size_t size = zframe_size (frame);
    for (int i = 0; i < PROTO_CMD_COUNT_; i++)
        if (strlen (s_names[i]) == size && memcmp (s_names[i], zframe_data (frame), size) == 0)
            return i;
    return -1;
}

// s_body_reader decodes one body frame; NULL when it is not a msgpack map.
static pack_reader_t *
s_body_reader (zframe_t *frame)
{
    return pack_reader_new (zframe_data (frame), zframe_size (frame));
}

proto_msg_t *
proto_decode (zmsg_t **msg_p, bool has_envelope, const char **error)
{
    zmsg_t *msg = *msg_p;
    *msg_p = NULL;
    *error = NULL;
    if (!msg) {
        *error = "no message";
        return NULL;
    }
    // §2: [envelope] version command body [body...].
    size_t least = has_envelope ? 4 : 3;
    if (zmsg_size (msg) < least) {
        *error = "wrong number of frames";
        zmsg_destroy (&msg);
        return NULL;
    }
    zframe_t *envelope = has_envelope ? zmsg_pop (msg) : NULL;
    zframe_t *version = zmsg_pop (msg);
    zframe_t *command = zmsg_pop (msg);
    zframe_t *body = zmsg_pop (msg);

    proto_msg_t *self = NULL;
    int cmd = -1;
    if (zframe_size (version) != strlen (PROTO_VERSION)
        || memcmp (zframe_data (version), PROTO_VERSION, strlen (PROTO_VERSION)) != 0)
        *error = "unknown protocol version";
    else if ((cmd = s_cmd_parse (command)) < 0)
        *error = "unknown command";
    else {
        pack_reader_t *reader = s_body_reader (body);
        if (!reader)
            *error = "body is not one msgpack map";
        else {
            self = mem_calloc (1, sizeof *self);
            self->envelope = envelope;
            envelope = NULL;
            self->cmd = (proto_cmd_t) cmd;
            self->body = reader;
            if (zmsg_size (msg) > 0) {
                self->rest = msg;
                msg = NULL;
            }
        }
    }
    zmsg_destroy (&msg);
    zframe_destroy (&envelope);
    zframe_destroy (&version);
    zframe_destroy (&command);
    zframe_destroy (&body);
    return self;
}

bool
proto_msg_next (proto_msg_t *self)
{
    pack_reader_destroy (&self->body);
    while (self->rest && zmsg_size (self->rest) > 0) {
        zframe_t *frame = zmsg_pop (self->rest);
        self->body = s_body_reader (frame);
        zframe_destroy (&frame);
        if (self->body)
            return true;
        self->bad_bodies++;
    }
    zmsg_destroy (&self->rest);
    return false;
}

proto_msg_t *
proto_recv (zsock_t *sock, bool has_envelope, const char **error)
{
    zmsg_t *msg = zmsg_recv (sock);
    return proto_decode (&msg, has_envelope, error);
}

void
proto_recv_each (zsock_t *sock, bool has_envelope, const char *what, proto_body_fn *fn, void *arg)
{
    const char *error;
    proto_msg_t *msg = proto_recv (sock, has_envelope, &error);
    if (!msg) {
        log_warn (NULL, "%s: message dropped: %s", what, error);
        return;
    }
    do
        fn (msg, arg);
    while (proto_msg_next (msg));
    if (msg->bad_bodies)
        log_warn (NULL, "%s: %zu bodies of a %s batch dropped: not msgpack maps", what,
                  msg->bad_bodies, proto_cmd_name (msg->cmd));
    proto_msg_destroy (&msg);
}

void
proto_msg_destroy (proto_msg_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    proto_msg_t *self = *self_p;
    zframe_destroy (&self->envelope);
    pack_reader_destroy (&self->body);
    zmsg_destroy (&self->rest);
    free (self);
    *self_p = NULL;
}

// s_send_head sends [envelope] version command, each with SNDMORE.
static int
s_send_head (void *handle, zframe_t *envelope, proto_cmd_t cmd)
{
    const char *name = proto_cmd_name (cmd);
    if (envelope
        && zmq_send (handle, zframe_data (envelope), zframe_size (envelope),
                     ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0)
        return -1;
    // Once the first frame is accepted the rest of the message is too.
    if (zmq_send (handle, PROTO_VERSION, strlen (PROTO_VERSION),
                  ZMQ_SNDMORE | (envelope ? 0 : ZMQ_DONTWAIT)) < 0)
        return -1;
    if (zmq_send (handle, name, strlen (name), ZMQ_SNDMORE) < 0)
        return -1;
    return 0;
}

int
proto_send (zsock_t *sock, zframe_t *envelope, proto_cmd_t cmd, pack_writer_t *body)
{
    // Sent frame by frame (no zmsg copy): this is the hot path of the broker.
    void *handle = zsock_resolve (sock);
    size_t size;
    const void *data = pack_writer_data (body, &size);
    if (s_send_head (handle, envelope, cmd) < 0)
        return -1;
    if (zmq_send (handle, data, size, 0) < 0)
        return -1;
    return 0;
}

int
proto_set_limits (zsock_t *sock, size_t max_frame_bytes)
{
    int64_t limit = max_frame_bytes > 0 && max_frame_bytes < INT64_MAX ? (int64_t) max_frame_bytes : -1;
    return zmq_setsockopt (zsock_resolve (sock), ZMQ_MAXMSGSIZE, &limit, sizeof limit);
}

// A batch's limits: enough to carry a whole loop iteration's worth of
// requests in one message, small enough that one message never holds a
// receiver's loop for long.
#define BATCH_MAX_BODIES 1024
#define BATCH_MAX_BYTES (4 * 1024 * 1024)

struct _proto_batch_t {
    void *handle;               // the socket's libzmq handle
    zframe_t *envelope;         // copy of the batch's envelope, or NULL
    proto_cmd_t cmd;            // the batch's command
    char *data;                 // the bodies, back to back
    size_t size, capacity;      // bytes used and allocated in data
    size_t *ends;               // the end offset of each body in data
    size_t count;               // bodies held
};

proto_batch_t *
proto_batch_new (zsock_t *sock)
{
    proto_batch_t *self = mem_calloc (1, sizeof *self);
    self->handle = zsock_resolve (sock);
    self->ends = mem_alloc (BATCH_MAX_BODIES * sizeof *self->ends);
    return self;
}

void
proto_batch_destroy (proto_batch_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    proto_batch_t *self = *self_p;
    zframe_destroy (&self->envelope);
    free (self->data);
    free (self->ends);
    free (self);
    *self_p = NULL;
}

size_t
proto_batch_count (const proto_batch_t *self)
{
    return self->count;
}

// s_same_envelope is true when the batch is for envelope.
static bool
s_same_envelope (const proto_batch_t *self, zframe_t *envelope)
{
    if (!envelope || !self->envelope)
        return !envelope && !self->envelope;
    return zframe_size (envelope) == zframe_size (self->envelope)
           && memcmp (zframe_data (envelope), zframe_data (self->envelope),
                      zframe_size (envelope)) == 0;
}

int
proto_batch_add (proto_batch_t *self, zframe_t *envelope, proto_cmd_t cmd, pack_writer_t *body)
{
    size_t size;
    const void *data = pack_writer_data (body, &size);
    return proto_batch_add_bytes (self, envelope, cmd, data, size);
}

int
proto_batch_add_bytes (proto_batch_t *self, zframe_t *envelope, proto_cmd_t cmd,
                       const void *data, size_t size)
{
    int rc = 0;
    if (self->count > 0
        && (self->cmd != cmd || !s_same_envelope (self, envelope)
            || self->count == BATCH_MAX_BODIES || self->size + size > BATCH_MAX_BYTES))
        rc = proto_batch_flush (self);
    if (self->count == 0) {
        self->cmd = cmd;
        zframe_destroy (&self->envelope);
        self->envelope = envelope ? mem_lib (zframe_dup (envelope)) : NULL;
    }
    if (self->size + size > self->capacity) {
        size_t capacity = self->capacity ? self->capacity : 4096;
        while (capacity < self->size + size)
            capacity *= 2;
        self->data = mem_realloc (self->data, capacity);
        self->capacity = capacity;
    }
    memcpy (self->data + self->size, data, size);
    self->size += size;
    self->ends[self->count++] = self->size;
    return rc;
}

int
proto_batch_flush (proto_batch_t *self)
{
    if (self->count == 0)
        return 0;
    int rc = s_send_head (self->handle, self->envelope, self->cmd);
    size_t start = 0;
    for (size_t i = 0; rc == 0 && i < self->count; i++) {
        if (zmq_send (self->handle, self->data + start, self->ends[i] - start,
                      i + 1 < self->count ? ZMQ_SNDMORE : 0) < 0)
            rc = -1;
        start = self->ends[i];
    }
    self->count = 0;
    self->size = 0;
    return rc;
}

void
proto_test (bool verbose)
{
    if (verbose)
        printf (" * proto: ");
    zsock_t *router = zsock_new_router ("inproc://proto-test");
    zsock_t *dealer = zsock_new_dealer ("inproc://proto-test");
    assert (router && dealer);

    pack_writer_t *body = pack_writer_new ();
    pack_put_str (body, "id", "job-1");
    pack_put_int (body, "corr", 7);
    assert (proto_send (dealer, NULL, PROTO_SUBMIT, body) == 0);
    pack_writer_destroy (&body);

    const char *error;
    proto_msg_t *msg = proto_recv (router, true, &error);
    assert (msg && !error);
    assert (msg->cmd == PROTO_SUBMIT);
    int64_t corr;
    assert (pack_get_int (msg->body, "corr", &corr) == 0 && corr == 7);

    // Reply through the envelope.
    body = pack_writer_new ();
    pack_put_int (body, "corr", 7);
    assert (proto_send (router, msg->envelope, PROTO_SUBMIT_OK, body) == 0);
    pack_writer_destroy (&body);
    proto_msg_destroy (&msg);
    msg = proto_recv (dealer, false, &error);
    assert (msg && msg->cmd == PROTO_SUBMIT_OK && msg->envelope == NULL);
    proto_msg_destroy (&msg);

    // Malformed messages are refused with a reason.
    zmsg_t *bad = zmsg_new ();
    zmsg_addstr (bad, "JGP9");
    zmsg_addstr (bad, "SUBMIT");
    zmsg_addmem (bad, "\x80", 1);
    assert (proto_decode (&bad, false, &error) == NULL && bad == NULL);
    assert (strcmp (error, "unknown protocol version") == 0);
    bad = zmsg_new ();
    zmsg_addstr (bad, "JGP1");
    zmsg_addstr (bad, "LAUNCH");
    zmsg_addmem (bad, "\x80", 1);
    assert (proto_decode (&bad, false, &error) == NULL);
    assert (strcmp (error, "unknown command") == 0);
    bad = zmsg_new ();
    zmsg_addstr (bad, "JGP1");
    zmsg_addstr (bad, "GET");
    zmsg_addmem (bad, "\x81", 1);
    assert (proto_decode (&bad, false, &error) == NULL);
    bad = zmsg_new ();
    zmsg_addstr (bad, "JGP1");
    assert (proto_decode (&bad, false, &error) == NULL);
    assert (strcmp (error, "wrong number of frames") == 0);
    bad = zmsg_new ();
    zmsg_addstr (bad, "JGP1");
    zmsg_addstr (bad, "GET");
    zmsg_addmem (bad, "\x80", 1);
    msg = proto_decode (&bad, false, &error);
    assert (msg && msg->cmd == PROTO_GET);
    proto_msg_destroy (&msg);
    proto_msg_destroy (&msg);

    // A batch: one message, each body handled in turn; a bad body in the
    // middle is skipped and counted.
    proto_batch_t *batch = proto_batch_new (dealer);
    assert (batch && proto_batch_count (batch) == 0);
    for (int i = 1; i <= 3; i++) {
        body = pack_writer_new ();
        pack_put_int (body, "corr", i);
        size_t size;
        const void *data = pack_writer_data (body, &size);
        // The last as bytes encoded earlier (a request sent again).
        assert (i < 3 ? proto_batch_add (batch, NULL, PROTO_GET, body) == 0
                      : proto_batch_add_bytes (batch, NULL, PROTO_GET, data, size) == 0);
        pack_writer_destroy (&body);
    }
    assert (proto_batch_count (batch) == 3);
    // Another command sends the first three, then waits in the batch.
    body = pack_writer_new ();
    pack_put_int (body, "corr", 4);
    assert (proto_batch_add (batch, NULL, PROTO_PING, body) == 0);
    pack_writer_destroy (&body);
    assert (proto_batch_count (batch) == 1);
    assert (proto_batch_flush (batch) == 0 && proto_batch_count (batch) == 0);
    assert (proto_batch_flush (batch) == 0);
    msg = proto_recv (router, true, &error);
    assert (msg && msg->cmd == PROTO_GET && msg->envelope);
    int64_t expected = 1;
    do {
        assert (pack_get_int (msg->body, "corr", &corr) == 0 && corr == expected++);
    } while (proto_msg_next (msg));
    assert (expected == 4 && msg->body == NULL && msg->bad_bodies == 0);
    proto_msg_destroy (&msg);
    msg = proto_recv (router, true, &error);
    assert (msg && msg->cmd == PROTO_PING && !proto_msg_next (msg));
    proto_msg_destroy (&msg);
    proto_batch_destroy (&batch);
    proto_batch_destroy (&batch);
    bad = zmsg_new ();
    zmsg_addstr (bad, "JGP1");
    zmsg_addstr (bad, "GET");
    zmsg_addmem (bad, "\x80", 1);
    zmsg_addmem (bad, "\x81", 1);
    zmsg_addmem (bad, "\x80", 1);
    msg = proto_decode (&bad, false, &error);
    assert (msg && proto_msg_next (msg) && msg->bad_bodies == 1 && !proto_msg_next (msg));
    proto_msg_destroy (&msg);

    zsock_destroy (&dealer);
    zsock_destroy (&router);

    // A frame over the limit never reaches the application: the peer that
    // sent it is disconnected, and the next peer is served as before.
    router = zsock_new (ZMQ_ROUTER);
    assert (router && proto_set_limits (router, 4096) == 0);
    zsock_set_rcvtimeo (router, 500);
    int port = zsock_bind (router, "tcp://127.0.0.1:*");
    assert (port > 0);
    dealer = zsock_new_dealer (NULL);
    assert (dealer && zsock_connect (dealer, "tcp://127.0.0.1:%d", port) == 0);
    char *huge = calloc (1, 64 * 1024);
    assert (huge);
    body = pack_writer_new ();
    pack_put_int (body, "corr", 8);
    pack_put_strn (body, "pad", huge, 64 * 1024);
    assert (proto_send (dealer, NULL, PROTO_GET, body) == 0);
    pack_writer_destroy (&body);
    free (huge);
    assert (proto_recv (router, true, &error) == NULL);
    zsock_destroy (&dealer);
    dealer = zsock_new_dealer (NULL);
    assert (dealer && zsock_connect (dealer, "tcp://127.0.0.1:%d", port) == 0);
    body = pack_writer_new ();
    pack_put_int (body, "corr", 9);
    assert (proto_send (dealer, NULL, PROTO_PING, body) == 0);
    pack_writer_destroy (&body);
    msg = proto_recv (router, true, &error);
    assert (msg && msg->cmd == PROTO_PING);
    proto_msg_destroy (&msg);
    zsock_destroy (&dealer);
    zsock_destroy (&router);
    if (verbose)
        printf ("OK\n");
}
