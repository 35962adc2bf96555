// gateway — the HTTP API (SPEC §3) on libmicrohttpd, driven by the process's
// one event loop together with its ZeroMQ sockets to the broker.
//
// libmicrohttpd runs without threads (MHD_USE_EPOLL, no internal thread):
// its epoll fd is one fd of our loop and MHD_run is called from it, so no
// ZeroMQ socket is ever touched from another thread. A request that needs
// the broker is suspended (not a thread, not a busy loop) and resumed when
// the answer, an event or its deadline arrives.
#ifndef JOBGATE_GATEWAY_H
#define JOBGATE_GATEWAY_H

#include "config.h"
#include "evloop.h"
#include <stdbool.h>

typedef struct _gateway_t gateway_t;

// gateway_new starts serving config->gateway_listen and connects to the
// broker. On error returns NULL and writes one line into error.
gateway_t *gateway_new (const config_t *config, evloop_t *loop, char *error, size_t error_size);

// gateway_drain stops accepting connections and answers every parked
// request now (with what is known). Returns true when no request is left.
bool gateway_drain (gateway_t *self);

// gateway_busy returns how many HTTP requests are being handled.
size_t gateway_busy (gateway_t *self);

// gateway_destroy stops the server and closes the sockets; nulls *self_p.
void gateway_destroy (gateway_t **self_p);

// gateway_port returns the TCP port actually bound (useful with port 0).
int gateway_port (gateway_t *self);

#endif
