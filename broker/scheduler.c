// scheduler — the tenants' lanes, the dispatch ring, the providers' limits.
#include "scheduler.h"
#include "clock.h"
#include "mem.h"
#include "tenant.h"
#include "tokens.h"

#include <assert.h>
#include <stdio.h>
#include <string.h>

struct _scheduler_t {
    const config_t *config;     // borrowed configuration
    provider_t **providers;     // live state per slot: the configured providers, then direct
    tokens_t **tokens;          // token budget per configured provider (NULL for direct)
    size_t slots;               // providers_count + 1
    size_t queued;              // entries in all lanes
    tenant_t *ring_head;        // tenants with entries queued, next to serve first
    tenant_t *ring_tail;        // the last of them
    size_t ring_size;           // tenants on the ring
};

scheduler_t *
scheduler_new (const config_t *config)
{
    scheduler_t *self = mem_calloc (1, sizeof *self);
    self->config = config;
    self->slots = config->providers_count + 1;
    self->providers = mem_calloc (self->slots, sizeof *self->providers);
    self->tokens = mem_calloc (self->slots, sizeof *self->tokens);
    for (size_t i = 0; i < self->slots; i++) {
        self->providers[i] = i < config->providers_count
                                 ? provider_new (&config->providers[i], false)
                                 : provider_new (&config->direct, true);
        if (i < config->providers_count)
            self->tokens[i] = tokens_new (config->providers[i].tokens_per_minute);
    }
    return self;
}

void
scheduler_destroy (scheduler_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    scheduler_t *self = *self_p;
    for (size_t i = 0; i < self->slots; i++) {
        provider_destroy (&self->providers[i]);
        tokens_destroy (&self->tokens[i]);
    }
    free (self->providers);
    free (self->tokens);
    free (self);
    *self_p = NULL;
}

size_t
scheduler_slots (const scheduler_t *self)
{
    return self->slots;
}

int
scheduler_provider (const scheduler_t *self, const char *name)
{
    for (size_t i = 0; name && i < self->config->providers_count; i++)
        if (strcmp (self->config->providers[i].name, name) == 0)
            return (int) i;
    return -1;
}

size_t
scheduler_slot (const scheduler_t *self, const entry_t *entry)
{
    return entry->provider >= 0 ? (size_t) entry->provider : self->slots - 1;
}

// The dispatch ring: tenants with entries queued, served in turn.

static void
s_ring_add (scheduler_t *self, tenant_t *tenant)
{
    tenant_lane_t *lane = tenant_lane (tenant);
    lane->ring_prev = self->ring_tail;
    lane->ring_next = NULL;
    if (self->ring_tail)
        tenant_lane (self->ring_tail)->ring_next = tenant;
    else
        self->ring_head = tenant;
    self->ring_tail = tenant;
    lane->in_ring = true;
    self->ring_size++;
}

static void
s_ring_remove (scheduler_t *self, tenant_t *tenant)
{
    tenant_lane_t *lane = tenant_lane (tenant);
    if (!lane->in_ring)
        return;
    if (lane->ring_prev)
        tenant_lane (lane->ring_prev)->ring_next = lane->ring_next;
    else
        self->ring_head = lane->ring_next;
    if (lane->ring_next)
        tenant_lane (lane->ring_next)->ring_prev = lane->ring_prev;
    else
        self->ring_tail = lane->ring_prev;
    lane->ring_prev = lane->ring_next = NULL;
    lane->in_ring = false;
    self->ring_size--;
}

void
scheduler_enqueue (scheduler_t *self, entry_t *entry, bool front)
{
    tenant_lane_t *lane = tenant_lane (entry->tenant);
    queue_t *queue = &lane->queues[scheduler_slot (self, entry)];
    if (front)
        queue_push_front (queue, entry);
    else
        queue_push (queue, entry);
    lane->queued++;
    self->queued++;
    if (!lane->in_ring)
        s_ring_add (self, entry->tenant);
}

// s_unqueued accounts for an entry taken out of its tenant's queues.
static void
s_unqueued (scheduler_t *self, tenant_t *tenant)
{
    tenant_lane_t *lane = tenant_lane (tenant);
    lane->queued--;
    self->queued--;
    if (lane->queued == 0)
        s_ring_remove (self, tenant);
}

void
scheduler_remove (scheduler_t *self, entry_t *entry)
{
    if (entry->state == ENTRY_QUEUED
        && queue_remove (&tenant_lane (entry->tenant)->queues[scheduler_slot (self, entry)], entry))
        s_unqueued (self, entry->tenant);
}

// s_tokens_allow is true when the entry's call fits its provider's token
// budget now (always for a call that counts none); *wake_ms when not.
static bool
s_tokens_allow (scheduler_t *self, size_t slot, const entry_t *entry, int64_t now_ms,
                int64_t *wake_ms)
{
    *wake_ms = 0;
    return !entry || entry->token_estimate <= 0 || !self->tokens[slot]
           || tokens_ready (self->tokens[slot], entry->token_estimate, now_ms, wake_ms);
}

entry_t *
scheduler_next (scheduler_t *self, int64_t now_ms, int64_t *wake_ms)
{
    *wake_ms = 0;
    size_t visits = self->ring_size;
    for (size_t i = 0; i < visits && self->ring_head; i++) {
        tenant_t *tenant = self->ring_head;
        // To the back of the ring: the others come first next time.
        s_ring_remove (self, tenant);
        s_ring_add (self, tenant);
        if (tenant_at_max_running (tenant))
            continue;
        queue_t *queues = tenant_lane (tenant)->queues;
        int best = -1, best_priority = -1;
        for (size_t slot = 0; slot < self->slots; slot++) {
            int priority = queue_top_priority (&queues[slot]);
            if (priority <= best_priority)
                continue;
            int64_t wake;
            if (!provider_can_start (self->providers[slot], tenant_name (tenant), now_ms, &wake)
                || !s_tokens_allow (self, slot, queues[slot].levels[priority].head, now_ms,
                                    &wake)) {
                if (wake && (!*wake_ms || wake < *wake_ms))
                    *wake_ms = wake;
                continue;
            }
            best = (int) slot;
            best_priority = priority;
        }
        if (best >= 0) {
            entry_t *entry = queue_pop (&queues[best]);
            s_unqueued (self, tenant);
            return entry;
        }
    }
    return NULL;
}

void
scheduler_take_failing (scheduler_t *self, int64_t now_ms, entry_list_t *failing)
{
    for (size_t slot = 0; slot < self->slots; slot++) {
        if (!provider_fail_fast (self->providers[slot], now_ms))
            continue;
        tenant_t *next;
        for (tenant_t *tenant = self->ring_head; tenant; tenant = next) {
            // Taking its last entries takes the tenant off the ring.
            next = tenant_lane (tenant)->ring_next;
            queue_t *queue = &tenant_lane (tenant)->queues[slot];
            for (int level = 0; level < QUEUE_PRIORITIES; level++)
                while (queue->levels[level].head) {
                    entry_t *entry = queue->levels[level].head;
                    queue_remove (queue, entry);
                    s_unqueued (self, tenant);
                    entry_list_append (failing, entry);
                }
        }
    }
}

size_t
scheduler_queued (const scheduler_t *self)
{
    return self->queued;
}

void
scheduler_call_started (scheduler_t *self, entry_t *entry, int64_t now_ms)
{
    entry->in_provider = true;
    entry->dispatched_ms = now_ms;
    tokens_t *tokens = self->tokens[scheduler_slot (self, entry)];
    entry->token_reserved = entry->token_estimate > 0 && tokens;
    if (entry->token_reserved)
        entry->token_stamp = tokens_reserve (tokens, entry->token_estimate, now_ms);
    provider_started (self->providers[scheduler_slot (self, entry)], tenant_name (entry->tenant), now_ms);
}

void
scheduler_call_ended (scheduler_t *self, entry_t *entry, int64_t now_ms, provider_call_t call)
{
    if (!entry->in_provider)
        return;
    entry->in_provider = false;
    call.latency_ms = now_ms - entry->dispatched_ms;
    call.timeout_ms = entry->attempt_timeout_ms;
    provider_finished (self->providers[scheduler_slot (self, entry)], tenant_name (entry->tenant), now_ms,
                       &call);
}

void
scheduler_tokens_used (scheduler_t *self, entry_t *entry, int64_t used, int64_t remaining,
                       int64_t reset_ms, int64_t now_ms)
{
    tokens_t *tokens = self->tokens[scheduler_slot (self, entry)];
    if (!tokens || entry->token_estimate <= 0)
        return;
    if (entry->token_reserved && used >= 0) {
        tokens_settle (tokens, entry->token_stamp, entry->token_estimate, used, now_ms);
        entry->token_reserved = false;
    }
    tokens_report (tokens, remaining, reset_ms, now_ms);
}

json_t *
scheduler_providers_json (scheduler_t *self, int64_t now_ms, const size_t *active)
{
    json_t *list = json_array ();
    for (size_t i = 0; i + 1 < self->slots; i++) {
        size_t in_flight = (size_t) provider_in_flight (self->providers[i]);
        json_t *state = provider_state_json (self->providers[i], now_ms,
                                             active[i] > in_flight ? active[i] - in_flight : 0);
        // The token budget, for LLM providers that have one.
        uint64_t per_minute = self->config->providers[i].tokens_per_minute;
        int64_t held_until = tokens_held_until (self->tokens[i], now_ms);
        if (per_minute > 0) {
            json_object_set_new (state, "tokens_per_minute", json_integer ((json_int_t) per_minute));
            json_object_set_new (state, "tokens_in_last_minute",
                                 json_integer ((json_int_t) tokens_window (self->tokens[i], now_ms)));
        }
        if (held_until > 0)
            json_object_set_new (state, "tokens_held_ms", json_integer (held_until - now_ms));
        json_array_append_new (list, state);
    }
    return list;
}

bool
scheduler_consistent (scheduler_t *self)
{
    size_t on_ring = 0, queued = 0;
    for (tenant_t *tenant = self->ring_head; tenant; tenant = tenant_lane (tenant)->ring_next) {
        tenant_lane_t *lane = tenant_lane (tenant);
        size_t in_queues = 0;
        for (size_t slot = 0; slot < self->slots; slot++)
            in_queues += lane->queues[slot].count;
        if (!lane->in_ring || lane->queued == 0 || in_queues != lane->queued) {
            fprintf (stderr, "scheduler: tenant \"%s\" has %zu queued, %zu in its queues%s\n",
                     tenant_name (tenant), lane->queued, in_queues,
                     lane->in_ring ? "" : ", not marked on the ring");
            return false;
        }
        queued += lane->queued;
        if (++on_ring > self->ring_size)
            break;
    }
    if (on_ring != self->ring_size || queued != self->queued) {
        fprintf (stderr, "scheduler: the ring holds %zu tenants (%zu kept) and %zu entries "
                 "(%zu kept)\n", on_ring, self->ring_size, queued, self->queued);
        return false;
    }
    return true;
}

// --- self-test ---

// s_test_entry makes an entry of tenant for slot (-1: direct) at priority.
static entry_t *
s_test_entry (tenant_t *tenant, int provider, int priority, const char *id)
{
    entry_t *entry = mem_calloc (1, sizeof *entry);
    snprintf (entry->id, sizeof entry->id, "%s", id);
    entry->tenant = tenant;
    entry->provider = provider;
    entry->priority = priority;
    return entry;
}

// s_test_next takes the next entry at now, starts its call, and returns its
// id ("-" when none, with *wake_ms).
static const char *
s_test_next (scheduler_t *scheduler, int64_t now, int64_t *wake_ms)
{
    int64_t wake;
    entry_t *entry = scheduler_next (scheduler, now, wake_ms ? wake_ms : &wake);
    if (!entry)
        return "-";
    scheduler_call_started (scheduler, entry, now);
    tenant_call_started (entry->tenant);
    return entry->id;
}

// s_test_end ends an entry's call with outcome at now.
static void
s_test_end (scheduler_t *scheduler, entry_t *entry, int64_t now, provider_outcome_t outcome)
{
    provider_call_t call = { .outcome = outcome, .error_type = "connect_failed" };
    scheduler_call_ended (scheduler, entry, now, call);
    tenant_call_ended (entry->tenant);
}

static uint64_t
s_test_no_usage (const char *record_tenant, void *arg)
{
    return 0;
}

void
scheduler_test (bool verbose)
{
    if (verbose)
        printf (" * scheduler: ");
    config_provider_t providers[1] = {
        { .name = "p", .base_url = "http://127.0.0.1:1", .max_concurrency = 2,
          .rate_limit = 10, .burst = 4, .circuit_failures = 1, .circuit_open_ms = 1000,
          .circuit_fail_fast = true, .max_pause_ms = 1000, .breaker_min_timeout_ms = 0 },
    };
    config_quota_t quotas[1] = { { .tenant = "a", .max_running = 1 } };
    config_t config = { .providers = providers, .providers_count = 1, .quotas = quotas,
                        .quotas_count = 1, .store_map_mb = 16,
                        .direct = { .max_concurrency = 3 } };
    scheduler_t *scheduler = scheduler_new (&config);
    tenants_t *tenants = tenants_new (&config, scheduler_slots (scheduler), s_test_no_usage, NULL);
    // The providers' buckets start full at the monotonic clock's now.
    int64_t now = clock_mono_ms (), wake;
    assert (scheduler_slots (scheduler) == 2);
    assert (scheduler_provider (scheduler, "p") == 0 && scheduler_provider (scheduler, "q") == -1);
    assert (scheduler_provider (scheduler, NULL) == -1);
    tenant_t *a = tenants_get (tenants, "a", now), *b = tenants_get (tenants, "b", now);
    tenant_t *c = tenants_get (tenants, "c", now);

    // a floods p at priority 9 before b's job at priority 0; c has a job
    // for p at 3 and a direct call at 7.
    entry_t *entries[7] = {
        s_test_entry (a, 0, 9, "a1"), s_test_entry (a, 0, 9, "a2"), s_test_entry (a, 0, 9, "a3"),
        s_test_entry (b, 0, 0, "b1"), s_test_entry (c, 0, 3, "c1"), s_test_entry (c, -1, 7, "c2"),
        s_test_entry (b, -1, 5, "b2"),
    };
    for (int i = 0; i < 6; i++)
        scheduler_enqueue (scheduler, entries[i], false);
    assert (scheduler_queued (scheduler) == 6 && scheduler_consistent (scheduler));
    // Turns in ring order: a, b, then c, whose p-job waits (p is at its
    // concurrency cap of 2) while its direct call may start. Then a is at
    // its max_running (1) and passed over, c's p-job still waits: nothing
    // may start, and no limit lifts with time alone.
    assert (strcmp (s_test_next (scheduler, now, NULL), "a1") == 0);
    assert (strcmp (s_test_next (scheduler, now, NULL), "b1") == 0);
    assert (strcmp (s_test_next (scheduler, now, NULL), "c2") == 0);
    assert (strcmp (s_test_next (scheduler, now, &wake), "-") == 0 && wake == 0);
    assert (scheduler_queued (scheduler) == 3 && scheduler_consistent (scheduler));
    // b's call ends: p has room; a still may not run, so c's p-job goes.
    s_test_end (scheduler, entries[3], now, PROVIDER_ANSWERED);
    assert (strcmp (s_test_next (scheduler, now, NULL), "c1") == 0);
    // A job handed back goes first in its queue, before a's older jobs; b
    // (back on the ring) comes after a.
    scheduler_enqueue (scheduler, entries[6], false);
    s_test_end (scheduler, entries[0], now, PROVIDER_ANSWERED);
    s_test_end (scheduler, entries[4], now, PROVIDER_ANSWERED);
    scheduler_enqueue (scheduler, entries[0], true);
    assert (strcmp (s_test_next (scheduler, now, NULL), "a1") == 0);
    assert (strcmp (s_test_next (scheduler, now, NULL), "b2") == 0);
    // p's rate: 4 tokens spent (a1, b1, c1, a1): the next call waits 101 ms.
    s_test_end (scheduler, entries[0], now, PROVIDER_ANSWERED);
    assert (strcmp (s_test_next (scheduler, now, &wake), "-") == 0 && wake == now + 101);
    assert (strcmp (s_test_next (scheduler, now + 101, NULL), "a2") == 0);

    // A queued entry taken out; one not queued is left alone.
    scheduler_remove (scheduler, entries[2]);
    scheduler_remove (scheduler, entries[2]);
    assert (scheduler_queued (scheduler) == 0 && scheduler_consistent (scheduler));

    // p's breaker opens (one failure) and fails fast: its waiting entries
    // are handed over, tenants in ring order; direct calls stay.
    scheduler_enqueue (scheduler, entries[2], false);
    scheduler_enqueue (scheduler, entries[3], false);
    scheduler_enqueue (scheduler, entries[5], false);
    s_test_end (scheduler, entries[1], now + 200, PROVIDER_FAILED);
    entry_list_t failing = { NULL, NULL, 0 };
    scheduler_take_failing (scheduler, now + 200, &failing);
    assert (failing.count == 2 && failing.head == entries[2] && failing.tail == entries[3]);
    assert (scheduler_queued (scheduler) == 1 && scheduler_consistent (scheduler));
    scheduler_remove (scheduler, entries[3]);   // in no queue: left alone
    assert (scheduler_queued (scheduler) == 1);
    entry_list_remove (entries[3]);
    entry_list_remove (entries[2]);
    assert (strcmp (s_test_next (scheduler, now + 200, NULL), "c2") == 0);
    // Once the breaker's open time is over, nothing fails fast.
    scheduler_enqueue (scheduler, entries[2], false);
    scheduler_take_failing (scheduler, now + 1200, &failing);
    assert (failing.count == 0 && scheduler_queued (scheduler) == 1);

    json_t *list = scheduler_providers_json (scheduler, now + 1200, (size_t[]) { 3 });
    assert (json_array_size (list) == 1);
    json_t *p = json_array_get (list, 0);
    assert (strcmp (json_string_value (json_object_get (p, "name")), "p") == 0);
    assert (json_integer_value (json_object_get (p, "queued")) == 3);
    json_decref (list);

    for (int i = 0; i < 7; i++) {
        scheduler_remove (scheduler, entries[i]);
        free (entries[i]);
    }
    scheduler_destroy (&scheduler);
    scheduler_destroy (&scheduler);
    tenants_destroy (&tenants);
    if (verbose)
        printf ("OK\n");
}
