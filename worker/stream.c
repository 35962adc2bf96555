// stream — an OpenAI-compatible Chat Completions stream, parsed as it arrives.
#include "stream.h"
#include "jsontext.h"
#include "mem.h"
#include "response.h"
#include "textbuf.h"

#include <assert.h>
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct _stream_t {
    size_t max_bytes;           // cap on the assembled text and on one event
    textbuf_t line;             // the line being read (no terminator)
    textbuf_t event;            // data lines of the event being read, joined by LF
    bool event_has_data;        // the event has at least one data line
    bool after_cr;              // the last byte was CR: a following LF ends nothing
    bool failed;                // over the cap or out of memory: input is ignored
    textbuf_t content;          // every delta's text, joined
    size_t deltas;              // deltas reported
    bool done;                  // [DONE] arrived
    json_t *id;                 // the stream's "id", or NULL
    json_t *model;              // the stream's "model", or NULL
    json_t *finish_reason;      // the last finish_reason seen, or NULL
    json_t *usage;              // the last usage object seen, or NULL
    json_t *error;              // an "error" object sent in the stream, or NULL
};

// s_bytes_add appends len bytes; returns 0, or -1 past max or out of memory.
static int
s_bytes_add (textbuf_t *bytes, const char *data, size_t len, size_t max)
{
    if (len > max || bytes->len > max - len)
        return -1;
    textbuf_add (bytes, data, len);
    return bytes->failed ? -1 : 0;
}

stream_t *
stream_new (size_t max_bytes)
{
    stream_t *self = mem_calloc (1, sizeof *self);
    self->max_bytes = max_bytes;
    return self;
}

void
stream_destroy (stream_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    stream_t *self = *self_p;
    free (self->line.data);
    free (self->event.data);
    free (self->content.data);
    json_decref (self->id);
    json_decref (self->model);
    json_decref (self->finish_reason);
    json_decref (self->usage);
    json_decref (self->error);
    free (self);
    *self_p = NULL;
}

// s_keep replaces *slot with value when value is of the wanted kind.
static void
s_keep (json_t **slot, json_t *value, bool object)
{
    if (!value || (object ? !json_is_object (value) : !json_is_string (value)))
        return;
    json_decref (*slot);
    *slot = json_incref (value);
}

// s_dispatch handles one complete event: [DONE], or a chunk whose delta is
// assembled and reported. Events that are not JSON objects are ignored, as
// the SSE rules ignore what they do not know.
static int
s_dispatch (stream_t *self, stream_delta_fn *fn, void *arg)
{
    const char *data = self->event.data ? self->event.data : "";
    size_t size = self->event.len;
    if (size == 6 && memcmp (data, "[DONE]", 6) == 0) {
        self->done = true;
        return 0;
    }
    // No token delta is this big, and parsing one would stall the loop.
    if (size > STREAM_EVENT_MAX_BYTES
        || jsontext_scan (data, size, JSONTEXT_MAX_DEPTH, STREAM_EVENT_MAX_VALUES).values
               > STREAM_EVENT_MAX_VALUES)
        return -1;
    json_t *chunk = jsontext_load (data, size, NULL);
    if (!json_is_object (chunk)) {
        json_decref (chunk);
        return 0;
    }
    if (!self->id)
        s_keep (&self->id, json_object_get (chunk, "id"), false);
    if (!self->model)
        s_keep (&self->model, json_object_get (chunk, "model"), false);
    s_keep (&self->usage, json_object_get (chunk, "usage"), true);
    s_keep (&self->error, json_object_get (chunk, "error"), true);
    json_t *choice = json_array_get (json_object_get (chunk, "choices"), 0);
    s_keep (&self->finish_reason, json_object_get (choice, "finish_reason"), false);
    json_t *content = json_object_get (json_object_get (choice, "delta"), "content");
    int rc = 0;
    if (json_is_string (content) && json_string_length (content) > 0) {
        const char *text = json_string_value (content);
        size_t len = json_string_length (content);
        rc = s_bytes_add (&self->content, text, len, self->max_bytes);
        if (rc == 0) {
            self->deltas++;
            if (fn)
                fn (arg, text, len);
        }
    }
    json_decref (chunk);
    return rc;
}

// s_line handles one complete line (SSE: field "data", blank = dispatch;
// comments, "event", "id" and "retry" do not matter for a completion).
static int
s_line (stream_t *self, stream_delta_fn *fn, void *arg)
{
    const char *line = self->line.data ? self->line.data : "";
    size_t len = self->line.len;
    int rc = 0;
    if (len == 0) {
        if (self->event_has_data)
            rc = s_dispatch (self, fn, arg);
        self->event.len = 0;
        self->event_has_data = false;
    }
    else if (len >= 5 && memcmp (line, "data", 4) == 0 && line[4] == ':') {
        const char *value = line + 5;
        size_t value_len = len - 5;
        if (value_len > 0 && *value == ' ') {
            value++;
            value_len--;
        }
        if (self->event_has_data)
            rc = s_bytes_add (&self->event, "\n", 1, self->max_bytes);
        if (rc == 0)
            rc = s_bytes_add (&self->event, value, value_len, self->max_bytes);
        self->event_has_data = true;
    }
    else if (len == 4 && memcmp (line, "data", 4) == 0) {
        if (self->event_has_data)
            rc = s_bytes_add (&self->event, "\n", 1, self->max_bytes);
        self->event_has_data = true;
    }
    self->line.len = 0;
    return rc;
}

int
stream_feed (stream_t *self, const char *data, size_t len, stream_delta_fn *fn, void *arg)
{
    if (self->failed)
        return -1;
    size_t start = 0;
    for (size_t i = 0; i < len; i++) {
        char c = data[i];
        if (c != '\r' && c != '\n')
            continue;
        // The end of a line: CR, LF or CRLF, which may straddle two feeds.
        bool second_half = c == '\n' && self->after_cr && i == start && self->line.len == 0;
        self->after_cr = c == '\r';
        if (second_half) {
            start = i + 1;
            continue;
        }
        if (s_bytes_add (&self->line, data + start, i - start, self->max_bytes) < 0
            || s_line (self, fn, arg) < 0) {
            self->failed = true;
            return -1;
        }
        start = i + 1;
    }
    if (start < len) {
        self->after_cr = false;
        if (s_bytes_add (&self->line, data + start, len - start, self->max_bytes) < 0) {
            self->failed = true;
            return -1;
        }
    }
    return 0;
}

size_t
stream_deltas (const stream_t *self)
{
    return self->deltas;
}

bool
stream_done (const stream_t *self)
{
    return self->done;
}

json_t *
stream_summary (const stream_t *self)
{
    json_t *summary = json_object ();
    if (self->model)
        json_object_set (summary, "model", self->model);
    if (self->usage)
        json_object_set (summary, "usage", self->usage);
    return summary;
}

char *
stream_completion (const stream_t *self, size_t cap)
{
    // The assembled text is the one large part, the upstream's size: it is
    // escaped in one pass and spliced in under the memory policy's
    // exception (common/mem.h). The small parts (an event's at most) go
    // through jansson.
    char *content = NULL;
    size_t content_len = 0;
    if (response_json_string (self->content.data ? self->content.data : "", self->content.len,
                              cap, &content, &content_len) != 0)
        return NULL;
    json_t *head = json_pack ("{s:O?, s:s, s:O?}", "id", self->id, "object", "chat.completion",
                              "model", self->model);
    char *head_text = jsontext_dump (head);
    json_decref (head);
    char *finish = self->finish_reason ? jsontext_dump (self->finish_reason) : NULL;
    char *usage = self->usage ? jsontext_dump (self->usage) : NULL;
    char *error = self->error ? jsontext_dump (self->error) : NULL;
    head_text[strlen (head_text) - 1] = '\0';
    // Measured first, so nothing over cap is allocated.
#define COMPLETION_TEXT(buffer, size)                                                            \
    snprintf (buffer, size, "%s,\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\","  \
                            "\"content\":%s},\"finish_reason\":%s}]%s%s%s%s,\"streamed\":true}",     \
              head_text, content, finish ? finish : "null", usage ? ",\"usage\":" : "",         \
              usage ? usage : "", error ? ",\"error\":" : "", error ? error : "")
    int len = COMPLETION_TEXT (NULL, 0);
    char *text = len >= 0 && (size_t) len <= cap ? mem_try_alloc ((size_t) len + 1) : NULL;
    if (text)
        COMPLETION_TEXT (text, (size_t) len + 1);
#undef COMPLETION_TEXT
    free (content);
    free (head_text);
    free (finish);
    free (usage);
    free (error);
    return text;
}

// --- self-test ---

// What the test's delta callback saw.
typedef struct {
    char text[256];             // deltas joined with '|'
    size_t count;               // deltas seen
} s_seen_t;

// s_test_delta records one delta.
static void
s_test_delta (void *arg, const char *text, size_t len)
{
    s_seen_t *seen = arg;
    size_t used = strlen (seen->text);
    snprintf (seen->text + used, sizeof seen->text - used, "%s%.*s", seen->count ? "|" : "",
              (int) len, text);
    seen->count++;
}

void
stream_test (bool verbose)
{
    if (verbose)
        printf (" * stream: ");
    // A stream the way OpenAI sends it, with CRLF and LF line ends mixed,
    // a comment, an event that is not JSON, an empty role-only delta, a
    // multi-byte character and an event split over two data lines.
    const char *wire =
        ": keep-alive\r\n\r\n"
        "data: {\"id\":\"c1\",\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"}}]}\r\n\r\n"
        "data: {\"id\":\"c1\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Echo:\"}}]}\n\n"
        "event: message\r\n"
        "data: {\"id\":\"c1\",\"choices\":[{\"index\":0,\r\n"
        "data: \"delta\":{\"content\":\" caf\xc3\xa9\"}}]}\r\n\r\n"
        "data: not json\n\n"
        "data:{\"choices\":[{\"index\":0,\"delta\":{\"content\":\" \\\"ok\\\"\"}}]}\r\r"
        "data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}],"
        "\"usage\":{\"prompt_tokens\":2,\"completion_tokens\":3,\"total_tokens\":5}}\n\n"
        "data: [DONE]\n\n";
    size_t len = strlen (wire);
    // Every split point, in two feeds, and one byte at a time: the same.
    for (size_t split = 0; split <= len + 1; split++) {
        stream_t *stream = stream_new (1024);
        assert (stream);
        s_seen_t seen = { .count = 0 };
        if (split <= len) {
            assert (stream_feed (stream, wire, split, s_test_delta, &seen) == 0);
            assert (stream_feed (stream, wire + split, len - split, s_test_delta, &seen) == 0);
        }
        else
            for (size_t i = 0; i < len; i++)
                assert (stream_feed (stream, wire + i, 1, s_test_delta, &seen) == 0);
        if (strcmp (seen.text, "Echo:| caf\xc3\xa9| \"ok\"") != 0)
            fprintf (stderr, "stream: split %zu saw [%s]\n", split, seen.text);
        assert (strcmp (seen.text, "Echo:| caf\xc3\xa9| \"ok\"") == 0);
        assert (stream_deltas (stream) == 3 && stream_done (stream));
        char *text = stream_completion (stream, 4096);
        json_t *completion = jsontext_loads (text, NULL);
        assert (completion);
        assert (strcmp (json_string_value (json_object_get (completion, "id")), "c1") == 0);
        assert (strcmp (json_string_value (json_object_get (completion, "model")), "m") == 0);
        assert (strcmp (json_string_value (json_object_get (completion, "object")),
                        "chat.completion") == 0);
        assert (json_is_true (json_object_get (completion, "streamed")));
        json_t *choice = json_array_get (json_object_get (completion, "choices"), 0);
        json_t *message = json_object_get (choice, "message");
        assert (strcmp (json_string_value (json_object_get (message, "content")),
                        "Echo: caf\xc3\xa9 \"ok\"") == 0);
        assert (strcmp (json_string_value (json_object_get (message, "role")), "assistant") == 0);
        assert (strcmp (json_string_value (json_object_get (choice, "finish_reason")), "stop") == 0);
        assert (json_integer_value (json_object_get (json_object_get (completion, "usage"),
                                                     "total_tokens")) == 5);
        json_decref (completion);
        // What the worker reports of the call: the model and the usage.
        json_t *summary = stream_summary (stream);
        assert (strcmp (json_string_value (json_object_get (summary, "model")), "m") == 0);
        assert (json_integer_value (json_object_get (json_object_get (summary, "usage"),
                                                     "prompt_tokens")) == 2);
        json_decref (summary);
        free (text);
        stream_destroy (&stream);
        stream_destroy (&stream);
    }

    // Each allocation the upstream sizes fails in turn (the memory
    // policy's exception, common/mem.h): the stream stops, or the
    // completion is refused; nothing leaks; once none fails, all is there.
    bool whole = false;
    for (long n = 0; n < 200 && !whole; n++) {
        stream_t *stream = stream_new (1024);
        mem_try_fail_after (n);
        int rc = stream_feed (stream, wire, len, NULL, NULL);
        char *text = rc == 0 ? stream_completion (stream, 4096) : NULL;
        size_t failed = mem_try_fail_after (-1);
        assert (failed == 0 ? rc == 0 && text : rc < 0 || !text);
        // A stream that failed takes no more input.
        assert (rc == 0 || stream_feed (stream, "\n", 1, NULL, NULL) < 0);
        whole = failed == 0;
        free (text);
        stream_destroy (&stream);
    }
    assert (whole);

    // An empty stream still renders a completion, without usage.
    stream_t *stream = stream_new (16);
    json_t *summary = stream_summary (stream);
    assert (json_object_size (summary) == 0);
    json_decref (summary);
    char *text = stream_completion (stream, 1024);
    assert (text && strstr (text, "\"content\":\"\"") && !strstr (text, "usage"));
    json_t *completion = jsontext_loads (text, NULL);
    assert (json_is_null (json_object_get (json_array_get (json_object_get (completion, "choices"),
                                                           0), "finish_reason")));
    json_decref (completion);
    free (text);
    stream_destroy (&stream);
    // A NUL in a delta survives; the completion is refused past its cap.
    const char *nul = "data: {\"choices\":[{\"delta\":{\"content\":\"a\\u0000b\"}}]}\n\n";
    stream = stream_new (1024);
    assert (stream_feed (stream, nul, strlen (nul), NULL, NULL) == 0);
    text = stream_completion (stream, 1024);
    completion = jsontext_loads (text, NULL);
    json_t *message = json_object_get (json_array_get (json_object_get (completion, "choices"), 0),
                                       "message");
    assert (json_string_length (json_object_get (message, "content")) == 3);
    json_decref (completion);
    free (text);
    assert (stream_completion (stream, 40) == NULL);
    stream_destroy (&stream);
    // One event too big to be a delta fails the stream.
    stream = stream_new (4 * STREAM_EVENT_MAX_BYTES);
    char *huge = mem_alloc (STREAM_EVENT_MAX_BYTES + 16);
    memcpy (huge, "data: [", 7);
    memset (huge + 7, '1', STREAM_EVENT_MAX_BYTES);
    memcpy (huge + 7 + STREAM_EVENT_MAX_BYTES, "]\n\n", 3);
    assert (stream_feed (stream, huge, STREAM_EVENT_MAX_BYTES + 10, NULL, NULL) == -1);
    stream_destroy (&stream);
    // So does one with more values than a body may have.
    stream = stream_new (4 * STREAM_EVENT_MAX_BYTES);
    memcpy (huge, "data: [", 7);
    for (size_t i = 0; i < STREAM_EVENT_MAX_VALUES; i++)
        memcpy (huge + 7 + 2 * i, "0,", 2);
    memcpy (huge + 7 + 2 * STREAM_EVENT_MAX_VALUES, "0]\n\n", 4);
    assert (stream_feed (stream, huge, 7 + 2 * STREAM_EVENT_MAX_VALUES + 4, NULL, NULL) == -1);
    free (huge);
    stream_destroy (&stream);
    // The cap holds for the assembled text and for a line without end.
    const char *delta = "data: {\"choices\":[{\"delta\":{\"content\":\"0123456789\"}}]}\n\n";
    stream = stream_new (60);
    for (int i = 0; i < 6; i++)
        assert (stream_feed (stream, delta, strlen (delta), NULL, NULL) == 0);
    assert (stream_feed (stream, delta, strlen (delta), NULL, NULL) == -1);
    assert (stream_feed (stream, "\n", 1, NULL, NULL) == -1);
    assert (stream_deltas (stream) == 6);
    stream_destroy (&stream);
    stream = stream_new (16);
    char endless[64];
    memset (endless, 'x', sizeof endless);
    assert (stream_feed (stream, endless, sizeof endless, NULL, NULL) == -1);
    stream_destroy (&stream);
    if (verbose)
        printf ("OK\n");
}
