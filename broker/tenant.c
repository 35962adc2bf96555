// tenant — each tenant's quota state and the one admission check.
#include "tenant.h"
#include "mem.h"

#include <assert.h>
#include <czmq.h>
#include <stdio.h>
#include <string.h>

struct _tenant_t {
    char *name;                 // the tenant ("" in open mode)
    const config_quota_t *quota; // its configured quota, or NULL
    uint64_t max_stored_bytes;  // bytes its records may take in the store
    bucket_t submissions;       // its submission rate (submit_rate, a burst of one second)
    size_t active;              // its jobs not yet finished (deliveries included)
    size_t running;             // its calls running now
    tenant_lane_t lane;         // its waiting entries (the scheduler's)
};

struct _tenants_t {
    const config_t *config;     // borrowed configuration
    size_t slots;               // queues per lane
    zhashx_t *tenants;          // name → tenant_t
    tenants_usage_fn *usage;    // counts a record tenant's stored bytes
    void *usage_arg;            // its argument
};

static void
s_tenant_destroy (void **item)
{
    tenant_t *tenant = *item;
    if (tenant) {
        free (tenant->name);
        free (tenant->lane.queues);
        free (tenant);
        *item = NULL;
    }
}

tenants_t *
tenants_new (const config_t *config, size_t slots, tenants_usage_fn *usage, void *arg)
{
    tenants_t *self = mem_calloc (1, sizeof *self);
    self->config = config;
    self->slots = slots;
    self->tenants = zhashx_new ();
    zhashx_set_destructor (self->tenants, s_tenant_destroy);
    self->usage = usage;
    self->usage_arg = arg;
    return self;
}

void
tenants_destroy (tenants_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    tenants_t *self = *self_p;
    zhashx_destroy (&self->tenants);
    free (self);
    *self_p = NULL;
}

// s_tenant_configure sets what a tenant takes from its quota.
static void
s_tenant_configure (tenants_t *self, tenant_t *tenant, int64_t now_ms, bool fresh)
{
    // Internal work ('#' tenants) has no quota.
    tenant->quota = tenant->name[0] == '#' ? NULL : config_quota (self->config, tenant->name);
    tenant->max_stored_bytes = config_max_stored_bytes (self->config, tenant->quota);
    double rate = tenant->quota ? tenant->quota->submit_rate : 0;
    if (fresh)
        bucket_init (&tenant->submissions, rate, rate > 1 ? rate : 1, now_ms);
    else
        bucket_set_rate (&tenant->submissions, rate, rate > 1 ? rate : 1, now_ms);
}

void
tenants_config_changed (tenants_t *self, int64_t now_ms)
{
    for (tenant_t *tenant = zhashx_first (self->tenants); tenant;
         tenant = zhashx_next (self->tenants))
        s_tenant_configure (self, tenant, now_ms, false);
}

tenant_t *
tenants_get (tenants_t *self, const char *record_tenant, int64_t now_ms)
{
    size_t prefix = strlen (TENANT_WEBHOOK_PREFIX);
    const char *name = strncmp (record_tenant, TENANT_WEBHOOK_PREFIX, prefix) == 0
                           ? record_tenant + prefix
                           : record_tenant;
    tenant_t *tenant = zhashx_lookup (self->tenants, name);
    if (!tenant) {
        tenant = mem_calloc (1, sizeof *tenant);
        tenant->name = mem_strdup (name);
        tenant->lane.queues = mem_calloc (self->slots, sizeof *tenant->lane.queues);
        s_tenant_configure (self, tenant, now_ms, true);
        zhashx_insert (self->tenants, name, tenant);
    }
    return tenant;
}

void
tenant_webhook_owner (const char *tenant, char *name)
{
    snprintf (name, TENANT_RECORD_NAME_MAX, "%s%s", TENANT_WEBHOOK_PREFIX, tenant);
}

// s_stored_bytes is what a tenant's records take in the store, its webhook
// deliveries' included.
static uint64_t
s_stored_bytes (tenants_t *self, const tenant_t *tenant)
{
    char deliveries[TENANT_RECORD_NAME_MAX];
    tenant_webhook_owner (tenant->name, deliveries);
    return self->usage (tenant->name, self->usage_arg)
           + self->usage (deliveries, self->usage_arg);
}

bool
tenants_admit (tenants_t *self, tenant_t *tenant, const admission_t *admission,
               refusal_t *refusal)
{
    const config_quota_t *quota = tenant->quota;
    // A delivery replaces the active job that is finishing: refusing it for
    // space, rate or queue length would break a promise made at submit.
    bool client = admission->path != ADMIT_WEBHOOK;
    if (client && admission->store_refuses) {
        *refusal = (refusal_t) { 503, "the job store is full or cannot write; retry later",
                                 ADMIT_STORE_RETRY_MS, "store" };
        return false;
    }
    if (quota && quota->max_queued && tenant->active >= quota->max_queued) {
        *refusal = (refusal_t) { 429, "the tenant has its maximum of jobs queued", 1000,
                                 "max_queued" };
        return false;
    }
    if (client && tenant->name[0] != '#'
        && s_stored_bytes (self, tenant) >= tenant->max_stored_bytes) {
        *refusal = (refusal_t) { 429, "the tenant's finished jobs fill its share of the store",
                                 ADMIT_STORED_RETRY_MS, "max_stored_bytes" };
        return false;
    }
    if (client && admission->broker_full) {
        *refusal = (refusal_t) { 503, "queue full", 1000, "broker_max_queued" };
        return false;
    }
    if (client && admission->provider_full) {
        *refusal = (refusal_t) { 503, "the provider's queue is full", 1000,
                                 "provider_max_queued" };
        return false;
    }
    // An llm job of a tenant that used its tokens of the UTC day waits for
    // the next day (SPEC §6, quotas.TENANT.tokens_per_day).
    if (client && admission->llm && quota && quota->tokens_per_day
        && admission->tokens_today >= quota->tokens_per_day) {
        int64_t day_ms = 24LL * 3600 * 1000;
        *refusal = (refusal_t) { 429, "the tenant used its LLM tokens of the day "
                                      "(quotas.TENANT.tokens_per_day); more after 00:00 UTC",
                                 day_ms - admission->wall_ms % day_ms, "tokens_per_day" };
        return false;
    }
    // The rate last: a refused request takes no submission.
    int64_t wait_ms;
    if (client && !bucket_ready (&tenant->submissions, admission->now_ms, &wait_ms)) {
        *refusal = (refusal_t) { 429, "the tenant is over its submission rate", wait_ms,
                                 "submit_rate" };
        return false;
    }
    if (client)
        bucket_take (&tenant->submissions);
    return true;
}

void
tenants_sweep (tenants_t *self, int64_t now_ms)
{
    zlistx_t *names = zhashx_keys (self->tenants);
    for (const char *name = zlistx_first (names); name; name = zlistx_next (names)) {
        tenant_t *tenant = zhashx_lookup (self->tenants, name);
        if (tenant->active == 0 && tenant->running == 0 && tenant->lane.queued == 0
            && bucket_full (&tenant->submissions, now_ms))
            zhashx_delete (self->tenants, name);
    }
    zlistx_destroy (&names);
}

size_t
tenants_count (tenants_t *self)
{
    return zhashx_size (self->tenants);
}

tenant_t *
tenants_first (tenants_t *self)
{
    return zhashx_first (self->tenants);
}

tenant_t *
tenants_next (tenants_t *self)
{
    return zhashx_next (self->tenants);
}

const char *
tenant_name (const tenant_t *self)
{
    return self->name;
}

tenant_lane_t *
tenant_lane (tenant_t *self)
{
    return &self->lane;
}

void
tenant_job_added (tenant_t *self)
{
    self->active++;
}

void
tenant_job_removed (tenant_t *self)
{
    assert (self->active > 0);
    self->active--;
}

void
tenant_call_started (tenant_t *self)
{
    self->running++;
}

void
tenant_call_ended (tenant_t *self)
{
    assert (self->running > 0);
    self->running--;
}

size_t
tenant_active (const tenant_t *self)
{
    return self->active;
}

size_t
tenant_running (const tenant_t *self)
{
    return self->running;
}

int
tenant_weight (const tenant_t *self)
{
    return self->quota && self->quota->weight > 1 ? self->quota->weight : 1;
}

bool
tenant_at_max_running (const tenant_t *self)
{
    return self->quota && self->quota->max_running && self->running >= self->quota->max_running;
}

// --- self-test ---

// The test's store: bytes per record tenant.
static uint64_t
s_test_usage (const char *record_tenant, void *arg)
{
    zhashx_t *usage = arg;
    uint64_t *bytes = zhashx_lookup (usage, record_tenant);
    return bytes ? *bytes : 0;
}

// s_test_refused admits tenant as path with the broker's facts and returns
// the refusal's code (0: admitted) and Retry-After.
static int
s_test_refused (tenants_t *tenants, tenant_t *tenant, admission_t admission, int64_t *retry_ms)
{
    refusal_t refusal = { 0, NULL, 0, NULL };
    bool admitted = tenants_admit (tenants, tenant, &admission, &refusal);
    assert (admitted == (refusal.code == 0));
    // Every refusal names its check for the metrics.
    assert (admitted || (refusal.reason && *refusal.reason));
    if (retry_ms)
        *retry_ms = refusal.retry_after_ms;
    return refusal.code;
}

// s_test_reload: a reload (common/service.h) replaces the quotas array;
// each tenant finds its quota again by name and takes its new rate, and the
// old array is never read again (ASan would see it: it is freed here).
static void
s_test_reload (void)
{
    config_quota_t *quotas = calloc (2, sizeof *quotas);
    quotas[0] = (config_quota_t) { .tenant = "a", .submit_rate = 0.001 };
    quotas[1] = (config_quota_t) { .tenant = "*", .weight = 3 };
    config_t config = { .quotas = quotas, .quotas_count = 2, .store_map_mb = 16 };
    zhashx_t *usage = zhashx_new ();
    uint64_t bytes = 0;
    zhashx_insert (usage, "a", &bytes);
    zhashx_insert (usage, TENANT_WEBHOOK_PREFIX "a", &bytes);
    zhashx_insert (usage, "b", &bytes);
    zhashx_insert (usage, TENANT_WEBHOOK_PREFIX "b", &bytes);
    tenants_t *tenants = tenants_new (&config, 3, s_test_usage, usage);
    int64_t now = 1000000, retry;
    tenant_t *a = tenants_get (tenants, "a", now);
    tenant_t *b = tenants_get (tenants, "b", now);
    admission_t submit = { .path = ADMIT_SUBMIT, .now_ms = now };
    assert (s_test_refused (tenants, a, submit, NULL) == 0);
    assert (s_test_refused (tenants, a, submit, &retry) == 429 && retry > 900000);
    assert (tenant_weight (a) == 1 && tenant_weight (b) == 3);

    config_quota_t *reloaded = calloc (2, sizeof *reloaded);
    reloaded[0] = (config_quota_t) { .tenant = "a", .submit_rate = 1000, .weight = 5 };
    reloaded[1] = (config_quota_t) { .tenant = "*", .weight = 7, .max_queued = 1 };
    config.quotas = reloaded;
    free (quotas);
    tenants_config_changed (tenants, now);
    assert (tenant_weight (a) == 5 && tenant_weight (b) == 7);
    // a: the new rate, from what was earned (nothing yet).
    assert (s_test_refused (tenants, a, submit, &retry) == 429 && retry <= 2);
    submit.now_ms = now + 2;
    assert (s_test_refused (tenants, a, submit, NULL) == 0);
    // b: the new max_queued.
    tenant_job_added (b);
    assert (s_test_refused (tenants, b, submit, NULL) == 429);
    tenant_job_removed (b);
    assert (s_test_refused (tenants, b, submit, NULL) == 0);
    tenants_destroy (&tenants);
    free (reloaded);
    zhashx_destroy (&usage);
}

void
tenant_test (bool verbose)
{
    if (verbose)
        printf (" * tenant: ");
    s_test_reload ();
    config_quota_t quotas[2] = {
        { .tenant = "a", .submit_rate = 2, .max_queued = 3, .max_stored_bytes = 1000,
          .max_running = 2, .tokens_per_day = 500 },
        { .tenant = "*", .submit_rate = 0, .max_queued = 0, .weight = 3 },
    };
    config_t config = { .quotas = quotas, .quotas_count = 2, .store_map_mb = 16 };
    zhashx_t *usage = zhashx_new ();
    uint64_t a_bytes = 0, deliveries_bytes = 0;
    zhashx_insert (usage, "a", &a_bytes);
    zhashx_insert (usage, TENANT_WEBHOOK_PREFIX "a", &deliveries_bytes);
    tenants_t *tenants = tenants_new (&config, 3, s_test_usage, usage);
    int64_t now = 1000000, retry;

    // A delivery's record tenant counts against the tenant it reports for.
    tenant_t *a = tenants_get (tenants, "a", now);
    assert (tenants_get (tenants, TENANT_WEBHOOK_PREFIX "a", now) == a);
    assert (strcmp (tenant_name (a), "a") == 0 && tenants_count (tenants) == 1);
    char owner[TENANT_RECORD_NAME_MAX];
    tenant_webhook_owner ("a", owner);
    assert (strcmp (owner, "#webhooks/a") == 0);
    assert (tenant_lane (a)->queues && tenant_lane (a)->queued == 0);

    // The order of §3.1: the store before the tenant's active jobs...
    admission_t submit = { .path = ADMIT_SUBMIT, .now_ms = now };
    admission_t webhook = { .path = ADMIT_WEBHOOK, .now_ms = now, .store_refuses = true,
                            .broker_full = true, .provider_full = true };
    for (int i = 0; i < 3; i++)
        tenant_job_added (a);
    admission_t store_full = submit;
    store_full.store_refuses = true;
    assert (s_test_refused (tenants, a, store_full, &retry) == 503
            && retry == ADMIT_STORE_RETRY_MS);
    assert (s_test_refused (tenants, a, submit, &retry) == 429 && retry == 1000);
    // ... which a delivery is checked against too, and nothing else.
    assert (s_test_refused (tenants, a, webhook, &retry) == 429);
    tenant_job_removed (a);
    assert (s_test_refused (tenants, a, webhook, NULL) == 0);
    // Stored bytes, deliveries' included, before the broker's queues.
    a_bytes = 600;
    deliveries_bytes = 400;
    admission_t queues_full = submit;
    queues_full.broker_full = queues_full.provider_full = true;
    assert (s_test_refused (tenants, a, queues_full, &retry) == 429
            && retry == ADMIT_STORED_RETRY_MS);
    deliveries_bytes = 399;
    assert (s_test_refused (tenants, a, queues_full, &retry) == 503 && retry == 1000);
    admission_t provider_full = submit;
    provider_full.provider_full = true;
    assert (s_test_refused (tenants, a, provider_full, &retry) == 503 && retry == 1000);
    // An llm job of a tenant that used its tokens of the UTC day: 429 until
    // midnight UTC (an hour away here); other kinds and deliveries pass.
    admission_t spent = submit;
    spent.llm = true;
    spent.tokens_today = 500;
    spent.wall_ms = 1796080000000LL / 86400000 * 86400000 + 23 * 3600000LL;
    assert (s_test_refused (tenants, a, spent, &retry) == 429 && retry == 3600000);
    spent.wall_ms += 3599999;
    assert (s_test_refused (tenants, a, spent, &retry) == 429 && retry == 1);
    admission_t spent_webhook = webhook;
    spent_webhook.llm = true;
    spent_webhook.tokens_today = 500;
    spent_webhook.store_refuses = false;
    // The rate last: the refusals above took no token; two a second, a
    // burst of two.
    spent.tokens_today = 499;
    assert (s_test_refused (tenants, a, spent, NULL) == 0);
    spent.tokens_today = 500;
    spent.llm = false;
    assert (s_test_refused (tenants, a, spent, NULL) == 0);
    assert (s_test_refused (tenants, a, spent_webhook, NULL) == 0);
    assert (s_test_refused (tenants, a, submit, &retry) == 429 && retry == 501);
    submit.now_ms = now + 500;
    assert (s_test_refused (tenants, a, submit, NULL) == 0);
    assert (s_test_refused (tenants, a, submit, &retry) == 429 && retry == 501);

    // Internal tenants and the fallback quota: no stored bytes or rate.
    tenant_t *internal = tenants_get (tenants, "#system", now);
    a_bytes = UINT64_MAX / 4;
    for (int i = 0; i < 10; i++)
        assert (s_test_refused (tenants, internal, submit, NULL) == 0);
    tenant_t *other = tenants_get (tenants, "b", now);
    for (int i = 0; i < 10; i++)
        assert (s_test_refused (tenants, other, submit, NULL) == 0);

    // Weights: a's quota leaves it unset (1), "*" gives b 3, internal work
    // has no quota (1).
    assert (tenant_weight (a) == 1 && tenant_weight (other) == 3);
    assert (tenant_weight (internal) == 1);


    // max_running.
    assert (!tenant_at_max_running (a) && !tenant_at_max_running (other));
    tenant_call_started (a);
    tenant_call_started (a);
    tenant_call_started (other);
    assert (tenant_at_max_running (a) && tenant_running (a) == 2 && !tenant_at_max_running (other));

    // The sweep forgets what has nothing left: a's calls and jobs, then its
    // bucket refilling, keep it.
    assert (tenants_count (tenants) == 3);
    tenants_sweep (tenants, submit.now_ms);
    assert (tenants_count (tenants) == 2);   // #system
    tenant_call_ended (other);
    tenant_call_ended (a);
    tenant_call_ended (a);
    for (int i = 0; i < 2; i++)
        tenant_job_removed (a);
    assert (tenant_active (a) == 0 && tenant_running (a) == 0);
    tenants_sweep (tenants, submit.now_ms);
    assert (tenants_count (tenants) == 1);   // a's bucket is not full yet
    tenants_sweep (tenants, submit.now_ms + 1000);
    assert (tenants_count (tenants) == 0);

    tenants_destroy (&tenants);
    tenants_destroy (&tenants);
    zhashx_destroy (&usage);
    if (verbose)
        printf ("OK\n");
}
