// waiters — who is parked on which job.
#include "waiters.h"
#include "mem.h"

#include <assert.h>
#include <czmq.h>
#include <stdio.h>
#include <string.h>

struct _waiters_t {
    zhashx_t *first;            // job id → its first waiter (a list through prev/next)
    size_t count;               // waiters on every job
    bool walking;               // waiters_each is calling: no change allowed
};

waiters_t *
waiters_new (void)
{
    waiters_t *self = mem_calloc (1, sizeof *self);
    self->first = mem_lib (zhashx_new ());
    return self;
}

void
waiters_destroy (waiters_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    waiters_t *self = *self_p;
    zhashx_destroy (&self->first);
    free (self);
    *self_p = NULL;
}

void
waiters_add (waiters_t *self, waiter_t *waiter, const char *job_id, void *owner,
             int64_t now_ms)
{
    assert (!waiter->linked && !self->walking);
    waiter_t *head = zhashx_lookup (self->first, job_id);
    *waiter = (waiter_t) { .next = head, .job_id = job_id, .owner = owner, .read_ms = now_ms,
                           .linked = true };
    if (head)
        head->prev = waiter;
    zhashx_update (self->first, job_id, waiter);
    self->count++;
}

void
waiters_remove (waiters_t *self, waiter_t *waiter)
{
    if (!waiter->linked)
        return;
    assert (!self->walking);
    if (waiter->prev)
        waiter->prev->next = waiter->next;
    else if (waiter->next)
        zhashx_update (self->first, waiter->job_id, waiter->next);
    else
        zhashx_delete (self->first, waiter->job_id);
    if (waiter->next)
        waiter->next->prev = waiter->prev;
    waiter->prev = waiter->next = NULL;
    waiter->linked = false;
    self->count--;
}

void
waiters_read (waiter_t *waiter, int64_t now_ms)
{
    waiter->read_ms = now_ms;
}

waiter_t *
waiters_first (waiters_t *self, const char *job_id)
{
    return zhashx_lookup (self->first, job_id);
}

void
waiters_each (waiters_t *self, const char *job_id, int64_t now_ms, int64_t min_age_ms,
              waiters_fn *fn, void *arg)
{
    self->walking = true;
    if (job_id) {
        for (waiter_t *waiter = waiters_first (self, job_id); waiter; waiter = waiter->next)
            if (min_age_ms <= 0 || now_ms - waiter->read_ms >= min_age_ms)
                fn (waiter, arg);
    }
    else
        for (waiter_t *head = zhashx_first (self->first); head; head = zhashx_next (self->first))
            for (waiter_t *waiter = head; waiter; waiter = waiter->next)
                if (min_age_ms <= 0 || now_ms - waiter->read_ms >= min_age_ms)
                    fn (waiter, arg);
    self->walking = false;
}

size_t
waiters_count (const waiters_t *self)
{
    return self->count;
}

// --- self-test ---

// s_test_mark counts a waiter's calls in its owner (an int).
static void
s_test_mark (waiter_t *waiter, void *arg)
{
    (*(int *) waiter->owner)++;
    (*(int *) arg)++;
}

void
waiters_test (bool verbose)
{
    if (verbose)
        printf (" * waiters: ");
    waiters_t *waiters = waiters_new ();
    const char *a = "0190a0b2-1c3d-7e4f-8a5b-6c7d8e9f0a1b";
    const char *b = "0190a0b2-1c3d-7e4f-8a5b-6c7d8e9f0a1c";
    waiter_t w[4] = { { 0 } };
    int calls[4] = { 0 };
    waiters_add (waiters, &w[0], a, &calls[0], 1000);
    waiters_add (waiters, &w[1], a, &calls[1], 2000);
    waiters_add (waiters, &w[2], b, &calls[2], 3000);
    assert (waiters_count (waiters) == 3);
    // A job's waiters, newest first; none for a job nobody waits on.
    assert (waiters_first (waiters, a) == &w[1] && w[1].next == &w[0] && !w[0].next);
    assert (waiters_first (waiters, b) == &w[2]);
    assert (!waiters_first (waiters, "0190a0b2-1c3d-7e4f-8a5b-6c7d8e9f0a1d"));

    // By job, by age, all.
    int total = 0;
    waiters_each (waiters, a, 3000, 0, s_test_mark, &total);
    assert (total == 2 && calls[0] == 1 && calls[1] == 1 && calls[2] == 0);
    total = 0;
    waiters_each (waiters, NULL, 3000, 1500, s_test_mark, &total);     // read before 1500
    assert (total == 1 && calls[0] == 2 && calls[1] == 1);
    waiters_read (&w[0], 2900);
    total = 0;
    waiters_each (waiters, NULL, 3000, 1000, s_test_mark, &total);     // before 2000
    assert (total == 1 && calls[1] == 2 && calls[0] == 2);
    total = 0;
    waiters_each (waiters, NULL, 3000, 0, s_test_mark, &total);
    assert (total == 3 && calls[2] == 1);

    // Removing from the head, the middle and the end keeps each list whole;
    // a job with no waiter left is gone from the index.
    waiters_add (waiters, &w[3], a, &calls[3], 4000);                   // a: 3, 1, 0
    waiters_remove (waiters, &w[1]);
    assert (waiters_first (waiters, a) == &w[3] && w[3].next == &w[0] && w[0].prev == &w[3]);
    waiters_remove (waiters, &w[1]);                                    // not waiting: ignored
    waiters_remove (waiters, &w[3]);
    assert (waiters_first (waiters, a) == &w[0] && !w[0].prev);
    waiters_remove (waiters, &w[0]);
    assert (!waiters_first (waiters, a) && waiters_count (waiters) == 1);
    // A waiter can wait again, on another job (an idempotent resubmission
    // names the original job).
    waiters_add (waiters, &w[0], b, &calls[0], 5000);
    assert (waiters_first (waiters, b) == &w[0] && w[0].next == &w[2]);
    waiters_remove (waiters, &w[2]);
    waiters_remove (waiters, &w[0]);
    assert (waiters_count (waiters) == 0 && !waiters_first (waiters, b));
    waiters_destroy (&waiters);
    waiters_destroy (&waiters);
    if (verbose)
        printf ("OK\n");
}
