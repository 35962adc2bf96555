// tenant — the broker's state of each tenant with work: its quota and what
// counts against it, kept by the broker so that the limits hold across every
// gateway (SPEC §5; docs/protocol.md §3.1 "Admission"; issue 17 #5, #6).
//
// A tenant is made on first use and forgotten by tenants_sweep once nothing
// of it is left (no job active, no call running, nothing waiting, its
// submission bucket full again): what it was is what it would be made as.
// Internal tenants (a name starting with '#') have no quota. A webhook
// delivery is recorded under TENANT_WEBHOOK_PREFIX and the name of the
// tenant whose job it reports, and counts against that tenant: tenants_get
// takes a record's tenant and returns the tenant whose quotas it uses.
//
// Admission (tenants_admit) is the one check of every path that creates
// work — SUBMIT (a batch is one SUBMIT per item), RETRY and the webhook
// delivery of a finishing job — in the order of §3.1: the store, the
// tenant's active jobs, its stored bytes, the broker's and the provider's
// queues, its submission rate (last: a refused request takes no token). The
// broker's facts (store, queues) come in an admission_t; the tenant's are
// its own. A delivery is checked against the tenant's active jobs only.
//
// Each tenant also carries its lane: its waiting entries and its place on
// the dispatch ring. The scheduler (broker/scheduler.h) keeps the lane; the
// tenant holds it so that it lives exactly as long as the tenant.
//
// No I/O: time is passed in, and the bytes a tenant's records take come from
// the function given to tenants_new (the store's count).
#ifndef JOBGATE_TENANT_H
#define JOBGATE_TENANT_H

#include "bucket.h"
#include "config.h"
#include "queue.h"
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

// Tenant names longer than this are refused (they come from API keys).
#define TENANT_NAME_MAX 256
// The record tenant of a tenant's webhook deliveries is this prefix and the
// tenant's name: no API key maps to a '#' tenant, so no client lists or
// reads a delivery, and the prefix names whose quotas it counts against.
#define TENANT_WEBHOOK_PREFIX "#webhooks/"
// Room for a record tenant: a delivery's prefixed name and its NUL.
#define TENANT_RECORD_NAME_MAX (TENANT_NAME_MAX + sizeof TENANT_WEBHOOK_PREFIX)
// Retry-After of refusals that last until space or quota frees up.
#define ADMIT_STORE_RETRY_MS 5000
#define ADMIT_STORED_RETRY_MS 10000

typedef struct _tenant_t tenant_t;
typedef struct _tenants_t tenants_t;

// A tenant's lane: written by the scheduler only.
typedef struct {
    queue_t *queues;            // its waiting entries, one queue per provider slot
    size_t queued;              // entries in them
    bool in_ring;               // on the dispatch ring (it has entries queued)
    int turn_taken;             // dispatches taken in its current turn (up to its weight)
    tenant_t *ring_prev;        // neighbours on the ring
    tenant_t *ring_next;
} tenant_lane_t;

// What creates work (docs/protocol.md §3.1 "Admission").
typedef enum {
    ADMIT_SUBMIT,               // SUBMIT: a client's new job
    ADMIT_RETRY,                // RETRY: a client runs a finished job again
    ADMIT_WEBHOOK               // a finishing job's callback delivery
} admit_path_t;

// The broker's side of an admission: what its store and queues say.
typedef struct {
    admit_path_t path;          // what creates the work
    bool store_refuses;         // commits fail, or free space is under the reserve (§6)
    bool broker_full;           // broker.max_queued jobs are active
    bool provider_full;         // the job's provider has its max_queued jobs active
    int64_t now_ms;             // monotonic time (the submission rate)
    bool llm;                   // the work is an llm job (quotas.TENANT.tokens_per_day)
    uint64_t tokens_today;      // the LLM tokens the tenant used this UTC day (broker/ledger.h)
    int64_t wall_ms;            // wall time: when this UTC day ends
} admission_t;

// Why work was refused: an ERROR's code, message and Retry-After.
typedef struct {
    int code;                   // 429 (the tenant's limits) or 503 (the broker's)
    const char *why;            // the ERROR's message (static)
    int64_t retry_after_ms;     // when trying again may succeed
    const char *reason;         // which check refused, a metric label (static): store,
                                // max_queued, max_stored_bytes, broker_max_queued,
                                // provider_max_queued, tokens_per_day, submit_rate
} refusal_t;

// Returns the bytes the records of record_tenant take in the store.
typedef uint64_t (tenants_usage_fn) (const char *record_tenant, void *arg);

// tenants_new makes an empty table for config (borrowed); each lane has
// slots queues; usage(arg) counts stored bytes. This function can't fail.
tenants_t *tenants_new (const config_t *config, size_t slots, tenants_usage_fn *usage, void *arg);

// tenants_destroy frees every tenant; nulls *self_p. No entry may still
// point at one.
void tenants_destroy (tenants_t **self_p);

// tenants_config_changed applies a reloaded configuration's quotas
// (common/service.h) to every tenant known: its quota found again by name
// (the old ones are freed after this), its stored-bytes limit and its
// submission rate. This function can't fail.
void tenants_config_changed (tenants_t *self, int64_t now_ms);

// tenants_get returns the tenant whose quotas a record of record_tenant uses
// (a delivery's: the tenant of the job it reports), made at now_ms on first
// use. This function can't fail.
tenant_t *tenants_get (tenants_t *self, const char *record_tenant, int64_t now_ms);

// tenants_admit is the admission check (docs/protocol.md §3.1). Returns true
// and takes one submission from the tenant's rate, or false with *refusal
// set.
bool tenants_admit (tenants_t *self, tenant_t *tenant, const admission_t *admission,
                    refusal_t *refusal);

// tenants_sweep forgets the tenants with nothing left (see above).
void tenants_sweep (tenants_t *self, int64_t now_ms);

// tenants_count returns how many tenants are known.
size_t tenants_count (tenants_t *self);

// tenants_first and tenants_next walk the tenants (none may be made or
// forgotten meanwhile); NULL at the end.
tenant_t *tenants_first (tenants_t *self);
tenant_t *tenants_next (tenants_t *self);

// tenant_webhook_owner writes into name (TENANT_RECORD_NAME_MAX bytes) the
// record tenant of tenant's webhook deliveries.
void tenant_webhook_owner (const char *tenant, char *name);

// tenant_name returns the tenant's name (borrowed).
const char *tenant_name (const tenant_t *self);

// tenant_lane returns the tenant's lane, for the scheduler.
tenant_lane_t *tenant_lane (tenant_t *self);

// tenant_job_added and tenant_job_removed count a job of the tenant made
// active (queued, running or waiting to retry) or finished.
void tenant_job_added (tenant_t *self);
void tenant_job_removed (tenant_t *self);

// tenant_call_started and tenant_call_ended count its calls running.
void tenant_call_started (tenant_t *self);
void tenant_call_ended (tenant_t *self);

// tenant_active and tenant_running return those counts.
size_t tenant_active (const tenant_t *self);
size_t tenant_running (const tenant_t *self);

// tenant_weight returns the tenant's share in the dispatch ring: how many
// calls it may start per turn (quotas.TENANT.weight; 1 without a quota).
int tenant_weight (const tenant_t *self);

// tenant_at_max_running is true while the tenant runs as many calls as its
// quota's max_running allows.
bool tenant_at_max_running (const tenant_t *self);

// tenant_test runs the self-test.
void tenant_test (bool verbose);

#endif
