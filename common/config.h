// config — the one JSON configuration file (SPEC §6), shared by all binaries.
//
// One table row per key (section, name, type, bounds, default, meaning)
// drives everything: defaults, parsing, bounds, environment overrides, the
// error messages and the reference in docs/config.md (config_reference).
// Each binary reads the sections it needs from the same file, and every key
// is checked by every binary: an unknown key ("gatway", "allow_privte_…")
// is an error that names the nearest valid key, never silently ignored.
// Environment variables JOBGATE_<SECTION>_<KEY> (upper case; JOBGATE_<KEY>
// for top-level keys) override scalars, e.g. JOBGATE_GATEWAY_LISTEN; a
// variable in a section's namespace (JOBGATE_GATEWAY_…) that names no key is
// an error too.
#ifndef JOBGATE_CONFIG_H
#define JOBGATE_CONFIG_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

typedef struct {
    unsigned char key_hash[32]; // SHA-256 of the key (stored hashed)
    char *tenant;               // tenant the key maps to
    bool is_operator;           // "operator": true — sees internal topology
                                // (GET /v1/providers base_url, ...)
} config_api_key_t;

typedef struct {
    char *tenant;               // tenant name, or "*" for every other tenant
    double submit_rate;         // submissions per second (burst of one second), 0 = unlimited
    size_t max_queued;          // active jobs at most, 0 = unlimited
    uint64_t max_stored_bytes;  // bytes of its records in the store at most, 0 = the default
    size_t max_running;         // its calls running at once, 0 = unlimited
    int weight;                 // dispatches per turn of the tenants' round robin, 1..1000
    uint64_t tokens_per_day;    // LLM tokens per UTC day (llm submissions 429 above), 0 = unlimited
} config_quota_t;

typedef struct {
    char *name;                 // key under "providers"
    char *base_url;             // operator-trusted upstream base URL
    double rate_limit;          // requests per second, 0 = unlimited
    int max_concurrency;        // calls in flight, 0 = unlimited
    int64_t timeout_ms;         // default per-attempt timeout, 0 = job's
    size_t max_queued;          // active jobs at most (503 above), 0 = unlimited
    double burst;               // token bucket size, default max(1, rate_limit)
    int circuit_failures;       // consecutive failures that open the breaker, 0 = never
    int64_t circuit_open_ms;    // how long an open breaker waits before a probe
    bool circuit_fail_fast;     // while open: fail queued jobs instead of holding them
    int64_t retry_base_ms;      // backoff before the 2nd attempt (ceiling doubles each time)
    int64_t retry_max_ms;       // the ceiling's cap
    int64_t max_pause_ms;       // longest pause a Retry-After may impose on everyone
    int64_t breaker_min_timeout_ms; // a timeout counts for the breaker only if the attempt had this long
    json_t *headers;            // object of default headers, or NULL
    char *auth_header;          // header that carries the secret (e.g. Authorization), or NULL
    char *auth_prefix;          // text sent before the secret (e.g. "Bearer "), never NULL with auth
    char *auth_env;             // environment variable holding the secret, or NULL
    char *auth_file;            // file holding the secret, or NULL
    char *auth_secret;          // the secret; only config_load_secrets reads it (workers)
    json_t *search;             // search request template, normalized (see docs/providers.md)
    char **models;              // bare model names routed to this provider (SPEC §3.1)
    size_t models_count;
    char **fallback;            // providers tried in order when this one is unavailable
    size_t fallback_count;
    uint64_t tokens_per_minute; // LLM tokens per sliding minute across all workers, 0 = unlimited
    uint64_t default_max_tokens;// completion tokens reserved for a call that names no max_tokens
    bool priced;                // prices were configured
    double price_prompt;        // USD per million prompt tokens
    double price_completion;    // USD per million completion tokens
    int64_t cache_ttl_ms;       // default cache.ttl_ms of its jobs (SPEC §3.2), 0 = no cache
} config_provider_t;

// One network of security.allow_networks, e.g. 127.0.0.2/32.
typedef struct {
    int family;                 // AF_INET or AF_INET6
    unsigned char address[16];  // network address, network byte order (4 bytes used for IPv4)
    int prefix;                 // prefix length in bits
} config_network_t;

// The largest gateway.api_keys_file read (about 10,000 hashed keys).
#define CONFIG_API_KEYS_FILE_MAX (1024 * 1024)

typedef struct {
    // gateway
    char *gateway_listen;           // HOST:PORT to serve HTTP on
    config_api_key_t *api_keys;     // configured keys; none = open mode
    char *api_keys_file;            // file of more keys (config_load_api_keys), or NULL
    config_quota_t *quotas;         // per-tenant quotas ("quotas" section)
    size_t quotas_count;            // entries in quotas
    size_t api_keys_count;          // entries in api_keys
    size_t api_keys_config_count;   // of those, the config file's (the rest: api_keys_file's)
    size_t max_body_bytes;          // request body limit (413 above)
    int64_t submit_timeout_ms;      // how long a POST waits for the broker
    int max_connections;            // HTTP connections held at once
    bool gateway_reuse_port;        // listen with SO_REUSEPORT (several gateways, one port)
    bool allow_open_mode;           // open mode (no keys) on a non-loopback address
    char **allowed_hosts;           // Host names accepted besides loopback and listen
    size_t allowed_hosts_count;     // entries in allowed_hosts
    int64_t header_timeout_ms;      // deadline for a whole request head
    size_t min_body_rate;           // bytes/s a request body must keep up, 0 = any
    size_t cache_max_bytes;         // finished-job cache budget
    size_t list_max_bytes;          // a GET /v1/jobs page's budget
    size_t sse_buffer_bytes;        // events one stream may hold unsent
    // broker
    char *broker_frontend;          // endpoint gateways talk to
    char *broker_backend;           // endpoint workers talk to
    char *broker_publisher;         // PUB endpoint for job events
    char *broker_metrics_listen;    // HOST:PORT of GET /metrics, "" = not served
    char *data_dir;                 // where the store lives
    bool durability_fsync;          // "fsync" (true) or "os" (false)
    int64_t result_ttl_ms;          // how long finished jobs are kept
    size_t max_queued;              // jobs queued at most (503 above)
    size_t store_map_mb;            // LMDB map size in MiB
    size_t max_result_bytes;        // a RESULT's result text at most (response_too_large above)
    size_t max_frame_bytes;         // ZMQ_MAXMSGSIZE of every socket: one frame at most
    int usage_retention_days;       // LLM usage rows (GET /v1/usage) are kept this long
    config_provider_t direct;       // limits of direct calls (user URLs, webhooks): only
                                    // rate_limit, burst and max_concurrency are used
    // worker
    int worker_concurrency;         // transfers in flight per worker
    size_t max_response_bytes;      // upstream response cap per call
    int64_t drain_timeout_ms;       // on SIGTERM, how long running calls may finish
    // webhooks
    unsigned char *webhook_key;     // HMAC key of the signatures, or NULL (unsigned)
    size_t webhook_key_size;        // its size
    int webhook_max_attempts;       // deliveries tried at most
    int64_t webhook_timeout_ms;     // per delivery attempt
    // security
    bool allow_private_networks;    // SSRF policy opt-out
    config_network_t *allow_networks;   // allowed even when private networks are denied
    size_t allow_networks_count;    // entries in allow_networks
    // security.curve (common/curve.h reads the files and checks the keys)
    char *curve_public_key;         // this process's public key (Z85), or NULL
    char *curve_secret_key;         // this process's secret key (Z85), or NULL
    char *curve_broker_public_key;  // gateways, workers: the broker's public key (Z85), or NULL
    char **curve_authorized_keys;   // broker: client public keys it accepts (Z85), NULL-terminated
    size_t curve_authorized_keys_count; // entries in curve_authorized_keys
    char *curve_public_key_file;    // file holding public_key, or NULL
    char *curve_secret_key_file;    // file holding secret_key, or NULL
    char *curve_broker_public_key_file; // file holding broker_public_key, or NULL
    char *curve_authorized_keys_file;   // file of authorized keys, one per line, or NULL
    // providers
    config_provider_t *providers;   // configured upstreams
    size_t providers_count;         // entries in providers
    int log_level;                  // log_level_t: debug, info, warn, error
    bool log_json;                  // log.format "json": one JSON object per line
    char *log_file;                 // log.file: where lines go, "" = stderr
    json_t *source;                 // the file as read (NULL without one): what a
                                    // reload compares its fixed keys against
} config_t;

// config_load reads FILE (or only defaults when path is NULL), applies the
// environment, validates. On error returns NULL and writes a one-line
// explanation into error.
config_t *config_load (const char *path, char *error, size_t error_size);

// config_load_secrets reads each provider's auth secret (providers.NAME.auth,
// from its environment variable or file), once, at start. Only the worker
// calls it: the gateway and the broker never hold upstream secrets. On error
// returns -1 with a one-line explanation naming the provider (never the
// secret) in error.
int config_load_secrets (config_t *self, char *error, size_t error_size);

// config_load_api_keys reads gateway.api_keys_file, when set: a JSON array
// of entries shaped as gateway.api_keys' (at most CONFIG_API_KEYS_FILE_MAX
// bytes, under the jsontext policy), added to the keys of the config file —
// the keys can then live in a Secret mounted as a file (Kubernetes) instead
// of the config. Only the gateway calls it, with each configuration it loads
// (at start; wherever it checks or reloads one). On error returns
// -1 with a one-line explanation naming the file (never a key) in error.
// Called again on the same config, it reads the file again in place of the
// keys it read before.
int config_load_api_keys (config_t *self, char *error, size_t error_size);

// config_network_parse parses "ADDRESS/PREFIX" (or a bare address, meaning
// one host) into *network. Returns 0, or -1 when text is not such a network.
int config_network_parse (const char *text, config_network_t *network);

// config_reload moves into running, in place, the values of fresh (the
// same file read again) for the keys a running process may change
// (config_reloadable), so pointers into running stay valid; fresh receives
// the values replaced, for the caller to destroy once the process has
// refreshed what it derived from them. When a key that is not reloadable
// differs (or a provider was added, removed or renamed), returns -1 with a
// one-line message naming the first such key in error, and changes
// nothing. Returns 0 when applied.
int config_reload (config_t *running, config_t *fresh, char *error, size_t error_size);

// config_reloadable is true when the key (its full name, "providers.*.X"
// and "quotas.*.X" for per-provider and per-tenant keys) may change on a
// reload. This function can't fail.
bool config_reloadable (const char *full_name);

// config_destroy frees the configuration; nulls *self_p.
void config_destroy (config_t **self_p);

// config_provider finds a provider by name, or NULL.
const config_provider_t *config_provider (const config_t *self, const char *name);

// config_provider_for_model routes an OpenAI model name (SPEC §3.1):
// "PROVIDER/MODEL" names a configured provider and the model it is sent
// (*model_out points into model, after the '/'); a bare name goes to the
// provider whose models list holds it (*model_out = model). NULL: no
// such provider or model.
const config_provider_t *config_provider_for_model (const config_t *self, const char *model,
                                                    const char **model_out);

// config_quota finds the quota of a tenant ("*" as the fallback), or NULL.
const config_quota_t *config_quota (const config_t *self, const char *tenant);

// config_api_key_for finds the entry of a presented API key, comparing
// hashes in constant time. Returns NULL when no key matches.
const config_api_key_t *config_api_key_for (const config_t *self, const char *key, size_t len);

// config_tenant_for_key maps a presented API key to its tenant, comparing
// hashes in constant time. Returns NULL when no key matches.
const char *config_tenant_for_key (const config_t *self, const char *key, size_t len);

// config_reference writes the reference of every key (docs/config.md's
// tables) to out, as Markdown. This function can't fail.
void config_reference (FILE *out);

// The most calls one worker may announce (worker.concurrency's bound): the
// broker never counts more credit than this for a worker.
#define CONFIG_WORKER_CONCURRENCY_MAX 100000

// config_max_stored_bytes returns the bytes a tenant may keep in the store:
// its quota's max_stored_bytes, or by default a quarter of the store's map.
// This function can't fail.
uint64_t config_max_stored_bytes (const config_t *self, const config_quota_t *quota);

// config_test runs the self-test.
void config_test (bool verbose);

#endif
