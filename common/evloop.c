// evloop — the one event loop of a jobgate process (epoll).
#include "evloop.h"
#include "mem.h"
#include "clock.h"
#include "log.h"

#include <assert.h>
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <unistd.h>

// How many messages one ZeroMQ socket may handle per iteration, so that a
// flood on one socket cannot starve the others or the timers.
#define SOCK_FAIR_SHARE 256

typedef enum { WATCH_FD, WATCH_SOCK, WATCH_SIGNAL } watch_kind_t;

typedef struct {
    watch_kind_t kind;          // what is watched
    int fd;                     // the fd given to epoll
    int events;                 // EVLOOP_READ / EVLOOP_WRITE wanted
    evloop_fd_fn *fd_fn;        // handler for WATCH_FD
    evloop_sock_fn *sock_fn;    // handler for WATCH_SOCK
    zsock_t *sock;              // the ZeroMQ socket for WATCH_SOCK
    void *arg;                  // handler argument
    bool removed;               // removed while in use; freed after dispatch
} watch_t;

struct _evloop_timer_t {
    int64_t due_ms;             // monotonic time it fires at
    int64_t period_ms;          // repeating: fires again this long after each firing; 0 = once
    uint64_t order;             // tie-breaker: first started fires first
    size_t heap_index;          // position in the heap, for cancel
    evloop_fn *fn;              // what to call
    void *arg;                  // its argument
};

typedef struct {
    int signo;                  // signal number
    evloop_fn *fn;              // handler
    void *arg;                  // handler argument
} signal_route_t;

struct _evloop_t {
    int epoll_fd;               // the epoll instance
    watch_t **watches;          // watches indexed by fd (dense, grown)
    size_t watches_size;        // allocated length of watches
    watch_t **socks;            // ZeroMQ socket watches, for draining
    size_t socks_count;         // used entries in socks
    size_t socks_size;          // allocated entries in socks
    evloop_timer_t **heap;      // min-heap of timers by due time
    size_t heap_count;          // timers in the heap
    size_t heap_size;           // allocated entries
    uint64_t timer_order;       // next tie-breaker
    int signal_fd;              // signalfd, or -1
    sigset_t signal_mask;       // signals routed
    signal_route_t signals[8];  // routes for the signals
    int signals_count;          // used routes
    evloop_fn *idle_fn;         // per-iteration hook
    void *idle_arg;             // its argument
    watch_t **graveyard;        // watches removed during dispatch
    size_t graveyard_count;     // entries in graveyard
    size_t graveyard_size;      // allocated
    int64_t now_ms;             // cached monotonic time
    int64_t wake_ms;            // evloop_wake_in: the wait ends by then; 0 = none
    int64_t pace_us;            // evloop_pace: this turn's spacing; 0 = none
    int64_t wait_began_us;      // monotonic time the last wait began (evloop_pace)
    bool stopping;              // evloop_stop called
};

evloop_t *
evloop_new (void)
{
    evloop_t *self = mem_calloc (1, sizeof *self);
    self->epoll_fd = epoll_create1 (EPOLL_CLOEXEC);
    if (self->epoll_fd < 0) {
        free (self);
        return NULL;
    }
    self->signal_fd = -1;
    sigemptyset (&self->signal_mask);
    self->now_ms = clock_mono_ms ();
    return self;
}

void
evloop_destroy (evloop_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    evloop_t *self = *self_p;
    for (size_t i = 0; i < self->watches_size; i++)
        free (self->watches[i]);
    free (self->watches);
    for (size_t i = 0; i < self->graveyard_count; i++)
        free (self->graveyard[i]);
    free (self->graveyard);
    free (self->socks);
    for (size_t i = 0; i < self->heap_count; i++)
        free (self->heap[i]);
    free (self->heap);
    if (self->signal_fd >= 0)
        close (self->signal_fd);
    close (self->epoll_fd);
    free (self);
    *self_p = NULL;
}

// s_epoll_events maps EVLOOP_READ / EVLOOP_WRITE to epoll's bits.
static uint32_t
s_epoll_events (int events)
{
    uint32_t e = 0;
    if (events & EVLOOP_READ)
        e |= EPOLLIN;
    if (events & EVLOOP_WRITE)
        e |= EPOLLOUT;
    return e;
}

// s_watch_put stores a new watch for fd and registers it with epoll.
static int
s_watch_put (evloop_t *self, watch_t *watch)
{
    int fd = watch->fd;
    if (fd < 0) {
        errno = EBADF;
        return -1;
    }
    if ((size_t) fd >= self->watches_size) {
        size_t size = self->watches_size ? self->watches_size : 64;
        while (size <= (size_t) fd)
            size *= 2;
        watch_t **grown = mem_realloc (self->watches, size * sizeof *grown);
        memset (grown + self->watches_size, 0,
                (size - self->watches_size) * sizeof *grown);
        self->watches = grown;
        self->watches_size = size;
    }
    if (self->watches[fd]) {
        errno = EEXIST;
        return -1;
    }
    struct epoll_event ev = { .events = s_epoll_events (watch->events),
                              .data.fd = fd };
    if (epoll_ctl (self->epoll_fd, EPOLL_CTL_ADD, fd, &ev) < 0)
        return -1;
    self->watches[fd] = watch;
    return 0;
}

int
evloop_fd_add (evloop_t *self, int fd, int events, evloop_fd_fn *fn, void *arg)
{
    watch_t *watch = mem_alloc (sizeof *watch);
    *watch = (watch_t) { .kind = WATCH_FD, .fd = fd, .events = events,
                         .fd_fn = fn, .arg = arg };
    if (s_watch_put (self, watch) < 0) {
        free (watch);
        return -1;
    }
    return 0;
}

int
evloop_fd_modify (evloop_t *self, int fd, int events)
{
    if (fd < 0 || (size_t) fd >= self->watches_size || !self->watches[fd]) {
        errno = ENOENT;
        return -1;
    }
    self->watches[fd]->events = events;
    struct epoll_event ev = { .events = s_epoll_events (events), .data.fd = fd };
    return epoll_ctl (self->epoll_fd, EPOLL_CTL_MOD, fd, &ev);
}

// s_watch_drop unregisters fd; the watch is freed after the current dispatch
// because a handler up the stack may still hold it.
static void
s_watch_drop (evloop_t *self, int fd)
{
    if (fd < 0 || (size_t) fd >= self->watches_size || !self->watches[fd])
        return;
    watch_t *watch = self->watches[fd];
    self->watches[fd] = NULL;
    epoll_ctl (self->epoll_fd, EPOLL_CTL_DEL, fd, NULL);
    watch->removed = true;
    if (self->graveyard_count == self->graveyard_size) {
        size_t size = self->graveyard_size ? self->graveyard_size * 2 : 16;
        self->graveyard = mem_realloc (self->graveyard, size * sizeof *self->graveyard);
        self->graveyard_size = size;
    }
    self->graveyard[self->graveyard_count++] = watch;
}

void
evloop_fd_remove (evloop_t *self, int fd)
{
    s_watch_drop (self, fd);
}

int
evloop_sock_add (evloop_t *self, zsock_t *sock, evloop_sock_fn *fn, void *arg)
{
    watch_t *watch = mem_alloc (sizeof *watch);
    *watch = (watch_t) { .kind = WATCH_SOCK, .fd = zsock_fd (sock),
                         .events = EVLOOP_READ, .sock_fn = fn, .sock = sock,
                         .arg = arg };
    if (self->socks_count == self->socks_size) {
        size_t size = self->socks_size ? self->socks_size * 2 : 8;
        self->socks = mem_realloc (self->socks, size * sizeof *self->socks);
        self->socks_size = size;
    }
    if (s_watch_put (self, watch) < 0) {
        free (watch);
        return -1;
    }
    self->socks[self->socks_count++] = watch;
    return 0;
}

void
evloop_sock_remove (evloop_t *self, zsock_t *sock)
{
    for (size_t i = 0; i < self->socks_count; i++) {
        if (self->socks[i]->sock == sock) {
            int fd = self->socks[i]->fd;
            self->socks[i] = self->socks[--self->socks_count];
            s_watch_drop (self, fd);
            return;
        }
    }
}

// --- timers: a binary min-heap ordered by (due_ms, order) ---

static bool
s_timer_before (const evloop_timer_t *a, const evloop_timer_t *b)
{
    return a->due_ms < b->due_ms || (a->due_ms == b->due_ms && a->order < b->order);
}

static void
s_heap_set (evloop_t *self, size_t index, evloop_timer_t *timer)
{
    self->heap[index] = timer;
    timer->heap_index = index;
}

static void
s_heap_up (evloop_t *self, size_t index)
{
    evloop_timer_t *timer = self->heap[index];
    while (index > 0) {
        size_t parent = (index - 1) / 2;
        if (!s_timer_before (timer, self->heap[parent]))
            break;
        s_heap_set (self, index, self->heap[parent]);
        index = parent;
    }
    s_heap_set (self, index, timer);
}

static void
s_heap_down (evloop_t *self, size_t index)
{
    evloop_timer_t *timer = self->heap[index];
    while (true) {
        size_t child = 2 * index + 1;
        if (child >= self->heap_count)
            break;
        if (child + 1 < self->heap_count
            && s_timer_before (self->heap[child + 1], self->heap[child]))
            child++;
        if (!s_timer_before (self->heap[child], timer))
            break;
        s_heap_set (self, index, self->heap[child]);
        index = child;
    }
    s_heap_set (self, index, timer);
}

// s_heap_remove takes the timer at index out of the heap.
static void
s_heap_remove (evloop_t *self, size_t index)
{
    self->heap_count--;
    if (index == self->heap_count)
        return;
    s_heap_set (self, index, self->heap[self->heap_count]);
    s_heap_down (self, index);
    s_heap_up (self, self->heap[index]->heap_index);
}

// s_timer_insert puts timer (due_ms set) into the heap.
static void
s_timer_insert (evloop_t *self, evloop_timer_t *timer)
{
    if (self->heap_count == self->heap_size) {
        size_t size = self->heap_size ? self->heap_size * 2 : 64;
        self->heap = mem_realloc (self->heap, size * sizeof *self->heap);
        self->heap_size = size;
    }
    timer->order = self->timer_order++;
    self->heap_count++;
    s_heap_set (self, self->heap_count - 1, timer);
    s_heap_up (self, self->heap_count - 1);
}

// s_timer_new makes and schedules a timer.
static evloop_timer_t *
s_timer_new (evloop_t *self, int64_t delay_ms, int64_t period_ms, evloop_fn *fn, void *arg)
{
    evloop_timer_t *timer = mem_alloc (sizeof *timer);
    if (delay_ms < 0)
        delay_ms = 0;
    *timer = (evloop_timer_t) { .due_ms = clock_mono_ms () + delay_ms, .period_ms = period_ms,
                                .fn = fn, .arg = arg };
    s_timer_insert (self, timer);
    return timer;
}

evloop_timer_t *
evloop_timer_start (evloop_t *self, int64_t delay_ms, evloop_fn *fn, void *arg)
{
    return s_timer_new (self, delay_ms, 0, fn, arg);
}

evloop_timer_t *
evloop_timer_every (evloop_t *self, int64_t period_ms, evloop_fn *fn, void *arg)
{
    assert (period_ms > 0);
    return s_timer_new (self, period_ms, period_ms, fn, arg);
}

void
evloop_wake_in (evloop_t *self, int64_t delay_ms)
{
    int64_t due = clock_mono_ms () + (delay_ms > 0 ? delay_ms : 0);
    if (self->wake_ms == 0 || due < self->wake_ms)
        self->wake_ms = due;
}

void
evloop_timer_cancel (evloop_t *self, evloop_timer_t **timer_p)
{
    if (!timer_p || !*timer_p)
        return;
    evloop_timer_t *timer = *timer_p;
    assert (timer->heap_index < self->heap_count
            && self->heap[timer->heap_index] == timer);
    s_heap_remove (self, timer->heap_index);
    free (timer);
    *timer_p = NULL;
}

size_t
evloop_timer_count (evloop_t *self)
{
    return self->heap_count;
}

// s_timers_fire runs every timer due by now.
static void
s_timers_fire (evloop_t *self)
{
    int64_t now = clock_mono_ms ();
    while (self->heap_count > 0 && self->heap[0]->due_ms <= now) {
        evloop_timer_t *timer = self->heap[0];
        s_heap_remove (self, 0);
        evloop_fn *fn = timer->fn;
        void *arg = timer->arg;
        if (timer->period_ms > 0) {
            // Back in the heap before the call, so the callback may cancel
            // it. A loop that fell behind does not fire a burst to catch up.
            timer->due_ms = now + timer->period_ms;
            s_timer_insert (self, timer);
        }
        else
            free (timer);
        fn (self, arg);
    }
}

int
evloop_signal (evloop_t *self, int signo, evloop_fn *fn, void *arg)
{
    if (self->signals_count == (int) (sizeof self->signals / sizeof self->signals[0]))
        return -1;
    sigaddset (&self->signal_mask, signo);
    if (sigprocmask (SIG_BLOCK, &self->signal_mask, NULL) < 0)
        return -1;
    int fd = signalfd (self->signal_fd, &self->signal_mask, SFD_NONBLOCK | SFD_CLOEXEC);
    if (fd < 0)
        return -1;
    self->signals[self->signals_count++] = (signal_route_t) { signo, fn, arg };
    if (self->signal_fd < 0) {
        self->signal_fd = fd;
        watch_t *watch = mem_alloc (sizeof *watch);
        *watch = (watch_t) { .kind = WATCH_SIGNAL, .fd = fd, .events = EVLOOP_READ };
        if (s_watch_put (self, watch) < 0) {
            free (watch);
            return -1;
        }
    }
    return 0;
}

// s_signals_read dispatches every pending signal.
static void
s_signals_read (evloop_t *self)
{
    struct signalfd_siginfo info;
    while (read (self->signal_fd, &info, sizeof info) == (ssize_t) sizeof info) {
        for (int i = 0; i < self->signals_count; i++)
            if (self->signals[i].signo == (int) info.ssi_signo)
                self->signals[i].fn (self, self->signals[i].arg);
    }
}

void
evloop_on_idle (evloop_t *self, evloop_fn *fn, void *arg)
{
    self->idle_fn = fn;
    self->idle_arg = arg;
}

int64_t
evloop_now_ms (evloop_t *self)
{
    return self->now_ms;
}

void
evloop_stop (evloop_t *self)
{
    self->stopping = true;
}

// s_run_for_end ends an evloop_run_for whose time is up.
static void
s_run_for_end (evloop_t *loop, void *arg)
{
    *(bool *) arg = true;
    evloop_stop (loop);
}

bool
evloop_run_for (evloop_t *self, int64_t ms)
{
    bool timed_out = false;
    evloop_timer_t *timer = evloop_timer_start (self, ms, s_run_for_end, &timed_out);
    evloop_run (self);
    if (!timed_out)
        evloop_timer_cancel (self, &timer);
    return !timed_out;
}

void
evloop_pace (evloop_t *self, int64_t period_us)
{
    self->pace_us = period_us <= 0                   ? 0
                    : period_us > EVLOOP_PACE_MAX_US ? EVLOOP_PACE_MAX_US
                                                     : period_us;
}

// s_pause waits out a paced turn's spacing (evloop_pace), or until a
// routed signal comes. Timers due meanwhile fire after it: a pause that
// ended at every timer would end at libcurl's, which are a millisecond
// apart while transfers run.
static void
s_pause (evloop_t *self)
{
    int64_t wait_us = self->wait_began_us + self->pace_us - clock_mono_us ();
    if (wait_us <= 0)
        return;
    struct timespec timeout = { .tv_sec = wait_us / 1000000,
                                .tv_nsec = (long) (wait_us % 1000000) * 1000 };
    struct pollfd signals = { .fd = self->signal_fd, .events = POLLIN };
    // The signals routed are blocked (evloop_signal): their signalfd is
    // what tells one came.
    if (ppoll (&signals, self->signal_fd >= 0 ? 1 : 0, &timeout, NULL) < 0 && errno != EINTR)
        log_warn (NULL, "a paced turn's pause: %s", strerror (errno));
}

// s_socks_drain handles up to a fair share of messages per ZeroMQ socket.
// Returns true when some socket still has messages waiting.
static bool
s_socks_drain (evloop_t *self)
{
    bool more = false;
    for (size_t i = 0; i < self->socks_count && !self->stopping; i++) {
        watch_t *watch = self->socks[i];
        int handled = 0;
        while (!watch->removed && (zsock_events (watch->sock) & ZMQ_POLLIN)) {
            if (handled++ == SOCK_FAIR_SHARE) {
                more = true;
                break;
            }
            watch->sock_fn (self, watch->sock, watch->arg);
            if (self->stopping)
                break;
        }
        // The handler may have removed this socket, shifting the array.
        if (i < self->socks_count && self->socks[i] != watch)
            i--;
    }
    return more;
}

static void
s_graveyard_clear (evloop_t *self)
{
    for (size_t i = 0; i < self->graveyard_count; i++)
        free (self->graveyard[i]);
    self->graveyard_count = 0;
}

int
evloop_run (evloop_t *self)
{
    struct epoll_event events[256];
    self->stopping = false;
    while (!self->stopping) {
        self->now_ms = clock_mono_ms ();
        // ZMQ_FD is edge-like: a send or recv may consume the readiness
        // without the fd signalling again, so ask each socket every time.
        bool more = s_socks_drain (self);
        s_timers_fire (self);
        if (self->idle_fn && !self->stopping)
            self->idle_fn (self, self->idle_arg);
        s_graveyard_clear (self);
        if (self->stopping)
            break;
        for (size_t i = 0; i < self->socks_count && !more; i++)
            if (zsock_events (self->socks[i]->sock) & ZMQ_POLLIN)
                more = true;

        if (self->pace_us > 0 && !more)
            s_pause (self);
        self->pace_us = 0;
        self->wait_began_us = clock_mono_us ();

        int timeout = -1;
        int64_t now = clock_mono_ms ();
        if (self->wake_ms && self->wake_ms <= now)
            self->wake_ms = 0;      // this turn's idle hook has run
        if (more)
            timeout = 0;
        else if (self->heap_count > 0 || self->wake_ms) {
            int64_t due = self->heap_count > 0 ? self->heap[0]->due_ms : self->wake_ms;
            if (self->wake_ms && self->wake_ms < due)
                due = self->wake_ms;
            int64_t wait = due - now;
            timeout = wait < 0 ? 0 : wait > 60000 ? 60000 : (int) wait;
        }
        int n = epoll_wait (self->epoll_fd, events, 256, timeout);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            log_error (NULL, "epoll_wait: %s", strerror (errno));
            return -1;
        }
        self->now_ms = clock_mono_ms ();
        for (int i = 0; i < n && !self->stopping; i++) {
            int fd = events[i].data.fd;
            if ((size_t) fd >= self->watches_size || !self->watches[fd])
                continue;
            watch_t *watch = self->watches[fd];
            if (watch->kind == WATCH_SIGNAL)
                s_signals_read (self);
            else if (watch->kind == WATCH_FD) {
                int ready = 0;
                if (events[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR))
                    ready |= EVLOOP_READ;
                if (events[i].events & (EPOLLOUT | EPOLLHUP | EPOLLERR))
                    ready |= EVLOOP_WRITE;
                ready &= watch->events ? watch->events : ready;
                if (ready)
                    watch->fd_fn (self, fd, ready, watch->arg);
            }
            // WATCH_SOCK: drained at the top of the next iteration.
        }
        s_graveyard_clear (self);
    }
    return 0;
}

// --- self-test ---

static void
s_test_timer_fn (evloop_t *loop, void *arg)
{
    int *fired = arg;
    (*fired)++;
}

static void
s_test_stop_fn (evloop_t *loop, void *arg)
{
    evloop_stop (loop);
}

static void
s_test_order_fn (evloop_t *loop, void *arg)
{
    static int next = 0;
    int *expected = arg;
    assert (*expected == next);
    next++;
}

// A repeating timer's state in the test: it cancels itself on the third
// firing.
typedef struct {
    evloop_timer_t *timer;      // its handle
    int fired;                  // how often it fired
} s_test_repeat_t;

static void
s_test_repeat_fn (evloop_t *loop, void *arg)
{
    s_test_repeat_t *repeat = arg;
    if (++repeat->fired == 3)
        evloop_timer_cancel (loop, &repeat->timer);
}

// The wake-up test's idle hook: the first turn asks for a wake-up and no
// timer exists, so only evloop_wake_in can bring the second turn.
static void
s_test_wake_idle (evloop_t *loop, void *arg)
{
    int *turns = arg;
    if (++*turns == 1)
        evloop_wake_in (loop, 10);
    else
        evloop_stop (loop);
}

// The pacing test's idle hook: counts turns and spaces them by 50 ms.
static void
s_test_pace_idle (evloop_t *loop, void *arg)
{
    int *turns = arg;
    (*turns)++;
    evloop_pace (loop, 50000);
}

static void
s_test_guard_fn (evloop_t *loop, void *arg)
{
    bool *timed_out = arg;
    *timed_out = true;
    evloop_stop (loop);
}

static void
s_test_sock_fn (evloop_t *loop, zsock_t *sock, void *arg)
{
    int *received = arg;
    char *text = zstr_recv (sock);
    assert (text);
    zstr_free (&text);
    if (++*received == 3)
        evloop_stop (loop);
}

void
evloop_test (bool verbose)
{
    if (verbose)
        printf (" * evloop: ");
    evloop_t *loop = evloop_new ();
    assert (loop);

    // Timers fire in due order; a cancelled timer never fires.
    int fired = 0;
    evloop_timer_t *cancelled = evloop_timer_start (loop, 5, s_test_timer_fn, &fired);
    int order[50];
    for (int i = 0; i < 50; i++) {
        order[i] = i;
        evloop_timer_start (loop, i / 10, s_test_order_fn, &order[i]);
    }
    evloop_timer_cancel (loop, &cancelled);
    assert (cancelled == NULL);
    evloop_timer_start (loop, 20, s_test_stop_fn, NULL);
    assert (evloop_run (loop) == 0);
    assert (fired == 0);
    assert (evloop_timer_count (loop) == 0);

    // Random cancels keep the heap consistent.
    evloop_timer_t *timers[200];
    for (int i = 0; i < 200; i++)
        timers[i] = evloop_timer_start (loop, (i * 7919) % 50, s_test_timer_fn, &fired);
    for (int i = 0; i < 200; i += 3)
        evloop_timer_cancel (loop, &timers[i]);
    evloop_timer_start (loop, 60, s_test_stop_fn, NULL);
    evloop_run (loop);
    assert (fired == 200 - 67);

    // A repeating timer fires until cancelled, here from its own callback.
    s_test_repeat_t repeat = { NULL, 0 };
    repeat.timer = evloop_timer_every (loop, 2, s_test_repeat_fn, &repeat);
    evloop_timer_start (loop, 40, s_test_stop_fn, NULL);
    evloop_run (loop);
    assert (repeat.fired == 3 && repeat.timer == NULL);
    assert (evloop_timer_count (loop) == 0);

    // A run for a while ends by itself, or when stopped, leaving no timer.
    assert (!evloop_run_for (loop, 5) && evloop_timer_count (loop) == 0);
    evloop_timer_start (loop, 1, s_test_stop_fn, NULL);
    assert (evloop_run_for (loop, 5000) && evloop_timer_count (loop) == 0);

    // A wake-up with no timer at all ends the wait and runs the idle hook;
    // the guard stops a loop that would otherwise wait for ever.
    int turns = 0;
    bool timed_out = false;
    evloop_on_idle (loop, s_test_wake_idle, &turns);
    evloop_timer_t *wake_guard = evloop_timer_start (loop, 5000, s_test_guard_fn, &timed_out);
    evloop_run (loop);
    assert (turns == 2 && !timed_out);
    evloop_timer_cancel (loop, &wake_guard);
    evloop_on_idle (loop, NULL, NULL);

    // Paced turns begin at least the period apart: a timer due every ms
    // for 200 ms, with turns 50 ms apart, is taken in about 5 turns (at
    // most once per turn), not 200.
    turns = 0;
    fired = 0;
    evloop_on_idle (loop, s_test_pace_idle, &turns);
    evloop_timer_t *every_ms = evloop_timer_every (loop, 1, s_test_timer_fn, &fired);
    evloop_run_for (loop, 200);
    evloop_timer_cancel (loop, &every_ms);
    assert (turns >= 1 && turns <= 7 && fired <= turns);
    evloop_on_idle (loop, NULL, NULL);

    // ZeroMQ sockets are drained through ZMQ_FD.
    zsock_t *pull = zsock_new_pull ("inproc://evloop-test");
    zsock_t *push = zsock_new_push ("inproc://evloop-test");
    assert (pull && push);
    int received = 0;
    assert (evloop_sock_add (loop, pull, s_test_sock_fn, &received) == 0);
    for (int i = 0; i < 3; i++)
        zstr_send (push, "hello");
    evloop_timer_t *guard = evloop_timer_start (loop, 5000, s_test_stop_fn, NULL);
    evloop_run (loop);
    assert (received == 3);
    evloop_timer_cancel (loop, &guard);
    evloop_sock_remove (loop, pull);
    zsock_destroy (&push);
    zsock_destroy (&pull);

    evloop_destroy (&loop);
    evloop_destroy (&loop);
    assert (loop == NULL);
    if (verbose)
        printf ("OK\n");
}
