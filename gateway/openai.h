// openai — the OpenAI-compatible door (SPEC §3.1): an OpenAI call made into
// an llm job, a finished job made into OpenAI's answer, OpenAI's error
// shape, the model list, and the relay of a streamed call.
//
// Translation and state only: no I/O, no clock (times are passed in). The
// gateway routes POST /v1/chat/completions, POST /v1/embeddings and GET
// /v1/models here and does the waiting (gateway.c).
//
// A call is an llm job like any other: kind "llm", the provider its model
// routes to (config_provider_for_model), and as request the caller's body
// with "model" the name the provider knows. An embeddings call adds
// "endpoint": "embeddings" to its request (the worker sends it to base_url +
// "/embeddings" and leaves the field out of the body); a chat call has no
// "endpoint" ("chat/completions" is the default). A caller of POST /v1/jobs
// may set the same field (docs/providers.md).
//
// A streamed call relays the job's chunk events (the text of each token
// delta, docs/protocol.md §3.2) as OpenAI chat.completion.chunk events of
// choice 0, and when the job finishes, whatever the live events missed (a
// gap, a slow client), then a last chunk with the finish_reason, a usage
// chunk when the caller asked (stream_options.include_usage), and
// "data: [DONE]". What was relayed is always a prefix of the job's answer:
// a retried attempt's chunks are taken only while nothing was relayed, and
// an answer that does not continue what was relayed ends the stream with an
// OpenAI error event instead. Only the text of choice 0 streams (what the
// worker assembles, worker/stream.h); tool-call deltas do not.
#ifndef JOBGATE_OPENAI_H
#define JOBGATE_OPENAI_H

#include "config.h"
#include "job.h"
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

// The longest model name the door takes (OpenAI's are a few dozen bytes).
#define OPENAI_MODEL_MAX 256

// The OpenAI endpoints the door serves.
typedef enum { OPENAI_CHAT, OPENAI_EMBEDDINGS } openai_endpoint_t;

// What the gateway needs of a call besides its job.
typedef struct {
    bool stream;                        // "stream": true (chat only)
    bool include_usage;                 // stream_options.include_usage: true
    char model[OPENAI_MODEL_MAX + 1];   // the model as the caller named it
} openai_call_t;

// Why a call was refused, in OpenAI's terms.
typedef struct {
    unsigned status;            // HTTP status: 400 or 404
    const char *code;           // error.code (a static string)
    char param[64];             // error.param, "" for null
    char message[512];          // error.message
} openai_refusal_t;

// openai_error_text renders OpenAI's error body {"error": {"message",
// "type", "param", "code"}} for status (param and code may be NULL: null);
// the type follows from the status. Returns a new string (caller frees).
// This function can't fail.
char *openai_error_text (unsigned status, const char *message, const char *param,
                         const char *code);

// openai_problem_text renders in OpenAI's shape an error the gateway made
// as a problem (problem.h): slug becomes the code ("over-quota" is
// rate_limit_exceeded, "unauthorized" invalid_api_key, else the slug with
// underscores), detail and the first of errors (borrowed, may be NULL) the
// message and param. Returns a new string (caller frees).
char *openai_problem_text (unsigned status, const char *slug, const char *detail,
                           const json_t *errors);

// openai_job reads body (len bytes) as a call to endpoint and makes its job,
// validated like a POST /v1/jobs spec (jobspec.h): fields not set yet (id,
// tenant, created_at) are the caller's. Fills *call. On refusal returns
// NULL and fills *refusal: 400 for a body that is not an object of the
// endpoint's shape, 404 model_not_found for a model no provider serves.
job_t *openai_job (openai_endpoint_t endpoint, const char *body, size_t len,
                   const config_t *config, openai_call_t *call, openai_refusal_t *refusal);

// openai_answer renders the answer to a call from its finished job: the
// upstream's status and body (unchanged in meaning: the JSON value as the
// result holds it) when the upstream answered, else an OpenAI error made
// from the job's error (504 for a timeout or expiry, 503 otherwise).
// Returns a new string (caller frees) and sets *status and *content_type
// (static). This function can't fail.
char *openai_answer (const job_t *job, unsigned *status, const char **content_type);

// openai_models_text renders GET /v1/models: every provider's models as
// "PROVIDER/MODEL", created at created_s, owned by the provider. Returns a
// new string (caller frees). This function can't fail.
char *openai_models_text (const config_t *config, int64_t created_s);

// openai_model_text renders GET /v1/models/{id} for id (a name the door
// routes); NULL when no provider serves it.
char *openai_model_text (const config_t *config, const char *id, int64_t created_s);

typedef struct _openai_stream_t openai_stream_t;

// openai_stream_new starts the relay of the job job_id's stream for call,
// holding at most buffer_bytes of events its client has not read (more
// are taken from the finished job instead). created_s is the chunks'
// "created". This function can't fail.
openai_stream_t *openai_stream_new (const char *job_id, const openai_call_t *call,
                                    int64_t created_s, size_t buffer_bytes);

// openai_stream_destroy frees the relay; nulls *self_p.
void openai_stream_destroy (openai_stream_t **self_p);

// openai_stream_chunk applies a live chunk event (attempt: its identity,
// index: its place in the attempt, data: the delta's text). Returns true
// when it was buffered for the client; a chunk out of order, of another
// attempt once text was relayed, or beyond the buffer is left to the end.
bool openai_stream_chunk (openai_stream_t *self, int64_t attempt, int64_t index,
                          const char *data, size_t len);

// openai_stream_job applies a fresh record of the job: once it is
// finished, the rest of its answer, the last chunks and "data: [DONE]" (or
// an error event when it failed, or its answer does not continue what was
// relayed), and the relay ends. A job not finished changes nothing.
void openai_stream_job (openai_stream_t *self, const job_t *job);

// openai_stream_end ends the relay after what is buffered with an error
// event saying message (the gateway drains, the client's time is up); a
// relay that ended already is left as it is.
void openai_stream_end (openai_stream_t *self, const char *message);

// openai_stream_comment buffers a comment line (": text"), a keep-alive,
// unless events wait to be read or the relay ended.
void openai_stream_comment (openai_stream_t *self, const char *text);

// openai_stream_read copies up to max bytes of the buffered events into
// buf. Returns the bytes copied; 0 when nothing waits (openai_stream_over
// then says whether the relay is over).
size_t openai_stream_read (openai_stream_t *self, char *buf, size_t max);

// openai_stream_over is true when the relay ended and everything was read.
bool openai_stream_over (const openai_stream_t *self);

// openai_stream_ended is true when the relay takes nothing more.
bool openai_stream_ended (const openai_stream_t *self);

// openai_test runs the self-test.
void openai_test (bool verbose);

#endif
