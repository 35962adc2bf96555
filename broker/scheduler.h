// scheduler — who runs next (issue 17 #5): the entries waiting in each
// tenant's lane (one priority queue per provider slot), the ring on which
// the tenants with waiting entries take turns, and each provider's live
// limits (broker/provider.h), which it consults before a call starts and
// tells of every call's end.
//
// An llm entry (token_estimate > 0) also waits for its provider's token
// budget (providers.NAME.tokens_per_minute, and what the upstream said is
// left: broker/tokens.h); its call reserves its estimate when it starts.
//
// Fair selection: tenants take turns in ring order, so one tenant's flood
// (of any priority) never holds back another's work by more than a round; a
// turn is up to the tenant's weight in calls (quotas.TENANT.weight, weighted
// round robin); a tenant at its max_running, or with nothing that may start,
// is passed over (its turn ends); within the tenant, the highest priority
// among the slots whose provider allows a call now (FIFO within a priority).
//
// Fallbacks (providers.NAME.fallback): an entry's route is its own provider,
// then that provider's fallbacks in order (a fallback's own fallbacks are not
// followed: the operator lists the chain where it starts). Each entry keeps
// its position on the route; scheduler_route_next moves it on after an
// attempt failed retryably. At dispatch, from that position on, a provider
// whose breaker is open (or half-open with its probe running) or which is
// paused longer than the entry can wait (until its expire_after_ms deadline,
// else one attempt's timeout) is passed over; the call then counts against
// the provider it goes to (rate, concurrency, breaker, pauses). A provider's
// rate limit and concurrency cap are waited for, never a reason to fall back.
//
// Slots: one per configured provider, in the config's order, then one for
// direct calls (user URLs, webhooks), with the direct section's limits.
//
// No I/O; time is passed in. Entries belong to broker/jobs.h: the scheduler
// only moves them in and out of its queues and accounts for their calls.
#ifndef JOBGATE_SCHEDULER_H
#define JOBGATE_SCHEDULER_H

#include "config.h"
#include "provider.h"
#include "queue.h"
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct _scheduler_t scheduler_t;

// scheduler_new makes the scheduler of config (borrowed): empty lanes and
// each provider's state. This function can't fail.
scheduler_t *scheduler_new (const config_t *config);

// scheduler_config_changed applies a reloaded configuration's provider
// limits to each provider's state (provider_config_changed). This function
// can't fail.
void scheduler_config_changed (scheduler_t *self, int64_t now_ms);

// scheduler_destroy frees it; nulls *self_p. The lanes are the tenants'.
void scheduler_destroy (scheduler_t **self_p);

// scheduler_slots returns the number of provider slots (a lane's queues).
size_t scheduler_slots (const scheduler_t *self);

// scheduler_provider_at returns the live state of the provider of slot
// (direct calls last), for the metrics.
provider_t *scheduler_provider_at (scheduler_t *self, size_t slot);

// scheduler_slot returns the slot of an entry: its provider's, or direct
// calls' (the last).
size_t scheduler_slot (const scheduler_t *self, const entry_t *entry);

// scheduler_provider returns the slot of a configured provider, or -1 when
// name (may be NULL) names none: a direct call.
int scheduler_provider (const scheduler_t *self, const char *name);

// scheduler_enqueue puts an entry (on no list) last in its tenant's queue of
// its slot and priority, or first (a job handed back keeps its place).
void scheduler_enqueue (scheduler_t *self, entry_t *entry, bool front);

// scheduler_remove takes a waiting entry out of its queue; an entry in none
// (running, delayed, or taken by scheduler_take_failing) is left alone.
void scheduler_remove (scheduler_t *self, entry_t *entry);

// scheduler_next takes the entry to run next (see above), or returns NULL
// when nothing may start now; *wake_ms is then the monotonic time when a
// provider's limit lifts (0: only a finishing call can lift one).
entry_t *scheduler_next (scheduler_t *self, int64_t now_ms, int64_t *wake_ms);

// scheduler_take_failing moves every entry waiting for a provider whose
// breaker is open and configured to fail fast, and none of whose fallbacks
// can take it instead, onto failing, for the caller to fail (they keep their
// queued state but are in no queue).
void scheduler_take_failing (scheduler_t *self, int64_t now_ms, entry_list_t *failing);

// scheduler_call_provider returns the configured provider (its index) that
// entry's call goes to: its own or the fallback its route is at; -1 for a
// direct call.
int scheduler_call_provider (const scheduler_t *self, const entry_t *entry);

// scheduler_route_next moves entry's route on after an attempt that failed
// retryably: the next provider of its list, after the last back to its own.
// Returns true when the next attempt goes to a fallback.
bool scheduler_route_next (scheduler_t *self, entry_t *entry);

// scheduler_queued returns the entries waiting in all lanes.
size_t scheduler_queued (const scheduler_t *self);

// scheduler_call_started tells the entry's provider that its call starts.
void scheduler_call_started (scheduler_t *self, entry_t *entry, int64_t now_ms);

// scheduler_call_ended tells the entry's provider that its call ended and
// what it said about the upstream (call's latency and timeout are filled in
// here). Nothing happens for an entry with no call started.
void scheduler_call_ended (scheduler_t *self, entry_t *entry, int64_t now_ms,
                           provider_call_t call);

// scheduler_tokens_used settles the token reservation of the entry's call
// with the tokens it used (-1: unknown, the estimate stands) and takes the
// upstream's word on its token budget (remaining -1 / reset_ms -1:
// unknown), broker/tokens.h. Nothing happens for a call that reserved none.
void scheduler_tokens_used (scheduler_t *self, entry_t *entry, int64_t used, int64_t remaining,
                            int64_t reset_ms, int64_t now_ms);

// scheduler_providers_json describes the configured providers for GET
// /v1/providers; active[i] is the count of active jobs of provider i (its
// waiting jobs are those not in flight). Returns a new reference.
json_t *scheduler_providers_json (scheduler_t *self, int64_t now_ms, const size_t *active);

// scheduler_consistent checks the ring and the lanes' counts against the
// queues; a line on stderr says what does not agree.
bool scheduler_consistent (scheduler_t *self);

// scheduler_test runs the self-test.
void scheduler_test (bool verbose);

#endif
