// tokens — one provider's LLM token budget: providers.NAME.tokens_per_minute
// held globally across workers, and the upstream's own word on what is left
// (x-ratelimit-remaining-tokens / x-ratelimit-reset-tokens).
//
// The broker schedules every call, so it holds the budget for all workers
// (broker/scheduler.h asks before a call starts). A call reserves an
// estimate when it is dispatched (its prompt's bytes / 4 plus its
// max_tokens, or the provider's default_max_tokens: broker/jobs.c) and is
// settled with the usage its RESULT reports: the difference is refunded or
// charged to the moment it was reserved.
//
// Why a sliding window and not a token bucket like rate_limit's: a bucket
// of N tokens refilled at N a minute lets 2N through in one minute (a full
// bucket, then a minute of refill), and the promise is that no sliding
// minute sees more than N. The window counts what was reserved in the last
// 60 s; a call may start when its estimate fits under N (or, when it is
// larger than N, when the window is empty: it runs alone rather than
// never). Reservations are summed per 100 ms slot, and a slot counts until
// 60 s after its latest reservation, so no reservation leaves the window
// early: for every sliding minute, the reservations it holds fit under N,
// and only a call that used more than its estimate can take it over.
//
// The upstream's word: a RESULT saying fewer tokens remain than the next
// call's estimate holds the provider's llm calls until the reset it named
// (each call dispatched meanwhile takes its estimate off what remains).
//
// No I/O; time passed in (monotonic ms). A budget of 0 counts nothing and
// holds only on the upstream's word.
#ifndef JOBGATE_TOKENS_H
#define JOBGATE_TOKENS_H

#include <stdbool.h>
#include <stdint.h>

// The window and the width of its slots.
#define TOKENS_WINDOW_MS 60000
#define TOKENS_SLOT_MS 100

typedef struct _tokens_t tokens_t;

// tokens_new makes the budget of per_minute tokens (0: no budget). This
// function can't fail.
tokens_t *tokens_new (uint64_t per_minute);

// tokens_destroy frees it; nulls *self_p.
void tokens_destroy (tokens_t **self_p);

// tokens_ready is true when a call with this estimate may start at now_ms.
// When false, *wake_ms is the monotonic time worth looking again.
bool tokens_ready (tokens_t *self, int64_t estimate, int64_t now_ms, int64_t *wake_ms);

// tokens_reserve takes a starting call's estimate at now_ms. Returns the
// reservation's stamp, which tokens_settle takes.
int64_t tokens_reserve (tokens_t *self, int64_t estimate, int64_t now_ms);

// tokens_settle replaces a reservation's estimate by the tokens the call
// used (the usage its RESULT reported). A reservation already out of the
// window changes nothing.
void tokens_settle (tokens_t *self, int64_t stamp, int64_t estimate, int64_t used,
                    int64_t now_ms);

// tokens_report takes the upstream's word at now_ms: remaining tokens
// (-1: unknown) until reset_ms from now (-1: unknown; then nothing holds).
void tokens_report (tokens_t *self, int64_t remaining, int64_t reset_ms, int64_t now_ms);

// tokens_window returns the tokens counted in the window at now_ms.
uint64_t tokens_window (tokens_t *self, int64_t now_ms);

// tokens_held_until returns until when the upstream's word holds calls
// (monotonic ms), 0 when it does not.
int64_t tokens_held_until (const tokens_t *self, int64_t now_ms);

// tokens_test runs the self-test.
void tokens_test (bool verbose);

#endif
