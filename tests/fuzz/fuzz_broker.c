// fuzz_broker — libFuzzer target: any sequence of JGP/1 messages sent to a
// broker by gateways and workers (docs/protocol.md §3.1, §3.2).
//
// A broker with a small store runs for the whole fuzzing session, driven one
// loop turn per message (and broker_run_once for a tick). Two gateways and two workers are
// DEALER sockets on inproc endpoints, so replies and DISPATCHes really reach
// them (and are read back and dropped). The input is a series of messages,
// each a 2-byte big-endian length and that many bytes:
//
//   byte 0   which peer sends: bit 0 worker (else gateway), bit 1 the second
//            one; bit 2 run a housekeeping tick after it
//   byte 1   the command, an index into JGP/1's commands
//   rest     the bodies, each a 2-byte length and that many bytes
//
// The protocol version frame is added by the harness: the decoder has its
// own target (fuzz_proto). In this build the broker takes the lease "fuzz"
// for any attempt (FUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION), so results
// reach the code behind the lease check. After every message the broker's
// counts must agree with its lists (broker_consistent).
#include "broker.h"
#include "log.h"
#include "proto.h"

#include <assert.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// A fresh broker every this many inputs, so its state stays small.
#define INPUTS_PER_BROKER 2000

static config_t *s_config;
static evloop_t *s_loop;
static broker_t *s_broker;
static zsock_t *s_peers[4];     // gateway 0, gateway 1, worker 0, worker 1
static long s_inputs;
static long s_brokers;          // brokers started: each binds endpoints of its own
static char s_dir[64];

// s_endpoints names the next broker's endpoints. An inproc endpoint is
// freed when libzmq's reaper thread gets to the closed socket, not when
// zmq_close returns: a new broker binding the same name at once may find
// it still taken.
static void
s_endpoints (void)
{
    static const char *const names[3] = { "front", "back", "pub" };
    char **fields[3] = { &s_config->broker_frontend, &s_config->broker_backend,
                         &s_config->broker_publisher };
    for (int i = 0; i < 3; i++) {
        char endpoint[64];
        snprintf (endpoint, sizeof endpoint, "inproc://fuzz-%s-%ld", names[i], s_brokers);
        free (*fields[i]);
        *fields[i] = strdup (endpoint);
        assert (*fields[i]);
    }
    s_brokers++;
}

// s_start makes the broker and its peers (after the first input: anew).
static void
s_start (void)
{
    if (!s_config) {
        zsys_init ();
        zsys_handler_set (NULL);
        log_init ("fuzz-broker", LOG_ERROR_);
        snprintf (s_dir, sizeof s_dir, "/tmp/jobgate-fuzz-broker-XXXXXX");
        assert (mkdtemp (s_dir));
        char path[128], text[1024];
        snprintf (path, sizeof path, "%s/config.json", s_dir);
        snprintf (text, sizeof text,
                  "{\"broker\":{\"frontend\":\"inproc://fuzz-front\",\"backend\":\"inproc://fuzz-back\","
                  "\"publisher\":\"inproc://fuzz-pub\",\"data_dir\":\"%s/data\",\"durability\":\"os\","
                  "\"store_map_mb\":16,\"result_ttl_s\":1,\"max_queued\":500,"
                  "\"max_result_bytes\":4096,\"max_frame_bytes\":200000},"
                  "\"gateway\":{\"max_body_bytes\":65536},"
                  "\"direct\":{\"max_concurrency\":2},"
                  "\"webhooks\":{\"max_attempts\":2},"
                  "\"quotas\":{\"q\":{\"max_queued\":3,\"max_running\":1,\"max_stored_bytes\":5000,"
                  "\"submit_rate\":100,\"tokens_per_day\":100}},"
                  "\"providers\":{\"p\":{\"base_url\":\"http://127.0.0.1:9\",\"circuit_failures\":2,"
                  "\"circuit_fail_fast\":true,\"max_pause_ms\":50,\"retry_base_ms\":1,"
                  "\"retry_max_ms\":2,\"max_queued\":20,\"tokens_per_minute\":500,"
                  "\"prices\":{\"prompt\":1,\"completion\":2}}}}", s_dir);
        FILE *file = fopen (path, "w");
        assert (file);
        fputs (text, file);
        fclose (file);
        char error[256];
        s_config = config_load (path, error, sizeof error);
        assert (s_config);
        s_loop = evloop_new ();
    }
    char error[256];
    s_endpoints ();
    s_broker = broker_new (s_config, s_loop, error, sizeof error);
    if (!s_broker)
        fprintf (stderr, "fuzz_broker: %s\n", error);
    assert (s_broker);
    static const char *const names[4] = { "g0", "g1", "w0", "w1" };
    for (int i = 0; i < 4; i++) {
        s_peers[i] = zsock_new (ZMQ_DEALER);
        zsock_set_identity (s_peers[i], names[i]);
        zsock_set_rcvtimeo (s_peers[i], 0);
        zsock_set_sndtimeo (s_peers[i], 0);
        assert (zsock_connect (s_peers[i], "%s",
                               i < 2 ? s_config->broker_frontend : s_config->broker_backend) == 0);
    }
}

// s_stop ends the broker and its peers.
static void
s_stop (void)
{
    for (int i = 0; i < 4; i++)
        zsock_destroy (&s_peers[i]);
    broker_destroy (&s_broker);
    char command[128];
    snprintf (command, sizeof command, "rm -rf '%s/data'", s_dir);
    assert (system (command) == 0);
}

// s_drain reads and drops what the broker sent the peers.
static void
s_drain (void)
{
    for (int i = 0; i < 4; i++) {
        zmsg_t *msg;
        while ((msg = zmsg_recv (s_peers[i])) != NULL)
            zmsg_destroy (&msg);
    }
}

static void
s_stop_loop (evloop_t *loop, void *arg)
{
    evloop_stop (loop);
}

// s_next reads a 2-byte length and returns that many bytes (or what is left).
static const uint8_t *
s_next (const uint8_t **data, size_t *size, size_t *len)
{
    if (*size < 2) {
        *len = 0;
        *size = 0;
        return NULL;
    }
    *len = (size_t) (*data)[0] << 8 | (*data)[1];
    *data += 2;
    *size -= 2;
    if (*len > *size)
        *len = *size;
    const uint8_t *start = *data;
    *data += *len;
    *size -= *len;
    return start;
}

// s_check_metrics renders the broker's metrics, whose label values come
// from peers (workers' identities, tenants), and checks every line is a
// comment or one sample: a name, labels whose values hold no raw newline or
// unescaped quote, a number.
static void
s_check_metrics (void)
{
    size_t size;
    char *text = broker_metrics (s_broker, &size);
    assert (text && strlen (text) == size && size > 0 && text[size - 1] == '\n');
    for (char *line = text; *line; line = strchr (line, '\n') + 1) {
        if (*line == '#')
            continue;
        char *at = line;
        while (*at == '_' || *at == ':' || (*at >= 'a' && *at <= 'z') || (*at >= '0' && *at <= '9')
               || (*at >= 'A' && *at <= 'Z'))
            at++;
        assert (at > line);
        if (*at == '{') {
            bool quoted = false;
            for (at++; quoted || *at != '}'; at++) {
                assert (*at && *at != '\n');
                if (*at == '\\' && quoted)
                    at++;
                else if (*at == '"')
                    quoted = !quoted;
            }
            at++;
        }
        assert (*at == ' ');
        char *end;
        strtod (at + 1, &end);
        assert (end > at + 1 && *end == '\n');
    }
    free (text);
}

// LLVMFuzzerTestOneInput sends the input's messages, one broker turn each.
int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
    if (!s_broker)
        s_start ();
    size_t len;
    const uint8_t *message;
    int count = 0;
    while (count++ < 32 && (message = s_next (&data, &size, &len)) != NULL) {
        if (len < 2)
            continue;
        int peer = (message[0] & 1 ? 2 : 0) + (message[0] & 2 ? 1 : 0);
        bool tick = message[0] & 4;
        zmsg_t *msg = zmsg_new ();
        zmsg_addstr (msg, PROTO_VERSION);
        zmsg_addstr (msg, proto_cmd_name ((proto_cmd_t) (message[1] % PROTO_CMD_COUNT_)));
        const uint8_t *bodies = message + 2;
        size_t left = len - 2, body_len;
        const uint8_t *body;
        while (zmsg_size (msg) < 10 && (body = s_next (&bodies, &left, &body_len)) != NULL)
            zmsg_addmem (msg, body, body_len);
        if (zmsg_size (msg) < 3)
            zmsg_addmem (msg, "\x80", 1);   // an empty map: the command alone
        if (zmsg_send (&msg, s_peers[peer]) < 0)
            zmsg_destroy (&msg);
        // One turn of the real loop (the message, due timers, the commit),
        // then what is left on the sockets, and a tick's housekeeping.
        evloop_timer_start (s_loop, 0, s_stop_loop, NULL);
        evloop_run (s_loop);
        broker_run_once (s_broker, tick);
        s_drain ();
        assert (broker_consistent (s_broker));
    }
    s_check_metrics ();
    if (++s_inputs % INPUTS_PER_BROKER == 0) {
        s_stop ();
        s_start ();
    }
    return 0;
}
