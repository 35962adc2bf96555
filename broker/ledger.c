// ledger — the LLM tokens each tenant used, per provider, model and hour.
#include "ledger.h"
#include "mem.h"

#include <assert.h>
#include <czmq.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#define HOUR_MS 3600000LL
#define DAY_MS (24 * HOUR_MS)
// The separator of the names in a key: no name holds it (nor any control
// character).
#define SEP '\x1f'

enum { COUNT_REQUESTS, COUNT_PROMPT, COUNT_COMPLETION, COUNT_TOTAL, COUNTS_ };
_Static_assert (COUNTS_ == LEDGER_COUNTS, "a row has LEDGER_COUNTS counts");

// One row: an hour's counts of one tenant, provider and model (or, in
// totals, the counts of all hours).
typedef struct {
    int64_t hour;               // wall ms / HOUR_MS; -1 in totals
    char *tenant;               // names, owned
    char *provider;
    char *model;
    uint64_t counts[COUNTS_];   // requests, prompt, completion, total tokens
} s_row_t;

// One tenant's tokens of one UTC day.
typedef struct {
    int64_t day;                // wall ms / DAY_MS
    uint64_t tokens;            // total tokens that day
} s_day_t;

struct _ledger_t {
    zhashx_t *rows;             // key → s_row_t: the hourly rows kept
    zhashx_t *totals;           // tenant SEP provider SEP model → s_row_t: all hours (metrics)
    zhashx_t *models;           // tenant SEP provider → size_t *: its model names counted
    zhashx_t *days;             // tenant → s_day_t: its latest day's tokens
};

static void
s_row_free (void **item)
{
    s_row_t *row = *item;
    if (!row)
        return;
    free (row->tenant);
    free (row->provider);
    free (row->model);
    free (row);
    *item = NULL;
}

static void
s_free (void **item)
{
    free (*item);
    *item = NULL;
}

ledger_t *
ledger_new (void)
{
    ledger_t *self = mem_calloc (1, sizeof *self);
    self->rows = mem_lib (zhashx_new ());
    zhashx_set_destructor (self->rows, s_row_free);
    self->totals = mem_lib (zhashx_new ());
    zhashx_set_destructor (self->totals, s_row_free);
    self->models = mem_lib (zhashx_new ());
    zhashx_set_destructor (self->models, s_free);
    self->days = mem_lib (zhashx_new ());
    zhashx_set_destructor (self->days, s_free);
    return self;
}

void
ledger_destroy (ledger_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    ledger_t *self = *self_p;
    zhashx_destroy (&self->rows);
    zhashx_destroy (&self->totals);
    zhashx_destroy (&self->models);
    zhashx_destroy (&self->days);
    free (self);
    *self_p = NULL;
}

// s_name_ok is true for a name that can stand in a key and a label.
static bool
s_name_ok (const char *name, size_t max)
{
    size_t len = 0;
    for (; name[len]; len++)
        if ((unsigned char) name[len] < 0x20 || name[len] == 0x7f || len >= max)
            return false;
    return true;
}

// s_row_get finds the row of key in map, or makes it (with hour) there.
static s_row_t *
s_row_get (zhashx_t *map, const char *key, int64_t hour, const char *tenant, const char *provider,
           const char *model)
{
    s_row_t *row = zhashx_lookup (map, key);
    if (row)
        return row;
    row = mem_calloc (1, sizeof *row);
    row->hour = hour;
    row->tenant = mem_strdup (tenant);
    row->provider = mem_strdup (provider);
    row->model = mem_strdup (model);
    zhashx_insert (map, key, row);
    return row;
}

// s_model_counted is true when the tenant's calls of this provider may
// count under model: a name already counted, or a new one within the bound.
static bool
s_model_counted (ledger_t *self, const char *tenant, const char *provider, const char *model,
                 bool bounded)
{
    char key[LEDGER_KEY_MAX + 1];
    snprintf (key, sizeof key, "%s%c%s%c%s", tenant, SEP, provider, SEP, model);
    if (zhashx_lookup (self->totals, key) || strcmp (model, LEDGER_OTHER_MODEL) == 0)
        return true;
    snprintf (key, sizeof key, "%s%c%s", tenant, SEP, provider);
    size_t *count = zhashx_lookup (self->models, key);
    if (!count) {
        count = mem_calloc (1, sizeof *count);
        zhashx_insert (self->models, key, count);
    }
    if (bounded && *count >= LEDGER_MODELS_MAX)
        return false;
    (*count)++;
    return true;
}

// s_count adds counts to a row of an hour, the totals and the day.
static s_row_t *
s_count (ledger_t *self, int64_t hour, const char *tenant, const char *provider,
         const char *model, const uint64_t *counts)
{
    char key[LEDGER_KEY_MAX + 1];
    snprintf (key, sizeof key, "%010" PRId64 "%c%s%c%s%c%s", hour, SEP, tenant, SEP, provider, SEP,
              model);
    s_row_t *row = s_row_get (self->rows, key, hour, tenant, provider, model);
    snprintf (key, sizeof key, "%s%c%s%c%s", tenant, SEP, provider, SEP, model);
    s_row_t *total = s_row_get (self->totals, key, -1, tenant, provider, model);
    for (int i = 0; i < COUNTS_; i++) {
        row->counts[i] += counts[i];
        total->counts[i] += counts[i];
    }
    s_day_t *day = zhashx_lookup (self->days, tenant);
    if (!day) {
        day = mem_calloc (1, sizeof *day);
        zhashx_insert (self->days, tenant, day);
    }
    int64_t row_day = hour * HOUR_MS / DAY_MS;
    if (row_day > day->day) {
        day->day = row_day;
        day->tokens = 0;
    }
    if (row_day == day->day)
        day->tokens += counts[COUNT_TOTAL];
    return row;
}

int
ledger_add (ledger_t *self, const ledger_call_t *call, int64_t now_ms, char *key,
            size_t *key_len, uint64_t *counts_out)
{
    // The hour's digits and three separators take 13 bytes of a key.
    size_t room = (LEDGER_KEY_MAX - 13) / 3;
    if (!s_name_ok (call->tenant, room) || !s_name_ok (call->provider, room)
        || !s_name_ok (call->model, room) || call->prompt_tokens < 0
        || call->completion_tokens < 0 || call->total_tokens < 0 || now_ms < 0)
        return -1;
    const char *model = s_model_counted (self, call->tenant, call->provider, call->model, true)
                        ? call->model : LEDGER_OTHER_MODEL;
    uint64_t counts[COUNTS_] = { 1, (uint64_t) call->prompt_tokens,
                                 (uint64_t) call->completion_tokens,
                                 (uint64_t) call->total_tokens };
    int64_t hour = now_ms / HOUR_MS;
    s_row_t *row = s_count (self, hour, call->tenant, call->provider, model, counts);
    *key_len = (size_t) snprintf (key, LEDGER_KEY_MAX + 1, "%010" PRId64 "%c%s%c%s%c%s", hour, SEP,
                                  call->tenant, SEP, call->provider, SEP, model);
    memcpy (counts_out, row->counts, sizeof row->counts);
    return 0;
}

int
ledger_load (ledger_t *self, const char *key, size_t key_len, const uint64_t *counts)
{
    if (key_len > LEDGER_KEY_MAX || key_len < 14)
        return -1;
    char text[LEDGER_KEY_MAX + 1];
    memcpy (text, key, key_len);
    text[key_len] = '\0';
    if (strlen (text) != key_len)
        return -1;
    // HOUR SEP tenant SEP provider SEP model: exactly three separators.
    char *names[3];
    char *at = text + 10;
    int64_t hour = 0;
    for (int i = 0; i < 10; i++) {
        if (text[i] < '0' || text[i] > '9')
            return -1;
        hour = hour * 10 + (text[i] - '0');
    }
    for (int i = 0; i < 3; i++) {
        if (*at != SEP)
            return -1;
        *at++ = '\0';
        names[i] = at;
        at = strchr (at, SEP);
        if (!at)
            at = names[i] + strlen (names[i]);
    }
    if (*at || !s_name_ok (names[0], LEDGER_KEY_MAX) || !s_name_ok (names[1], LEDGER_KEY_MAX)
        || !*names[1] || !s_name_ok (names[2], LEDGER_KEY_MAX) || !*names[2])
        return -1;
    char row_key[LEDGER_KEY_MAX + 1];
    snprintf (row_key, sizeof row_key, "%010" PRId64 "%c%s%c%s%c%s", hour, SEP, names[0], SEP,
              names[1], SEP, names[2]);
    if (zhashx_lookup (self->rows, row_key))
        return -1;
    s_model_counted (self, names[0], names[1], names[2], false);
    s_count (self, hour, names[0], names[1], names[2], counts);
    return 0;
}

uint64_t
ledger_tenant_today (ledger_t *self, const char *tenant, int64_t now_ms)
{
    s_day_t *day = zhashx_lookup (self->days, tenant);
    return day && day->day == now_ms / DAY_MS ? day->tokens : 0;
}

// s_compare_rows orders rows by provider, then model.
static int
s_compare_rows (const void *a, const void *b)
{
    const s_row_t *left = *(s_row_t *const *) a, *right = *(s_row_t *const *) b;
    int order = strcmp (left->provider, right->provider);
    return order ? order : strcmp (left->model, right->model);
}

// s_cost_usd returns what counts cost at provider's prices, or -1 when it
// has none.
static double
s_cost_usd (const config_t *config, const char *provider, const uint64_t *counts)
{
    const config_provider_t *prices = config ? config_provider (config, provider) : NULL;
    if (!prices || !prices->priced)
        return -1;
    return (double) counts[COUNT_PROMPT] / 1e6 * prices->price_prompt
           + (double) counts[COUNT_COMPLETION] / 1e6 * prices->price_completion;
}

json_t *
ledger_usage_json (ledger_t *self, const char *tenant, int64_t since_ms, const config_t *config)
{
    int64_t since_hour = since_ms > 0 ? since_ms / HOUR_MS : 0;
    zhashx_t *sums = mem_lib (zhashx_new ());
    zhashx_set_destructor (sums, s_row_free);
    for (s_row_t *row = zhashx_first (self->rows); row; row = zhashx_next (self->rows)) {
        if (row->hour < since_hour || strcmp (row->tenant, tenant) != 0)
            continue;
        char key[LEDGER_KEY_MAX + 1];
        snprintf (key, sizeof key, "%s%c%s", row->provider, SEP, row->model);
        s_row_t *sum = s_row_get (sums, key, -1, tenant, row->provider, row->model);
        for (int i = 0; i < COUNTS_; i++)
            sum->counts[i] += row->counts[i];
    }
    size_t count = zhashx_size (sums), at = 0;
    s_row_t **sorted = mem_calloc (count ? count : 1, sizeof *sorted);
    for (s_row_t *sum = zhashx_first (sums); sum; sum = zhashx_next (sums))
        sorted[at++] = sum;
    qsort (sorted, count, sizeof *sorted, s_compare_rows);
    json_t *list = json_array ();
    for (size_t i = 0; i < count; i++) {
        const uint64_t *counts = sorted[i]->counts;
        json_t *item = json_pack ("{s:s, s:s, s:I, s:I, s:I, s:I}", "provider", sorted[i]->provider,
                                  "model", sorted[i]->model,
                                  "requests", (json_int_t) counts[COUNT_REQUESTS],
                                  "prompt_tokens", (json_int_t) counts[COUNT_PROMPT],
                                  "completion_tokens", (json_int_t) counts[COUNT_COMPLETION],
                                  "total_tokens", (json_int_t) counts[COUNT_TOTAL]);
        double cost = s_cost_usd (config, sorted[i]->provider, counts);
        if (cost >= 0)
            json_object_set_new (item, "cost_usd", json_real (cost));
        json_array_append_new (list, item);
    }
    free (sorted);
    zhashx_destroy (&sums);
    return json_pack ("{s:o}", "usage", list);
}

void
ledger_each_total (ledger_t *self, const config_t *config, ledger_total_fn *fn, void *arg)
{
    for (s_row_t *row = zhashx_first (self->totals); row; row = zhashx_next (self->totals)) {
        ledger_total_t total = {
            .tenant = row->tenant, .provider = row->provider, .model = row->model,
            .requests = row->counts[COUNT_REQUESTS], .prompt_tokens = row->counts[COUNT_PROMPT],
            .completion_tokens = row->counts[COUNT_COMPLETION],
            .cost_usd = s_cost_usd (config, row->provider, row->counts),
        };
        fn (&total, arg);
    }
}

size_t
ledger_prune (ledger_t *self, int64_t before_ms, ledger_drop_fn *fn, void *arg)
{
    int64_t before_hour = before_ms / HOUR_MS;
    zlistx_t *keys = mem_lib (zhashx_keys (self->rows));
    size_t dropped = 0;
    for (const char *key = zlistx_first (keys); key; key = zlistx_next (keys)) {
        s_row_t *row = zhashx_lookup (self->rows, key);
        if (row->hour >= before_hour)
            continue;
        if (fn)
            fn (key, strlen (key), arg);
        zhashx_delete (self->rows, key);
        dropped++;
    }
    zlistx_destroy (&keys);
    return dropped;
}

size_t
ledger_rows (const ledger_t *self)
{
    return zhashx_size (self->rows);
}

// --- self-test ---

// s_test_add counts one call of tenant at now; returns ledger_add's answer
// and the row's requests and total written for the store.
static int
s_test_add (ledger_t *ledger, const char *tenant, const char *provider, const char *model,
            int64_t prompt, int64_t completion, int64_t now, char *key, uint64_t *stored_total)
{
    ledger_call_t call = { .tenant = tenant, .provider = provider, .model = model,
                           .prompt_tokens = prompt, .completion_tokens = completion,
                           .total_tokens = prompt + completion };
    size_t key_len;
    uint64_t counts[LEDGER_COUNTS];
    int rc = ledger_add (ledger, &call, now, key, &key_len, counts);
    if (rc == 0) {
        assert (key_len == strlen (key));
        *stored_total = counts[COUNT_TOTAL];
    }
    return rc;
}

// s_test_counts checks the row of provider/model in a usage answer.
static void
s_test_counts (json_t *usage, size_t index, const char *provider, const char *model,
               int64_t requests, int64_t prompt, int64_t completion)
{
    json_t *row = json_array_get (json_object_get (usage, "usage"), index);
    assert (row);
    assert (strcmp (json_string_value (json_object_get (row, "provider")), provider) == 0);
    assert (strcmp (json_string_value (json_object_get (row, "model")), model) == 0);
    assert (json_integer_value (json_object_get (row, "requests")) == requests);
    assert (json_integer_value (json_object_get (row, "prompt_tokens")) == prompt);
    assert (json_integer_value (json_object_get (row, "completion_tokens")) == completion);
    assert (json_integer_value (json_object_get (row, "total_tokens")) == prompt + completion);
}

// What the test's store is: the rows the ledger wrote, by key.
static void
s_test_drop (const char *key, size_t key_len, void *arg)
{
    zhashx_delete ((zhashx_t *) arg, key);
    assert (key_len == strlen (key));
}

// What the self-test reads of the totals.
typedef struct {
    size_t rows;                // totals seen
    uint64_t a_requests;        // tenant a, openai, gpt-x: requests
    uint64_t a_completion;      // … completion tokens
    uint64_t quoted_prompt;     // tenant a"q, openai, m\1: prompt tokens
    double b_cost;              // tenant b, openai, gpt-x: cost
    double local_cost;          // tenant a, local (unpriced): cost
} s_test_totals_t;

static void
s_test_total (const ledger_total_t *total, void *arg)
{
    s_test_totals_t *totals = arg;
    totals->rows++;
    bool openai = strcmp (total->provider, "openai") == 0;
    if (strcmp (total->tenant, "a") == 0 && openai && strcmp (total->model, "gpt-x") == 0) {
        totals->a_requests = total->requests;
        totals->a_completion = total->completion_tokens;
    }
    if (strcmp (total->tenant, "a\"q") == 0 && openai && strcmp (total->model, "m\\1") == 0)
        totals->quoted_prompt = total->prompt_tokens;
    if (strcmp (total->tenant, "b") == 0 && openai)
        totals->b_cost = total->cost_usd;
    if (strcmp (total->provider, "local") == 0)
        totals->local_cost = total->cost_usd;
}

void
ledger_test (bool verbose)
{
    if (verbose)
        printf (" * ledger: ");
    // 2026-11-30 23:00 UTC, and an hour later: the next UTC day.
    int64_t night = 1796080000000LL / DAY_MS * DAY_MS + 23 * HOUR_MS, morning = night + HOUR_MS;
    char key[LEDGER_KEY_MAX + 1];
    uint64_t total = 0;
    ledger_t *ledger = ledger_new ();
    zhashx_t *store = zhashx_new ();
    zhashx_set_destructor (store, s_free);
    // s_keep keeps what ledger_add wrote, as the broker's store would.
#define KEEP(tenant, provider, model, prompt, completion, now)                                   \
    do {                                                                                         \
        ledger_call_t call_ = { tenant, provider, model, prompt, completion, prompt + completion }; \
        size_t len_;                                                                             \
        uint64_t *counts_ = mem_alloc (LEDGER_COUNTS * sizeof *counts_);                         \
        assert (ledger_add (ledger, &call_, now, key, &len_, counts_) == 0);                     \
        zhashx_update (store, key, counts_);                                                     \
    } while (0)
    KEEP ("a", "openai", "gpt-x", 10, 5, night);
    KEEP ("a", "openai", "gpt-x", 20, 7, night + 1000);
    KEEP ("a", "openai", "mini", 1, 1, night + 2000);
    assert (ledger_tenant_today (ledger, "a", night + 5000) == 44);
    KEEP ("a", "local", "llama", 100, 0, morning);
    KEEP ("b", "openai", "gpt-x", 1000, 1000, morning);
    assert (ledger_rows (ledger) == 4 && zhashx_size (store) == 4);
    // The row's value is its running total.
    assert (s_test_add (ledger, "a", "openai", "gpt-x", 0, 0, night + 3000, key, &total) == 0);
    assert (total == 42);
    // GET /v1/usage: a tenant's own rows, by provider then model, summed
    // over the hours; since takes the hour it falls in.
    json_t *usage = ledger_usage_json (ledger, "a", 0, NULL);
    assert (json_array_size (json_object_get (usage, "usage")) == 3);
    s_test_counts (usage, 0, "local", "llama", 1, 100, 0);
    s_test_counts (usage, 1, "openai", "gpt-x", 3, 30, 12);
    s_test_counts (usage, 2, "openai", "mini", 1, 1, 1);
    assert (!json_object_get (json_array_get (json_object_get (usage, "usage"), 0), "cost_usd"));
    json_decref (usage);
    usage = ledger_usage_json (ledger, "a", morning + 59 * 60000, NULL);
    assert (json_array_size (json_object_get (usage, "usage")) == 1);
    s_test_counts (usage, 0, "local", "llama", 1, 100, 0);
    json_decref (usage);
    usage = ledger_usage_json (ledger, "nobody", 0, NULL);
    assert (json_array_size (json_object_get (usage, "usage")) == 0);
    json_decref (usage);
    // Prices add the cost: USD per million prompt and completion tokens.
    config_provider_t providers[1] = { { .name = "openai", .priced = true, .price_prompt = 2.5,
                                         .price_completion = 10 } };
    config_t config = { .providers = providers, .providers_count = 1 };
    usage = ledger_usage_json (ledger, "b", 0, &config);
    json_t *cost = json_object_get (json_array_get (json_object_get (usage, "usage"), 0), "cost_usd");
    assert (json_is_real (cost) && json_real_value (cost) > 0.012499 && json_real_value (cost) < 0.012501);
    json_decref (usage);
    // The day's tokens of a tenant: a UTC day, which the morning began.
    assert (ledger_tenant_today (ledger, "a", morning) == 100);
    assert (ledger_tenant_today (ledger, "a", morning + DAY_MS) == 0);
    assert (ledger_tenant_today (ledger, "b", morning + 1000) == 2000);
    assert (ledger_tenant_today (ledger, "c", morning) == 0);

    // The totals for the metrics: every tenant, provider and model since
    // the start, whatever the hour; cost where priced.
    KEEP ("a\"q", "openai", "m\\1", 1, 2, morning);
    s_test_totals_t totals = { 0 };
    ledger_each_total (ledger, &config, s_test_total, &totals);
    assert (totals.rows == 5); // a: gpt-x, mini, llama; b: gpt-x; a"q: m\1
    assert (totals.a_requests == 3 && totals.a_completion == 12);
    assert (totals.quoted_prompt == 1);
    assert (totals.b_cost > 0.0124 && totals.b_cost < 0.0126);
    assert (totals.local_cost == -1);
    size_t rows_before = ledger_rows (ledger);

    // Bad names count nothing.
    assert (s_test_add (ledger, "a", "openai", "bad\nname", 1, 1, morning, key, &total) == -1);
    assert (s_test_add (ledger, "a", "openai", "m", -1, 1, morning, key, &total) == -1);
    assert (ledger_rows (ledger) == rows_before);
    // A tenant's model names are bounded per provider: the rest is "(other)".
    for (int i = 0; i < LEDGER_MODELS_MAX + 5; i++) {
        char model[32];
        snprintf (model, sizeof model, "m%d", i);
        assert (s_test_add (ledger, "many", "openai", model, 1, 0, morning, key, &total) == 0);
    }
    usage = ledger_usage_json (ledger, "many", 0, NULL);
    assert (json_array_size (json_object_get (usage, "usage")) == LEDGER_MODELS_MAX + 1);
    s_test_counts (usage, 0, "openai", LEDGER_OTHER_MODEL, 5, 5, 0);
    json_decref (usage);
    ledger_destroy (&ledger);

    // What the store kept makes the same ledger again (a broker restart).
    ledger = ledger_new ();
    for (uint64_t *counts = zhashx_first (store); counts; counts = zhashx_next (store)) {
        const char *stored_key = zhashx_cursor (store);
        assert (ledger_load (ledger, stored_key, strlen (stored_key), counts) == 0);
    }
    usage = ledger_usage_json (ledger, "a", 0, NULL);
    s_test_counts (usage, 1, "openai", "gpt-x", 2, 30, 12);
    json_decref (usage);
    assert (ledger_tenant_today (ledger, "a", morning) == 100);
    assert (ledger_tenant_today (ledger, "b", morning) == 2000);
    // Rows that are not the ledger's are refused.
    uint64_t zero[LEDGER_COUNTS] = { 0 };
    static const char *const bad_keys[] = {
        "", "t\x1f" "a", "00000000x1\x1f" "a\x1fp\x1fm", "0000000001\x1f" "a\x1fp",
        "0000000001\x1f" "a\x1fp\x1fm\x1fx", "0000000001\x1f" "a\x1f\x1fm",
        "0000000001\x1f" "a\x1fp\x1f",
    };
    for (size_t i = 0; i < sizeof bad_keys / sizeof bad_keys[0]; i++)
        assert (ledger_load (ledger, bad_keys[i], strlen (bad_keys[i]), zero) == -1);
    assert (ledger_load (ledger, "0000000001\x1f\x1fp\x1fm", 15, zero) == 0);
    // An hour loaded twice is a store that is not the ledger's: refused.
    assert (ledger_load (ledger, "0000000001\x1f\x1fp\x1fm", 15, zero) == -1);

    // Pruning drops the hours before the given one, and says which.
    size_t rows = ledger_rows (ledger);
    assert (ledger_prune (ledger, morning, s_test_drop, store) == 3);
    assert (ledger_rows (ledger) == rows - 3);
    usage = ledger_usage_json (ledger, "a", 0, NULL);
    assert (json_array_size (json_object_get (usage, "usage")) == 1);
    s_test_counts (usage, 0, "local", "llama", 1, 100, 0);
    json_decref (usage);
    assert (ledger_prune (ledger, morning, s_test_drop, store) == 0);
#undef KEEP
    zhashx_destroy (&store);
    ledger_destroy (&ledger);
    ledger_destroy (&ledger);
    if (verbose)
        printf ("OK\n");
}
