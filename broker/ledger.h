// ledger — the LLM tokens each tenant used (SPEC §3.3): totals per tenant,
// provider, model and UTC hour, what GET /v1/usage, the usage metrics and
// quotas.TENANT.tokens_per_day read.
//
// A row is one (hour, tenant, provider, model) with four counts: requests,
// prompt, completion and total tokens. Rows are kept whole in memory (they
// are few: one per tenant, provider and model an hour), and each change
// goes into the store with the commit of the job whose RESULT made it
// (broker/store.h, "tokens"), so the totals survive a restart: the broker
// loads them back at start (ledger_load). Hours older than the retention
// are dropped (ledger_prune).
//
// Bounded: a tenant has at most LEDGER_MODELS_MAX model names per provider
// (a job can name any model); the calls of further ones count under the
// model "(other)". Names hold no control characters (they are labels and
// keys; the unit separator 0x1f joins them in a key).
//
// No I/O; wall time passed in.
#ifndef JOBGATE_LEDGER_H
#define JOBGATE_LEDGER_H

#include "config.h"
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

// Model names one tenant may have per provider; more count as "(other)".
#define LEDGER_MODELS_MAX 32
// What the calls of a model past that bound count as.
#define LEDGER_OTHER_MODEL "(other)"
// The counts of a row: requests, prompt, completion and total tokens (the
// store keeps them: broker/store.h, STORE_TOKENS_COUNTS).
#define LEDGER_COUNTS 4
// A row's key is at most this long.
#define LEDGER_KEY_MAX 512

typedef struct _ledger_t ledger_t;

// One call's usage, as its RESULT reported it.
typedef struct {
    const char *tenant;         // whose call
    const char *provider;       // the provider called
    const char *model;          // the model that answered (or was asked for)
    int64_t prompt_tokens;      // counts, each >= 0
    int64_t completion_tokens;
    int64_t total_tokens;
} ledger_call_t;

// ledger_new makes an empty ledger. This function can't fail.
ledger_t *ledger_new (void);

// ledger_destroy frees it; nulls *self_p.
void ledger_destroy (ledger_t **self_p);

// ledger_add counts one call at wall time now_ms. Returns 0 and writes the
// changed row's key (at most LEDGER_KEY_MAX bytes, NUL-terminated; its
// length in *key_len) and its LEDGER_COUNTS counts for the store, or -1
// when a name is too long or holds a control character (nothing counted).
int ledger_add (ledger_t *self, const ledger_call_t *call, int64_t now_ms, char *key,
                size_t *key_len, uint64_t *counts);

// ledger_load takes back one row the store kept (its LEDGER_COUNTS counts).
// Returns 0, or -1 when the row is not one (it is skipped).
int ledger_load (ledger_t *self, const char *key, size_t key_len, const uint64_t *counts);

// ledger_tenant_today returns the total tokens the tenant used in the UTC
// day of now_ms.
uint64_t ledger_tenant_today (ledger_t *self, const char *tenant, int64_t now_ms);

// ledger_usage_json renders GET /v1/usage for tenant (SPEC §3.3): the sums
// of its rows from the hour of since_ms on (0: all kept), one per provider
// and model, sorted by provider then model, with cost_usd when the
// provider has prices in config. Returns a new reference.
json_t *ledger_usage_json (ledger_t *self, const char *tenant, int64_t since_ms,
                           const config_t *config);

// One totals row: what a tenant's calls of a provider's model used since
// the broker started (all hours), for the metrics.
typedef struct {
    const char *tenant;         // borrowed, as are the names below
    const char *provider;
    const char *model;
    uint64_t requests;          // calls that reported usage
    uint64_t prompt_tokens;
    uint64_t completion_tokens;
    double cost_usd;            // at the provider's prices (config), -1 when it has none
} ledger_total_t;

// Called for each totals row.
typedef void (ledger_total_fn) (const ledger_total_t *total, void *arg);

// ledger_each_total calls fn for every totals row, priced with config
// (borrowed; may be NULL: no prices).
void ledger_each_total (ledger_t *self, const config_t *config, ledger_total_fn *fn, void *arg);

// Called with the key of each row ledger_prune drops.
typedef void (ledger_drop_fn) (const char *key, size_t key_len, void *arg);

// ledger_prune drops the rows of hours before the hour of before_ms and
// calls fn with each one's key (the caller deletes them from the store).
// Returns how many were dropped.
size_t ledger_prune (ledger_t *self, int64_t before_ms, ledger_drop_fn *fn, void *arg);

// ledger_rows returns the rows kept.
size_t ledger_rows (const ledger_t *self);

// ledger_test runs the self-test.
void ledger_test (bool verbose);

#endif
