#include "config.h"

#include <assert.h>
#include <ctype.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

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
        if (!json_is_object (entry) || !json_is_string (tenant)
            || !(json_is_string (key) || json_is_string (key_hash))) {
            snprintf (error, error_size,
                      "config: gateway.api_keys[%zu] needs \"tenant\" and \"key\" or \"key_sha256\"",
                      index);
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
        api_key->tenant = strdup (json_string_value (tenant));
        self->api_keys_count++;
    }
    return 0;
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
    json_t *gateway, *broker, *worker, *security;
    char *durability = strdup ("fsync");
    double max_body = (double) self->max_body_bytes, submit_timeout = 5000,
           max_connections = 10000, ttl_s = 86400, max_queued = 1000000,
           map_mb = 4096, concurrency = 512, max_response = (double) self->max_response_bytes;
    int rc = 0;
    if (s_section (root, "gateway", &gateway, error, error_size) < 0
        || s_section (root, "broker", &broker, error, error_size) < 0
        || s_section (root, "worker", &worker, error, error_size) < 0
        || s_section (root, "security", &security, error, error_size) < 0
        || s_get_string (gateway, "gateway", "listen", &self->gateway_listen, error, error_size) < 0
        || s_get_number (gateway, "gateway", "max_body_bytes", &max_body, 1024, 64.0 * 1024 * 1024,
                         error, error_size) < 0
        || s_get_number (gateway, "gateway", "submit_timeout_ms", &submit_timeout, 100, 600000,
                         error, error_size) < 0
        || s_get_number (gateway, "gateway", "max_connections", &max_connections, 16, 1000000,
                         error, error_size) < 0
        || s_load_api_keys (self, gateway ? json_object_get (gateway, "api_keys") : NULL, error,
                            error_size) < 0
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
        || s_get_bool (security, "security", "allow_private_networks",
                       &self->allow_private_networks, error, error_size) < 0
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
    json_decref (root);
    if (rc < 0) {
        config_destroy (&self);
        return NULL;
    }
    self->max_body_bytes = (size_t) max_body;
    self->submit_timeout_ms = (int64_t) submit_timeout;
    self->max_connections = (int) max_connections;
    self->result_ttl_ms = (int64_t) (ttl_s * 1000);
    self->max_queued = (size_t) max_queued;
    self->store_map_mb = (size_t) map_mb;
    self->worker_concurrency = (int) concurrency;
    self->max_response_bytes = (size_t) max_response;
    return self;
}

void
config_destroy (config_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    config_t *self = *self_p;
    free (self->gateway_listen);
    for (size_t i = 0; i < self->api_keys_count; i++)
        free (self->api_keys[i].tenant);
    free (self->api_keys);
    free (self->broker_frontend);
    free (self->broker_backend);
    free (self->broker_publisher);
    free (self->data_dir);
    for (size_t i = 0; i < self->providers_count; i++) {
        free (self->providers[i].name);
        free (self->providers[i].base_url);
        json_decref (self->providers[i].headers);
    }
    free (self->providers);
    free (self->log_level);
    free (self);
    *self_p = NULL;
}

const config_provider_t *
config_provider (const config_t *self, const char *name)
{
    for (size_t i = 0; i < self->providers_count; i++)
        if (strcmp (self->providers[i].name, name) == 0)
            return &self->providers[i];
    return NULL;
}

const char *
config_tenant_for_key (const config_t *self, const char *key, size_t len)
{
    unsigned char hash[32];
    crypto_hash_sha256 (hash, (const unsigned char *) key, len);
    const char *tenant = NULL;
    // Visit every key so the time taken does not tell which one matched.
    for (size_t i = 0; i < self->api_keys_count; i++)
        if (sodium_memcmp (hash, self->api_keys[i].key_hash, 32) == 0)
            tenant = self->api_keys[i].tenant;
    return tenant;
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
    config_destroy (&config);

    // Bad files give one clear line.
    const char *bad[] = { "{", "[]", "{\"broker\":{\"durability\":\"maybe\"}}",
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
    unlink (path);
    if (verbose)
        printf ("OK\n");
}
