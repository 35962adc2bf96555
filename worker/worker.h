// worker — the worker process's engine: JGP/1 on one side, libcurl on the
// other, both on the process's one event loop.
//
// It implements the worker side of docs/protocol.md: READY with credit,
// DISPATCH → a transfer, RESULT per finished attempt (§3.2), HEARTBEAT and
// broker liveness with reconnect (§5), RECONNECT, and DISCONNECT on drain.
// libcurl's multi interface runs on the same loop through its socket and
// timer callbacks, so thousands of calls are in flight without a thread.
#ifndef JOBGATE_WORKER_H
#define JOBGATE_WORKER_H

#include "config.h"
#include "evloop.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

// §5 numbers: heartbeat interval and broker liveness.
#define WORKER_HEARTBEAT_MS 1000
#define WORKER_LIVENESS_MS 3000
// How long a drain (SIGTERM) may take before running calls are abandoned.
#define WORKER_DRAIN_TIMEOUT_MS 30000

typedef struct _worker_t worker_t;

// worker_new connects to config->broker_backend and announces itself with
// READY. config and loop are borrowed and must outlive the worker. Call
// zsys_handler_set (NULL) and route signals before this (it creates the
// first ZeroMQ socket). Returns NULL on failure, after logging why.
worker_t *worker_new (const config_t *config, evloop_t *loop);

// worker_destroy abandons running calls (without RESULTs: the broker
// requeues them), gives queued messages a moment to leave, and frees the
// worker; nulls *self_p.
void worker_destroy (worker_t **self_p);

// worker_drain starts a graceful drain on the first call: DISCONNECT to the
// broker, running calls finish and report, then the loop stops. A second
// call (or the drain timeout) abandons what still runs and stops the loop.
void worker_drain (worker_t *self);

// worker_set_timing changes the heartbeat interval, the broker liveness and
// the drain timeout (all ms; tests shorten them, main reads the override).
void worker_set_timing (worker_t *self, int64_t heartbeat_ms, int64_t liveness_ms,
                        int64_t drain_timeout_ms);

// worker_running returns how many calls are in flight.
size_t worker_running (const worker_t *self);

// worker_reconnects returns how many times the broker socket was recreated.
size_t worker_reconnects (const worker_t *self);

// worker_test runs the self-test (in-process broker over inproc, no network).
void worker_test (bool verbose);

#endif
