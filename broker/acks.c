// acks — the RESULTs handled and not yet acknowledged (§3.2.4).
#include "acks.h"
#include "log.h"
#include "mem.h"
#include "proto.h"

#include <assert.h>
#include <string.h>

// Consecutive RESULTs of one connection.
typedef struct {
    zframe_t *peer;             // the connection's routing id
    uint64_t seq;               // the first RESULT's number
    uint64_t count;             // how many from there
} run_t;

struct _acks_t {
    run_t *runs;                // the runs waiting, in arrival order
    size_t count;               // entries in runs
    size_t capacity;            // allocated entries
    uint64_t dropped;           // RESULTs not noted since the last flush (over ACKS_MAX_RUNS)
};

acks_t *
acks_new (void)
{
    return mem_calloc (1, sizeof (acks_t));
}

// s_forget drops every run.
static void
s_forget (acks_t *self)
{
    for (size_t i = 0; i < self->count; i++)
        zframe_destroy (&self->runs[i].peer);
    self->count = 0;
}

void
acks_destroy (acks_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    acks_t *self = *self_p;
    s_forget (self);
    free (self->runs);
    free (self);
    *self_p = NULL;
}

void
acks_add (acks_t *self, zframe_t *peer, uint64_t seq)
{
    if (!peer || seq == 0)
        return;
    // The peer's latest run, found from the end: a few workers interleave.
    for (size_t i = self->count; i-- > 0;) {
        run_t *run = &self->runs[i];
        if (!zframe_eq (run->peer, peer))
            continue;
        if (seq == run->seq + run->count) {
            run->count++;
            return;
        }
        break;
    }
    if (self->count == ACKS_MAX_RUNS) {
        self->dropped++;
        return;
    }
    if (self->count == self->capacity) {
        self->capacity = self->capacity ? 2 * self->capacity : 16;
        self->runs = mem_realloc (self->runs, self->capacity * sizeof *self->runs);
    }
    self->runs[self->count++] = (run_t) { mem_lib (zframe_dup (peer)), seq, 1 };
}

size_t
acks_pending (const acks_t *self)
{
    return self->count;
}

void
acks_flush (acks_t *self, zsock_t *sock)
{
    for (size_t i = 0; i < self->count; i++) {
        pack_writer_t *body = pack_writer_new ();
        pack_put_int (body, "seq", (int64_t) self->runs[i].seq);
        pack_put_int (body, "count", (int64_t) self->runs[i].count);
        // A worker that left is not here to hear it; it resends after its
        // reconnect, and the broker discards what it already applied.
        proto_send (sock, self->runs[i].peer, PROTO_ACK, body);
        pack_writer_destroy (&body);
    }
    if (self->dropped)
        log_warn (NULL, "%llu RESULTs went unacknowledged: over %d runs waited for a commit",
                  (unsigned long long) self->dropped, ACKS_MAX_RUNS);
    self->dropped = 0;
    s_forget (self);
}

// --- self-test ---

// s_test_ack receives one ACK at dealer and checks its run.
static void
s_test_ack (zsock_t *dealer, int64_t seq, int64_t count)
{
    const char *error = NULL;
    proto_msg_t *msg = proto_recv (dealer, false, &error);
    assert (msg && msg->cmd == PROTO_ACK);
    int64_t got_seq = 0, got_count = 0;
    assert (pack_get_int (msg->body, "seq", &got_seq) == 0 && got_seq == seq);
    assert (pack_get_int (msg->body, "count", &got_count) == 0 && got_count == count);
    proto_msg_destroy (&msg);
}

void
acks_test (bool verbose)
{
    if (verbose)
        printf (" * acks: ");
    zsock_t *router = zsock_new_router ("inproc://acks-test");
    zsock_t *one = zsock_new_dealer ("inproc://acks-test");
    zsock_t *two = zsock_new_dealer ("inproc://acks-test");
    assert (router && one && two);
    zsock_set_rcvtimeo (router, 1000);
    zsock_set_rcvtimeo (one, 1000);
    zsock_set_rcvtimeo (two, 0);
    zsock_set_router_mandatory (router, 1);
    // Learn both routing ids.
    zstr_send (one, "hi");
    zstr_send (two, "hi");
    zmsg_t *msg = zmsg_recv (router);
    zframe_t *id_one = zmsg_pop (msg);
    zmsg_destroy (&msg);
    msg = zmsg_recv (router);
    zframe_t *id_two = zmsg_pop (msg);
    zmsg_destroy (&msg);

    acks_t *acks = acks_new ();
    // Consecutive numbers of one peer make one run, even interleaved with
    // another peer's; a gap starts a new run; seq 0 (no number) is no ACK.
    for (uint64_t seq = 1; seq <= 3; seq++) {
        acks_add (acks, id_one, seq);
        acks_add (acks, id_two, 100 + seq);
    }
    acks_add (acks, id_one, 7);
    acks_add (acks, id_one, 0);
    assert (acks_pending (acks) == 3);
    acks_flush (acks, router);
    assert (acks_pending (acks) == 0);
    s_test_ack (one, 1, 3);
    s_test_ack (one, 7, 1);
    zsock_set_rcvtimeo (two, 1000);
    s_test_ack (two, 101, 3);
    // A vanished peer is skipped.
    zsock_destroy (&two);
    zclock_sleep (50);
    acks_add (acks, id_two, 104);
    acks_add (acks, id_one, 8);
    acks_flush (acks, router);
    s_test_ack (one, 8, 1);
    // Bounded: past ACKS_MAX_RUNS runs, RESULTs go unacknowledged.
    for (uint64_t seq = 1; seq <= ACKS_MAX_RUNS + 10; seq++)
        acks_add (acks, id_one, 2 * seq);
    assert (acks_pending (acks) == ACKS_MAX_RUNS);
    log_init ("acks-test", LOG_ERROR_);
    acks_destroy (&acks);
    acks_destroy (&acks);
    log_init ("jobgate", LOG_INFO_);
    zframe_destroy (&id_one);
    zframe_destroy (&id_two);
    zsock_destroy (&one);
    zsock_destroy (&router);
    if (verbose)
        printf ("OK\n");
}
