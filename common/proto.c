#include "proto.h"

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
    // §2: exactly [envelope] version command body.
    size_t expected = has_envelope ? 4 : 3;
    if (zmsg_size (msg) != expected) {
        *error = "wrong number of frames";
        zmsg_destroy (&msg);
        return NULL;
    }
    zframe_t *envelope = has_envelope ? zmsg_pop (msg) : NULL;
    zframe_t *version = zmsg_pop (msg);
    zframe_t *command = zmsg_pop (msg);
    zframe_t *body = zmsg_pop (msg);
    zmsg_destroy (&msg);

    proto_msg_t *self = NULL;
    int cmd = -1;
    if (zframe_size (version) != strlen (PROTO_VERSION)
        || memcmp (zframe_data (version), PROTO_VERSION, strlen (PROTO_VERSION)) != 0)
        *error = "unknown protocol version";
    else if ((cmd = s_cmd_parse (command)) < 0)
        *error = "unknown command";
    else {
        pack_reader_t *reader = pack_reader_new (zframe_data (body), zframe_size (body));
        if (!reader)
            *error = "body is not one msgpack map";
        else {
            self = calloc (1, sizeof *self);
            if (!self) {
                *error = "out of memory";
                pack_reader_destroy (&reader);
            }
            else {
                self->envelope = envelope;
                envelope = NULL;
                self->cmd = (proto_cmd_t) cmd;
                self->body = reader;
            }
        }
    }
    zframe_destroy (&envelope);
    zframe_destroy (&version);
    zframe_destroy (&command);
    zframe_destroy (&body);
    return self;
}

proto_msg_t *
proto_recv (zsock_t *sock, bool has_envelope, const char **error)
{
    zmsg_t *msg = zmsg_recv (sock);
    return proto_decode (&msg, has_envelope, error);
}

void
proto_msg_destroy (proto_msg_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    proto_msg_t *self = *self_p;
    zframe_destroy (&self->envelope);
    pack_reader_destroy (&self->body);
    free (self);
    *self_p = NULL;
}

int
proto_send (zsock_t *sock, zframe_t *envelope, proto_cmd_t cmd, pack_writer_t *body)
{
    // Sent frame by frame (no zmsg copy): this is the hot path of the broker.
    void *handle = zsock_resolve (sock);
    const char *name = proto_cmd_name (cmd);
    size_t size;
    const void *data = pack_writer_data (body, &size);
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
    if (zmq_send (handle, data, size, 0) < 0)
        return -1;
    return 0;
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

    zsock_destroy (&dealer);
    zsock_destroy (&router);
    if (verbose)
        printf ("OK\n");
}
