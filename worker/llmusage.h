// llmusage — what an LLM answer says it cost, and how much budget is left.
//
// An OpenAI-compatible upstream reports the tokens of a call in the answer's
// "usage" object (a streamed answer in its last chunk, when asked with
// stream_options.include_usage) and names the model that answered; its
// headers x-ratelimit-remaining-tokens and x-ratelimit-reset-tokens say
// how much of its own token budget is left and when it is whole again. The
// worker sends all of it in RESULT (docs/protocol.md §3.2, revision 3), the
// broker keeps the usage on the job and in its totals.
//
// What is kept is only what accounting needs and can never carry a secret:
// the usage object's integer members (and objects of integers, such as
// prompt_tokens_details), at most LLMUSAGE_TEXT_MAX bytes of it; a model
// name of at most LLMUSAGE_MODEL_MAX bytes. Pure (no I/O).
#ifndef JOBGATE_LLMUSAGE_H
#define JOBGATE_LLMUSAGE_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

// A usage text longer than this is not kept (a real one is ~100 bytes).
#define LLMUSAGE_TEXT_MAX 2048
// A model name longer than this is not kept.
#define LLMUSAGE_MODEL_MAX 128

// llmusage_of_answer reads an answer object (a chat.completion, an
// embeddings list, a stream's last chunk): *usage_text gets the usage
// object's JSON text (its integer members, and objects of integers), or
// NULL when it has none of prompt_tokens, completion_tokens, total_tokens
// as a non-negative integer; *model gets its "model" string, or NULL.
// Both are new strings (caller frees). This function can't fail.
void llmusage_of_answer (json_t *answer, char **usage_text, char **model);

// llmusage_of_body is llmusage_of_answer for a body of len bytes, parsed
// under common/jsontext's policy only when it is at most max_parse_bytes;
// anything else gives NULL, NULL.
void llmusage_of_body (const char *body, size_t len, size_t max_parse_bytes, char **usage_text,
                       char **model);

// llmusage_duration_ms reads OpenAI's duration format for a reset
// ("1s", "6m0s", "250ms", "1h2m3.5s", "0.5s", "20ms"): milliseconds,
// rounded up, at most a day. Returns -1 when text is NULL or unreadable.
int64_t llmusage_duration_ms (const char *text);

// llmusage_count reads a non-negative integer header value (surrounding
// blanks allowed), at most 1e15. Returns -1 when text is NULL or not one.
int64_t llmusage_count (const char *text);

// llmusage_test runs the self-test.
void llmusage_test (bool verbose);

#endif
