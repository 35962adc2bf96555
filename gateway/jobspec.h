// jobspec — parses and validates a job spec (SPEC §3 "Job spec"): the body
// of POST /v1/jobs, or one element of a POST /v1/batch.
//
// Validation is strict and complete: every bad field is reported, each with
// a path ("request.messages[2].role") and a plain-English message, so that a
// client fixes its request in one round trip. Bad input never crashes and
// never asserts; assertions here catch programmer errors only.
#ifndef JOBGATE_JOBSPEC_H
#define JOBGATE_JOBSPEC_H

#include "config.h"
#include "job.h"
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

// JOBSPEC_MAX_DEPTH is the deepest JSON nesting accepted; the body object
// itself is level 1 (SPEC §5: limits on JSON depth).
#define JOBSPEC_MAX_DEPTH 64

// jobspec_load parses body (len bytes, not NUL-terminated) as one JSON
// object: valid UTF-8, no duplicate keys, nested at most JOBSPEC_MAX_DEPTH
// levels (checked on the raw bytes before anything is built). Returns a new
// reference; on error returns NULL and sets *errors to a new array holding
// one {"field": "", "message": ...} that says what is wrong and where (line,
// column). Useful for any JSON body the gateway takes, e.g. a batch.
json_t *jobspec_load (const char *body, size_t len, json_t **errors);

// jobspec_from_json validates spec (borrowed, not modified). On success
// returns a new job with kind, provider, priority, max_attempts, timeout_ms
// and expire_after_ms (0 = never) filled, and spec set to the normalized
// spec as compact JSON (kind, provider, request, priority, timeout_ms,
// max_attempts, expire_after_ms, callback, metadata, cache; defaults filled in,
// absent optional fields left out); *errors is untouched. On invalid input
// returns NULL and sets *errors to a new array of {"field", "message"}
// listing every bad field found.
job_t *jobspec_from_json (json_t *spec, const config_t *config, json_t **errors);

// jobspec_parse is jobspec_load followed by jobspec_from_json: the whole
// check of a POST /v1/jobs body. Same contract as jobspec_from_json.
job_t *jobspec_parse (const char *body, size_t len, const config_t *config,
                      json_t **errors);

// jobspec_test runs the self-test.
void jobspec_test (bool verbose);

#endif
