// sse — one event stream of a job: dedup, resumption, a bounded buffer.
#include "sse.h"
#include "headers.h"
#include "mem.h"

#include <assert.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct _sse_t {
    size_t cap;                 // the most bytes buffered (but for forced events)
    char *buffer;               // events not yet read
    size_t length;              // bytes in buffer
    size_t offset;              // bytes of it already read
    size_t capacity;            // bytes allocated
    int64_t chunk_attempt;      // attempt identity of the last chunk the client has
    int64_t chunk_index;        // its index, -1 = none of that attempt
    char status[16];            // the last status the client has, "" = none
    int64_t status_attempt;     // the attempt identity it came with
    bool stale;                 // live chunks skipped until the next read of the job
    bool ended;                 // nothing more goes in
    jobtext_t *result;          // the result event's data, read after the buffer
    size_t result_offset;       // bytes of it read (+2 for the event's end)
};

sse_t *
sse_new (size_t buffer_bytes)
{
    sse_t *self = mem_calloc (1, sizeof *self);
    self->cap = buffer_bytes;
    self->chunk_index = -1;
    return self;
}

void
sse_destroy (sse_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    sse_t *self = *self_p;
    free (self->buffer);
    jobtext_unref (&self->result);
    free (self);
    *self_p = NULL;
}

void
sse_resume_after (sse_t *self, const char *last_event_id)
{
    headers_event_id_t last;
    if (headers_last_event_id (last_event_id, &last) < 0)
        return;
    if (last.kind == 'c') {
        self->chunk_attempt = last.attempt;
        self->chunk_index = last.index;
    }
    else {
        snprintf (self->status, sizeof self->status, "%s", last.status);
        self->status_attempt = last.attempt;
    }
}

// s_append buffers one event (or a comment when event is NULL) and returns
// true; false (nothing buffered) when it would take the buffer over its cap
// and force is not set.
static bool
s_append (sse_t *self, const char *id, const char *event, const char *data, bool force)
{
    char head[160];
    int head_len = event ? snprintf (head, sizeof head, "id: %s\nevent: %s\ndata: ", id, event)
                         : snprintf (head, sizeof head, ": %s\n\n", data);
    size_t data_len = event && data ? strlen (data) + 2 : 0;
    size_t need = self->length + (size_t) head_len + data_len;
    if (need > self->cap && !force)
        return false;
    if (need > self->capacity) {
        size_t capacity = self->capacity ? self->capacity : 1024;
        while (capacity < need)
            capacity *= 2;
        self->buffer = mem_realloc (self->buffer, capacity);
        self->capacity = capacity;
    }
    memcpy (self->buffer + self->length, head, (size_t) head_len);
    self->length += (size_t) head_len;
    if (data_len) {
        memcpy (self->buffer + self->length, data, data_len - 2);
        memcpy (self->buffer + self->length + data_len - 2, "\n\n", 2);
        self->length += data_len;
    }
    return true;
}

// s_status buffers a status event unless the client has it already.
static void
s_status (sse_t *self, const char *status, int attempts, int64_t attempt)
{
    if (strcmp (self->status, status) == 0 && self->status_attempt == attempt)
        return;
    snprintf (self->status, sizeof self->status, "%s", status);
    self->status_attempt = attempt;
    char id[48], data[96];
    snprintf (id, sizeof id, "s%" PRId64 ".%s", attempt, status);
    snprintf (data, sizeof data, "{\"status\":\"%s\",\"attempts\":%d}", status, attempts);
    s_append (self, id, "status", data, true);
}

// s_chunk buffers a chunk unless the client has it already; one that does
// not fit is held back with every one after it (the stream goes stale).
static sse_chunk_t
s_chunk (sse_t *self, int64_t attempt, int64_t index, const char *text, size_t len)
{
    if (attempt < self->chunk_attempt
        || (attempt == self->chunk_attempt && index <= self->chunk_index))
        return SSE_CHUNK_SKIPPED;
    json_t *data = json_pack ("{s:I, s:I, s:s%}", "attempt", (json_int_t) attempt, "index",
                              (json_int_t) index, "data", text, len);
    // NULL: not UTF-8 text, never sendable as JSON: skipped for good.
    char *json = data ? json_dumps (data, JSON_COMPACT) : NULL;
    json_decref (data);
    char id[48];
    snprintf (id, sizeof id, "c%" PRId64 ".%" PRId64, attempt, index);
    sse_chunk_t outcome = SSE_CHUNK_SENT;
    if (json && !s_append (self, id, "chunk", json, self->length == self->offset)) {
        outcome = self->stale ? SSE_CHUNK_SKIPPED : SSE_CHUNK_HELD_BACK;
        self->stale = true;
    }
    else {
        if (attempt > self->chunk_attempt)
            self->chunk_index = -1;
        self->chunk_attempt = attempt;
        self->chunk_index = index;
        if (!json)
            outcome = SSE_CHUNK_SKIPPED;
    }
    free (json);
    return outcome;
}

sse_chunk_t
sse_job (sse_t *self, const job_t *job, const char *chunks, size_t size, jobtext_t *rendered)
{
    if (self->ended)
        return SSE_CHUNK_SENT;
    s_status (self, job_status_name (job->status), job->attempts, job->attempt_seq);
    self->stale = false;
    while (chunks && size >= 8 && !self->stale) {
        uint32_t header[2];
        memcpy (header, chunks, 8);
        if (header[1] > size - 8)
            break;
        // Replayed chunks are those of the record's latest attempt.
        s_chunk (self, job->attempt_seq, header[0], chunks + 8, header[1]);
        chunks += 8 + header[1];
        size -= 8 + header[1];
    }
    bool held_back = self->stale;
    if (job_status_terminal (job->status) && rendered) {
        // The result supersedes any chunk held back.
        s_append (self, "r", "result", NULL, true);
        self->result = jobtext_ref (rendered);
        self->ended = true;
        self->stale = false;
    }
    return held_back ? SSE_CHUNK_HELD_BACK : SSE_CHUNK_SENT;
}

sse_chunk_t
sse_chunk (sse_t *self, int64_t attempt, int64_t index, const char *data, size_t len)
{
    if (self->ended || self->stale)
        return SSE_CHUNK_SKIPPED;
    return s_chunk (self, attempt, index, data, len);
}

void
sse_status (sse_t *self, job_status_t status, int attempts, int64_t attempt)
{
    if (self->ended || self->stale || job_status_terminal (status))
        return;
    s_status (self, job_status_name (status), attempts, attempt);
}

void
sse_set_stale (sse_t *self)
{
    if (!self->ended)
        self->stale = true;
}

void
sse_comment (sse_t *self, const char *text)
{
    if (!self->ended)
        s_append (self, NULL, NULL, text, false);
}

void
sse_end (sse_t *self)
{
    self->ended = true;
}

size_t
sse_read (sse_t *self, char *buf, size_t max)
{
    if (self->offset < self->length) {
        size_t n = self->length - self->offset;
        if (n > max)
            n = max;
        memcpy (buf, self->buffer + self->offset, n);
        self->offset += n;
        if (self->offset == self->length)
            self->offset = self->length = 0;
        return n;
    }
    if (!self->result)
        return 0;
    size_t size = jobtext_size (self->result);
    size_t at = self->result_offset;
    size_t n = 0;
    if (at < size) {
        // A rendered job is compact JSON: a CR or LF in it can only be
        // whitespace between tokens, and must not end the data line.
        const char *text = jobtext_data (self->result) + at;
        n = size - at < max ? size - at : max;
        for (size_t i = 0; i < n; i++)
            buf[i] = text[i] == '\n' || text[i] == '\r' ? ' ' : text[i];
    }
    else if (at < size + 2) {
        n = size + 2 - at < max ? size + 2 - at : max;
        memcpy (buf, &"\n\n"[at - size], n);
    }
    self->result_offset += n;
    return n;
}

bool
sse_over (const sse_t *self)
{
    return self->ended && self->offset == self->length
           && (!self->result || self->result_offset >= jobtext_size (self->result) + 2);
}

bool
sse_ended (const sse_t *self)
{
    return self->ended;
}

bool
sse_stale (const sse_t *self)
{
    return self->stale;
}

// --- self-test ---

// s_test_take reads everything the stream has now, in reads of at most
// step bytes, into a new string (caller frees).
static char *
s_test_take (sse_t *sse, size_t step)
{
    char *text = mem_alloc (1);
    size_t len = 0;
    char buf[64];
    size_t n;
    while ((n = sse_read (sse, buf, step < sizeof buf ? step : sizeof buf)) > 0) {
        text = mem_realloc (text, len + n + 1);
        memcpy (text + len, buf, n);
        len += n;
    }
    text[len] = '\0';
    return text;
}

// s_test_expect checks that the stream hands over exactly expected now.
static void
s_test_expect (sse_t *sse, const char *expected)
{
    char *got = s_test_take (sse, 7);
    if (strcmp (got, expected) != 0)
        fprintf (stderr, "sse: expected\n%s\ngot\n%s\n", expected, got);
    assert (strcmp (got, expected) == 0);
    free (got);
}

// s_test_job makes a record in a state.
static job_t *
s_test_job (job_status_t status, int attempts, int64_t attempt_seq)
{
    job_t *job = job_new ();
    job->status = status;
    job->attempts = attempts;
    job->attempt_seq = attempt_seq;
    return job;
}

// s_test_chunks packs chunks "a", "b", … with indexes from first.
static size_t
s_test_chunks (char *out, uint32_t first, const char *const *texts, size_t count)
{
    size_t size = 0;
    for (size_t i = 0; i < count; i++) {
        uint32_t header[2] = { first + (uint32_t) i, (uint32_t) strlen (texts[i]) };
        memcpy (out + size, header, 8);
        memcpy (out + size + 8, texts[i], header[1]);
        size += 8 + header[1];
    }
    return size;
}

void
sse_test (bool verbose)
{
    if (verbose)
        printf (" * sse: ");
    char chunks[256];
    static const char *const tokens[] = { "He", "llo", " wor", "ld" };

    // A first run: queued, running with chunks (live and replayed: each
    // once, in order), failed with its result.
    sse_t *sse = sse_new (4096);
    job_t *job = s_test_job (JOB_QUEUED, 0, 0);
    assert (sse_job (sse, job, NULL, 0, NULL) == SSE_CHUNK_SENT);
    s_test_expect (sse, "id: s0.queued\nevent: status\ndata: {\"status\":\"queued\",\"attempts\":0}\n\n");
    assert (sse_read (sse, chunks, sizeof chunks) == 0 && !sse_over (sse));
    sse_set_stale (sse);        // "running" came: read the job before going on live
    assert (sse_chunk (sse, 1, 0, "He", 2) == SSE_CHUNK_SKIPPED);
    job_destroy (&job);
    job = s_test_job (JOB_RUNNING, 1, 1);
    size_t size = s_test_chunks (chunks, 0, tokens, 2);
    assert (sse_job (sse, job, chunks, size, NULL) == SSE_CHUNK_SENT && !sse_stale (sse));
    assert (sse_chunk (sse, 1, 1, "llo", 3) == SSE_CHUNK_SKIPPED);     // had it
    assert (sse_chunk (sse, 1, 2, " wor", 4) == SSE_CHUNK_SENT);
    assert (sse_chunk (sse, 1, 3, "\xff", 1) == SSE_CHUNK_SKIPPED);    // not text
    s_test_expect (sse, "id: s1.running\nevent: status\ndata: {\"status\":\"running\",\"attempts\":1}\n\n"
                        "id: c1.0\nevent: chunk\ndata: {\"attempt\":1,\"index\":0,\"data\":\"He\"}\n\n"
                        "id: c1.1\nevent: chunk\ndata: {\"attempt\":1,\"index\":1,\"data\":\"llo\"}\n\n"
                        "id: c1.2\nevent: chunk\ndata: {\"attempt\":1,\"index\":2,\"data\":\" wor\"}\n\n");
    sse_comment (sse, "keep-alive");
    s_test_expect (sse, ": keep-alive\n\n");
    job_destroy (&job);
    job = s_test_job (JOB_FAILED, 1, 1);
    const char *object = "{\"id\":\"j\",\n\"status\":\"failed\"}";
    jobtext_t *rendered = jobtext_new (mem_strdup (object), strlen (object));
    sse_job (sse, job, NULL, 0, rendered);
    assert (sse_ended (sse) && !sse_over (sse));
    assert (sse_chunk (sse, 1, 4, "x", 1) == SSE_CHUNK_SKIPPED);
    sse_comment (sse, "keep-alive");
    s_test_expect (sse, "id: s1.failed\nevent: status\ndata: {\"status\":\"failed\",\"attempts\":1}\n\n"
                        "id: r\nevent: result\ndata: {\"id\":\"j\", \"status\":\"failed\"}\n\n");
    assert (sse_over (sse));
    sse_destroy (&sse);
    sse_destroy (&sse);
    jobtext_unref (&rendered);

    // Live status events that name their attempt: applied at once, each
    // once; a terminal one waits for the read that brings the result; a
    // stale stream leaves them to that read.
    sse = sse_new (4096);
    sse_status (sse, JOB_QUEUED, 0, 0);
    sse_status (sse, JOB_RUNNING, 1, 7);
    sse_status (sse, JOB_RUNNING, 1, 7);
    sse_status (sse, JOB_SUCCEEDED, 1, 7);
    s_test_expect (sse, "id: s0.queued\nevent: status\ndata: {\"status\":\"queued\",\"attempts\":0}\n\n"
                        "id: s7.running\nevent: status\ndata: {\"status\":\"running\",\"attempts\":1}\n\n");
    sse_set_stale (sse);
    sse_status (sse, JOB_QUEUED, 1, 7);
    assert (sse_read (sse, chunks, sizeof chunks) == 0 && !sse_ended (sse));
    sse_destroy (&sse);

    // After a retry the attempts start again at 0, the attempt identities
    // go on: no id of the second run repeats one of the first, so a client
    // that resumes with the first run's "s1.running" is sent the second's
    // running (a count of attempts in the id would have matched and
    // dropped it).
    sse = sse_new (4096);
    sse_resume_after (sse, "s1.running");
    job_destroy (&job);
    job = s_test_job (JOB_QUEUED, 0, 1);
    sse_job (sse, job, NULL, 0, NULL);
    job_destroy (&job);
    job = s_test_job (JOB_RUNNING, 1, 2);
    sse_job (sse, job, NULL, 0, NULL);
    s_test_expect (sse, "id: s1.queued\nevent: status\ndata: {\"status\":\"queued\",\"attempts\":0}\n\n"
                        "id: s2.running\nevent: status\ndata: {\"status\":\"running\",\"attempts\":1}\n\n");
    sse_destroy (&sse);
    // Resuming after a status of this run sends nothing again; after a
    // chunk, only the chunks after it.
    sse = sse_new (4096);
    sse_resume_after (sse, "s2.running");
    size = s_test_chunks (chunks, 0, tokens, 3);
    sse_job (sse, job, chunks, size, NULL);
    s_test_expect (sse, "id: c2.0\nevent: chunk\ndata: {\"attempt\":2,\"index\":0,\"data\":\"He\"}\n\n"
                        "id: c2.1\nevent: chunk\ndata: {\"attempt\":2,\"index\":1,\"data\":\"llo\"}\n\n"
                        "id: c2.2\nevent: chunk\ndata: {\"attempt\":2,\"index\":2,\"data\":\" wor\"}\n\n");
    sse_destroy (&sse);
    sse = sse_new (4096);
    sse_resume_after (sse, "c2.1");
    sse_job (sse, job, chunks, size, NULL);
    s_test_expect (sse, "id: s2.running\nevent: status\ndata: {\"status\":\"running\",\"attempts\":1}\n\n"
                        "id: c2.2\nevent: chunk\ndata: {\"attempt\":2,\"index\":2,\"data\":\" wor\"}\n\n");
    // Chunks of an older attempt are late: dropped; a newer attempt starts
    // at its own index 0.
    assert (sse_chunk (sse, 1, 9, "old", 3) == SSE_CHUNK_SKIPPED);
    assert (sse_chunk (sse, 3, 0, "new", 3) == SSE_CHUNK_SENT);
    s_test_expect (sse, "id: c3.0\nevent: chunk\ndata: {\"attempt\":3,\"index\":0,\"data\":\"new\"}\n\n");
    sse_destroy (&sse);
    // Ids this stream never writes are ignored: it starts from the top.
    sse = sse_new (4096);
    sse_resume_after (sse, "r");
    sse_resume_after (sse, "x1.2");
    sse_resume_after (sse, NULL);
    sse_job (sse, job, NULL, 0, NULL);
    s_test_expect (sse, "id: s2.running\nevent: status\ndata: {\"status\":\"running\",\"attempts\":1}\n\n");
    sse_destroy (&sse);

    // A slow client: the buffer (here 190 bytes) takes what fits; the rest
    // is held back, in order, until the client has read and the job is read
    // again. A chunk bigger than the buffer goes into an empty one.
    sse = sse_new (190);
    sse_job (sse, job, NULL, 0, NULL);                              // 70 bytes
    assert (sse_chunk (sse, 2, 0, "He", 2) == SSE_CHUNK_SENT);      // + 65
    assert (sse_chunk (sse, 2, 1, "llo", 3) == SSE_CHUNK_HELD_BACK); // + 66: no room
    assert (sse_stale (sse));
    assert (sse_chunk (sse, 2, 2, " wor", 4) == SSE_CHUNK_SKIPPED);
    char comment[64];
    memset (comment, 'k', sizeof comment - 1);
    comment[sizeof comment - 1] = '\0';
    sse_comment (sse, comment);                                     // no room: dropped
    char *first = s_test_take (sse, 64);
    assert (strlen (first) == 135 && strstr (first, "c2.0") && !strstr (first, "c2.1"));
    free (first);
    size = s_test_chunks (chunks, 0, tokens, 4);
    assert (sse_job (sse, job, chunks, size, NULL) == SSE_CHUNK_HELD_BACK);
    s_test_expect (sse, "id: c2.1\nevent: chunk\ndata: {\"attempt\":2,\"index\":1,\"data\":\"llo\"}\n\n"
                        "id: c2.2\nevent: chunk\ndata: {\"attempt\":2,\"index\":2,\"data\":\" wor\"}\n\n");
    assert (sse_job (sse, job, chunks, size, NULL) == SSE_CHUNK_SENT && !sse_stale (sse));
    s_test_expect (sse, "id: c2.3\nevent: chunk\ndata: {\"attempt\":2,\"index\":3,\"data\":\"ld\"}\n\n");
    char big[300];
    memset (big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    assert (sse_chunk (sse, 2, 4, big, strlen (big)) == SSE_CHUNK_SENT);
    char *taken = s_test_take (sse, 64);
    assert (strlen (taken) > 300 && strstr (taken, "c2.4"));
    free (taken);
    // Ended without a result (draining): over once read.
    sse_comment (sse, "bye");
    sse_end (sse);
    assert (!sse_over (sse));
    s_test_expect (sse, ": bye\n\n");
    assert (sse_over (sse));
    sse_destroy (&sse);
    job_destroy (&job);
    if (verbose)
        printf ("OK\n");
}
