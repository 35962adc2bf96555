// outbox — answers and events held until the commit.
#include "outbox.h"
#include "clock.h"
#include "log.h"
#include "mem.h"
#include "proto.h"
#include "testpeer.h"

#include <assert.h>
#include <errno.h>
#include <string.h>

typedef enum {
    KEPT_SUBMIT_OK,             // a SUBMIT_OK
    KEPT_JOB,                   // a JOB answer, rendered at the flush
    KEPT_EVENT,                 // a status event
    KEPT_CHUNK,                 // a chunk event
    KEPT_DROPPED                // a refused submission's: nothing to send
} kept_kind_t;

// An answer or event that may leave only after the job's version is
// committed.
typedef struct {
    kept_kind_t kind;           // what to send
    zframe_t *identity;         // the gateway's routing id (answers)
    int64_t corr;               // the gateway's correlation id (answers)
    char id[JOB_ID_LEN + 1];    // the job
    job_status_t status;        // event status, SUBMIT_OK status
    int attempts;               // event attempts; chunk: the attempt's identity
    int64_t attempt;            // event: the attempt's identity (attempt_seq)
    int64_t created_at;         // SUBMIT_OK created_at
    bool duplicate;             // SUBMIT_OK of a resubmission
    bool tallied;               // event: counts in the throughput (client work)
    bool with_chunks;           // JOB: add the running attempt's chunks
    char *tenant;               // JOB: the asking tenant; event: the job's, when it carries
                                // the record (owned)
    int64_t index;              // chunk index
    char *data;                 // chunk data (owned)
} kept_t;

struct _outbox_t {
    zsock_t *frontend;          // ROUTER to gateways (borrowed)
    proto_batch_t *replies;     // answers to one gateway, one message
    proto_batch_t *events;      // events, one message
    zframe_t *no_topic;         // the events' (empty) PUB topic
    outbox_job_fn *job_fn;      // renders JOB answers
    void *job_arg;              // its argument
    kept_t *kept;               // what waits for the commit, in order
    size_t kept_count;          // used entries
    size_t kept_size;           // allocated entries
    uint64_t seq;               // last event sequence number
    int64_t epoch;              // wall ms of this run's start
    throughput_t *throughput;   // what the flushes count (borrowed), or NULL
    int64_t flush_wall_ms;      // wall time of the flush under way
};

outbox_t *
outbox_new (zsock_t *frontend, zsock_t *publisher, int64_t epoch, outbox_job_fn *job_fn,
            void *arg)
{
    outbox_t *self = mem_calloc (1, sizeof *self);
    self->frontend = frontend;
    self->replies = mem_check (proto_batch_new (frontend), 0, __FILE__, __LINE__);
    self->events = mem_check (proto_batch_new (publisher), 0, __FILE__, __LINE__);
    self->no_topic = mem_check (zframe_new_empty (), 0, __FILE__, __LINE__);
    self->job_fn = job_fn;
    self->job_arg = arg;
    self->epoch = epoch;
    return self;
}

// s_kept_free releases what a kept entry owns.
static void
s_kept_free (kept_t *kept)
{
    zframe_destroy (&kept->identity);
    free (kept->data);
    kept->data = NULL;
    free (kept->tenant);
    kept->tenant = NULL;
}

void
outbox_destroy (outbox_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    outbox_t *self = *self_p;
    for (size_t i = 0; i < self->kept_count; i++)
        s_kept_free (&self->kept[i]);
    free (self->kept);
    proto_batch_destroy (&self->replies);
    proto_batch_destroy (&self->events);
    zframe_destroy (&self->no_topic);
    free (self);
    *self_p = NULL;
}

// s_keep appends an entry for job id (the array grows by doubling: no
// allocation per message once warm).
static kept_t *
s_keep (outbox_t *self, kept_kind_t kind, const char *id)
{
    if (self->kept_count == self->kept_size) {
        self->kept_size = self->kept_size ? self->kept_size * 2 : 256;
        self->kept = mem_realloc (self->kept, self->kept_size * sizeof *self->kept);
    }
    kept_t *kept = &self->kept[self->kept_count++];
    memset (kept, 0, sizeof *kept);
    kept->kind = kind;
    memcpy (kept->id, id, JOB_ID_LEN);
    kept->id[JOB_ID_LEN] = '\0';
    return kept;
}

void
outbox_submit_ok (outbox_t *self, zframe_t *identity, int64_t corr, const char *id,
                  job_status_t status, int64_t created_at, bool duplicate)
{
    kept_t *kept = s_keep (self, KEPT_SUBMIT_OK, id);
    kept->identity = zframe_dup (identity);
    kept->corr = corr;
    kept->status = status;
    kept->created_at = created_at;
    kept->duplicate = duplicate;
}

void
outbox_job (outbox_t *self, zframe_t *identity, int64_t corr, const char *id, const char *tenant,
            bool with_chunks)
{
    kept_t *kept = s_keep (self, KEPT_JOB, id);
    kept->identity = zframe_dup (identity);
    kept->corr = corr;
    kept->tenant = mem_strdup (tenant);
    kept->with_chunks = with_chunks;
}

void
outbox_set_throughput (outbox_t *self, throughput_t *throughput)
{
    self->throughput = throughput;
}

void
outbox_event (outbox_t *self, const char *id, job_status_t status, int attempts, int64_t attempt,
              bool tallied, const char *record_tenant)
{
    kept_t *kept = s_keep (self, KEPT_EVENT, id);
    kept->status = status;
    kept->attempts = attempts;
    kept->attempt = attempt;
    kept->tallied = tallied;
    kept->tenant = record_tenant ? mem_strdup (record_tenant) : NULL;
}

void
outbox_chunk (outbox_t *self, const char *id, int attempt, int64_t index, const char *data,
              size_t size)
{
    kept_t *kept = s_keep (self, KEPT_CHUNK, id);
    kept->attempts = attempt;
    kept->index = index;
    kept->data = mem_strndup (data, size);
}

// s_error_body writes an ERROR's fields into body.
static void
s_error_body (pack_writer_t *body, int64_t corr, int code, const char *message)
{
    pack_put_int (body, "corr", corr);
    pack_put_int (body, "code", code);
    pack_put_str (body, "message", message);
}

void
outbox_refuse (outbox_t *self, zframe_t *identity, int64_t corr, int code, const char *message,
               int64_t retry_after_ms)
{
    pack_writer_t *body = pack_writer_new ();
    s_error_body (body, corr, code, message);
    if (retry_after_ms > 0)
        pack_put_int (body, "retry_after_ms", retry_after_ms);
    if (proto_send (self->frontend, identity, PROTO_ERROR, body) < 0)
        log_warn (NULL, "cannot answer gateway: %s", zmq_strerror (errno));
    pack_writer_destroy (&body);
}

void
outbox_refuse_submissions (outbox_t *self, outbox_refused_fn *refused, void *arg,
                           const char *message, int64_t retry_after_ms)
{
    zhashx_t *dropped = zhashx_new ();
    for (size_t i = 0; i < self->kept_count; i++) {
        kept_t *kept = &self->kept[i];
        if (kept->kind != KEPT_SUBMIT_OK)
            continue;
        if (refused (kept->id, arg))
            zhashx_insert (dropped, kept->id, (void *) "");
        // A resubmission of a refused job in the same batch is refused too.
        if (zhashx_lookup (dropped, kept->id)) {
            outbox_refuse (self, kept->identity, kept->corr, 503, message, retry_after_ms);
            kept->kind = KEPT_DROPPED;
        }
    }
    for (size_t i = 0; i < self->kept_count && zhashx_size (dropped) > 0; i++)
        if (zhashx_lookup (dropped, self->kept[i].id))
            self->kept[i].kind = KEPT_DROPPED;
    zhashx_destroy (&dropped);
}

// s_reply adds an answer to the gateway at identity to the replies batch:
// answers to the same gateway, in order, leave as one message.
static void
s_reply (outbox_t *self, zframe_t *identity, proto_cmd_t cmd, pack_writer_t *body)
{
    if (proto_batch_add (self->replies, identity, cmd, body) < 0)
        log_warn (NULL, "gateway gone: replies dropped");
}

// s_publish adds an event to the events batch, under the empty topic
// (subscribers take them all: the job id is in each body, §3.3).
static void
s_publish (outbox_t *self, pack_writer_t *body)
{
    if (proto_batch_add (self->events, self->no_topic, PROTO_EVENT, body) < 0)
        log_warn (NULL, "events dropped: %s", zmq_strerror (errno));
}

// s_put_record adds the committed record of an event's job (bin, as a JOB
// answer's body) to the event: what the job is now, as the store has it.
static void
s_put_record (outbox_t *self, pack_writer_t *body, const kept_t *kept)
{
    pack_writer_t *record = pack_writer_new ();
    if (self->job_fn (kept->id, kept->tenant, false, record, self->job_arg)) {
        size_t size = 0;
        const void *data = pack_writer_data (record, &size);
        pack_put_strn (body, "record", data, size);
    }
    pack_writer_destroy (&record);
}

// s_send sends one kept answer or event.
static void
s_send (outbox_t *self, kept_t *kept)
{
    pack_writer_t *body = pack_writer_new ();
    if (kept->kind == KEPT_CHUNK) {
        pack_put_int (body, "seq", (int64_t) ++self->seq);
        pack_put_int (body, "epoch", self->epoch);
        pack_put_str (body, "id", kept->id);
        pack_put_str (body, "type", "chunk");
        pack_put_int (body, "attempt", kept->attempts);
        pack_put_int (body, "index", kept->index);
        pack_put_str (body, "data", kept->data);
        s_publish (self, body);
    }
    else if (kept->kind == KEPT_EVENT) {
        pack_put_int (body, "seq", (int64_t) ++self->seq);
        pack_put_int (body, "epoch", self->epoch);
        pack_put_str (body, "id", kept->id);
        pack_put_str (body, "type", "status");
        pack_put_str (body, "status", job_status_name (kept->status));
        pack_put_int (body, "attempts", kept->attempts);
        // The attempt's identity, so a stream names the status's event by
        // it without reading the job (SSE ids never repeat across a retry).
        pack_put_int (body, "attempt", kept->attempt);
        if (kept->tenant)
            s_put_record (self, body, kept);
        s_publish (self, body);
        if (kept->tallied && self->throughput)
            throughput_status (self->throughput, kept->status, kept->attempt,
                               self->flush_wall_ms);
    }
    else if (kept->kind == KEPT_SUBMIT_OK) {
        pack_put_int (body, "corr", kept->corr);
        pack_put_str (body, "id", kept->id);
        pack_put_str (body, "status", job_status_name (kept->status));
        pack_put_int (body, "created_at", kept->created_at);
        pack_put_bool (body, "duplicate", kept->duplicate);
        s_reply (self, kept->identity, PROTO_SUBMIT_OK, body);
        if (!kept->duplicate && self->throughput)
            throughput_count (self->throughput, THROUGHPUT_SUBMITTED, self->flush_wall_ms);
    }
    else if (kept->kind == KEPT_JOB) {
        pack_put_int (body, "corr", kept->corr);
        // Defence in depth: the gateway checks the tenant too, but a peer
        // that asks for another tenant's job learns nothing (§3.1).
        if (self->job_fn (kept->id, kept->tenant, kept->with_chunks, body, self->job_arg))
            s_reply (self, kept->identity, PROTO_JOB, body);
        else {
            pack_writer_destroy (&body);
            body = pack_writer_new ();
            s_error_body (body, kept->corr, 404, "no such job");
            s_reply (self, kept->identity, PROTO_ERROR, body);
        }
    }
    pack_writer_destroy (&body);
}

void
outbox_flush (outbox_t *self, outbox_held_fn *held, void *arg)
{
    self->flush_wall_ms = clock_wall_ms ();
    size_t kept_count = 0;
    for (size_t i = 0; i < self->kept_count; i++) {
        kept_t *kept = &self->kept[i];
        if (held && kept->kind != KEPT_DROPPED && held (kept->id, arg)) {
            self->kept[kept_count++] = *kept;
            continue;
        }
        if (kept->kind != KEPT_DROPPED)
            s_send (self, kept);
        s_kept_free (kept);
    }
    self->kept_count = kept_count;
    size_t replies = proto_batch_count (self->replies);
    if (proto_batch_flush (self->replies) < 0)
        log_warn (NULL, "gateway gone: %zu replies dropped", replies);
    if (proto_batch_flush (self->events) < 0)
        log_warn (NULL, "events dropped: %s", zmq_strerror (errno));
}

size_t
outbox_pending (outbox_t *self)
{
    return self->kept_count;
}

// --- self-test ---

#define TEST_ID(c) "0190a000-0000-7000-8000-00000000000" c

// The test's JOB answers: job B exists for tenant "t" only.
static bool
s_test_job (const char *id, const char *tenant, bool with_chunks, pack_writer_t *body, void *arg)
{
    if (strcmp (id, TEST_ID ("b")) != 0 || strcmp (tenant, "t") != 0)
        return false;
    pack_put_str (body, "id", id);
    pack_put_bool (body, "chunks_asked", with_chunks);
    return true;
}

static bool
s_test_held (const char *id, void *arg)
{
    return strcmp (id, arg) == 0;
}

static bool
s_test_refused (const char *id, void *arg)
{
    return strcmp (id, TEST_ID ("d")) == 0;
}

// s_test_answer reads the gateway's next answer: its command, and its code
// (ERROR) or id.
static proto_cmd_t
s_test_answer (testpeer_t *gateway, int64_t corr, char *what, size_t what_size)
{
    proto_msg_t *msg = testpeer_take (gateway);
    assert (msg);
    int64_t got = -1, code = 0;
    assert (pack_get_int (msg->body, "corr", &got) == 0 && got == corr);
    proto_cmd_t cmd = msg->cmd;
    if (cmd == PROTO_ERROR) {
        assert (pack_get_int (msg->body, "code", &code) == 0);
        int64_t retry_after = 0;
        pack_get_int (msg->body, "retry_after_ms", &retry_after);
        snprintf (what, what_size, "%lld/%lld", (long long) code, (long long) retry_after);
    }
    else {
        char *id = pack_get_strdup (msg->body, "id");
        snprintf (what, what_size, "%s", id ? id : "-");
        free (id);
    }
    proto_msg_destroy (&msg);
    return cmd;
}

void
outbox_test (bool verbose)
{
    if (verbose)
        printf (" * outbox: ");
    zsock_t *frontend = zsock_new_router ("inproc://outbox-test-front");
    zsock_t *publisher = zsock_new (ZMQ_PAIR);
    assert (frontend && publisher && zsock_bind (publisher, "inproc://outbox-test-pub") == 0);
    zsock_set_router_mandatory (frontend, 1);
    testpeer_t *gateway = testpeer_new (ZMQ_DEALER, "inproc://outbox-test-front");
    testpeer_t *subscriber = testpeer_new (ZMQ_PAIR, "inproc://outbox-test-pub");
    zframe_t *identity = testpeer_hello (gateway, frontend);
    outbox_t *outbox = outbox_new (frontend, publisher, 42, s_test_job, NULL);
    throughput_t *throughput = throughput_new ();
    outbox_set_throughput (outbox, throughput);

    // Nothing leaves before the flush; after a partial commit, what
    // concerns a job still waiting (a) stays, in order.
    outbox_submit_ok (outbox, identity, 1, TEST_ID ("a"), JOB_QUEUED, 7, false);
    outbox_event (outbox, TEST_ID ("a"), JOB_QUEUED, 0, 0, true, NULL);
    outbox_job (outbox, identity, 2, TEST_ID ("b"), "t", true);
    outbox_job (outbox, identity, 3, TEST_ID ("b"), "u", false);
    outbox_chunk (outbox, TEST_ID ("a"), 1, 0, "tok\0en", 3);
    outbox_event (outbox, TEST_ID ("b"), JOB_RUNNING, 1, 1, true, NULL);
    assert (outbox_pending (outbox) == 6);
    assert (!testpeer_take (gateway) && !testpeer_take (subscriber));
    outbox_flush (outbox, s_test_held, TEST_ID ("a"));
    assert (outbox_pending (outbox) == 3);
    char what[64];
    assert (s_test_answer (gateway, 2, what, sizeof what) == PROTO_JOB
            && strcmp (what, TEST_ID ("b")) == 0);
    // Another tenant's job: 404, nothing else.
    assert (s_test_answer (gateway, 3, what, sizeof what) == PROTO_ERROR
            && strcmp (what, "404/0") == 0);
    assert (!testpeer_take (gateway));
    testpeer_expect_events (subscriber, TEST_ID ("b"), "running/1");
    // What left is counted, what waits is not yet.
    assert (throughput_total (throughput, THROUGHPUT_STARTED, clock_wall_ms ()) == 1);
    assert (throughput_total (throughput, THROUGHPUT_SUBMITTED, clock_wall_ms ()) == 0);
    // The whole commit: a's answer and events, seq going on.
    outbox_flush (outbox, NULL, NULL);
    assert (outbox_pending (outbox) == 0);
    assert (s_test_answer (gateway, 1, what, sizeof what) == PROTO_SUBMIT_OK
            && strcmp (what, TEST_ID ("a")) == 0);
    testpeer_expect_events (subscriber, TEST_ID ("a"), "queued/0 chunk/1.0:tok");
    assert (throughput_total (throughput, THROUGHPUT_SUBMITTED, clock_wall_ms ()) == 1);

    // A failed commit: d's submissions (one a resubmission) are refused at
    // once, everything about d is dropped; e's stays.
    outbox_submit_ok (outbox, identity, 4, TEST_ID ("d"), JOB_QUEUED, 7, false);
    outbox_event (outbox, TEST_ID ("d"), JOB_QUEUED, 0, 0, true, NULL);
    outbox_submit_ok (outbox, identity, 5, TEST_ID ("e"), JOB_QUEUED, 7, false);
    outbox_job (outbox, identity, 6, TEST_ID ("d"), "t", false);
    outbox_submit_ok (outbox, identity, 7, TEST_ID ("d"), JOB_QUEUED, 7, true);
    outbox_refuse_submissions (outbox, s_test_refused, NULL, "the store cannot write", 5000);
    assert (s_test_answer (gateway, 4, what, sizeof what) == PROTO_ERROR
            && strcmp (what, "503/5000") == 0);
    assert (s_test_answer (gateway, 7, what, sizeof what) == PROTO_ERROR
            && strcmp (what, "503/5000") == 0);
    assert (!testpeer_take (gateway));
    outbox_flush (outbox, NULL, NULL);
    assert (s_test_answer (gateway, 5, what, sizeof what) == PROTO_SUBMIT_OK
            && strcmp (what, TEST_ID ("e")) == 0);
    assert (!testpeer_take (gateway));
    testpeer_expect_events (subscriber, TEST_ID ("d"), "");
    // e is counted; neither refused d nor its resubmission is.
    assert (throughput_total (throughput, THROUGHPUT_SUBMITTED, clock_wall_ms ()) == 2);

    // A client job's finish is counted, a webhook delivery's (not tallied)
    // is not.
    outbox_event (outbox, TEST_ID ("g"), JOB_SUCCEEDED, 1, 1, true, NULL);
    outbox_event (outbox, TEST_ID ("h"), JOB_FAILED, 1, 1, false, NULL);
    outbox_flush (outbox, NULL, NULL);
    testpeer_expect_events (subscriber, TEST_ID ("g"), "succeeded/1");

    // An event that carries its job's record has it as the store renders
    // it (job B for its tenant); one whose record is not found has none.
    outbox_event (outbox, TEST_ID ("b"), JOB_SUCCEEDED, 1, 1, false, "t");
    outbox_event (outbox, TEST_ID ("b"), JOB_SUCCEEDED, 1, 1, false, "u");
    outbox_event (outbox, TEST_ID ("b"), JOB_SUCCEEDED, 1, 1, false, NULL);
    outbox_flush (outbox, NULL, NULL);
    for (int i = 0; i < 3; i++) {
        proto_msg_t *event = testpeer_take (subscriber);
        assert (event);
        size_t size = 0;
        const char *data = pack_get_str (event->body, "record", &size);
        assert ((data != NULL) == (i == 0));
        if (data) {
            pack_reader_t *record = pack_reader_new (data, size);
            size_t id_len = 0;
            const char *id = record ? pack_get_str (record, "id", &id_len) : NULL;
            bool chunks = true;
            assert (id && id_len == JOB_ID_LEN && memcmp (id, TEST_ID ("b"), JOB_ID_LEN) == 0);
            assert (pack_get_bool (record, "chunks_asked", &chunks) == 0 && !chunks);
            pack_reader_destroy (&record);
        }
        proto_msg_destroy (&event);
    }
    assert (throughput_total (throughput, THROUGHPUT_SUCCEEDED, clock_wall_ms ()) == 1);
    assert (throughput_total (throughput, THROUGHPUT_FAILED, clock_wall_ms ()) == 0);

    // An ERROR leaves at once; what is kept is dropped with the outbox.
    outbox_event (outbox, TEST_ID ("f"), JOB_QUEUED, 0, 0, true, NULL);
    outbox_job (outbox, identity, 8, TEST_ID ("f"), "t", false);
    outbox_refuse (outbox, identity, 9, 429, "over quota", 1000);
    assert (s_test_answer (gateway, 9, what, sizeof what) == PROTO_ERROR
            && strcmp (what, "429/1000") == 0);
    outbox_destroy (&outbox);
    outbox_destroy (&outbox);
    throughput_destroy (&throughput);
    assert (!testpeer_take (gateway) && !testpeer_take (subscriber));

    zframe_destroy (&identity);
    testpeer_destroy (&gateway);
    testpeer_destroy (&subscriber);
    zsock_destroy (&frontend);
    zsock_destroy (&publisher);
    if (verbose)
        printf ("OK\n");
}
