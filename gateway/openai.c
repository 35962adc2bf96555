// openai — the OpenAI-compatible door (SPEC §3.1): translation and the
// relay of a streamed call.
#include "openai.h"
#include "jobspec.h"
#include "jsontext.h"
#include "mem.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

// --- errors ---

// s_error_type is error.type for an HTTP status, as OpenAI names them.
static const char *
s_error_type (unsigned status)
{
    if (status == 429)
        return "rate_limit_error";
    if (status == 401)
        return "invalid_request_error";    // what OpenAI answers for a bad key
    if (status == 403)
        return "permission_error";
    if (status == 504)
        return "timeout";
    if (status == 503)
        return "service_unavailable";
    if (status >= 500)
        return "server_error";
    return "invalid_request_error";
}

char *
openai_error_text (unsigned status, const char *message, const char *param, const char *code)
{
    json_t *error = json_pack ("{s:{s:s, s:s, s:o, s:o}}", "error", "message",
                               message ? message : "", "type", s_error_type (status), "param",
                               param && *param ? json_string (param) : json_null (), "code",
                               code ? json_string (code) : json_null ());
    if (!error)     // a message or param that is not UTF-8: say so without it
        error = json_pack ("{s:{s:s, s:s, s:n, s:o}}", "error", "message",
                           "the request could not be served", "type", s_error_type (status),
                           "param", "code", code ? json_string (code) : json_null ());
    char *text = jsontext_dump (error);
    json_decref (error);
    return text;
}

// s_code_of_slug is error.code for a problem slug: the common ones named as
// OpenAI names them, others the slug in OpenAI's snake case.
static void
s_code_of_slug (const char *slug, char *code, size_t size)
{
    static const char *const names[][2] = {
        { "unauthorized", "invalid_api_key" },  { "over-quota", "rate_limit_exceeded" },
        { "invalid-job", "invalid_value" },     { "not-found", "not_found" },
        { NULL, NULL }
    };
    for (size_t i = 0; names[i][0]; i++)
        if (strcmp (slug, names[i][0]) == 0) {
            snprintf (code, size, "%s", names[i][1]);
            return;
        }
    snprintf (code, size, "%s", slug);
    for (char *c = code; *c; c++)
        if (*c == '-')
            *c = '_';
}

char *
openai_problem_text (unsigned status, const char *slug, const char *detail, const json_t *errors)
{
    char code[64];
    s_code_of_slug (slug, code, sizeof code);
    const json_t *first = json_array_get (errors, 0);
    const char *field = json_string_value (json_object_get (first, "field"));
    const char *reason = json_string_value (json_object_get (first, "message"));
    char message[512];
    if (reason)
        snprintf (message, sizeof message, "%s: %s%s%s", detail, field && *field ? field : "",
                  field && *field ? " " : "", reason);
    else
        snprintf (message, sizeof message, "%s", detail);
    return openai_error_text (status, message, field, code);
}

// --- a call made into a job ---

// s_refuse fills *refusal and returns NULL.
static job_t *
s_refuse (openai_refusal_t *refusal, unsigned status, const char *code, const char *param,
          const char *message)
{
    refusal->status = status;
    refusal->code = code;
    snprintf (refusal->param, sizeof refusal->param, "%s", param ? param : "");
    snprintf (refusal->message, sizeof refusal->message, "%s", message);
    return NULL;
}

// s_refuse_spec refuses a call whose job spec is invalid, naming the
// fields as the caller sent them ("request.messages" is "messages"): the
// first in param, every one in the message.
static job_t *
s_refuse_spec (openai_refusal_t *refusal, json_t *errors)
{
    char message[512] = "";
    size_t used = 0;
    const char *param = NULL;
    size_t index;
    json_t *error;
    json_array_foreach (errors, index, error) {
        const char *field = json_string_value (json_object_get (error, "field"));
        const char *reason = json_string_value (json_object_get (error, "message"));
        if (field && strncmp (field, "request.", 8) == 0)
            field += 8;
        if (field && strcmp (field, "request") == 0)
            field = "";
        if (!param && field && *field)
            param = field;
        int n = snprintf (message + used, sizeof message - used, "%s%s%s%s", used ? "; " : "",
                          field ? field : "", field && *field ? " " : "", reason ? reason : "");
        if (n < 0 || (size_t) n >= sizeof message - used)
            break;
        used += (size_t) n;
    }
    job_t *refused = s_refuse (refusal, 400, "invalid_value", param,
                               used ? message : "the request is not valid");
    json_decref (errors);
    return refused;
}

job_t *
openai_job (openai_endpoint_t endpoint, const char *body, size_t len, const config_t *config,
            openai_call_t *call, openai_refusal_t *refusal)
{
    memset (call, 0, sizeof *call);
    json_t *errors = NULL;
    json_t *request = jobspec_load (body, len, &errors);
    if (!request) {
        const char *reason = json_string_value (json_object_get (json_array_get (errors, 0),
                                                                 "message"));
        char message[400];
        snprintf (message, sizeof message, "the body is not a JSON object: %s",
                  reason ? reason : "unreadable");
        json_decref (errors);
        return s_refuse (refusal, 400, "invalid_json", NULL, message);
    }
    json_t *model = json_object_get (request, "model");
    const char *model_name = json_string_value (model);
    job_t *job = NULL;
    if (!model)
        s_refuse (refusal, 400, "missing_required_parameter", "model",
                  "you must provide a model parameter");
    else if (!model_name || json_string_length (model) == 0
             || json_string_length (model) > OPENAI_MODEL_MAX
             || strlen (model_name) != json_string_length (model))
        s_refuse (refusal, 400, "invalid_value", "model",
                  "model must be a non-empty string of at most 256 bytes");
    else if (json_object_get (request, "endpoint"))
        s_refuse (refusal, 400, "unknown_parameter", "endpoint",
                  "endpoint is set by the path called (/v1/chat/completions or /v1/embeddings); "
                  "leave it out");
    else if (endpoint == OPENAI_EMBEDDINGS && json_is_true (json_object_get (request, "stream")))
        s_refuse (refusal, 400, "invalid_value", "stream", "embeddings are not streamed");
    else {
        const char *sent_model = NULL;
        const config_provider_t *provider = config_provider_for_model (config, model_name,
                                                                       &sent_model);
        if (!provider) {
            char message[OPENAI_MODEL_MAX + 160];
            snprintf (message, sizeof message,
                      "the model '%s' does not exist: name it PROVIDER/MODEL or list it in a "
                      "provider's models (GET /v1/models)", model_name);
            s_refuse (refusal, 404, "model_not_found", "model", message);
        }
        else {
            snprintf (call->model, sizeof call->model, "%s", model_name);
            call->stream = endpoint == OPENAI_CHAT
                           && json_is_true (json_object_get (request, "stream"));
            call->include_usage = json_is_true (json_object_get (
                json_object_get (request, "stream_options"), "include_usage"));
            json_object_set_new (request, "model", json_string (sent_model));
            if (endpoint == OPENAI_EMBEDDINGS)
                json_object_set_new (request, "endpoint", json_string ("embeddings"));
            json_t *spec = json_pack ("{s:s, s:s, s:O}", "kind", "llm", "provider",
                                      provider->name, "request", request);
            job = jobspec_from_json (spec, config, &errors);
            json_decref (spec);
            if (!job)
                s_refuse_spec (refusal, errors);
        }
    }
    json_decref (request);
    return job;
}

// --- a finished job made into the answer ---

// s_job_failure renders the error of a job the upstream did not answer.
static char *
s_job_failure (const job_t *job, unsigned *status)
{
    json_t *error = jsontext_loads (job->error, NULL);
    const char *type = json_string_value (json_object_get (error, "type"));
    const char *reason = json_string_value (json_object_get (error, "message"));
    if (!type)
        type = job->status == JOB_SUCCEEDED ? "no_result" : "job_failed";
    *status = strcmp (type, "upstream_timeout") == 0 || strcmp (type, "expired") == 0 ? 504 : 503;
    char message[640];
    snprintf (message, sizeof message, "%s (jobgate job %s, status %s)",
              reason ? reason : "the upstream call did not succeed", job->id,
              job_status_name (job->status));
    char *text = openai_error_text (*status, message, NULL, type);
    json_decref (error);
    return text;
}

char *
openai_answer (const job_t *job, unsigned *status, const char **content_type)
{
    *content_type = "application/json";
    json_t *result = jsontext_loads (job->result, NULL);
    json_t *body = json_object_get (result, "body");
    json_int_t upstream = json_integer_value (json_object_get (result, "status"));
    char *text;
    if (!body || upstream < 100 || upstream > 599)
        text = s_job_failure (job, status);
    else {
        *status = (unsigned) upstream;
        if (json_is_string (body)) {
            text = mem_strndup (json_string_value (body), json_string_length (body));
            *content_type = "text/plain; charset=utf-8";
        }
        else
            text = jsontext_dump (body);
    }
    json_decref (result);
    return text;
}

// --- models ---

// s_model_object is one entry of the model list.
static json_t *
s_model_object (const char *provider, const char *model, int64_t created_s)
{
    char id[512];
    snprintf (id, sizeof id, "%s/%s", provider, model);
    return json_pack ("{s:s, s:s, s:I, s:s}", "id", id, "object", "model", "created",
                      (json_int_t) created_s, "owned_by", provider);
}

char *
openai_models_text (const config_t *config, int64_t created_s)
{
    json_t *data = json_array ();
    for (size_t i = 0; i < config->providers_count; i++)
        for (size_t m = 0; m < config->providers[i].models_count; m++)
            json_array_append_new (data, s_model_object (config->providers[i].name,
                                                         config->providers[i].models[m],
                                                         created_s));
    json_t *list = json_pack ("{s:s, s:o}", "object", "list", "data", data);
    char *text = jsontext_dump (list);
    json_decref (list);
    return text;
}

char *
openai_model_text (const config_t *config, const char *id, int64_t created_s)
{
    const char *model = NULL;
    const config_provider_t *provider = config_provider_for_model (config, id, &model);
    if (!provider)
        return NULL;
    json_t *object = s_model_object (provider->name, model, created_s);
    char *text = jsontext_dump (object);
    json_decref (object);
    return text;
}

// --- the relay of a streamed call ---

struct _openai_stream_t {
    char id[JOB_ID_LEN + 10];   // the chunks' id: "chatcmpl-" and the job's id
    char *model;                // the chunks' model until the answer names its own
    char *text_head;            // a text chunk's start, up to its delta (s_text_head),
                                // NULL until needed and when the model changes
    size_t text_head_len;       // bytes in text_head
    int64_t created_s;          // the chunks' created
    bool include_usage;         // the caller asked for a usage chunk
    size_t buffer_bytes;        // events held for the client at most (beyond: left to the end)
    char *out;                  // events not read yet, from out_pos
    size_t out_size;            // bytes in out
    size_t out_pos;             // bytes of out read
    size_t out_capacity;        // bytes allocated for out
    char *sent;                 // the text relayed so far (a prefix of the answer)
    size_t sent_size;           // bytes in sent
    size_t sent_capacity;       // bytes allocated for sent
    int64_t attempt;            // the attempt whose chunks are relayed, 0 = none yet
    int64_t next_index;         // the index of its next chunk
    bool behind;                // a chunk was missed: the rest comes from the finished job
    bool ended;                 // takes nothing more
};

// s_grow makes room for more bytes at the end of a buffer.
static void
s_grow (char **data, size_t size, size_t *capacity, size_t more)
{
    if (size + more <= *capacity)
        return;
    size_t grown = *capacity ? *capacity : 1024;
    while (grown < size + more)
        grown *= 2;
    *data = mem_realloc (*data, grown);
    *capacity = grown;
}

// s_out appends text to the events waiting for the client (what was read
// is dropped first).
static void
s_out (openai_stream_t *self, const char *text, size_t len)
{
    if (self->out_pos == self->out_size)
        self->out_pos = self->out_size = 0;
    s_grow (&self->out, self->out_size, &self->out_capacity, len);
    memcpy (self->out + self->out_size, text, len);
    self->out_size += len;
}

// s_event appends "data: JSON" for value (taken).
static void
s_event (openai_stream_t *self, json_t *value)
{
    char *data = jsontext_dump (value);
    json_decref (value);
    s_out (self, "data: ", 6);
    s_out (self, data, strlen (data));
    s_out (self, "\n\n", 2);
    free (data);
}

// s_chunk builds one chat.completion.chunk of choice 0 with delta (taken)
// and finish_reason (NULL: null).
static json_t *
s_chunk (openai_stream_t *self, json_t *delta, const char *finish_reason)
{
    return json_pack ("{s:s, s:s, s:I, s:s, s:[{s:i, s:o, s:o}]}", "id", self->id, "object",
                      "chat.completion.chunk", "created", (json_int_t) self->created_s, "model",
                      self->model, "choices", "index", 0, "delta", delta, "finish_reason",
                      finish_reason ? json_string (finish_reason) : json_null ());
}

// s_text_head renders what every text chunk of the stream starts with, up
// to its delta's fields: s_chunk's text cut where the delta begins, so a
// text chunk costs the escaping of its text only (one per token, for
// every stream at once: the relay's main work).
static void
s_text_head (openai_stream_t *self)
{
    json_t *chunk = s_chunk (self, json_object (), NULL);
    char *text = jsontext_dump (chunk);
    json_decref (chunk);
    const char *delta = strstr (text, "\"delta\":{}");
    assert (delta);     // s_chunk's shape: the delta follows the fixed fields
    size_t cut = (size_t) (delta - text) + strlen ("\"delta\":{");
    free (self->text_head);
    self->text_head = mem_alloc (cut + 6);
    memcpy (self->text_head, "data: ", 6);
    memcpy (self->text_head + 6, text, cut);
    self->text_head_len = cut + 6;
    free (text);
}

// s_text_event relays text (len bytes) as the next delta: the first one
// also names the role. False when the text is not UTF-8 (not relayed).
// The event is s_chunk's with that delta (the self-test holds them equal).
static bool
s_text_event (openai_stream_t *self, const char *text, size_t len)
{
    json_t *content = json_stringn (text, len);
    if (!content)
        return false;
    char *escaped = jsontext_dump (content);
    json_decref (content);
    if (!self->text_head)
        s_text_head (self);
    s_out (self, self->text_head, self->text_head_len);
    if (self->sent_size == 0)
        s_out (self, "\"role\":\"assistant\",", 19);
    s_out (self, "\"content\":", 10);
    s_out (self, escaped, strlen (escaped));
    static const char tail[] = "},\"finish_reason\":null}]}\n\n";
    s_out (self, tail, sizeof tail - 1);
    free (escaped);
    s_grow (&self->sent, self->sent_size, &self->sent_capacity, len);
    memcpy (self->sent + self->sent_size, text, len);
    self->sent_size += len;
    return true;
}

// s_error_event ends the relay with OpenAI's error event.
static void
s_error_event (openai_stream_t *self, unsigned status, const char *message, const char *code)
{
    char *text = openai_error_text (status, message, NULL, code);
    s_out (self, "data: ", 6);
    s_out (self, text, strlen (text));
    s_out (self, "\n\n", 2);
    free (text);
    self->ended = true;
}

openai_stream_t *
openai_stream_new (const char *job_id, const openai_call_t *call, int64_t created_s,
                   size_t buffer_bytes)
{
    openai_stream_t *self = mem_calloc (1, sizeof *self);
    snprintf (self->id, sizeof self->id, "chatcmpl-%s", job_id);
    self->model = mem_strdup (call->model);
    self->created_s = created_s;
    self->include_usage = call->include_usage;
    self->buffer_bytes = buffer_bytes;
    return self;
}

void
openai_stream_destroy (openai_stream_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    openai_stream_t *self = *self_p;
    free (self->model);
    free (self->text_head);
    free (self->out);
    free (self->sent);
    free (self);
    *self_p = NULL;
}

bool
openai_stream_chunk (openai_stream_t *self, int64_t attempt, int64_t index, const char *data,
                     size_t len)
{
    if (self->ended || self->behind)
        return false;
    if (attempt != self->attempt) {
        // A later attempt starts over: taken only while nothing was relayed.
        if (self->sent_size > 0 || attempt < self->attempt)
            return false;
        self->attempt = attempt;
        self->next_index = 0;
    }
    if (index < self->next_index)
        return false;       // had already
    size_t waiting = self->out_size - self->out_pos;
    if (index > self->next_index || (waiting > 0 && waiting + len > self->buffer_bytes)
        || !s_text_event (self, data, len)) {
        self->behind = true;
        return false;
    }
    self->next_index++;
    return true;
}

void
openai_stream_job (openai_stream_t *self, const job_t *job)
{
    if (self->ended || !job_status_terminal (job->status))
        return;
    json_t *result = jsontext_loads (job->result, NULL);
    json_t *body = json_object_get (result, "body");
    json_int_t upstream = json_integer_value (json_object_get (result, "status"));
    if (job->status != JOB_SUCCEEDED || !json_is_object (body) || upstream < 200
        || upstream > 299) {
        unsigned status;
        const char *content_type;
        char *answer = openai_answer (job, &status, &content_type);
        // The upstream's own error object when it sent one, else ours.
        json_t *answered = jsontext_loads (answer, NULL);
        if (json_is_object (json_object_get (answered, "error"))) {
            s_event (self, json_incref (answered));
            self->ended = true;
        }
        else {
            char message[600];
            snprintf (message, sizeof message, "the upstream answered %u (jobgate job %s)",
                      status, job->id);
            s_error_event (self, status >= 400 ? status : 502, message, "upstream_error");
        }
        json_decref (answered);
        free (answer);
        json_decref (result);
        return;
    }
    json_t *choice = json_array_get (json_object_get (body, "choices"), 0);
    json_t *message = json_object_get (choice, "message");
    json_t *content = json_object_get (message, "content");
    const char *text = json_is_string (content) ? json_string_value (content) : "";
    size_t text_len = json_is_string (content) ? json_string_length (content) : 0;
    if (text_len < self->sent_size || memcmp (text, self->sent, self->sent_size) != 0) {
        char reason[300];
        snprintf (reason, sizeof reason,
                  "the upstream call was retried after part of its answer was relayed, and "
                  "the answer changed: GET /v1/jobs/%s has the whole answer", job->id);
        s_error_event (self, 502, reason, "stream_retried");
        json_decref (result);
        return;
    }
    const char *model = json_string_value (json_object_get (body, "model"));
    if (model) {
        free (self->model);
        self->model = mem_strdup (model);
        free (self->text_head);     // names the model
        self->text_head = NULL;
    }
    if (text_len > self->sent_size)
        s_text_event (self, text + self->sent_size, text_len - self->sent_size);
    const char *finish = json_string_value (json_object_get (choice, "finish_reason"));
    s_event (self, s_chunk (self, json_object (), finish ? finish : "stop"));
    json_t *usage = json_object_get (body, "usage");
    if (self->include_usage && json_is_object (usage))
        s_event (self, json_pack ("{s:s, s:s, s:I, s:s, s:[], s:O}", "id", self->id, "object",
                                  "chat.completion.chunk", "created",
                                  (json_int_t) self->created_s, "model", self->model,
                                  "choices", "usage", usage));
    s_out (self, "data: [DONE]\n\n", 14);
    self->ended = true;
    json_decref (result);
}

void
openai_stream_end (openai_stream_t *self, const char *message)
{
    if (!self->ended)
        s_error_event (self, 503, message, "stream_interrupted");
}

void
openai_stream_comment (openai_stream_t *self, const char *text)
{
    if (self->ended || self->out_pos < self->out_size)
        return;
    s_out (self, ": ", 2);
    s_out (self, text, strlen (text));
    s_out (self, "\n\n", 2);
}

size_t
openai_stream_read (openai_stream_t *self, char *buf, size_t max)
{
    size_t n = self->out_size - self->out_pos;
    if (n > max)
        n = max;
    memcpy (buf, self->out + self->out_pos, n);
    self->out_pos += n;
    return n;
}

bool
openai_stream_over (const openai_stream_t *self)
{
    return self->ended && self->out_pos == self->out_size;
}

bool
openai_stream_ended (const openai_stream_t *self)
{
    return self->ended;
}

// --- self-test ---

// s_test_read takes everything the relay holds (caller frees).
static char *
s_test_read (openai_stream_t *stream)
{
    char *text = mem_alloc (1);
    size_t len = 0;
    char buf[7];    // small reads: events are split anywhere
    size_t n;
    while ((n = openai_stream_read (stream, buf, sizeof buf)) > 0) {
        text = mem_realloc (text, len + n + 1);
        memcpy (text + len, buf, n);
        len += n;
    }
    text[len] = '\0';
    return text;
}

// s_test_job makes a finished job whose result body is body (JSON text).
static job_t *
s_test_job (job_status_t status, const char *result, const char *error)
{
    job_t *job = job_new ();
    memcpy (job->id, "0190a0b2-1c3d-7e4f-8a5b-6c7d8e9f0a1b", JOB_ID_LEN);
    job->status = status;
    job_set_str (&job->result, result);
    job_set_str (&job->error, error);
    return job;
}

// s_test_expect checks what a relay holds now.
static void
s_test_expect (openai_stream_t *stream, const char *expected)
{
    char *text = s_test_read (stream);
    if (strcmp (text, expected) != 0)
        fprintf (stderr, "openai: stream holds\n%s\nexpected\n%s\n", text, expected);
    assert (strcmp (text, expected) == 0);
    free (text);
}

#define TEST_CHUNK(content, finish) \
    "data: {\"id\":\"chatcmpl-0190a0b2-1c3d-7e4f-8a5b-6c7d8e9f0a1b\",\"object\":" \
    "\"chat.completion.chunk\",\"created\":1700000000,\"model\":\"mock/m\",\"choices\":" \
    "[{\"index\":0,\"delta\":{" content "},\"finish_reason\":" finish "}]}\n\n"
#define TEST_ANSWER(content) \
    "{\"status\":200,\"headers\":{},\"body\":{\"id\":\"up\",\"model\":\"m\",\"choices\":[{" \
    "\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":\"" content "\"}," \
    "\"finish_reason\":\"length\"}],\"usage\":{\"prompt_tokens\":2,\"completion_tokens\":3," \
    "\"total_tokens\":5}},\"latency_ms\":4}"

// s_test_stream: the relay in order, with a retry before any text, a gap
// filled from the answer, an answer that does not continue what was
// relayed, a failure and an interruption.
static void
s_test_stream (void)
{
    openai_call_t call = { .stream = true, .include_usage = true, .model = "mock/m" };
    const char *id = "0190a0b2-1c3d-7e4f-8a5b-6c7d8e9f0a1b";
    openai_stream_t *stream = openai_stream_new (id, &call, 1700000000, 1024);
    openai_stream_comment (stream, "keep-alive");
    s_test_expect (stream, ": keep-alive\n\n");
    // Attempt 2 replaces attempt 1 while nothing was relayed; an old
    // attempt's chunk and a chunk had already are skipped.
    assert (openai_stream_chunk (stream, 2, 0, "He", 2));
    assert (!openai_stream_chunk (stream, 1, 1, "xx", 2));
    assert (!openai_stream_chunk (stream, 2, 0, "He", 2));
    assert (openai_stream_chunk (stream, 2, 1, "llo", 3));
    // A keep-alive waits while events wait to be read.
    openai_stream_comment (stream, "keep-alive");
    s_test_expect (stream, TEST_CHUNK ("\"role\":\"assistant\",\"content\":\"He\"", "null")
                           TEST_CHUNK ("\"content\":\"llo\"", "null"));
    // A later attempt after text was relayed: not taken.
    assert (!openai_stream_chunk (stream, 3, 0, "Hello", 5));
    // A gap: nothing more live; the finished job brings the rest, the
    // finish_reason and the usage the caller asked for, and [DONE].
    assert (!openai_stream_chunk (stream, 2, 3, "d", 1));
    assert (!openai_stream_chunk (stream, 2, 2, " worl", 5));
    job_t *job = s_test_job (JOB_RUNNING, NULL, NULL);
    openai_stream_job (stream, job);
    s_test_expect (stream, "");
    job_destroy (&job);
    job = s_test_job (JOB_SUCCEEDED, TEST_ANSWER ("Hello world"), NULL);
    openai_stream_job (stream, job);
    assert (openai_stream_ended (stream) && !openai_stream_over (stream));
    s_test_expect (stream,
        "data: {\"id\":\"chatcmpl-0190a0b2-1c3d-7e4f-8a5b-6c7d8e9f0a1b\",\"object\":"
        "\"chat.completion.chunk\",\"created\":1700000000,\"model\":\"m\",\"choices\":"
        "[{\"index\":0,\"delta\":{\"content\":\" world\"},\"finish_reason\":null}]}\n\n"
        "data: {\"id\":\"chatcmpl-0190a0b2-1c3d-7e4f-8a5b-6c7d8e9f0a1b\",\"object\":"
        "\"chat.completion.chunk\",\"created\":1700000000,\"model\":\"m\",\"choices\":"
        "[{\"index\":0,\"delta\":{},\"finish_reason\":\"length\"}]}\n\n"
        "data: {\"id\":\"chatcmpl-0190a0b2-1c3d-7e4f-8a5b-6c7d8e9f0a1b\",\"object\":"
        "\"chat.completion.chunk\",\"created\":1700000000,\"model\":\"m\",\"choices\":[],"
        "\"usage\":{\"prompt_tokens\":2,\"completion_tokens\":3,\"total_tokens\":5}}\n\n"
        "data: [DONE]\n\n");
    assert (openai_stream_over (stream));
    // Nothing after the end.
    assert (!openai_stream_chunk (stream, 2, 2, "x", 1));
    openai_stream_end (stream, "late");
    openai_stream_comment (stream, "keep-alive");
    s_test_expect (stream, "");
    openai_stream_destroy (&stream);
    job_destroy (&job);

    // An answer that does not continue what was relayed (a retry that
    // answered differently) ends with an error event, not a wrong text.
    call.include_usage = false;
    stream = openai_stream_new (id, &call, 1700000000, 1024);
    assert (openai_stream_chunk (stream, 1, 0, "Bye", 3));
    free (s_test_read (stream));
    job = s_test_job (JOB_SUCCEEDED, TEST_ANSWER ("Hello"), NULL);
    openai_stream_job (stream, job);
    char *text = s_test_read (stream);
    assert (strncmp (text, "data: {\"error\":{\"message\":\"the upstream call was retried", 55)
            == 0 && strstr (text, "\"code\":\"stream_retried\"}}\n\n") && !strstr (text, "DONE"));
    free (text);
    assert (openai_stream_over (stream));
    openai_stream_destroy (&stream);
    job_destroy (&job);

    // The whole answer when no chunk came (a one-shot upstream), without a
    // usage chunk nobody asked for; a chunk beyond the buffer goes to the end.
    stream = openai_stream_new (id, &call, 1700000000, 4);
    assert (openai_stream_chunk (stream, 1, 0, "Hello", 5));    // into an empty buffer
    assert (!openai_stream_chunk (stream, 1, 1, " you", 4));    // beyond it
    free (s_test_read (stream));
    job = s_test_job (JOB_SUCCEEDED, TEST_ANSWER ("Hello you"), NULL);
    openai_stream_job (stream, job);
    text = s_test_read (stream);
    assert (strstr (text, "{\"content\":\" you\"}") && !strstr (text, "usage")
            && strstr (text, "data: [DONE]\n\n"));
    free (text);
    openai_stream_destroy (&stream);
    job_destroy (&job);

    // A failure: the upstream's own error object as the event; the job's
    // error in OpenAI's shape when the upstream never answered.
    stream = openai_stream_new (id, &call, 1700000000, 1024);
    job = s_test_job (JOB_FAILED, "{\"status\":400,\"headers\":{},\"body\":{\"error\":"
                      "{\"message\":\"bad\"}}}", NULL);
    openai_stream_job (stream, job);
    s_test_expect (stream, "data: {\"error\":{\"message\":\"bad\"}}\n\n");
    openai_stream_destroy (&stream);
    job_destroy (&job);
    stream = openai_stream_new (id, &call, 1700000000, 1024);
    job = s_test_job (JOB_FAILED, NULL, "{\"type\":\"upstream_timeout\",\"message\":\"slow\"}");
    openai_stream_job (stream, job);
    text = s_test_read (stream);
    assert (strstr (text, "\"type\":\"timeout\"") && strstr (text, "\"code\":\"upstream_timeout\""));
    free (text);
    openai_stream_destroy (&stream);
    job_destroy (&job);
    // Interrupted (the gateway drains): an error event ends it.
    stream = openai_stream_new (id, &call, 1700000000, 1024);
    openai_stream_end (stream, "the gateway is shutting down");
    text = s_test_read (stream);
    assert (strstr (text, "\"code\":\"stream_interrupted\"") && openai_stream_over (stream));
    free (text);
    openai_stream_destroy (&stream);
    openai_stream_destroy (&stream);
}

// s_test_text_chunks: a text chunk, rendered from the stream's head, is
// what s_chunk renders for its delta, whatever the text and the model hold.
static void
s_test_text_chunks (void)
{
    const char *models[] = { "mock/m", "a\"delta\":{}b", "\xc3\xa9\\/\n", NULL };
    const char *texts[] = { "He", "llo \"world\"", "\xe2\x82\xac\t\x01", "\"delta\":{}", "" };
    for (size_t m = 0; models[m]; m++) {
        openai_call_t call = { .stream = true };
        snprintf (call.model, sizeof call.model, "%s", models[m]);
        openai_stream_t *stream = openai_stream_new ("0190a0b2-1c3d-7e4f-8a5b-6c7d8e9f0a1b", &call,
                                                     1700000000, 1 << 20);
        for (size_t t = 0; t < sizeof texts / sizeof texts[0]; t++) {
            json_t *content = json_string (texts[t]);
            json_t *delta = t == 0 ? json_pack ("{s:s, s:o}", "role", "assistant", "content",
                                                content)
                                   : json_pack ("{s:o}", "content", content);
            json_t *chunk = s_chunk (stream, delta, NULL);
            char *data = jsontext_dump (chunk);
            json_decref (chunk);
            char expected[1024];
            snprintf (expected, sizeof expected, "data: %s\n\n", data);
            free (data);
            assert (openai_stream_chunk (stream, 1, (int64_t) t, texts[t], strlen (texts[t])));
            s_test_expect (stream, expected);
        }
        openai_stream_destroy (&stream);
    }
}

// s_test_config is a configuration with two providers and their models.
static config_t *
s_test_config (void)
{
    const char *text = "{\"providers\":{"
        "\"mock\":{\"base_url\":\"http://127.0.0.1:9\",\"models\":[\"gpt-x\",\"org/tuned\"]},"
        "\"local\":{\"base_url\":\"http://127.0.0.1:8\"}}}";
    char path[] = "/tmp/jobgate-openai-test-XXXXXX";
    int fd = mkstemp (path);
    assert (fd >= 0);
    FILE *file = fdopen (fd, "w");
    assert (file && fputs (text, file) >= 0 && fclose (file) == 0);
    char error[256];
    config_t *config = config_load (path, error, sizeof error);
    if (!config)
        fprintf (stderr, "openai: %s\n", error);
    assert (config);
    unlink (path);
    return config;
}

// s_test_refused checks that a call is refused with status, code and param.
static void
s_test_refused (const config_t *config, openai_endpoint_t endpoint, const char *body,
                unsigned status, const char *code, const char *param)
{
    openai_call_t call;
    openai_refusal_t refusal;
    job_t *job = openai_job (endpoint, body, strlen (body), config, &call, &refusal);
    if (job || refusal.status != status || strcmp (refusal.code, code) != 0
        || strcmp (refusal.param, param) != 0)
        fprintf (stderr, "openai: %s: got %u %s %s (%s)\n", body, job ? 0 : refusal.status,
                 job ? "-" : refusal.code, job ? "-" : refusal.param, job ? "-" : refusal.message);
    assert (!job && refusal.status == status && strcmp (refusal.code, code) == 0
            && strcmp (refusal.param, param) == 0);
}

void
openai_test (bool verbose)
{
    if (verbose)
        printf (" * openai: ");
    config_t *config = s_test_config ();
    openai_call_t call;
    openai_refusal_t refusal;

    // Routing both ways: PROVIDER/MODEL sends MODEL; a bare name (even one
    // with a slash) goes to the provider that lists it.
    const char *body = "{\"model\":\"local/llama\",\"messages\":[{\"role\":\"user\",\"content\":"
                       "\"hi\"}],\"stream\":true,\"stream_options\":{\"include_usage\":true}}";
    job_t *job = openai_job (OPENAI_CHAT, body, strlen (body), config, &call, &refusal);
    assert (job && strcmp (job->kind, "llm") == 0 && strcmp (job->provider, "local") == 0);
    assert (call.stream && call.include_usage && strcmp (call.model, "local/llama") == 0);
    json_t *spec = jsontext_loads (job->spec, NULL);
    json_t *request = json_object_get (spec, "request");
    assert (strcmp (json_string_value (json_object_get (request, "model")), "llama") == 0);
    assert (!json_object_get (request, "endpoint"));
    json_decref (spec);
    job_destroy (&job);
    body = "{\"model\":\"org/tuned\",\"input\":[\"a\",\"b\"]}";
    job = openai_job (OPENAI_EMBEDDINGS, body, strlen (body), config, &call, &refusal);
    assert (job && strcmp (job->provider, "mock") == 0 && !call.stream);
    spec = jsontext_loads (job->spec, NULL);
    request = json_object_get (spec, "request");
    assert (strcmp (json_string_value (json_object_get (request, "model")), "org/tuned") == 0);
    assert (strcmp (json_string_value (json_object_get (request, "endpoint")), "embeddings") == 0);
    json_decref (spec);
    job_destroy (&job);

    // Refusals, in OpenAI's terms: the field named as the caller sent it.
    s_test_refused (config, OPENAI_CHAT, "{\"model\":\"nope\",\"messages\":[]}", 404,
                    "model_not_found", "model");
    s_test_refused (config, OPENAI_CHAT, "{\"model\":\"local/\",\"messages\":[]}", 404,
                    "model_not_found", "model");
    s_test_refused (config, OPENAI_CHAT, "{\"messages\":[]}", 400, "missing_required_parameter",
                    "model");
    s_test_refused (config, OPENAI_CHAT, "{\"model\":7}", 400, "invalid_value", "model");
    s_test_refused (config, OPENAI_CHAT, "{\"model\":\"gpt-x\"}", 400, "invalid_value",
                    "messages");
    s_test_refused (config, OPENAI_CHAT, "{\"model\":\"gpt-x\",\"endpoint\":\"embeddings\","
                    "\"messages\":[{\"role\":\"user\"}]}", 400, "unknown_parameter", "endpoint");
    s_test_refused (config, OPENAI_EMBEDDINGS, "{\"model\":\"gpt-x\"}", 400, "invalid_value",
                    "input");
    s_test_refused (config, OPENAI_EMBEDDINGS, "{\"model\":\"gpt-x\",\"input\":\"a\","
                    "\"stream\":true}", 400, "invalid_value", "stream");
    s_test_refused (config, OPENAI_CHAT, "[1]", 400, "invalid_json", "");
    s_test_refused (config, OPENAI_CHAT, "{\"model\":", 400, "invalid_json", "");

    // Errors: OpenAI's shape, type by status, problems translated.
    char *text = openai_error_text (401, "bad key", NULL, "invalid_api_key");
    assert (strcmp (text, "{\"error\":{\"message\":\"bad key\",\"type\":\"invalid_request_error\","
                          "\"param\":null,\"code\":\"invalid_api_key\"}}") == 0);
    free (text);
    json_t *errors = json_pack ("[{s:s, s:s}]", "field", "Idempotency-Key", "message", "too long");
    text = openai_problem_text (400, "invalid-header", "the header is not valid", errors);
    assert (strcmp (text, "{\"error\":{\"message\":\"the header is not valid: Idempotency-Key "
                          "too long\",\"type\":\"invalid_request_error\",\"param\":"
                          "\"Idempotency-Key\",\"code\":\"invalid_header\"}}") == 0);
    free (text);
    json_decref (errors);
    text = openai_problem_text (429, "over-quota", "over quota", NULL);
    assert (strstr (text, "\"type\":\"rate_limit_error\"") && strstr (text, "\"rate_limit_exceeded\""));
    free (text);

    // Answers: the upstream's status and body; a job without an answer
    // in OpenAI's shape.
    unsigned status = 0;
    const char *content_type = NULL;
    job = s_test_job (JOB_FAILED, "{\"status\":400,\"headers\":{},\"body\":{\"error\":{\"x\":1}},"
                      "\"latency_ms\":1}", NULL);
    text = openai_answer (job, &status, &content_type);
    assert (status == 400 && strcmp (text, "{\"error\":{\"x\":1}}") == 0
            && strcmp (content_type, "application/json") == 0);
    free (text);
    job_destroy (&job);
    job = s_test_job (JOB_FAILED, NULL, "{\"type\":\"connect_failed\",\"message\":\"refused\"}");
    text = openai_answer (job, &status, &content_type);
    assert (status == 503 && strstr (text, "\"code\":\"connect_failed\"")
            && strstr (text, "refused (jobgate job 0190a0b2-1c3d-7e4f-8a5b-6c7d8e9f0a1b"));
    free (text);
    job_destroy (&job);
    job = s_test_job (JOB_FAILED, NULL, "{\"type\":\"expired\",\"message\":\"late\"}");
    text = openai_answer (job, &status, &content_type);
    assert (status == 504);
    free (text);
    job_destroy (&job);

    // Models: every provider's, as PROVIDER/MODEL.
    text = openai_models_text (config, 1700000000);
    assert (strcmp (text, "{\"object\":\"list\",\"data\":["
                          "{\"id\":\"mock/gpt-x\",\"object\":\"model\",\"created\":1700000000,"
                          "\"owned_by\":\"mock\"},"
                          "{\"id\":\"mock/org/tuned\",\"object\":\"model\",\"created\":1700000000,"
                          "\"owned_by\":\"mock\"}]}") == 0);
    free (text);
    text = openai_model_text (config, "gpt-x", 1);
    assert (text && strstr (text, "\"id\":\"mock/gpt-x\""));
    free (text);
    assert (openai_model_text (config, "nope", 1) == NULL);

    s_test_stream ();
    s_test_text_chunks ();
    config_destroy (&config);
    if (verbose)
        printf ("OK\n");
}
