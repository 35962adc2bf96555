// bucket — a token bucket: tokens earned at a rate, held up to a burst, one
// taken per event. The broker's two rate limits are buckets: a provider's
// calls (broker/provider.h, providers.NAME.rate_limit and burst) and a
// tenant's submissions (broker/tenant.h, quotas.TENANT.submit_rate).
//
// A value type (no allocation), embedded in its owner. No I/O: time is
// passed in (monotonic milliseconds). A rate of 0 or less is no limit: the
// bucket is always ready and taking from it changes nothing.
#ifndef JOBGATE_BUCKET_H
#define JOBGATE_BUCKET_H

#include <stdbool.h>
#include <stdint.h>

typedef struct {
    double rate;                // tokens earned per second; <= 0: no limit
    double burst;               // most tokens held
    double tokens;              // tokens held (below 1 after taking without a check)
    int64_t refilled_ms;        // monotonic time of the last refill
} bucket_t;

// bucket_init makes a full bucket of rate tokens a second, up to burst.
void bucket_init (bucket_t *self, double rate, double burst, int64_t now_ms);

// bucket_set_rate changes the rate and burst (a reloaded configuration)
// keeping what was earned: the bucket is refilled to now_ms at the old
// rate, then held to the new burst; a bucket that had no limit starts full.
void bucket_set_rate (bucket_t *self, double rate, double burst, int64_t now_ms);

// bucket_ready refills the bucket to now_ms and is true when it holds a
// token (always without a limit). When false, *wait_ms is how long until
// it holds one (at least 1 ms).
bool bucket_ready (bucket_t *self, int64_t now_ms, int64_t *wait_ms);

// bucket_take takes one token; the level may fall below 1 (a caller that
// takes without bucket_ready waits longer next time).
void bucket_take (bucket_t *self);

// bucket_full refills the bucket to now_ms and is true when it is full
// again: nothing of its past use is left to remember.
bool bucket_full (bucket_t *self, int64_t now_ms);

// bucket_test runs the self-test.
void bucket_test (bool verbose);

#endif
