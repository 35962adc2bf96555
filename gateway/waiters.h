// waiters — who is parked on which job: long polls (?wait=N), Prefer: wait
// submissions and event streams, by job id.
//
// A request becomes a waiter before it asks the broker about its job, so
// that an event racing the answer is not missed, and stops being one when
// it is answered or its client leaves. Events find a job's waiters here;
// a gap in the events and the periodic recheck find every waiter, or those
// that have not read their job for a while (an event lost in a way the
// sequence numbers cannot show). What waking means — reading the job
// again — is the owner's (gateway.c); this is the index. State only: no
// I/O, the time is passed in.
//
// A waiter_t is embedded in its owner (no allocation per waiter beyond the
// index's own entry per job); its fields are this module's.
#ifndef JOBGATE_WAITERS_H
#define JOBGATE_WAITERS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct _waiters_t waiters_t;
typedef struct _waiter_t waiter_t;

struct _waiter_t {
    waiter_t *prev;             // neighbours among the job's waiters
    waiter_t *next;
    const char *job_id;         // the job waited on (the owner's text, borrowed)
    void *owner;                // who waits
    int64_t read_ms;            // when the owner last read its job (or began to wait)
    bool linked;                // on the index
};

// Called for a waiter by waiters_each; it must not add or remove waiters.
typedef void (waiters_fn) (waiter_t *waiter, void *arg);

// waiters_new makes an empty index. This function can't fail.
waiters_t *waiters_new (void);

// waiters_destroy frees the index (not the waiters); nulls *self_p.
void waiters_destroy (waiters_t **self_p);

// waiters_add makes owner wait on job_id (NUL-terminated, kept borrowed
// until removed: the owner must not change it meanwhile) from now_ms.
// waiter must not be waiting already.
void waiters_add (waiters_t *self, waiter_t *waiter, const char *job_id, void *owner,
                  int64_t now_ms);

// waiters_remove stops waiter waiting; a waiter not waiting is ignored.
void waiters_remove (waiters_t *self, waiter_t *waiter);

// waiters_read records that waiter read its job at now_ms.
void waiters_read (waiter_t *waiter, int64_t now_ms);

// waiters_first returns the first waiter on job_id (then follow ->next), or
// NULL when nobody waits on it.
waiter_t *waiters_first (waiters_t *self, const char *job_id);

// waiters_each calls fn for every waiter on job_id, or on any job when
// job_id is NULL, that has not read its job since now_ms - min_age_ms
// (min_age_ms 0: every one).
void waiters_each (waiters_t *self, const char *job_id, int64_t now_ms, int64_t min_age_ms,
                   waiters_fn *fn, void *arg);

// waiters_count returns how many waiters there are, on every job.
size_t waiters_count (const waiters_t *self);

// waiters_test runs the self-test.
void waiters_test (bool verbose);

#endif
