// proto — JGP/1, the ZeroMQ protocol between gateway, broker and worker.
// The specification is docs/protocol.md; section numbers below refer to it.
//
// Every message is: [envelope] "JGP1" COMMAND BODY [BODY...], where the
// envelope is the ROUTER routing id (broker side) or the PUB topic (events),
// and each BODY is one msgpack map (common/pack.h). Several bodies make a
// batch (§2.1): each is handled as if it were a message of its own.
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
    PROTO_USAGE,      // gateway → broker: a tenant's LLM usage totals (revision 3)
    PROTO_USAGE_OK,   // broker → gateway: those totals, as JSON text
    PROTO_ACK,        // broker → worker: RESULTs handled and committed (revision 4)
    PROTO_STATS,      // gateway → broker: the dashboard's figures (revision 4)
    PROTO_STATS_OK,   // broker → gateway: those figures, as JSON text
    PROTO_CMD_COUNT_
} proto_cmd_t;

typedef struct {
    zframe_t *envelope;   // routing id or topic; NULL on DEALER/SUB without one
    proto_cmd_t cmd;      // the command
    pack_reader_t *body;  // the decoded body map (the current one of a batch)
    zmsg_t *rest;         // the batch's bodies after this one, not yet decoded
    size_t bad_bodies;    // bodies of the batch skipped as not msgpack maps
} proto_msg_t;

// A batch being built: bodies for one peer and one command, sent as one
// ZeroMQ message (§2.1).
typedef struct _proto_batch_t proto_batch_t;

// proto_cmd_name returns the wire name of cmd. This function can't fail.
const char *proto_cmd_name (proto_cmd_t cmd);

// proto_decode takes ownership of *msg_p (and nulls it) and decodes it. With
// has_envelope the first frame is kept as the envelope. On error returns
// NULL and points *error at a static explanation for the log line.
proto_msg_t *proto_decode (zmsg_t **msg_p, bool has_envelope, const char **error);

// proto_recv receives one message from sock and decodes it; see proto_decode.
proto_msg_t *proto_recv (zsock_t *sock, bool has_envelope, const char **error);

// proto_msg_next moves msg->body to the next body of a batch; false when
// there is none. Bodies that are not msgpack maps are skipped and counted in
// msg->bad_bodies.
bool proto_msg_next (proto_msg_t *self);

// A handler of one body: msg->body is the body, msg->envelope and msg->cmd
// those of the message it came in.
typedef void (proto_body_fn) (proto_msg_t *msg, void *arg);

// proto_recv_each receives one message from sock and calls fn for each of
// its bodies, in order. A message that cannot be decoded, and bodies that
// are not msgpack maps, are logged (as received on `what`) and dropped.
void proto_recv_each (zsock_t *sock, bool has_envelope, const char *what, proto_body_fn *fn,
                      void *arg);

// proto_msg_destroy frees a message; nulls *self_p.
void proto_msg_destroy (proto_msg_t **self_p);

// proto_send sends cmd with body to sock. envelope (borrowed, may be NULL) is
// sent first. Returns 0, or -1 when the socket refused it (HWM, no route).
int proto_send (zsock_t *sock, zframe_t *envelope, proto_cmd_t cmd, pack_writer_t *body);

// proto_batch_new makes an empty batch for sock (borrowed). This function
// can't fail (out of memory aborts: common/mem.h).
proto_batch_t *proto_batch_new (zsock_t *sock);

// proto_batch_destroy frees a batch without sending it; nulls *self_p.
void proto_batch_destroy (proto_batch_t **self_p);

// proto_batch_add copies body into the batch. A batch holds one envelope
// (borrowed; compared by bytes) and one command: a body for another, or one
// that would make the batch too large, first sends what the batch holds.
// Returns 0, or -1 when that earlier send was refused.
int proto_batch_add (proto_batch_t *self, zframe_t *envelope, proto_cmd_t cmd,
                     pack_writer_t *body);

// proto_batch_add_bytes is proto_batch_add for a body already encoded
// (size bytes of one msgpack map written earlier, e.g. a request kept to be
// sent again).
int proto_batch_add_bytes (proto_batch_t *self, zframe_t *envelope, proto_cmd_t cmd,
                           const void *data, size_t size);

// proto_batch_flush sends what the batch holds, if anything, as one message.
// Returns 0, or -1 when the socket refused it (HWM, no route); the bodies
// are dropped either way.
int proto_batch_flush (proto_batch_t *self);

// proto_batch_count is the number of bodies waiting in the batch.
size_t proto_batch_count (const proto_batch_t *self);

// proto_set_limits sets the socket's ZMQ_MAXMSGSIZE to max_frame_bytes
// (broker.max_frame_bytes, §1): libzmq checks it per frame as it decodes and
// disconnects a peer that sends a larger one, so no frame of any size is
// ever buffered. Every JGP/1 socket of every process calls it. Returns 0, or
// -1 when libzmq refused the option.
int proto_set_limits (zsock_t *sock, size_t max_frame_bytes);

// proto_test runs the self-test.
void proto_test (bool verbose);

#endif
