// workers — the registry of worker processes, their credit, liveness and
// leases.
#include "workers.h"
#include "config.h"
#include "job.h"
#include "log.h"
#include "mem.h"
#include "store.h"

#include <assert.h>
#include <sodium.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

// §5 liveness: the heartbeat interval, and the silence after which a worker
// is dead.
#define HEARTBEAT_MS 1000
#define LIVENESS_MS 3000
// Extra time beyond an attempt's own timeout before its lease ends.
#define LEASE_GRACE_MS 10000
// How long attempts found running at start-up wait for their worker to come
// back with the result before they are requeued.
#define ORPHAN_GRACE_MS 5000
// A worker's self-chosen identity (READY's "worker") is at most this long.
#define WORKER_KEY_MAX 64

struct _workers_t {
    zhashx_t *workers;          // hex routing id → remote_worker_t (owned)
    zhashx_t *keys;             // worker key → remote_worker_t (not owned)
    zhashx_t *aliases;          // earlier routing ids (hex) of reconnected workers → key
    entry_list_t orphans;       // attempts running at start, waiting for their worker
    const unsigned char *lease_key; // the store's secret of lease tokens (borrowed)
    int64_t lease_grace_ms;     // a lease lasts its attempt's timeout and this
    int64_t liveness_ms;        // the silence after which a worker is dead
};

static void
s_worker_destroy (void **item)
{
    remote_worker_t *worker = *item;
    if (worker) {
        zframe_destroy (&worker->identity);
        free (worker->name);
        free (worker->key);
        free (worker);
        *item = NULL;
    }
}

workers_t *
workers_new (const unsigned char *lease_key)
{
    workers_t *self = mem_calloc (1, sizeof *self);
    self->workers = zhashx_new ();
    zhashx_set_destructor (self->workers, s_worker_destroy);
    self->keys = zhashx_new ();
    self->aliases = zhashx_new ();
    zhashx_set_destructor (self->aliases, (zhashx_destructor_fn *) zstr_free);
    zhashx_set_duplicator (self->aliases, (zhashx_duplicator_fn *) strdup);
    self->lease_key = lease_key;
    self->lease_grace_ms = LEASE_GRACE_MS;
    self->liveness_ms = LIVENESS_MS;
    return self;
}

void
workers_destroy (workers_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    workers_t *self = *self_p;
    zhashx_destroy (&self->keys);
    zhashx_destroy (&self->aliases);
    zhashx_destroy (&self->workers);
    free (self);
    *self_p = NULL;
}

void
workers_set_timing (workers_t *self, int64_t lease_grace_ms, int64_t liveness_ms)
{
    self->lease_grace_ms = lease_grace_ms;
    self->liveness_ms = liveness_ms;
}

remote_worker_t *
workers_lookup (workers_t *self, zframe_t *identity)
{
    char *name = zframe_strhex (identity);
    remote_worker_t *worker = zhashx_lookup (self->workers, name);
    const char *key = worker ? NULL : zhashx_lookup (self->aliases, name);
    if (key)
        worker = zhashx_lookup (self->keys, key);
    free (name);
    return worker;
}

remote_worker_t *
workers_by_key (workers_t *self, const char *key)
{
    return zhashx_lookup (self->keys, key);
}

remote_worker_t *
workers_ready (workers_t *self, remote_worker_t *worker, zframe_t *identity, int64_t credit,
               int64_t concurrency, const char *key_field, size_t key_len, int64_t now_ms)
{
    if (concurrency <= 0)
        concurrency = credit;
    if (concurrency < 0)
        concurrency = 0;
    if (concurrency > CONFIG_WORKER_CONCURRENCY_MAX)
        concurrency = CONFIG_WORKER_CONCURRENCY_MAX;
    char key[WORKER_KEY_MAX + 1];
    bool has_key = key_field && key_len > 0 && key_len <= WORKER_KEY_MAX;
    for (size_t i = 0; has_key && i < key_len; i++)
        has_key = key_field[i] > ' ' && key_field[i] < 0x7f;
    if (has_key) {
        memcpy (key, key_field, key_len);
        key[key_len] = '\0';
    }
    char *name = zframe_strhex (identity);
    remote_worker_t *known = has_key ? zhashx_lookup (self->keys, key) : NULL;
    if (known && known != worker && !worker) {
        // The same worker on a new socket (it reconnected): its leases and
        // running calls move with it; the old routing id stays an alias.
        log_info (NULL, "worker %s reconnected as %s with %zu calls running", known->name, name,
                  known->running.count);
        zhashx_rename (self->workers, known->name, name);
        zhashx_update (self->aliases, known->name, known->key);
        free (known->name);
        known->name = mem_strdup (name);
        zframe_destroy (&known->identity);
        known->identity = zframe_dup (identity);
        worker = known;
    }
    if (!worker) {
        worker = mem_calloc (1, sizeof *worker);
        worker->identity = zframe_dup (identity);
        worker->name = mem_strdup (name);
        worker->key = mem_strdup (has_key && !known ? key : name);
        zhashx_insert (self->workers, worker->name, worker);
        if (!zhashx_lookup (self->keys, worker->key))
            zhashx_insert (self->keys, worker->key, worker);
        log_info (NULL, "worker %s ready, credit %lld of %lld", worker->name, (long long) credit,
                  (long long) concurrency);
    }
    free (name);
    worker->last_seen_ms = now_ms;
    // READY states the worker's free capacity from its own count.
    worker->concurrency = concurrency;
    worker->draining = false;
    worker->credit = 0;
    workers_add_credit (worker, credit);
    return worker;
}

void
workers_set_ready_result_seq (remote_worker_t *worker, int64_t result_seq)
{
    worker->ready_result_seq = result_seq > 0 ? result_seq : 0;
}

void
workers_heard (remote_worker_t *worker, int64_t now_ms)
{
    worker->last_seen_ms = now_ms;
}

void
workers_sent (remote_worker_t *worker, int64_t now_ms)
{
    worker->last_sent_ms = now_ms;
}

int64_t
workers_credit_cap (const remote_worker_t *worker)
{
    int64_t free_calls = worker->concurrency - (int64_t) worker->running.count;
    return worker->draining || free_calls < 0 ? 0 : free_calls;
}

void
workers_add_credit (remote_worker_t *worker, int64_t credit)
{
    int64_t cap = workers_credit_cap (worker);
    if (credit > cap)
        credit = cap;
    worker->credit = worker->credit > cap - credit ? cap : worker->credit + credit;
    if (worker->credit < 0)
        worker->credit = 0;
}

void
workers_drain (remote_worker_t *worker)
{
    log_info (NULL, "worker %s draining, %zu jobs running", worker->name, worker->running.count);
    worker->draining = true;
    worker->credit = 0;
}

remote_worker_t *
workers_pick (workers_t *self)
{
    remote_worker_t *best = NULL;
    for (remote_worker_t *worker = zhashx_first (self->workers); worker;
         worker = zhashx_next (self->workers))
        if (!worker->draining && worker->credit > 0 && (!best || worker->credit > best->credit))
            best = worker;
    return best;
}

void
workers_report (remote_worker_t *worker, const worker_figures_t *figures)
{
#define NOT_NEGATIVE(value) ((value) > 0 ? (value) : 0)
    worker->figures = (worker_figures_t) {
        .cpu_ms = NOT_NEGATIVE (figures->cpu_ms),
        .rss_bytes = NOT_NEGATIVE (figures->rss_bytes),
        .open_fds = NOT_NEGATIVE (figures->open_fds),
        .max_fds = NOT_NEGATIVE (figures->max_fds),
        .started_at_ms = NOT_NEGATIVE (figures->started_at_ms),
        .running = NOT_NEGATIVE (figures->running),
    };
#undef NOT_NEGATIVE
}

void
workers_each (workers_t *self, workers_fn *fn, void *arg)
{
    for (remote_worker_t *worker = zhashx_first (self->workers); worker;
         worker = zhashx_next (self->workers))
        fn (worker, arg);
}

size_t
workers_live (workers_t *self)
{
    size_t live = 0;
    for (remote_worker_t *worker = zhashx_first (self->workers); worker;
         worker = zhashx_next (self->workers))
        live += !worker->draining;
    return live;
}

// s_by_key orders workers by their identity.
static int
s_by_key (const void *a, const void *b)
{
    const remote_worker_t *const *left = a, *const *right = b;
    return strcmp ((*left)->key, (*right)->key);
}

json_t *
workers_json (workers_t *self, int64_t now_ms, size_t max)
{
    size_t count = zhashx_size (self->workers);
    remote_worker_t **sorted = mem_calloc (count + 1, sizeof *sorted);
    size_t n = 0;
    for (remote_worker_t *worker = zhashx_first (self->workers); worker && n < count;
         worker = zhashx_next (self->workers))
        sorted[n++] = worker;
    qsort (sorted, n, sizeof *sorted, s_by_key);
    json_t *list = json_array ();
    for (size_t i = 0; i < n && i < max; i++) {
        const remote_worker_t *worker = sorted[i];
        int64_t silent_ms = now_ms - worker->last_seen_ms;
        json_array_append_new (
            list, json_pack ("{s:s, s:I, s:I, s:I, s:b, s:I}", "worker", worker->key,
                             "concurrency", (json_int_t) worker->concurrency, "running",
                             (json_int_t) worker->running.count, "credit",
                             (json_int_t) worker->credit, "draining", worker->draining,
                             "silent_ms", (json_int_t) (silent_ms > 0 ? silent_ms : 0)));
    }
    free (sorted);
    return list;
}

void
workers_forget (workers_t *self, remote_worker_t *worker)
{
    assert (worker->running.count == 0);
    zlistx_t *aliases = zhashx_keys (self->aliases);
    for (const char *alias = zlistx_first (aliases); alias; alias = zlistx_next (aliases))
        if (strcmp (zhashx_lookup (self->aliases, alias), worker->key) == 0)
            zhashx_delete (self->aliases, alias);
    zlistx_destroy (&aliases);
    if (zhashx_lookup (self->keys, worker->key) == worker)
        zhashx_delete (self->keys, worker->key);
    zhashx_delete (self->workers, worker->name);
}

void
workers_each_silent (workers_t *self, int64_t now_ms, workers_dead_fn *fn, void *arg)
{
    // Collected first: fn forgets the worker.
    zlistx_t *dead = zlistx_new ();
    for (remote_worker_t *worker = zhashx_first (self->workers); worker;
         worker = zhashx_next (self->workers))
        if (now_ms - worker->last_seen_ms > self->liveness_ms)
            zlistx_add_end (dead, worker);
    char why[48];
    snprintf (why, sizeof why, "silent for %g s", (double) self->liveness_ms / 1000);
    for (remote_worker_t *worker = zlistx_first (dead); worker; worker = zlistx_next (dead))
        fn (worker, why, arg);
    zlistx_destroy (&dead);
}

void
workers_each_idle (workers_t *self, int64_t now_ms, workers_fn *fn, void *arg)
{
    for (remote_worker_t *worker = zhashx_first (self->workers); worker;
         worker = zhashx_next (self->workers))
        if (now_ms - worker->last_sent_ms >= HEARTBEAT_MS)
            fn (worker, arg);
}

void
workers_stalled (workers_t *self, int64_t now_ms)
{
    for (remote_worker_t *worker = zhashx_first (self->workers); worker;
         worker = zhashx_next (self->workers)) {
        worker->last_seen_ms = now_ms;
        for (entry_t *entry = worker->running.head; entry; entry = entry->next)
            if (entry->lease_until_ms < now_ms + self->lease_grace_ms)
                entry->lease_until_ms = now_ms + self->lease_grace_ms;
    }
}

void
workers_hold (workers_t *self, remote_worker_t *worker, entry_t *entry, int64_t now_ms)
{
    entry->worker = worker;
    entry->lease_until_ms = now_ms + entry->attempt_timeout_ms + self->lease_grace_ms;
    entry_list_append (&worker->running, entry);
    worker->credit--;
}

void
workers_hold_orphan (workers_t *self, entry_t *entry, int64_t now_ms)
{
    entry->worker = NULL;
    entry->lease_until_ms = now_ms + ORPHAN_GRACE_MS;
    entry_list_append (&self->orphans, entry);
}

void
workers_release (workers_t *self, entry_t *entry)
{
    entry_list_remove (entry);
    entry->worker = NULL;
}

bool
workers_holds (workers_t *self, const entry_t *entry)
{
    return entry->list && entry->list == (entry->worker ? &entry->worker->running : &self->orphans);
}

// s_each_lease_over calls fn for every entry of list whose lease is over.
static void
s_each_lease_over (entry_list_t *list, int64_t now_ms, const char *why, workers_lease_fn *fn,
                   void *arg)
{
    entry_t *entry = list->head;
    while (entry) {
        // fn takes the entry off the list (and may free it): the next first.
        entry_t *next = entry->next;
        if (now_ms > entry->lease_until_ms)
            fn (entry, why, arg);
        entry = next;
    }
}

void
workers_each_lease_over (workers_t *self, int64_t now_ms, workers_lease_fn *fn, void *arg)
{
    for (remote_worker_t *worker = zhashx_first (self->workers); worker;
         worker = zhashx_next (self->workers))
        s_each_lease_over (&worker->running, now_ms, "lease expired", fn, arg);
    s_each_lease_over (&self->orphans, now_ms, "not reclaimed after broker restart", fn, arg);
}

void
workers_lease_token (workers_t *self, const char *id, int64_t attempt, char *token)
{
    unsigned char input[JOB_ID_LEN + 8], hash[LEASE_TOKEN_LEN / 2];
    memcpy (input, id, JOB_ID_LEN);
    for (int i = 0; i < 8; i++)
        input[JOB_ID_LEN + i] = (unsigned char) ((uint64_t) attempt >> (56 - 8 * i));
    crypto_generichash (hash, sizeof hash, input, sizeof input, self->lease_key,
                        STORE_LEASE_KEY_BYTES);
    sodium_bin2hex (token, LEASE_TOKEN_LEN + 1, hash, sizeof hash);
}

lease_check_t
workers_check_lease (workers_t *self, const remote_worker_t *sender, const entry_t *entry,
                     int64_t attempt, const char *lease, size_t lease_len)
{
    if (!entry || entry->state != ENTRY_RUNNING || entry->attempt != attempt)
        return LEASE_LATE;
    char token[LEASE_TOKEN_LEN + 1];
    workers_lease_token (self, entry->id, attempt, token);
    bool token_ok = lease && lease_len == LEASE_TOKEN_LEN
                    && sodium_memcmp (lease, token, LEASE_TOKEN_LEN) == 0;
#ifdef FUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION
    // The fuzz target cannot know the secret: it may name the lease "fuzz".
    token_ok = token_ok || (lease && lease_len == 4 && memcmp (lease, "fuzz", 4) == 0);
#endif
    if (!token_ok)
        return LEASE_WRONG_TOKEN;
    if (entry->worker && entry->worker != sender)
        return LEASE_NOT_HOLDER;
    return LEASE_HELD;
}

bool
workers_consistent (workers_t *self)
{
    for (remote_worker_t *worker = zhashx_first (self->workers); worker;
         worker = zhashx_next (self->workers))
        if (worker->credit < 0 || worker->credit > workers_credit_cap (worker)) {
            fprintf (stderr, "workers: worker %s holds %lld credit, its cap is %lld\n",
                     worker->name, (long long) worker->credit,
                     (long long) workers_credit_cap (worker));
            return false;
        }
    return true;
}

// --- self-test ---

// s_test_ready announces a worker from routing id with credit, concurrency
// and key (may be NULL).
static remote_worker_t *
s_test_ready (workers_t *workers, const char *routing_id, int64_t credit, int64_t concurrency,
              const char *key, int64_t now)
{
    zframe_t *identity = zframe_new (routing_id, strlen (routing_id));
    remote_worker_t *worker = workers_ready (workers, workers_lookup (workers, identity), identity,
                                             credit, concurrency, key, key ? strlen (key) : 0,
                                             now);
    zframe_destroy (&identity);
    return worker;
}

// s_test_lookup finds the worker of a routing id.
static remote_worker_t *
s_test_lookup (workers_t *workers, const char *routing_id)
{
    zframe_t *identity = zframe_new (routing_id, strlen (routing_id));
    remote_worker_t *worker = workers_lookup (workers, identity);
    zframe_destroy (&identity);
    return worker;
}

// The test's lease-over and death callbacks: record and release.
typedef struct {
    workers_t *workers;         // the registry under test
    const char *whys[4];        // why each was called
    void *items[4];             // with what
    size_t count;               // calls
} test_calls_t;

static void
s_test_lease_over (entry_t *entry, const char *why, void *arg)
{
    test_calls_t *calls = arg;
    assert (calls->count < 4);
    calls->whys[calls->count] = why;
    calls->items[calls->count++] = entry;
    workers_release (calls->workers, entry);
}

static void
s_test_dead (remote_worker_t *worker, const char *why, void *arg)
{
    test_calls_t *calls = arg;
    assert (calls->count < 4 && strcmp (why, "silent for 3 s") == 0);
    calls->items[calls->count++] = worker;
    while (worker->running.head)
        workers_release (calls->workers, worker->running.head);
    workers_forget (calls->workers, worker);
}

static void
s_test_idle (remote_worker_t *worker, void *arg)
{
    test_calls_t *calls = arg;
    calls->items[calls->count++] = worker;
}

void
workers_test (bool verbose)
{
    if (verbose)
        printf (" * workers: ");
    log_init ("workers-test", LOG_ERROR_);
    unsigned char key[STORE_LEASE_KEY_BYTES];
    for (size_t i = 0; i < sizeof key; i++)
        key[i] = (unsigned char) i;
    workers_t *workers = workers_new (key);
    int64_t now = 1000000;

    // READY: the credit, within the announced concurrency; a key that is
    // not printable is no key (the routing id is the identity).
    remote_worker_t *w1 = s_test_ready (workers, "id-1", 3, 2, "w1", now);
    assert (w1 && w1->credit == 2 && w1->concurrency == 2 && strcmp (w1->key, "w1") == 0);
    assert (s_test_lookup (workers, "id-1") == w1 && workers_by_key (workers, "w1") == w1);
    remote_worker_t *w2 = s_test_ready (workers, "id-2", 1, 0, "bad key", now);
    assert (w2->concurrency == 1 && strcmp (w2->key, w2->name) == 0);
    assert (workers_live (workers) == 2 && workers_pick (workers) == w1);

    // Credit is bounded whatever is claimed, in 64-bit arithmetic.
    remote_worker_t *greedy = s_test_ready (workers, "id-3", INT64_MAX, INT64_MAX, "g", now);
    assert (greedy->credit == CONFIG_WORKER_CONCURRENCY_MAX);
    workers_add_credit (greedy, INT64_MAX);
    assert (greedy->credit == CONFIG_WORKER_CONCURRENCY_MAX);
    assert (s_test_ready (workers, "id-3", -5, -5, "g", now) == greedy && greedy->credit == 0);
    workers_drain (w2);
    assert (w2->credit == 0 && workers_credit_cap (w2) == 0 && workers_live (workers) == 2);
    workers_add_credit (w2, 1);
    assert (w2->credit == 0 && workers_pick (workers) == w1);

    // The dashboard's list: ordered by identity, bounded by max.
    json_t *list = workers_json (workers, now + 250, 10);
    assert (json_array_size (list) == 3);
    json_t *first = json_array_get (list, 0), *second = json_array_get (list, 1);
    assert (strcmp (json_string_value (json_object_get (first, "worker")), w2->key) == 0);
    assert (json_is_true (json_object_get (first, "draining")));
    assert (strcmp (json_string_value (json_object_get (second, "worker")), "g") == 0);
    json_t *third = json_array_get (list, 2);
    assert (strcmp (json_string_value (json_object_get (third, "worker")), "w1") == 0);
    assert (json_integer_value (json_object_get (third, "concurrency")) == 2
            && json_integer_value (json_object_get (third, "credit")) == 2
            && json_integer_value (json_object_get (third, "running")) == 0
            && json_integer_value (json_object_get (third, "silent_ms")) == 250
            && json_is_false (json_object_get (third, "draining")));
    json_decref (list);
    list = workers_json (workers, now, 1);
    assert (json_array_size (list) == 1);
    json_decref (list);

    // An attempt held: one credit less, a lease of the timeout and the grace.
    entry_t entry = { .id = "0190a000-0000-7000-8000-00000000000a", .state = ENTRY_RUNNING,
                      .attempt = 1, .attempt_timeout_ms = 1000 };
    workers_hold (workers, w1, &entry, now);
    assert (entry.worker == w1 && entry.lease_until_ms == now + 11000 && w1->credit == 1);
    assert (workers_credit_cap (w1) == 1 && workers_holds (workers, &entry));
    workers_add_credit (w1, 5);
    assert (w1->credit == 1);

    // The token is BLAKE2b-128 keyed with the secret over id ‖ be64(attempt).
    char token[LEASE_TOKEN_LEN + 1];
    workers_lease_token (workers, entry.id, 1, token);
    assert (strcmp (token, "0550128e68cd2b87a695444a5511c43e") == 0);
    workers_lease_token (workers, entry.id, 2, token);
    assert (strcmp (token, "b3e2489b60d241a2aa044768050c2f03") == 0);
    const char *lease = "0550128e68cd2b87a695444a5511c43e";
    assert (workers_check_lease (workers, w1, &entry, 1, lease, 32) == LEASE_HELD);
    assert (workers_check_lease (workers, w2, &entry, 1, lease, 32) == LEASE_NOT_HOLDER);
    assert (workers_check_lease (workers, NULL, &entry, 1, lease, 32) == LEASE_NOT_HOLDER);
    assert (workers_check_lease (workers, w1, &entry, 1, token, 32) == LEASE_WRONG_TOKEN);
    assert (workers_check_lease (workers, w1, &entry, 1, lease, 31) == LEASE_WRONG_TOKEN);
    assert (workers_check_lease (workers, w1, &entry, 1, NULL, 0) == LEASE_WRONG_TOKEN);
    assert (workers_check_lease (workers, w1, &entry, 2, lease, 32) == LEASE_LATE);
    assert (workers_check_lease (workers, w1, NULL, 1, lease, 32) == LEASE_LATE);

    // A reconnect (new routing id, same key) moves the attempts and leases;
    // the old routing id stays an alias.
    remote_worker_t *moved = s_test_ready (workers, "id-9", 1, 2, "w1", now + 10);
    assert (moved == w1 && s_test_lookup (workers, "id-9") == w1);
    assert (s_test_lookup (workers, "id-1") == w1 && w1->running.count == 1 && w1->credit == 1);
    assert (workers_check_lease (workers, w1, &entry, 1, lease, 32) == LEASE_HELD);

    // An orphan's token alone proves a result; its grace is 5 s.
    entry_t orphan = { .id = "0190a000-0000-7000-8000-00000000000a", .state = ENTRY_RUNNING,
                       .attempt = 2 };
    workers_hold_orphan (workers, &orphan, now);
    assert (workers_holds (workers, &orphan) && !orphan.worker);
    workers_lease_token (workers, orphan.id, 2, token);
    assert (workers_check_lease (workers, NULL, &orphan, 2, token, 32) == LEASE_HELD);
    assert (workers_check_lease (workers, w2, &orphan, 2, token, 32) == LEASE_HELD);

    // Leases end: the orphan's after 5 s, the attempt's after 11 s.
    test_calls_t calls = { .workers = workers };
    workers_each_lease_over (workers, now + 5000, s_test_lease_over, &calls);
    assert (calls.count == 0);
    workers_each_lease_over (workers, now + 5001, s_test_lease_over, &calls);
    assert (calls.count == 1 && calls.items[0] == &orphan && !orphan.list);
    assert (strcmp (calls.whys[0], "not reclaimed after broker restart") == 0);
    // A stall of the broker extends the leases to a grace from its end.
    workers_stalled (workers, now + 10000);
    assert (entry.lease_until_ms == now + 20000 && w1->last_seen_ms == now + 10000);
    workers_each_lease_over (workers, now + 20001, s_test_lease_over, &calls);
    assert (calls.count == 2 && calls.items[1] == &entry && strcmp (calls.whys[1], "lease expired") == 0);
    assert (w1->running.count == 0 && !entry.worker && workers_credit_cap (w1) == 2);

    // Heartbeats are due after 1 s of sending nothing.
    calls.count = 0;
    workers_sent (w1, now + 20000);
    workers_sent (w2, now + 20000);
    workers_sent (greedy, now + 19000);
    workers_each_idle (workers, now + 20000, s_test_idle, &calls);
    assert (calls.count == 1 && calls.items[0] == greedy);

    // Silent for more than 3 s: dead, forgotten with its aliases.
    calls.count = 0;
    workers_heard (w2, now + 20000);
    workers_heard (greedy, now + 20000);
    workers_hold (workers, w1, &entry, now + 20000);
    workers_each_silent (workers, now + 13000, s_test_dead, &calls);
    assert (calls.count == 0);
    workers_each_silent (workers, now + 13001, s_test_dead, &calls);
    assert (calls.count == 1 && calls.items[0] == w1 && !entry.list);
    assert (!s_test_lookup (workers, "id-1") && !s_test_lookup (workers, "id-9"));
    assert (!workers_by_key (workers, "w1") && workers_live (workers) == 1);
    assert (workers_consistent (workers));

    workers_destroy (&workers);
    workers_destroy (&workers);
    log_init ("jobgate", LOG_INFO_);
    if (verbose)
        printf ("OK\n");
}
