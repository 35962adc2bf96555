// acks — the RESULTs the broker has handled and not yet acknowledged, per
// worker connection (docs/protocol.md §3.2.4, revision 4).
//
// A worker numbers its RESULTs (`seq`) and keeps each until an ACK names
// it; after it reconnects it sends the unacknowledged ones again, so a
// result sent into a broker outage is not lost with its socket (and its
// call made again). The broker acknowledges a RESULT — applied, or
// discarded as late — only after the commit that follows its arrival, so an
// ACK never promises what a crash could still lose. Consecutive numbers from
// one connection are kept as one run: an ACK is `seq` and `count`.
//
// Bounded: at most ACKS_MAX_RUNS runs wait for a commit; beyond that a
// RESULT goes unacknowledged (its worker sends it again after a reconnect,
// which the broker discards as late). No I/O but acks_flush.
#ifndef JOBGATE_ACKS_H
#define JOBGATE_ACKS_H

#include <czmq.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

// Runs waiting for a commit at most (commits failing for long: RESULTs
// keep arriving).
#define ACKS_MAX_RUNS 65536

typedef struct _acks_t acks_t;

// acks_new makes an empty set. This function can't fail.
acks_t *acks_new (void);

// acks_destroy frees the set without sending; nulls *self_p.
void acks_destroy (acks_t **self_p);

// acks_add notes that the RESULT numbered seq (> 0) from the connection
// peer (its routing id, copied) was handled.
void acks_add (acks_t *self, zframe_t *peer, uint64_t seq);

// acks_pending returns the runs waiting.
size_t acks_pending (const acks_t *self);

// acks_flush sends each run as an ACK (seq, count) to its peer on sock (the
// backend ROUTER; a vanished peer is skipped: it resends) and forgets them.
void acks_flush (acks_t *self, zsock_t *sock);

// acks_test runs the self-test.
void acks_test (bool verbose);

#endif
