// testpeer — the far side of the broker's sockets in self-tests.
#include "testpeer.h"
#include "mem.h"

#include <assert.h>
#include <stdio.h>
#include <string.h>

struct _testpeer_t {
    zsock_t *sock;              // connected to the socket under test
    bool topic;                 // its messages carry a PUB topic first
    zlist_t *held;              // single-body messages received, not yet read
    int64_t last_seq;           // the last event's seq seen, 0 = none yet
    char events[2048];          // testpeer_events's text
};

testpeer_t *
testpeer_new (int type, const char *endpoint)
{
    testpeer_t *self = mem_calloc (1, sizeof *self);
    self->sock = zsock_new (type);
    assert (self->sock);
    zsock_set_rcvtimeo (self->sock, 0);
    zsock_set_rcvhwm (self->sock, 100000);
    if (type == ZMQ_SUB)
        zsock_set_subscribe (self->sock, "");
    assert (zsock_connect (self->sock, "%s", endpoint) == 0);
    self->topic = type == ZMQ_SUB || type == ZMQ_PAIR;
    self->held = zlist_new ();
    return self;
}

void
testpeer_destroy (testpeer_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    testpeer_t *self = *self_p;
    zmsg_t *held;
    while ((held = zlist_pop (self->held)))
        zmsg_destroy (&held);
    zlist_destroy (&self->held);
    zsock_destroy (&self->sock);
    free (self);
    *self_p = NULL;
}

void
testpeer_send (testpeer_t *self, proto_cmd_t cmd, pack_writer_t **body_p)
{
    assert (proto_send (self->sock, NULL, cmd, *body_p) == 0);
    pack_writer_destroy (body_p);
}

zframe_t *
testpeer_hello (testpeer_t *self, zsock_t *router)
{
    testpeer_send (self, PROTO_PING, &(pack_writer_t *) { pack_writer_new () });
    zsock_set_rcvtimeo (router, 3000);
    zmsg_t *hello = zmsg_recv (router);
    assert (hello && zmsg_size (hello) == 4);
    zframe_t *identity = zmsg_pop (hello);
    zmsg_destroy (&hello);
    return identity;
}

// s_poll moves what the peer received into its held list, one body per
// message.
static void
s_poll (testpeer_t *self)
{
    zmsg_t *batch;
    while ((batch = zmsg_recv (self->sock)) != NULL) {
        if (self->topic) {
            zframe_t *topic = zmsg_pop (batch);
            zframe_destroy (&topic);
        }
        zframe_t *version = zmsg_pop (batch), *command = zmsg_pop (batch), *body;
        while ((body = zmsg_pop (batch)) != NULL) {
            zmsg_t *single = zmsg_new ();
            zmsg_append (single, &(zframe_t *) { zframe_dup (version) });
            zmsg_append (single, &(zframe_t *) { zframe_dup (command) });
            zmsg_append (single, &body);
            zlist_append (self->held, single);
        }
        zframe_destroy (&version);
        zframe_destroy (&command);
        zmsg_destroy (&batch);
    }
}

proto_msg_t *
testpeer_take (testpeer_t *self)
{
    s_poll (self);
    zmsg_t *next;
    while ((next = zlist_pop (self->held)) != NULL) {
        const char *error;
        proto_msg_t *msg = proto_decode (&next, false, &error);
        assert (msg);
        if (msg->cmd != PROTO_HEARTBEAT)
            return msg;
        proto_msg_destroy (&msg);
    }
    return NULL;
}

void
testpeer_run (evloop_t *loop, int64_t ms)
{
    evloop_run_for (loop, ms);
}

proto_msg_t *
testpeer_wait (testpeer_t *self, evloop_t *loop)
{
    for (int round = 0; round < 300; round++) {
        proto_msg_t *msg = testpeer_take (self);
        if (msg)
            return msg;
        testpeer_run (loop, 10);
    }
    return NULL;
}

proto_msg_t *
testpeer_expect (testpeer_t *self, evloop_t *loop, proto_cmd_t cmd)
{
    proto_msg_t *msg = testpeer_wait (self, loop);
    if (!msg || msg->cmd != cmd)
        fprintf (stderr, "testpeer: expected %s, got %s\n", proto_cmd_name (cmd),
                 msg ? proto_cmd_name (msg->cmd) : "nothing in 3 s");
    assert (msg && msg->cmd == cmd);
    return msg;
}

void
testpeer_quiet (testpeer_t *self, evloop_t *loop, int64_t ms)
{
    testpeer_run (loop, ms);
    proto_msg_t *msg = testpeer_take (self);
    if (msg)
        fprintf (stderr, "testpeer: unexpected %s\n", proto_cmd_name (msg->cmd));
    assert (!msg);
}

const char *
testpeer_events (testpeer_t *self, const char *id)
{
    size_t used = 0;
    self->events[0] = '\0';
    proto_msg_t *msg;
    while ((msg = testpeer_take (self)) != NULL) {
        assert (msg->cmd == PROTO_EVENT);
        int64_t seq = 0, number = 0, index = 0;
        assert (pack_get_int (msg->body, "seq", &seq) == 0);
        if (self->last_seq && seq != self->last_seq + 1)
            fprintf (stderr, "testpeer: event seq %lld after %lld\n", (long long) seq,
                     (long long) self->last_seq);
        assert (!self->last_seq || seq == self->last_seq + 1);
        self->last_seq = seq;
        char *event_id = pack_get_strdup (msg->body, "id");
        char *type = pack_get_strdup (msg->body, "type");
        assert (event_id && type);
        if (strcmp (event_id, id) == 0) {
            int n;
            if (strcmp (type, "chunk") == 0) {
                char *data = pack_get_strdup (msg->body, "data");
                assert (pack_get_int (msg->body, "attempt", &number) == 0);
                assert (pack_get_int (msg->body, "index", &index) == 0);
                n = snprintf (self->events + used, sizeof self->events - used, "%schunk/%lld.%lld:%s",
                              used ? " " : "", (long long) number, (long long) index, data);
                free (data);
            }
            else {
                char *status = pack_get_strdup (msg->body, "status");
                assert (pack_get_int (msg->body, "attempts", &number) == 0);
                n = snprintf (self->events + used, sizeof self->events - used, "%s%s/%lld",
                              used ? " " : "", status, (long long) number);
                free (status);
            }
            assert (n > 0 && used + (size_t) n < sizeof self->events);
            used += (size_t) n;
        }
        free (event_id);
        free (type);
        proto_msg_destroy (&msg);
    }
    return self->events;
}

void
testpeer_expect_events (testpeer_t *self, const char *id, const char *expected)
{
    const char *seen = testpeer_events (self, id);
    if (strcmp (seen, expected) != 0)
        fprintf (stderr, "testpeer: events \"%s\", expected \"%s\"\n", seen, expected);
    assert (strcmp (seen, expected) == 0);
}

void
testpeer_test (bool verbose)
{
    if (verbose)
        printf (" * testpeer: ");
    zsock_t *router = zsock_new_router ("inproc://testpeer-test");
    zsock_t *publisher = zsock_new (ZMQ_PAIR);
    assert (router && publisher && zsock_bind (publisher, "inproc://testpeer-test-pub") == 0);
    testpeer_t *dealer = testpeer_new (ZMQ_DEALER, "inproc://testpeer-test");
    testpeer_t *reader = testpeer_new (ZMQ_PAIR, "inproc://testpeer-test-pub");
    assert (!testpeer_take (dealer));

    // A batch is read one body at a time; heartbeats are passed over.
    zframe_t *identity = testpeer_hello (dealer, router);
    proto_batch_t *batch = proto_batch_new (router);
    pack_writer_t *body;
    for (int i = 1; i <= 3; i++) {
        body = pack_writer_new ();
        pack_put_int (body, "corr", i);
        assert (proto_batch_add (batch, identity, i == 2 ? PROTO_HEARTBEAT : PROTO_PONG, body) == 0);
        pack_writer_destroy (&body);
    }
    assert (proto_batch_flush (batch) == 0);
    proto_batch_destroy (&batch);
    int64_t corr;
    for (int i = 1; i <= 3; i += 2) {
        proto_msg_t *msg = testpeer_take (dealer);
        assert (msg && msg->cmd == PROTO_PONG);
        assert (pack_get_int (msg->body, "corr", &corr) == 0 && corr == i);
        proto_msg_destroy (&msg);
    }
    assert (!testpeer_take (dealer));

    // Events: a job's own, in order; seq is checked across jobs.
    const char *events[][4] = {
        { "1", "x", "status", "queued" }, { "2", "y", "status", "queued" },
        { "3", "x", "chunk", "tok" }, { "4", "x", "status", "running" },
    };
    zframe_t *topic = zframe_new_empty ();
    batch = proto_batch_new (publisher);
    for (size_t i = 0; i < 4; i++) {
        body = pack_writer_new ();
        pack_put_int (body, "seq", atoi (events[i][0]));
        pack_put_str (body, "id", events[i][1]);
        pack_put_str (body, "type", events[i][2]);
        pack_put_str (body, strcmp (events[i][2], "chunk") == 0 ? "data" : "status", events[i][3]);
        pack_put_int (body, strcmp (events[i][2], "chunk") == 0 ? "attempt" : "attempts", 1);
        pack_put_int (body, "index", 0);
        assert (proto_batch_add (batch, topic, PROTO_EVENT, body) == 0);
        pack_writer_destroy (&body);
    }
    assert (proto_batch_flush (batch) == 0);
    testpeer_expect_events (reader, "x", "queued/1 chunk/1.0:tok running/1");
    testpeer_expect_events (reader, "x", "");

    proto_batch_destroy (&batch);
    zframe_destroy (&topic);
    zframe_destroy (&identity);
    testpeer_destroy (&dealer);
    testpeer_destroy (&dealer);
    testpeer_destroy (&reader);
    zsock_destroy (&router);
    zsock_destroy (&publisher);
    if (verbose)
        printf ("OK\n");
}
