// request — the plan of one upstream call, built from a job's spec.
//
// SPEC §3 describes what each kind means; this module turns a job record
// (its normalized spec JSON, its provider, its timeout) and the provider
// configuration into a URL, a method, headers and a body, and applies them
// to a libcurl easy handle. Everything in the spec came from a client
// through the broker, so every field is type-checked: a bad spec yields a
// one-line reason (the attempt fails as invalid_request), never a crash.
// An attempt on a fallback (the record's `via`, from DISPATCH) calls that
// provider instead, and an llm one sends the record's `model` when set
// (docs/protocol.md §3.2.2).
#ifndef JOBGATE_REQUEST_H
#define JOBGATE_REQUEST_H

#include "config.h"
#include "job.h"

#include <curl/curl.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

// The crawl kind's default request.max_bytes (SPEC §3).
#define REQUEST_CRAWL_MAX_BYTES (2 * 1024 * 1024)
// The crawl kind follows at most this many redirects (SPEC §3).
#define REQUEST_CRAWL_MAX_REDIRECTS 5
// The default per-attempt timeout when neither job nor provider sets one.
#define REQUEST_TIMEOUT_MS 30000

typedef struct _request_t request_t;

// request_new plans one attempt of job under config. Returns NULL when the
// spec is invalid, with a one-line reason in error.
request_t *request_new (const job_t *job, const config_t *config, char *error,
                        size_t error_size);

// request_destroy frees a request; nulls *self_p.
void request_destroy (request_t **self_p);

// request_apply sets URL, method, headers, body and redirect policy on easy.
// libcurl borrows the headers and the body: the request must outlive the
// transfer. Returns 0, or -1 when libcurl refused an option.
int request_apply (request_t *self, CURL *easy);

// request_url returns the URL to call (borrowed).
const char *request_url (const request_t *self);

// request_method returns the HTTP method (borrowed).
const char *request_method (const request_t *self);

// request_body returns the body and its size, or NULL when there is none.
const char *request_body (const request_t *self, size_t *size);

// request_header returns the value of header name (any case) as it will be
// sent, or NULL.
const char *request_header (const request_t *self, const char *name);

// request_user_url is true when the URL came from the client (an http job
// without provider, a crawl): the SSRF policy applies to it.
bool request_user_url (const request_t *self);

// request_is_webhook is true for a callback delivery (any non-2xx answer
// is retried, as Standard Webhooks receivers expect).
bool request_is_webhook (const request_t *self);

// request_is_crawl is true for crawl jobs: truncate at max_bytes, add the
// crawl fields to the result.
bool request_is_crawl (const request_t *self);

// request_max_bytes returns the body cap for this call.
size_t request_max_bytes (const request_t *self);

// request_timeout_ms returns this attempt's timeout.
int64_t request_timeout_ms (const request_t *self);

// request_is_stream is true for an llm job with "stream": true: the answer
// is read as Server-Sent Events and relayed as chunks.
bool request_is_stream (const request_t *self);

// request_is_llm is true for an llm call: its answer's usage, model and
// token rate-limit headers are reported (worker/llmusage.h).
bool request_is_llm (const request_t *self);

// request_usage_added is true when a streamed llm call asks the upstream
// for usage (stream_options.include_usage) that its caller did not ask
// for: the usage-only last chunk is then the worker's, not to be relayed
// as the caller's (the CHUNKs carry content deltas only).
bool request_usage_added (const request_t *self);

// request_auth_header returns the name of the provider's auth header when
// this call carries it, or NULL (borrowed).
const char *request_auth_header (const request_t *self);

// request_secret returns the provider secret this call carries, or NULL
// (borrowed): what the response must redact wherever it shows up.
const char *request_secret (const request_t *self);

// request_test runs the self-test.
void request_test (bool verbose);

#endif
