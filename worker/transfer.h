// transfer — one attempt of one job: a libcurl easy handle and its state.
//
// A transfer owns the job record, the request plan (request.h), the
// response being collected (response.h) and the easy handle configured for
// them: timeouts, size cap, http/https only, decoded content encodings, and
// for user-supplied URLs the SSRF check on every connection it opens. The
// worker adds the easy handle to its multi handle and, when libcurl says it
// is done, asks the transfer for the RESULT fields.
#ifndef JOBGATE_TRANSFER_H
#define JOBGATE_TRANSFER_H

#include "config.h"
#include "job.h"
#include "request.h"
#include "response.h"

#include <curl/curl.h>
#include <stdbool.h>
#include <stdint.h>

typedef struct _transfer_t transfer_t;

// Called once per delta of a streamed LLM answer, in order, while the
// transfer runs (inside libcurl's write callback, on the event loop): index
// counts 0, 1, 2, … per attempt; text (len bytes) is borrowed for the call.
typedef void (transfer_chunk_fn) (transfer_t *transfer, int index, const char *text,
                                  size_t len, void *arg);

// transfer_new prepares attempt number attempt of *job_p under config. On
// success it takes the job (and nulls *job_p). Returns NULL when the spec is
// invalid or libcurl refused an option, with a one-line reason in error;
// *job_p is then left to the caller.
transfer_t *transfer_new (job_t **job_p, int attempt, const config_t *config,
                          char *error, size_t error_size);

// transfer_destroy frees the transfer and its easy handle, which must no
// longer be in a multi handle; nulls *self_p.
void transfer_destroy (transfer_t **self_p);

// transfer_of returns the transfer an easy handle belongs to, or NULL.
transfer_t *transfer_of (CURL *easy);

// transfer_easy returns the easy handle (borrowed).
CURL *transfer_easy (transfer_t *self);

// transfer_job returns the job record (borrowed).
const job_t *transfer_job (const transfer_t *self);

// transfer_attempt returns the attempt number from DISPATCH.
int transfer_attempt (const transfer_t *self);

// transfer_request returns the request plan (borrowed).
const request_t *transfer_request (const transfer_t *self);

// transfer_start records when the attempt began (monotonic ms).
void transfer_start (transfer_t *self, int64_t now_ms);

// transfer_started_ms returns when the attempt began (monotonic ms).
int64_t transfer_started_ms (const transfer_t *self);

// transfer_finish turns libcurl's verdict into the RESULT fields; the caller
// frees them with response_outcome_free.
void transfer_finish (transfer_t *self, CURLcode code, int64_t now_ms,
                      response_outcome_t *out);

// transfer_set_handle / transfer_handle keep the owner's bookkeeping handle
// (the worker's list entry) with the transfer.
void transfer_set_handle (transfer_t *self, void *handle);
void *transfer_handle (const transfer_t *self);

// transfer_set_owner / transfer_owner keep which of the worker's libcurl
// multi handles runs the transfer.
void transfer_set_owner (transfer_t *self, void *owner);
void *transfer_owner (const transfer_t *self);

// transfer_set_chunk_fn routes the deltas of a streamed answer to fn.
void transfer_set_chunk_fn (transfer_t *self, transfer_chunk_fn *fn, void *arg);

// transfer_chunks returns how many deltas were relayed so far.
int transfer_chunks (const transfer_t *self);

// transfer_test runs the self-test (nothing leaves the machine).
void transfer_test (bool verbose);

#endif
