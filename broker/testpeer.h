// testpeer — the far side of the broker's sockets in self-tests, as
// worker.c's self-test plays the broker: a DEALER that plays a gateway or a
// worker (or a hostile peer), or a SUB or PAIR that reads events.
//
// What a peer receives is split into one message per body (a batch,
// docs/protocol.md §2.1, is read one body at a time, in order), and
// heartbeats are passed over. A SUB's or PAIR's messages carry the PUB topic
// first; a DEALER's carry no envelope. Waiting runs the loop under test in
// 10 ms steps, so the broker answers meanwhile, and gives up after 3 s: a
// test never sleeps and never hangs.
#ifndef JOBGATE_TESTPEER_H
#define JOBGATE_TESTPEER_H

#include "evloop.h"
#include "proto.h"
#include <stdbool.h>
#include <stdint.h>

typedef struct _testpeer_t testpeer_t;

// testpeer_new connects a socket of type (ZMQ_DEALER, ZMQ_SUB subscribed to
// everything, or ZMQ_PAIR) to endpoint. This function can't fail (the test
// aborts).
testpeer_t *testpeer_new (int type, const char *endpoint);

// testpeer_destroy closes the socket and drops what was not read; nulls
// *self_p.
void testpeer_destroy (testpeer_t **self_p);

// testpeer_hello sends a PING from a DEALER peer and returns the routing id
// under which router (the side under test) received it; the caller destroys
// it. A ROUTER can send to a peer only after hearing from it.
zframe_t *testpeer_hello (testpeer_t *self, zsock_t *router);

// testpeer_send sends cmd with *body_p, which it destroys.
void testpeer_send (testpeer_t *self, proto_cmd_t cmd, pack_writer_t **body_p);

// testpeer_take returns the next message received but heartbeats, or NULL
// when none has arrived yet. Never waits.
proto_msg_t *testpeer_take (testpeer_t *self);

// testpeer_wait runs loop until the next message but heartbeats arrives, up
// to 3 s; NULL if none came.
proto_msg_t *testpeer_wait (testpeer_t *self, evloop_t *loop);

// testpeer_expect is testpeer_wait for a message that must be cmd.
proto_msg_t *testpeer_expect (testpeer_t *self, evloop_t *loop, proto_cmd_t cmd);

// testpeer_quiet runs loop about ms and checks that nothing but heartbeats
// arrived meanwhile.
void testpeer_quiet (testpeer_t *self, evloop_t *loop, int64_t ms);

// testpeer_events takes every message received and describes the events of
// job id among them, in order, separated by spaces: "STATUS/ATTEMPTS" for a
// status event, "chunk/ATTEMPT.INDEX:DATA" for a chunk. Checks that the
// events' seq goes up by one across all jobs' events. The text is valid
// until the next call.
const char *testpeer_events (testpeer_t *self, const char *id);

// testpeer_expect_events checks that testpeer_events (self, id) is
// expected.
void testpeer_expect_events (testpeer_t *self, const char *id, const char *expected);

// testpeer_run runs loop for about ms.
void testpeer_run (evloop_t *loop, int64_t ms);

// testpeer_test runs the self-test.
void testpeer_test (bool verbose);

#endif
