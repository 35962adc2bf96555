// gateway — the HTTP API (SPEC §3) in front of the broker, on the process's
// one event loop.
//
// A request's life: the front door (frontdoor.h) accepts the client and
// hands libmicrohttpd a clean connection (mhdloop.h runs it on the loop);
// the gateway routes the request, checks it (jobspec.h, headers.h), asks
// the broker (brokerclient.h) and parks it — not a thread, not a busy loop
// — until the answer, an event for its job (waiters.h, sse.h) or its
// deadline comes; then answers it, a rendered job shared rather than
// copied (jobcache.h), a list page rendered as it is sent (listpage.h), a
// batch in order (batch.h). gateway.c owns the requests themselves and the
// wiring; each kind of state it uses has its own module.
#ifndef JOBGATE_GATEWAY_H
#define JOBGATE_GATEWAY_H

#include "config.h"
#include "evloop.h"
#include <stdbool.h>

typedef struct _gateway_t gateway_t;

// gateway_check_config tests what the gateway alone knows about a
// configuration (cli_check_fn): its listen address parses, and open mode
// (no api_keys) listens on loopback unless allow_open_mode says otherwise.
// Returns 0, or -1 with one line in error.
int gateway_check_config (config_t *config, char *error, size_t error_size);

// gateway_new starts serving config->gateway_listen and connects to the
// broker. On error returns NULL and writes one line into error.
gateway_t *gateway_new (const config_t *config, evloop_t *loop, char *error, size_t error_size);

// gateway_drain stops accepting connections and answers every parked
// request now (with what is known). Returns true when no request is left.
bool gateway_drain (gateway_t *self);

// gateway_destroy answers what is left, stops the server and closes the
// sockets; nulls *self_p.
void gateway_destroy (gateway_t **self_p);

// gateway_test runs the self-test.
void gateway_test (bool verbose);

#endif
