// mhdloop — libmicrohttpd on the process's one event loop.
//
// The HTTP server runs without threads of its own (MHD_USE_EPOLL, no
// internal thread): its epoll fd is one fd of the loop and MHD_run is only
// ever called from the loop, so no ZeroMQ socket is touched from another
// thread. It never listens: the front door accepts each client and hands
// the server one end of a socketpair (frontdoor.h). This module owns when
// the server runs and which of its connections are parked:
//
// * it runs when its epoll fd is ready, when its own timeout comes
//   (MHD_get_timeout), and in the loop turn that gave it bytes, a
//   connection or a resume (mhdloop_kick; the idle hook then calls
//   mhdloop_on_idle), so an answer decided in a turn leaves in that turn;
// * a request waiting for the broker or an event is suspended, not a
//   thread and not a busy loop. libmicrohttpd 0.9.75 walks its whole list
//   of suspended connections in the run that follows any resume; with
//   thousands parked (Prefer: wait), that walk once per loop turn cost more
//   than the requests (and batching resumes only traded it for latency:
//   36 % of the gateway's CPU at 500/s with 2,500 parked). So new
//   connections go to the emptiest of as many daemons as the open
//   ones call for (one per 128 open, up to MHDLOOP_SERVERS; one while few
//   are open, so a turn runs one daemon for all), and a resume walks only
//   its own daemon's parked connections (~128, not 10,000); resumes
//   are still batched per daemon when one alone holds more than 1,000
//   parked (a batch per parked/1000 ms);
// * a suspended connection neither times out nor notices its client
//   leaving (the front door tells the gateway), and every one must be
//   resumed before the daemon stops: mhdloop_destroy does.
//
// A connection's state (mhdloop_conn_t) is embedded in the caller's
// per-request state, so parking costs no allocation; its fields are this
// module's.
#ifndef JOBGATE_MHDLOOP_H
#define JOBGATE_MHDLOOP_H

#include "evloop.h"
#include <microhttpd.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

// HTTP servers (libmicrohttpd daemons) the connections are spread over, at
// most. Each costs an epoll fd, and a run only in the turns its connections
// need.
#define MHDLOOP_SERVERS 64

typedef struct _mhdloop_t mhdloop_t;
typedef struct _mhdloop_conn_t mhdloop_conn_t;

struct _mhdloop_conn_t {
    struct MHD_Connection *connection; // the HTTP connection, NULL = none yet
    bool suspended;             // parked in libmicrohttpd
    bool resume_queued;         // on the list of the next resume batch
    mhdloop_conn_t *resume_next; // next on that list
    unsigned server;            // the server that holds it (set when suspended)
    mhdloop_conn_t *prev;       // neighbours among the suspended connections
    mhdloop_conn_t *next;
};

// What the server allows.
typedef struct {
    unsigned int max_connections; // connections held at once
    unsigned int timeout_s;     // an idle connection (not suspended) closes after this
    size_t connection_memory;   // each connection's pool: its request head and small answers
    size_t connections_per_server; // one more daemon for new connections per this many open (0: 128)
} mhdloop_limits_t;

// mhdloop_new starts the server with the request handlers of
// libmicrohttpd's MHD_start_daemon (access, and completed: called once per
// request that reached access; both get arg), strict about what clients
// send (MHD_OPTION_STRICT_FOR_CLIENT), and serves it on loop. On error
// returns NULL and writes one line into error.
mhdloop_t *mhdloop_new (evloop_t *loop, const mhdloop_limits_t *limits,
                        MHD_AccessHandlerCallback access,
                        MHD_RequestCompletedCallback completed, void *arg, char *error,
                        size_t error_size);

// mhdloop_destroy resumes every suspended connection (their requests must
// have their answers by then), runs the server once so they are sent,
// stops it (completed is called for every request left) and frees it;
// nulls *self_p.
void mhdloop_destroy (mhdloop_t **self_p);

// mhdloop_add_connection gives the server a connected socket, which it owns
// from then on, and runs it in this turn. Returns 0, or -1 when it refused.
int mhdloop_add_connection (mhdloop_t *self, int fd);

// mhdloop_kick makes the server of connection fd run in this loop turn
// (bytes were handed to it).
void mhdloop_kick (mhdloop_t *self, int fd);

// mhdloop_suspend parks conn (its connection set) now; a suspended one is
// ignored.
void mhdloop_suspend (mhdloop_t *self, mhdloop_conn_t *conn);

// mhdloop_resume lets the server take conn up again with the next resume
// batch (this turn, unless many are parked); one not suspended is ignored.
void mhdloop_resume (mhdloop_t *self, mhdloop_conn_t *conn);

// mhdloop_resume_all resumes every queued connection at once (draining).
void mhdloop_resume_all (mhdloop_t *self);

// mhdloop_forget drops conn from the server's books: its request completed.
void mhdloop_forget (mhdloop_t *self, mhdloop_conn_t *conn);

// mhdloop_on_idle resumes the batch whose time has come (or makes the loop
// wake for it) and runs the server if this turn needs it. Call it from the
// loop's idle hook.
void mhdloop_on_idle (mhdloop_t *self);

// mhdloop_run runs every server now.
void mhdloop_run (mhdloop_t *self);

// mhdloop_suspended returns how many connections are parked.
size_t mhdloop_suspended (const mhdloop_t *self);

// mhdloop_test runs the self-test.
void mhdloop_test (bool verbose);

#endif
