// proto — JGP/1, the ZeroMQ protocol between gateway, broker and worker.
// The specification is docs/protocol.md; section numbers below refer to it.
//
// Every message is: [envelope] "JGP1" COMMAND BODY, where the envelope is the
// ROUTER routing id (broker side) or the PUB topic (events), and BODY is one
// msgpack map (common/pack.h).
#ifndef JOBGATE_PROTO_H
#define JOBGATE_PROTO_H

#include "pack.h"
#include <czmq.h>

#define PROTO_VERSION "JGP1"

// §3 commands. The wire carries the name; the enum is local.
typedef enum {
    PROTO_SUBMIT,     // gateway → broker: record a new job
    PROTO_SUBMIT_OK,  // broker → gateway: the job is durably recorded
    PROTO_GET,        // gateway → broker: read a job
    PROTO_JOB,        // broker → gateway: a job record
    PROTO_PING,       // gateway → broker: liveness and readiness probe
    PROTO_PONG,       // broker → gateway: answer to PING, with worker count
    PROTO_ERROR,      // broker → gateway: a request failed
    PROTO_READY,      // worker → broker: a worker joins, with its credit
    PROTO_CREDIT,     // worker → broker: more capacity freed
    PROTO_DISPATCH,   // broker → worker: run one attempt of a job
    PROTO_RESULT,     // worker → broker: the outcome of an attempt
    PROTO_HEARTBEAT,  // both ways between broker and worker
    PROTO_RECONNECT,  // broker → worker: unknown to me, send READY again
    PROTO_DISCONNECT, // worker → broker: draining, send me no more jobs
    PROTO_CANCEL,     // gateway → broker: cancel a job; broker → worker: abort it
    PROTO_RETRY,      // gateway → broker: run a failed or canceled job again
    PROTO_LIST,       // gateway → broker: list a tenant's jobs
    PROTO_LIST_OK,    // broker → gateway: one page of jobs
    PROTO_CHUNK,      // worker → broker: partial upstream data (LLM tokens)
    PROTO_PROVIDERS,  // gateway → broker: live state of the providers
    PROTO_PROVIDERS_OK, // broker → gateway: that state, as JSON text
    PROTO_EVENT,      // broker → PUB subscribers: a job changed state
    PROTO_CMD_COUNT_
} proto_cmd_t;

typedef struct {
    zframe_t *envelope;   // routing id or topic; NULL on DEALER/SUB without one
    proto_cmd_t cmd;      // the command
    pack_reader_t *body;  // the decoded body map
} proto_msg_t;

// proto_cmd_name returns the wire name of cmd. This function can't fail.
const char *proto_cmd_name (proto_cmd_t cmd);

// proto_decode takes ownership of *msg_p (and nulls it) and decodes it. With
// has_envelope the first frame is kept as the envelope. On error returns
// NULL and points *error at a static explanation for the log line.
proto_msg_t *proto_decode (zmsg_t **msg_p, bool has_envelope, const char **error);

// proto_recv receives one message from sock and decodes it; see proto_decode.
proto_msg_t *proto_recv (zsock_t *sock, bool has_envelope, const char **error);

// proto_msg_destroy frees a message; nulls *self_p.
void proto_msg_destroy (proto_msg_t **self_p);

// proto_send sends cmd with body to sock. envelope (borrowed, may be NULL) is
// sent first. Returns 0, or -1 when the socket refused it (HWM, no route).
int proto_send (zsock_t *sock, zframe_t *envelope, proto_cmd_t cmd, pack_writer_t *body);

// proto_test runs the self-test.
void proto_test (bool verbose);

#endif
