// response — what one upstream attempt answered, and what it means.
//
// A response collects the raw header lines and body bytes libcurl hands over
// (with the size cap enforced on decoded bytes), then turns the finished
// attempt into the RESULT fields of docs/protocol.md §3.2: the outcome
// class, the result object and the error object of SPEC §3. Everything here
// is pure (no I/O), so the self-test covers it without a network.
//
// The cost of one answer is bounded (issue 17): a JSON body is parsed only
// when it is at most RESPONSE_JSON_PARSE_MAX_BYTES and within
// RESPONSE_BODY_MAX_DEPTH / RESPONSE_BODY_MAX_VALUES (well within
// common/jsontext's policy, with room for the result, the job object and a
// webhook delivery around it), and only to validate it: the result splices the JSON
// text the upstream sent (scrubbed) instead of dumping a tree again. A JSON
// body beyond those bounds is kept as a string, marked
// "body_encoding": "json_text". The rendered result text is at most
// response_info_t.max_result_bytes (broker.max_result_bytes): over it the
// attempt fails as response_too_large.
//
// Nothing the client reads holds the provider's secret (scrub.h): body
// (every decoded JSON string, text, binary before base64), headers, title,
// error messages.
#ifndef JOBGATE_RESPONSE_H
#define JOBGATE_RESPONSE_H

#include "jsontext.h"
#include "scrub.h"

#include <curl/curl.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct _response_t response_t;

// What a redacted header value or secret reads as in a result.
#define RESPONSE_REDACTED SCRUB_REDACTED
// A JSON body is parsed (to validate it, with jansson, on the event loop)
// only when it is small enough to take a few milliseconds: at most this many
// bytes (jansson reads 10-30 ns a byte)...
#define RESPONSE_JSON_PARSE_MAX_BYTES (256 * 1024)
// ...at most this many values (an empty object costs ~0.4 µs to build:
// 20,000 of them ~8 ms; numbers and strings a third of that)...
#define RESPONSE_BODY_MAX_VALUES 20000
// ...and nested at most this deep: the JSON policy's depth less what wraps a
// body on the way to a client (the result object, the job object, a webhook
// delivery's spec around that: 4 levels, and room to spare).
#define RESPONSE_BODY_MAX_DEPTH (JSONTEXT_MAX_DEPTH - 8)
// Distinct headers kept from one answer (more are dropped).
#define RESPONSE_HEADERS_MAX 256

// What the attempt's transfer reported when it ended.
typedef struct {
    CURLcode code;              // libcurl's result for the transfer
    const char *curl_detail;    // libcurl's error buffer text, or NULL/""
    long status;                // final HTTP status, 0 when none arrived
    int64_t latency_ms;         // from start of the attempt to its end
    int64_t timeout_ms;         // the attempt's timeout, for the message
    bool blocked;               // the SSRF policy refused a connection
    bool scheme_refused;        // a redirect led to a scheme other than http(s)
    bool crawl;                 // add the crawl fields to the result
    bool retry_all;             // any non-2xx answer is retried (webhooks)
    const char *final_url;      // URL after redirects (crawl), or NULL
    int64_t now_s;              // wall clock, seconds, for Retry-After dates
    size_t max_result_bytes;    // the rendered result text at most, 0 = no cap
} response_info_t;

// What goes into the RESULT message.
typedef struct {
    const char *outcome;        // "succeeded" | "failed" | "retry" (static)
    char *result;               // result object as JSON text, or NULL
    char *error;                // error object as JSON text, or NULL
    int64_t retry_after_ms;     // upstream's Retry-After, or 0
    long status;                // HTTP status for the log line, 0 when none
    char *usage;                // llm: the answer's usage object, JSON text, or NULL
    char *model;                // llm: the model the answer names, or NULL
    bool ratelimit;             // llm: remaining_tokens and reset_tokens_ms were looked for
    int64_t remaining_tokens;   // x-ratelimit-remaining-tokens, -1 when unknown
    int64_t reset_tokens_ms;    // x-ratelimit-reset-tokens in ms, -1 when unknown
} response_outcome_t;

// response_new starts an empty response that keeps at most max_bytes of
// body. Past the cap the transfer stops: with truncate (crawl) the body is
// kept as a truncated page; without it the attempt fails as
// response_too_large. This function can't fail (out of memory aborts:
// common/mem.h). What the upstream sends is held under the policy's
// exception: running out of memory for it fails the one attempt.
response_t *response_new (size_t max_bytes, bool truncate);

// response_destroy frees a response; nulls *self_p.
void response_destroy (response_t **self_p);

// response_header takes one raw header line as libcurl delivers it (status
// lines included: each one starts a new header block, so only the final
// response of a redirect chain is kept).
void response_header (response_t *self, const char *line, size_t len);

// response_body appends decoded body bytes. Returns false when the cap is
// reached (or memory for the body ran out, reported the same way) and the
// transfer must stop.
bool response_body (response_t *self, const char *data, size_t len);

// response_header_value returns the value of a header of the latest block
// (name in lower case), or NULL (borrowed).
const char *response_header_value (const response_t *self, const char *name);

// response_body_bytes returns the body collected so far (borrowed, not
// NUL-terminated; NULL when empty) and its size in *len.
const char *response_body_bytes (const response_t *self, size_t *len);

// response_overflow marks the response as over its cap: the attempt fails
// as response_too_large (a stream whose assembled text grew too big).
void response_overflow (response_t *self);

// response_overflowed is true once the response went over its cap.
bool response_overflowed (const response_t *self);

// response_set_body replaces the body with len bytes of data (copied); with
// json the body is rendered as the JSON value it holds whatever the content
// type said (an SSE stream assembled into one completion). Returns 0, or
// -1 when out of memory.
int response_set_body (response_t *self, const char *data, size_t len, bool json);

// response_redact adds header_name (any case, may be NULL) to the headers
// whose values the result shows as "[redacted]" (authorization, cookie,
// set-cookie, x-api-key and the like always are), and scrub (borrowed, may
// be NULL; must outlive the response) as what keeps the provider's secret
// out of the result and the error, in case an upstream echoes it: a header
// whose name or value holds it is hidden whole, bodies, the title and
// error messages are scrubbed (scrub.h).
void response_redact (response_t *self, const char *header_name, const scrub_t *scrub);

// response_truncated is true when the body was cut at the cap (truncate mode).
bool response_truncated (const response_t *self);

// response_finish classifies the finished attempt and renders its result and
// error. The caller frees out->result and out->error (response_outcome_free).
void response_finish (response_t *self, const response_info_t *info,
                      response_outcome_t *out);

// response_outcome_free frees the JSON texts of an outcome.
void response_outcome_free (response_outcome_t *out);

// response_outcome_error fills out as an attempt that never reached the
// upstream: outcome ("failed" or "retry"), error type and message.
void response_outcome_error (response_outcome_t *out, const char *outcome,
                             const char *type, const char *message);

// response_json_string renders data (len bytes) as a JSON string text,
// quotes included, of at most cap bytes, in one pass (jansson's dump costs
// a sprintf per control character). Returns 0 with a new NUL-terminated
// text in *out (caller frees; *out_len its length), 1 when data is not
// UTF-8, -1 when the text would exceed cap or memory ran out.
int response_json_string (const char *data, size_t len, size_t cap, char **out,
                          size_t *out_len);

// response_retry_after_ms parses a Retry-After value (delta seconds or an
// HTTP-date, compared with now_s) into milliseconds, capped at one day.
// Returns 0 when absent or unreadable.
int64_t response_retry_after_ms (const char *value, int64_t now_s);

// response_test runs the self-test.
void response_test (bool verbose);

#endif
