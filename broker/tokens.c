// tokens — one provider's LLM token budget per sliding minute.
#include "tokens.h"
#include "mem.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>

// Slots alive at once: a slot lives until 60 s after its latest
// reservation, and slots are 100 ms apart, so at most 602; a few more of room.
#define SLOTS_MAX (TOKENS_WINDOW_MS / TOKENS_SLOT_MS + 8)

// The reservations of one 100 ms slot.
typedef struct {
    int64_t quantum;            // now_ms / TOKENS_SLOT_MS of its reservations
    uint64_t tokens;            // what they reserved (settled)
    int64_t last_ms;            // its latest reservation: it counts until 60 s after
} s_slot_t;

struct _tokens_t {
    uint64_t per_minute;        // the budget, 0 = none
    s_slot_t slots[SLOTS_MAX];  // a ring, oldest at head
    size_t head;                // index of the oldest slot
    size_t count;               // slots alive
    uint64_t sum;               // tokens of the slots alive
    int64_t held_until_ms;      // the upstream's word holds until then (monotonic)
    int64_t remaining;          // what it said remains, less what started since
};

tokens_t *
tokens_new (uint64_t per_minute)
{
    tokens_t *self = mem_calloc (1, sizeof *self);
    self->per_minute = per_minute;
    return self;
}

void
tokens_destroy (tokens_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    free (*self_p);
    *self_p = NULL;
}

// s_slot returns the i-th slot alive, oldest first.
static s_slot_t *
s_slot (tokens_t *self, size_t i)
{
    return &self->slots[(self->head + i) % SLOTS_MAX];
}

// s_expire drops the slots whose latest reservation is a minute old.
static void
s_expire (tokens_t *self, int64_t now_ms)
{
    while (self->count > 0 && s_slot (self, 0)->last_ms + TOKENS_WINDOW_MS <= now_ms) {
        self->sum -= s_slot (self, 0)->tokens;
        self->head = (self->head + 1) % SLOTS_MAX;
        self->count--;
    }
}

bool
tokens_ready (tokens_t *self, int64_t estimate, int64_t now_ms, int64_t *wake_ms)
{
    *wake_ms = 0;
    s_expire (self, now_ms);
    if (self->held_until_ms > now_ms && self->remaining < estimate) {
        *wake_ms = self->held_until_ms;
        return false;
    }
    if (self->per_minute == 0 || self->sum == 0
        || self->sum + (uint64_t) estimate <= self->per_minute)
        return true;
    // The first moment enough of the window has left it.
    uint64_t left = self->sum;
    for (size_t i = 0; i < self->count; i++) {
        left -= s_slot (self, i)->tokens;
        if (left == 0 || left + (uint64_t) estimate <= self->per_minute) {
            *wake_ms = s_slot (self, i)->last_ms + TOKENS_WINDOW_MS;
            break;
        }
    }
    return false;
}

int64_t
tokens_reserve (tokens_t *self, int64_t estimate, int64_t now_ms)
{
    s_expire (self, now_ms);
    if (estimate < 0)
        estimate = 0;
    int64_t quantum = now_ms / TOKENS_SLOT_MS;
    s_slot_t *newest = self->count > 0 ? s_slot (self, self->count - 1) : NULL;
    // A full ring (which the bound above rules out) adds to its newest
    // slot: that keeps the older reservations longer, never shorter.
    if (!newest || (newest->quantum != quantum && self->count < SLOTS_MAX)) {
        newest = &self->slots[(self->head + self->count) % SLOTS_MAX];
        *newest = (s_slot_t) { .quantum = quantum };
        self->count++;
    }
    newest->tokens += (uint64_t) estimate;
    newest->last_ms = now_ms;
    self->sum += (uint64_t) estimate;
    if (self->held_until_ms > now_ms)
        self->remaining -= estimate;
    return newest->quantum;
}

void
tokens_settle (tokens_t *self, int64_t stamp, int64_t estimate, int64_t used, int64_t now_ms)
{
    s_expire (self, now_ms);
    for (size_t i = self->count; i-- > 0;) {
        s_slot_t *slot = s_slot (self, i);
        if (slot->quantum < stamp)
            return;
        if (slot->quantum != stamp)
            continue;
        // Never below what the slot's other reservations hold.
        int64_t change = used - estimate;
        if (change < 0 && (uint64_t) -change > slot->tokens)
            change = -(int64_t) slot->tokens;
        slot->tokens = (uint64_t) ((int64_t) slot->tokens + change);
        self->sum = (uint64_t) ((int64_t) self->sum + change);
        return;
    }
}

void
tokens_report (tokens_t *self, int64_t remaining, int64_t reset_ms, int64_t now_ms)
{
    if (remaining < 0 || reset_ms < 0)
        return;
    self->remaining = remaining;
    self->held_until_ms = now_ms + reset_ms;
}

uint64_t
tokens_window (tokens_t *self, int64_t now_ms)
{
    s_expire (self, now_ms);
    return self->sum;
}

int64_t
tokens_held_until (const tokens_t *self, int64_t now_ms)
{
    return self->held_until_ms > now_ms ? self->held_until_ms : 0;
}

// --- self-test ---

// A call the simulation started: when and what it reserved.
typedef struct {
    int64_t at;                 // monotonic ms
    int64_t tokens;             // its reservation, settled
} s_started_t;

void
tokens_test (bool verbose)
{
    if (verbose)
        printf (" * tokens: ");
    int64_t t0 = 1000000, wake;
    tokens_t *tokens = tokens_new (1000);
    // Two reservations in one slot, one in the next: 900 of 1000.
    assert (tokens_ready (tokens, 300, t0, &wake) && wake == 0);
    int64_t first = tokens_reserve (tokens, 300, t0);
    assert (tokens_reserve (tokens, 300, t0 + 50) == first);
    int64_t third = tokens_reserve (tokens, 300, t0 + 150);
    assert (third == first + 1 && tokens_window (tokens, t0 + 150) == 900);
    assert (tokens_ready (tokens, 100, t0 + 200, &wake));
    // 101 more must wait for the first slot to leave the window: 60 s
    // after its latest reservation, not after its first.
    assert (!tokens_ready (tokens, 101, t0 + 200, &wake) && wake == t0 + 50 + TOKENS_WINDOW_MS);
    assert (!tokens_ready (tokens, 101, t0 + 60049, &wake));
    assert (tokens_ready (tokens, 101, t0 + 60050, &wake));
    assert (tokens_window (tokens, t0 + 60050) == 300);
    // Settled: a call that used less gives back, one that used more takes
    // more; a reservation gone from the window changes nothing.
    tokens_settle (tokens, third, 300, 120, t0 + 60060);
    assert (tokens_window (tokens, t0 + 60060) == 120);
    tokens_settle (tokens, third, 120, 700, t0 + 60070);
    assert (tokens_window (tokens, t0 + 60070) == 700);
    tokens_settle (tokens, first, 300, 0, t0 + 60080);
    assert (tokens_window (tokens, t0 + 60080) == 700);
    // Never below nothing.
    tokens_settle (tokens, third, 5000, 0, t0 + 60090);
    assert (tokens_window (tokens, t0 + 60090) == 0);
    // A call larger than the whole budget runs alone.
    int64_t t1 = t0 + 200000;
    assert (tokens_ready (tokens, 5000, t1, &wake));
    tokens_reserve (tokens, 5000, t1);
    assert (!tokens_ready (tokens, 1, t1 + 1, &wake) && wake == t1 + TOKENS_WINDOW_MS);
    assert (!tokens_ready (tokens, 5000, t1 + 59999, &wake));
    assert (tokens_ready (tokens, 5000, t1 + 60000, &wake));
    tokens_destroy (&tokens);
    tokens_destroy (&tokens);

    // The upstream's word: 500 left for 2 s. Calls start while their
    // estimate fits in what is left, then wait for the reset.
    tokens = tokens_new (0);
    assert (tokens_held_until (tokens, t0) == 0);
    tokens_report (tokens, 500, 2000, t0);
    assert (tokens_held_until (tokens, t0) == t0 + 2000);
    assert (tokens_ready (tokens, 400, t0, &wake));
    tokens_reserve (tokens, 400, t0);
    assert (!tokens_ready (tokens, 400, t0 + 10, &wake) && wake == t0 + 2000);
    assert (tokens_ready (tokens, 100, t0 + 10, &wake));
    assert (tokens_ready (tokens, 400, t0 + 2000, &wake));
    // No budget: the window counts nothing that holds a call back.
    for (int i = 0; i < 100; i++)
        tokens_reserve (tokens, 1000000, t0 + 3000);
    assert (tokens_ready (tokens, 1000000, t0 + 3000, &wake));
    // A word without a reset holds nothing.
    tokens_report (tokens, 0, -1, t0 + 4000);
    assert (tokens_ready (tokens, 10, t0 + 4000, &wake));
    tokens_destroy (&tokens);

    // The promise, checked on a long run: a dispatcher that starts what it
    // may every 7 ms, with estimates of 1 to 400 tokens, some calls using
    // less than reserved; then no sliding minute holds more than the budget.
    const uint64_t budget = 5000;
    tokens = tokens_new (budget);
    size_t started_max = 20000, started_count = 0;
    s_started_t *started = mem_calloc (started_max, sizeof *started);
    uint32_t seed = 12345;
    for (int64_t now = t0; now < t0 + 10 * TOKENS_WINDOW_MS && started_count < started_max;
         now += 7) {
        seed = seed * 1103515245 + 12345;
        int64_t estimate = 1 + (seed >> 16) % 400;
        if (!tokens_ready (tokens, estimate, now, &wake)) {
            assert (wake > now);
            continue;
        }
        int64_t stamp = tokens_reserve (tokens, estimate, now);
        int64_t used = (seed >> 8) % 3 == 0 ? estimate / 2 : estimate;
        tokens_settle (tokens, stamp, estimate, used, now + 3);
        started[started_count++] = (s_started_t) { .at = now, .tokens = used };
    }
    assert (started_count > 100);
    size_t tail = 0;
    uint64_t in_window = 0, most = 0;
    for (size_t head = 0; head < started_count; head++) {
        in_window += (uint64_t) started[head].tokens;
        while (started[tail].at + TOKENS_WINDOW_MS <= started[head].at)
            in_window -= (uint64_t) started[tail++].tokens;
        if (in_window > most)
            most = in_window;
    }
    assert (most <= budget && most > budget / 2);
    free (started);
    tokens_destroy (&tokens);
    if (verbose)
        printf ("OK\n");
}
