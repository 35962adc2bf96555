// cache — the broker's result cache policy and its shared calls (SPEC §3.2).
//
// A job has a cache when its spec says `cache: {"ttl_ms": N}` with N > 0, or
// says nothing and its provider's `cache_ttl_ms` is N > 0. Two jobs are
// identical when their cache keys are equal: the BLAKE2b hash (libsodium) of
// their tenant, kind, provider and `request` as the gateway normalised it
// (defaults filled: an http request's method, a crawl's max_bytes), compared
// as JSON values: object keys in any order and any spacing are the same
// request; 1 and 1.0, or "a" and "A", are not. Priority, timeouts, attempts,
// expiry, callback, metadata and the cache field itself are not part of the
// request. Keys never span tenants: the tenant is hashed first.
//
// What the broker does with a key (broker/jobs.c):
//   hit     a success of the same key, finished less than N ms ago (N the new
//           job's own ttl), answers the new job at once from the store
//           (broker/store.h: store_cache_find); no upstream call
//   shared  while an identical job is queued or running (the leader), the
//           new job follows it: it waits, off the queues, and finishes with
//           the leader's success; if the leader fails, is canceled or dropped,
//           each follower runs on its own call (nothing lost, counted a miss)
//   miss    the job makes its own call; its success is indexed for later hits
// A streamed llm request (`"stream": true`) neither leads nor follows: its
// client waits for chunks that only its own call sends. Its success, once
// complete, is indexed and answers later identical requests like any other.
//
// This module owns the in-flight calls (key → leader, each leader's
// followers) and the counts per provider; no I/O, time passed in. The
// durable index is the store's; the entries are the jobs' (broker/jobs.h).
#ifndef JOBGATE_CACHE_H
#define JOBGATE_CACHE_H

#include "config.h"
#include "job.h"
#include "queue.h"
#include "store.h"
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

// Bytes of a cache key.
#define CACHE_KEY_BYTES STORE_CACHE_KEY_BYTES

typedef struct {
    unsigned char bytes[CACHE_KEY_BYTES]; // BLAKE2b of tenant, kind, provider, request
} cache_key_t;

// What a cached job's submission came to (the metrics' outcomes).
typedef enum {
    CACHE_MISS,         // its own upstream call
    CACHE_HIT,          // answered from the store
    CACHE_SHARED,       // answered by an identical job's call
    CACHE_OUTCOMES_
} cache_outcome_t;

// The job object's name of an outcome: "miss", "hit", "shared".
const char *cache_outcome_name (cache_outcome_t outcome);

// What the policy says of one job.
typedef struct {
    bool enabled;               // the job has a cache (ttl_ms > 0)
    int64_t ttl_ms;             // how old a success may be to answer it
    bool streamed;              // a streamed llm request: never shares a call
    cache_key_t key;            // its key, when enabled
} cache_policy_t;

// cache_policy_of reads a job's cache policy from its record and the
// configured providers. A spec that cannot be read (it passed the gateway
// and the broker's checks, so this is not expected) means no cache. This
// function can't fail.
cache_policy_t cache_policy_of (const job_t *job, const config_t *config);

// cache_fresh is true when a success at succeeded_at_ms (wall) may answer a
// job of ttl_ms at now_ms: less than ttl_ms old, and not from the future
// (a clock stepped back makes no success fresh forever).
bool cache_fresh (int64_t succeeded_at_ms, int64_t ttl_ms, int64_t now_ms);

typedef struct _cache_t cache_t;
typedef struct _cache_group_t cache_group_t;

// cache_new makes the in-flight calls and counts of providers_count
// configured providers (plus direct calls). This function can't fail.
cache_t *cache_new (size_t providers_count);

// cache_destroy frees the calls (not their entries); nulls *self_p.
void cache_destroy (cache_t **self_p);

// cache_leader returns the entry whose call answers key, or NULL.
entry_t *cache_leader (cache_t *self, const cache_key_t *key);

// cache_lead makes entry (in no call) the leader of key's call; key must
// have none.
void cache_lead (cache_t *self, const cache_key_t *key, entry_t *entry);

// cache_follow makes entry (on no list, in no call) wait for leader's call:
// state ENTRY_SHARED, last on the call's followers.
void cache_follow (cache_t *self, entry_t *leader, entry_t *entry);

// cache_is_leader is true when entry leads a call.
bool cache_is_leader (const entry_t *entry);

// cache_first_follower returns the first follower of the call entry leads,
// or NULL.
entry_t *cache_first_follower (const entry_t *leader);

// cache_leave takes entry out of its call (no-op when in none). A follower
// just leaves; a leader ends its call, and its followers, in order, are
// moved onto *released (on no call, state unchanged: the caller decides).
void cache_leave (cache_t *self, entry_t *entry, entry_list_t *released);

// cache_following returns how many entries follow a call; cache_calls, how
// many calls are in flight.
size_t cache_following (cache_t *self);
size_t cache_calls (cache_t *self);

// cache_count adds one outcome for provider (a config index, or -1 for
// direct calls).
void cache_count (cache_t *self, int provider, cache_outcome_t outcome);

// cache_counted returns the outcomes counted for provider (-1: direct).
uint64_t cache_counted (cache_t *self, int provider, cache_outcome_t outcome);

// cache_stats_json returns {"PROVIDER": {"hits", "shared", "misses"}, …} for
// each provider with a count ("" for direct calls), as compact JSON text.
// Returns a new string. This function can't fail.
char *cache_stats_json (cache_t *self, const config_t *config);

// cache_test runs the self-test.
void cache_test (bool verbose);

#endif
