// broker — owns the truth: the durable store, the queues, the workers, and
// the events. Implements the broker side of docs/protocol.md (JGP/1).
//
// This is the broker's loop: its three sockets (§1), the handlers of what
// gateways and workers send (§3.1, §3.2), dispatch, the group commit (§6)
// and each tick's housekeeping. Each kind of state has its own module,
// which these handlers call (docs/architecture.md has the picture):
//   broker/jobs.h       the active jobs and every transition of their lifecycle
//   broker/scheduler.h  the tenants' queues, fair turns, the providers' limits
//   broker/tenant.h     each tenant's quota state and the admission check
//   broker/workers.h    the workers: registry, credit, liveness, leases
//   broker/outbox.h     answers and events held until their commit
//   broker/store.h      the durable records (LMDB)
//   broker/report.h, broker/delivery.h, broker/bucket.h, broker/provider.h
//                       a RESULT judged, a webhook delivery, a token bucket,
//                       one upstream's live state
#ifndef JOBGATE_BROKER_H
#define JOBGATE_BROKER_H

#include "config.h"
#include "curve.h"
#include "evloop.h"
#include <stdbool.h>
#include <stdint.h>

typedef struct _broker_t broker_t;

// broker_new opens the store, recovers every active job, and binds the
// three sockets on loop. On error returns NULL and writes one line into
// error.
broker_t *broker_new (const config_t *config, evloop_t *loop, char *error, size_t error_size);

// broker_config_changed applies the reloadable keys of its configuration
// after a reload moved them in (common/service.h): provider rates, tenants'
// quotas. This function can't fail.
void broker_config_changed (broker_t *self);

// broker_destroy commits what is pending, answers what waits for the
// commit, closes the sockets and the store; nulls *self_p.
void broker_destroy (broker_t **self_p);

// broker_run_once handles every message waiting on the frontend and the
// backend, dispatches, commits and answers, as one turn of the loop does
// (with tick, the housekeeping of a tick too). For the fuzz target, which
// drives the broker without running its loop.
void broker_run_once (broker_t *self, bool tick);

// broker_metrics returns what the broker serves on broker.metrics_listen,
// the Prometheus text format (the caller frees it); *size is its length.
char *broker_metrics (broker_t *self, size_t *size);

// broker_set_timing shortens the lease grace (10 s) and the workers'
// liveness (3 s), for tests.
void broker_set_timing (broker_t *self, int64_t lease_grace_ms, int64_t liveness_ms);

// broker_curve returns the broker's CURVE state: curve_refused (common/
// curve.h) counts the peers its sockets refused, by reason
// (jobgate_curve_refused_total{reason}).
const curve_t *broker_curve (const broker_t *self);

// broker_consistent checks the broker's counts against its lists and
// tables: jobs queued, running and waiting per tenant and in all, the
// dispatch ring, workers' credit within their caps. For the self-test and the
// fuzz target. Returns true when everything agrees (a line on stderr says
// what does not).
bool broker_consistent (broker_t *self);

// broker_test runs the self-test.
void broker_test (bool verbose);

#endif
