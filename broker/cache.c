// cache — the result cache policy and the shared calls in flight.
#include "cache.h"
#include "jsontext.h"
#include "mem.h"

#include <assert.h>
#include <czmq.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>

// The longest ttl_ms a spec may ask (the gateway's bound, SPEC §3.2).
#define CACHE_TTL_MAX_MS (7LL * 24 * 3600 * 1000)
// Hashed first, so a later change of what a key covers changes every key.
#define CACHE_KEY_DOMAIN "jobgate-cache/1"

static const char *s_outcome_names[CACHE_OUTCOMES_] = { "miss", "hit", "shared" };

struct _cache_group_t {
    char name[2 * CACHE_KEY_BYTES + 1]; // the key in hex: its name in calls
    entry_t *leader;            // the job whose call answers the others
    entry_list_t followers;     // the jobs waiting for it, in arrival order
};

struct _cache_t {
    zhashx_t *calls;            // hex key → cache_group_t, the calls in flight
    size_t following;           // entries following a call, in all
    size_t slots;               // providers + 1 (direct calls last)
    uint64_t (*counts)[CACHE_OUTCOMES_]; // outcomes per provider slot
};

const char *
cache_outcome_name (cache_outcome_t outcome)
{
    return (unsigned) outcome < CACHE_OUTCOMES_ ? s_outcome_names[outcome] : "miss";
}

// s_hash_field adds one length-prefixed field to the hash, so that no two
// different field lists hash the same bytes.
static void
s_hash_field (crypto_generichash_state *state, const char *text, size_t len)
{
    unsigned char prefix[8];
    for (int i = 0; i < 8; i++)
        prefix[i] = (unsigned char) ((uint64_t) len >> (56 - 8 * i));
    crypto_generichash_update (state, prefix, sizeof prefix);
    crypto_generichash_update (state, (const unsigned char *) text, len);
}

cache_policy_t
cache_policy_of (const job_t *job, const config_t *config)
{
    cache_policy_t policy = { .enabled = false };
    // The client kinds only: the broker's own work (webhook deliveries) is
    // never answered twice.
    static const char *const kinds[] = { "http", "crawl", "search", "llm", NULL };
    bool client_kind = false;
    for (int i = 0; job->kind && kinds[i]; i++)
        client_kind = client_kind || strcmp (job->kind, kinds[i]) == 0;
    if (!job->spec || !client_kind)
        return policy;
    const config_provider_t *provider = job->provider ? config_provider (config, job->provider)
                                                      : NULL;
    // Most jobs have no cache: decide that without parsing the spec.
    bool asks = strstr (job->spec, "\"cache\"") != NULL;
    if (!asks && !(provider && provider->cache_ttl_ms > 0))
        return policy;
    json_t *spec = jsontext_loads (job->spec, NULL);
    json_t *cache = json_object_get (spec, "cache");
    json_t *request = json_object_get (spec, "request");
    int64_t ttl_ms = provider ? provider->cache_ttl_ms : 0;
    if (json_is_object (cache)) {
        json_t *ttl = json_object_get (cache, "ttl_ms");
        ttl_ms = json_is_integer (ttl) ? json_integer_value (ttl) : 0;
    }
    if (ttl_ms > 0 && ttl_ms <= CACHE_TTL_MAX_MS && json_is_object (request)) {
        // The request as a JSON value: keys sorted, compact, strings as
        // they are (NULs included).
        char *text = json_dumps (request, JSON_COMPACT | JSON_SORT_KEYS);
        if (text) {
            const char *tenant = job->tenant ? job->tenant : "";
            const char *name = job->provider ? job->provider : "";
            crypto_generichash_state state;
            crypto_generichash_init (&state, NULL, 0, CACHE_KEY_BYTES);
            s_hash_field (&state, CACHE_KEY_DOMAIN, strlen (CACHE_KEY_DOMAIN));
            s_hash_field (&state, tenant, strlen (tenant));
            s_hash_field (&state, job->kind, strlen (job->kind));
            s_hash_field (&state, name, strlen (name));
            s_hash_field (&state, text, strlen (text));
            crypto_generichash_final (&state, policy.key.bytes, CACHE_KEY_BYTES);
            free (text);
            policy.enabled = true;
            policy.ttl_ms = ttl_ms;
            policy.streamed = strcmp (job->kind, "llm") == 0
                              && json_is_true (json_object_get (request, "stream"));
        }
    }
    json_decref (spec);
    return policy;
}

bool
cache_fresh (int64_t succeeded_at_ms, int64_t ttl_ms, int64_t now_ms)
{
    return ttl_ms > 0 && succeeded_at_ms <= now_ms && now_ms - succeeded_at_ms < ttl_ms;
}

cache_t *
cache_new (size_t providers_count)
{
    cache_t *self = mem_calloc (1, sizeof *self);
    self->calls = zhashx_new ();
    self->slots = providers_count + 1;
    self->counts = mem_calloc (self->slots, sizeof *self->counts);
    return self;
}

void
cache_destroy (cache_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    cache_t *self = *self_p;
    for (cache_group_t *group = zhashx_first (self->calls); group;
         group = zhashx_next (self->calls))
        free (group);
    zhashx_destroy (&self->calls);
    free (self->counts);
    free (self);
    *self_p = NULL;
}

// s_name writes the hex name of key into name (2 × CACHE_KEY_BYTES + 1).
static void
s_name (const cache_key_t *key, char *name)
{
    sodium_bin2hex (name, 2 * CACHE_KEY_BYTES + 1, key->bytes, CACHE_KEY_BYTES);
}

entry_t *
cache_leader (cache_t *self, const cache_key_t *key)
{
    char name[2 * CACHE_KEY_BYTES + 1];
    s_name (key, name);
    cache_group_t *group = zhashx_lookup (self->calls, name);
    return group ? group->leader : NULL;
}

void
cache_lead (cache_t *self, const cache_key_t *key, entry_t *entry)
{
    assert (!entry->group);
    cache_group_t *group = mem_calloc (1, sizeof *group);
    s_name (key, group->name);
    group->leader = entry;
    int rc = zhashx_insert (self->calls, group->name, group);
    assert (rc == 0);
    entry->group = group;
}

void
cache_follow (cache_t *self, entry_t *leader, entry_t *entry)
{
    assert (leader->group && leader->group->leader == leader && !entry->group);
    entry->state = ENTRY_SHARED;
    entry->group = leader->group;
    entry_list_append (&leader->group->followers, entry);
    self->following++;
}

bool
cache_is_leader (const entry_t *entry)
{
    return entry->group && entry->group->leader == entry;
}

entry_t *
cache_first_follower (const entry_t *leader)
{
    return cache_is_leader (leader) ? leader->group->followers.head : NULL;
}

void
cache_leave (cache_t *self, entry_t *entry, entry_list_t *released)
{
    cache_group_t *group = entry->group;
    if (!group)
        return;
    entry->group = NULL;
    if (group->leader != entry) {
        entry_list_remove (entry);
        self->following--;
        return;
    }
    while (group->followers.head) {
        entry_t *follower = group->followers.head;
        entry_list_remove (follower);
        follower->group = NULL;
        self->following--;
        entry_list_append (released, follower);
    }
    zhashx_delete (self->calls, group->name);
    free (group);
}

size_t
cache_following (cache_t *self)
{
    return self->following;
}

size_t
cache_calls (cache_t *self)
{
    return zhashx_size (self->calls);
}

// s_slot maps a provider index (-1: direct calls) to its counts' slot.
static size_t
s_slot (cache_t *self, int provider)
{
    return provider >= 0 && (size_t) provider < self->slots - 1 ? (size_t) provider
                                                                : self->slots - 1;
}

void
cache_count (cache_t *self, int provider, cache_outcome_t outcome)
{
    assert ((unsigned) outcome < CACHE_OUTCOMES_);
    self->counts[s_slot (self, provider)][outcome]++;
}

uint64_t
cache_counted (cache_t *self, int provider, cache_outcome_t outcome)
{
    assert ((unsigned) outcome < CACHE_OUTCOMES_);
    return self->counts[s_slot (self, provider)][outcome];
}

char *
cache_stats_json (cache_t *self, const config_t *config)
{
    json_t *stats = json_object ();
    for (size_t slot = 0; slot < self->slots; slot++) {
        const uint64_t *counts = self->counts[slot];
        if (!counts[CACHE_MISS] && !counts[CACHE_HIT] && !counts[CACHE_SHARED])
            continue;
        const char *name = slot < config->providers_count ? config->providers[slot].name : "";
        json_object_set_new (stats, name,
                             json_pack ("{s:I, s:I, s:I}",
                                        "hits", (json_int_t) counts[CACHE_HIT],
                                        "shared", (json_int_t) counts[CACHE_SHARED],
                                        "misses", (json_int_t) counts[CACHE_MISS]));
    }
    char *text = json_dumps (stats, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref (stats);
    assert (text);
    return text;
}

// --- self-test ---

// s_test_job makes a record of tenant with spec.
static job_t *
s_test_job (const char *tenant, const char *kind, const char *provider, const char *spec)
{
    job_t *job = job_new ();
    job_id_generate (job->id);
    job_set_str (&job->tenant, tenant);
    job_set_str (&job->kind, kind);
    job_set_str (&job->provider, provider);
    job_set_str (&job->spec, spec);
    return job;
}

// s_test_policy returns the policy of one job.
static cache_policy_t
s_test_policy (const config_t *config, const char *tenant, const char *kind,
               const char *provider, const char *spec)
{
    job_t *job = s_test_job (tenant, kind, provider, spec);
    cache_policy_t policy = cache_policy_of (job, config);
    job_destroy (&job);
    return policy;
}

static bool
s_test_same (const cache_policy_t *a, const cache_policy_t *b)
{
    return a->enabled && b->enabled && memcmp (a->key.bytes, b->key.bytes, CACHE_KEY_BYTES) == 0;
}

void
cache_test (bool verbose)
{
    if (verbose)
        printf (" * cache: ");
    assert (sodium_init () >= 0);
    config_provider_t providers[] = {
        { .name = (char *) "p", .base_url = (char *) "http://127.0.0.1:9" },
        { .name = (char *) "q", .base_url = (char *) "http://127.0.0.1:9", .cache_ttl_ms = 5000 },
    };
    config_t config = { .providers = providers, .providers_count = 2 };

    // The policy: the spec's ttl, else the provider's; 0 turns it off.
    const char *plain = "{\"kind\":\"http\",\"provider\":\"p\",\"request\":{\"path\":\"/a\","
                        "\"method\":\"GET\"}}";
    cache_policy_t policy = s_test_policy (&config, "t", "http", "p", plain);
    assert (!policy.enabled);
    policy = s_test_policy (&config, "t", "search", "q", "{\"request\":{\"query\":\"z\"}}");
    assert (policy.enabled && policy.ttl_ms == 5000 && !policy.streamed);
    policy = s_test_policy (&config, "t", "search", "q",
                            "{\"request\":{\"query\":\"z\"},\"cache\":{\"ttl_ms\":0}}");
    assert (!policy.enabled);
    cache_policy_t first = s_test_policy (
        &config, "t", "http", "p",
        "{\"kind\":\"http\",\"request\":{\"path\":\"/a\",\"method\":\"GET\",\"query\":{\"x\":1,"
        "\"y\":[1,2]}},\"priority\":1,\"cache\":{\"ttl_ms\":60000},\"metadata\":{\"m\":1}}");
    assert (first.enabled && first.ttl_ms == 60000 && !first.streamed);
    // The same request: other key order, other priority, ttl, metadata.
    cache_policy_t same = s_test_policy (
        &config, "t", "http", "p",
        "{\"priority\":9,\"cache\":{\"ttl_ms\":1},\"request\":{\"query\":{\"y\":[1,2],\"x\":1},"
        "\"method\":\"GET\",\"path\":\"/a\"}}");
    assert (same.enabled && same.ttl_ms == 1 && s_test_same (&first, &same));
    // Not the same: another tenant, kind, provider, or any value of the request.
    const char *again = "{\"request\":{\"path\":\"/a\",\"method\":\"GET\",\"query\":{\"x\":1,"
                        "\"y\":[1,2]}},\"cache\":{\"ttl_ms\":60000}}";
    cache_policy_t other = s_test_policy (&config, "u", "http", "p", again);
    assert (other.enabled && !s_test_same (&first, &other));
    other = s_test_policy (&config, "t", "crawl", "p", again);
    assert (!s_test_same (&first, &other));
    other = s_test_policy (&config, "t", "http", "q", again);
    assert (!s_test_same (&first, &other));
    other = s_test_policy (&config, "t", "http", NULL, again);
    assert (other.enabled && !s_test_same (&first, &other));
    other = s_test_policy (&config, "t", "http", "p",
                           "{\"request\":{\"path\":\"/a\",\"method\":\"GET\",\"query\":{\"x\":1.0,"
                           "\"y\":[1,2]}},\"cache\":{\"ttl_ms\":60000}}");
    assert (!s_test_same (&first, &other));
    other = s_test_policy (&config, "t", "http", "p",
                           "{\"request\":{\"path\":\"/a\",\"method\":\"GET\",\"query\":{\"x\":1,"
                           "\"y\":[2,1]}},\"cache\":{\"ttl_ms\":60000}}");
    assert (!s_test_same (&first, &other));
    // The open mode's tenant ("") is a tenant like any other.
    cache_policy_t split1 = s_test_policy (&config, "", "http", NULL,
                                           "{\"request\":{},\"cache\":{\"ttl_ms\":1}}");
    cache_policy_t split2 = s_test_policy (&config, "a", "http", NULL,
                                           "{\"request\":{},\"cache\":{\"ttl_ms\":1}}");
    assert (split1.enabled && split2.enabled && !s_test_same (&split1, &split2));
    // A streamed llm request; a spec that cannot be read has no cache.
    policy = s_test_policy (&config, "t", "llm", "q",
                            "{\"request\":{\"model\":\"m\",\"stream\":true,\"messages\":[]}}");
    assert (policy.enabled && policy.streamed);
    policy = s_test_policy (&config, "t", "llm", "q",
                            "{\"request\":{\"model\":\"m\",\"stream\":false,\"messages\":[]}}");
    assert (policy.enabled && !policy.streamed);
    policy = s_test_policy (&config, "t", "http", "q", "{\"request\":");
    assert (!policy.enabled);
    policy = s_test_policy (&config, "t", "http", "p", "{\"cache\":{\"ttl_ms\":5}}");
    assert (!policy.enabled);
    policy = s_test_policy (&config, "t", "webhook", NULL,
                            "{\"request\":{},\"cache\":{\"ttl_ms\":5}}");
    assert (!policy.enabled);

    // Fresh: younger than the ttl, not from the future.
    assert (cache_fresh (1000, 500, 1000) && cache_fresh (1000, 500, 1499));
    assert (!cache_fresh (1000, 500, 1500) && !cache_fresh (1000, 500, 999));
    assert (!cache_fresh (1000, 0, 1000));

    // Calls: a leader, three followers in order; one leaves; the leader's
    // end releases the others, in order, out of any call.
    cache_t *cache = cache_new (2);
    entry_t leader = { .state = ENTRY_QUEUED }, followers[3];
    memset (followers, 0, sizeof followers);
    assert (!cache_leader (cache, &first.key));
    cache_lead (cache, &first.key, &leader);
    assert (cache_leader (cache, &first.key) == &leader && cache_is_leader (&leader));
    assert (!cache_leader (cache, &split1.key) && cache_calls (cache) == 1);
    for (int i = 0; i < 3; i++)
        cache_follow (cache, &leader, &followers[i]);
    assert (cache_following (cache) == 3 && followers[1].state == ENTRY_SHARED);
    assert (!cache_is_leader (&followers[0]) && cache_first_follower (&leader) == &followers[0]);
    assert (!cache_first_follower (&followers[0]));
    entry_list_t released = { NULL, NULL, 0 };
    cache_leave (cache, &followers[0], &released);
    assert (!released.head && !followers[0].group && !followers[0].list);
    assert (cache_following (cache) == 2 && cache_first_follower (&leader) == &followers[1]);
    cache_leave (cache, &followers[0], &released);      // in no call: nothing
    cache_leave (cache, &leader, &released);
    assert (!leader.group && cache_calls (cache) == 0 && cache_following (cache) == 0);
    assert (!cache_leader (cache, &first.key));
    assert (released.count == 2 && released.head == &followers[1] && released.tail == &followers[2]);
    assert (!followers[1].group && followers[2].list == &released);
    while (released.head)
        entry_list_remove (released.head);
    // A call left in flight is freed with the cache.
    cache_lead (cache, &first.key, &leader);
    cache_follow (cache, &leader, &followers[0]);

    // Counts per provider, direct calls last, as the metrics read them.
    cache_count (cache, 0, CACHE_HIT);
    cache_count (cache, 0, CACHE_HIT);
    cache_count (cache, 0, CACHE_MISS);
    cache_count (cache, -1, CACHE_SHARED);
    assert (cache_counted (cache, 0, CACHE_HIT) == 2 && cache_counted (cache, 1, CACHE_HIT) == 0);
    assert (cache_counted (cache, -1, CACHE_SHARED) == 1);
    char *stats = cache_stats_json (cache, &config);
    assert (strcmp (stats, "{\"\":{\"hits\":0,\"misses\":0,\"shared\":1},"
                           "\"p\":{\"hits\":2,\"misses\":1,\"shared\":0}}") == 0);
    free (stats);
    assert (strcmp (cache_outcome_name (CACHE_SHARED), "shared") == 0);
    cache_destroy (&cache);
    cache_destroy (&cache);
    if (verbose)
        printf ("OK\n");
}
