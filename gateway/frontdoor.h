// frontdoor — the gateway's listening socket and every client connection.
//
// libmicrohttpd serves the API, but it never touches a client socket: the
// front door accepts each TCP connection, gives the HTTP server one end of
// a socketpair instead (MHD_add_connection), and relays bytes between the
// two on the process's one event loop. That place in the middle is what
// lets the gateway hold rules libmicrohttpd 0.9.75 cannot:
//
// * strict framing (issue 17 #11): every byte a client sends goes through
//   http1.c first; a request with more than one meaning (duplicate or
//   conflicting lengths, obs-fold, bare CR/LF, NUL, unknown codings) is
//   answered 400/501 and the connection closed, and the HTTP server only
//   ever sees requests that mean one thing;
// * deadlines (issue 17 #12): a whole request head must arrive within
//   header_timeout_ms of its first byte (of the connection, for the first
//   request), and a body must keep up min_body_rate bytes/s after a grace
//   of header_timeout_ms; a trickle of bytes no longer resets anything.
//   Late clients get 408 and the connection is closed;
// * the connection limit (issue 10 #2): accepting stops at max_connections
//   and resumes the moment one closes — no dependence on the HTTP server's
//   own run schedule, which in external-epoll mode never came after a
//   flood had filled and then left the limit.
//
// A refused request is answered only after the HTTP server has answered
// every request before it on the connection (responses stay in order).
// Memory per connection: a small struct, plus buffers only while a head
// arrives in pieces or a peer reads slower than the other side writes.
#ifndef JOBGATE_FRONTDOOR_H
#define JOBGATE_FRONTDOOR_H

#include "evloop.h"
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

typedef struct _frontdoor_t frontdoor_t;

// What a front door enforces.
typedef struct {
    size_t max_connections;     // client connections held at once
    int64_t header_timeout_ms;  // a request head must arrive within this
    size_t min_body_rate;       // bytes/s a body must average after the grace, 0 = any
    size_t max_head_bytes;      // a request head may hold this much (431 above)
    bool reuse_port;            // bind with SO_REUSEPORT: other processes may share the port
} frontdoor_limits_t;

// Hands the server end of a new connection's socketpair to the HTTP server,
// which owns (and closes) it from then on, in every case. Returns 0, or -1
// when it cannot serve it (the client then gets 503).
typedef int (frontdoor_handoff_fn) (int fd, void *arg);

// Called when client bytes were passed to the HTTP server on connection
// handed_fd (the end the handoff gave it), so that it runs in this loop turn
// (then frontdoor_relay_answers takes its answers at once, instead of one
// more turn each way).
typedef void (frontdoor_kick_fn) (int handed_fd, void *arg);

// Counters, for /metrics.
typedef struct {
    uint64_t accepted;          // connections accepted
    uint64_t refused;           // requests refused by the strict reader (400, 431, 501, 505)
    uint64_t timed_out;         // heads late or bodies too slow (408)
    size_t open;                // connections open now
} frontdoor_stats_t;

// frontdoor_new listens on addr (a socket address of addr_len bytes) and
// serves connections on loop, handing each to handoff (kick, may be NULL,
// and handoff get arg). On error returns NULL and writes one line into error.
frontdoor_t *frontdoor_new (evloop_t *loop, const struct sockaddr *addr, socklen_t addr_len,
                            const frontdoor_limits_t *limits, frontdoor_handoff_fn *handoff,
                            frontdoor_kick_fn *kick, void *arg, char *error, size_t error_size);

// Called when a client left (its end of file, or an error) while the HTTP
// server still holds the connection: server_fd is the socketpair end the
// server was given. A request parked on that connection (a long poll, a
// Prefer: wait, an event stream) will never be read by anyone; the server
// should end it now rather than at its deadline (a parked libmicrohttpd
// connection does not notice by itself).
typedef void (frontdoor_gone_fn) (int server_fd, void *arg);

// frontdoor_on_gone routes client departures to fn (with the handoff's arg).
void frontdoor_on_gone (frontdoor_t *self, frontdoor_gone_fn *fn);

// frontdoor_relay_answers relays what the HTTP server wrote for the
// connections that passed it bytes since the last call (call it right after
// the server ran).
void frontdoor_relay_answers (frontdoor_t *self);

// frontdoor_port returns the TCP port bound (useful with port 0).
int frontdoor_port (frontdoor_t *self);

// frontdoor_stop_accepting closes the listening socket (draining); open
// connections go on.
void frontdoor_stop_accepting (frontdoor_t *self);

// frontdoor_stats returns the counters.
frontdoor_stats_t frontdoor_stats (frontdoor_t *self);

// frontdoor_destroy closes the listening socket and every connection;
// nulls *self_p.
void frontdoor_destroy (frontdoor_t **self_p);

// frontdoor_test runs the self-test.
void frontdoor_test (bool verbose);

#endif
