// broker — owns the truth: the durable store, the queues, the workers, and
// the events. Implements the broker side of docs/protocol.md (JGP/1).
#ifndef JOBGATE_BROKER_H
#define JOBGATE_BROKER_H

#include "config.h"
#include "evloop.h"
#include <stdbool.h>

typedef struct _broker_t broker_t;

// broker_new opens the store, recovers every active job, and binds the
// three sockets on loop. On error returns NULL and writes one line into
// error.
broker_t *broker_new (const config_t *config, evloop_t *loop, char *error, size_t error_size);

// broker_destroy commits what is pending, answers what waits for the
// commit, closes the sockets and the store; nulls *self_p.
void broker_destroy (broker_t **self_p);

// broker_run_once handles every message waiting on the frontend and the
// backend, dispatches, commits and answers, as one turn of the loop does
// (with tick, the housekeeping of a tick too). For the fuzz target, which
// drives the broker without running its loop.
void broker_run_once (broker_t *self, bool tick);

// broker_consistent checks the broker's counts against its lists and
// tables: jobs queued, running and waiting per tenant and in all, the
// dispatch ring, workers' credit within their caps. For the self-test and the
// fuzz target. Returns true when everything agrees (a line on stderr says
// what does not).
bool broker_consistent (broker_t *self);

// broker_test runs the self-test.
void broker_test (bool verbose);

#endif
