// curve — CURVE security of every ZeroMQ socket (SPEC §5, §6
// security.curve; docs/protocol.md §1.1).
//
// Owns this process's key pair and what it trusts: the broker's public key
// (a client: gateway, worker) or the public keys it accepts (the server:
// the broker, whose accepting is done by czmq's zauth actor, a ZAP handler,
// on an in-memory certificate store). Keys come inline from the config or
// from files (mounted secrets); every key is checked at start: 40 characters
// of Z85, and the secret key must be the public key's. Watches the
// handshakes of the sockets it secures (a libzmq socket monitor, read on the
// process's event loop) and counts the peers refused by reason, logging them
// without letting a peer that reconnects ten times a second flood the log.
//
// With no security.curve key set the object exists and does nothing
// (curve_enabled is false): plain TCP, as before.
#ifndef JOBGATE_CURVE_H
#define JOBGATE_CURVE_H

#include "config.h"
#include "evloop.h"

#include <czmq.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

// Why a peer's handshake failed.
typedef enum {
    CURVE_REFUSED_NO_KEY,       // it does not speak CURVE (no key: the NULL mechanism)
    CURVE_REFUSED_WRONG_KEY,    // its handshake does not decrypt: it uses another broker key,
                                // or a public key that is not its secret key's (a client:
                                // the broker closed the handshake without a reason)
    CURVE_REFUSED_UNLISTED_KEY, // a valid key the broker does not list (authorized_keys)
    CURVE_REFUSED_OTHER,        // another failure: malformed, or the peer hung up during the
                                // handshake (a refused peer often closes first)
    CURVE_REFUSED_COUNT_
} curve_refusal_t;

typedef struct _curve_t curve_t;

// curve_new reads security.curve for the broker (server true: its key pair
// and authorized keys, at least one) or a gateway or worker (server false:
// its key pair and the broker's public key), reading the *_file keys. A
// server starts its zauth actor (before any socket binds). Returns the
// object, or NULL with a one-line reason in error (a key missing, given
// twice, unreadable or malformed, or a pair that does not match).
curve_t *curve_new (const config_t *config, bool server, char *error, size_t error_size);

// curve_check reads and checks the keys as curve_new does, without
// starting anything (--check-config). Returns 0, or -1 with the reason in
// error.
int curve_check (const config_t *config, bool server, char *error, size_t error_size);

// curve_destroy stops watching, stops the zauth actor and wipes the secret
// key; nulls *self_p.
void curve_destroy (curve_t **self_p);

// curve_enabled is true when security.curve is set.
bool curve_enabled (const curve_t *self);

// curve_secure makes sock a CURVE server or client with this process's
// keys; call before it binds or connects. Does nothing when CURVE is off.
void curve_secure (curve_t *self, zsock_t *sock);

// curve_watch reports, on loop, every handshake of sock that fails: counted
// by reason, logged (a reason's first refusal at once, then one line per
// reason per CURVE_LOG_INTERVAL_MS with the count). name says which socket
// ("backend"). Call before sock binds or connects, and curve_unwatch before
// it is destroyed. Does nothing when CURVE is off. Returns 0 or -1.
int curve_watch (curve_t *self, evloop_t *loop, zsock_t *sock, const char *name);

// curve_unwatch stops watching sock (if watched).
void curve_unwatch (curve_t *self, zsock_t *sock);

// curve_refused returns how many handshakes failed for reason since start
// (the broker: peers refused; a client: its attempts the broker refused).
uint64_t curve_refused (const curve_t *self, curve_refusal_t reason);

// curve_refusal_name is the label of a reason: "no_key", "wrong_key",
// "unlisted_key", "other" (jobgate_curve_refused_total{reason}).
const char *curve_refusal_name (curve_refusal_t reason);

// curve_print_keypair writes a new key pair as one JSON line,
// {"public_key":"…","secret_key":"…"} (jobgate-broker --gen-keypair).
// Returns 0 or -1.
int curve_print_keypair (FILE *out);

// How often a reason's refusals are logged at most, after its first.
#define CURVE_LOG_INTERVAL_MS 10000

// curve_test runs the self-test (sockets on 127.0.0.1 ephemeral ports).
void curve_test (bool verbose);

#endif
