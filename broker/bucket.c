// bucket — a token bucket, time passed in.
#include "bucket.h"

#include <assert.h>
#include <stdio.h>

void
bucket_init (bucket_t *self, double rate, double burst, int64_t now_ms)
{
    *self = (bucket_t) { .rate = rate, .burst = burst, .tokens = burst, .refilled_ms = now_ms };
}

// s_refill adds the tokens earned since the last refill, up to the burst.
static void
s_refill (bucket_t *self, int64_t now_ms)
{
    self->tokens += (double) (now_ms - self->refilled_ms) * self->rate / 1000.0;
    self->refilled_ms = now_ms;
    if (self->tokens > self->burst)
        self->tokens = self->burst;
}

void
bucket_set_rate (bucket_t *self, double rate, double burst, int64_t now_ms)
{
    if (self->rate <= 0) {
        bucket_init (self, rate, burst, now_ms);
        return;
    }
    s_refill (self, now_ms);
    self->rate = rate;
    self->burst = burst;
    if (rate <= 0 || self->tokens > burst)
        self->tokens = burst;
}

bool
bucket_ready (bucket_t *self, int64_t now_ms, int64_t *wait_ms)
{
    *wait_ms = 0;
    if (self->rate <= 0)
        return true;
    s_refill (self, now_ms);
    if (self->tokens >= 1.0)
        return true;
    *wait_ms = (int64_t) ((1.0 - self->tokens) * 1000.0 / self->rate) + 1;
    return false;
}

void
bucket_take (bucket_t *self)
{
    if (self->rate > 0)
        self->tokens -= 1.0;
}

bool
bucket_full (bucket_t *self, int64_t now_ms)
{
    if (self->rate <= 0)
        return true;
    s_refill (self, now_ms);
    return self->tokens >= self->burst;
}

void
bucket_test (bool verbose)
{
    if (verbose)
        printf (" * bucket: ");
    int64_t now = 1000000, wait;
    bucket_t bucket;

    // 10 a second, a burst of 2: two at once, then one every 100 ms.
    bucket_init (&bucket, 10, 2, now);
    assert (bucket_full (&bucket, now));
    for (int i = 0; i < 2; i++) {
        assert (bucket_ready (&bucket, now, &wait) && wait == 0);
        bucket_take (&bucket);
    }
    assert (!bucket_full (&bucket, now));
    assert (!bucket_ready (&bucket, now, &wait) && wait == 101);
    assert (!bucket_ready (&bucket, now + 50, &wait) && wait == 51);
    assert (bucket_ready (&bucket, now + 100, &wait));
    bucket_take (&bucket);
    // Taking without a check goes into debt: the next token comes later.
    bucket_take (&bucket);
    assert (!bucket_ready (&bucket, now + 100, &wait) && wait == 201);
    // A long pause refills to the burst, never beyond it.
    assert (bucket_full (&bucket, now + 60000) && bucket.tokens == 2);

    // Under one a second: the wait is long, the burst one token.
    bucket_init (&bucket, 0.5, 1, now);
    bucket_take (&bucket);
    assert (!bucket_ready (&bucket, now, &wait) && wait == 2001);
    assert (!bucket_ready (&bucket, now + 1000, &wait) && wait == 1001);
    assert (bucket_ready (&bucket, now + 2000, &wait));

    // No limit: always ready, always full, taking changes nothing.
    bucket_init (&bucket, 0, 0, now);
    for (int i = 0; i < 1000; i++) {
        assert (bucket_ready (&bucket, now, &wait) && wait == 0);
        bucket_take (&bucket);
    }
    assert (bucket_full (&bucket, now) && bucket.tokens == 0);

    // A new rate (SIGHUP): what was earned is kept, held to the new burst.
    bucket_init (&bucket, 10, 10, now);
    for (int i = 0; i < 10; i++)
        bucket_take (&bucket);
    bucket_set_rate (&bucket, 2, 4, now + 300);   // 3 earned at the old rate
    assert (bucket.tokens == 3 && bucket.rate == 2 && bucket.burst == 4);
    assert (bucket_ready (&bucket, now + 300, &wait));
    bucket_set_rate (&bucket, 2, 1, now + 300);   // a smaller burst caps it
    assert (bucket.tokens == 1);
    bucket_take (&bucket);
    assert (!bucket_ready (&bucket, now + 300, &wait) && wait == 501);
    // From no limit to one: full; from one to none: ready at once.
    bucket_init (&bucket, 0, 0, now);
    bucket_set_rate (&bucket, 5, 2, now);
    assert (bucket.tokens == 2 && bucket.rate == 5);
    bucket_take (&bucket);
    bucket_take (&bucket);
    assert (!bucket_ready (&bucket, now, &wait));
    bucket_set_rate (&bucket, 0, 0, now);
    assert (bucket_ready (&bucket, now, &wait) && wait == 0);
    if (verbose)
        printf ("OK\n");
}
