// jsontext — the one JSON policy from upstream to client.
//
// Upstream answers, stored results, job specs and webhook payloads are JSON
// texts that several processes read. When each reader parsed them with its
// own flags and depth, a text one accepted (a "\u0000", 2,048 levels)
// another refused, and a stored result silently vanished on the way out; a
// 10 MiB array of empty objects cost seconds to parse and re-dump. Every
// reader follows this policy instead:
//
// * a text is parsed only when it nests at most JSONTEXT_MAX_DEPTH
//   containers and holds at most JSONTEXT_MAX_VALUES values, measured by a
//   scan that reads each byte once and allocates nothing, so no text costs
//   more than about ten milliseconds to parse;
// * jansson then parses it with JSON_DECODE_ANY | JSON_ALLOW_NUL, so what
//   one process wrote, every other can read;
// * what the worker stores is a text that passed this policy, so readers
//   that only splice it into a larger text (job_render) never parse it.
#ifndef JOBGATE_JSONTEXT_H
#define JOBGATE_JSONTEXT_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

// Containers nested at most (the outermost counts as one).
#define JSONTEXT_MAX_DEPTH 64
// Values at most: scalars, arrays and objects, each member's value counted.
// jansson builds an empty object in ~0.4 µs here, so this bounds a parse at
// about 10 ms. It leaves room for what wraps the worst text that reaches a
// reader: an upstream body (at most 20,000 values, worker/response.h) with
// its headers (at most 256), a job's metadata (4 KiB) and the job object or
// webhook delivery around them; a job spec (the gateway holds a client's to
// the same policy).
#define JSONTEXT_MAX_VALUES 25000

// What a scan found: the deepest nesting and the values counted, both
// stopped at the first limit exceeded; offset is where that happened.
typedef struct {
    size_t depth;               // deepest nesting seen (containers)
    size_t values;              // values counted (an upper bound for odd input)
    size_t offset;              // byte offset where a limit was exceeded, or len
    bool within;                // both limits held over the whole text
} jsontext_shape_t;

// jsontext_scan measures text (len bytes) against max_depth and max_values
// without parsing it: strings are skipped, brackets and commas counted. It
// does not validate: a malformed text may pass and then fail to parse.
// This function can't fail.
jsontext_shape_t jsontext_scan (const char *text, size_t len, size_t max_depth,
                                size_t max_values);

// jsontext_within is jsontext_scan (...).within with the policy's limits.
bool jsontext_within (const char *text, size_t len);

// jsontext_load parses text (len bytes) under the policy. Returns a new
// reference, or NULL when the text is outside the limits or is not JSON;
// error (may be NULL) then says why.
json_t *jsontext_load (const char *text, size_t len, json_error_t *error);

// jsontext_loads is jsontext_load for a NUL-terminated text (NULL gives NULL).
json_t *jsontext_loads (const char *text, json_error_t *error);

// jsontext_dump renders value as compact JSON, any type (JSON_ENCODE_ANY).
// Returns a new string (caller frees); NULL only for a NULL value. This
// function can't fail (out of memory aborts: common/mem.h).
char *jsontext_dump (const json_t *value);

// jsontext_test runs the self-test.
void jsontext_test (bool verbose);

#endif
