// throughput — per-interval counts of job transitions, a fixed ring.
#include "throughput.h"
#include "clock.h"
#include "mem.h"

#include <assert.h>
#include <stdio.h>
#include <string.h>

// The names of the kinds, as the JSON calls the series.
static const char *const s_kind_names[THROUGHPUT_KINDS_] = {
    [THROUGHPUT_SUBMITTED] = "submitted", [THROUGHPUT_STARTED] = "started",
    [THROUGHPUT_REQUEUED] = "requeued",   [THROUGHPUT_SUCCEEDED] = "succeeded",
    [THROUGHPUT_FAILED] = "failed",       [THROUGHPUT_CANCELED] = "canceled",
};

// One interval's counts.
typedef struct {
    int64_t interval;           // its number: wall ms / THROUGHPUT_INTERVAL_MS; -1 = unused
    uint64_t counts[THROUGHPUT_KINDS_]; // events of each kind in it
} s_slot_t;

struct _throughput_t {
    s_slot_t slots[THROUGHPUT_INTERVALS]; // interval n lives in slot n % THROUGHPUT_INTERVALS
};

throughput_t *
throughput_new (void)
{
    throughput_t *self = mem_calloc (1, sizeof *self);
    for (size_t i = 0; i < THROUGHPUT_INTERVALS; i++)
        self->slots[i].interval = -1;
    return self;
}

void
throughput_destroy (throughput_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    free (*self_p);
    *self_p = NULL;
}

// s_slot returns the slot of interval, or NULL when another (later)
// interval holds it: interval is then older than the ring.
static s_slot_t *
s_slot (throughput_t *self, int64_t interval)
{
    s_slot_t *slot = &self->slots[interval % THROUGHPUT_INTERVALS];
    if (slot->interval == interval)
        return slot;
    if (slot->interval > interval)
        return NULL;
    // A slot last used a ring's length (or more) ago starts afresh.
    memset (slot->counts, 0, sizeof slot->counts);
    slot->interval = interval;
    return slot;
}

void
throughput_count (throughput_t *self, throughput_kind_t kind, int64_t wall_ms)
{
    if (wall_ms < 0 || (int) kind < 0 || kind >= THROUGHPUT_KINDS_)
        return;
    s_slot_t *slot = s_slot (self, wall_ms / THROUGHPUT_INTERVAL_MS);
    if (slot)
        slot->counts[kind]++;
}

void
throughput_status (throughput_t *self, job_status_t status, int64_t attempt, int64_t wall_ms)
{
    if (status == JOB_RUNNING)
        throughput_count (self, THROUGHPUT_STARTED, wall_ms);
    else if (status == JOB_QUEUED && attempt > 0)
        throughput_count (self, THROUGHPUT_REQUEUED, wall_ms);
    else if (status == JOB_SUCCEEDED)
        throughput_count (self, THROUGHPUT_SUCCEEDED, wall_ms);
    else if (status == JOB_FAILED)
        throughput_count (self, THROUGHPUT_FAILED, wall_ms);
    else if (status == JOB_CANCELED)
        throughput_count (self, THROUGHPUT_CANCELED, wall_ms);
}

// s_count_in returns the count of kind in interval (0 when the ring does
// not hold it).
static uint64_t
s_count_in (const throughput_t *self, throughput_kind_t kind, int64_t interval)
{
    if (interval < 0)
        return 0;
    const s_slot_t *slot = &self->slots[interval % THROUGHPUT_INTERVALS];
    return slot->interval == interval ? slot->counts[kind] : 0;
}

uint64_t
throughput_total (throughput_t *self, throughput_kind_t kind, int64_t wall_ms)
{
    int64_t last = (wall_ms < 0 ? 0 : wall_ms) / THROUGHPUT_INTERVAL_MS;
    uint64_t total = 0;
    for (int64_t i = last - THROUGHPUT_INTERVALS + 1; i <= last; i++)
        total += s_count_in (self, kind, i);
    return total;
}

// s_time_json is wall_ms as an RFC 3339 string.
static json_t *
s_time_json (int64_t wall_ms)
{
    char stamp[40];
    clock_rfc3339 (wall_ms, stamp, sizeof stamp);
    return json_string (stamp);
}

json_t *
throughput_json (throughput_t *self, int64_t wall_ms)
{
    if (wall_ms < 0)
        wall_ms = 0;
    int64_t last = wall_ms / THROUGHPUT_INTERVAL_MS;
    int64_t first = last - THROUGHPUT_INTERVALS + 1;
    json_t *series = json_object ();
    for (int kind = 0; kind < THROUGHPUT_KINDS_; kind++) {
        json_t *counts = json_array ();
        for (int64_t i = first; i <= last; i++)
            json_array_append_new (counts,
                                   json_integer ((json_int_t) s_count_in (self, kind, i)));
        json_object_set_new (series, s_kind_names[kind], counts);
    }
    return json_pack ("{s:i, s:i, s:o, s:o, s:o}", "interval_s", THROUGHPUT_INTERVAL_MS / 1000,
                      "intervals", THROUGHPUT_INTERVALS, "from",
                      s_time_json (first * THROUGHPUT_INTERVAL_MS), "now", s_time_json (wall_ms),
                      "series", series);
}

// --- self-test ---

// s_test_series returns series name's count at index of the ring's JSON.
static json_int_t
s_test_series (json_t *json, const char *name, size_t index)
{
    json_t *counts = json_object_get (json_object_get (json, "series"), name);
    assert (json_array_size (counts) == THROUGHPUT_INTERVALS);
    return json_integer_value (json_array_get (counts, index));
}

void
throughput_test (bool verbose)
{
    if (verbose)
        printf (" * throughput: ");
    // 2026-11-30T09:00:00Z, the start of an interval.
    const int64_t t0 = 1796029200000;
    assert (t0 % THROUGHPUT_INTERVAL_MS == 0);
    throughput_t *ring = throughput_new ();

    // Each status event counts as what it means; a first queued does not.
    throughput_count (ring, THROUGHPUT_SUBMITTED, t0);
    throughput_status (ring, JOB_QUEUED, 0, t0);
    throughput_status (ring, JOB_RUNNING, 1, t0 + 1);
    throughput_status (ring, JOB_QUEUED, 1, t0 + 2);      // a retryable failure
    throughput_status (ring, JOB_RUNNING, 2, t0 + 3);
    throughput_status (ring, JOB_SUCCEEDED, 2, t0 + 9999);
    throughput_status (ring, JOB_FAILED, 3, t0 + 10000);   // the next interval
    throughput_status (ring, JOB_CANCELED, 0, t0 + 10001);
    assert (throughput_total (ring, THROUGHPUT_SUBMITTED, t0) == 1);
    assert (throughput_total (ring, THROUGHPUT_STARTED, t0) == 2);
    assert (throughput_total (ring, THROUGHPUT_REQUEUED, t0) == 1);
    assert (throughput_total (ring, THROUGHPUT_SUCCEEDED, t0) == 1);
    // Seen from the first interval, the second is still to come.
    assert (throughput_total (ring, THROUGHPUT_FAILED, t0) == 0);
    assert (throughput_total (ring, THROUGHPUT_FAILED, t0 + 10000) == 1);
    assert (throughput_total (ring, THROUGHPUT_CANCELED, t0 + 10000) == 1);

    // The JSON: oldest first, the current interval last.
    json_t *json = throughput_json (ring, t0 + 15000);
    assert (json_integer_value (json_object_get (json, "interval_s")) == 10);
    assert (json_integer_value (json_object_get (json, "intervals")) == THROUGHPUT_INTERVALS);
    assert (strcmp (json_string_value (json_object_get (json, "from")),
                    "2026-11-30T08:45:20.000Z") == 0);
    assert (strcmp (json_string_value (json_object_get (json, "now")),
                    "2026-11-30T09:00:15.000Z") == 0);
    assert (s_test_series (json, "submitted", THROUGHPUT_INTERVALS - 2) == 1);
    assert (s_test_series (json, "started", THROUGHPUT_INTERVALS - 2) == 2);
    assert (s_test_series (json, "requeued", THROUGHPUT_INTERVALS - 2) == 1);
    assert (s_test_series (json, "succeeded", THROUGHPUT_INTERVALS - 2) == 1);
    assert (s_test_series (json, "succeeded", THROUGHPUT_INTERVALS - 1) == 0);
    assert (s_test_series (json, "failed", THROUGHPUT_INTERVALS - 1) == 1);
    assert (s_test_series (json, "canceled", THROUGHPUT_INTERVALS - 1) == 1);
    assert (s_test_series (json, "failed", 0) == 0);
    json_decref (json);

    // 15 minutes on, the first interval has left the ring; the second is
    // the oldest one kept.
    int64_t later = t0 + (int64_t) THROUGHPUT_INTERVALS * THROUGHPUT_INTERVAL_MS;
    assert (throughput_total (ring, THROUGHPUT_SUCCEEDED, later) == 0);
    assert (throughput_total (ring, THROUGHPUT_FAILED, later) == 1);
    json = throughput_json (ring, later);
    assert (s_test_series (json, "failed", 0) == 1);
    json_decref (json);

    // A new count in a reused slot starts it afresh: interval 0's counts
    // are gone, not added to.
    throughput_status (ring, JOB_SUCCEEDED, 1, later + 5);
    assert (throughput_total (ring, THROUGHPUT_SUCCEEDED, later) == 1);
    assert (throughput_total (ring, THROUGHPUT_STARTED, later) == 0);

    // The wall clock stepped back: within the ring it counts where it
    // falls; before the ring it is dropped (it never lands on a newer
    // interval's slot).
    throughput_status (ring, JOB_FAILED, 1, later - 20000);
    assert (throughput_total (ring, THROUGHPUT_FAILED, later) == 2);
    throughput_status (ring, JOB_FAILED, 1, t0 + 5);       // interval 0: its slot is reused
    throughput_status (ring, JOB_FAILED, 1, t0 - 3600000);
    assert (throughput_total (ring, THROUGHPUT_FAILED, later) == 2);
    json = throughput_json (ring, later);
    assert (s_test_series (json, "succeeded", THROUGHPUT_INTERVALS - 1) == 1);
    json_decref (json);

    // Nonsense is ignored, never a crash.
    throughput_count (ring, THROUGHPUT_KINDS_, later);
    throughput_count (ring, (throughput_kind_t) -1, later);
    throughput_count (ring, THROUGHPUT_SUBMITTED, -1);
    json = throughput_json (ring, -5);
    assert (s_test_series (json, "submitted", THROUGHPUT_INTERVALS - 1) == 0);
    json_decref (json);

    throughput_destroy (&ring);
    throughput_destroy (&ring);
    if (verbose)
        printf ("OK\n");
}
