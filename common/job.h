// job — the job record: what the broker stores, sends and the gateway shows.
//
// One record travels everywhere as the same msgpack map (docs/protocol.md
// §4): the broker's store holds it, DISPATCH carries it to a worker, JOB
// carries it to a gateway, which renders the API's job object (SPEC §3).
#ifndef JOBGATE_JOB_H
#define JOBGATE_JOB_H

#include "clock.h"
#include "pack.h"
#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

typedef enum {
    JOB_QUEUED,
    JOB_RUNNING,
    JOB_SUCCEEDED,
    JOB_FAILED,
    JOB_CANCELED,
    JOB_STATUS_COUNT_
} job_status_t;

typedef struct {
    char id[JOB_ID_LEN + 1];    // UUID chosen by the gateway
    char *tenant;               // owner; "" in open mode
    char *kind;                 // "http" | "crawl" | "search" | "llm"
    char *provider;             // configured upstream, or NULL
    job_status_t status;        // lifecycle state
    int priority;               // 0..9, higher first
    int max_attempts;           // 1..10
    int attempts;               // attempts started in this run (the budget; a retry resets it)
    int64_t attempt_seq;        // identity of the latest attempt: 1, 2, … for the job's
                                // whole life, never reset (docs/protocol.md §3.2)
    int64_t timeout_ms;         // per attempt
    int64_t expire_after_ms;    // fail as expired if not started by then; 0 = never
    int64_t created_at;         // wall ms
    int64_t started_at;         // wall ms of the latest attempt; 0 = never
    int64_t finished_at;        // wall ms; 0 = not finished
    char *spec;                 // normalized job spec, JSON text
    char *result;               // result object, JSON text, or NULL
    char *error;                // error object, JSON text, or NULL
    char *idempotency_key;      // Idempotency-Key header, or NULL
    char *metadata;             // the spec's metadata object, JSON text, or NULL
    char *usage;                // llm: the upstream's usage object, JSON text, or NULL
    char *cache;                // "hit" | "shared" | "miss" (SPEC §3.2), NULL when the job
                                // has no cache
    char *lease;                // DISPATCH only: the attempt's lease token, which the
                                // worker echoes; never stored, never sent to a gateway
    char *answered_by;          // the provider whose answer finished the job (its own or
                                // a fallback), or NULL
    char *via;                  // DISPATCH only, read by the worker: the provider this
                                // attempt calls when it is not `provider` (a fallback)
    char *model;                // DISPATCH only, read by the worker: the model an llm
                                // attempt sends to `via`, or NULL to keep the request's
    char *webhook;              // the delivery state of its callback, JSON text
                                // (broker/delivery.h), or NULL when none was due
} job_t;

// job_new returns a zeroed record (status queued, priority 5). This
// function can't fail (out of memory aborts: common/mem.h).
job_t *job_new (void);

// job_destroy frees a record and its strings; nulls *self_p.
void job_destroy (job_t **self_p);

// job_dup returns a deep copy. This function can't fail.
job_t *job_dup (const job_t *self);

// job_pack appends the record's fields to a map being written.
void job_pack (const job_t *self, pack_writer_t *writer);

// job_unpack reads a record from a map. Returns NULL when a required field
// is missing or invalid (the map came from outside the process).
job_t *job_unpack (pack_reader_t *reader);

// job_render renders the API job object (SPEC §3) as compact JSON text. The
// stored metadata, result, error, usage and webhook texts are spliced in as they are, never
// parsed again: they passed common/jsontext's policy when they were made, so
// a read costs a copy, whatever the result holds. Returns a new string
// (caller frees). This function can't fail.
char *job_render (const job_t *self);

// job_to_json is job_render parsed back (under the jsontext policy), for
// callers that edit the object. Returns a new reference, or NULL when a
// stored text is not JSON within the policy.
json_t *job_to_json (const job_t *self);

// job_time_json renders wall ms as an RFC 3339 JSON string, or null when
// unset (0): how the job object shows a time. Returns a new reference.
json_t *job_time_json (int64_t wall_ms);

// job_set_str replaces *field with a copy of value (NULL clears it).
void job_set_str (char **field, const char *value);

// job_status_name returns "queued", "running", ... This function can't fail.
const char *job_status_name (job_status_t status);

// job_status_parse maps a name to a status; -1 if unknown.
int job_status_parse (const char *name);

// job_status_terminal is true for succeeded, failed and canceled.
bool job_status_terminal (job_status_t status);

// job_test runs the self-test.
void job_test (bool verbose);

#endif
