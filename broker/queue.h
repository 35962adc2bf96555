// queue — the broker's in-memory view of active jobs: entries, priority
// queues and intrusive lists. The store holds the records; an entry is what
// the scheduler needs to decide, about 150 bytes per job. Entries belong to
// broker/jobs.h, which makes, moves and frees them; an entry is on one list
// at most: a priority queue's level (queued), the running list of the worker
// holding it or of the orphans (running, broker/workers.h), the followers of
// a shared call (broker/cache.h), or none (waiting for its retry timer).
#ifndef JOBGATE_QUEUE_H
#define JOBGATE_QUEUE_H

#include "clock.h"
#include "evloop.h"
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define QUEUE_PRIORITIES 10

typedef enum {
    ENTRY_QUEUED,   // waiting in a priority queue
    ENTRY_RUNNING,  // dispatched to a worker, on its running list
    ENTRY_DELAYED,  // waiting for a retry timer, on no list
    ENTRY_SHARED    // waiting for the call of an identical job, on that call's list of
                    // followers (broker/cache.h)
} entry_state_t;

typedef struct _entry_t entry_t;
typedef struct _entry_list_t entry_list_t;
struct _jobs_t;
struct _remote_worker_t;
struct _tenant_t;
struct _cache_group_t;

struct _entry_t {
    char id[JOB_ID_LEN + 1];    // job id
    entry_state_t state;        // where the entry is
    int priority;               // 0..9
    int provider;               // index in the config's providers, or -1
    int route;                  // which of its provider's routes (0: itself, 1…: its
                                // fallbacks) the next attempt calls, or the running one does
    bool in_provider;           // counted in its provider's calls in flight
    bool awaited;               // a gateway holds a client until its end: the end's event
                                // carries the record (broker/jobs.h, jobs_await)
    int64_t dispatched_ms;      // monotonic time of the latest dispatch
    int64_t queued_at_ms;       // wall time it last entered a queue (the metrics' queue wait)
    char *chunks;               // this attempt's CHUNKs: [u32 index][u32 len][data]…
    size_t chunks_size;         // bytes in chunks
    int attempt;                // identity of the attempt running or last run (attempt_seq)
    int64_t attempt_timeout_ms; // that attempt's own timeout (the provider's breaker rule)
    int64_t expire_at_ms;       // wall ms by which it must have started; 0 = never
    int64_t lease_until_ms;     // monotonic deadline of the running attempt
    int64_t token_estimate;     // llm: tokens a call reserves of its provider's budget
                                // (broker/tokens.h); 0: not an llm call, not counted
    int64_t token_stamp;        // the running call's reservation, when token_reserved
    bool token_reserved;        // the running call holds a reservation not yet settled
    struct _remote_worker_t *worker; // the worker running it; NULL when not running, or an orphan
    struct _jobs_t *jobs;       // the jobs it is one of (for its retry timer)
    struct _tenant_t *tenant;   // the tenant whose quotas and lane it uses (never NULL)
    evloop_timer_t *timer;      // retry timer, when delayed
    struct _cache_group_t *group; // the shared call it leads or follows, or NULL
    entry_list_t *list;         // the list it is on, or NULL
    entry_t *prev;              // neighbours on that list
    entry_t *next;
};

struct _entry_list_t {
    entry_t *head;              // first (oldest)
    entry_t *tail;              // last (newest)
    size_t count;               // entries on the list
};

// entry_list_append puts an entry (on no list) at the tail of list.
void entry_list_append (entry_list_t *list, entry_t *entry);

// entry_list_prepend puts an entry (on no list) at the head of list.
void entry_list_prepend (entry_list_t *list, entry_t *entry);

// entry_list_remove takes an entry off whatever list it is on (if any).
void entry_list_remove (entry_t *entry);

typedef struct {
    entry_list_t levels[QUEUE_PRIORITIES]; // one FIFO per priority
    size_t count;                          // entries in all levels
} queue_t;

// queue_push appends an entry to the FIFO of its priority.
void queue_push (queue_t *self, entry_t *entry);

// queue_push_front puts an entry first in its priority (a job handed back
// by a draining worker keeps its place).
void queue_push_front (queue_t *self, entry_t *entry);

// queue_pop takes the oldest entry of the highest priority, or NULL.
entry_t *queue_pop (queue_t *self);

// queue_peek returns the entry queue_pop would take, left in place, or NULL.
entry_t *queue_peek (queue_t *self);

// queue_top_priority returns the highest priority waiting, or -1 if empty.
int queue_top_priority (queue_t *self);

// queue_remove takes an entry out of the queue; false (and nothing done)
// when it is not in it.
bool queue_remove (queue_t *self, entry_t *entry);

// queue_test runs the self-test.
void queue_test (bool verbose);

#endif
