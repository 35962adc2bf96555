#include "config.h"
#include "listenaddr.h"
#include "httpfield.h"
#include "jsontext.h"
#include "log.h"
#include "webhook.h"
#include "mem.h"

#include <arpa/inet.h>
#include <assert.h>
#include <ctype.h>
#include <errno.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

extern char **environ;

// The longest provider secret read from a file or the environment.
#define CONFIG_SECRET_MAX 65536

// --- the key table ---

// How a key's value is read and where it goes.
typedef enum {
    KEY_STRING,     // char *, a JSON string
    KEY_BOOL,       // bool, true or false
    KEY_SWITCH,     // bool, one of two names: choices[0] is false, choices[1] true
    KEY_CHOICE,     // int, the index of one of the choices
    KEY_INT,        // int, an integer within [min, max]
    KEY_SIZE,       // size_t, an integer within [min, max]
    KEY_MS,         // int64_t, an integer within [min, max] (times scale)
    KEY_NUMBER,     // double, a number within [min, max]
    KEY_CUSTOM,     // read by the row's load function (arrays, objects)
} key_type_t;

typedef struct _config_key_t config_key_t;

// Reads a structured value into target (the row's struct); where is the
// key's full name for messages. Returns 0, or -1 with a message in error.
typedef int (key_load_fn) (void *target, json_t *value, const char *where, char *error,
                           size_t error_size);

struct _config_key_t {
    const char *section;        // its section ("gateway", "providers.*"), NULL at the top
    const char *name;           // the key in its section
    key_type_t type;            // how it is read and stored
    size_t offset;              // where it is stored in its struct
    double min, max;            // bounds of numbers (file units)
    const char *fallback;       // the default as the file would write it; NULL: none
    const char *const *choices; // KEY_SWITCH, KEY_CHOICE: the names, NULL-terminated
    double scale;               // numbers: stored value = file value × scale (0 means 1)
    key_load_fn *load;          // KEY_CUSTOM: how to read it
    bool env;                   // KEY_CUSTOM: also taken from the environment, as a string
    const char *doc;            // what it means, one line (docs/config.md)
};

static key_load_fn s_load_api_keys, s_load_allowed_hosts, s_load_networks, s_load_curve_keys,
    s_load_webhook_secret, s_load_quotas,
    s_load_providers, s_load_headers, s_load_auth, s_load_search, s_load_models, s_load_fallback,
    s_load_prices;

static const char *const s_log_levels[] = { "debug", "info", "warn", "error", NULL };
static const char *const s_log_formats[] = { "text", "json", NULL };
static const char *const s_durabilities[] = { "os", "fsync", NULL };

#define C(field) offsetof (config_t, field)
#define P(field) offsetof (config_provider_t, field)
#define Q(field) offsetof (config_quota_t, field)

// Every key of config_t: fixed sections, then the top level.
static const config_key_t s_keys[] = {
    { "gateway", "listen", KEY_STRING, C (gateway_listen), 0, 0, "127.0.0.1:8080", NULL, 0, NULL,
      false, "HOST:PORT (or [V6]:PORT) the HTTP API listens on" },
    { "gateway", "api_keys", KEY_CUSTOM, 0, 0, 0, NULL, NULL, 0, s_load_api_keys, false,
      "[{\"key\" or \"key_sha256\", \"tenant\", \"operator\"}]: API keys, their tenants, and "
      "who sees internal topology; none = open local mode (loopback only)" },
    { "gateway", "api_keys_file", KEY_STRING, C (api_keys_file), 0, 0, NULL, NULL, 0, NULL, false,
      "file holding more API keys, a JSON array shaped as api_keys (a Kubernetes Secret "
      "mounted as a file); read by the gateway at start, added to api_keys" },
    { "gateway", "max_body_bytes", KEY_SIZE, C (max_body_bytes), 1024, 64.0 * 1024 * 1024,
      "1048576", NULL, 0, NULL, false, "request body limit (413 above)" },
    { "gateway", "submit_timeout_ms", KEY_MS, C (submit_timeout_ms), 100, 600000, "5000", NULL, 0,
      NULL, false, "how long a request waits for the broker before 503" },
    { "gateway", "max_connections", KEY_INT, C (max_connections), 16, 1000000, "10000", NULL, 0,
      NULL, false, "HTTP connections held at once" },
    { "gateway", "reuse_port", KEY_BOOL, C (gateway_reuse_port), 0, 0, "false", NULL, 0, NULL,
      false, "bind listen with SO_REUSEPORT: several gateway processes on one host share the "
      "port and the kernel spreads new connections between them (one loop per core, and each "
      "process's own open-files limit)" },
    { "gateway", "allow_open_mode", KEY_BOOL, C (allow_open_mode), 0, 0, "false", NULL, 0, NULL,
      false, "without api_keys, serve on a non-loopback address anyway (otherwise refused)" },
    { "gateway", "allowed_hosts", KEY_CUSTOM, 0, 0, 0, NULL, NULL, 0, s_load_allowed_hosts, false,
      "[NAME, …]: Host names (or IP literals, \"*\" for any) answered besides localhost, "
      "loopback and the listen host; checked in open mode always, with keys when set" },
    { "gateway", "header_timeout_ms", KEY_MS, C (header_timeout_ms), 100, 600000, "10000", NULL, 0,
      NULL, false, "a whole request head must arrive within this (408 after); also the body's grace" },
    { "gateway", "min_body_rate", KEY_SIZE, C (min_body_rate), 0, 1e9, "1024", NULL, 0, NULL, false,
      "bytes/s a body must average after the grace (408 below); 0 = any" },
    { "gateway", "cache_max_bytes", KEY_SIZE, C (cache_max_bytes), 0, 64.0 * 1024 * 1024 * 1024,
      "67108864", NULL, 0, NULL, false, "bytes of finished jobs the gateway keeps to answer reads" },
    { "gateway", "list_max_bytes", KEY_SIZE, C (list_max_bytes), 65536, 1024.0 * 1024 * 1024,
      "8388608", NULL, 0, NULL, false, "bytes of one GET /v1/jobs page at most (the cursor goes on)" },
    { "gateway", "sse_buffer_bytes", KEY_SIZE, C (sse_buffer_bytes), 65536, 1024.0 * 1024 * 1024,
      "1048576", NULL, 0, NULL, false, "events one stream may hold unsent before chunks are held back" },

    { "broker", "frontend", KEY_STRING, C (broker_frontend), 0, 0, "tcp://127.0.0.1:5555", NULL, 0,
      NULL, false, "ZeroMQ endpoint gateways talk to" },
    { "broker", "backend", KEY_STRING, C (broker_backend), 0, 0, "tcp://127.0.0.1:5556", NULL, 0,
      NULL, false, "ZeroMQ endpoint workers talk to" },
    { "broker", "publisher", KEY_STRING, C (broker_publisher), 0, 0, "tcp://127.0.0.1:5557", NULL, 0,
      NULL, false, "ZeroMQ PUB endpoint of job events" },
    { "broker", "metrics_listen", KEY_STRING, C (broker_metrics_listen), 0, 0, "", NULL, 0, NULL,
      false, "HOST:PORT where the broker serves GET /metrics (Prometheus); empty: not served" },
    { "broker", "data_dir", KEY_STRING, C (data_dir), 0, 0, "./data", NULL, 0, NULL, false,
      "directory of the job store" },
    { "broker", "durability", KEY_SWITCH, C (durability_fsync), 0, 0, "fsync", s_durabilities, 0,
      NULL, false, "\"fsync\": every commit reaches the disk; \"os\": left to the OS" },
    { "broker", "result_ttl_s", KEY_MS, C (result_ttl_ms), 1, 365.0 * 86400, "86400", NULL, 1000,
      NULL, false, "how long finished jobs are kept (seconds)" },
    { "broker", "max_queued", KEY_SIZE, C (max_queued), 1, 1e9, "1000000", NULL, 0, NULL, false,
      "active jobs at most (503 above)" },
    { "broker", "store_map_mb", KEY_SIZE, C (store_map_mb), 16, 1024.0 * 1024, "4096", NULL, 0, NULL,
      false, "the store's maximum size (MiB)" },
    { "broker", "max_result_bytes", KEY_SIZE, C (max_result_bytes), 4096, 1024.0 * 1024 * 1024,
      "4194304", NULL, 0, NULL, false,
      "a result's rendered JSON at most (response_too_large above); workers download at most "
      "this much of a body (or worker.max_response_bytes, the smaller)" },
    { "broker", "max_frame_bytes", KEY_SIZE, C (max_frame_bytes), 65536, 4.0 * 1024 * 1024 * 1024,
      NULL, NULL, 0, NULL, false,
      "ZMQ_MAXMSGSIZE of every ZeroMQ socket of every process; default max_result_bytes + "
      "gateway.max_body_bytes + 1 MiB, at least max_result_bytes + max_body_bytes + 64 KiB" },
    { "broker", "usage_retention_days", KEY_INT, C (usage_retention_days), 1, 36500, "400", NULL,
      0, NULL, false, "days the LLM usage totals (GET /v1/usage, per tenant, provider, model and "
      "hour) are kept" },

    { "worker", "concurrency", KEY_INT, C (worker_concurrency), 1, CONFIG_WORKER_CONCURRENCY_MAX,
      "512", NULL, 0, NULL,
      false, "upstream calls in flight per worker" },
    { "worker", "max_response_bytes", KEY_SIZE, C (max_response_bytes), 1024,
      1024.0 * 1024 * 1024, "10485760", NULL, 0, NULL, false, "upstream answer cap per call" },
    { "worker", "drain_timeout_ms", KEY_MS, C (drain_timeout_ms), 1, 3600000, "30000", NULL, 0,
      NULL, false, "on SIGTERM, how long running calls may finish" },

    { "webhooks", "secret", KEY_CUSTOM, 0, 0, 0, NULL, NULL, 0, s_load_webhook_secret, true,
      "signing key: \"whsec_\" + base64, or the key's bytes; none = unsigned" },
    { "webhooks", "max_attempts", KEY_INT, C (webhook_max_attempts), 1, 100, "8", NULL, 0, NULL,
      false, "deliveries of one callback tried at most" },
    { "webhooks", "timeout_ms", KEY_MS, C (webhook_timeout_ms), 100, 600000, "10000", NULL, 0, NULL,
      false, "per delivery attempt" },

    { "direct", "max_concurrency", KEY_INT, C (direct.max_concurrency), 0, 1e6, "0", NULL, 0, NULL,
      false, "calls to user-supplied URLs (http without provider, crawl, webhooks) at once, "
      "across all workers; 0 = unlimited" },
    { "direct", "rate_limit", KEY_NUMBER, C (direct.rate_limit), 0, 1e9, "0", NULL, 0, NULL, false,
      "their requests per second across all workers; 0 = unlimited" },
    { "direct", "burst", KEY_NUMBER, C (direct.burst), 1, 1e9, NULL, NULL, 0, NULL, false,
      "their token bucket size; default a tenth of a second's worth, at least 1" },

    { "security", "allow_private_networks", KEY_BOOL, C (allow_private_networks), 0, 0, "false",
      NULL, 0, NULL, false, "let user URLs reach loopback and private addresses (tests, local dev)" },
    { "security", "allow_networks", KEY_CUSTOM, 0, 0, 0, NULL, NULL, 0, s_load_networks, false,
      "[CIDR, …]: networks user URLs may reach even while private ones are denied" },

    { "security.curve", "public_key", KEY_STRING, C (curve_public_key), 0, 0, NULL, NULL, 0, NULL,
      false, "this process's CURVE public key (Z85, 40 characters); with secret_key, every "
      "ZeroMQ socket uses CURVE (jobgate-broker --gen-keypair makes a pair)" },
    { "security.curve", "secret_key", KEY_STRING, C (curve_secret_key), 0, 0, NULL, NULL, 0, NULL,
      false, "this process's CURVE secret key (Z85); prefer secret_key_file" },
    { "security.curve", "broker_public_key", KEY_STRING, C (curve_broker_public_key), 0, 0, NULL,
      NULL, 0, NULL, false, "gateways and workers: the broker's public key (Z85)" },
    { "security.curve", "authorized_keys", KEY_CUSTOM, 0, 0, 0, NULL, NULL, 0, s_load_curve_keys,
      false, "broker: [Z85, …] public keys of the gateways and workers it accepts (with "
      "authorized_keys_file's); a peer with another key, a wrong one or none gets nothing" },
    { "security.curve", "public_key_file", KEY_STRING, C (curve_public_key_file), 0, 0, NULL,
      NULL, 0, NULL, false, "file holding public_key (surrounding whitespace ignored), instead "
      "of public_key" },
    { "security.curve", "secret_key_file", KEY_STRING, C (curve_secret_key_file), 0, 0, NULL,
      NULL, 0, NULL, false, "file holding secret_key (a mounted secret), instead of secret_key" },
    { "security.curve", "broker_public_key_file", KEY_STRING, C (curve_broker_public_key_file), 0,
      0, NULL, NULL, 0, NULL, false, "file holding broker_public_key, instead of broker_public_key" },
    { "security.curve", "authorized_keys_file", KEY_STRING, C (curve_authorized_keys_file), 0, 0,
      NULL, NULL, 0, NULL, false, "broker: file of authorized public keys, one Z85 key per line "
      "(# comments and blank lines ignored)" },

    { "log", "level", KEY_CHOICE, C (log_level), 0, 0, "info", s_log_levels, 0, NULL, false,
      "lowest level logged" },
    { "log", "format", KEY_SWITCH, C (log_json), 0, 0, "text", s_log_formats, 0, NULL, false,
      "\"text\" lines, or \"json\": one object per line" },
    { "log", "file", KEY_STRING, C (log_file), 0, 0, "", NULL, 0, NULL, false,
      "file the lines are appended to (reopened on SIGHUP, for logrotate); \"\" = stderr" },

    // The older spellings of log.level and log.format: no default of their
    // own (the log section's holds), refused beside the new one.
    { NULL, "log_level", KEY_CHOICE, C (log_level), 0, 0, NULL, s_log_levels, 0, NULL, false,
      "the older spelling of log.level" },
    { NULL, "log_format", KEY_SWITCH, C (log_json), 0, 0, NULL, s_log_formats, 0, NULL, false,
      "the older spelling of log.format" },
    { NULL, "quotas", KEY_CUSTOM, 0, 0, 0, NULL, NULL, 0, s_load_quotas, false,
      "{TENANT or \"*\": {…}}: per-tenant quotas (keys below)" },
    { NULL, "providers", KEY_CUSTOM, 0, 0, 0, NULL, NULL, 0, s_load_providers, false,
      "{NAME: {…}}: the upstreams (keys below)" },
};

// The keys of each provider (providers.NAME.KEY).
static const config_key_t s_provider_keys[] = {
    { "providers.*", "base_url", KEY_STRING, P (base_url), 0, 0, NULL, NULL, 0, NULL, false,
      "the upstream's base URL (http or https; operator-trusted); required" },
    { "providers.*", "rate_limit", KEY_NUMBER, P (rate_limit), 0, 1e9, "0", NULL, 0, NULL, false,
      "requests per second across all workers; 0 = unlimited" },
    { "providers.*", "burst", KEY_NUMBER, P (burst), 1, 1e9, NULL, NULL, 0, NULL, false,
      "token bucket size; default a tenth of a second's worth, at least 1" },
    { "providers.*", "max_concurrency", KEY_INT, P (max_concurrency), 0, 1e6, "0", NULL, 0, NULL,
      false, "calls in flight across all workers; 0 = unlimited" },
    { "providers.*", "timeout_ms", KEY_MS, P (timeout_ms), 0, 600000, "0", NULL, 0, NULL, false,
      "default per-attempt timeout; 0 = the job's" },
    { "providers.*", "max_queued", KEY_SIZE, P (max_queued), 0, 1e9, "0", NULL, 0, NULL, false,
      "active jobs at most (503 above); 0 = unlimited" },
    { "providers.*", "circuit_failures", KEY_INT, P (circuit_failures), 0, 1e6, "5", NULL, 0, NULL,
      false, "consecutive failures that open the breaker; 0 = never" },
    { "providers.*", "circuit_open_ms", KEY_MS, P (circuit_open_ms), 100, 3600000, "10000", NULL,
      0, NULL, false, "how long an open breaker waits before a probe" },
    { "providers.*", "circuit_fail_fast", KEY_BOOL, P (circuit_fail_fast), 0, 0, "false", NULL, 0,
      NULL, false, "while open: fail waiting jobs instead of holding them" },
    { "providers.*", "max_pause_ms", KEY_MS, P (max_pause_ms), 0, 86400000, "60000", NULL, 0, NULL,
      false, "longest pause a Retry-After imposes on every tenant (0 = never pause)" },
    { "providers.*", "breaker_min_timeout_ms", KEY_MS, P (breaker_min_timeout_ms), 0, 600000, NULL,
      NULL, 0, NULL, false,
      "a timeout counts toward the breaker only if the attempt had this long; default the "
      "provider's timeout_ms, else 5000" },
    { "providers.*", "retry_base_ms", KEY_MS, P (retry_base_ms), 1, 3600000, "500", NULL, 0, NULL,
      false, "backoff ceiling before the second attempt (doubles each time)" },
    { "providers.*", "retry_max_ms", KEY_MS, P (retry_max_ms), 1, 86400000, "60000", NULL, 0, NULL,
      false, "the backoff ceiling's cap" },
    { "providers.*", "headers", KEY_CUSTOM, 0, 0, 0, NULL, NULL, 0, s_load_headers, false,
      "{NAME: VALUE}: headers sent with every call" },
    { "providers.*", "auth", KEY_CUSTOM, 0, 0, 0, NULL, NULL, 0, s_load_auth, false,
      "{\"header\", \"prefix\", \"env\" or \"file\"}: where the secret lives and how it is sent" },
    { "providers.*", "search", KEY_CUSTOM, 0, 0, 0, NULL, NULL, 0, s_load_search, false,
      "the search kind's request template (docs/providers.md)" },
    { "providers.*", "models", KEY_CUSTOM, 0, 0, 0, NULL, NULL, 0, s_load_models, false,
      "[MODEL, …]: bare model names the OpenAI door routes to this provider (one provider per name)" },
    { "providers.*", "fallback", KEY_CUSTOM, 0, 0, 0, NULL, NULL, 0, s_load_fallback, false,
      "[PROVIDER, …]: tried in order when this one is unavailable (breaker open, paused, or an "
      "attempt failed retryably)" },
    { "providers.*", "tokens_per_minute", KEY_SIZE, P (tokens_per_minute), 0, 1e12, "0", NULL, 0,
      NULL, false, "LLM tokens in any sliding minute across all workers (estimate reserved at "
      "dispatch, settled with the reported usage); 0 = unlimited" },
    { "providers.*", "default_max_tokens", KEY_SIZE, P (default_max_tokens), 1, 1e9, "1024", NULL,
      0, NULL, false, "completion tokens a call's estimate reserves when its request names no "
      "max_tokens or max_completion_tokens" },
    { "providers.*", "prices", KEY_CUSTOM, 0, 0, 0, NULL, NULL, 0, s_load_prices, false,
      "{\"prompt\": USD, \"completion\": USD} per million tokens: GET /v1/usage adds cost_usd" },
    { "providers.*", "cache_ttl_ms", KEY_MS, P (cache_ttl_ms), 0, 604800000, "0", NULL, 0,
      NULL, false, "default cache.ttl_ms of its jobs: an identical job of the same tenant that "
      "succeeded this recently answers at once, identical jobs in flight share one call "
      "(SPEC §3.2); 0 = off" },
};

// The keys of each tenant's quota (quotas.TENANT.KEY).
static const config_key_t s_quota_keys[] = {
    { "quotas.*", "submit_rate", KEY_NUMBER, Q (submit_rate), 0, 1e9, "0", NULL, 0, NULL, false,
      "submissions per second (burst of one second); 0 = unlimited" },
    { "quotas.*", "max_queued", KEY_SIZE, Q (max_queued), 0, 1e9, "0", NULL, 0, NULL, false,
      "active jobs at most (429 above); 0 = unlimited" },
    { "quotas.*", "max_running", KEY_SIZE, Q (max_running), 0, 1e9, "0", NULL, 0, NULL, false,
      "calls running at once, webhook deliveries included; 0 = unlimited" },
    { "quotas.*", "max_stored_bytes", KEY_SIZE, Q (max_stored_bytes), 0, 1e15, "0", NULL, 0, NULL,
      false, "bytes of its jobs in the store at most (429 above); 0 = a quarter of "
      "broker.store_map_mb" },
    { "quotas.*", "weight", KEY_INT, Q (weight), 1, 1000, "1", NULL, 0, NULL, false,
      "its share of each provider's dispatches: up to this many per turn of the tenants' "
      "round robin" },
    { "quotas.*", "tokens_per_day", KEY_SIZE, Q (tokens_per_day), 0, 1e15, "0", NULL, 0, NULL,
      false, "LLM tokens per UTC day: once reached, llm submissions get 429 until midnight UTC; "
      "0 = unlimited" },
};

#undef C
#undef P
#undef Q

// The keys a running process may change on SIGHUP (config_reload): each is
// read afresh where it is used, or the process refreshes what it derived
// from it (broker_config_changed: rate buckets, tenants' quotas). Every
// other key is fixed for the life of a process (listen addresses,
// endpoints, the store, the set of providers, their URLs and secrets, …):
// a reload that changes one is refused. "quotas" covers quotas.*.*.
static const char *const s_reloadable[] = {
    "gateway.api_keys",
    "quotas",
    "log.level", "log.format", "log.file", "log_level", "log_format",
    "providers.*.rate_limit", "providers.*.burst", "providers.*.max_concurrency",
    "providers.*.max_queued", "providers.*.timeout_ms", "providers.*.breaker_min_timeout_ms",
    "providers.*.circuit_failures", "providers.*.circuit_open_ms",
    "providers.*.circuit_fail_fast", "providers.*.max_pause_ms", "providers.*.retry_base_ms",
    "providers.*.retry_max_ms", "providers.*.default_max_tokens",
    NULL,
};

// KEY_SIZE stores a size_t; max_stored_bytes is a uint64_t of the same size.
_Static_assert (sizeof (size_t) == sizeof (uint64_t), "KEY_SIZE rows store 64-bit sizes");

#define KEYS_COUNT(table) (sizeof table / sizeof table[0])

// A table and the section names its rows may carry.
typedef struct {
    const config_key_t *keys;   // the rows
    size_t count;               // how many
} key_table_t;

static const key_table_t s_tables[] = {
    { s_keys, KEYS_COUNT (s_keys) },
    { s_provider_keys, KEYS_COUNT (s_provider_keys) },
    { s_quota_keys, KEYS_COUNT (s_quota_keys) },
};

// s_full_name writes section.name (or name at the top level) into buf.
static void
s_full_name (const config_key_t *key, const char *section, char *buf, size_t size)
{
    if (section && *section)
        snprintf (buf, size, "%s.%s", section, key->name);
    else
        snprintf (buf, size, "%s", key->name);
}

// s_env_name writes JOBGATE_<SECTION>_<NAME> (upper case) into buf.
static void
s_env_name (const char *section, const char *name, char *buf, size_t size)
{
    if (section)
        snprintf (buf, size, "JOBGATE_%s_%s", section, name);
    else
        snprintf (buf, size, "JOBGATE_%s", name);
    // A nested section's dot becomes an underscore: JOBGATE_SECURITY_CURVE_…
    for (char *p = buf; *p; p++)
        *p = *p == '.' ? '_' : (char) toupper ((unsigned char) *p);
}

// s_distance is the edit distance of a and b (both short), for suggestions.
static size_t
s_distance (const char *a, const char *b)
{
    size_t a_len = strlen (a), b_len = strlen (b);
    if (a_len > 63 || b_len > 63)
        return 64;
    size_t row[64];
    for (size_t j = 0; j <= b_len; j++)
        row[j] = j;
    for (size_t i = 1; i <= a_len; i++) {
        size_t diagonal = row[0];
        row[0] = i;
        for (size_t j = 1; j <= b_len; j++) {
            size_t above = row[j];
            size_t cost = tolower ((unsigned char) a[i - 1]) == tolower ((unsigned char) b[j - 1]) ? 0 : 1;
            size_t best = diagonal + cost;
            if (above + 1 < best)
                best = above + 1;
            if (row[j - 1] + 1 < best)
                best = row[j - 1] + 1;
            row[j] = best;
            diagonal = above;
        }
    }
    return row[b_len];
}

// s_suggest writes " (did you mean PREFIX.X?)" into buf when a candidate X
// is close to wrong, else "". candidates is NULL-terminated; prefix may be
// NULL or "".
static void
s_suggest_in (const char *prefix, const char *wrong, const char *const *candidates, char *buf,
              size_t size)
{
    const char *best = NULL;
    size_t best_distance = 0;
    for (size_t i = 0; candidates[i]; i++) {
        size_t distance = s_distance (wrong, candidates[i]);
        if (!best || distance < best_distance) {
            best = candidates[i];
            best_distance = distance;
        }
    }
    size_t len = strlen (wrong);
    size_t tolerated = len / 3 > 2 ? len / 3 : 2;
    if (best && best_distance <= tolerated)
        snprintf (buf, size, " (did you mean %s%s%s?)", prefix ? prefix : "",
                  prefix && *prefix ? "." : "", best);
    else
        buf[0] = '\0';
}

// s_suggest is s_suggest_in without a prefix.
static void
s_suggest (const char *wrong, const char *const *candidates, char *buf, size_t size)
{
    s_suggest_in (NULL, wrong, candidates, buf, size);
}

// s_unknown_key reports a key of section that no row names, with the
// nearest valid one.
static int
s_unknown_key (const config_key_t *keys, size_t count, const char *section, const char *table_section,
               const char *name, const char *const *extra, char *error, size_t error_size)
{
    const char *candidates[64];
    size_t used = 0;
    for (size_t i = 0; i < count && used < 60; i++)
        if ((keys[i].section == NULL) == (table_section == NULL)
            && (!table_section || strcmp (keys[i].section, table_section) == 0))
            candidates[used++] = keys[i].name;
    for (size_t i = 0; extra && extra[i] && used < 63; i++)
        candidates[used++] = extra[i];
    candidates[used] = NULL;
    char hint[160];
    s_suggest_in (section, name, candidates, hint, sizeof hint);
    if (section && *section)
        snprintf (error, error_size, "config: unknown key %s.%s%s", section, name, hint);
    else
        snprintf (error, error_size, "config: unknown key %s%s", name, hint);
    return -1;
}

// s_integral is true when number has no fraction.
static bool
s_integral (double number)
{
    return number == (double) (long long) number;
}

// s_key_store parses one value of key — JSON when json is set, else the
// text of a default or an environment variable — and stores it in target.
static int
s_key_store (const config_key_t *key, void *target, json_t *json, const char *text,
             const char *where, char *error, size_t error_size)
{
    char *field = (char *) target + key->offset;
    const char *origin = json ? "" : " (environment)";
    switch (key->type) {
    case KEY_STRING: {
        const char *value = json ? json_string_value (json) : text;
        if (!value || (json && strlen (value) != json_string_length (json))) {
            snprintf (error, error_size, "config: %s must be a string%s", where, origin);
            return -1;
        }
        char *copy = strdup (value);
        if (!copy) {
            snprintf (error, error_size, "config: %s: out of memory", where);
            return -1;
        }
        free (*(char **) field);
        *(char **) field = copy;
        return 0;
    }
    case KEY_BOOL: {
        bool value;
        if (json && json_is_boolean (json))
            value = json_is_true (json);
        else if (!json && (strcmp (text, "true") == 0 || strcmp (text, "1") == 0))
            value = true;
        else if (!json && (strcmp (text, "false") == 0 || strcmp (text, "0") == 0))
            value = false;
        else {
            snprintf (error, error_size, "config: %s must be true or false%s", where, origin);
            return -1;
        }
        *(bool *) field = value;
        return 0;
    }
    case KEY_SWITCH:
    case KEY_CHOICE: {
        const char *value = json ? json_string_value (json) : text;
        for (int i = 0; value && key->choices[i]; i++)
            if (strcmp (value, key->choices[i]) == 0) {
                if (key->type == KEY_SWITCH)
                    *(bool *) field = i == 1;
                else
                    *(int *) field = i;
                return 0;
            }
        char names[128] = "";
        size_t used = 0;
        for (int i = 0; key->choices[i] && used < sizeof names; i++)
            used += (size_t) snprintf (names + used, sizeof names - used, "%s\"%s\"",
                                       i == 0 ? "" : key->choices[i + 1] ? ", " : " or ",
                                       key->choices[i]);
        snprintf (error, error_size, "config: %s must be %s%s", where, names, origin);
        return -1;
    }
    case KEY_INT:
    case KEY_SIZE:
    case KEY_MS:
    case KEY_NUMBER: {
        double number;
        bool ok;
        if (json) {
            ok = json_is_number (json);
            number = ok ? json_number_value (json) : 0;
        }
        else {
            char *end = NULL;
            errno = 0;
            number = strtod (text, &end);
            ok = *text && !*end && !errno;
        }
        bool whole = key->type != KEY_NUMBER;
        if (!ok || (whole && !s_integral (number)) || number < key->min || number > key->max) {
            snprintf (error, error_size, "config: %s must be %s from %.15g to %.15g%s", where,
                      whole ? "an integer" : "a number", key->min, key->max, origin);
            return -1;
        }
        double stored = number * (key->scale > 0 ? key->scale : 1);
        if (key->type == KEY_INT)
            *(int *) field = (int) stored;
        else if (key->type == KEY_SIZE)
            *(size_t *) field = (size_t) stored;
        else if (key->type == KEY_MS)
            *(int64_t *) field = (int64_t) stored;
        else
            *(double *) field = stored;
        return 0;
    }
    case KEY_CUSTOM:
        return key->load (target, json, where, error, error_size);
    }
    return -1;
}

// s_apply_table reads the rows of one section of a table from object (may
// be NULL: defaults only) into target: defaults first, then the file's
// values, then, with env_section, the environment's. section is the name
// used in messages ("providers.openai"); table_section selects the rows
// ("providers.*", NULL for the top level). Keys of object that no row
// names are refused unless listed in also_allowed.
static int
s_apply_table (const config_key_t *keys, size_t count, const char *table_section,
               const char *section, json_t *object, void *target, const char *env_section,
               const char *const *also_allowed, char *error, size_t error_size)
{
    for (size_t i = 0; i < count; i++) {
        const config_key_t *key = &keys[i];
        bool mine = (key->section == NULL) == (table_section == NULL)
                    && (!table_section || strcmp (key->section, table_section) == 0);
        if (!mine || key->type == KEY_CUSTOM || !key->fallback)
            continue;
        char where[256];
        s_full_name (key, section, where, sizeof where);
        int rc = s_key_store (key, target, NULL, key->fallback, where, error, error_size);
        assert (rc == 0);   // defaults are written by us
    }
    const char *name;
    json_t *value;
    json_object_foreach (object, name, value) {
        const config_key_t *found = NULL;
        for (size_t i = 0; i < count && !found; i++)
            if ((keys[i].section == NULL) == (table_section == NULL)
                && (!table_section || strcmp (keys[i].section, table_section) == 0)
                && strcmp (keys[i].name, name) == 0)
                found = &keys[i];
        bool allowed = false;
        for (size_t i = 0; also_allowed && also_allowed[i]; i++)
            allowed = allowed || strcmp (also_allowed[i], name) == 0;
        if (allowed)
            continue;
        if (!found)
            return s_unknown_key (keys, count, section, table_section, name, also_allowed, error,
                                  error_size);
        char where[256];
        s_full_name (found, section, where, sizeof where);
        if (s_key_store (found, target, value, NULL, where, error, error_size) < 0)
            return -1;
    }
    if (!env_section && table_section)
        return 0;
    for (size_t i = 0; i < count; i++) {
        const config_key_t *key = &keys[i];
        bool mine = (key->section == NULL) == (table_section == NULL)
                    && (!table_section || strcmp (key->section, table_section) == 0);
        if (!mine || (key->type == KEY_CUSTOM && !key->env))
            continue;
        char env_name[128], where[256];
        s_env_name (env_section, key->name, env_name, sizeof env_name);
        const char *text = getenv (env_name);
        if (!text || !*text)
            continue;
        s_full_name (key, section, where, sizeof where);
        if (key->type == KEY_CUSTOM) {
            json_t *wrapped = json_string (text);
            int rc = wrapped ? key->load (target, wrapped, where, error, error_size) : -1;
            json_decref (wrapped);
            if (rc < 0)
                return -1;
        }
        else if (s_key_store (key, target, NULL, text, where, error, error_size) < 0)
            return -1;
    }
    return 0;
}

// The fixed sections, in the order the reference lists them.
static const char *const s_sections[] = { "gateway", "broker", "worker", "direct", "webhooks",
                                          "security", "security.curve", "log", NULL };

// The sections nested in the security section (its members that are
// sections of their own, read by their rows).
static const char *const s_security_subsections[] = { "curve", NULL };

// s_section_object returns the object of a section ("security.curve" is
// root.security.curve), or NULL when absent.
static json_t *
s_section_object (json_t *root, const char *section)
{
    const char *dot = strchr (section, '.');
    if (!dot)
        return json_object_get (root, section);
    char outer[64];
    snprintf (outer, sizeof outer, "%.*s", (int) (dot - section), section);
    json_t *parent = json_object_get (root, outer);
    return json_is_object (parent) ? json_object_get (parent, dot + 1) : NULL;
}

// s_check_environment refuses a JOBGATE_<SECTION>_… or JOBGATE_LOG_…
// variable that names no key: a misspelt override must not be ignored.
// Variables holding provider secrets (auth.env) are never refused.
static int
s_check_environment (const config_t *self, char *error, size_t error_size)
{
    const char *candidates[64];
    size_t used = 0;
    for (size_t i = 0; i < KEYS_COUNT (s_keys) && used < 63; i++) {
        const config_key_t *key = &s_keys[i];
        if (key->type == KEY_CUSTOM && !key->env)
            continue;
        static char names[64][96];
        s_env_name (key->section, key->name, names[used], sizeof names[used]);
        candidates[used] = names[used];
        used++;
    }
    candidates[used] = NULL;
    for (char **entry = environ; entry && *entry; entry++) {
        const char *variable = *entry;
        const char *equals = strchr (variable, '=');
        if (!equals || strncmp (variable, "JOBGATE_", 8) != 0)
            continue;
        char name[128];
        size_t len = (size_t) (equals - variable);
        if (len >= sizeof name)
            continue;
        memcpy (name, variable, len);
        name[len] = '\0';
        bool claimed = strncmp (name + 8, "LOG_", 4) == 0;
        for (size_t i = 0; s_sections[i] && !claimed; i++) {
            size_t section_len = strlen (s_sections[i]);
            claimed = strncasecmp (name + 8, s_sections[i], section_len) == 0
                      && name[8 + section_len] == '_';
        }
        if (!claimed)
            continue;
        bool known = false;
        for (size_t i = 0; candidates[i] && !known; i++)
            known = strcmp (candidates[i], name) == 0;
        for (size_t i = 0; i < self->providers_count && !known; i++)
            known = self->providers[i].auth_env && strcmp (self->providers[i].auth_env, name) == 0;
        if (known)
            continue;
        char hint[128];
        s_suggest (name, candidates, hint, sizeof hint);
        snprintf (error, error_size, "config: environment variable %s names no key%s", name, hint);
        return -1;
    }
    return 0;
}

static int
s_load_api_keys (void *target, json_t *keys, const char *where, char *error,
                 size_t error_size)
{
    config_t *self = target;
    if (!json_is_array (keys)) {
        snprintf (error, error_size, "config: %s must be an array", where);
        return -1;
    }
    // Added to the keys already read (the config file's, then the file's).
    self->api_keys = mem_realloc (self->api_keys, (self->api_keys_count + json_array_size (keys) + 1)
                                                      * sizeof *self->api_keys);
    memset (self->api_keys + self->api_keys_count, 0,
            (json_array_size (keys) + 1) * sizeof *self->api_keys);
    size_t index;
    json_t *entry;
    json_array_foreach (keys, index, entry) {
        json_t *key = json_object_get (entry, "key");
        json_t *key_hash = json_object_get (entry, "key_sha256");
        json_t *tenant = json_object_get (entry, "tenant");
        static const char *const fields[] = { "key", "key_sha256", "tenant", "operator", NULL };
        const char *field;
        json_t *ignored;
        if (json_is_object (entry))
            json_object_foreach (entry, field, ignored) {
                bool known = false;
                for (size_t i = 0; fields[i]; i++)
                    known = known || strcmp (fields[i], field) == 0;
                if (!known) {
                    char prefix[160], hint[256];
                    snprintf (prefix, sizeof prefix, "%s[%zu]", where, index);
                    s_suggest_in (prefix, field, fields, hint, sizeof hint);
                    snprintf (error, error_size, "config: unknown key %s.%s%s", prefix, field,
                              hint);
                    return -1;
                }
            }
        // A NUL inside a string (jsontext allows it) would cut a tenant short.
        bool whole = true;
        json_t *texts[] = { key, key_hash, tenant };
        for (size_t i = 0; i < 3; i++)
            whole = whole && (!json_is_string (texts[i])
                              || strlen (json_string_value (texts[i])) == json_string_length (texts[i]));
        if (!json_is_object (entry) || !json_is_string (tenant) || !whole
            || !(json_is_string (key) || json_is_string (key_hash))) {
            snprintf (error, error_size,
                      "config: %s[%zu] needs \"tenant\" and \"key\" or \"key_sha256\"",
                      where, index);
            return -1;
        }
        config_api_key_t *api_key = &self->api_keys[self->api_keys_count];
        if (json_is_string (key)) {
            const char *text = json_string_value (key);
            crypto_hash_sha256 (api_key->key_hash, (const unsigned char *) text, strlen (text));
        }
        else {
            const char *hex = json_string_value (key_hash);
            size_t bin_len = 0;
            if (strlen (hex) != 64
                || sodium_hex2bin (api_key->key_hash, 32, hex, 64, NULL, &bin_len, NULL) != 0
                || bin_len != 32) {
                snprintf (error, error_size,
                          "config: %s[%zu].key_sha256 must be 64 hex digits", where, index);
                return -1;
            }
        }
        if (json_string_value (tenant)[0] == '#') {
            snprintf (error, error_size,
                      "config: %s[%zu].tenant may not start with '#' (reserved)", where, index);
            return -1;
        }
        json_t *is_operator = json_object_get (entry, "operator");
        if (is_operator && !json_is_boolean (is_operator)) {
            snprintf (error, error_size,
                      "config: %s[%zu].operator must be true or false", where, index);
            return -1;
        }
        // The broker indexes a tenant's jobs (and Idempotency-Keys of at
        // most 255 bytes) under LMDB keys of at most 511 bytes.
        if (strlen (json_string_value (tenant)) > 128) {
            snprintf (error, error_size,
                      "config: %s[%zu].tenant must be at most 128 bytes", where, index);
            return -1;
        }
        api_key->is_operator = json_is_true (is_operator);
        api_key->tenant = strdup (json_string_value (tenant));
        self->api_keys_count++;
    }
    return 0;
}

// s_load_allowed_hosts reads gateway.allowed_hosts: Host names (or IP
// literals, "*" for any) the gateway answers besides its own; stored lower
// case, IPv6 literals in brackets as they appear in a Host header.
// A character a name of a list may hold.
typedef bool (name_char_fn) (char c);

static bool
s_name_char (char c)
{
    return c > ' ' && c < 0x7f;     // printable ASCII, no space
}

static bool
s_host_char (char c)
{
    return isalnum ((unsigned char) c) || strchr ("-._:[]*", c);
}

// s_load_names reads an array of at most 64 distinct names of 1 to max_len
// characters, each one ok_char accepts, into a NULL-terminated array (*list,
// *count); what says what a name must be, for the error.
static int
s_load_names (json_t *names, const char *where, size_t max_len, name_char_fn *ok_char,
              const char *what, char ***list, size_t *count, char *error, size_t error_size)
{
    if (!json_is_array (names) || json_array_size (names) > 64) {
        snprintf (error, error_size, "config: %s must be an array of at most 64 names", where);
        return -1;
    }
    *list = mem_calloc (json_array_size (names) + 1, sizeof **list);
    size_t index;
    json_t *entry;
    json_array_foreach (names, index, entry) {
        const char *text = json_string_value (entry);
        size_t len = text ? strlen (text) : 0;
        bool ok = len > 0 && len <= max_len;
        for (size_t i = 0; ok && i < len; i++)
            ok = ok_char (text[i]);
        for (size_t i = 0; ok && i < *count; i++)
            ok = strcmp ((*list)[i], text) != 0;
        if (!ok) {
            snprintf (error, error_size, "config: %s[%zu] must be %s, 1 to %zu characters, "
                      "listed once", where, index, what, max_len);
            return -1;
        }
        (*list)[(*count)++] = mem_strdup (text);
    }
    return 0;
}

static int
s_load_allowed_hosts (void *target, json_t *hosts, const char *where, char *error,
                      size_t error_size)
{
    config_t *self = target;
    if (s_load_names (hosts, where, 253, s_host_char, "a host name or IP address",
                      &self->allowed_hosts, &self->allowed_hosts_count, error, error_size) < 0)
        return -1;
    // As a Host header writes them: lower case, IPv6 literals in brackets.
    for (size_t i = 0; i < self->allowed_hosts_count; i++) {
        char *host = self->allowed_hosts[i];
        if (strchr (host, ':') && host[0] != '[') {
            size_t len = strlen (host);
            char *bracketed = mem_alloc (len + 3);
            snprintf (bracketed, len + 3, "[%s]", host);
            free (host);
            self->allowed_hosts[i] = host = bracketed;
        }
        for (char *c = host; *c; c++)
            *c = (char) tolower ((unsigned char) *c);
    }
    return 0;
}

// s_known_fields refuses a key of object (when it is one) not in fields,
// naming the nearest valid one.
static int
s_known_fields (json_t *object, const char *const *fields, const char *where, char *error,
                size_t error_size)
{
    const char *field;
    json_t *ignored;
    if (json_is_object (object))
        json_object_foreach (object, field, ignored) {
            bool known = false;
            for (size_t i = 0; fields[i]; i++)
                known = known || strcmp (fields[i], field) == 0;
            if (!known) {
                char hint[256];
                s_suggest_in (where, field, fields, hint, sizeof hint);
                snprintf (error, error_size, "config: unknown key %s.%s%s", where, field, hint);
                return -1;
            }
        }
    return 0;
}

// s_token_ok is true for a header name (common/httpfield: an RFC 9110 token).
static bool
s_token_ok (const char *text)
{
    return httpfield_token (text, strlen (text));
}

// s_load_auth reads providers.NAME.auth: which header carries the secret and
// where the secret lives (env or file). The secret itself is read later, by
// config_load_secrets, in the worker only.
static int
s_load_auth (void *target, json_t *auth, const char *where, char *error, size_t error_size)
{
    config_provider_t *provider = target;
    const char *name = provider->name;
    static const char *const fields[] = { "header", "prefix", "env", "file", NULL };
    if (s_known_fields (auth, fields, where, error, error_size) < 0)
        return -1;
    json_t *header = json_object_get (auth, "header");
    json_t *prefix = json_object_get (auth, "prefix");
    json_t *env = json_object_get (auth, "env");
    json_t *file = json_object_get (auth, "file");
    if (!json_is_object (auth) || (header && !json_is_string (header))
        || (prefix && !json_is_string (prefix)) || (env && !json_is_string (env))
        || (file && !json_is_string (file)) || !env == !file) {
        snprintf (error, error_size, "config: providers.%s.auth must be an object with "
                  "\"header\", \"prefix\" and exactly one of \"env\" or \"file\" (strings)", name);
        return -1;
    }
    const char *header_text = header ? json_string_value (header) : "Authorization";
    const char *prefix_text = prefix ? json_string_value (prefix) : "";
    if (!s_token_ok (header_text) || strlen (header_text) > 128) {
        snprintf (error, error_size, "config: providers.%s.auth.header must be a header name", name);
        return -1;
    }
    if (prefix && !httpfield_value_safe (prefix_text, json_string_length (prefix))) {
        snprintf (error, error_size, "config: providers.%s.auth.prefix must not contain CR, LF "
                  "or NUL", name);
        return -1;
    }
    if ((env && !*json_string_value (env)) || (file && !*json_string_value (file))) {
        snprintf (error, error_size, "config: providers.%s.auth.%s must not be empty", name,
                  env ? "env" : "file");
        return -1;
    }
    provider->auth_header = strdup (header_text);
    provider->auth_prefix = strdup (prefix_text);
    provider->auth_env = env ? strdup (json_string_value (env)) : NULL;
    provider->auth_file = file ? strdup (json_string_value (file)) : NULL;
    return 0;
}

// s_load_search reads providers.NAME.search, the search kind's request
// template, and stores it normalized with every default filled in:
// {"method": "GET"|"POST", "path": "", "query_param": "q",
//  "count_param": "count", "params": {}}.
static int
s_load_search (void *target, json_t *search, const char *where, char *error, size_t error_size)
{
    config_provider_t *provider = target;
    const char *name = provider->name;
    static const char *const fields[] = { "method", "path", "query_param", "count_param",
                                          "params", NULL };
    if (s_known_fields (search, fields, where, error, error_size) < 0)
        return -1;
    if (search && !json_is_object (search)) {
        snprintf (error, error_size, "config: providers.%s.search must be an object", name);
        return -1;
    }
    static const char *const keys[] = { "method", "path", "query_param", "count_param" };
    const char *values[] = { "GET", "", "q", "count" };
    for (size_t i = 0; i < 4; i++) {
        json_t *value = search ? json_object_get (search, keys[i]) : NULL;
        if (value && (!json_is_string (value) || (i != 1 && !*json_string_value (value))
                      || !httpfield_value_safe (json_string_value (value), json_string_length (value)))) {
            snprintf (error, error_size, "config: providers.%s.search.%s must be a non-empty "
                      "string", name, keys[i]);
            return -1;
        }
        if (value)
            values[i] = json_string_value (value);
    }
    char method[8];
    snprintf (method, sizeof method, "%s", values[0]);
    for (char *c = method; *c; c++)
        *c = (char) toupper ((unsigned char) *c);
    if (strcmp (method, "GET") != 0 && strcmp (method, "POST") != 0) {
        snprintf (error, error_size, "config: providers.%s.search.method must be GET or POST", name);
        return -1;
    }
    if (*values[1] && *values[1] != '/') {
        snprintf (error, error_size, "config: providers.%s.search.path must start with '/'", name);
        return -1;
    }
    json_t *params = search ? json_object_get (search, "params") : NULL;
    const char *key;
    json_t *value;
    bool ok = !params || json_is_object (params);
    if (params && ok)
        json_object_foreach (params, key, value)
            ok = ok && (json_is_string (value) || json_is_number (value) || json_is_boolean (value));
    if (!ok) {
        snprintf (error, error_size, "config: providers.%s.search.params must be an object of "
                  "strings, numbers or booleans", name);
        return -1;
    }
    provider->search = json_pack ("{s:s, s:s, s:s, s:s, s:o}", "method", method,
                                  "path", values[1], "query_param", values[2],
                                  "count_param", values[3], "params",
                                  params ? json_incref (params) : json_object ());
    if (!provider->search) {
        snprintf (error, error_size, "config: providers.%s.search: out of memory", name);
        return -1;
    }
    return 0;
}

// s_load_networks reads security.allow_networks: CIDRs the SSRF policy lets
// user URLs reach even while private networks are denied.
static int
s_load_networks (void *target, json_t *networks, const char *where, char *error,
                 size_t error_size)
{
    config_t *self = target;
    if (!json_is_array (networks)) {
        snprintf (error, error_size, "config: security.allow_networks must be an array of CIDRs");
        return -1;
    }
    self->allow_networks = calloc (json_array_size (networks) + 1, sizeof *self->allow_networks);
    size_t index;
    json_t *entry;
    json_array_foreach (networks, index, entry) {
        if (!json_is_string (entry)
            || config_network_parse (json_string_value (entry),
                                     &self->allow_networks[self->allow_networks_count]) < 0) {
            snprintf (error, error_size, "config: security.allow_networks[%zu] must be a CIDR "
                      "such as \"127.0.0.2/32\" or \"fd00::/8\"", index);
            return -1;
        }
        self->allow_networks_count++;
    }
    return 0;
}

// s_load_curve_keys reads security.curve.authorized_keys: an array of
// public keys, each 40 characters of Z85 (common/curve.h checks that each
// decodes).
static int
s_load_curve_keys (void *target, json_t *keys, const char *where, char *error,
                   size_t error_size)
{
    config_t *self = target;
    if (!json_is_array (keys)) {
        snprintf (error, error_size, "config: %s must be an array of Z85 public keys", where);
        return -1;
    }
    self->curve_authorized_keys = mem_calloc (json_array_size (keys) + 1,
                                              sizeof *self->curve_authorized_keys);
    size_t index;
    json_t *entry;
    json_array_foreach (keys, index, entry) {
        if (!json_is_string (entry) || json_string_length (entry) != 40) {
            snprintf (error, error_size, "config: %s[%zu] must be a Z85 public key of 40 "
                      "characters", where, index);
            return -1;
        }
        self->curve_authorized_keys[self->curve_authorized_keys_count++]
            = mem_strdup (json_string_value (entry));
    }
    return 0;
}

// s_load_headers reads providers.NAME.headers, an object of strings.
static int
s_load_headers (void *target, json_t *headers, const char *where, char *error,
                size_t error_size)
{
    config_provider_t *provider = target;
    const char *header;
    json_t *value;
    bool ok = json_is_object (headers);
    if (ok)
        json_object_foreach (headers, header, value)
            ok = ok && s_token_ok (header) && json_is_string (value)
                 && httpfield_value_safe (json_string_value (value), json_string_length (value));
    if (!ok) {
        snprintf (error, error_size, "config: %s must be an object of header names and "
                  "single-line strings", where);
        return -1;
    }
    json_decref (provider->headers);
    provider->headers = json_incref (headers);
    return 0;
}

// s_load_webhook_secret reads webhooks.secret. Standard Webhooks:
// "whsec_" + base64 of the key; anything else is taken as the key's bytes.
static int
s_load_webhook_secret (void *target, json_t *value, const char *where, char *error,
                       size_t error_size)
{
    config_t *self = target;
    const char *secret = json_string_value (value);
    unsigned char *key = NULL;
    size_t key_size = 0;
    if (!secret || strlen (secret) != json_string_length (value)
        || webhook_key_decode (secret, strlen (secret), &key, &key_size) < 0) {
        snprintf (error, error_size, "config: %s must be a non-empty string (\"whsec_\" + "
                  "base64, or the key's bytes)", where);
        return -1;
    }
    if (self->webhook_key)
        sodium_memzero (self->webhook_key, self->webhook_key_size);
    free (self->webhook_key);
    self->webhook_key = key;
    self->webhook_key_size = key_size;
    return 0;
}

// s_load_quotas reads {"quotas": {"TENANT" | "*": {…}}}.
static int
s_load_quotas (void *target, json_t *quotas, const char *where, char *error, size_t error_size)
{
    config_t *self = target;
    if (!json_is_object (quotas)) {
        snprintf (error, error_size, "config: \"quotas\" must be an object");
        return -1;
    }
    self->quotas = calloc (json_object_size (quotas) + 1, sizeof *self->quotas);
    if (!self->quotas) {
        snprintf (error, error_size, "config: quotas: out of memory");
        return -1;
    }
    const char *tenant;
    json_t *entry;
    json_object_foreach (quotas, tenant, entry) {
        config_quota_t *quota = &self->quotas[self->quotas_count++];
        quota->tenant = strdup (tenant);
        char section[160];
        snprintf (section, sizeof section, "quotas.%s", tenant);
        if (!json_is_object (entry)) {
            snprintf (error, error_size, "config: %s must be an object", section);
            return -1;
        }
        if (s_apply_table (s_quota_keys, KEYS_COUNT (s_quota_keys), "quotas.*", section, entry,
                           quota, NULL, NULL, error, error_size) < 0)
            return -1;
    }
    return 0;
}

const config_quota_t *
config_quota (const config_t *self, const char *tenant)
{
    const config_quota_t *fallback = NULL;
    for (size_t i = 0; i < self->quotas_count; i++) {
        if (strcmp (self->quotas[i].tenant, tenant) == 0)
            return &self->quotas[i];
        if (strcmp (self->quotas[i].tenant, "*") == 0)
            fallback = &self->quotas[i];
    }
    return fallback;
}


static int
s_load_models (void *target, json_t *value, const char *where, char *error, size_t error_size)
{
    config_provider_t *provider = target;
    return s_load_names (value, where, 256, s_name_char, "a model name without spaces",
                         &provider->models, &provider->models_count, error, error_size);
}

static int
s_load_fallback (void *target, json_t *value, const char *where, char *error, size_t error_size)
{
    config_provider_t *provider = target;
    return s_load_names (value, where, 256, s_name_char, "a provider name",
                         &provider->fallback, &provider->fallback_count, error, error_size);
}

// s_load_prices reads providers.NAME.prices: USD per million prompt and
// completion tokens, both required, neither negative.
static int
s_load_prices (void *target, json_t *value, const char *where, char *error, size_t error_size)
{
    config_provider_t *provider = target;
    json_t *prompt = json_object_get (value, "prompt");
    json_t *completion = json_object_get (value, "completion");
    if (!json_is_object (value) || json_object_size (value) != 2 || !json_is_number (prompt)
        || !json_is_number (completion) || json_number_value (prompt) < 0
        || json_number_value (completion) < 0 || json_number_value (prompt) > 1e9
        || json_number_value (completion) > 1e9) {
        snprintf (error, error_size, "config: %s must be {\"prompt\": USD, \"completion\": USD} "
                  "per million tokens (numbers from 0 to 1e9)", where);
        return -1;
    }
    provider->priced = true;
    provider->price_prompt = json_number_value (prompt);
    provider->price_completion = json_number_value (completion);
    return 0;
}

// s_check_routes checks the rules between providers: a fallback names
// another configured provider; a bare model name belongs to one provider.
static int
s_check_routes (const config_t *self, char *error, size_t error_size)
{
    for (size_t i = 0; i < self->providers_count; i++) {
        const config_provider_t *provider = &self->providers[i];
        for (size_t f = 0; f < provider->fallback_count; f++) {
            const char *name = provider->fallback[f];
            if (strcmp (name, provider->name) == 0 || !config_provider (self, name)) {
                snprintf (error, error_size, "config: providers.%s.fallback[%zu]: \"%s\" is not "
                          "another configured provider", provider->name, f, name);
                return -1;
            }
        }
        for (size_t m = 0; m < provider->models_count; m++)
            for (size_t j = 0; j < i; j++)
                for (size_t n = 0; n < self->providers[j].models_count; n++)
                    if (strcmp (self->providers[j].models[n], provider->models[m]) == 0) {
                        snprintf (error, error_size, "config: providers.%s.models: \"%s\" is "
                                  "already routed to providers.%s", provider->name,
                                  provider->models[m], self->providers[j].name);
                        return -1;
                    }
    }
    return 0;
}

// s_load_providers reads {"providers": {"NAME": {…}}}.
static int
s_load_providers (void *target, json_t *providers, const char *where, char *error,
                  size_t error_size)
{
    config_t *self = target;
    if (!json_is_object (providers)) {
        snprintf (error, error_size, "config: \"providers\" must be an object");
        return -1;
    }
    self->providers = calloc (json_object_size (providers) + 1, sizeof *self->providers);
    if (!self->providers) {
        snprintf (error, error_size, "config: providers: out of memory");
        return -1;
    }
    const char *name;
    json_t *entry;
    json_object_foreach (providers, name, entry) {
        config_provider_t *provider = &self->providers[self->providers_count++];
        provider->name = strdup (name);
        provider->breaker_min_timeout_ms = -1;  // unset: derived below
        char section[160];
        snprintf (section, sizeof section, "providers.%s", name);
        if (!json_is_object (entry)) {
            snprintf (error, error_size, "config: %s must be an object", section);
            return -1;
        }
        if (!*name || strlen (name) > 64 || strchr (name, '/')) {
            snprintf (error, error_size, "config: %s: a provider name is 1 to 64 characters "
                      "without '/'", section);
            return -1;
        }
        if (s_apply_table (s_provider_keys, KEYS_COUNT (s_provider_keys), "providers.*", section,
                           entry, provider, NULL, NULL, error, error_size) < 0)
            return -1;
        if (!provider->base_url
            || (strncmp (provider->base_url, "http://", 7) != 0
                && strncmp (provider->base_url, "https://", 8) != 0)) {
            snprintf (error, error_size, "config: %s.base_url must be an http(s) URL", section);
            return -1;
        }
        // A tenth of a second's worth by default: smooth, so that no
        // one-second window sees much more than the rate itself.
        if (provider->burst == 0)
            provider->burst = provider->rate_limit / 10 > 1 ? provider->rate_limit / 10 : 1;
        // A timeout shorter than what the provider is expected to take is
        // the tenant's choice, not the provider's failure (issue 17 #2).
        if (provider->breaker_min_timeout_ms < 0)
            provider->breaker_min_timeout_ms = provider->timeout_ms > 0 ? provider->timeout_ms : 5000;
        // Every provider has a search template, defaults filled in.
        if (!provider->search
            && s_load_search (provider, NULL, section, error, error_size) < 0)
            return -1;
    }
    return s_check_routes (self, error, error_size);
}

// s_derive fills the defaults that depend on other keys and checks the
// rules between keys.
static int
s_derive (config_t *self, char *error, size_t error_size)
{
    struct sockaddr_storage metrics_addr;
    if (self->broker_metrics_listen && *self->broker_metrics_listen
        && listenaddr_parse (self->broker_metrics_listen, &metrics_addr) < 0) {
        snprintf (error, error_size, "config: broker.metrics_listen \"%s\" is not HOST:PORT "
                  "(numeric host, or localhost)", self->broker_metrics_listen);
        return -1;
    }
    if (self->direct.burst == 0)
        self->direct.burst = self->direct.rate_limit / 10 > 1 ? self->direct.rate_limit / 10 : 1;
    // One frame carries at most a job record: a result, a spec made from a
    // request body, and small fields. Below that, honest frames would be
    // refused; the default leaves a MiB of headroom.
    size_t floor = self->max_result_bytes + self->max_body_bytes + 65536;
    if (self->max_frame_bytes == 0)
        self->max_frame_bytes = self->max_result_bytes + self->max_body_bytes + 1024 * 1024;
    else if (self->max_frame_bytes < floor) {
        snprintf (error, error_size, "config: broker.max_frame_bytes must be at least "
                  "broker.max_result_bytes + gateway.max_body_bytes + 65536 (%zu)", floor);
        return -1;
    }
    return 0;
}

uint64_t
config_max_stored_bytes (const config_t *self, const config_quota_t *quota)
{
    if (quota && quota->max_stored_bytes > 0)
        return quota->max_stored_bytes;
    return (uint64_t) self->store_map_mb * 1024 * 1024 / 4;
}

// s_one_spelling refuses a file that sets a log key under both its names
// (log_level and log.level, log_format and log.format): one would silently
// win over the other.
static int
s_one_spelling (json_t *root, char *error, size_t error_size)
{
    static const char *const pairs[][2] = { { "log_level", "level" }, { "log_format", "format" } };
    json_t *log = json_object_get (root, "log");
    for (size_t i = 0; i < 2; i++)
        if (json_object_get (root, pairs[i][0]) && json_object_get (log, pairs[i][1])) {
            snprintf (error, error_size, "config: %s and log.%s are the same key (the older "
                      "and the newer spelling): set one", pairs[i][0], pairs[i][1]);
            return -1;
        }
    return 0;
}

config_t *
config_load (const char *path, char *error, size_t error_size)
{
    if (sodium_init () < 0) {
        snprintf (error, error_size, "config: libsodium failed to initialise");
        return NULL;
    }
    config_t *self = calloc (1, sizeof *self);
    if (!self) {
        snprintf (error, error_size, "config: out of memory");
        return NULL;
    }
    json_t *root = NULL;
    if (path) {
        json_error_t json_error;
        root = json_load_file (path, JSON_REJECT_DUPLICATES, &json_error);
        if (!root) {
            snprintf (error, error_size, "config: %s:%d: %s", path, json_error.line,
                      json_error.text);
            config_destroy (&self);
            return NULL;
        }
        if (!json_is_object (root)) {
            snprintf (error, error_size, "config: %s: the top level must be an object", path);
            json_decref (root);
            config_destroy (&self);
            return NULL;
        }
    }
    int rc = 0;
    // Each fixed section, then the top level (whose keys include the
    // sections themselves and the providers and quotas, read by their rows).
    for (size_t i = 0; s_sections[i] && rc == 0; i++) {
        json_t *section = root ? s_section_object (root, s_sections[i]) : NULL;
        if (section && !json_is_object (section)) {
            snprintf (error, error_size, "config: \"%s\" must be an object", s_sections[i]);
            rc = -1;
            break;
        }
        rc = s_apply_table (s_keys, KEYS_COUNT (s_keys), s_sections[i], s_sections[i], section,
                            self, s_sections[i],
                            strcmp (s_sections[i], "security") == 0 ? s_security_subsections
                                                                     : NULL,
                            error, error_size);
    }
    if (rc == 0)
        rc = s_apply_table (s_keys, KEYS_COUNT (s_keys), NULL, NULL, root, self, NULL,
                            s_sections, error, error_size);
    if (rc == 0)
        rc = s_check_environment (self, error, error_size);
    self->api_keys_config_count = self->api_keys_count;
    if (rc == 0)
        rc = s_one_spelling (root, error, error_size);
    if (rc == 0)
        rc = s_derive (self, error, error_size);
    self->source = root;
    if (rc < 0) {
        config_destroy (&self);
        return NULL;
    }
    return self;
}

bool
config_reloadable (const char *full_name)
{
    if (strncmp (full_name, "quotas.", 7) == 0)
        return true;
    for (size_t i = 0; s_reloadable[i]; i++)
        if (strcmp (s_reloadable[i], full_name) == 0)
            return true;
    return false;
}

// s_same_value is true when a key is written the same way in both files
// (or absent from both): with the same environment and defaults, the same
// text gives the same value.
static bool
s_same_value (json_t *old_object, json_t *new_object, const char *name)
{
    json_t *old_value = json_object_get (old_object, name);
    json_t *new_value = json_object_get (new_object, name);
    return (!old_value && !new_value)
           || (old_value && new_value && json_equal (old_value, new_value));
}

// s_fixed_change writes into error the first key that may not change on a
// reload but differs between old and new (the files' JSON); 0 when none.
static int
s_fixed_change (json_t *old_root, json_t *new_root, char *error, size_t error_size)
{
    char name[256];
    for (size_t i = 0; i < KEYS_COUNT (s_keys); i++) {
        const config_key_t *key = &s_keys[i];
        s_full_name (key, key->section, name, sizeof name);
        if (config_reloadable (name) || strcmp (name, "providers") == 0)
            continue;
        json_t *old_section = key->section ? json_object_get (old_root, key->section) : old_root;
        json_t *new_section = key->section ? json_object_get (new_root, key->section) : new_root;
        if (!s_same_value (old_section, new_section, key->name))
            goto changed;
    }
    // The providers: the same names in the same order (the processes index
    // them), each with its fixed keys unchanged.
    json_t *old_providers = json_object_get (old_root, "providers");
    json_t *new_providers = json_object_get (new_root, "providers");
    void *old_at = json_object_iter (old_providers), *new_at = json_object_iter (new_providers);
    for (; old_at || new_at; old_at = json_object_iter_next (old_providers, old_at),
                             new_at = json_object_iter_next (new_providers, new_at)) {
        if (!old_at || !new_at
            || strcmp (json_object_iter_key (old_at), json_object_iter_key (new_at)) != 0) {
            snprintf (error, error_size, "the set of providers changed (providers \"%s\")",
                      old_at ? json_object_iter_key (old_at) : json_object_iter_key (new_at));
            return -1;
        }
        for (size_t i = 0; i < KEYS_COUNT (s_provider_keys); i++) {
            const config_key_t *key = &s_provider_keys[i];
            s_full_name (key, key->section, name, sizeof name);
            if (!config_reloadable (name)
                && !s_same_value (json_object_iter_value (old_at), json_object_iter_value (new_at),
                                  key->name)) {
                snprintf (name, sizeof name, "providers.%s.%s", json_object_iter_key (old_at),
                          key->name);
                goto changed;
            }
        }
    }
    return 0;
changed:
    snprintf (error, error_size, "%s changed, and it cannot change while running (restart to "
              "apply it)", name);
    return -1;
}

// s_take_value sets a scalar key of running (a struct of the key's table)
// to its value in fresh. A string changes hands (fresh gets the old one to
// free); numbers are copied, so two rows storing one field (log_level and
// log.level) take the same value twice, harmlessly.
static void
s_take_value (const config_key_t *key, void *running, void *fresh)
{
    size_t size = 0;
    switch (key->type) {
    case KEY_STRING: {
        char **mine = (char **) ((char *) running + key->offset);
        char **theirs = (char **) ((char *) fresh + key->offset);
        char *held = *mine;
        *mine = *theirs;
        *theirs = held;
        return;
    }
    case KEY_BOOL:
    case KEY_SWITCH: size = sizeof (bool); break;
    case KEY_CHOICE:
    case KEY_INT: size = sizeof (int); break;
    case KEY_SIZE: size = sizeof (size_t); break;
    case KEY_MS: size = sizeof (int64_t); break;
    case KEY_NUMBER: size = sizeof (double); break;
    case KEY_CUSTOM: return;
    }
    memcpy ((char *) running + key->offset, (char *) fresh + key->offset, size);
}

#define SWAP(a, b) do { __typeof__ (a) held_ = (a); (a) = (b); (b) = held_; } while (0)

int
config_reload (config_t *running, config_t *fresh, char *error, size_t error_size)
{
    char reason[400];
    if (s_fixed_change (running->source, fresh->source, reason, sizeof reason) < 0) {
        snprintf (error, error_size, "config: %s", reason);
        return -1;
    }
    // Open mode (no keys) decides what the gateway listens to and whom it
    // answers (its Host checks): keys may change, their presence may not.
    if ((running->api_keys_count == 0) != (fresh->api_keys_count == 0)) {
        snprintf (error, error_size, "config: gateway.api_keys %s, and open mode cannot change "
                  "while running (restart to apply it)",
                  fresh->api_keys_count ? "were added" : "were all removed");
        return -1;
    }
    char name[256];
    for (size_t i = 0; i < KEYS_COUNT (s_keys); i++) {
        s_full_name (&s_keys[i], s_keys[i].section, name, sizeof name);
        if (config_reloadable (name))
            s_take_value (&s_keys[i], running, fresh);
    }
    for (size_t p = 0; p < running->providers_count; p++)
        for (size_t i = 0; i < KEYS_COUNT (s_provider_keys); i++) {
            s_full_name (&s_provider_keys[i], s_provider_keys[i].section, name, sizeof name);
            if (config_reloadable (name))
                s_take_value (&s_provider_keys[i], &running->providers[p],
                              &fresh->providers[p]);
        }
    // The structured reloadable keys: whole arrays change hands.
    SWAP (running->api_keys, fresh->api_keys);
    SWAP (running->api_keys_count, fresh->api_keys_count);
    SWAP (running->quotas, fresh->quotas);
    SWAP (running->quotas_count, fresh->quotas_count);
    SWAP (running->source, fresh->source);
    return 0;
}

#undef SWAP

// s_key_type_name says in the reference what a key takes.
static const char *
s_key_type_name (const config_key_t *key)
{
    switch (key->type) {
    case KEY_STRING: return "string";
    case KEY_BOOL: return "boolean";
    case KEY_SWITCH:
    case KEY_CHOICE: return "name";
    case KEY_INT:
    case KEY_SIZE:
    case KEY_MS: return "integer";
    case KEY_NUMBER: return "number";
    case KEY_CUSTOM: return "JSON";
    }
    return "?";
}

void
config_reference (FILE *out)
{
    const char *headings[] = { "gateway", "broker", "worker", "direct", "webhooks", "security",
                               "security.curve", "log", NULL, "providers.*", "quotas.*" };
    for (size_t h = 0; h < sizeof headings / sizeof headings[0]; h++) {
        const char *section = headings[h];
        fprintf (out, "\n### %s\n\n", section ? section : "top level");
        fprintf (out, "| key | type | default | allowed | environment | meaning |\n");
        fprintf (out, "|---|---|---|---|---|---|\n");
        for (size_t t = 0; t < sizeof s_tables / sizeof s_tables[0]; t++)
            for (size_t i = 0; i < s_tables[t].count; i++) {
                const config_key_t *key = &s_tables[t].keys[i];
                if ((key->section == NULL) != (section == NULL)
                    || (section && strcmp (key->section, section) != 0))
                    continue;
                char allowed[160] = "";
                if (key->choices) {
                    size_t used = 0;
                    for (size_t c = 0; key->choices[c] && used < sizeof allowed; c++)
                        used += (size_t) snprintf (allowed + used, sizeof allowed - used,
                                                   "%s`%s`", c ? ", " : "", key->choices[c]);
                }
                else if (key->type != KEY_STRING && key->type != KEY_BOOL
                         && key->type != KEY_CUSTOM)
                    snprintf (allowed, sizeof allowed, "%.15g – %.15g", key->min, key->max);
                char env[128] = "";
                bool scalar = key->type != KEY_CUSTOM || key->env;
                if (scalar && (!section || !strchr (section, '*')))
                    s_env_name (section, key->name, env, sizeof env);
                fprintf (out, "| `%s` | %s | %s%s%s | %s | %s%s%s | %s |\n", key->name,
                         s_key_type_name (key), key->fallback ? "`" : "",
                         key->fallback ? key->fallback : "", key->fallback ? "`" : "", allowed,
                         *env ? "`" : "", env, *env ? "`" : "", key->doc);
            }
    }
    fprintf (out, "\n### Reloaded on SIGHUP\n\nA running process rereads its file on SIGHUP "
             "and applies these keys; a change to any other key is refused with one log line, "
             "and the running configuration is kept whole:\n\n");
    for (size_t i = 0; s_reloadable[i]; i++)
        fprintf (out, "%s`%s%s`", i ? ", " : "", s_reloadable[i],
                 strcmp (s_reloadable[i], "quotas") == 0 ? ".*.*" : "");
    fprintf (out, ".\n");
}

void
config_destroy (config_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    config_t *self = *self_p;
    if (self->webhook_key)
        sodium_memzero (self->webhook_key, self->webhook_key_size);
    free (self->webhook_key);
    for (size_t i = 0; i < self->quotas_count; i++)
        free (self->quotas[i].tenant);
    free (self->quotas);
    free (self->gateway_listen);
    free (self->api_keys_file);
    for (size_t i = 0; i < self->allowed_hosts_count; i++)
        free (self->allowed_hosts[i]);
    free (self->allowed_hosts);
    for (size_t i = 0; i < self->api_keys_count; i++)
        free (self->api_keys[i].tenant);
    free (self->api_keys);
    free (self->broker_frontend);
    free (self->broker_backend);
    free (self->broker_publisher);
    free (self->broker_metrics_listen);
    free (self->data_dir);
    for (size_t i = 0; i < self->providers_count; i++) {
        free (self->providers[i].name);
        free (self->providers[i].base_url);
        for (size_t m = 0; m < self->providers[i].models_count; m++)
            free (self->providers[i].models[m]);
        free (self->providers[i].models);
        for (size_t f = 0; f < self->providers[i].fallback_count; f++)
            free (self->providers[i].fallback[f]);
        free (self->providers[i].fallback);
        json_decref (self->providers[i].headers);
        free (self->providers[i].auth_header);
        free (self->providers[i].auth_prefix);
        free (self->providers[i].auth_env);
        free (self->providers[i].auth_file);
        if (self->providers[i].auth_secret) {
            sodium_memzero (self->providers[i].auth_secret, strlen (self->providers[i].auth_secret));
            free (self->providers[i].auth_secret);
        }
        json_decref (self->providers[i].search);
    }
    free (self->providers);
    free (self->allow_networks);
    free (self->log_file);
    json_decref (self->source);
    free (self->curve_public_key);
    if (self->curve_secret_key) {
        sodium_memzero (self->curve_secret_key, strlen (self->curve_secret_key));
        free (self->curve_secret_key);
    }
    free (self->curve_broker_public_key);
    for (size_t i = 0; i < self->curve_authorized_keys_count; i++)
        free (self->curve_authorized_keys[i]);
    free (self->curve_authorized_keys);
    free (self->curve_public_key_file);
    free (self->curve_secret_key_file);
    free (self->curve_broker_public_key_file);
    free (self->curve_authorized_keys_file);
    free (self);
    *self_p = NULL;
}

// s_read_secret_file reads a secret file of at most max bytes whole; returns
// a new string (*size bytes, NUL-terminated), or NULL with errno set (EFBIG
// when it is longer).
static char *
s_read_secret_file (const char *path, size_t max, size_t *size)
{
    FILE *file = fopen (path, "re");
    if (!file)
        return NULL;
    char *secret = malloc (max + 1);
    *size = secret ? fread (secret, 1, max + 1, file) : 0;
    int failed = !secret ? ENOMEM : ferror (file) ? EIO : *size > max ? EFBIG : 0;
    fclose (file);
    if (failed) {
        if (secret)
            sodium_memzero (secret, max + 1);
        free (secret);
        errno = failed;
        return NULL;
    }
    secret[*size] = '\0';
    return secret;
}

int
config_load_secrets (config_t *self, char *error, size_t error_size)
{
    for (size_t i = 0; i < self->providers_count; i++) {
        config_provider_t *provider = &self->providers[i];
        if (!provider->auth_header || provider->auth_secret)
            continue;
        char *secret = NULL;
        if (provider->auth_env) {
            const char *value = getenv (provider->auth_env);
            if (!value || !*value) {
                snprintf (error, error_size, "config: providers.%s.auth: environment variable "
                          "%s is not set", provider->name, provider->auth_env);
                return -1;
            }
            secret = strdup (value);
        }
        else {
            size_t size;
            secret = s_read_secret_file (provider->auth_file, CONFIG_SECRET_MAX, &size);
            if (!secret) {
                snprintf (error, error_size, "config: providers.%s.auth: cannot read secret "
                          "file %s: %s", provider->name, provider->auth_file, strerror (errno));
                return -1;
            }
        }
        // Editors and `echo` end files with a newline that is no part of a key.
        size_t len = secret ? strlen (secret) : 0;
        while (len > 0 && (secret[len - 1] == '\n' || secret[len - 1] == '\r'))
            secret[--len] = '\0';
        const char *problem = !secret ? "out of memory"
                              : len == 0 ? "the secret is empty"
                              : !httpfield_value_safe (secret, len) ? "the secret contains CR or LF"
                              : NULL;
        if (problem) {
            snprintf (error, error_size, "config: providers.%s.auth: %s", provider->name, problem);
            if (secret)
                sodium_memzero (secret, strlen (secret));
            free (secret);
            return -1;
        }
        provider->auth_secret = secret;
    }
    return 0;
}

int
config_load_api_keys (config_t *self, char *error, size_t error_size)
{
    if (!self->api_keys_file)
        return 0;
    // Read again: the keys a previous call added give way to the file's.
    for (size_t i = self->api_keys_config_count; i < self->api_keys_count; i++) {
        free (self->api_keys[i].tenant);
        memset (&self->api_keys[i], 0, sizeof self->api_keys[i]);
    }
    self->api_keys_count = self->api_keys_config_count;
    size_t size = 0;
    char *text = s_read_secret_file (self->api_keys_file, CONFIG_API_KEYS_FILE_MAX, &size);
    if (!text) {
        snprintf (error, error_size, "config: gateway.api_keys_file: cannot read %s: %s",
                  self->api_keys_file, strerror (errno));
        return -1;
    }
    json_error_t json_error;
    json_t *keys = jsontext_load (text, size, &json_error);
    sodium_memzero (text, size);
    free (text);
    if (!keys) {
        snprintf (error, error_size, "config: gateway.api_keys_file: %s:%d: %s", self->api_keys_file,
                  json_error.line, json_error.text);
        return -1;
    }
    int rc = s_load_api_keys (self, keys, "gateway.api_keys_file", error, error_size);
    json_decref (keys);
    return rc;
}

int
config_network_parse (const char *text, config_network_t *network)
{
    char address[INET6_ADDRSTRLEN + 8];
    const char *slash = strchr (text, '/');
    size_t len = slash ? (size_t) (slash - text) : strlen (text);
    if (len == 0 || len >= sizeof address)
        return -1;
    memcpy (address, text, len);
    address[len] = '\0';
    memset (network, 0, sizeof *network);
    int bits;
    if (inet_pton (AF_INET, address, network->address) == 1) {
        network->family = AF_INET;
        bits = 32;
    }
    else if (inet_pton (AF_INET6, address, network->address) == 1) {
        network->family = AF_INET6;
        bits = 128;
    }
    else
        return -1;
    network->prefix = bits;
    if (slash) {
        const char *digits = slash + 1;
        char *end = NULL;
        errno = 0;
        long prefix = strtol (digits, &end, 10);
        if (!isdigit ((unsigned char) *digits) || *end || errno || prefix < 0 || prefix > bits)
            return -1;
        network->prefix = (int) prefix;
    }
    // Host bits are cleared, so "127.0.0.1/8" means 127.0.0.0/8.
    for (int bit = network->prefix; bit < bits; bit++)
        network->address[bit / 8] &= (unsigned char) ~(0x80 >> (bit % 8));
    return 0;
}

const config_provider_t *
config_provider (const config_t *self, const char *name)
{
    for (size_t i = 0; i < self->providers_count; i++)
        if (strcmp (self->providers[i].name, name) == 0)
            return &self->providers[i];
    return NULL;
}

const config_provider_t *
config_provider_for_model (const config_t *self, const char *model, const char **model_out)
{
    const char *slash = strchr (model, '/');
    if (slash && slash[1]) {
        for (size_t i = 0; i < self->providers_count; i++)
            if (strlen (self->providers[i].name) == (size_t) (slash - model)
                && memcmp (self->providers[i].name, model, (size_t) (slash - model)) == 0) {
                *model_out = slash + 1;
                return &self->providers[i];
            }
    }
    // A bare name; one with a '/' that names no provider is bare too
    // ("org/model" listed in some provider's models).
    for (size_t i = 0; i < self->providers_count; i++)
        for (size_t m = 0; m < self->providers[i].models_count; m++)
            if (strcmp (self->providers[i].models[m], model) == 0) {
                *model_out = model;
                return &self->providers[i];
            }
    return NULL;
}

const config_api_key_t *
config_api_key_for (const config_t *self, const char *key, size_t len)
{
    unsigned char hash[32];
    crypto_hash_sha256 (hash, (const unsigned char *) key, len);
    const config_api_key_t *found = NULL;
    // Visit every key so the time taken does not tell which one matched.
    for (size_t i = 0; i < self->api_keys_count; i++)
        if (sodium_memcmp (hash, self->api_keys[i].key_hash, 32) == 0)
            found = &self->api_keys[i];
    return found;
}

const char *
config_tenant_for_key (const config_t *self, const char *key, size_t len)
{
    const config_api_key_t *found = config_api_key_for (self, key, len);
    return found ? found->tenant : NULL;
}

// s_test_load writes text to path and loads it; error gets the reason.
static config_t *
s_test_load (const char *path, const char *text, char *error, size_t error_size)
{
    FILE *file = fopen (path, "w");
    assert (file);
    fputs (text, file);
    fclose (file);
    error[0] = '\0';
    return config_load (path, error, error_size);
}

// s_test_reload covers config_reload: reloadable keys change in place
// (pointers into the running configuration stay valid), fixed keys refuse
// the whole reload, and the log keys' two spellings.
static void
s_test_reload (const char *path)
{
    char error[256];
    const char *before =
        "{\"gateway\":{\"listen\":\"127.0.0.1:9\",\"api_keys\":[{\"key\":\"k1\",\"tenant\":\"a\"}]},"
        "\"quotas\":{\"a\":{\"submit_rate\":5}},\"log_level\":\"warn\","
        "\"providers\":{\"p\":{\"base_url\":\"http://127.0.0.1:1\",\"rate_limit\":10},"
        "\"q\":{\"base_url\":\"http://127.0.0.1:2\"}}}";
    config_t *running = s_test_load (path, before, error, sizeof error);
    assert (running && running->log_level == LOG_WARN_ && !running->log_json);
    const config_provider_t *p = config_provider (running, "p");
    assert (p->rate_limit == 10 && p->burst == 1);
    assert (config_reloadable ("gateway.api_keys") && config_reloadable ("quotas.a.submit_rate")
            && config_reloadable ("providers.*.rate_limit"));
    assert (!config_reloadable ("gateway.listen") && !config_reloadable ("providers.*.base_url"));

    // Keys, quotas, limits and the log change; the provider stays where it was.
    config_t *fresh = s_test_load (path,
        "{\"gateway\":{\"listen\":\"127.0.0.1:9\",\"api_keys\":[{\"key\":\"k2\",\"tenant\":\"b\"}]},"
        "\"quotas\":{\"b\":{\"submit_rate\":7}},\"log\":{\"level\":\"debug\",\"format\":\"json\","
        "\"file\":\"/tmp/x.log\"},"
        "\"providers\":{\"p\":{\"base_url\":\"http://127.0.0.1:1\",\"rate_limit\":40},"
        "\"q\":{\"base_url\":\"http://127.0.0.1:2\"}}}", error, sizeof error);
    assert (fresh);
    assert (config_reload (running, fresh, error, sizeof error) == 0);
    assert (config_provider (running, "p") == p && p->rate_limit == 40 && p->burst == 4);
    assert (!config_tenant_for_key (running, "k1", 2));
    assert (strcmp (config_tenant_for_key (running, "k2", 2), "b") == 0);
    assert (config_quota (running, "b")->submit_rate == 7 && !config_quota (running, "a"));
    assert (running->log_level == LOG_DEBUG_ && running->log_json);
    assert (strcmp (running->log_file, "/tmp/x.log") == 0);
    // fresh holds what was replaced, for the caller to free.
    assert (config_tenant_for_key (fresh, "k1", 2) && strcmp (fresh->log_file, "") == 0);
    config_destroy (&fresh);

    // A fixed key, the set of providers, open mode: refused, nothing changed.
    const char *refused[][2] = {
        { "{\"gateway\":{\"listen\":\"127.0.0.1:10\",\"api_keys\":[{\"key\":\"k3\",\"tenant\":\"c\"}]},"
          "\"providers\":{\"p\":{\"base_url\":\"http://127.0.0.1:1\"},\"q\":{\"base_url\":\"http://127.0.0.1:2\"}}}",
          "config: gateway.listen changed" },
        { "{\"gateway\":{\"listen\":\"127.0.0.1:9\",\"api_keys\":[{\"key\":\"k3\",\"tenant\":\"c\"}]},"
          "\"providers\":{\"p\":{\"base_url\":\"http://127.0.0.1:3\"},\"q\":{\"base_url\":\"http://127.0.0.1:2\"}}}",
          "config: providers.p.base_url changed" },
        { "{\"gateway\":{\"listen\":\"127.0.0.1:9\",\"api_keys\":[{\"key\":\"k3\",\"tenant\":\"c\"}]},"
          "\"providers\":{\"q\":{\"base_url\":\"http://127.0.0.1:2\"},\"p\":{\"base_url\":\"http://127.0.0.1:1\"}}}",
          "config: the set of providers changed" },
        { "{\"gateway\":{\"listen\":\"127.0.0.1:9\",\"api_keys\":[{\"key\":\"k3\",\"tenant\":\"c\"}]},"
          "\"providers\":{\"p\":{\"base_url\":\"http://127.0.0.1:1\"}}}",
          "config: the set of providers changed" },
        { "{\"gateway\":{\"listen\":\"127.0.0.1:9\"},"
          "\"providers\":{\"p\":{\"base_url\":\"http://127.0.0.1:1\"},\"q\":{\"base_url\":\"http://127.0.0.1:2\"}}}",
          "config: gateway.api_keys were all removed" },
        { "{\"gateway\":{\"listen\":\"127.0.0.1:9\",\"api_keys\":[{\"key\":\"k3\",\"tenant\":\"c\"}]},"
          "\"worker\":{\"concurrency\":3},"
          "\"providers\":{\"p\":{\"base_url\":\"http://127.0.0.1:1\"},\"q\":{\"base_url\":\"http://127.0.0.1:2\"}}}",
          "config: worker.concurrency changed" },
    };
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) {
        fresh = s_test_load (path, refused[i][0], error, sizeof error);
        assert (fresh);
        int rc = config_reload (running, fresh, error, sizeof error);
        if (rc == 0 || strncmp (error, refused[i][1], strlen (refused[i][1])) != 0)
            fprintf (stderr, "config reload %zu: [%s]\n", i, rc == 0 ? "applied" : error);
        assert (rc < 0 && strncmp (error, refused[i][1], strlen (refused[i][1])) == 0);
        config_destroy (&fresh);
        assert (p->rate_limit == 40 && config_tenant_for_key (running, "k2", 2));
        assert (!config_tenant_for_key (running, "k3", 2));
    }
    config_destroy (&running);

    // One key, two spellings: either works, both at once is refused.
    running = s_test_load (path, "{\"log_format\":\"json\"}", error, sizeof error);
    assert (running && running->log_json && running->log_level == LOG_INFO_);
    config_destroy (&running);
    running = s_test_load (path, "{\"log\":{\"format\":\"json\"},\"log_level\":\"error\"}", error,
                           sizeof error);
    assert (running && running->log_json && running->log_level == LOG_ERROR_);
    config_destroy (&running);
    running = s_test_load (path, "{\"log\":{\"level\":\"debug\"},\"log_level\":\"error\"}",
                           error, sizeof error);
    assert (!running && strstr (error, "log_level and log.level are the same key"));
}

// s_test_refused loads each text and checks it is refused with one line.
static void
s_test_refused (const char *path, const char *const *texts, size_t count)
{
    char error[256];
    for (size_t i = 0; i < count; i++) {
        config_t *config = s_test_load (path, texts[i], error, sizeof error);
        if (config)
            fprintf (stderr, "config: accepted %s\n", texts[i]);
        assert (!config && strncmp (error, "config: ", 8) == 0 && !strchr (error, '\n'));
    }
}

// s_test_auth_search_networks covers provider auth, search templates and
// security.allow_networks (issue 4).
static void
s_test_auth_search_networks (const char *path)
{
    char error[256];
    char secret_path[] = "/tmp/jobgate-secret-test-XXXXXX";
    int fd = mkstemp (secret_path);
    assert (fd >= 0);
    assert (write (fd, "file-secret\n", 12) == 12);
    close (fd);
    char text[1024];
    snprintf (text, sizeof text,
        "{\"security\":{\"allow_networks\":[\"127.0.0.2/32\",\"10.1.2.3/8\",\"fd00::/8\",\"::1\"]},"
        "\"providers\":{"
        "\"a\":{\"base_url\":\"http://x\",\"auth\":{\"header\":\"Authorization\","
        "\"prefix\":\"Bearer \",\"env\":\"JOBGATE_TEST_SECRET_A\"}},"
        "\"b\":{\"base_url\":\"http://x\",\"auth\":{\"header\":\"X-Api-Key\",\"file\":\"%s\"},"
        "\"search\":{\"method\":\"post\",\"path\":\"/v1/search\",\"query_param\":\"query\","
        "\"params\":{\"safe\":\"active\",\"n\":1}}},"
        "\"c\":{\"base_url\":\"http://x\"}}}", secret_path);
    setenv ("JOBGATE_TEST_SECRET_A", "env-secret", 1);
    config_t *config = s_test_load (path, text, error, sizeof error);
    if (!config)
        fprintf (stderr, "config: %s\n", error);
    assert (config);
    // Secrets are not read by config_load: only workers ask for them.
    const config_provider_t *a = config_provider (config, "a");
    const config_provider_t *b = config_provider (config, "b");
    const config_provider_t *c = config_provider (config, "c");
    assert (a->auth_secret == NULL && strcmp (a->auth_header, "Authorization") == 0);
    assert (strcmp (a->auth_prefix, "Bearer ") == 0 && strcmp (b->auth_prefix, "") == 0);
    assert (c->auth_header == NULL);
    assert (config_load_secrets (config, error, sizeof error) == 0);
    assert (strcmp (a->auth_secret, "env-secret") == 0);
    assert (strcmp (b->auth_secret, "file-secret") == 0);
    assert (c->auth_secret == NULL);
    // Search templates, normalized with defaults.
    assert (strcmp (json_string_value (json_object_get (b->search, "method")), "POST") == 0);
    assert (strcmp (json_string_value (json_object_get (b->search, "query_param")), "query") == 0);
    assert (strcmp (json_string_value (json_object_get (b->search, "count_param")), "count") == 0);
    assert (json_object_size (json_object_get (b->search, "params")) == 2);
    assert (strcmp (json_string_value (json_object_get (c->search, "method")), "GET") == 0);
    assert (strcmp (json_string_value (json_object_get (c->search, "path")), "") == 0);
    assert (strcmp (json_string_value (json_object_get (c->search, "query_param")), "q") == 0);
    // Networks, host bits cleared.
    assert (config->allow_networks_count == 4);
    assert (config->allow_networks[0].family == AF_INET && config->allow_networks[0].prefix == 32);
    assert (config->allow_networks[1].prefix == 8 && config->allow_networks[1].address[0] == 10
            && config->allow_networks[1].address[1] == 0);
    assert (config->allow_networks[2].family == AF_INET6 && config->allow_networks[2].prefix == 8);
    assert (config->allow_networks[3].prefix == 128);
    config_destroy (&config);

    // A missing secret stops the worker with one line naming the provider
    // and the variable, never a secret.
    unsetenv ("JOBGATE_TEST_SECRET_A");
    config = s_test_load (path, text, error, sizeof error);
    assert (config);
    assert (config_load_secrets (config, error, sizeof error) < 0);
    assert (strstr (error, "providers.a.auth") && strstr (error, "JOBGATE_TEST_SECRET_A"));
    assert (!strchr (error, '\n') && !strstr (error, "file-secret"));
    config_destroy (&config);
    setenv ("JOBGATE_TEST_SECRET_A", "env-secret", 1);
    unlink (secret_path);
    config = s_test_load (path, text, error, sizeof error);
    assert (config);
    assert (config_load_secrets (config, error, sizeof error) < 0);
    assert (strstr (error, "providers.b.auth") && strstr (error, secret_path));
    config_destroy (&config);
    setenv ("JOBGATE_TEST_SECRET_A", "two\nlines", 1);
    snprintf (text, sizeof text, "{\"providers\":{\"a\":{\"base_url\":\"http://x\","
              "\"auth\":{\"env\":\"JOBGATE_TEST_SECRET_A\"}}}}");
    config = s_test_load (path, text, error, sizeof error);
    assert (config && strcmp (config_provider (config, "a")->auth_header, "Authorization") == 0);
    assert (config_load_secrets (config, error, sizeof error) < 0 && !strstr (error, "two"));
    config_destroy (&config);
    unsetenv ("JOBGATE_TEST_SECRET_A");

    const char *bad[] = {
        "{\"security\":{\"allow_networks\":\"127.0.0.2/32\"}}",
        "{\"security\":{\"allow_networks\":[\"127.0.0.2/33\"]}}",
        "{\"security\":{\"allow_networks\":[\"localhost\"]}}",
        "{\"security\":{\"allow_networks\":[\"::1/x\"]}}",
        "{\"security\":{\"allow_networks\":[7]}}",
        "{\"providers\":{\"x\":{\"base_url\":\"http://x\",\"auth\":{\"header\":\"A\"}}}}",
        "{\"providers\":{\"x\":{\"base_url\":\"http://x\",\"auth\":{\"env\":\"A\",\"file\":\"/f\"}}}}",
        "{\"providers\":{\"x\":{\"base_url\":\"http://x\",\"auth\":{\"header\":\"A B\",\"env\":\"A\"}}}}",
        "{\"providers\":{\"x\":{\"base_url\":\"http://x\",\"auth\":{\"prefix\":\"a\\r\\n\",\"env\":\"A\"}}}}",
        "{\"providers\":{\"x\":{\"base_url\":\"http://x\",\"auth\":\"secret\"}}}",
        "{\"providers\":{\"x\":{\"base_url\":\"http://x\",\"search\":{\"method\":\"PUT\"}}}}",
        "{\"providers\":{\"x\":{\"base_url\":\"http://x\",\"search\":{\"path\":\"search\"}}}}",
        "{\"providers\":{\"x\":{\"base_url\":\"http://x\",\"search\":{\"query_param\":\"\"}}}}",
        "{\"providers\":{\"x\":{\"base_url\":\"http://x\",\"search\":{\"params\":{\"a\":[]}}}}}",
        "{\"providers\":{\"x\":{\"base_url\":\"http://x\",\"search\":[]}}}",
    };
    s_test_refused (path, bad, sizeof bad / sizeof bad[0]);
}

// s_test_table covers what the key table drives: unknown keys with the
// nearest valid name, environment overrides and their namespace, types,
// bounds, choices and defaults.
static void
s_test_table (const char *path)
{
    char error[256];
    static const struct {
        const char *text;       // the file
        const char *message;    // the whole error line
    } refused[] = {
        { "{\"gatway\":{}}", "config: unknown key gatway (did you mean gateway?)" },
        { "{\"security\":{\"allow_privte_networks\":true}}",
          "config: unknown key security.allow_privte_networks (did you mean "
          "security.allow_private_networks?)" },
        { "{\"log_levl\":\"info\"}", "config: unknown key log_levl (did you mean log_level?)" },
        { "{\"gateway\":{\"zzzzzzzzzz\":1}}", "config: unknown key gateway.zzzzzzzzzz" },
        { "{\"providers\":{\"m\":{\"base_url\":\"http://x\",\"rate_limt\":3}}}",
          "config: unknown key providers.m.rate_limt (did you mean providers.m.rate_limit?)" },
        { "{\"providers\":{\"m\":{\"base_url\":\"http://x\",\"auth\":{\"evn\":\"X\"}}}}",
          "config: unknown key providers.m.auth.evn (did you mean providers.m.auth.env?)" },
        { "{\"quotas\":{\"a\":{\"max_qeued\":3}}}",
          "config: unknown key quotas.a.max_qeued (did you mean quotas.a.max_queued?)" },
        { "{\"quotas\":{\"a\":{\"weight\":0}}}",
          "config: quotas.a.weight must be an integer from 1 to 1000" },
        { "{\"quotas\":{\"a\":{\"weight\":1001}}}",
          "config: quotas.a.weight must be an integer from 1 to 1000" },
        { "{\"gateway\":{\"api_keys\":[{\"key\":\"k\",\"tenant\":\"a\",\"tennant\":\"b\"}]}}",
          "config: unknown key gateway.api_keys[0].tennant (did you mean "
          "gateway.api_keys[0].tenant?)" },
        { "{\"gateway\":{\"max_connections\":1.5}}",
          "config: gateway.max_connections must be an integer from 16 to 1000000" },
        { "{\"gateway\":{\"max_connections\":8}}",
          "config: gateway.max_connections must be an integer from 16 to 1000000" },
        { "{\"broker\":{\"durability\":\"maybe\"}}",
          "config: broker.durability must be \"os\" or \"fsync\"" },
        { "{\"log_level\":\"loud\"}",
          "config: log_level must be \"debug\", \"info\", \"warn\" or \"error\"" },
        { "{\"gateway\":[]}", "config: \"gateway\" must be an object" },
        { "{\"providers\":{\"m\":{\"rate_limit\":3}}}",
          "config: providers.m.base_url must be an http(s) URL" },
        { "{\"providers\":{\"m\":{\"base_url\":\"http://x\",\"headers\":{\"a b\":\"c\"}}}}",
          "config: providers.m.headers must be an object of header names and single-line "
          "strings" },
    };
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) {
        config_t *config = s_test_load (path, refused[i].text, error, sizeof error);
        if (config || strcmp (error, refused[i].message) != 0)
            fprintf (stderr, "config: %s gave [%s]\n", refused[i].text, error);
        assert (!config && strcmp (error, refused[i].message) == 0);
    }

    // The environment overrides scalars of fixed sections, parsed like the
    // file; a misspelt variable in a section's namespace is refused.
    setenv ("JOBGATE_GATEWAY_LISTEN", "127.0.0.1:7001", 1);
    setenv ("JOBGATE_BROKER_DURABILITY", "os", 1);
    setenv ("JOBGATE_BROKER_RESULT_TTL_S", "60", 1);
    setenv ("JOBGATE_LOG_FORMAT", "json", 1);
    config_t *config = s_test_load (path, "{\"gateway\":{\"listen\":\"127.0.0.1:1\"}}", error,
                                    sizeof error);
    assert (config);
    assert (strcmp (config->gateway_listen, "127.0.0.1:7001") == 0);
    assert (!config->durability_fsync && config->result_ttl_ms == 60000 && config->log_json);
    config_destroy (&config);
    unsetenv ("JOBGATE_BROKER_DURABILITY");
    unsetenv ("JOBGATE_BROKER_RESULT_TTL_S");
    unsetenv ("JOBGATE_LOG_FORMAT");
    setenv ("JOBGATE_GATEWAY_MAX_CONNECTIONS", "lots", 1);
    assert (!s_test_load (path, "{}", error, sizeof error));
    assert (strcmp (error, "config: gateway.max_connections must be an integer from 16 to "
                           "1000000 (environment)") == 0);
    unsetenv ("JOBGATE_GATEWAY_MAX_CONNECTIONS");
    setenv ("JOBGATE_GATEWAY_LISTN", "x", 1);
    assert (!s_test_load (path, "{}", error, sizeof error));
    assert (strcmp (error, "config: environment variable JOBGATE_GATEWAY_LISTN names no key "
                           "(did you mean JOBGATE_GATEWAY_LISTEN?)") == 0);
    unsetenv ("JOBGATE_GATEWAY_LISTN");
    unsetenv ("JOBGATE_GATEWAY_LISTEN");
    // Outside the sections' namespaces, and secrets named by auth.env, are
    // not the config's business.
    setenv ("JOBGATE_WORKERS", "3", 1);
    setenv ("JOBGATE_SECURITY_PROVIDER_KEY", "s", 1);
    config = s_test_load (path, "{\"providers\":{\"m\":{\"base_url\":\"http://x\","
                                "\"auth\":{\"env\":\"JOBGATE_SECURITY_PROVIDER_KEY\"}}}}",
                          error, sizeof error);
    assert (config);
    config_destroy (&config);
    unsetenv ("JOBGATE_WORKERS");
    unsetenv ("JOBGATE_SECURITY_PROVIDER_KEY");

    // Defaults come from the table alone.
    config = config_load (NULL, error, sizeof error);
    assert (config);
    assert (config->max_body_bytes == 1048576 && config->submit_timeout_ms == 5000);
    assert (config->result_ttl_ms == 86400000 && config->store_map_mb == 4096);
    assert (config->webhook_max_attempts == 8 && config->webhook_timeout_ms == 10000);
    assert (config->log_level == 1 && !config->log_json && !config->allow_private_networks);
    config_destroy (&config);
    config = s_test_load (path, "{\"providers\":{\"m\":{\"base_url\":\"https://x\","
                                "\"rate_limit\":50}}, \"quotas\":{\"*\":{\"submit_rate\":2}}}",
                          error, sizeof error);
    assert (config);
    const config_provider_t *m = config_provider (config, "m");
    assert (m->burst == 5 && m->circuit_failures == 5 && m->circuit_open_ms == 10000);
    assert (m->retry_base_ms == 500 && m->retry_max_ms == 60000 && m->search);
    assert (m->cache_ttl_ms == 0);
    const config_quota_t *quota = config_quota (config, "anyone");
    assert (quota && quota->submit_rate == 2 && quota->max_queued == 0);
    // Issue 12: no token budget, a default reservation, no prices.
    assert (m->tokens_per_minute == 0 && m->default_max_tokens == 1024 && !m->priced);
    assert (quota->tokens_per_day == 0 && config->usage_retention_days == 400);
    config_destroy (&config);
    config = s_test_load (path, "{\"providers\":{\"m\":{\"base_url\":\"https://x\","
                                "\"tokens_per_minute\":90000,\"default_max_tokens\":256,"
                                "\"prices\":{\"prompt\":2.5,\"completion\":10}}},"
                                "\"quotas\":{\"a\":{\"tokens_per_day\":1000000}}}",
                          error, sizeof error);
    assert (config);
    m = config_provider (config, "m");
    assert (m->tokens_per_minute == 90000 && m->default_max_tokens == 256 && m->priced);
    assert (m->price_prompt == 2.5 && m->price_completion == 10);
    assert (config_quota (config, "a")->tokens_per_day == 1000000);
    static const char *const bad_prices[] = {
        "{\"prompt\":1}", "{\"prompt\":-1,\"completion\":1}", "{\"prompt\":\"1\",\"completion\":1}",
        "{\"prompt\":1,\"completion\":1,\"cached\":1}", "[1,2]",
    };
    for (size_t i = 0; i < sizeof bad_prices / sizeof bad_prices[0]; i++) {
        char text[256];
        snprintf (text, sizeof text, "{\"providers\":{\"m\":{\"base_url\":\"http://x\","
                  "\"prices\":%s}}}", bad_prices[i]);
        config_t *refused_config = s_test_load (path, text, error, sizeof error);
        assert (!refused_config && strstr (error, "providers.m.prices must be"));
    }
    config_destroy (&config);
    // cache_ttl_ms: 0 to 7 days.
    config = s_test_load (path, "{\"providers\":{\"m\":{\"base_url\":\"https://x\","
                                "\"cache_ttl_ms\":604800000}}}", error, sizeof error);
    assert (config && config_provider (config, "m")->cache_ttl_ms == 604800000);
    config_destroy (&config);
    config = s_test_load (path, "{\"providers\":{\"m\":{\"base_url\":\"https://x\","
                                "\"cache_ttl_ms\":604800001}}}", error, sizeof error);
    assert (!config && strstr (error, "cache_ttl_ms"));

    // The reference lists every row.
    char *text = NULL;
    size_t size = 0;
    FILE *out = open_memstream (&text, &size);
    assert (out);
    config_reference (out);
    fclose (out);
    for (size_t t = 0; t < sizeof s_tables / sizeof s_tables[0]; t++)
        for (size_t i = 0; i < s_tables[t].count; i++) {
            char row[96];
            snprintf (row, sizeof row, "| `%s` |", s_tables[t].keys[i].name);
            assert (strstr (text, row));
        }
    assert (strstr (text, "`JOBGATE_BROKER_DATA_DIR`"));
    free (text);
}

// s_test_hardening covers the keys of issues 10 and 17: derived defaults,
// then set values, then refusals.
static void
s_test_hardening (const char *path)
{
    char error[256];
    config_t *config = s_test_load (path, "{\"providers\":{\"p\":{\"base_url\":\"http://x\"},"
                                    "\"q\":{\"base_url\":\"http://x\",\"timeout_ms\":2000}}}",
                                    error, sizeof error);
    assert (config && config->max_result_bytes == 4 * 1024 * 1024);
    assert (config->max_frame_bytes == config->max_result_bytes + config->max_body_bytes + 1024 * 1024);
    assert (config_provider (config, "p")->max_pause_ms == 60000);
    assert (config_provider (config, "p")->breaker_min_timeout_ms == 5000);
    assert (config_provider (config, "q")->breaker_min_timeout_ms == 2000);
    assert (config->direct.max_concurrency == 0 && config->direct.rate_limit == 0);
    assert (config->direct.burst == 1);
    assert (config_max_stored_bytes (config, NULL) == 1024ULL * 1024 * 1024);
    config_destroy (&config);
    config = s_test_load (path, "{\"broker\":{\"max_result_bytes\":65536,\"max_frame_bytes\":2000000,"
                          "\"store_map_mb\":16},\"direct\":{\"max_concurrency\":7,\"rate_limit\":50},"
                          "\"quotas\":{\"a\":{\"max_stored_bytes\":1000,\"max_running\":3},"
                          "\"b\":{\"weight\":7}},"
                          "\"providers\":{\"p\":{\"base_url\":\"http://x\",\"breaker_min_timeout_ms\":0}}}",
                          error, sizeof error);
    assert (config && config->max_result_bytes == 65536 && config->max_frame_bytes == 2000000);
    assert (config->direct.max_concurrency == 7 && config->direct.rate_limit == 50);
    assert (config->direct.burst == 5);
    assert (config_provider (config, "p")->breaker_min_timeout_ms == 0);
    const config_quota_t *quota = config_quota (config, "a");
    assert (quota && quota->max_stored_bytes == 1000 && quota->max_running == 3);
    assert (quota->weight == 1 && config_quota (config, "b")->weight == 7);
    assert (config_max_stored_bytes (config, quota) == 1000);
    assert (config_max_stored_bytes (config, NULL) == 4 * 1024 * 1024);
    config_destroy (&config);
    // The Standard Webhooks secret: whsec_ + base64 gives its bytes.
    config = s_test_load (path, "{\"webhooks\":{\"secret\":\"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\"}}",
                          error, sizeof error);
    assert (config && config->webhook_key_size == 24);
    config_destroy (&config);
    const char *bad[] = {
        "{\"broker\":{\"max_frame_bytes\":1000000}}",
        "{\"broker\":{\"metrics_listen\":\"metrics.example:9100\"}}",
        "{\"broker\":{\"metrics_listen\":\"127.0.0.1\"}}",
        "{\"broker\":{\"metrics_listen\":9100}}",
        "{\"broker\":{\"max_result_bytes\":10}}",
        "{\"direct\":{\"max_concurrency\":-1}}",
        "{\"direct\":[]}",
        "{\"quotas\":{\"a\":{\"max_running\":\"x\"}}}",
        "{\"providers\":{\"p\":{\"base_url\":\"http://x\",\"max_pause_ms\":-5}}}",
        "{\"webhooks\":{\"secret\":\"whsec_!!!\"}}",
        "{\"webhooks\":{\"secret\":\"\"}}",
        "{\"webhooks\":{\"secret\":7}}",
    };
    s_test_refused (path, bad, sizeof bad / sizeof bad[0]);
}

// s_test_gateway_keys covers the gateway's hardening keys: operator keys,
// hosts, deadlines and byte budgets.
static void
s_test_gateway_keys (const char *path)
{
    char error[256];
    config_t *config = s_test_load (path, "{\"gateway\":{\"api_keys\":[{\"key\":\"k0\",\"tenant\":\"a\"}]}}",
                                    error, sizeof error);
    assert (config && !config_api_key_for (config, "k0", 2)->is_operator);
    assert (config->header_timeout_ms == 10000 && config->cache_max_bytes == 64 * 1024 * 1024);
    assert (config->min_body_rate == 1024 && config->list_max_bytes == 8 * 1024 * 1024);
    assert (config->sse_buffer_bytes == 1024 * 1024);
    assert (!config->allow_open_mode && config->allowed_hosts_count == 0);
    config_destroy (&config);
    const char *text
        = "{\"gateway\":{\"api_keys\":[{\"key\":\"k1\",\"tenant\":\"ops\",\"operator\":true},"
          "{\"key\":\"k2\",\"tenant\":\"b\"}],\"allowed_hosts\":[\"API.example\",\"::1\",\"*\"],"
          "\"allow_open_mode\":true,\"header_timeout_ms\":1500,\"min_body_rate\":0,"
          "\"cache_max_bytes\":1000,\"list_max_bytes\":70000,\"sse_buffer_bytes\":80000}}";
    config = s_test_load (path, text, error, sizeof error);
    assert (config);
    assert (config_api_key_for (config, "k1", 2)->is_operator);
    assert (!config_api_key_for (config, "k2", 2)->is_operator);
    assert (config_api_key_for (config, "k3", 2) == NULL);
    assert (config->allowed_hosts_count == 3 && strcmp (config->allowed_hosts[0], "api.example") == 0
            && strcmp (config->allowed_hosts[1], "[::1]") == 0);
    assert (config->allow_open_mode && config->header_timeout_ms == 1500 && config->min_body_rate == 0);
    assert (config->cache_max_bytes == 1000 && config->list_max_bytes == 70000
            && config->sse_buffer_bytes == 80000);
    config_destroy (&config);
    const char *bad[] = {
        "{\"gateway\":{\"api_keys\":[{\"key\":\"k\",\"tenant\":\"a\",\"operator\":1}]}}",
        "{\"gateway\":{\"allowed_hosts\":[\"a b\"]}}",
        "{\"gateway\":{\"allowed_hosts\":\"localhost\"}}",
        "{\"gateway\":{\"header_timeout_ms\":5}}",
    };
    s_test_refused (path, bad, sizeof bad / sizeof bad[0]);
}

// s_test_api_keys_file covers gateway.api_keys_file: its keys are added to
// the config file's, from the file named in the config or the environment;
// a file that is missing, not JSON, not an array or holds a bad entry is
// refused with one line naming the key (never a key's text).
static void
s_test_api_keys_file (const char *path)
{
    char error[256];
    char keys_path[] = "/tmp/jobgate-api-keys-test-XXXXXX";
    int fd = mkstemp (keys_path);
    assert (fd >= 0);
    close (fd);
    char text[512];
    snprintf (text, sizeof text, "{\"gateway\":{\"api_keys\":[{\"key\":\"k0\",\"tenant\":\"a\"}],"
              "\"api_keys_file\":\"%s\"}}", keys_path);
    // k1 and the SHA-256 of k2 from the file, beside k0 from the config.
    unsigned char hash[32];
    crypto_hash_sha256 (hash, (const unsigned char *) "k2", 2);
    char hex[65];
    sodium_bin2hex (hex, sizeof hex, hash, 32);
    char good_text[512];
    snprintf (good_text, sizeof good_text, "[{\"key\":\"k1\",\"tenant\":\"b\",\"operator\":true},"
              "{\"key_sha256\":\"%s\",\"tenant\":\"c\"}]\n", hex);
    FILE *file = fopen (keys_path, "w");
    assert (file && fputs (good_text, file) >= 0 && fclose (file) == 0);
    config_t *config = s_test_load (path, text, error, sizeof error);
    assert (config && config->api_keys_count == 1);     // the file is read only when asked
    assert (config_load_api_keys (config, error, sizeof error) == 0);
    assert (config->api_keys_count == 3);
    assert (!config_api_key_for (config, "k0", 2)->is_operator);
    assert (config_api_key_for (config, "k1", 2)->is_operator);
    assert (strcmp (config_tenant_for_key (config, "k2", 2), "c") == 0);
    // Read again (a check, then the start, or a rotated Secret): the file's
    // keys replace the ones it gave before, the config's stay.
    file = fopen (keys_path, "w");
    assert (file && fputs ("[{\"key\":\"k3\",\"tenant\":\"d\"}]", file) >= 0 && fclose (file) == 0);
    assert (config_load_api_keys (config, error, sizeof error) == 0);
    assert (config->api_keys_count == 2);
    assert (config_api_key_for (config, "k0", 2) && config_api_key_for (config, "k3", 2));
    assert (!config_api_key_for (config, "k1", 2) && !config_api_key_for (config, "k2", 2));
    config_destroy (&config);
    file = fopen (keys_path, "w");
    assert (file && fputs (good_text, file) >= 0 && fclose (file) == 0);

    // From the environment, with no key in the config file.
    setenv ("JOBGATE_GATEWAY_API_KEYS_FILE", keys_path, 1);
    config = s_test_load (path, "{}", error, sizeof error);
    unsetenv ("JOBGATE_GATEWAY_API_KEYS_FILE");
    assert (config && config_load_api_keys (config, error, sizeof error) == 0);
    assert (config->api_keys_count == 2 && strcmp (config_tenant_for_key (config, "k1", 2), "b") == 0);
    config_destroy (&config);

    // Unset: nothing read, nothing refused.
    config = s_test_load (path, "{}", error, sizeof error);
    assert (config && config_load_api_keys (config, error, sizeof error) == 0);
    assert (config->api_keys_count == 0);
    config_destroy (&config);

    struct {
        const char *content;    // the file's text
        const char *expected;   // the start of the error
    } bad[] = {
        { "[{\"key\":\"k1\"", "config: gateway.api_keys_file: " },
        { "{\"key\":\"k1\",\"tenant\":\"b\"}", "config: gateway.api_keys_file must be an array" },
        { "[{\"key\":\"secret-k9\"}]", "config: gateway.api_keys_file[0] needs \"tenant\"" },
        { "[{\"key\":\"k1\",\"tenant\":\"b\\u0000ops\"}]", "config: gateway.api_keys_file[0] needs \"tenant\"" },
        { "[{\"key_sha256\":\"abc\",\"tenant\":\"b\"}]",
          "config: gateway.api_keys_file[0].key_sha256 must be 64 hex digits" },
        { "[{\"key\":\"k1\",\"tenant\":\"b\",\"tennant\":\"c\"}]",
          "config: unknown key gateway.api_keys_file[0].tennant (did you mean" },
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        file = fopen (keys_path, "w");
        assert (file && fputs (bad[i].content, file) >= 0 && fclose (file) == 0);
        config = s_test_load (path, text, error, sizeof error);
        assert (config);
        error[0] = '\0';
        assert (config_load_api_keys (config, error, sizeof error) < 0);
        assert (strncmp (error, bad[i].expected, strlen (bad[i].expected)) == 0);
        assert (!strchr (error, '\n') && !strstr (error, "secret-k9"));
        config_destroy (&config);
    }
    unlink (keys_path);
    config = s_test_load (path, text, error, sizeof error);
    assert (config && config_load_api_keys (config, error, sizeof error) < 0);
    assert (strstr (error, "config: gateway.api_keys_file: cannot read ") == error
            && strstr (error, keys_path));
    config_destroy (&config);
}

// s_test_routes covers providers.*.models and providers.*.fallback: the
// OpenAI door's routing both ways, and the rules between providers.
static void
s_test_routes (const char *path)
{
    char error[256];
    const char *text
        = "{\"providers\":{\"openai\":{\"base_url\":\"http://127.0.0.1:1\","
          "\"models\":[\"gpt-4o\",\"org/tuned\"],\"fallback\":[\"local\"]},"
          "\"local\":{\"base_url\":\"http://127.0.0.1:2\",\"models\":[\"llama\"]}}}";
    config_t *config = s_test_load (path, text, error, sizeof error);
    assert (config);
    const char *model = NULL;
    assert (config_provider_for_model (config, "gpt-4o", &model) == config_provider (config, "openai"));
    assert (strcmp (model, "gpt-4o") == 0);
    assert (config_provider_for_model (config, "local/gpt-4o", &model) == config_provider (config, "local"));
    assert (strcmp (model, "gpt-4o") == 0);
    assert (config_provider_for_model (config, "org/tuned", &model) == config_provider (config, "openai"));
    assert (strcmp (model, "org/tuned") == 0);
    assert (config_provider_for_model (config, "nope", &model) == NULL);
    assert (config_provider_for_model (config, "local/", &model) == NULL);
    const config_provider_t *openai = config_provider (config, "openai");
    assert (openai->fallback_count == 1 && strcmp (openai->fallback[0], "local") == 0);
    config_destroy (&config);
    const char *bad[] = {
        "{\"providers\":{\"p\":{\"base_url\":\"http://x\",\"fallback\":[\"q\"]}}}",
        "{\"providers\":{\"p\":{\"base_url\":\"http://x\",\"fallback\":[\"p\"]}}}",
        "{\"providers\":{\"p\":{\"base_url\":\"http://x\",\"models\":\"m\"}}}",
        "{\"providers\":{\"p\":{\"base_url\":\"http://x\",\"models\":[\"m\",\"m\"]}}}",
        "{\"providers\":{\"p\":{\"base_url\":\"http://x\",\"models\":[\"a b\"]}}}",
        // One element in two lines: parenthesised, as clang asks of a
        // concatenation inside an array.
        ("{\"providers\":{\"p\":{\"base_url\":\"http://x\",\"models\":[\"m\"]},"
         "\"q\":{\"base_url\":\"http://y\",\"models\":[\"m\"]}}}"),
    };
    s_test_refused (path, bad, sizeof bad / sizeof bad[0]);
}

void
config_test (bool verbose)
{
    if (verbose)
        printf (" * config: ");
    char error[256];
    config_t *config = config_load (NULL, error, sizeof error);
    assert (config);
    assert (strcmp (config->gateway_listen, "127.0.0.1:8080") == 0);
    assert (config->durability_fsync);
    assert (config->worker_concurrency == 512);
    assert (config->max_result_bytes == 4 * 1024 * 1024);
    config_destroy (&config);

    char path[] = "/tmp/jobgate-config-test-XXXXXX";
    int fd = mkstemp (path);
    assert (fd >= 0);
    const char *text =
        "{\"gateway\":{\"listen\":\"127.0.0.1:9999\",\"api_keys\":[{\"key\":\"secret-a\",\"tenant\":\"a\"}]},"
        "\"broker\":{\"durability\":\"os\",\"data_dir\":\"/tmp/x\",\"max_result_bytes\":65536},"
        "\"worker\":{\"concurrency\":64},"
        "\"security\":{\"allow_private_networks\":true},"
        "\"providers\":{\"mock\":{\"base_url\":\"http://127.0.0.1:9000\",\"rate_limit\":100,"
        "\"max_concurrency\":1000}}}";
    assert (write (fd, text, strlen (text)) == (ssize_t) strlen (text));
    close (fd);
    config = config_load (path, error, sizeof error);
    assert (config);
    assert (strcmp (config->gateway_listen, "127.0.0.1:9999") == 0);
    assert (!config->durability_fsync);
    assert (config->worker_concurrency == 64);
    assert (config->max_result_bytes == 65536);
    assert (config->allow_private_networks);
    const config_provider_t *mock = config_provider (config, "mock");
    assert (mock && mock->rate_limit == 100 && mock->max_concurrency == 1000);
    assert (config_provider (config, "nope") == NULL);
    const char *tenant = config_tenant_for_key (config, "secret-a", 8);
    assert (tenant && strcmp (tenant, "a") == 0);
    assert (config_tenant_for_key (config, "secret-b", 8) == NULL);
    config_destroy (&config);

    // Bad files give one clear line.
    const char *bad[] = { "{", "[]", "{\"broker\":{\"durability\":\"maybe\"}}",
                          "{\"worker\":{\"concurrency\":\"many\"}}",
                          "{\"broker\":{\"max_result_bytes\":100}}",
                          "{\"providers\":{\"x\":{\"base_url\":\"ftp://x\"}}}" };
    s_test_refused (path, bad, sizeof bad / sizeof bad[0]);
    s_test_auth_search_networks (path);
    s_test_table (path);
    s_test_hardening (path);
    s_test_gateway_keys (path);
    s_test_api_keys_file (path);
    s_test_routes (path);
    s_test_reload (path);
    unlink (path);
    if (verbose)
        printf ("OK\n");
}
