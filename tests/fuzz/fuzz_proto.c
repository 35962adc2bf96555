// fuzz_proto — libFuzzer target: any bytes as a JGP/1 message (docs/protocol.md).
//
// The input is cut into frames, each a 2-byte big-endian length then that
// many bytes (the last frame takes what is left), so the fuzzer controls the
// frame count as well as the contents. The message is decoded with and
// without an envelope, and every decoded body is read the way the broker,
// workers and gateways read them: by field, and as a job record.
#include "job.h"
#include "proto.h"

#include <stdint.h>
#include <stdlib.h>

// s_msg_from builds a message from the framed input.
static zmsg_t *
s_msg_from (const uint8_t *data, size_t size)
{
    zmsg_t *msg = zmsg_new ();
    size_t at = 0;
    // Bounded: a batch may have many frames, but 16 reach every decoder path.
    while (at < size && zmsg_size (msg) < 16) {
        size_t len = data[at++];
        if (at < size)
            len = (len << 8) | data[at++];
        if (len > size - at)
            len = size - at;
        zmsg_addmem (msg, data + at, len);
        at += len;
    }
    return msg;
}

// s_touch reads the fields every peer looks for, and the body as a job.
static void
s_touch (proto_msg_t *msg)
{
    static const char *const keys[] = {
        "id", "corr", "kind", "spec", "status", "error", "result", "tenant",
        "credit", "attempt", "seq", "epoch", "ids", "workers", "provider", NULL
    };
    for (int i = 0; keys[i]; i++) {
        size_t len;
        int64_t number;
        bool flag;
        (void) pack_get_str (msg->body, keys[i], &len);
        (void) pack_get_int (msg->body, keys[i], &number);
        (void) pack_get_bool (msg->body, keys[i], &flag);
        const msgpack_object_array *array = pack_get_array (msg->body, keys[i]);
        for (uint32_t j = 0; array && j < array->size; j++)
            (void) array->ptr[j].type;
        free (pack_get_strdup (msg->body, keys[i]));
    }
    (void) proto_cmd_name (msg->cmd);
    job_t *job = job_unpack (msg->body);
    if (job) {
        // A record that unpacks must render and copy without trouble.
        json_t *json = job_to_json (job);
        json_decref (json);
        job_t *copy = job_dup (job);
        job_destroy (&copy);
        job_destroy (&job);
    }
}

// LLVMFuzzerTestOneInput decodes one message both ways.
int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
    for (int envelope = 0; envelope < 2; envelope++) {
        zmsg_t *msg = s_msg_from (data, size);
        const char *error = NULL;
        proto_msg_t *decoded = proto_decode (&msg, envelope == 1, &error);
        // Every body of a batch is read, as the receivers do.
        if (decoded)
            do
                s_touch (decoded);
            while (proto_msg_next (decoded));
        proto_msg_destroy (&decoded);
        zmsg_destroy (&msg);
    }
    return 0;
}
