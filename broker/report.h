// report — a worker's RESULT, read and judged (docs/protocol.md §3.2.1;
// issue 10 #4, issue 17 #4).
//
// What is stored is what can always be served: a result over
// broker.max_result_bytes fails the job as response_too_large and nothing
// of it is kept; a result that is not a JSON object within
// common/jsontext's policy, an error that is not such an object with a
// string "type" (or is over 64 KiB), or an unknown outcome is the worker's
// fault: the attempt counts as a retry with the error worker_invalid_result,
// and nothing of it is kept.
//
// What the answer says about the upstream, for its provider's breaker and
// pauses (broker/provider.h): whose fault a failure was is in the error's
// type (worker_…, invalid_request and blocked_by_policy are not the
// provider's), an overload is a 429 or 503 (a pause of 1 s when it names
// none), a final 4xx is an answer.
//
// What an llm answer says it cost (revision 3): usage is kept when it is a
// JSON object within the policy, at most REPORT_USAGE_MAX bytes, with at
// least one of prompt_tokens, completion_tokens, total_tokens as a count
// (a total it lacks is their sum); a model name when it is UTF-8 without
// control characters, at most REPORT_MODEL_MAX bytes; the ratelimit counts
// when they are not negative. Anything else of them is dropped (logged):
// it never fails the attempt, whose answer is the upstream's.
//
// No I/O, no state: a pure reading of one message body.
#ifndef JOBGATE_REPORT_H
#define JOBGATE_REPORT_H

#include "pack.h"
#include "provider.h"
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

// What an attempt came to (§3.2.1 "RESULT fields").
typedef enum {
    REPORT_SUCCEEDED,           // final: the result is the job's
    REPORT_FAILED,              // final: a non-429 4xx, a policy block, an invalid request
    REPORT_RETRY,               // retryable while attempts are left
    REPORT_HANDBACK,            // a draining worker gives the job back: not an attempt
    REPORT_CANCELED             // the answer to CANCEL
} report_outcome_t;

// A usage text is at most this long (a real one is ~100 bytes).
#define REPORT_USAGE_MAX 2048
// A model name is at most this long.
#define REPORT_MODEL_MAX 128

typedef struct {
    report_outcome_t outcome;   // the outcome, once checked
    char *result;               // the result object's text to store, or NULL (owned)
    char *error;                // the error object's text to store, or NULL (owned)
    int64_t retry_after_ms;     // the upstream's Retry-After (0..24 h): the least backoff
    provider_outcome_t verdict; // what the call says about the upstream
    int64_t pause_ms;           // the pause the upstream asked for (overloaded: 1 s at least)
    char error_type[32];        // the error's type, "" when the outcome says it all
    int upstream_status;        // the upstream's HTTP status, 0 = none
    char *usage;                // the usage object's text to store, or NULL (owned)
    int64_t prompt_tokens;      // its counts (0 when absent)
    int64_t completion_tokens;
    int64_t total_tokens;
    char model[REPORT_MODEL_MAX + 1]; // the model the upstream named, "" when none
    int64_t remaining_tokens;   // the provider's token budget left, -1 when unknown
    int64_t reset_tokens_ms;    // until that budget is whole again, -1 when unknown
} report_t;

// report_read reads and judges a RESULT body; max_result_bytes is
// broker.max_result_bytes; id (the job's) is for the log lines of what it
// refuses. This function can't fail: whatever the body holds, *self is a
// report (release it with report_free).
void report_read (report_t *self, pack_reader_t *body, size_t max_result_bytes, const char *id);

// report_free frees what a report holds.
void report_free (report_t *self);

// report_call is what the report tells the call's provider (latency and
// timeout are the scheduler's to fill). It borrows the report's error type.
provider_call_t report_call (const report_t *self);

// report_error_json makes an error object's JSON text,
// {"type":type,"message":message}; the caller frees it.
char *report_error_json (const char *type, const char *message);

// report_test runs the self-test.
void report_test (bool verbose);

#endif
