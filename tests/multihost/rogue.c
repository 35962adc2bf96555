// jobgate-rogue — a stranger on the broker's network, for tests/multihost.
//
// It plays every role a peer can take by connecting (docs/protocol.md §7):
// on the backend it announces itself as a worker (READY, HEARTBEATs) and
// answers each DISPATCH it gets with a forged RESULT ("succeeded", a body
// that is not the job's); on the frontend it PINGs like a gateway; on the
// publisher it subscribes to every event. After --seconds it prints one
// JSON line of what the broker gave it and exits 0:
//   {"backend_messages":N,"dispatches":N,"forged_results":N,
//    "frontend_replies":N,"events":N}
// Without a key it speaks plain ZMTP (a broker with CURVE must give it
// nothing); with --own-key BROKER_PUBLIC_KEY it makes itself a fresh CURVE
// key pair (a key the broker does not list) and uses the broker's public key.
#include "pack.h"
#include "proto.h"
#include <czmq.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    long backend_messages;  // anything the broker sent to the rogue "worker"
    long dispatches;        // DISPATCHes among them: jobs handed to the rogue
    long forged_results;    // RESULTs the rogue sent back for them
    long frontend_replies;  // anything the broker answered the rogue "gateway"
    long events;            // PUB messages the rogue received
} rogue_counts_t;

// s_connect makes a socket of type, with CURVE as a client of server_key
// (own key pair cert) when cert is not NULL, connected to endpoint.
static zsock_t *
s_connect (int type, const char *endpoint, zcert_t *cert, const char *server_key)
{
    zsock_t *sock = zsock_new (type);
    if (!sock)
        return NULL;
    zsock_set_linger (sock, 0);
    if (cert) {
        zcert_apply (cert, sock);
        zsock_set_curve_serverkey (sock, server_key);
    }
    if (type == ZMQ_SUB)
        zsock_set_subscribe (sock, "");
    if (zsock_connect (sock, "%s", endpoint) < 0) {
        fprintf (stderr, "rogue: cannot connect to %s\n", endpoint);
        zsock_destroy (&sock);
    }
    return sock;
}

// s_forge answers one DISPATCH with a RESULT that claims success.
static void
s_forge (zsock_t *backend, proto_msg_t *msg, rogue_counts_t *counts)
{
    char *id = pack_get_strdup (msg->body, "id");
    char *lease = pack_get_strdup (msg->body, "lease");
    int64_t attempt = 0;
    if (!id || pack_get_int (msg->body, "attempt", &attempt) != 0) {
        free (id);
        free (lease);
        return;
    }
    pack_writer_t *body = pack_writer_new ();
    pack_put_str (body, "id", id);
    pack_put_int (body, "attempt", attempt);
    if (lease)
        pack_put_str (body, "lease", lease);
    pack_put_str (body, "outcome", "succeeded");
    pack_put_str (body, "result",
                  "{\"status\":200,\"headers\":{},\"body\":{\"forged\":true},\"latency_ms\":1}");
    if (proto_send (backend, NULL, PROTO_RESULT, body) == 0)
        counts->forged_results++;
    pack_writer_destroy (&body);
    free (id);
    free (lease);
}

static void
s_send_simple (zsock_t *sock, proto_cmd_t cmd, const char *key, int64_t value, const char *worker)
{
    pack_writer_t *body = pack_writer_new ();
    pack_put_int (body, key, value);
    if (worker) {
        pack_put_int (body, "concurrency", value);
        pack_put_str (body, "worker", worker);
    }
    proto_send (sock, NULL, cmd, body);
    pack_writer_destroy (&body);
}

int
main (int argc, char **argv)
{
    const char *frontend = NULL, *backend_ep = NULL, *publisher = NULL, *server_key = NULL;
    double seconds = 5;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (streq (argv[i], "--frontend"))
            frontend = argv[i + 1];
        else if (streq (argv[i], "--backend"))
            backend_ep = argv[i + 1];
        else if (streq (argv[i], "--publisher"))
            publisher = argv[i + 1];
        else if (streq (argv[i], "--seconds"))
            seconds = atof (argv[i + 1]);
        else if (streq (argv[i], "--own-key"))
            server_key = argv[i + 1];
        else {
            fprintf (stderr, "rogue: unknown argument %s\n", argv[i]);
            return 2;
        }
    }
    if (!frontend || !backend_ep || !publisher || seconds <= 0 || seconds > 600) {
        fprintf (stderr, "usage: jobgate-rogue --frontend EP --backend EP --publisher EP "
                         "[--seconds S (0-600)] [--own-key BROKER_PUBLIC_KEY]\n");
        return 2;
    }
    zsys_handler_set (NULL);
    zcert_t *cert = server_key ? zcert_new () : NULL;
    zsock_t *backend = s_connect (ZMQ_DEALER, backend_ep, cert, server_key);
    zsock_t *front = s_connect (ZMQ_DEALER, frontend, cert, server_key);
    zsock_t *sub = s_connect (ZMQ_SUB, publisher, cert, server_key);
    if (!backend || !front || !sub)
        return 1;
    zpoller_t *poller = zpoller_new (backend, front, sub, NULL);
    rogue_counts_t counts = {0};
    char worker[64];
    snprintf (worker, sizeof worker, "rogue-%d", (int) getpid ());
    int64_t end = zclock_mono () + (int64_t) (seconds * 1000);
    int64_t next_tick = 0;
    long ticks = 0;
    while (zclock_mono () < end) {
        if (zclock_mono () >= next_tick) {
            // READY again now and then: a broker that was not reachable at
            // the first one (or restarted) gets it later.
            if (ticks++ % 5 == 0)
                s_send_simple (backend, PROTO_READY, "credit", 64, worker);
            else
                s_send_simple (backend, PROTO_HEARTBEAT, "running", 0, NULL);
            s_send_simple (front, PROTO_PING, "corr", ticks, NULL);
            next_tick = zclock_mono () + 1000;
        }
        zsock_t *which = zpoller_wait (poller, 100);
        if (!which)
            continue;
        const char *error = NULL;
        proto_msg_t *msg = proto_recv (which, false, &error);
        if (which == backend) {
            counts.backend_messages++;
            for (bool more = msg != NULL; more; more = proto_msg_next (msg))
                if (msg->cmd == PROTO_DISPATCH) {
                    counts.dispatches++;
                    s_forge (backend, msg, &counts);
                }
        }
        else if (which == front)
            counts.frontend_replies++;
        else
            counts.events++;
        proto_msg_destroy (&msg);
    }
    printf ("{\"backend_messages\":%ld,\"dispatches\":%ld,\"forged_results\":%ld,"
            "\"frontend_replies\":%ld,\"events\":%ld}\n",
            counts.backend_messages, counts.dispatches, counts.forged_results,
            counts.frontend_replies, counts.events);
    zpoller_destroy (&poller);
    zsock_destroy (&backend);
    zsock_destroy (&front);
    zsock_destroy (&sub);
    zcert_destroy (&cert);
    return 0;
}
