// fuzz_openai — libFuzzer target: any bytes as an OpenAI-compatible call
// (POST /v1/chat/completions or /v1/embeddings), or as the result of a
// door's finished job (the upstream's answer, relayed or streamed).
//
// The first byte picks which: 0 chat, 1 embeddings, 2 a result. A call
// must be answered with a job whose spec jobspec accepts again, or a
// refusal in OpenAI's terms; a result with an answer and a relay that
// ends, never a crash, a leak or undefined behaviour.
#include "jobspec.h"
#include "jsontext.h"
#include "openai.h"

#include <assert.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

// A fixed configuration: one provider with a bare model, one without.
static char *s_models[] = { (char *) "gpt-x" };
static config_provider_t s_providers[] = {
    { .name = (char *) "mock", .base_url = (char *) "http://127.0.0.1:9", .models = s_models,
      .models_count = 1 },
    { .name = (char *) "other", .base_url = (char *) "http://127.0.0.1:8" },
};
static const config_t s_config = { .providers = s_providers, .providers_count = 2 };

// s_call checks one call's answer.
static void
s_call (openai_endpoint_t endpoint, const char *body, size_t len)
{
    openai_call_t call;
    openai_refusal_t refusal;
    job_t *job = openai_job (endpoint, body, len, &s_config, &call, &refusal);
    if (!job) {
        assert (refusal.status == 400 || refusal.status == 404);
        char *text = openai_error_text (refusal.status, refusal.message, refusal.param,
                                        refusal.code);
        json_t *parsed = jsontext_loads (text, NULL);
        assert (json_is_object (json_object_get (parsed, "error")));
        json_decref (parsed);
        free (text);
        return;
    }
    assert (strcmp (job->kind, "llm") == 0 && job->provider && call.model[0]);
    json_t *errors = NULL;
    job_t *again = jobspec_parse (job->spec, strlen (job->spec), &s_config, &errors);
    assert (again && !errors && strcmp (again->spec, job->spec) == 0);
    job_destroy (&again);
    job_destroy (&job);
}

// s_result checks the answer and the relay made from a finished job whose
// result is text.
static void
s_result (const char *text)
{
    job_t *job = job_new ();
    memcpy (job->id, "0190a0b2-1c3d-7e4f-8a5b-6c7d8e9f0a1b", JOB_ID_LEN);
    job->status = text[0] & 1 ? JOB_FAILED : JOB_SUCCEEDED;
    job_set_str (&job->result, text);
    job_set_str (&job->error, text);
    unsigned status = 0;
    const char *content_type = NULL;
    char *answer = openai_answer (job, &status, &content_type);
    assert (answer && content_type && status >= 100 && status <= 599);
    free (answer);
    openai_call_t call = { .stream = true, .include_usage = true, .model = "mock/gpt-x" };
    openai_stream_t *stream = openai_stream_new (job->id, &call, 1, 64);
    openai_stream_chunk (stream, 1, 0, "He", 2);
    openai_stream_chunk (stream, 1, 1, "llo", 3);
    openai_stream_job (stream, job);
    assert (openai_stream_ended (stream));
    char buf[256];
    while (openai_stream_read (stream, buf, sizeof buf) > 0)
        ;
    assert (openai_stream_over (stream));
    openai_stream_destroy (&stream);
    job_destroy (&job);
}

// LLVMFuzzerTestOneInput runs one input.
int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    const char *body = (const char *) data + 1;
    if (data[0] % 3 < 2)
        s_call (data[0] % 3 == 0 ? OPENAI_CHAT : OPENAI_EMBEDDINGS, body, size - 1);
    else {
        char *text = malloc (size);
        memcpy (text, body, size - 1);
        text[size - 1] = '\0';
        s_result (text);
        free (text);
    }
    return 0;
}
