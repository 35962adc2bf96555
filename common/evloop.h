// evloop — the one event loop of a jobgate process (epoll).
//
// It joins plain file descriptors (sockets of libcurl and libmicrohttpd),
// ZeroMQ sockets (through ZMQ_FD, drained while ZMQ_EVENTS says readable),
// one-shot and repeating timers (a binary min-heap), wake-up deadlines for
// the idle hook, and signals (signalfd). Nothing here blocks except the
// loop's wait: epoll_wait, whose timeout is the nearest timer, and the
// pause before it of a paced turn (evloop_pace), which a signal ends.
#ifndef JOBGATE_EVLOOP_H
#define JOBGATE_EVLOOP_H

#include <czmq.h>
#include <stdbool.h>
#include <stdint.h>

typedef struct _evloop_t evloop_t;
typedef struct _evloop_timer_t evloop_timer_t;

#define EVLOOP_READ  1
#define EVLOOP_WRITE 2

// Called when fd is ready; events is a mask of EVLOOP_READ / EVLOOP_WRITE.
typedef void (evloop_fd_fn) (evloop_t *loop, int fd, int events, void *arg);
// Called when a ZeroMQ socket has a message; the handler reads one message.
typedef void (evloop_sock_fn) (evloop_t *loop, zsock_t *sock, void *arg);
// Called when a timer expires or a signal arrives.
typedef void (evloop_fn) (evloop_t *loop, void *arg);

// evloop_new creates a loop. Returns NULL if epoll cannot be created.
evloop_t *evloop_new (void);

// evloop_destroy frees the loop and any timers left; nulls *self_p.
void evloop_destroy (evloop_t **self_p);

// evloop_fd_add watches fd for events. Returns 0, or -1 with errno set.
int evloop_fd_add (evloop_t *self, int fd, int events, evloop_fd_fn *fn, void *arg);

// evloop_fd_modify changes the events watched on fd. Returns 0 or -1.
int evloop_fd_modify (evloop_t *self, int fd, int events);

// evloop_fd_remove stops watching fd. Safe to call from within its handler.
void evloop_fd_remove (evloop_t *self, int fd);

// evloop_sock_add watches a ZeroMQ socket for incoming messages. The handler
// is called once per message, at most a fair share per iteration.
int evloop_sock_add (evloop_t *self, zsock_t *sock, evloop_sock_fn *fn, void *arg);

// evloop_sock_remove stops watching a ZeroMQ socket.
void evloop_sock_remove (evloop_t *self, zsock_t *sock);

// evloop_timer_start calls fn once after delay_ms. The returned handle stays
// valid until the timer fires (then the loop frees it) or is cancelled.
// This function can't fail (out of memory aborts: common/mem.h).
evloop_timer_t *evloop_timer_start (evloop_t *self, int64_t delay_ms,
                                    evloop_fn *fn, void *arg);

// evloop_timer_every calls fn every period_ms (> 0), the first time after
// period_ms, until cancelled: the handle stays valid until then, and fn may
// cancel it. A loop that fell behind fires once, not once per period
// missed. This function can't fail.
evloop_timer_t *evloop_timer_every (evloop_t *self, int64_t period_ms,
                                    evloop_fn *fn, void *arg);

// evloop_wake_in makes the loop's wait end within delay_ms, so that the idle
// hook runs then, with no callback of its own: for owners that keep their
// own due time and act in the idle hook (spaced commits, batched resumes, a
// rate limit lifting). Calls keep the earliest deadline.
void evloop_wake_in (evloop_t *self, int64_t delay_ms);

// evloop_timer_cancel cancels a pending timer and nulls *timer_p;
// a NULL *timer_p is ignored.
void evloop_timer_cancel (evloop_t *self, evloop_timer_t **timer_p);

// evloop_timer_count returns how many timers are pending.
size_t evloop_timer_count (evloop_t *self);

// evloop_signal routes signo to fn (the signal is blocked for the whole
// process and read through a signalfd). Call before creating threads
// (ZeroMQ contexts) so they inherit the mask.
int evloop_signal (evloop_t *self, int signo, evloop_fn *fn, void *arg);

// evloop_on_idle sets a hook run once per iteration after the handlers and
// before waiting: where a process flushes batches (group commit).
void evloop_on_idle (evloop_t *self, evloop_fn *fn, void *arg);

// The longest spacing evloop_pace takes (µs).
#define EVLOOP_PACE_MAX_US 100000

// evloop_pace, called from the idle hook, spaces turns: the loop's next
// wait begins no sooner than period_us (at most EVLOOP_PACE_MAX_US) after
// the last one did, so what arrives meanwhile is taken in one turn
// (interrupt coalescing), timers due meanwhile included. For a process
// whose every wake-up costs, whatever it brings (a busy worker drains a
// ZeroMQ socket and libcurl's multi each time). A routed signal ends the
// pause. Applies to this turn only; 0 is no pause.
void evloop_pace (evloop_t *self, int64_t period_us);

// evloop_now_ms returns the loop's cached monotonic time, updated each
// iteration.
int64_t evloop_now_ms (evloop_t *self);

// evloop_run runs until evloop_stop is called. Returns 0, or -1 on an
// epoll error.
int evloop_run (evloop_t *self);

// evloop_stop makes evloop_run return after the current iteration.
void evloop_stop (evloop_t *self);

// evloop_run_for runs the loop for about ms, or until evloop_stop is
// called: one step of a self-test or a tool driven in time. Returns true
// when evloop_stop came first.
bool evloop_run_for (evloop_t *self, int64_t ms);

// evloop_test runs the self-test.
void evloop_test (bool verbose);

#endif
