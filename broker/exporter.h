// exporter — the broker's HTTP listener for Prometheus (GET /metrics on
// broker.metrics_listen, SPEC §6, §7).
//
// libmicrohttpd on the broker's one event loop, as the gateway's mhdloop
// runs it: no thread of its own (MHD_USE_EPOLL), its epoll fd is one fd of
// the loop, MHD_run is only called from the loop, so rendering reads the
// broker's state where it lives. Unlike the gateway's server it listens
// itself: one scraper or a few, nothing parked. Bounded: at most
// EXPORTER_CONNECTIONS_MAX connections, each idle one closed after
// EXPORTER_TIMEOUT_S, a small memory pool per connection (a request head
// larger than that is refused by libmicrohttpd with 431). libmicrohttpd
// 0.9.75 re-adds its listening socket after a full house only on its next
// run and offers no timeout without connections: the server runs at least
// every second.
//
// Answers: GET (or HEAD) /metrics → 200, the text format from render;
// another path → 404; another method on /metrics → 405 with Allow.
#ifndef JOBGATE_EXPORTER_H
#define JOBGATE_EXPORTER_H

#include "evloop.h"
#include <stdbool.h>
#include <stddef.h>

#define EXPORTER_CONNECTIONS_MAX 32
#define EXPORTER_TIMEOUT_S 10

typedef struct _exporter_t exporter_t;

// Returns the metrics text (the caller frees it) and its length in *size.
typedef char *(exporter_render_fn) (void *arg, size_t *size);

// exporter_new listens on listen ("HOST:PORT", common/listenaddr.h) and
// serves render(arg) on loop. On error returns NULL and writes one line
// into error.
exporter_t *exporter_new (evloop_t *loop, const char *listen, exporter_render_fn *render,
                          void *arg, char *error, size_t error_size);

// exporter_destroy stops listening, closes every connection and frees it;
// nulls *self_p.
void exporter_destroy (exporter_t **self_p);

// exporter_port returns the port it listens on (the kernel's choice for 0).
int exporter_port (const exporter_t *self);

// exporter_scrapes returns how many answers it sent with the metrics.
unsigned long exporter_scrapes (const exporter_t *self);

// exporter_test runs the self-test.
void exporter_test (bool verbose);

#endif
