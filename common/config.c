#include "config.h"

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

// The longest provider secret read from a file or the environment.
#define CONFIG_SECRET_MAX 65536

// s_env returns the override for section.key, or NULL.
static const char *
s_env (const char *section, const char *key)
{
    char name[128];
    int n = snprintf (name, sizeof name, "JOBGATE_%s_%s", section, key);
    if (n < 0 || (size_t) n >= sizeof name)
        return NULL;
    for (char *p = name; *p; p++)
        *p = (char) toupper ((unsigned char) *p);
    const char *value = getenv (name);
    return value && *value ? value : NULL;
}

// s_get_string reads section.key as a string into *out (default kept).
static int
s_get_string (json_t *section_obj, const char *section, const char *key,
              char **out, char *error, size_t error_size)
{
    const char *env = s_env (section, key);
    json_t *value = section_obj ? json_object_get (section_obj, key) : NULL;
    if (env) {
        free (*out);
        *out = strdup (env);
        return 0;
    }
    if (!value)
        return 0;
    if (!json_is_string (value)) {
        snprintf (error, error_size, "config: %s.%s must be a string", section, key);
        return -1;
    }
    free (*out);
    *out = strdup (json_string_value (value));
    return 0;
}

// s_get_number reads section.key as a number within [min, max].
static int
s_get_number (json_t *section_obj, const char *section, const char *key,
              double *out, double min, double max, char *error, size_t error_size)
{
    const char *env = s_env (section, key);
    json_t *value = section_obj ? json_object_get (section_obj, key) : NULL;
    double number;
    if (env) {
        char *end;
        number = strtod (env, &end);
        if (*end) {
            snprintf (error, error_size, "config: environment override for %s.%s is not a number",
                      section, key);
            return -1;
        }
    }
    else if (!value)
        return 0;
    else if (!json_is_number (value)) {
        snprintf (error, error_size, "config: %s.%s must be a number", section, key);
        return -1;
    }
    else
        number = json_number_value (value);
    if (number < min || number > max) {
        snprintf (error, error_size, "config: %s.%s must be between %g and %g",
                  section, key, min, max);
        return -1;
    }
    *out = number;
    return 0;
}

// s_get_bool reads section.key as a boolean.
static int
s_get_bool (json_t *section_obj, const char *section, const char *key,
            bool *out, char *error, size_t error_size)
{
    const char *env = s_env (section, key);
    json_t *value = section_obj ? json_object_get (section_obj, key) : NULL;
    if (env) {
        *out = strcmp (env, "true") == 0 || strcmp (env, "1") == 0;
        return 0;
    }
    if (!value)
        return 0;
    if (!json_is_boolean (value)) {
        snprintf (error, error_size, "config: %s.%s must be true or false", section, key);
        return -1;
    }
    *out = json_is_true (value);
    return 0;
}

// s_section returns the object for a top-level section, or NULL; an error
// when it exists but is not an object.
static int
s_section (json_t *root, const char *name, json_t **out, char *error, size_t error_size)
{
    *out = root ? json_object_get (root, name) : NULL;
    if (*out && !json_is_object (*out)) {
        snprintf (error, error_size, "config: \"%s\" must be an object", name);
        return -1;
    }
    return 0;
}

static int
s_load_api_keys (config_t *self, json_t *keys, char *error, size_t error_size)
{
    if (!keys)
        return 0;
    if (!json_is_array (keys)) {
        snprintf (error, error_size, "config: gateway.api_keys must be an array");
        return -1;
    }
    self->api_keys = calloc (json_array_size (keys) + 1, sizeof *self->api_keys);
    size_t index;
    json_t *entry;
    json_array_foreach (keys, index, entry) {
        json_t *key = json_object_get (entry, "key");
        json_t *key_hash = json_object_get (entry, "key_sha256");
        json_t *tenant = json_object_get (entry, "tenant");
        json_t *is_operator = json_object_get (entry, "operator");
        if (!json_is_object (entry) || !json_is_string (tenant)
            || !(json_is_string (key) || json_is_string (key_hash))) {
            snprintf (error, error_size,
                      "config: gateway.api_keys[%zu] needs \"tenant\" and \"key\" or \"key_sha256\"",
                      index);
            return -1;
        }
        if (is_operator && !json_is_boolean (is_operator)) {
            snprintf (error, error_size,
                      "config: gateway.api_keys[%zu].operator must be true or false", index);
            return -1;
        }
        // The broker indexes a tenant's jobs (and Idempotency-Keys of at
        // most 255 bytes) under LMDB keys of at most 511 bytes.
        if (strlen (json_string_value (tenant)) > 128) {
            snprintf (error, error_size,
                      "config: gateway.api_keys[%zu].tenant must be at most 128 bytes", index);
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
                          "config: gateway.api_keys[%zu].key_sha256 must be 64 hex digits", index);
                return -1;
            }
        }
        if (json_string_value (tenant)[0] == '#') {
            snprintf (error, error_size,
                      "config: gateway.api_keys[%zu].tenant may not start with '#' (reserved)", index);
            return -1;
        }
        api_key->tenant = strdup (json_string_value (tenant));
        api_key->is_operator = json_is_true (is_operator);
        self->api_keys_count++;
    }
    return 0;
}

// s_load_allowed_hosts reads gateway.allowed_hosts: Host names (or IP
// literals, "*" for any) the gateway answers besides its own; stored lower
// case, IPv6 literals in brackets as they appear in a Host header.
static int
s_load_allowed_hosts (config_t *self, json_t *hosts, char *error, size_t error_size)
{
    if (!hosts)
        return 0;
    if (!json_is_array (hosts)) {
        snprintf (error, error_size, "config: gateway.allowed_hosts must be an array of host names");
        return -1;
    }
    self->allowed_hosts = calloc (json_array_size (hosts) + 1, sizeof *self->allowed_hosts);
    size_t index;
    json_t *entry;
    json_array_foreach (hosts, index, entry) {
        const char *text = json_string_value (entry);
        size_t len = text ? strlen (text) : 0;
        bool ok = len > 0 && len <= 253;
        for (size_t i = 0; ok && i < len; i++)
            ok = isalnum ((unsigned char) text[i]) || strchr ("-._:[]*", text[i]);
        if (!ok) {
            snprintf (error, error_size,
                      "config: gateway.allowed_hosts[%zu] must be a host name or IP address", index);
            return -1;
        }
        char *host = malloc (len + 3);
        if (strchr (text, ':') && text[0] != '[')
            snprintf (host, len + 3, "[%s]", text);
        else
            memcpy (host, text, len + 1);
        for (char *c = host; *c; c++)
            *c = (char) tolower ((unsigned char) *c);
        self->allowed_hosts[self->allowed_hosts_count++] = host;
    }
    return 0;
}

// s_token_ok is true for an RFC 9110 token (a header name).
static bool
s_token_ok (const char *text)
{
    if (!*text)
        return false;
    for (const char *c = text; *c; c++)
        if (!isalnum ((unsigned char) *c) && !strchr ("!#$%&'*+-.^_`|~", *c))
            return false;
    return true;
}

// s_line_safe is true when text holds no CR, LF or NUL, which would let a
// configured value split the request it is sent in.
static bool
s_line_safe (const char *text, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (text[i] == '\r' || text[i] == '\n' || text[i] == '\0')
            return false;
    return true;
}

// s_load_auth reads providers.NAME.auth: which header carries the secret and
// where the secret lives (env or file). The secret itself is read later, by
// config_load_secrets, in the worker only.
static int
s_load_auth (config_provider_t *provider, json_t *auth, char *error, size_t error_size)
{
    if (!auth)
        return 0;
    const char *name = provider->name;
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
    if (prefix && !s_line_safe (prefix_text, json_string_length (prefix))) {
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
s_load_search (config_provider_t *provider, json_t *search, char *error, size_t error_size)
{
    const char *name = provider->name;
    if (search && !json_is_object (search)) {
        snprintf (error, error_size, "config: providers.%s.search must be an object", name);
        return -1;
    }
    static const char *const keys[] = { "method", "path", "query_param", "count_param" };
    const char *values[] = { "GET", "", "q", "count" };
    for (size_t i = 0; i < 4; i++) {
        json_t *value = search ? json_object_get (search, keys[i]) : NULL;
        if (value && (!json_is_string (value) || (i != 1 && !*json_string_value (value))
                      || !s_line_safe (json_string_value (value), json_string_length (value)))) {
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
s_load_networks (config_t *self, json_t *networks, char *error, size_t error_size)
{
    if (!networks)
        return 0;
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

// s_load_quotas reads {"quotas": {"TENANT" | "*": {"submit_rate", "max_queued"}}}.
static int
s_load_quotas (config_t *self, json_t *quotas, char *error, size_t error_size)
{
    if (!quotas)
        return 0;
    if (!json_is_object (quotas)) {
        snprintf (error, error_size, "config: \"quotas\" must be an object");
        return -1;
    }
    self->quotas = calloc (json_object_size (quotas) + 1, sizeof *self->quotas);
    const char *tenant;
    json_t *entry;
    json_object_foreach (quotas, tenant, entry) {
        config_quota_t *quota = &self->quotas[self->quotas_count++];
        quota->tenant = strdup (tenant);
        if (!json_is_object (entry)) {
            snprintf (error, error_size, "config: quotas.%s must be an object", tenant);
            return -1;
        }
        char section[160];
        snprintf (section, sizeof section, "quotas.%s", tenant);
        double rate = 0, queued = 0;
        if (s_get_number (entry, section, "submit_rate", &rate, 0, 1e9, error, error_size) < 0
            || s_get_number (entry, section, "max_queued", &queued, 0, 1e9, error, error_size) < 0)
            return -1;
        quota->submit_rate = rate;
        quota->max_queued = (size_t) queued;
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
s_load_providers (config_t *self, json_t *providers, char *error, size_t error_size)
{
    if (!providers)
        return 0;
    if (!json_is_object (providers)) {
        snprintf (error, error_size, "config: \"providers\" must be an object");
        return -1;
    }
    self->providers = calloc (json_object_size (providers) + 1, sizeof *self->providers);
    const char *name;
    json_t *entry;
    json_object_foreach (providers, name, entry) {
        config_provider_t *provider = &self->providers[self->providers_count++];
        provider->name = strdup (name);
        if (!json_is_object (entry)) {
            snprintf (error, error_size, "config: providers.%s must be an object", name);
            return -1;
        }
        json_t *base_url = json_object_get (entry, "base_url");
        if (!json_is_string (base_url)
            || (strncmp (json_string_value (base_url), "http://", 7) != 0
                && strncmp (json_string_value (base_url), "https://", 8) != 0)) {
            snprintf (error, error_size,
                      "config: providers.%s.base_url must be an http(s) URL", name);
            return -1;
        }
        provider->base_url = strdup (json_string_value (base_url));
        char section[160];
        snprintf (section, sizeof section, "providers.%s", name);
        double rate = 0, concurrency = 0, timeout = 0, queued = 0;
        if (s_get_number (entry, section, "rate_limit", &rate, 0, 1e9, error, error_size) < 0
            || s_get_number (entry, section, "max_concurrency", &concurrency, 0, 1e6, error,
                             error_size) < 0
            || s_get_number (entry, section, "timeout_ms", &timeout, 0, 600000, error,
                             error_size) < 0
            || s_get_number (entry, section, "max_queued", &queued, 0, 1e9, error,
                             error_size) < 0)
            return -1;
        provider->max_queued = (size_t) queued;
        // A tenth of a second's worth by default: smooth, so that no
        // one-second window sees much more than the rate itself.
        double burst = rate / 10 > 1 ? rate / 10 : 1, failures = 5, open_ms = 10000;
        if (s_get_number (entry, section, "burst", &burst, 1, 1e9, error, error_size) < 0
            || s_get_number (entry, section, "circuit_failures", &failures, 0, 1e6, error,
                             error_size) < 0
            || s_get_number (entry, section, "circuit_open_ms", &open_ms, 100, 3600000, error,
                             error_size) < 0
            || s_get_bool (entry, section, "circuit_fail_fast", &provider->circuit_fail_fast,
                           error, error_size) < 0)
            return -1;
        provider->burst = burst;
        provider->circuit_failures = (int) failures;
        provider->circuit_open_ms = (int64_t) open_ms;
        double retry_base = 500, retry_max = 60000;
        if (s_get_number (entry, section, "retry_base_ms", &retry_base, 1, 3600000, error,
                          error_size) < 0
            || s_get_number (entry, section, "retry_max_ms", &retry_max, 1, 86400000, error,
                             error_size) < 0)
            return -1;
        provider->retry_base_ms = (int64_t) retry_base;
        provider->retry_max_ms = (int64_t) retry_max;
        provider->rate_limit = rate;
        provider->max_concurrency = (int) concurrency;
        provider->timeout_ms = (int64_t) timeout;
        json_t *headers = json_object_get (entry, "headers");
        if (headers) {
            const char *header;
            json_t *value;
            bool ok = json_is_object (headers);
            if (ok)
                json_object_foreach (headers, header, value)
                    ok = ok && json_is_string (value);
            if (!ok) {
                snprintf (error, error_size,
                          "config: providers.%s.headers must be an object of strings", name);
                return -1;
            }
            provider->headers = json_incref (headers);
        }
        if (s_load_auth (provider, json_object_get (entry, "auth"), error, error_size) < 0
            || s_load_search (provider, json_object_get (entry, "search"), error, error_size) < 0)
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
    self->gateway_listen = strdup ("127.0.0.1:8080");
    self->max_body_bytes = 1024 * 1024;
    self->submit_timeout_ms = 5000;
    self->max_connections = 10000;
    self->header_timeout_ms = 10000;
    self->min_body_rate = 1024;
    self->cache_max_bytes = 64 * 1024 * 1024;
    self->list_max_bytes = 8 * 1024 * 1024;
    self->sse_buffer_bytes = 1024 * 1024;
    self->broker_frontend = strdup ("tcp://127.0.0.1:5555");
    self->broker_backend = strdup ("tcp://127.0.0.1:5556");
    self->broker_publisher = strdup ("tcp://127.0.0.1:5557");
    self->data_dir = strdup ("./data");
    self->durability_fsync = true;
    self->result_ttl_ms = 24LL * 3600 * 1000;
    self->max_queued = 1000000;
    self->store_map_mb = 4096;
    self->worker_concurrency = 512;
    self->max_response_bytes = 10 * 1024 * 1024;
    self->log_level = strdup ("info");

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
    json_t *gateway, *broker, *worker, *security, *webhooks;
    char *webhook_secret = NULL;
    double webhook_attempts = 8, webhook_timeout = 10000;
    char *durability = strdup ("fsync");
    double max_body = (double) self->max_body_bytes, submit_timeout = 5000,
           max_connections = 10000, ttl_s = 86400, max_queued = 1000000,
           map_mb = 4096, concurrency = 512, max_response = (double) self->max_response_bytes,
           drain_timeout = 30000, header_timeout = 10000, min_body_rate = 1024,
           cache_max = 64.0 * 1024 * 1024, list_max = 8.0 * 1024 * 1024,
           sse_buffer = 1024.0 * 1024;
    int rc = 0;
    if (s_section (root, "gateway", &gateway, error, error_size) < 0
        || s_section (root, "broker", &broker, error, error_size) < 0
        || s_section (root, "worker", &worker, error, error_size) < 0
        || s_section (root, "security", &security, error, error_size) < 0
        || s_section (root, "webhooks", &webhooks, error, error_size) < 0
        || s_get_string (webhooks, "webhooks", "secret", &webhook_secret, error, error_size) < 0
        || s_get_number (webhooks, "webhooks", "max_attempts", &webhook_attempts, 1, 100, error,
                         error_size) < 0
        || s_get_number (webhooks, "webhooks", "timeout_ms", &webhook_timeout, 100, 600000, error,
                         error_size) < 0
        || s_get_string (gateway, "gateway", "listen", &self->gateway_listen, error, error_size) < 0
        || s_get_number (gateway, "gateway", "max_body_bytes", &max_body, 1024, 64.0 * 1024 * 1024,
                         error, error_size) < 0
        || s_get_number (gateway, "gateway", "submit_timeout_ms", &submit_timeout, 100, 600000,
                         error, error_size) < 0
        || s_get_number (gateway, "gateway", "max_connections", &max_connections, 16, 1000000,
                         error, error_size) < 0
        || s_load_api_keys (self, gateway ? json_object_get (gateway, "api_keys") : NULL, error,
                            error_size) < 0
        || s_get_bool (gateway, "gateway", "allow_open_mode", &self->allow_open_mode, error,
                       error_size) < 0
        || s_load_allowed_hosts (self, gateway ? json_object_get (gateway, "allowed_hosts") : NULL,
                                 error, error_size) < 0
        || s_get_number (gateway, "gateway", "header_timeout_ms", &header_timeout, 100, 600000,
                         error, error_size) < 0
        || s_get_number (gateway, "gateway", "min_body_rate", &min_body_rate, 0, 1e9, error,
                         error_size) < 0
        || s_get_number (gateway, "gateway", "cache_max_bytes", &cache_max, 0,
                         64.0 * 1024 * 1024 * 1024, error, error_size) < 0
        || s_get_number (gateway, "gateway", "list_max_bytes", &list_max, 65536,
                         1024.0 * 1024 * 1024, error, error_size) < 0
        || s_get_number (gateway, "gateway", "sse_buffer_bytes", &sse_buffer, 65536,
                         1024.0 * 1024 * 1024, error, error_size) < 0
        || s_get_string (broker, "broker", "frontend", &self->broker_frontend, error, error_size) < 0
        || s_get_string (broker, "broker", "backend", &self->broker_backend, error, error_size) < 0
        || s_get_string (broker, "broker", "publisher", &self->broker_publisher, error,
                         error_size) < 0
        || s_get_string (broker, "broker", "data_dir", &self->data_dir, error, error_size) < 0
        || s_get_string (broker, "broker", "durability", &durability, error, error_size) < 0
        || s_get_number (broker, "broker", "result_ttl_s", &ttl_s, 1, 365.0 * 86400, error,
                         error_size) < 0
        || s_get_number (broker, "broker", "max_queued", &max_queued, 1, 1e9, error,
                         error_size) < 0
        || s_get_number (broker, "broker", "store_map_mb", &map_mb, 16, 1024.0 * 1024, error,
                         error_size) < 0
        || s_get_number (worker, "worker", "concurrency", &concurrency, 1, 100000, error,
                         error_size) < 0
        || s_get_number (worker, "worker", "max_response_bytes", &max_response, 1024,
                         1024.0 * 1024 * 1024, error, error_size) < 0
        || s_get_number (worker, "worker", "drain_timeout_ms", &drain_timeout, 1, 3600000, error,
                         error_size) < 0
        || s_get_bool (security, "security", "allow_private_networks",
                       &self->allow_private_networks, error, error_size) < 0
        || s_load_networks (self, security ? json_object_get (security, "allow_networks") : NULL,
                            error, error_size) < 0
        || s_load_quotas (self, root ? json_object_get (root, "quotas") : NULL, error,
                          error_size) < 0
        || s_load_providers (self, root ? json_object_get (root, "providers") : NULL, error,
                             error_size) < 0)
        rc = -1;
    if (rc == 0) {
        json_t *level = root ? json_object_get (root, "log_level") : NULL;
        const char *chosen = getenv ("JOBGATE_LOG_LEVEL");
        if (!chosen || !*chosen)
            chosen = json_is_string (level) ? json_string_value (level) : NULL;
        if (chosen) {
            free (self->log_level);
            self->log_level = strdup (chosen);
        }
        if (strcmp (self->log_level, "debug") && strcmp (self->log_level, "info")
            && strcmp (self->log_level, "warn") && strcmp (self->log_level, "error")) {
            snprintf (error, error_size, "config: log_level must be debug, info, warn or error");
            rc = -1;
        }
    }
    if (rc == 0) {
        if (strcmp (durability, "fsync") == 0)
            self->durability_fsync = true;
        else if (strcmp (durability, "os") == 0)
            self->durability_fsync = false;
        else {
            snprintf (error, error_size, "config: broker.durability must be \"fsync\" or \"os\"");
            rc = -1;
        }
    }
    free (durability);
    if (rc == 0 && webhook_secret) {
        // Standard Webhooks: "whsec_" + base64 of the key; anything else is
        // taken as the key's bytes.
        size_t len = strlen (webhook_secret);
        self->webhook_key = malloc (len + 1);
        if (strncmp (webhook_secret, "whsec_", 6) == 0) {
            if (sodium_base642bin (self->webhook_key, len, webhook_secret + 6, len - 6, NULL,
                                   &self->webhook_key_size, NULL, sodium_base64_VARIANT_ORIGINAL)
                    != 0
                || self->webhook_key_size == 0) {
                snprintf (error, error_size, "config: webhooks.secret \"whsec_…\" must be base64");
                rc = -1;
            }
        }
        else {
            memcpy (self->webhook_key, webhook_secret, len);
            self->webhook_key_size = len;
        }
        sodium_memzero (webhook_secret, len);
    }
    free (webhook_secret);
    self->webhook_max_attempts = (int) webhook_attempts;
    self->webhook_timeout_ms = (int64_t) webhook_timeout;
    json_decref (root);
    if (rc < 0) {
        config_destroy (&self);
        return NULL;
    }
    self->max_body_bytes = (size_t) max_body;
    self->submit_timeout_ms = (int64_t) submit_timeout;
    self->max_connections = (int) max_connections;
    self->header_timeout_ms = (int64_t) header_timeout;
    self->min_body_rate = (size_t) min_body_rate;
    self->cache_max_bytes = (size_t) cache_max;
    self->list_max_bytes = (size_t) list_max;
    self->sse_buffer_bytes = (size_t) sse_buffer;
    self->result_ttl_ms = (int64_t) (ttl_s * 1000);
    self->max_queued = (size_t) max_queued;
    self->store_map_mb = (size_t) map_mb;
    self->worker_concurrency = (int) concurrency;
    self->max_response_bytes = (size_t) max_response;
    self->drain_timeout_ms = (int64_t) drain_timeout;
    return self;
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
    for (size_t i = 0; i < self->api_keys_count; i++)
        free (self->api_keys[i].tenant);
    free (self->api_keys);
    for (size_t i = 0; i < self->allowed_hosts_count; i++)
        free (self->allowed_hosts[i]);
    free (self->allowed_hosts);
    free (self->broker_frontend);
    free (self->broker_backend);
    free (self->broker_publisher);
    free (self->data_dir);
    for (size_t i = 0; i < self->providers_count; i++) {
        free (self->providers[i].name);
        free (self->providers[i].base_url);
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
    free (self->log_level);
    free (self);
    *self_p = NULL;
}

// s_read_secret_file reads a secret file whole; returns a new string, or
// NULL with errno set (EFBIG when it is over CONFIG_SECRET_MAX).
static char *
s_read_secret_file (const char *path)
{
    FILE *file = fopen (path, "re");
    if (!file)
        return NULL;
    char *secret = malloc (CONFIG_SECRET_MAX + 1);
    size_t size = secret ? fread (secret, 1, CONFIG_SECRET_MAX + 1, file) : 0;
    int failed = !secret ? ENOMEM : ferror (file) ? EIO : size > CONFIG_SECRET_MAX ? EFBIG : 0;
    fclose (file);
    if (failed) {
        if (secret)
            sodium_memzero (secret, CONFIG_SECRET_MAX + 1);
        free (secret);
        errno = failed;
        return NULL;
    }
    secret[size] = '\0';
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
            secret = s_read_secret_file (provider->auth_file);
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
                              : !s_line_safe (secret, len) ? "the secret contains CR or LF"
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
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        config = s_test_load (path, bad[i], error, sizeof error);
        if (config)
            fprintf (stderr, "config: accepted %s\n", bad[i]);
        assert (config == NULL);
        assert (strncmp (error, "config: ", 8) == 0 && !strchr (error, '\n'));
    }
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
    config_destroy (&config);

    char path[] = "/tmp/jobgate-config-test-XXXXXX";
    int fd = mkstemp (path);
    assert (fd >= 0);
    const char *text =
        "{\"gateway\":{\"listen\":\"127.0.0.1:9999\",\"api_keys\":[{\"key\":\"secret-a\",\"tenant\":\"a\"}]},"
        "\"broker\":{\"durability\":\"os\",\"data_dir\":\"/tmp/x\"},"
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
    assert (config->allow_private_networks);
    const config_provider_t *mock = config_provider (config, "mock");
    assert (mock && mock->rate_limit == 100 && mock->max_concurrency == 1000);
    assert (config_provider (config, "nope") == NULL);
    const char *tenant = config_tenant_for_key (config, "secret-a", 8);
    assert (tenant && strcmp (tenant, "a") == 0);
    assert (config_tenant_for_key (config, "secret-b", 8) == NULL);
    assert (!config_api_key_for (config, "secret-a", 8)->is_operator);
    assert (config->header_timeout_ms == 10000 && config->cache_max_bytes == 64 * 1024 * 1024);
    assert (!config->allow_open_mode && config->allowed_hosts_count == 0);
    config_destroy (&config);

    // Gateway hardening keys: operator keys, hosts, byte budgets.
    text = "{\"gateway\":{\"api_keys\":[{\"key\":\"k1\",\"tenant\":\"ops\",\"operator\":true},"
           "{\"key\":\"k2\",\"tenant\":\"b\"}],\"allowed_hosts\":[\"API.example\",\"::1\",\"*\"],"
           "\"allow_open_mode\":true,\"header_timeout_ms\":1500,\"min_body_rate\":0,"
           "\"cache_max_bytes\":1000,\"list_max_bytes\":70000,\"sse_buffer_bytes\":80000}}";
    config = s_test_load (path, text, error, sizeof error);
    assert (config);
    assert (config_api_key_for (config, "k1", 2)->is_operator);
    assert (!config_api_key_for (config, "k2", 2)->is_operator);
    assert (config->allowed_hosts_count == 3 && strcmp (config->allowed_hosts[0], "api.example") == 0
            && strcmp (config->allowed_hosts[1], "[::1]") == 0);
    assert (config->allow_open_mode && config->header_timeout_ms == 1500 && config->min_body_rate == 0);
    assert (config->cache_max_bytes == 1000 && config->list_max_bytes == 70000
            && config->sse_buffer_bytes == 80000);
    config_destroy (&config);

    // Bad files give one clear line.
    const char *bad[] = { "{", "[]", "{\"broker\":{\"durability\":\"maybe\"}}",
                          "{\"gateway\":{\"api_keys\":[{\"key\":\"k\",\"tenant\":\"a\",\"operator\":1}]}}",
                          "{\"gateway\":{\"allowed_hosts\":[\"a b\"]}}",
                          "{\"gateway\":{\"allowed_hosts\":\"localhost\"}}",
                          "{\"gateway\":{\"header_timeout_ms\":5}}",
                          "{\"worker\":{\"concurrency\":\"many\"}}",
                          "{\"providers\":{\"x\":{\"base_url\":\"ftp://x\"}}}" };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        FILE *file = fopen (path, "w");
        fputs (bad[i], file);
        fclose (file);
        error[0] = '\0';
        assert (config_load (path, error, sizeof error) == NULL);
        assert (strncmp (error, "config: ", 8) == 0 && !strchr (error, '\n'));
    }
    s_test_auth_search_networks (path);
    unlink (path);
    if (verbose)
        printf ("OK\n");
}
