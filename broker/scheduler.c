// scheduler — the tenants' lanes, the dispatch ring, the providers' limits.
#include "scheduler.h"
#include "clock.h"
#include "mem.h"
#include "tenant.h"
#include "tokens.h"

#include <assert.h>
#include <stdio.h>
#include <string.h>

// Where the calls of one slot's entries may go: the slot itself, then its
// provider's fallbacks in the configured order.
typedef struct {
    int *slots;                 // the slots of the route's providers; slots[0] is its own
    size_t count;               // 1 + its fallbacks
} route_t;

struct _scheduler_t {
    const config_t *config;     // borrowed configuration
    provider_t **providers;     // live state per slot: the configured providers, then direct
    route_t *routes;            // per slot: where its entries' calls may go
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
    self->routes = mem_calloc (self->slots, sizeof *self->routes);
    for (size_t i = 0; i < self->slots; i++) {
        // config_load checked that every fallback names another provider.
        size_t fallbacks = i < config->providers_count ? config->providers[i].fallback_count : 0;
        route_t *route = &self->routes[i];
        route->slots = mem_calloc (1 + fallbacks, sizeof *route->slots);
        route->slots[route->count++] = (int) i;
        for (size_t f = 0; f < fallbacks; f++) {
            int slot = scheduler_provider (self, config->providers[i].fallback[f]);
            if (slot >= 0 && slot != (int) i)
                route->slots[route->count++] = slot;
        }
    }
    return self;
}

void
scheduler_config_changed (scheduler_t *self, int64_t now_ms)
{
    for (size_t i = 0; i < self->slots; i++)
        provider_config_changed (self->providers[i], now_ms);
}

void
scheduler_destroy (scheduler_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    scheduler_t *self = *self_p;
    for (size_t i = 0; i < self->slots; i++) {
        provider_destroy (&self->providers[i]);
        free (self->routes[i].slots);
        tokens_destroy (&self->tokens[i]);
    }
    free (self->providers);
    free (self->routes);
    free (self->tokens);
    free (self);
    *self_p = NULL;
}

provider_t *
scheduler_provider_at (scheduler_t *self, size_t slot)
{
    assert (slot < self->slots);
    return self->providers[slot];
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

// s_route returns the route of an entry's slot.
static const route_t *
s_route (const scheduler_t *self, const entry_t *entry)
{
    return &self->routes[scheduler_slot (self, entry)];
}

// s_call_slot returns the slot an entry's call goes to: the provider its
// route names.
static size_t
s_call_slot (const scheduler_t *self, const entry_t *entry)
{
    const route_t *route = s_route (self, entry);
    return (size_t) route->slots[(size_t) entry->route < route->count ? entry->route : 0];
}

int
scheduler_call_provider (const scheduler_t *self, const entry_t *entry)
{
    size_t slot = s_call_slot (self, entry);
    return slot + 1 < self->slots ? (int) slot : -1;
}

bool
scheduler_route_next (scheduler_t *self, entry_t *entry)
{
    entry->route = (int) (((size_t) entry->route + 1) % s_route (self, entry)->count);
    return entry->route != 0;
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

// s_pass_over moves a tenant that may not start a call now to the back of
// the ring; what it took of its turn stays counted (when a limit holds
// every tenant, a pass over all of them changes nothing).
static void
s_pass_over (scheduler_t *self, tenant_t *tenant)
{
    s_ring_remove (self, tenant);
    s_ring_add (self, tenant);
}

// s_turn_over ends a tenant's turn: to the back of the ring, the others
// come first; its next turn starts whole.
static void
s_turn_over (scheduler_t *self, tenant_t *tenant)
{
    s_pass_over (self, tenant);
    tenant_lane (tenant)->turn_taken = 0;
}

void
scheduler_enqueue (scheduler_t *self, entry_t *entry, bool front)
{
    tenant_lane_t *lane = tenant_lane (entry->tenant);
    queue_t *queue = &lane->queues[scheduler_slot (self, entry)];
    entry->queued_at_ms = clock_wall_ms ();
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
    if (lane->queued == 0) {
        s_ring_remove (self, tenant);
        lane->turn_taken = 0;
    }
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

// s_patience_ms returns how long an entry can wait for a paused provider:
// until its expire_after_ms deadline when it has one, else one attempt's
// timeout.
static int64_t
s_patience_ms (const entry_t *entry)
{
    return entry->expire_at_ms > 0 ? entry->expire_at_ms - clock_wall_ms ()
                                   : entry->attempt_timeout_ms;
}

// s_pick_route returns the route position an entry's call takes at now_ms,
// or -1 when that provider's limits allow no call now (*wake_ms lowered to
// when one lifts, if known). From the position its route is at, providers
// that cannot take the call are passed over: an open breaker, a pause
// longer than the entry can wait. When none can, it waits for its own.
static int
s_pick_route (scheduler_t *self, tenant_t *tenant, const entry_t *entry, int64_t now_ms,
              int64_t *wake_ms)
{
    const route_t *route = s_route (self, entry);
    size_t position = (size_t) entry->route < route->count ? (size_t) entry->route : 0;
    size_t from = position;
    for (size_t k = 0; route->count > 1 && k < route->count; k++) {
        size_t candidate = (from + k) % route->count;
        int64_t until;
        provider_availability_t availability = provider_availability (
            self->providers[route->slots[candidate]], tenant_name (tenant), now_ms, &until);
        if (availability == PROVIDER_AVAILABLE
            || (availability == PROVIDER_PAUSED && until - now_ms <= s_patience_ms (entry))) {
            position = candidate;
            break;
        }
    }
    int slot = route->slots[position];
    int64_t wake;
    if (!provider_can_start (self->providers[slot], tenant_name (tenant), now_ms, &wake)
        || !s_tokens_allow (self, (size_t) slot, entry, now_ms, &wake)) {
        if (wake && (!*wake_ms || wake < *wake_ms))
            *wake_ms = wake;
        return -1;
    }
    return (int) position;
}

entry_t *
scheduler_next (scheduler_t *self, int64_t now_ms, int64_t *wake_ms)
{
    *wake_ms = 0;
    size_t visits = self->ring_size;
    for (size_t i = 0; i < visits && self->ring_head; i++) {
        tenant_t *tenant = self->ring_head;
        tenant_lane_t *lane = tenant_lane (tenant);
        if (tenant_at_max_running (tenant)) {
            s_pass_over (self, tenant);
            continue;
        }
        queue_t *queues = lane->queues;
        int best = -1, best_priority = -1, best_route = 0;
        for (size_t slot = 0; slot < self->slots; slot++) {
            int priority = queue_top_priority (&queues[slot]);
            if (priority <= best_priority)
                continue;
            int route = s_pick_route (self, tenant, queue_peek (&queues[slot]), now_ms, wake_ms);
            if (route < 0)
                continue;
            best = (int) slot;
            best_priority = priority;
            best_route = route;
        }
        if (best < 0) {
            s_pass_over (self, tenant);
            continue;
        }
        entry_t *entry = queue_pop (&queues[best]);
        entry->route = best_route;
        // A tenant keeps its turn for as many calls as its weight.
        if (++lane->turn_taken >= tenant_weight (tenant))
            s_turn_over (self, tenant);
        s_unqueued (self, tenant);
        return entry;
    }
    return NULL;
}

// s_fallback_open is true when a slot's entries have somewhere else to go:
// one of its fallbacks does not fail fast.
static bool
s_fallback_open (scheduler_t *self, size_t slot, int64_t now_ms)
{
    const route_t *route = &self->routes[slot];
    for (size_t k = 1; k < route->count; k++)
        if (!provider_fail_fast (self->providers[route->slots[k]], now_ms))
            return true;
    return false;
}

void
scheduler_take_failing (scheduler_t *self, int64_t now_ms, entry_list_t *failing)
{
    for (size_t slot = 0; slot < self->slots; slot++) {
        if (!provider_fail_fast (self->providers[slot], now_ms)
            || s_fallback_open (self, slot, now_ms))
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
    int call_slot = s_call_slot (self, entry);
    tokens_t *tokens = self->tokens[call_slot];
    entry->token_reserved = entry->token_estimate > 0 && tokens;
    if (entry->token_reserved)
        entry->token_stamp = tokens_reserve (tokens, entry->token_estimate, now_ms);
    provider_started (self->providers[call_slot], tenant_name (entry->tenant), now_ms);
}

void
scheduler_call_ended (scheduler_t *self, entry_t *entry, int64_t now_ms, provider_call_t call)
{
    if (!entry->in_provider)
        return;
    entry->in_provider = false;
    call.latency_ms = now_ms - entry->dispatched_ms;
    call.timeout_ms = entry->attempt_timeout_ms;
    provider_finished (self->providers[s_call_slot (self, entry)], tenant_name (entry->tenant), now_ms,
                       &call);
}

void
scheduler_tokens_used (scheduler_t *self, entry_t *entry, int64_t used, int64_t remaining,
                       int64_t reset_ms, int64_t now_ms)
{
    tokens_t *tokens = self->tokens[s_call_slot (self, entry)];
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

// s_test_order takes every entry that may start at now and checks their ids
// in order ("a1 b1 …"); each call starts and ends at once, or with held,
// after a scheduler_next that finds nothing may start (a limit that holds
// every tenant).
static void
s_test_order (scheduler_t *scheduler, int64_t now, bool held, const char *expected)
{
    char order[256] = "";
    for (entry_t *entry; (entry = scheduler_next (scheduler, now, &(int64_t) { 0 }));) {
        scheduler_call_started (scheduler, entry, now);
        tenant_call_started (entry->tenant);
        assert (!held || !scheduler_next (scheduler, now, &(int64_t) { 0 }));
        s_test_end (scheduler, entry, now, PROVIDER_ANSWERED);
        snprintf (order + strlen (order), sizeof order - strlen (order), "%s%s",
                  *order ? " " : "", entry->id);
    }
    if (strcmp (order, expected) != 0) {
        fprintf (stderr, "scheduler: took \"%s\", expected \"%s\"\n", order, expected);
        assert (false);
    }
}

// s_test_weights: a tenant of weight w takes up to w calls per turn.
static void
s_test_weights (void)
{
    config_provider_t providers[1] = { { .name = "w", .base_url = "http://127.0.0.1:1" } };
    config_quota_t quotas[2] = { { .tenant = "a", .weight = 3 }, { .tenant = "c", .weight = 2 } };
    config_t config = { .providers = providers, .providers_count = 1, .quotas = quotas,
                        .quotas_count = 2, .store_map_mb = 16 };
    scheduler_t *scheduler = scheduler_new (&config);
    tenants_t *tenants = tenants_new (&config, scheduler_slots (scheduler), s_test_no_usage, NULL);
    int64_t now = clock_mono_ms ();
    tenant_t *a = tenants_get (tenants, "a", now), *b = tenants_get (tenants, "b", now);
    tenant_t *c = tenants_get (tenants, "c", now);
    entry_t *entries[13] = {
        s_test_entry (a, 0, 5, "a1"), s_test_entry (a, 0, 5, "a2"), s_test_entry (a, 0, 5, "a3"),
        s_test_entry (a, 0, 5, "a4"), s_test_entry (a, 0, 5, "a5"), s_test_entry (a, 0, 5, "a6"),
        s_test_entry (b, 0, 5, "b1"), s_test_entry (b, 0, 5, "b2"), s_test_entry (b, 0, 5, "b3"),
        s_test_entry (c, 0, 5, "c1"), s_test_entry (c, 0, 5, "c2"), s_test_entry (c, 0, 5, "c3"),
        s_test_entry (b, 0, 5, "b4"),
    };
    for (int i = 0; i < 12; i++)
        scheduler_enqueue (scheduler, entries[i], false);
    // Turns in ring order (a, b, c), each as long as the tenant's weight;
    // a tenant with nothing left leaves the ring.
    s_test_order (scheduler, now, false, "a1 a2 a3 b1 c1 c2 a4 a5 a6 b2 c3 b3");
    assert (scheduler_queued (scheduler) == 0 && scheduler_consistent (scheduler));
    // A turn cut short (nothing left of a after two calls) is not carried
    // over: a tenant that comes back starts a whole turn.
    scheduler_enqueue (scheduler, entries[0], false);
    scheduler_enqueue (scheduler, entries[1], false);
    s_test_order (scheduler, now, false, "a1 a2");
    for (int i = 0; i < 4; i++)
        scheduler_enqueue (scheduler, entries[i], false);
    scheduler_enqueue (scheduler, entries[12], false);
    s_test_order (scheduler, now, false, "a1 a2 a3 b4 a4");
    assert (scheduler_consistent (scheduler));
    // When a limit holds everyone between calls (here a concurrency cap of
    // 1), the passes that find nothing to start do not cut turns short.
    providers[0].max_concurrency = 1;
    for (int i = 0; i < 4; i++)
        scheduler_enqueue (scheduler, entries[i], false);
    for (int i = 6; i < 8; i++)
        scheduler_enqueue (scheduler, entries[i], false);
    s_test_order (scheduler, now, true, "a1 a2 a3 b1 a4 b2");
    for (int i = 0; i < 13; i++)
        free (entries[i]);
    scheduler_destroy (&scheduler);
    tenants_destroy (&tenants);
}

// s_test_fallbacks: where an entry's calls go when its provider cannot take
// them (providers.NAME.fallback).
static void
s_test_fallbacks (void)
{
    char *p_fallback[2] = { "f", "g" }, *q_fallback[1] = { "p" };
    config_provider_t providers[4] = {
        { .name = "p", .base_url = "http://127.0.0.1:1", .circuit_failures = 1,
          .circuit_open_ms = 1000, .circuit_fail_fast = true, .max_pause_ms = 60000,
          .fallback = p_fallback, .fallback_count = 2 },
        { .name = "f", .base_url = "http://127.0.0.1:2", .max_concurrency = 1,
          .circuit_failures = 1, .circuit_open_ms = 1000, .max_pause_ms = 60000 },
        { .name = "g", .base_url = "http://127.0.0.1:3", .max_pause_ms = 60000 },
        { .name = "q", .base_url = "http://127.0.0.1:4", .max_pause_ms = 60000,
          .fallback = q_fallback, .fallback_count = 1 },
    };
    config_t config = { .providers = providers, .providers_count = 4, .store_map_mb = 16 };
    scheduler_t *scheduler = scheduler_new (&config);
    tenants_t *tenants = tenants_new (&config, scheduler_slots (scheduler), s_test_no_usage, NULL);
    int64_t now = clock_mono_ms (), wake;
    tenant_t *t = tenants_get (tenants, "t", now);
    entry_t *entries[6];
    for (int i = 0; i < 6; i++) {
        char id[8];
        snprintf (id, sizeof id, "e%d", i + 1);
        entries[i] = s_test_entry (t, 0, 5, id);
        entries[i]->attempt_timeout_ms = 1000;
    }
    entry_t *e1 = entries[0], *e2 = entries[1], *e3 = entries[2], *e4 = entries[3];
    entry_t *e5 = entries[4], *e6 = entries[5];

    // A healthy provider takes its own calls.
    scheduler_enqueue (scheduler, e1, false);
    assert (s_test_next (scheduler, now, NULL) == e1->id && e1->route == 0);
    assert (scheduler_call_provider (scheduler, e1) == 0);
    // It fails retryably (and its breaker opens): the next attempt goes to
    // the next provider of the list, f.
    s_test_end (scheduler, e1, now, PROVIDER_FAILED);
    assert (scheduler_route_next (scheduler, e1) && e1->route == 1);
    scheduler_enqueue (scheduler, e1, true);
    assert (s_test_next (scheduler, now, NULL) == e1->id);
    assert (scheduler_call_provider (scheduler, e1) == 1);
    // p's breaker is open: a new entry passes over it to f, and waits for
    // f's concurrency (1, taken by e1) rather than go on to g: limits are
    // waited for, they are no reason to fall back. Nothing fails fast
    // while a fallback can take p's calls.
    scheduler_enqueue (scheduler, e2, false);
    assert (strcmp (s_test_next (scheduler, now, &wake), "-") == 0 && wake == 0);
    entry_list_t failing = { NULL, NULL, 0 };
    scheduler_take_failing (scheduler, now, &failing);
    assert (failing.count == 0 && scheduler_queued (scheduler) == 1);
    s_test_end (scheduler, e1, now, PROVIDER_ANSWERED);
    assert (s_test_next (scheduler, now, NULL) == e2->id && e2->route == 1);
    // f pauses everyone for 5 s (Retry-After). e3 can wait 1 s: it passes
    // over p (open) and f (paused too long) to g. e4 can wait 10 s: it
    // waits for f. e5 may wait 10 s per attempt but expires in 2 s: to g.
    scheduler_call_ended (scheduler, e2, now,
                          (provider_call_t) { .outcome = PROVIDER_OVERLOADED, .retry_after_ms = 5000,
                                              .error_type = "upstream_status",
                                              .upstream_status = 429 });
    tenant_call_ended (t);
    e4->attempt_timeout_ms = 10000;
    e5->attempt_timeout_ms = 10000;
    e5->expire_at_ms = clock_wall_ms () + 2000;
    scheduler_enqueue (scheduler, e3, false);
    assert (s_test_next (scheduler, now, NULL) == e3->id && e3->route == 2);
    assert (scheduler_call_provider (scheduler, e3) == 2);
    scheduler_enqueue (scheduler, e4, false);
    assert (strcmp (s_test_next (scheduler, now, &wake), "-") == 0 && wake == now + 5000);
    scheduler_remove (scheduler, e4);
    scheduler_enqueue (scheduler, e5, false);
    assert (s_test_next (scheduler, now, NULL) == e5->id && e5->route == 2);
    // After g, the last of the list, the route comes back to p.
    s_test_end (scheduler, e3, now, PROVIDER_FAILED);
    assert (!scheduler_route_next (scheduler, e3) && e3->route == 0);
    // p's open time is over: its next call is the probe, and while it runs
    // the others pass over p again (f is still paused: to g).
    scheduler_enqueue (scheduler, e3, false);
    scheduler_enqueue (scheduler, e4, false);
    e4->attempt_timeout_ms = 1000;
    assert (s_test_next (scheduler, now + 1000, NULL) == e3->id && e3->route == 0);
    assert (s_test_next (scheduler, now + 1000, NULL) == e4->id && e4->route == 2);
    // q's route is q, then p: p's own fallbacks are not followed.
    e6->provider = 3;
    assert (scheduler_route_next (scheduler, e6) && e6->route == 1);
    assert (scheduler_call_provider (scheduler, e6) == 0);
    assert (!scheduler_route_next (scheduler, e6) && e6->route == 0);
    // Direct calls have no fallbacks.
    e6->provider = -1;
    assert (!scheduler_route_next (scheduler, e6) && scheduler_call_provider (scheduler, e6) == -1);
    assert (scheduler_consistent (scheduler));

    for (int i = 0; i < 6; i++)
        free (entries[i]);
    scheduler_destroy (&scheduler);
    tenants_destroy (&tenants);
}

void
scheduler_test (bool verbose)
{
    if (verbose)
        printf (" * scheduler: ");
    s_test_weights ();
    s_test_fallbacks ();
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
