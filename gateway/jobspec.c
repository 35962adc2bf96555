// jobspec — parses and validates a job spec (SPEC §3 "Job spec").
//
// One pass visits every field and collects every problem rather than
// stopping at the first: a client fixes its request in one round trip.
// Nothing here recurses deeper than JOBSPEC_MAX_DEPTH levels, and all JSON
// text that reaches the output is valid UTF-8, whatever came in.
#include "jobspec.h"
#include "jsontext.h"
#include "httpfield.h"
#include "mem.h"
#include "url.h"
#include "urlpath.h"

#include <assert.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define S_MAX_URL_BYTES         8192
#define S_MAX_METADATA_BYTES    4096
#define S_MAX_TIMEOUT_MS        600000
#define S_DEFAULT_TIMEOUT_MS    30000
#define S_MAX_EXPIRE_MS         (7LL * 24 * 3600 * 1000)
#define S_MAX_CACHE_TTL_MS      (7LL * 24 * 3600 * 1000)
#define S_MAX_CRAWL_BYTES       (64LL * 1024 * 1024)
#define S_DEFAULT_CRAWL_BYTES   (2LL * 1024 * 1024)

// Top-level fields, in the order they are checked and written out.
enum {
    S_KIND, S_PROVIDER, S_REQUEST, S_PRIORITY, S_TIMEOUT_MS, S_MAX_ATTEMPTS,
    S_EXPIRE_AFTER_MS, S_CALLBACK, S_METADATA, S_CACHE, S_FIELD_COUNT
};
static const char *const s_top_fields[] = {
    "kind", "provider", "request", "priority", "timeout_ms", "max_attempts",
    "expire_after_ms", "callback", "metadata", "cache", NULL
};

static const char *const s_kinds[] = { "http", "crawl", "search", "llm", NULL };
enum { S_HTTP, S_CRAWL, S_SEARCH, S_LLM };

static const char *const s_http_fields[] = {
    "method", "url", "path", "query", "headers", "body", NULL
};
static const char *const s_crawl_fields[] = { "url", "max_bytes", NULL };
static const char *const s_callback_fields[] = { "url", NULL };
static const char *const s_cache_fields[] = { "ttl_ms", NULL };
static const char *const s_methods[] = {
    "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", NULL
};

// One validation pass: what is checked against and what was found.
typedef struct {
    const config_t *config;     // providers to check names against
    json_t *errors;             // array of {field, message} found so far
} check_t;

// What a valid spec yields, filled as fields are checked.
typedef struct {
    int kind;                               // S_HTTP..S_LLM, or -1
    const config_provider_t *provider;      // the named provider, or NULL
    json_int_t priority;                    // 0..9
    json_int_t timeout_ms;                  // per attempt
    json_int_t max_attempts;                // 1..10
    json_int_t expire_after_ms;             // 0 = never
    json_t *values[S_FIELD_COUNT];          // top-level values (borrowed) or NULL
    bool too_deep[S_FIELD_COUNT];           // value nests too deep: not inspected
} fields_t;

// s_json_text returns s as a JSON string. Bytes that are not printable ASCII
// become '?' when s is not valid UTF-8: jansson refuses such strings, and
// its error texts quote raw input bytes.
static json_t *
s_json_text (const char *s)
{
    json_t *text = json_string (s);
    if (text)
        return text;
    char *copy = mem_strdup (s);
    for (char *c = copy; *c; c++)
        if ((unsigned char) *c < 0x20 || (unsigned char) *c >= 0x7f)
            *c = '?';
    text = json_string (copy);
    free (copy);
    return text;
}

// s_errors_add appends {field, message} to errors.
static void
s_errors_add (json_t *errors, const char *field, const char *message)
{
    json_t *entry = json_object ();
    json_object_set_new (entry, "field", s_json_text (field));
    json_object_set_new (entry, "message", s_json_text (message));
    json_array_append_new (errors, entry);
}

// s_error records a problem with the field parent.key (or parent alone when
// key is NULL); the message is printf-style.
static void
s_error (check_t *check, const char *parent, const char *key, const char *format, ...)
{
    char message[512];
    va_list args;
    va_start (args, format);
    vsnprintf (message, sizeof message, format, args);
    va_end (args);

    // Keys come from the client and can be long: size the path to fit.
    char *field = NULL;
    if (key && parent && *parent) {
        size_t size = strlen (parent) + 1 + strlen (key) + 1;
        field = mem_alloc (size);
        snprintf (field, size, "%s.%s", parent, key);
    }
    else
        field = mem_strdup (key ? key : parent ? parent : "");
    s_errors_add (check->errors, field, message);
    free (field);
}

// s_name_in returns the index of name in the NULL-terminated list, or -1.
static int
s_name_in (const char *name, const char *const *list)
{
    for (int i = 0; list[i]; i++)
        if (strcmp (name, list[i]) == 0)
            return i;
    return -1;
}

// s_list_names writes "a, b, c" into buf, so messages can say what is allowed.
static void
s_list_names (const char *const *list, char *buf, size_t size)
{
    size_t used = 0;
    buf[0] = '\0';
    for (int i = 0; list[i] && used < size; i++)
        used += (size_t) snprintf (buf + used, size - used, "%s%s", i ? ", " : "", list[i]);
}

// s_unknown_fields reports each key of object not in allowed: a misspelt
// optional field must not be silently ignored.
static void
s_unknown_fields (check_t *check, json_t *object, const char *parent,
                  const char *const *allowed)
{
    char names[256];
    s_list_names (allowed, names, sizeof names);
    const char *key;
    json_t *value;
    json_object_foreach (object, key, value)
        if (s_name_in (key, allowed) < 0)
            s_error (check, parent, key, "unknown field (allowed: %s)", names);
}

// s_too_deep is true when value nests more than levels containers (itself
// included). Recursion stops at levels, so it is bounded whatever the input.
static bool
s_too_deep (json_t *value, int levels)
{
    if (!json_is_object (value) && !json_is_array (value))
        return false;
    if (levels <= 0)
        return true;
    if (json_is_array (value)) {
        for (size_t i = 0; i < json_array_size (value); i++)
            if (s_too_deep (json_array_get (value, i), levels - 1))
                return true;
        return false;
    }
    const char *key;
    json_t *child;
    json_object_foreach (value, key, child)
        if (s_too_deep (child, levels - 1))
            return true;
    return false;
}

// s_cstring returns the text of a JSON string, or NULL when value is not a
// string or holds a NUL byte (which would make C string compares lie).
static const char *
s_cstring (json_t *value)
{
    if (!json_is_string (value))
        return NULL;
    const char *text = json_string_value (value);
    return strlen (text) == json_string_length (value) ? text : NULL;
}

// s_int checks an optional integer field against [min, max]. Returns true
// when present and valid, with *result set. Reals (5.0) and booleans are not
// integers: a client sending them has a bug worth hearing about.
static bool
s_int (check_t *check, json_t *object, const char *parent, const char *key,
       json_int_t min, json_int_t max, json_int_t *result)
{
    json_t *value = json_object_get (object, key);
    if (!value)
        return false;
    if (json_is_integer (value) && json_integer_value (value) >= min
        && json_integer_value (value) <= max) {
        *result = json_integer_value (value);
        return true;
    }
    s_error (check, parent, key, "must be an integer from %lld to %lld",
             (long long) min, (long long) max);
    return false;
}

// s_check_url checks a required URL field of object.
static void
s_check_url (check_t *check, json_t *object, const char *parent, const char *key)
{
    json_t *value = json_object_get (object, key);
    if (!value)
        s_error (check, parent, key, "is required");
    else if (!json_is_string (value))
        s_error (check, parent, key, "must be a string");
    else {
        size_t len = json_string_length (value);
        const char *problem = len > S_MAX_URL_BYTES ? "must be at most 8192 bytes"
                              : url_problem (json_string_value (value), len, NULL);
        if (problem)
            s_error (check, parent, key, "%s", problem);
    }
}

// s_check_headers checks request.headers (common/httpfield.h): names are
// tokens, values strings to the grammar (no CR, LF or other control byte),
// and no reserved name. The gateway refuses the names that route a provider
// call on every kind (issue 10 #5, as first shipped): on a client's own URL
// they are harmless, and the worker lets them pass there, but a spec that
// names one is refused here whatever its kind.
static void
s_check_headers (check_t *check, json_t *headers, const char *parent)
{
    if (!json_is_object (headers)) {
        s_error (check, parent, NULL, "must be an object of strings");
        return;
    }
    const char *name;
    json_t *value;
    json_object_foreach (headers, name, value) {
        if (!httpfield_token (name, strlen (name))) {
            s_error (check, parent, name, "is not a valid header name (RFC 9110 token)");
            continue;
        }
        if (httpfield_is_reserved (name, false)) {
            s_error (check, parent, name, "is set by jobgate and cannot be given");
            continue;
        }
        if (httpfield_is_reserved (name, true)) {
            s_error (check, parent, name, "is reserved: it decides where or to whom the "
                     "request goes, which only the URL or the provider may decide");
            continue;
        }
        if (!json_is_string (value)) {
            s_error (check, parent, name, "must be a string");
            continue;
        }
        if (!httpfield_value_valid (json_string_value (value), json_string_length (value)))
            s_error (check, parent, name, "must not contain CR, LF or other control characters");
    }
}

// s_check_query checks request.query: an object of scalar values, each
// of which has one obvious rendering in a query string.
static void
s_check_query (check_t *check, json_t *query, const char *parent)
{
    if (!json_is_object (query)) {
        s_error (check, parent, NULL, "must be an object");
        return;
    }
    const char *key;
    json_t *value;
    json_object_foreach (query, key, value)
        if (!json_is_string (value) && !json_is_number (value) && !json_is_boolean (value))
            s_error (check, parent, key, "must be a string, number or boolean");
}

// s_check_http checks an http request: an absolute url without a provider,
// a path relative to its base_url with one.
static void
s_check_http (check_t *check, json_t *request, bool has_provider)
{
    json_t *method = json_object_get (request, "method");
    if (method) {
        const char *text = s_cstring (method);
        if (!text || s_name_in (text, s_methods) < 0)
            s_error (check, "request", "method",
                     "must be one of GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS");
    }
    if (has_provider) {
        if (json_object_get (request, "url"))
            s_error (check, "request", "url", "is not allowed with a provider; give "
                     "request.path, which is appended to the provider's base_url");
        json_t *path = json_object_get (request, "path");
        if (path && !json_is_string (path))
            s_error (check, "request", "path", "must be a string");
        else if (path) {
            const char *problem = urlpath_problem (json_string_value (path),
                                                   json_string_length (path));
            if (problem)
                s_error (check, "request", "path", "%s", problem);
        }
    }
    else {
        s_check_url (check, request, "request", "url");
        if (json_object_get (request, "path"))
            s_error (check, "request", "path", "is only allowed with a provider; "
                     "give an absolute request.url instead");
    }
    json_t *query = json_object_get (request, "query");
    if (query)
        s_check_query (check, query, "request.query");
    json_t *headers = json_object_get (request, "headers");
    if (headers)
        s_check_headers (check, headers, "request.headers");
    s_unknown_fields (check, request, "request", s_http_fields);
}

// s_check_crawl checks a crawl request: a URL and a size cap, nothing else.
static void
s_check_crawl (check_t *check, json_t *request)
{
    s_check_url (check, request, "request", "url");
    json_int_t max_bytes;
    s_int (check, request, "request", "max_bytes", 1, S_MAX_CRAWL_BYTES, &max_bytes);
    s_unknown_fields (check, request, "request", s_crawl_fields);
}

// s_scalar is true for a JSON value with one obvious rendering in a query
// string: a string, number or boolean (null means "leave it out").
static bool
s_scalar (json_t *value)
{
    return json_is_string (value) || json_is_number (value) || json_is_boolean (value)
           || json_is_null (value);
}

// s_check_search checks a search request; fields other than query and
// count go to the provider's request template as they are. A template that
// sends them as query parameters (GET, the default) can only carry scalars
// and arrays of scalars (a repeated key): anything else is refused here
// rather than failing later at the worker. A POST template sends a JSON
// body, where any value is fine.
static void
s_check_search (check_t *check, json_t *request, const config_provider_t *provider)
{
    json_t *query = json_object_get (request, "query");
    if (!query)
        s_error (check, "request", "query", "is required");
    else if (!json_is_string (query) || json_string_length (query) == 0)
        s_error (check, "request", "query", "must be a non-empty string");
    json_int_t count;
    s_int (check, request, "request", "count", 1, 100, &count);
    const char *method = provider ? json_string_value (json_object_get (provider->search, "method"))
                                  : NULL;
    if (method && strcmp (method, "POST") == 0)
        return;
    const char *key;
    json_t *value;
    json_object_foreach (request, key, value) {
        if (strcmp (key, "query") == 0 || strcmp (key, "count") == 0)
            continue;
        bool flat = s_scalar (value);
        if (json_is_array (value)) {
            flat = true;
            for (size_t i = 0; i < json_array_size (value); i++)
                if (!s_scalar (json_array_get (value, i)) || json_is_null (json_array_get (value, i)))
                    flat = false;
        }
        if (!flat)
            s_error (check, "request", key, "must be a string, number, boolean or an array of "
                     "them: this provider sends search parameters in the query string");
    }
}

// s_check_embeddings checks the part of an Embeddings body jobgate relies
// on (request.endpoint "embeddings"): the input, a string or an array.
static void
s_check_embeddings (check_t *check, json_t *request)
{
    json_t *input = json_object_get (request, "input");
    if (!input)
        s_error (check, "request", "input", "is required");
    else if (!(json_is_string (input) && json_string_length (input) > 0)
             && !(json_is_array (input) && json_array_size (input) > 0))
        s_error (check, "request", "input", "must be a non-empty string or array");
    if (json_is_true (json_object_get (request, "stream")))
        s_error (check, "request", "stream", "must not be true: embeddings are not streamed");
}

// s_check_llm checks the parts of a Chat Completions body jobgate relies
// on; the rest is the provider's business and passes through. The OpenAI
// endpoint called is request.endpoint: "chat/completions" (the default) or
// "embeddings" (the worker calls base_url + "/" + endpoint and does not
// send the field; docs/providers.md).
static void
s_check_llm (check_t *check, json_t *request)
{
    json_t *endpoint = json_object_get (request, "endpoint");
    const char *endpoint_name = json_string_value (endpoint);
    if (endpoint && (!endpoint_name || (strcmp (endpoint_name, "chat/completions") != 0
                                        && strcmp (endpoint_name, "embeddings") != 0))) {
        s_error (check, "request", "endpoint", "must be \"chat/completions\" or \"embeddings\"");
        return;
    }
    if (endpoint_name && strcmp (endpoint_name, "embeddings") == 0) {
        s_check_embeddings (check, request);
        json_t *model = json_object_get (request, "model");
        if (!model || !json_is_string (model))
            s_error (check, "request", "model", "must be a string (the embedding model)");
        return;
    }
    json_t *messages = json_object_get (request, "messages");
    if (!messages)
        s_error (check, "request", "messages", "is required");
    else if (!json_is_array (messages) || json_array_size (messages) == 0)
        s_error (check, "request", "messages", "must be a non-empty array of message objects");
    else
        for (size_t i = 0; i < json_array_size (messages); i++) {
            char parent[64];
            snprintf (parent, sizeof parent, "request.messages[%zu]", i);
            json_t *message = json_array_get (messages, i);
            json_t *role = json_object_get (message, "role");
            if (!json_is_object (message))
                s_error (check, parent, NULL, "must be an object");
            else if (!role)
                s_error (check, parent, "role", "is required");
            else if (!json_is_string (role) || json_string_length (role) == 0)
                s_error (check, parent, "role", "must be a non-empty string");
        }
    json_t *model = json_object_get (request, "model");
    if (model && !json_is_string (model))
        s_error (check, "request", "model", "must be a string");
    json_t *stream = json_object_get (request, "stream");
    if (stream && !json_is_boolean (stream))
        s_error (check, "request", "stream", "must be true or false");
}

// s_check_kind_and_provider checks kind and provider, which decide how the
// request is read.
static void
s_check_kind_and_provider (check_t *check, fields_t *fields)
{
    json_t *kind = fields->values[S_KIND];
    fields->kind = -1;
    if (!kind && !fields->too_deep[S_KIND])
        s_error (check, "kind", NULL, "is required");
    else if (kind) {
        const char *text = s_cstring (kind);
        fields->kind = text ? s_name_in (text, s_kinds) : -1;
        if (fields->kind < 0)
            s_error (check, "kind", NULL, "must be one of http, crawl, search, llm");
    }
    json_t *provider = fields->values[S_PROVIDER];
    if (provider) {
        const char *name = s_cstring (provider);
        if (!json_is_string (provider))
            s_error (check, "provider", NULL, "must be a string");
        else if (fields->kind == S_CRAWL)
            s_error (check, "provider", NULL,
                     "is not allowed for crawl, which fetches request.url directly");
        else if (!name || !(fields->provider = config_provider (check->config, name)))
            s_error (check, "provider", NULL,
                     "unknown provider (GET /v1/providers lists the configured ones)");
    }
    else if (!fields->too_deep[S_PROVIDER]
             && (fields->kind == S_SEARCH || fields->kind == S_LLM))
        s_error (check, "provider", NULL, "is required for kind %s", s_kinds[fields->kind]);
}

// s_check_metadata checks metadata: an object echoed back with the job, so
// its size is capped where it is stored, as compact JSON.
static void
s_check_metadata (check_t *check, json_t *metadata)
{
    if (!json_is_object (metadata)) {
        s_error (check, "metadata", NULL, "must be an object");
        return;
    }
    size_t size = json_dumpb (metadata, NULL, 0, JSON_COMPACT);
    if (size > S_MAX_METADATA_BYTES)
        s_error (check, "metadata", NULL,
                 "must be at most 4096 bytes as compact JSON (it is %zu)", size);
}

// s_check_spec checks every field of spec into fields, recording problems.
static void
s_check_spec (check_t *check, json_t *spec, fields_t *fields)
{
    // Depth first: nothing below may look into a value nested too deep.
    for (int i = 0; i < S_FIELD_COUNT; i++) {
        fields->values[i] = json_object_get (spec, s_top_fields[i]);
        if (fields->values[i] && s_too_deep (fields->values[i], JOBSPEC_MAX_DEPTH - 1)) {
            s_error (check, s_top_fields[i], NULL,
                     "is nested deeper than %d levels of JSON", JOBSPEC_MAX_DEPTH);
            fields->values[i] = NULL;
            fields->too_deep[i] = true;
        }
    }
    s_check_kind_and_provider (check, fields);

    json_t *request = fields->values[S_REQUEST];
    if (!request && !fields->too_deep[S_REQUEST])
        s_error (check, "request", NULL, "is required");
    else if (request && !json_is_object (request))
        s_error (check, "request", NULL, "must be an object");
    else if (request) {
        // A provider that failed its own check still says what was meant:
        // judge url against path by its presence, not its validity.
        bool has_provider = fields->values[S_PROVIDER] || fields->too_deep[S_PROVIDER];
        if (fields->kind == S_HTTP)
            s_check_http (check, request, has_provider);
        else if (fields->kind == S_CRAWL)
            s_check_crawl (check, request);
        else if (fields->kind == S_SEARCH)
            s_check_search (check, request, fields->provider);
        else if (fields->kind == S_LLM)
            s_check_llm (check, request);
    }

    fields->priority = 5;
    s_int (check, spec, "", "priority", 0, 9, &fields->priority);
    // A provider's configured timeout is the default for its jobs.
    fields->timeout_ms = S_DEFAULT_TIMEOUT_MS;
    if (fields->provider && fields->provider->timeout_ms > 0)
        fields->timeout_ms = fields->provider->timeout_ms < S_MAX_TIMEOUT_MS
                           ? fields->provider->timeout_ms : S_MAX_TIMEOUT_MS;
    s_int (check, spec, "", "timeout_ms", 1, S_MAX_TIMEOUT_MS, &fields->timeout_ms);
    fields->max_attempts = 3;
    s_int (check, spec, "", "max_attempts", 1, 10, &fields->max_attempts);
    fields->expire_after_ms = 0;
    s_int (check, spec, "", "expire_after_ms", 1, S_MAX_EXPIRE_MS, &fields->expire_after_ms);

    json_t *callback = fields->values[S_CALLBACK];
    if (callback && !json_is_object (callback))
        s_error (check, "callback", NULL, "must be an object with a url");
    else if (callback) {
        s_check_url (check, callback, "callback", "url");
        s_unknown_fields (check, callback, "callback", s_callback_fields);
    }
    if (fields->values[S_METADATA])
        s_check_metadata (check, fields->values[S_METADATA]);
    // cache (SPEC §3.2): {"ttl_ms": N}, N = 0 turns off the provider's
    // default for this job.
    json_t *cache = fields->values[S_CACHE];
    json_int_t ttl_ms = 0;
    if (cache && !json_is_object (cache))
        s_error (check, "cache", NULL, "must be an object with ttl_ms");
    else if (cache) {
        if (!json_object_get (cache, "ttl_ms"))
            s_error (check, "cache", "ttl_ms", "is required");
        s_int (check, cache, "cache", "ttl_ms", 0, S_MAX_CACHE_TTL_MS, &ttl_ms);
        s_unknown_fields (check, cache, "cache", s_cache_fields);
    }
    s_unknown_fields (check, spec, "", s_top_fields);
}

// s_reals_short is true when every real in value survives a round trip
// through 15 significant digits, so 0.7 can be written back as 0.7 rather
// than 0.69999999999999996. value is known to nest at most 64 levels.
static bool
s_reals_short (json_t *value)
{
    if (json_is_real (value)) {
        char text[32];
        snprintf (text, sizeof text, "%.15g", json_real_value (value));
        return strtod (text, NULL) == json_real_value (value);
    }
    if (json_is_array (value)) {
        for (size_t i = 0; i < json_array_size (value); i++)
            if (!s_reals_short (json_array_get (value, i)))
                return false;
        return true;
    }
    const char *key;
    json_t *child;
    if (json_is_object (value))
        json_object_foreach (value, key, child)
            if (!s_reals_short (child))
                return false;
    return true;
}

// s_normalize renders the spec with defaults filled in as compact JSON.
// Returns a new string (a valid spec always renders: common/mem.h).
static char *
s_normalize (json_t *spec, const fields_t *fields)
{
    json_t *out = json_object ();
    // A shallow copy: the defaults go in without touching the caller's tree.
    json_t *request = json_copy (json_object_get (spec, "request"));
    if (fields->kind == S_HTTP && !json_object_get (request, "method"))
        json_object_set_new (request, "method", json_string ("GET"));
    if (fields->kind == S_CRAWL && !json_object_get (request, "max_bytes"))
        json_object_set_new (request, "max_bytes", json_integer (S_DEFAULT_CRAWL_BYTES));
    json_object_set_new (out, "kind", json_string (s_kinds[fields->kind]));
    if (fields->provider)
        json_object_set_new (out, "provider", json_string (fields->provider->name));
    json_object_set_new (out, "request", request);
    json_object_set_new (out, "priority", json_integer (fields->priority));
    json_object_set_new (out, "timeout_ms", json_integer (fields->timeout_ms));
    json_object_set_new (out, "max_attempts", json_integer (fields->max_attempts));
    if (fields->expire_after_ms)
        json_object_set_new (out, "expire_after_ms", json_integer (fields->expire_after_ms));
    if (fields->values[S_CALLBACK])
        json_object_set (out, "callback", fields->values[S_CALLBACK]);
    if (fields->values[S_METADATA])
        json_object_set (out, "metadata", fields->values[S_METADATA]);
    if (fields->values[S_CACHE])
        json_object_set (out, "cache", fields->values[S_CACHE]);
    size_t flags = JSON_COMPACT;
    if (s_reals_short (out))
        flags |= JSON_REAL_PRECISION (15);
    char *text = json_dumps (out, flags);
    json_decref (out);
    return text;
}

// s_errors_one returns a new errors array holding one entry.
static json_t *
s_errors_one (const char *field, const char *message)
{
    json_t *errors = json_array ();
    s_errors_add (errors, field, message);
    return errors;
}

// jobspec_from_json checks everything first and builds the job only from a
// spec found valid, so a refusal never leaves anything half-made.
job_t *
jobspec_from_json (json_t *spec, const config_t *config, json_t **errors)
{
    assert (config && errors);
    if (!json_is_object (spec)) {
        *errors = s_errors_one ("", "must be a JSON object");
        return NULL;
    }
    check_t check = { .config = config, .errors = json_array () };
    fields_t fields = { .kind = -1 };
    s_check_spec (&check, spec, &fields);
    if (json_array_size (check.errors) > 0) {
        *errors = check.errors;
        return NULL;
    }
    json_decref (check.errors);
    job_t *job = job_new ();
    job->spec = s_normalize (spec, &fields);
    job_set_str (&job->kind, s_kinds[fields.kind]);
    job_set_str (&job->provider, fields.provider ? fields.provider->name : NULL);
    job->priority = (int) fields.priority;
    job->timeout_ms = fields.timeout_ms;
    job->max_attempts = (int) fields.max_attempts;
    job->expire_after_ms = fields.expire_after_ms;
    // Kept apart so that reads echo it without parsing the spec.
    if (fields.values[S_METADATA])
        job->metadata = json_dumps (fields.values[S_METADATA], JSON_COMPACT);
    return job;
}

// s_position counts the line and column (as jansson does: characters, from
// 1) of byte offset in body.
static void
s_position (const char *body, size_t offset, int *line, int *column)
{
    *line = 1;
    *column = 0;
    for (size_t i = 0; i <= offset; i++) {
        unsigned char c = (unsigned char) body[i];
        if (c == '\n') {
            (*line)++;
            *column = 0;
        }
        else if ((c & 0xc0) != 0x80)
            (*column)++;
    }
}

// jobspec_load refuses what jansson would take but the gateway must not:
// deep nesting (checked before parsing), duplicates, a bare scalar or array.
json_t *
jobspec_load (const char *body, size_t len, json_t **errors)
{
    assert (errors);
    char message[320];
    int line, column;
    size_t blank = 0;
    while (blank < len && strchr (" \t\r\n", body[blank]) && body[blank])
        blank++;
    if (blank == len) {
        *errors = s_errors_one ("", "the body is empty; a JSON object was expected");
        return NULL;
    }
    // The one JSON policy (common/jsontext.h), measured before anything is
    // built: what the gateway accepts, the broker stores and the worker reads.
    jsontext_shape_t shape = jsontext_scan (body, len, JOBSPEC_MAX_DEPTH, JSONTEXT_MAX_VALUES);
    if (!shape.within) {
        s_position (body, shape.offset, &line, &column);
        if (shape.values > JSONTEXT_MAX_VALUES)
            snprintf (message, sizeof message, "invalid JSON at line %d, column %d: more than "
                      "%d values", line, column, JSONTEXT_MAX_VALUES);
        else
            snprintf (message, sizeof message, "invalid JSON at line %d, column %d: "
                      "nested deeper than %d levels", line, column, JOBSPEC_MAX_DEPTH);
        *errors = s_errors_one ("", message);
        return NULL;
    }
    json_error_t error;
    json_t *json = json_loadb (body, len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &error);
    if (!json) {
        snprintf (message, sizeof message, "invalid JSON at line %d, column %d: %s",
                  error.line, error.column, error.text);
        *errors = s_errors_one ("", message);
        return NULL;
    }
    if (!json_is_object (json)) {
        const char *what = json_is_array (json) ? "an array"
                         : json_is_string (json) ? "a string"
                         : json_is_number (json) ? "a number"
                         : json_is_boolean (json) ? "a boolean" : "null";
        snprintf (message, sizeof message, "the body must be a JSON object, not %s", what);
        json_decref (json);
        *errors = s_errors_one ("", message);
        return NULL;
    }
    return json;
}

// jobspec_parse is the whole check of one POST /v1/jobs body.
job_t *
jobspec_parse (const char *body, size_t len, const config_t *config, json_t **errors)
{
    assert (config && errors);
    json_t *spec = jobspec_load (body, len, errors);
    if (!spec)
        return NULL;
    job_t *job = jobspec_from_json (spec, config, errors);
    json_decref (spec);
    return job;
}

// s_fields_of joins the fields of errors as "a;b;" so a test can compare
// the whole list at once.
static void
s_fields_of (json_t *errors, char *buf, size_t size)
{
    size_t used = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < json_array_size (errors) && used < size; i++) {
        json_t *field = json_object_get (json_array_get (errors, i), "field");
        used += (size_t) snprintf (buf + used, size - used, "%s;",
                                   json_is_string (field) ? json_string_value (field) : "?");
    }
}

// s_nested returns a spec whose metadata nests levels objects, or a body of
// levels arrays when bare: depth tests at and just over the limit.
static char *
s_nested (int levels, bool bare)
{
    const char *head = "{\"kind\":\"http\",\"request\":{\"url\":\"http://a.example/\"},\"metadata\":";
    size_t size = strlen (head) + (size_t) levels * 6 + 8;
    char *text = mem_alloc (size);
    size_t used = 0;
    if (!bare) {
        memcpy (text, head, strlen (head));
        used = strlen (head);
    }
    for (int i = 0; i < levels; i++) {
        memcpy (text + used, bare ? "[" : "{\"a\":", bare ? 1 : 5);
        used += bare ? 1 : 5;
    }
    text[used++] = '1';
    for (int i = 0; i < levels; i++)
        text[used++] = bare ? ']' : '}';
    if (!bare)
        text[used++] = '}';
    text[used] = '\0';
    return text;
}

// s_repeat returns format with %s replaced by count copies of unit.
static char *
s_repeat (const char *format, const char *unit, size_t count)
{
    size_t size = strlen (format) + strlen (unit) * count + 1;
    char *fill = mem_alloc (strlen (unit) * count + 1);
    char *text = mem_alloc (size);
    fill[0] = '\0';
    for (size_t i = 0; i < count; i++)
        memcpy (fill + i * strlen (unit), unit, strlen (unit) + 1);
    snprintf (text, size, format, fill);
    free (fill);
    return text;
}

// jobspec_test checks the table of bodies below, the normalized output,
// the depth and size limits.
void
jobspec_test (bool verbose)
{
    if (verbose)
        printf (" * jobspec: ");

    config_provider_t providers[] = {
        { .name = (char *) "mock", .base_url = (char *) "http://127.0.0.1:9" },
        { .name = (char *) "slow", .base_url = (char *) "http://127.0.0.1:9",
          .timeout_ms = 120000 },
        { .name = (char *) "post", .base_url = (char *) "http://127.0.0.1:9",
          .search = json_pack ("{s:s}", "method", "POST") },
    };
    config_t config = { .providers = providers, .providers_count = 3 };

    // Each case: a body and the fields it must report, in order ("a;b;"),
    // or NULL when it must be accepted; message, when set, must appear in
    // the first error.
    struct {
        const char *body;       // request body, NUL-terminated here
        const char *fields;     // expected error fields, or NULL
        const char *message;    // expected in the first message, or NULL
    } cases[] = {
        // Accepted.
        { "{\"kind\":\"http\",\"request\":{\"url\":\"https://api.example.com/v1?q=1\"}}", NULL, NULL },
        { "{\"kind\":\"http\",\"provider\":\"mock\",\"request\":{\"path\":\"/x\",\"method\":\"POST\","
          "\"query\":{\"a\":\"b\",\"n\":1,\"f\":true},\"headers\":{\"X-Trace\":\"1\"},\"body\":{\"k\":[1,2]}},"
          "\"priority\":9,\"timeout_ms\":600000,\"max_attempts\":10,\"expire_after_ms\":604800000,"
          "\"callback\":{\"url\":\"http://hooks.example:8080/cb\"},\"metadata\":{\"user\":\"u1\"}}", NULL, NULL },
        { "{\"kind\":\"crawl\",\"request\":{\"url\":\"HTTP://[::1]:8080/\",\"max_bytes\":67108864}}", NULL, NULL },
        { "{\"kind\":\"search\",\"provider\":\"mock\",\"request\":{\"query\":\"zeromq\",\"count\":100,\"lang\":\"en\"}}", NULL, NULL },
        { "{\"kind\":\"llm\",\"provider\":\"slow\",\"request\":{\"model\":\"m\",\"stream\":true,"
          "\"temperature\":0.7,\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}}", NULL, NULL },
        { " \r\n{\"kind\":\"http\",\"request\":{\"url\":\"http://a.example\"},\"priority\":0}\n", NULL, NULL },
        // An internationalised host is a host: the worker calls it (common/url.h).
        { "{\"kind\":\"crawl\",\"request\":{\"url\":\"http://b\\u00fccher.example/\"},"
          "\"callback\":{\"url\":\"https://\xe4\xbe\x8b\xe3\x81\x88.example/cb\"}}", NULL, NULL },
        // Bodies that are not a JSON object.
        { "", ";", "empty" },
        { "   ", ";", "empty" },
        { "{\"kind\":\"http\"", ";", "line 1, column" },
        { "[]", ";", "not an array" },
        { "42", ";", "not a number" },
        { "\"http\"", ";", "not a string" },
        { "null", ";", "not null" },
        { "{\"kind\":\"http\",\"kind\":\"llm\",\"request\":{}}", ";", "duplicate" },
        { "{\"kind\":\"http\xff\",\"request\":{}}", ";", "byte 0xff" },
        { "{\"kind\":\"http\",\"request\":{}} {}", ";", "end of file expected" },
        { "{\"kind\":\"http\",\"metadata\":{\"a\":\"\\u0000\"}}", ";", "\\u0000" },
        // Missing, unknown and mistyped top-level fields.
        { "{}", "kind;request;", "is required" },
        { "{\"kind\":\"ftp\",\"request\":{}}", "kind;", "must be one of http, crawl, search, llm" },
        { "{\"kind\":7,\"request\":{}}", "kind;", NULL },
        { "{\"kind\":\"http\",\"request\":[]}", "request;", "must be an object" },
        { "{\"kind\":\"http\",\"request\":{\"url\":\"http://a.example\"},\"priorty\":1}", "priorty;", "unknown field" },
        { "{\"kind\":\"http\",\"request\":{\"url\":\"http://a.example\"},\"priority\":5.0}", "priority;",
          "must be an integer from 0 to 9" },
        { "{\"kind\":\"http\",\"request\":{\"url\":\"http://a.example\"},\"priority\":true}", "priority;", NULL },
        { "{\"kind\":\"http\",\"request\":{\"url\":\"http://a.example\"},\"priority\":10}", "priority;", NULL },
        { "{\"kind\":\"http\",\"request\":{\"url\":\"http://a.example\"},\"priority\":null}", "priority;", NULL },
        { "{\"kind\":\"http\",\"request\":{\"url\":\"http://a.example\"},\"timeout_ms\":0,"
          "\"max_attempts\":11,\"expire_after_ms\":604800001}", "timeout_ms;max_attempts;expire_after_ms;", NULL },
        { "{\"kind\":\"http\",\"request\":{\"url\":\"http://a.example\"},\"timeout_ms\":\"5000\"}", "timeout_ms;", NULL },
        // URLs.
        { "{\"kind\":\"http\",\"request\":{}}", "request.url;", "is required" },
        { "{\"kind\":\"http\",\"request\":{\"url\":\"ftp://a.example/f\"}}", "request.url;", "http:// or https://" },
        { "{\"kind\":\"crawl\",\"request\":{\"url\":\"file:///etc/passwd\"}}", "request.url;", NULL },
        { "{\"kind\":\"crawl\",\"request\":{\"url\":\"javascript:alert(1)\"}}", "request.url;", NULL },
        { "{\"kind\":\"http\",\"request\":{\"url\":\"http://a.example/a b\"}}", "request.url;", "spaces" },
        { "{\"kind\":\"http\",\"request\":{\"url\":\"http:///path\"}}", "request.url;", "host" },
        { "{\"kind\":\"http\",\"request\":{\"url\":\"http://u:p@a.example/\"}}", "request.url;", "credentials" },
        { "{\"kind\":\"http\",\"request\":{\"url\":\"http://a.example:99999/\"}}", "request.url;", "port" },
        { "{\"kind\":\"http\",\"request\":{\"url\":\"http://a.example/\\u00e9\"}}", "request.url;", "ASCII" },
        { "{\"kind\":\"http\",\"request\":{\"url\":\"http://a.example/\\r\\nX: y\"}}", "request.url;", NULL },
        { "{\"kind\":\"http\",\"request\":{\"url\":\"https://a.example\"},\"callback\":{\"url\":\"gopher://x\",\"secret\":\"s\"}}",
          "callback.url;callback.secret;", NULL },
        { "{\"kind\":\"http\",\"request\":{\"url\":\"https://a.example\"},\"callback\":\"http://x\"}", "callback;", NULL },
        // Providers.
        { "{\"kind\":\"search\",\"provider\":\"nope\",\"request\":{\"query\":\"q\"}}", "provider;", "unknown provider" },
        { "{\"kind\":\"search\",\"request\":{\"query\":\"q\"}}", "provider;", "required" },
        { "{\"kind\":\"llm\",\"provider\":[\"mock\"],\"request\":{\"messages\":[{\"role\":\"user\"}]}}", "provider;", NULL },
        { "{\"kind\":\"crawl\",\"provider\":\"mock\",\"request\":{\"url\":\"http://a.example\"}}", "provider;", "crawl" },
        { "{\"kind\":\"http\",\"provider\":\"mock\",\"request\":{\"url\":\"http://a.example\"}}", "request.url;", "request.path" },
        { "{\"kind\":\"http\",\"request\":{\"url\":\"http://a.example\",\"path\":\"/x\"}}", "request.path;", NULL },
        { "{\"kind\":\"http\",\"provider\":\"mock\",\"request\":{\"path\":\"x\"}}", "request.path;", "start with" },
        { "{\"kind\":\"http\",\"provider\":\"mock\",\"request\":{\"path\":\"/v1/../admin\"}}", "request.path;", ".." },
        { "{\"kind\":\"http\",\"provider\":\"mock\",\"request\":{\"path\":\"/v1/%2E%2e/admin\"}}", "request.path;", NULL },
        { "{\"kind\":\"http\",\"provider\":\"mock\",\"request\":{\"path\":\"/v1/..x/a.b?next=../\"}}", NULL, NULL },
        // The path may not leave base_url however the upstream decodes it.
        { "{\"kind\":\"http\",\"provider\":\"mock\",\"request\":{\"path\":\"/a/..;/b\"}}", "request.path;", ".." },
        { "{\"kind\":\"http\",\"provider\":\"mock\",\"request\":{\"path\":\"/a%2f..%2f..%2fb\"}}", "request.path;", ".." },
        { "{\"kind\":\"http\",\"provider\":\"mock\",\"request\":{\"path\":\"/a/%252e%252e/b\"}}", "request.path;", ".." },
        // Headers that decide where or to whom the request goes, every spelling.
        { "{\"kind\":\"http\",\"provider\":\"mock\",\"request\":{\"path\":\"/x\",\"headers\":{\"Host\":\"evil.example\","
          "\"X-Forwarded-Host\":\"e\",\"forwarded\":\"host=e\",\"X-Trace\":\"1\"}}}",
          "request.headers.Host;request.headers.X-Forwarded-Host;request.headers.forwarded;", "reserved" },
        { "{\"kind\":\"http\",\"request\":{\"url\":\"http://a.example\",\"headers\":{\"HOST\":\"b.example\"}}}",
          "request.headers.HOST;", "reserved" },
        { "{\"kind\":\"http\",\"request\":{\"url\":\"http://a.example\",\"headers\":{\"X-Forwarded-For\":\"1\","
          "\"Proxy-Authorization\":\"x\",\"Via\":\"1.1 a\",\"TE\":\"trailers\"}}}",
          "request.headers.X-Forwarded-For;request.headers.Proxy-Authorization;request.headers.Via;"
          "request.headers.TE;", "reserved" },
        // Search parameters a query string cannot carry.
        { "{\"kind\":\"search\",\"provider\":\"mock\",\"request\":{\"query\":\"q\",\"filter\":{\"a\":1},"
          "\"tags\":[{\"t\":1}],\"ids\":[1,\"2\",true],\"lang\":null,\"deep\":[[1]]}}",
          "request.filter;request.tags;request.deep;", "query string" },
        { "{\"kind\":\"search\",\"provider\":\"post\",\"request\":{\"query\":\"q\",\"filter\":{\"a\":[{\"b\":1}]}}}",
          NULL, NULL },
        // Kind-specific request fields.
        { "{\"kind\":\"http\",\"request\":{\"url\":\"http://a.example\",\"method\":\"get\"}}", "request.method;", NULL },
        { "{\"kind\":\"http\",\"request\":{\"url\":\"http://a.example\",\"headers\":{\"Bad Name\":\"v\","
          "\"X-Ok\":\"a\\r\\nInjected: 1\",\"X-Num\":1,\"Content-Length\":\"5\"}}}",
          "request.headers.Bad Name;request.headers.X-Ok;request.headers.X-Num;request.headers.Content-Length;", NULL },
        { "{\"kind\":\"http\",\"request\":{\"url\":\"http://a.example\",\"query\":{\"a\":[1],\"b\":null}}}",
          "request.query.a;request.query.b;", NULL },
        { "{\"kind\":\"http\",\"request\":{\"url\":\"http://a.example\",\"timeout\":5}}", "request.timeout;", "unknown field" },
        { "{\"kind\":\"crawl\",\"request\":{\"url\":\"http://a.example\",\"max_bytes\":0,\"depth\":2}}",
          "request.max_bytes;request.depth;", NULL },
        { "{\"kind\":\"search\",\"provider\":\"mock\",\"request\":{\"query\":\"\",\"count\":101}}",
          "request.query;request.count;", NULL },
        { "{\"kind\":\"llm\",\"provider\":\"mock\",\"request\":{\"messages\":[]}}", "request.messages;", NULL },
        { "{\"kind\":\"llm\",\"provider\":\"mock\",\"request\":{\"messages\":[{\"role\":\"user\"},{\"content\":\"x\"},"
          "7,{\"role\":1}],\"model\":5,\"stream\":\"yes\"}}",
          "request.messages[1].role;request.messages[2];request.messages[3].role;request.model;request.stream;", NULL },
        { "{\"kind\":\"llm\",\"provider\":\"mock\",\"request\":{}}", "request.messages;", NULL },
        // The OpenAI endpoint an llm job calls: chat (messages) or embeddings (input).
        { "{\"kind\":\"llm\",\"provider\":\"mock\",\"request\":{\"endpoint\":\"images\",\"prompt\":\"x\"}}",
          "request.endpoint;", "embeddings" },
        { "{\"kind\":\"llm\",\"provider\":\"mock\",\"request\":{\"endpoint\":\"embeddings\",\"model\":\"e\","
          "\"input\":[\"a\"]}}", NULL, NULL },
        { "{\"kind\":\"llm\",\"provider\":\"mock\",\"request\":{\"endpoint\":\"embeddings\",\"input\":\"\","
          "\"stream\":true}}", "request.input;request.stream;request.model;", NULL },
        { "{\"kind\":\"llm\",\"provider\":\"mock\",\"request\":{\"endpoint\":\"chat/completions\"}}",
          "request.messages;", NULL },
        // Metadata.
        { "{\"kind\":\"http\",\"request\":{\"url\":\"http://a.example\"},\"metadata\":[1]}", "metadata;", NULL },
        // Cache (SPEC §3.2): ttl_ms from 0 (off) to 7 days, nothing else.
        { "{\"kind\":\"http\",\"request\":{\"url\":\"http://a.example\"},\"cache\":{\"ttl_ms\":0}}", NULL, NULL },
        { "{\"kind\":\"http\",\"request\":{\"url\":\"http://a.example\"},\"cache\":{\"ttl_ms\":604800000}}", NULL, NULL },
        { "{\"kind\":\"http\",\"request\":{\"url\":\"http://a.example\"},\"cache\":{\"ttl_ms\":604800001}}",
          "cache.ttl_ms;", "must be an integer from 0 to 604800000" },
        { "{\"kind\":\"http\",\"request\":{\"url\":\"http://a.example\"},\"cache\":{\"ttl_ms\":-1,\"scope\":\"all\"}}",
          "cache.ttl_ms;cache.scope;", NULL },
        { "{\"kind\":\"http\",\"request\":{\"url\":\"http://a.example\"},\"cache\":{}}", "cache.ttl_ms;", "is required" },
        { "{\"kind\":\"http\",\"request\":{\"url\":\"http://a.example\"},\"cache\":60000}", "cache;", NULL },
        { "{\"kind\":\"http\",\"request\":{\"url\":\"http://a.example\"},\"cache\":{\"ttl_ms\":1.5}}", "cache.ttl_ms;", NULL },
        // Several errors at once: all listed, in a stable order.
        { "{\"kind\":\"http\",\"provider\":\"ghost\",\"request\":{\"url\":\"file:///x\",\"path\":\"/ok\"},"
          "\"priority\":-1,\"max_attempts\":0,\"callback\":{},\"color\":\"red\",\"size\":1}",
          "provider;request.url;priority;max_attempts;callback.url;color;size;", NULL },
    };
    size_t count = sizeof cases / sizeof cases[0];
    assert (count >= 40);
    for (size_t i = 0; i < count; i++) {
        json_t *errors = NULL;
        job_t *job = jobspec_parse (cases[i].body, strlen (cases[i].body), &config, &errors);
        char fields[512];
        s_fields_of (errors, fields, sizeof fields);
        if (cases[i].fields == NULL ? (job == NULL || errors != NULL)
                                    : (job != NULL || strcmp (fields, cases[i].fields) != 0)) {
            char *dump = errors ? json_dumps (errors, 0) : NULL;
            fprintf (stderr, "jobspec case %zu: %s\n  expected [%s], got [%s] %s\n", i,
                     cases[i].body, cases[i].fields ? cases[i].fields : "accepted",
                     job ? "accepted" : fields, dump ? dump : "");
            free (dump);
            assert (false);
        }
        if (cases[i].message) {
            const char *message = json_string_value (
                json_object_get (json_array_get (errors, 0), "message"));
            if (!message || !strstr (message, cases[i].message)) {
                fprintf (stderr, "jobspec case %zu: message '%s' lacks '%s'\n", i,
                         message ? message : "", cases[i].message);
                assert (false);
            }
        }
        job_destroy (&job);
        json_decref (errors);
    }

    // Defaults are filled in and the normalized spec is compact JSON.
    json_t *errors = NULL;
    const char *body = "{ \"kind\": \"http\", \"request\": {\"url\": \"http://a.example\"}, \"metadata\": {\"t\": 0.7} }";
    job_t *job = jobspec_parse (body, strlen (body), &config, &errors);
    assert (job && !errors);
    assert (strcmp (job->kind, "http") == 0 && job->provider == NULL);
    assert (job->priority == 5 && job->timeout_ms == 30000 && job->max_attempts == 3);
    assert (job->expire_after_ms == 0);
    assert (strcmp (job->spec, "{\"kind\":\"http\",\"request\":{\"url\":\"http://a.example\",\"method\":\"GET\"},"
                    "\"priority\":5,\"timeout_ms\":30000,\"max_attempts\":3,\"metadata\":{\"t\":0.7}}") == 0);
    job_destroy (&job);
    body = "{\"kind\":\"crawl\",\"request\":{\"url\":\"https://a.example\"},\"expire_after_ms\":1000,\"priority\":1}";
    job = jobspec_parse (body, strlen (body), &config, &errors);
    assert (job && job->priority == 1 && job->expire_after_ms == 1000);
    assert (strstr (job->spec, "\"max_bytes\":2097152"));
    job_destroy (&job);
    // The cache field is kept as given: the broker reads it (SPEC §3.2).
    body = "{\"kind\":\"http\",\"request\":{\"url\":\"https://a.example\"},\"cache\":{\"ttl_ms\":60000}}";
    job = jobspec_parse (body, strlen (body), &config, &errors);
    assert (job && strstr (job->spec, ",\"cache\":{\"ttl_ms\":60000}}"));
    job_destroy (&job);
    // A provider's own timeout is the default for its jobs.
    body = "{\"kind\":\"llm\",\"provider\":\"slow\",\"request\":{\"messages\":[{\"role\":\"user\"}]}}";
    job = jobspec_parse (body, strlen (body), &config, &errors);
    assert (job && job->timeout_ms == 120000 && strcmp (job->provider, "slow") == 0);
    assert (strstr (job->spec, "\"provider\":\"slow\""));
    job_destroy (&job);

    // Bodies are bytes: an embedded NUL or a length shorter than the text.
    body = "{\"kind\":\"http\",\"request\":{\"url\":\"http://a.example\"}}";
    job = jobspec_parse (body, strlen (body) - 1, &config, &errors);
    assert (!job && json_array_size (errors) == 1);
    json_decref (errors);
    errors = NULL;
    job = jobspec_parse ("{\"kind\":\0\"http\"}", 16, &config, &errors);
    assert (!job && json_array_size (errors) == 1);
    json_decref (errors);
    errors = NULL;

    // Depth: 64 levels pass, 65 do not, 100,000 are refused without recursion.
    char *text = s_nested (JOBSPEC_MAX_DEPTH - 1, false);
    job = jobspec_parse (text, strlen (text), &config, &errors);
    assert (job && !errors);
    job_destroy (&job);
    free (text);
    text = s_nested (JOBSPEC_MAX_DEPTH, false);
    job = jobspec_parse (text, strlen (text), &config, &errors);
    assert (!job && json_array_size (errors) == 1);
    assert (strstr (json_string_value (json_object_get (json_array_get (errors, 0), "message")),
                    "deeper than 64 levels"));
    json_decref (errors);
    errors = NULL;
    // The same document built by hand, as a batch hands it over, is caught
    // by the tree walk and blamed on the field.
    json_t *spec = json_loads (text, 0, NULL);
    assert (spec);
    job = jobspec_from_json (spec, &config, &errors);
    char fields[512];
    s_fields_of (errors, fields, sizeof fields);
    assert (!job && strcmp (fields, "metadata;") == 0);
    json_decref (errors);
    errors = NULL;
    json_decref (spec);
    free (text);
    text = s_nested (100000, true);
    job = jobspec_parse (text, strlen (text), &config, &errors);
    assert (!job && json_array_size (errors) == 1);
    json_decref (errors);
    errors = NULL;
    // Values: the JSON policy's count, before anything is built (a body
    // over it would cost the gateway's loop, and no worker would read it).
    free (text);
    size_t values = JSONTEXT_MAX_VALUES + 1;
    text = mem_alloc (64 + 2 * values);
    size_t at = (size_t) sprintf (text, "{\"kind\":\"http\",\"request\":{\"url\":\"http://a/\",\"body\":[");
    for (size_t i = 0; i < values; i++) {
        text[at++] = '0';
        text[at++] = ',';
    }
    memcpy (text + at - 1, "]}}", 4);
    job = jobspec_parse (text, strlen (text), &config, &errors);
    assert (!job && json_array_size (errors) == 1);
    assert (strstr (json_string_value (json_object_get (json_array_get (errors, 0), "message")),
                    "more than 25000 values"));
    json_decref (errors);
    errors = NULL;
    // Brackets inside strings do not count.
    free (text);
    text = s_repeat ("{\"kind\":\"http\",\"request\":{\"url\":\"http://a.example\"},"
                     "\"metadata\":{\"s\":\"%s\"}}", "[{", 200);
    job = jobspec_parse (text, strlen (text), &config, &errors);
    assert (job && !errors);
    job_destroy (&job);
    free (text);

    // Size limits: metadata over 4 KiB, a URL over 8 KiB.
    text = s_repeat ("{\"kind\":\"http\",\"request\":{\"url\":\"http://a.example\"},"
                     "\"metadata\":{\"s\":\"%s\"}}", "x", 4096);
    job = jobspec_parse (text, strlen (text), &config, &errors);
    s_fields_of (errors, fields, sizeof fields);
    assert (!job && strcmp (fields, "metadata;") == 0);
    json_decref (errors);
    errors = NULL;
    free (text);
    text = s_repeat ("{\"kind\":\"http\",\"request\":{\"url\":\"http://a.example/%s\"}}", "x", 8192);
    job = jobspec_parse (text, strlen (text), &config, &errors);
    s_fields_of (errors, fields, sizeof fields);
    assert (!job && strcmp (fields, "request.url;") == 0);
    json_decref (errors);
    errors = NULL;
    free (text);

    // from_json refuses what is not an object, and never touches its input.
    spec = json_array ();
    job = jobspec_from_json (spec, &config, &errors);
    assert (!job && json_array_size (errors) == 1);
    json_decref (errors);
    errors = NULL;
    json_decref (spec);
    spec = json_pack ("{s:s, s:{s:s}}", "kind", "http", "request", "url", "http://a.example");
    job = jobspec_from_json (spec, &config, &errors);
    assert (job && !json_object_get (json_object_get (spec, "request"), "method"));
    job_destroy (&job);
    // A string with a NUL byte (a parser allowing them) cannot pass as a name.
    json_object_set_new (spec, "kind", json_stringn ("http\0x", 6));
    job = jobspec_from_json (spec, &config, &errors);
    s_fields_of (errors, fields, sizeof fields);
    assert (!job && strcmp (fields, "kind;") == 0);
    json_decref (errors);
    json_decref (spec);

    json_decref (providers[2].search);

    if (verbose)
        printf ("OK\n");
}
