// batch — one POST /v1/batch: its items in order and their answers.
#include "batch.h"
#include "mem.h"
#include "problem.h"

#include <assert.h>
#include <stdio.h>
#include <string.h>

struct _batch_t {
    size_t count;               // specs in the batch
    batch_item_t *items;        // one per spec; .batch is NULL where not submitted
    json_t *answers;            // the answer per spec, null until known
    size_t waiting;             // submitted items not answered yet
    void *owner;                // the request it answers
};

batch_t *
batch_new (size_t count, void *owner)
{
    assert (count > 0 && count <= BATCH_MAX);
    batch_t *self = mem_calloc (1, sizeof *self);
    self->count = count;
    self->owner = owner;
    self->items = mem_calloc (count, sizeof *self->items);
    self->answers = json_array ();
    for (size_t i = 0; i < count; i++)
        json_array_append_new (self->answers, json_null ());
    return self;
}

void
batch_destroy (batch_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    batch_t *self = *self_p;
    for (size_t i = 0; i < self->count; i++)
        assert (self->items[i].call == 0);
    free (self->items);
    json_decref (self->answers);
    free (self);
    *self_p = NULL;
}

void *
batch_owner (const batch_t *self)
{
    return self->owner;
}

void
batch_refuse (batch_t *self, size_t index, json_t *problem)
{
    assert (index < self->count && !self->items[index].batch);
    json_array_set_new (self->answers, index, json_pack ("{s:o}", "error", problem));
}

batch_item_t *
batch_submit (batch_t *self, size_t index, const char *job_id)
{
    assert (index < self->count && !self->items[index].batch);
    batch_item_t *item = &self->items[index];
    item->batch = self;
    item->index = index;
    snprintf (item->job_id, sizeof item->job_id, "%s", job_id);
    self->waiting++;
    return item;
}

bool
batch_answer (batch_item_t *item, proto_msg_t *msg)
{
    batch_t *self = item->batch;
    if ((msg->cmd != PROTO_SUBMIT_OK && msg->cmd != PROTO_ERROR)
        || !json_is_null (json_array_get (self->answers, item->index)))
        return false;
    json_t *answer;
    if (msg->cmd == PROTO_SUBMIT_OK) {
        // The broker names the job it recorded: the one submitted (or,
        // had it seen the submission before, the original).
        size_t id_len;
        const char *id = pack_get_str (msg->body, "id", &id_len);
        if (id && job_id_valid (id, id_len))
            memcpy (item->job_id, id, JOB_ID_LEN);
        char *status = pack_get_strdup (msg->body, "status");
        answer = json_pack ("{s:s, s:s}", "id", item->job_id, "status", status ? status : "queued");
        free (status);
    }
    else {
        int64_t code = 503;
        pack_get_int (msg->body, "code", &code);
        char *message = pack_get_strdup (msg->body, "message");
        answer = json_pack ("{s:o}", "error",
                            problem_new ((int) code, code == 503 ? "unavailable" : "rejected",
                                         message ? message : "rejected", NULL));
        free (message);
    }
    json_array_set_new (self->answers, item->index, answer);
    return --self->waiting == 0;
}

batch_item_t *
batch_item (batch_t *self, size_t index)
{
    return index < self->count && self->items[index].batch ? &self->items[index] : NULL;
}

size_t
batch_count (const batch_t *self)
{
    return self->count;
}

size_t
batch_waiting (const batch_t *self)
{
    return self->waiting;
}

json_t *
batch_body (batch_t *self)
{
    for (size_t i = 0; i < self->count; i++)
        if (json_is_null (json_array_get (self->answers, i)))
            json_array_set_new (self->answers, i,
                                json_pack ("{s:o}", "error",
                                           problem_new (503, "broker-unavailable",
                                                        "the broker did not acknowledge the job "
                                                        "in time; it was not accepted", NULL)));
    return json_pack ("{s:O}", "jobs", self->answers);
}

// --- self-test ---

// s_test_answer hands item a broker answer: SUBMIT_OK with id and status,
// or ERROR with code and message.
static bool
s_test_answer (batch_item_t *item, proto_cmd_t cmd, const char *id, int64_t code,
               const char *text)
{
    pack_writer_t *writer = pack_writer_new ();
    if (cmd == PROTO_SUBMIT_OK) {
        pack_put_str (writer, "id", id);
        pack_put_str (writer, "status", text);
    }
    else {
        pack_put_int (writer, "code", code);
        pack_put_str (writer, "message", text);
    }
    size_t size;
    const void *data = pack_writer_data (writer, &size);
    proto_msg_t msg = { .cmd = cmd, .body = pack_reader_new (data, size) };
    assert (msg.body);
    bool complete = batch_answer (item, &msg);
    pack_reader_destroy (&msg.body);
    pack_writer_destroy (&writer);
    return complete;
}

// s_test_body checks the batch's body against expected (compact JSON).
static void
s_test_body (batch_t *batch, const char *expected)
{
    json_t *body = batch_body (batch);
    char *text = json_dumps (body, JSON_COMPACT);
    if (strcmp (text, expected) != 0)
        fprintf (stderr, "batch: expected\n%s\ngot\n%s\n", expected, text);
    assert (strcmp (text, expected) == 0);
    free (text);
    json_decref (body);
}

void
batch_test (bool verbose)
{
    if (verbose)
        printf (" * batch: ");
    const char *a = "0190a0b2-1c3d-7e4f-8a5b-6c7d8e9f0a1a";
    const char *b = "0190a0b2-1c3d-7e4f-8a5b-6c7d8e9f0a1b";
    const char *original = "0190a0b2-1c3d-7e4f-8a5b-6c7d8e9f0a00";
    // Four specs: one invalid, three submitted; answered out of order.
    int owner;
    batch_t *batch = batch_new (4, &owner);
    assert (batch_owner (batch) == &owner);
    batch_refuse (batch, 1, json_pack ("{s:s}", "title", "Bad Request"));
    batch_item_t *first = batch_submit (batch, 0, a);
    batch_item_t *third = batch_submit (batch, 2, b);
    batch_item_t *fourth = batch_submit (batch, 3, b);
    assert (batch_count (batch) == 4 && batch_waiting (batch) == 3);
    assert (batch_item (batch, 0) == first && batch_item (batch, 1) == NULL);
    assert (!s_test_answer (third, PROTO_ERROR, NULL, 429, "over quota"));
    // A command that answers no SUBMIT, and a second answer, change nothing.
    assert (!s_test_answer (third, PROTO_SUBMIT_OK, a, 0, "queued"));
    assert (!s_test_answer (fourth, PROTO_JOB, a, 0, "queued") && batch_waiting (batch) == 2);
    assert (!s_test_answer (fourth, PROTO_SUBMIT_OK, original, 0, "running"));
    assert (s_test_answer (first, PROTO_SUBMIT_OK, a, 0, "queued"));
    assert (batch_waiting (batch) == 0 && strcmp (fourth->job_id, original) == 0);
    s_test_body (batch,
                 "{\"jobs\":[{\"id\":\"0190a0b2-1c3d-7e4f-8a5b-6c7d8e9f0a1a\",\"status\":\"queued\"},"
                 "{\"error\":{\"title\":\"Bad Request\"}},"
                 "{\"error\":{\"type\":\"/problems/rejected\",\"title\":\"Too Many Requests\","
                 "\"status\":429,\"detail\":\"over quota\"}},"
                 "{\"id\":\"0190a0b2-1c3d-7e4f-8a5b-6c7d8e9f0a00\",\"status\":\"running\"}]}");
    batch_destroy (&batch);
    batch_destroy (&batch);

    // The deadline: what the broker has not acknowledged was not accepted.
    batch = batch_new (2, NULL);
    first = batch_submit (batch, 0, a);
    batch_submit (batch, 1, b);
    assert (!s_test_answer (first, PROTO_ERROR, NULL, 503, "the store is full"));
    s_test_body (batch,
                 "{\"jobs\":[{\"error\":{\"type\":\"/problems/unavailable\",\"title\":\"Service Unavailable\","
                 "\"status\":503,\"detail\":\"the store is full\"}},"
                 "{\"error\":{\"type\":\"/problems/broker-unavailable\",\"title\":\"Service Unavailable\","
                 "\"status\":503,\"detail\":\"the broker did not acknowledge the job in time; "
                 "it was not accepted\"}}]}");
    batch_destroy (&batch);
    if (verbose)
        printf ("OK\n");
}
