// stream — an OpenAI-compatible Chat Completions stream, parsed as it arrives.
//
// With "stream": true an LLM upstream answers Server-Sent Events, one
// "data: {chat.completion.chunk}" per token delta and "data: [DONE]" last.
// libcurl hands the bytes over in pieces that split events, lines and even
// CRLF pairs anywhere; a stream reassembles them, reports each delta's text
// at once (the worker relays it as a JGP/1 CHUNK, docs/protocol.md §3.2) and
// assembles the whole answer into one chat.completion for the result. It is
// pure (no I/O), so the self-test feeds it every possible split.
#ifndef JOBGATE_STREAM_H
#define JOBGATE_STREAM_H

#include "response.h"

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

// One event is at most this big and holds at most this many values: no
// token delta comes close, and it is parsed (under common/jsontext's policy)
// on the event loop, within the same budget as a JSON body.
#define STREAM_EVENT_MAX_BYTES RESPONSE_JSON_PARSE_MAX_BYTES
#define STREAM_EVENT_MAX_VALUES RESPONSE_BODY_MAX_VALUES

typedef struct _stream_t stream_t;

// Called once per non-empty delta, in order; text (len bytes, UTF-8, not
// NUL-terminated) is borrowed for the call only.
typedef void (stream_delta_fn) (void *arg, const char *text, size_t len);

// stream_new starts an empty stream that holds at most max_bytes of
// assembled text (and of any one event). This function can't fail (out of
// memory aborts: common/mem.h); what the upstream sends is held under the
// policy's exception, and running out of memory for it fails the call.
stream_t *stream_new (size_t max_bytes);

// stream_destroy frees a stream; nulls *self_p.
void stream_destroy (stream_t **self_p);

// stream_feed parses len more bytes, calling fn (may be NULL) for each
// delta completed by them. Returns 0, or -1 when the assembled text or one
// event went over max_bytes, an event over STREAM_EVENT_MAX_BYTES or
// STREAM_EVENT_MAX_VALUES, or memory ran out: the caller stops the
// transfer, and the stream takes no more input.
int stream_feed (stream_t *self, const char *data, size_t len, stream_delta_fn *fn, void *arg);

// stream_deltas returns how many deltas were reported so far.
size_t stream_deltas (const stream_t *self);

// stream_done is true once "data: [DONE]" arrived.
bool stream_done (const stream_t *self);

// stream_summary returns a new object holding the stream's "model" and
// "usage" (the last chunk carrying one), as far as they arrived: what the
// worker reports of a streamed call (worker/llmusage.h). This function
// can't fail.
json_t *stream_summary (const stream_t *self);

// stream_completion renders what arrived as one chat.completion object:
// {"id", "object": "chat.completion", "model", "choices": [{"index": 0,
// "message": {"role": "assistant", "content": <deltas joined>},
// "finish_reason"}], "usage" (from the last chunk carrying it, if any),
// "streamed": true}. Returns JSON text of at most cap bytes (caller frees),
// or NULL when it would be longer or memory ran out.
char *stream_completion (const stream_t *self, size_t cap);

// stream_test runs the self-test.
void stream_test (bool verbose);

#endif
