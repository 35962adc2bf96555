// request — the plan of one upstream call, built from a job's spec.
#include "request.h"
#include "urlpath.h"
#include "httpfield.h"
#include "jsontext.h"
#include "mem.h"
#include "textbuf.h"
#include "url.h"
#include "webhook.h"

#include <assert.h>
#include <ctype.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

// The longest method name accepted; real ones are a few letters.
#define METHOD_MAX 32

struct _request_t {
    char *url;                  // URL to call
    char method[METHOD_MAX + 1];// HTTP method, upper case
    json_t *headers;            // lower-case name → "Name: value" line
    struct curl_slist *header_list; // headers as libcurl takes them
    char *body;                 // request body, or NULL
    size_t body_size;           // bytes in body
    bool user_url;              // the SSRF policy applies
    bool crawl;                 // crawl semantics (redirects, truncation)
    bool webhook;               // a callback delivery
    size_t max_bytes;           // body cap
    int64_t timeout_ms;         // per-attempt timeout
    bool stream;                // llm with "stream": true: the answer is SSE
    bool llm;                   // an llm call: its answer reports usage (worker/llmusage.h)
    bool usage_added;           // a stream asked for usage the caller did not ask for
    const char *auth_header;    // provider's auth header name (borrowed from config), or NULL
    const char *secret;         // provider's secret (borrowed from config), or NULL
};

// s_fail writes the reason for an invalid spec and returns -1.
static int
s_fail (char *error, size_t error_size, const char *fmt, ...)
    __attribute__ ((format (printf, 3, 4)));

static int
s_fail (char *error, size_t error_size, const char *fmt, ...)
{
    va_list ap;
    va_start (ap, fmt);
    vsnprintf (error, error_size, fmt, ap);
    va_end (ap);
    return -1;
}

// s_scalar_text renders a query value: strings as they are, numbers and
// booleans as JSON writes them. Returns a new string, or NULL for other types.
static char *
s_scalar_text (json_t *value)
{
    if (json_is_string (value))
        return mem_strndup (json_string_value (value), json_string_length (value));
    if (json_is_integer (value) || json_is_real (value) || json_is_boolean (value))
        return json_dumps (value, JSON_ENCODE_ANY | JSON_COMPACT);
    return NULL;
}

// s_query_add appends key=value (URL-encoded) to url after a ? or &.
static void
s_query_add (textbuf_t *url, const char *key, const char *value)
{
    char *key_escaped = mem_lib (curl_easy_escape (NULL, key, (int) strlen (key)));
    char *value_escaped = mem_lib (curl_easy_escape (NULL, value, (int) strlen (value)));
    textbuf_str (url, url->data && strchr (url->data, '?') ? "&" : "?");
    textbuf_str (url, key_escaped);
    textbuf_str (url, "=");
    textbuf_str (url, value_escaped);
    curl_free (key_escaped);
    curl_free (value_escaped);
}

// s_query_append appends an object of parameters to url. Arrays of scalars
// repeat the key; null values are left out.
static int
s_query_append (textbuf_t *url, json_t *query, const char *field, char *error,
                size_t error_size)
{
    if (!query)
        return 0;
    if (!json_is_object (query))
        return s_fail (error, error_size, "%s must be an object", field);
    const char *key;
    json_t *value;
    json_object_foreach (query, key, value) {
        if (json_is_null (value))
            continue;
        size_t count = json_is_array (value) ? json_array_size (value) : 1;
        for (size_t i = 0; i < count; i++) {
            json_t *item = json_is_array (value) ? json_array_get (value, i) : value;
            char *text = s_scalar_text (item);
            if (!text)
                return s_fail (error, error_size,
                               "%s.%s must be a string, number, boolean or an array of them",
                               field, key);
            // Keys and values holding NUL cannot be encoded faithfully.
            bool has_nul = json_is_string (item) && strlen (text) != json_string_length (item);
            if (!has_nul)
                s_query_add (url, key, text);
            free (text);
            if (has_nul)
                return s_fail (error, error_size, "%s.%s must not contain NUL", field, key);
        }
    }
    return 0;
}

// A header name is at most this long (the longest real ones are ~40).
#define HEADER_NAME_MAX 256

// s_header_key writes name lower-cased into key (HEADER_NAME_MAX + 1
// bytes, cut there): the key of self->headers, so one name of any case is
// one header.
static void
s_header_key (const char *name, char *key)
{
    size_t i = 0;
    for (; name[i] && i < HEADER_NAME_MAX; i++)
        key[i] = (char) tolower ((unsigned char) name[i]);
    key[i] = '\0';
}

// s_header_set sets header name to value, replacing one of any case.
static int
s_header_set (request_t *self, const char *name, json_t *value, const char *field,
              char *error, size_t error_size)
{
    size_t name_len = strlen (name);
    if (!httpfield_token (name, name_len) || name_len > HEADER_NAME_MAX)
        return s_fail (error, error_size, "%s: \"%.64s\" is not a valid header name", field, name);
    if (!json_is_string (value))
        return s_fail (error, error_size, "%s.%s must be a string", field, name);
    const char *text = json_string_value (value);
    size_t text_len = json_string_length (value);
    if (!httpfield_value_safe (text, text_len))
        return s_fail (error, error_size, "%s.%s must not contain CR, LF or NUL", field, name);
    char key[HEADER_NAME_MAX + 1];
    s_header_key (name, key);
    char *line = mem_alloc (name_len + text_len + 3);
    sprintf (line, "%s: %s", name, text);
    json_object_set_new (self->headers, key, json_string (line));
    free (line);
    return 0;
}

// Who wrote a set of headers, which decides the names it may set.
typedef enum {
    HEADERS_OPERATOR,           // a provider's configured headers: any
    HEADERS_USER_URL,           // request.headers of a call to a user's URL
    HEADERS_PROVIDER_CALL,      // request.headers of a call to a provider
} s_headers_from_t;

// s_header_reserved is true when headers from that writer may not set name
// (common/httpfield.h says which and why; the gateway refuses them too,
// this is the worker's own hold). The operator's may set any.
static bool
s_header_reserved (const char *name, s_headers_from_t from)
{
    return from != HEADERS_OPERATOR
           && httpfield_is_reserved (name, from == HEADERS_PROVIDER_CALL);
}

// s_headers_apply sets every header of an object (provider defaults first,
// then the request's, which override them, except the reserved ones).
static int
s_headers_apply (request_t *self, json_t *headers, s_headers_from_t from, const char *field,
                 char *error, size_t error_size)
{
    if (!headers)
        return 0;
    if (!json_is_object (headers))
        return s_fail (error, error_size, "%s must be an object of strings", field);
    const char *name;
    json_t *value;
    json_object_foreach (headers, name, value) {
        if (s_header_reserved (name, from))
            return s_fail (error, error_size, "%s.%.64s is reserved: jobgate sets it", field,
                           name);
        if (s_header_set (self, name, value, field, error, error_size) < 0)
            return -1;
    }
    return 0;
}

// s_header_default sets a header unless the request already has one.
static void
s_header_default (request_t *self, const char *name, const char *value)
{
    char key[HEADER_NAME_MAX + 1];
    s_header_key (name, key);
    if (json_object_get (self->headers, key))
        return;
    json_t *text = json_string (value);
    char discard[8];
    s_header_set (self, name, text, "headers", discard, sizeof discard);
    json_decref (text);
}

// s_join appends path to base with exactly one slash between them.
static void
s_join (textbuf_t *url, const char *base, const char *path)
{
    textbuf_str (url, base);
    bool base_slash = url->len > 0 && url->data && url->data[url->len - 1] == '/';
    if (*path == '/' && base_slash)
        path++;
    else if (*path && *path != '/' && *path != '?' && !base_slash)
        textbuf_str (url, "/");
    textbuf_str (url, path);
}

// s_body_set takes request.body: a string is sent as it is, any other value
// as JSON.
static int
s_body_set (request_t *self, json_t *body, char *error, size_t error_size)
{
    if (!body || json_is_null (body))
        return 0;
    if (json_is_string (body)) {
        self->body_size = json_string_length (body);
        self->body = mem_alloc (self->body_size + 1);
        memcpy (self->body, json_string_value (body), self->body_size + 1);
        return 0;
    }
    self->body = jsontext_dump (body);
    self->body_size = strlen (self->body);
    s_header_default (self, "Content-Type", "application/json");
    return 0;
}

// s_method_set validates and stores the method, upper-cased.
static int
s_method_set (request_t *self, json_t *method, char *error, size_t error_size)
{
    if (!method) {
        strcpy (self->method, "GET");
        return 0;
    }
    const char *text = json_string_value (method);
    size_t len = text ? json_string_length (method) : 0;
    if (!text || len > METHOD_MAX || !httpfield_token (text, len))
        return s_fail (error, error_size, "request.method must be an HTTP method name");
    for (size_t i = 0; i <= len; i++)
        self->method[i] = (char) toupper ((unsigned char) text[i]);
    return 0;
}

// s_optional_string reads an optional string field; -1 when it has another type.
static int
s_optional_string (json_t *object, const char *key, const char **out, const char *field,
                   char *error, size_t error_size)
{
    json_t *value = json_object_get (object, key);
    *out = NULL;
    if (!value || json_is_null (value))
        return 0;
    if (!json_is_string (value) || strlen (json_string_value (value)) != json_string_length (value))
        return s_fail (error, error_size, "%s must be a string", field);
    *out = json_string_value (value);
    return 0;
}

// s_plan_http plans the http kind (SPEC §3).
static int
s_plan_http (request_t *self, json_t *request, const config_provider_t *provider,
             textbuf_t *url, char *error, size_t error_size)
{
    const char *path, *target;
    if (s_method_set (self, json_object_get (request, "method"), error, error_size) < 0
        || s_optional_string (request, "path", &path, "request.path", error, error_size) < 0
        || s_optional_string (request, "url", &target, "request.url", error, error_size) < 0)
        return -1;
    // The one path rule (common/urlpath.h), again here: a path may never
    // leave the provider's base_url path, whoever sent the record.
    const char *problem = provider && path && *path ? urlpath_problem (path, strlen (path)) : NULL;
    if (problem)
        return s_fail (error, error_size, "request.path: %s", problem);
    if (provider)
        s_join (url, provider->base_url, path ? path : "");
    else if (!target)
        return s_fail (error, error_size, "request.url is required without a provider");
    else {
        textbuf_str (url, target);
        self->user_url = true;
    }
    // Fragments are never sent, and a query appended after one would be.
    char *hash = url->data ? strchr (url->data, '#') : NULL;
    if (hash) {
        *hash = '\0';
        url->len = (size_t) (hash - url->data);
    }
    if (s_query_append (url, json_object_get (request, "query"), "request.query", error,
                        error_size) < 0
        || s_headers_apply (self, json_object_get (request, "headers"),
                            provider ? HEADERS_PROVIDER_CALL : HEADERS_USER_URL,
                            "request.headers", error, error_size) < 0
        || s_body_set (self, json_object_get (request, "body"), error, error_size) < 0)
        return -1;
    return 0;
}

// s_plan_crawl plans the crawl kind (SPEC §3): GET a user URL, follow a few
// redirects, keep at most max_bytes.
static int
s_plan_crawl (request_t *self, json_t *request, textbuf_t *url, char *error,
              size_t error_size)
{
    const char *target;
    if (s_optional_string (request, "url", &target, "request.url", error, error_size) < 0)
        return -1;
    if (!target)
        return s_fail (error, error_size, "request.url is required");
    strcpy (self->method, "GET");
    textbuf_str (url, target);
    self->user_url = true;
    self->crawl = true;
    json_t *max_bytes = json_object_get (request, "max_bytes");
    if (max_bytes && !json_is_null (max_bytes)) {
        if (!json_is_integer (max_bytes) || json_integer_value (max_bytes) < 1)
            return s_fail (error, error_size, "request.max_bytes must be a positive integer");
        if ((json_int_t) self->max_bytes > json_integer_value (max_bytes))
            self->max_bytes = (size_t) json_integer_value (max_bytes);
    }
    else if (self->max_bytes > REQUEST_CRAWL_MAX_BYTES)
        self->max_bytes = REQUEST_CRAWL_MAX_BYTES;
    return s_headers_apply (self, json_object_get (request, "headers"), HEADERS_USER_URL,
                            "request.headers", error, error_size);
}

// s_template_string reads one string of a provider's search template, or
// fallback when there is no template (a provider built without config_load).
static const char *
s_template_string (const config_provider_t *provider, const char *key, const char *fallback)
{
    const char *value = json_string_value (json_object_get (provider->search, key));
    return value ? value : fallback;
}

// s_plan_search plans the search kind through the provider's request
// template (docs/providers.md): request.query goes to query_param,
// request.count to count_param, every other request field and the
// template's params as they are (the request's win over params). GET sends
// them as query parameters of base_url + path, POST as a JSON body.
static int
s_plan_search (request_t *self, json_t *request, const config_provider_t *provider,
               textbuf_t *url, char *error, size_t error_size)
{
    const char *query;
    if (s_optional_string (request, "query", &query, "request.query", error, error_size) < 0)
        return -1;
    if (!query || !*query)
        return s_fail (error, error_size, "request.query is required");
    json_t *count = json_object_get (request, "count");
    if (count && !json_is_null (count)
        && (!json_is_integer (count) || json_integer_value (count) < 1))
        return s_fail (error, error_size, "request.count must be a positive integer");
    const char *method = s_template_string (provider, "method", "GET");
    const char *query_param = s_template_string (provider, "query_param", "q");
    const char *count_param = s_template_string (provider, "count_param", "count");
    json_t *fields = json_object ();
    json_t *params = json_object_get (provider->search, "params");
    if (params)
        json_object_update (fields, params);
    const char *key;
    json_t *value;
    json_object_foreach (request, key, value)
        if (strcmp (key, "query") != 0 && strcmp (key, "count") != 0)
            json_object_set (fields, key, value);
    json_object_set (fields, query_param, json_object_get (request, "query"));
    if (count && !json_is_null (count))
        json_object_set (fields, count_param, count);
    strcpy (self->method, method);
    s_join (url, provider->base_url, s_template_string (provider, "path", ""));
    int rc = strcmp (method, "POST") == 0
             ? s_body_set (self, fields, error, error_size)
             : s_query_append (url, fields, "request", error, error_size);
    json_decref (fields);
    return rc;
}

// s_stream_usage_ask makes a streamed call report its usage (in a last
// chunk of its own: stream_options.include_usage) when the caller did not
// ask for it, keeping the caller's other stream_options: every llm job's
// usage is accounted (SPEC §3.1). A stream_options that is not an object is
// the caller's mistake, left for the upstream to answer.
static void
s_stream_usage_ask (request_t *self, json_t *request)
{
    json_t *options = json_object_get (request, "stream_options");
    if (json_is_true (json_object_get (options, "include_usage")))
        return;
    if (!options || json_is_null (options)) {
        options = json_object ();
        json_object_set_new (request, "stream_options", options);
    }
    if (!json_is_object (options))
        return;
    json_object_set_new (options, "include_usage", json_true ());
    self->usage_added = true;
}

// s_plan_llm plans the llm kind: POST the request as an OpenAI-compatible
// body to the endpoint it names (request.endpoint, not sent: "chat/
// completions" by default, or "embeddings"); a chat with "stream": true is
// read as SSE.
static int
s_plan_llm (request_t *self, json_t *request, const config_provider_t *provider,
            textbuf_t *url, char *error, size_t error_size)
{
    strcpy (self->method, "POST");
    const char *endpoint = json_string_value (json_object_get (request, "endpoint"));
    json_t *body = json_incref (request);
    if (json_object_get (request, "endpoint")) {
        if (!endpoint || (strcmp (endpoint, "chat/completions") != 0
                          && strcmp (endpoint, "embeddings") != 0)) {
            json_decref (body);
            return s_fail (error, error_size,
                           "request.endpoint must be \"chat/completions\" or \"embeddings\"");
        }
        json_decref (body);
        body = json_copy (request);     // shallow: the field goes, the rest is shared
        json_object_del (body, "endpoint");
    }
    bool embeddings = endpoint && strcmp (endpoint, "embeddings") == 0;
    s_join (url, provider->base_url, embeddings ? "/embeddings" : "/chat/completions");
    self->stream = !embeddings && json_is_true (json_object_get (request, "stream"));
    self->llm = true;
    if (self->stream) {
        s_header_default (self, "Accept", "text/event-stream");
        s_stream_usage_ask (self, body);
    }
    int rc = s_body_set (self, body, error, error_size);
    json_decref (body);
    return rc;
}

// s_auth_apply adds the provider's auth header (providers.NAME.auth) last,
// so no request header can replace the operator's key. Only provider calls
// get it: user URLs and crawls never see a provider's secret.
static int
s_auth_apply (request_t *self, const config_provider_t *provider, char *error,
              size_t error_size)
{
    if (!provider->auth_header)
        return 0;
    if (!provider->auth_secret)
        return s_fail (error, error_size, "the secret of provider \"%.64s\" is not loaded",
                       provider->name);
    char *value = NULL;
    mem_abort_if (asprintf (&value, "%s%s", provider->auth_prefix ? provider->auth_prefix : "",
                            provider->auth_secret) < 0);
    // A secret that is not UTF-8 cannot be a header value jansson holds.
    json_t *text = json_string (value);
    // The secret is never quoted in an error message.
    char discard[128];
    int rc = text ? s_header_set (self, provider->auth_header, text, "auth", discard,
                                  sizeof discard) : -1;
    json_decref (text);
    free (value);
    if (rc < 0)
        return s_fail (error, error_size, "the auth header of provider \"%.64s\" is invalid",
                       provider->name);
    self->auth_header = provider->auth_header;
    self->secret = provider->auth_secret;
    return 0;
}

// s_plan_webhook plans a callback delivery (SPEC §3, §5): POST the finished
// job to the user's URL, signed per the Standard Webhooks scheme
// (common/webhook.h). The id is
// the delivery's (the same for every attempt); timestamp and signature are
// made now, for this attempt.
static int
s_plan_webhook (request_t *self, json_t *request, const job_t *job, const config_t *config,
                textbuf_t *url, char *error, size_t error_size)
{
    const char *target;
    if (s_optional_string (request, "url", &target, "request.url", error, error_size) < 0)
        return -1;
    if (!target)
        return s_fail (error, error_size, "request.url is required");
    json_t *payload = json_object_get (request, "payload");
    if (!payload)
        return s_fail (error, error_size, "request.payload is required");
    strcpy (self->method, "POST");
    textbuf_str (url, target);
    self->user_url = true;
    self->webhook = true;
    self->body = jsontext_dump (payload);
    self->body_size = strlen (self->body);
    char stamp[24];
    snprintf (stamp, sizeof stamp, "%lld", (long long) time (NULL));
    s_header_default (self, "Content-Type", "application/json");
    s_header_default (self, "webhook-id", job->id);
    s_header_default (self, "webhook-timestamp", stamp);
    if (config->webhook_key) {
        char signature[WEBHOOK_SIGNATURE_SIZE];
        webhook_sign (config->webhook_key, config->webhook_key_size, job->id, stamp, self->body,
                      self->body_size, signature);
        s_header_default (self, "webhook-signature", signature);
    }
    return 0;
}

// s_plan fills self from the job; -1 with a reason when the spec is invalid.
static int
s_plan (request_t *self, const job_t *job, const config_t *config, textbuf_t *url,
        char *error, size_t error_size)
{
    // Under the one JSON policy: a spec the gateway normalized (or a webhook
    // delivery the broker made of a stored result, NUL bytes and all) reads
    // here exactly as it was written.
    json_t *spec = jsontext_loads (job->spec ? job->spec : "", NULL);
    if (!json_is_object (spec)) {
        json_decref (spec);
        return s_fail (error, error_size, "the job spec is not a JSON object");
    }
    int rc = 0;
    const char *kind = job->kind;
    // A fallback's attempt calls the provider the broker chose (DISPATCH `via`).
    const char *provider_name = job->via && *job->via             ? job->via
                                : job->provider && *job->provider ? job->provider
                                                                  : NULL;
    const char *spec_provider = NULL;
    json_t *request = json_object_get (spec, "request");
    if (!kind || !*kind)
        kind = json_string_value (json_object_get (spec, "kind"));
    if (!provider_name
        && s_optional_string (spec, "provider", &spec_provider, "provider", error, error_size) < 0)
        rc = -1;
    if (!provider_name)
        provider_name = spec_provider;
    // A fallback's llm attempt sends the model the broker named (DISPATCH
    // `model`, one of the operator's model names).
    if (job->model && kind && strcmp (kind, "llm") == 0 && json_is_object (request))
        json_object_set_new (request, "model", json_string (job->model));
    const config_provider_t *provider = provider_name ? config_provider (config, provider_name)
                                                      : NULL;
    if (rc < 0)
        ;
    else if (!kind)
        rc = s_fail (error, error_size, "the job has no kind");
    else if (!json_is_object (request))
        rc = s_fail (error, error_size, "request must be an object");
    else if (provider_name && !provider)
        rc = s_fail (error, error_size, "unknown provider \"%.64s\"", provider_name);
    else if (provider && strcmp (kind, "crawl") != 0
             && s_headers_apply (self, provider->headers, HEADERS_OPERATOR, "provider headers",
                                 error, error_size) < 0)
        rc = -1;
    else if (strcmp (kind, "http") == 0)
        rc = s_plan_http (self, request, provider, url, error, error_size);
    else if (strcmp (kind, "crawl") == 0)
        rc = s_plan_crawl (self, request, url, error, error_size);
    else if (strcmp (kind, "webhook") == 0 && !provider)
        rc = s_plan_webhook (self, request, job, config, url, error, error_size);
    else if ((strcmp (kind, "search") == 0 || strcmp (kind, "llm") == 0) && !provider)
        rc = s_fail (error, error_size, "kind %s needs a provider", kind);
    else if (strcmp (kind, "search") == 0)
        rc = s_plan_search (self, request, provider, url, error, error_size);
    else if (strcmp (kind, "llm") == 0)
        rc = s_plan_llm (self, request, provider, url, error, error_size);
    else
        rc = s_fail (error, error_size, "unknown kind \"%.32s\"", kind);

    if (rc == 0 && provider && strcmp (kind, "crawl") != 0)
        rc = s_auth_apply (self, provider, error, error_size);
    // The URL is the client's (the gateway bounds a spec): the policy, not
    // the upstream exception, applies to it.
    mem_abort_if (url->failed);
    if (rc == 0) {
        self->timeout_ms = job->timeout_ms > 0 ? job->timeout_ms
                           : provider && provider->timeout_ms > 0 ? provider->timeout_ms
                           : REQUEST_TIMEOUT_MS;
        // The gateway asked the same of a client's URL (common/url.h).
        const char *problem = url_problem (url->data, url->len,
                                           self->user_url ? NULL : provider->base_url);
        if (problem)
            rc = s_fail (error, error_size, "%s %s", self->user_url ? "request.url" : "request.path",
                         problem);
    }
    json_decref (spec);
    return rc;
}

request_t *
request_new (const job_t *job, const config_t *config, char *error, size_t error_size)
{
    request_t *self = mem_calloc (1, sizeof *self);
    self->headers = json_object ();
    // What no result can hold is not worth downloading: the body cap is the
    // smaller of the response cap and the result cap.
    self->max_bytes = config->max_response_bytes < config->max_result_bytes
                      ? config->max_response_bytes : config->max_result_bytes;
    textbuf_t url = { 0 };
    if (s_plan (self, job, config, &url, error, error_size) < 0) {
        free (url.data);
        request_destroy (&self);
        return NULL;
    }
    self->url = url.data;
    if (self->timeout_ms > 600000)
        self->timeout_ms = 600000;
    // "Expect: 100-continue" costs a round trip (or a 1 s stall) per body;
    // libcurl reads "Expect:" as "do not send it".
    if (!json_object_get (self->headers, "expect"))
        self->header_list = mem_lib (curl_slist_append (NULL, "Expect:"));
    const char *key;
    json_t *line;
    json_object_foreach (self->headers, key, line) {
        // libcurl sends "Name;" as an empty header and drops "Name:".
        char *text = mem_strdup (json_string_value (line));
        size_t len = strlen (text);
        if (len >= 2 && text[len - 1] == ' ' && text[len - 2] == ':') {
            text[len - 2] = ';';
            text[len - 1] = '\0';
        }
        self->header_list = mem_lib (curl_slist_append (self->header_list, text));
        free (text);
    }
    return self;
}

void
request_destroy (request_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    request_t *self = *self_p;
    free (self->url);
    json_decref (self->headers);
    curl_slist_free_all (self->header_list);
    free (self->body);
    free (self);
    *self_p = NULL;
}

int
request_apply (request_t *self, CURL *easy)
{
    CURLcode rc = curl_easy_setopt (easy, CURLOPT_URL, self->url);
    if (rc == CURLE_OK && self->body) {
        rc = curl_easy_setopt (easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t) self->body_size);
        if (rc == CURLE_OK)
            rc = curl_easy_setopt (easy, CURLOPT_POSTFIELDS, self->body);
        if (rc == CURLE_OK && strcmp (self->method, "POST") != 0)
            rc = curl_easy_setopt (easy, CURLOPT_CUSTOMREQUEST, self->method);
    }
    else if (rc == CURLE_OK && strcmp (self->method, "GET") == 0)
        rc = curl_easy_setopt (easy, CURLOPT_HTTPGET, 1L);
    else if (rc == CURLE_OK && strcmp (self->method, "HEAD") == 0)
        rc = curl_easy_setopt (easy, CURLOPT_NOBODY, 1L);
    else if (rc == CURLE_OK && strcmp (self->method, "POST") == 0) {
        rc = curl_easy_setopt (easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t) 0);
        if (rc == CURLE_OK)
            rc = curl_easy_setopt (easy, CURLOPT_POSTFIELDS, "");
    }
    else if (rc == CURLE_OK)
        rc = curl_easy_setopt (easy, CURLOPT_CUSTOMREQUEST, self->method);
    if (rc == CURLE_OK)
        rc = curl_easy_setopt (easy, CURLOPT_HTTPHEADER, self->header_list);
    if (rc == CURLE_OK && self->crawl) {
        rc = curl_easy_setopt (easy, CURLOPT_FOLLOWLOCATION, 1L);
        if (rc == CURLE_OK)
            rc = curl_easy_setopt (easy, CURLOPT_MAXREDIRS, (long) REQUEST_CRAWL_MAX_REDIRECTS);
    }
    return rc == CURLE_OK ? 0 : -1;
}

const char *
request_url (const request_t *self)
{
    return self->url;
}

const char *
request_method (const request_t *self)
{
    return self->method;
}

const char *
request_body (const request_t *self, size_t *size)
{
    if (size)
        *size = self->body_size;
    return self->body;
}

const char *
request_header (const request_t *self, const char *name)
{
    char key[HEADER_NAME_MAX + 1];
    s_header_key (name, key);
    const char *line = json_string_value (json_object_get (self->headers, key));
    if (!line)
        return NULL;
    const char *colon = strchr (line, ':');
    return colon[1] == ' ' ? colon + 2 : colon + 1;
}

bool
request_user_url (const request_t *self)
{
    return self->user_url;
}

bool
request_is_webhook (const request_t *self)
{
    return self->webhook;
}

bool
request_is_crawl (const request_t *self)
{
    return self->crawl;
}

size_t
request_max_bytes (const request_t *self)
{
    return self->max_bytes;
}

int64_t
request_timeout_ms (const request_t *self)
{
    return self->timeout_ms;
}

bool
request_is_stream (const request_t *self)
{
    return self->stream;
}

bool
request_is_llm (const request_t *self)
{
    return self->llm;
}

bool
request_usage_added (const request_t *self)
{
    return self->usage_added;
}

const char *
request_auth_header (const request_t *self)
{
    return self->auth_header;
}

const char *
request_secret (const request_t *self)
{
    return self->secret;
}

// --- self-test ---

// s_plan_for builds a request from kind, provider and spec text.
static request_t *
s_plan_for (const config_t *config, const char *kind, const char *provider, const char *spec,
            char *error, size_t error_size)
{
    job_t *job = job_new ();
    job_id_generate (job->id);
    job_set_str (&job->kind, kind);
    job_set_str (&job->provider, provider);
    job_set_str (&job->spec, spec);
    job->timeout_ms = 1500;
    request_t *request = request_new (job, config, error, error_size);
    job_destroy (&job);
    return request;
}

void
request_test (bool verbose)
{
    if (verbose)
        printf (" * request: ");
    char error[256];
    config_t *config = config_load (NULL, error, sizeof error);
    assert (config);
    // One provider with default headers, added by hand for the test.
    config_provider_t *providers = mem_calloc (2, sizeof *providers);
    providers[0].name = mem_strdup ("mock");
    providers[0].base_url = mem_strdup ("http://127.0.0.1:9000/v1/");
    // A second one, counted from the fallback test on.
    providers[1].name = mem_strdup ("backup");
    providers[1].base_url = mem_strdup ("http://127.0.0.1:9001/b/");
    providers[0].headers = json_pack ("{s:s, s:s}", "Authorization", "Bearer k",
                                      "X-Default", "d");
    config->providers = providers;
    config->providers_count = 1;

    // http without provider: method, query encoding, JSON body.
    request_t *request = s_plan_for (config, "http", NULL,
        "{\"kind\":\"http\",\"request\":{\"method\":\"post\","
        "\"url\":\"https://example.com/a?x=1#frag\","
        "\"query\":{\"q\":\"a b&c\",\"n\":3,\"f\":true,\"r\":1.5,\"l\":[\"x\",2],\"z\":null},"
        "\"headers\":{\"X-Id\":\"7\"},\"body\":{\"k\":[1,2]}}}", error, sizeof error);
    if (!request)
        fprintf (stderr, "request: %s\n", error);
    assert (request);
    assert (strcmp (request_method (request), "POST") == 0);
    assert (request_user_url (request) && !request_is_crawl (request));
    assert (strcmp (request_url (request),
                    "https://example.com/a?x=1&q=a%20b%26c&n=3&f=true&r=1.5&l=x&l=2") == 0);
    size_t size;
    const char *body = request_body (request, &size);
    assert (body && strcmp (body, "{\"k\":[1,2]}") == 0 && size == strlen (body));
    assert (strcmp (request_header (request, "content-type"), "application/json") == 0);
    assert (strcmp (request_header (request, "x-id"), "7") == 0);
    assert (request_timeout_ms (request) == 1500);
    // The body cap is the smaller of the response and the result caps.
    assert (config->max_result_bytes < config->max_response_bytes);
    assert (request_max_bytes (request) == config->max_result_bytes);
    CURL *easy = curl_easy_init ();
    assert (easy);
    assert (request_apply (request, easy) == 0);
    curl_easy_cleanup (easy);
    request_destroy (&request);
    request_destroy (&request);

    request = s_plan_for (config, "http", NULL,
        "{\"request\":{\"url\":\"http://example.com/p\","
        "\"query\":{\"q\":\"a b&c\",\"n\":3,\"f\":true,\"l\":[\"x\",2]}}}", error, sizeof error);
    assert (request);
    assert (strcmp (request_url (request),
                    "http://example.com/p?q=a%20b%26c&n=3&f=true&l=x&l=2") == 0);
    assert (strcmp (request_method (request), "GET") == 0);
    assert (request_body (request, NULL) == NULL);
    request_destroy (&request);

    // http with provider: path joined, provider headers overridden by the
    // request's, a string body sent as is with its own content type.
    request = s_plan_for (config, "http", "mock",
        "{\"request\":{\"method\":\"PUT\",\"path\":\"/items/1\",\"query\":{\"a\":\"b\"},"
        "\"headers\":{\"x-default\":\"mine\",\"Content-Type\":\"text/plain\"},"
        "\"body\":\"raw text\"}}", error, sizeof error);
    assert (request);
    assert (strcmp (request_url (request), "http://127.0.0.1:9000/v1/items/1?a=b") == 0);
    assert (!request_user_url (request));
    assert (strcmp (request_header (request, "X-Default"), "mine") == 0);
    assert (strcmp (request_header (request, "authorization"), "Bearer k") == 0);
    assert (strcmp (request_header (request, "content-type"), "text/plain") == 0);
    assert (strcmp (request_body (request, NULL), "raw text") == 0);
    request_destroy (&request);

    // A path can never move a provider call to another host, nor out of the
    // provider's base path, however it is spelt (common/urlpath's rule).
    request = s_plan_for (config, "http", "mock", "{\"request\":{\"path\":\"/@evil.example/\"}}",
                          error, sizeof error);
    assert (request);
    assert (strcmp (request_url (request), "http://127.0.0.1:9000/v1/@evil.example/") == 0);
    request_destroy (&request);
    static const char *const escapes[] = {
        "@evil.example/", "/a/../../admin", "/a/..;/b", "/%2e%2e/admin", "/x%2f..%2f..%2fy",
        "/a\\\\..\\\\b",
    };
    for (size_t i = 0; i < sizeof escapes / sizeof escapes[0]; i++) {
        char spec[128];
        snprintf (spec, sizeof spec, "{\"request\":{\"path\":\"%s\"}}", escapes[i]);
        request = s_plan_for (config, "http", "mock", spec, error, sizeof error);
        if (request)
            fprintf (stderr, "request: path %s accepted\n", escapes[i]);
        assert (!request && strstr (error, "request.path"));
    }

    // crawl: a user URL with a byte cap; search and llm, the basic versions.
    request = s_plan_for (config, "crawl", NULL,
        "{\"request\":{\"url\":\"http://example.com/\",\"max_bytes\":1000}}", error, sizeof error);
    assert (request && request_is_crawl (request) && request_user_url (request));
    assert (request_max_bytes (request) == 1000);
    request_destroy (&request);
    request = s_plan_for (config, "crawl", NULL, "{\"request\":{\"url\":\"http://example.com/\"}}",
                          error, sizeof error);
    assert (request && request_max_bytes (request) == REQUEST_CRAWL_MAX_BYTES);
    request_destroy (&request);
    // The gateway's URL rule (common/url.h): an internationalised host is
    // called (libcurl converts it), credentials in a client's URL are not.
    request = s_plan_for (config, "crawl", NULL,
                          "{\"request\":{\"url\":\"http://b\u00fccher.example/\"}}", error,
                          sizeof error);
    assert (request && strcmp (request_url (request), "http://b\xc3\xbc" "cher.example/") == 0);
    request_destroy (&request);
    request = s_plan_for (config, "http", NULL, "{\"request\":{\"url\":\"http://u:p@example.com/\"}}",
                          error, sizeof error);
    assert (request == NULL && strstr (error, "request.url must not contain credentials"));
    request = s_plan_for (config, "search", "mock", "{\"request\":{\"query\":\"cats\",\"count\":5}}",
                          error, sizeof error);
    assert (request);
    assert (strcmp (request_url (request), "http://127.0.0.1:9000/v1/?q=cats&count=5") == 0);
    request_destroy (&request);
    request = s_plan_for (config, "llm", "mock",
                          "{\"request\":{\"model\":\"m\",\"messages\":[]}}", error, sizeof error);
    assert (request);
    assert (strcmp (request_url (request), "http://127.0.0.1:9000/v1/chat/completions") == 0);
    assert (strcmp (request_method (request), "POST") == 0);
    assert (strcmp (request_body (request, NULL), "{\"model\":\"m\",\"messages\":[]}") == 0);
    assert (!request_is_stream (request) && request_is_llm (request));
    assert (!request_usage_added (request));
    request_destroy (&request);
    request = s_plan_for (config, "llm", "mock",
                          "{\"request\":{\"model\":\"m\",\"stream\":true,\"messages\":[]}}",
                          error, sizeof error);
    assert (request && request_is_stream (request));
    assert (strcmp (request_header (request, "accept"), "text/event-stream") == 0);
    // A stream asks for usage the caller did not ask for (SPEC §3.1)...
    assert (request_is_llm (request) && request_usage_added (request));
    assert (strcmp (request_body (request, NULL), "{\"model\":\"m\",\"stream\":true,"
                    "\"messages\":[],\"stream_options\":{\"include_usage\":true}}") == 0);
    request_destroy (&request);
    // ...keeping the caller's own stream_options, and turning a refusal
    // into a request (the usage is the worker's then, not relayed)...
    request = s_plan_for (config, "llm", "mock",
                          "{\"request\":{\"model\":\"m\",\"stream\":true,\"stream_options\":"
                          "{\"x\":1,\"include_usage\":false}}}", error, sizeof error);
    assert (request && request_usage_added (request));
    assert (strcmp (request_body (request, NULL), "{\"model\":\"m\",\"stream\":true,"
                    "\"stream_options\":{\"x\":1,\"include_usage\":true}}") == 0);
    request_destroy (&request);
    // ...and a caller who asked keeps the request as sent.
    request = s_plan_for (config, "llm", "mock",
                          "{\"request\":{\"model\":\"m\",\"stream\":true,\"stream_options\":"
                          "{\"include_usage\":true}}}", error, sizeof error);
    assert (request && !request_usage_added (request));
    assert (strcmp (request_body (request, NULL), "{\"model\":\"m\",\"stream\":true,"
                    "\"stream_options\":{\"include_usage\":true}}") == 0);
    request_destroy (&request);

    // An embeddings call goes to base_url + /embeddings, without the field
    // that names it; a chat may name its endpoint too; others are refused.
    request = s_plan_for (config, "llm", "mock",
                          "{\"request\":{\"model\":\"e\",\"endpoint\":\"embeddings\",\"input\":\"a\"}}",
                          error, sizeof error);
    assert (request && !request_is_stream (request));
    assert (strcmp (request_url (request), "http://127.0.0.1:9000/v1/embeddings") == 0);
    assert (strcmp (request_body (request, NULL), "{\"model\":\"e\",\"input\":\"a\"}") == 0);
    request_destroy (&request);
    request = s_plan_for (config, "llm", "mock",
                          "{\"request\":{\"endpoint\":\"chat/completions\",\"messages\":[]}}",
                          error, sizeof error);
    assert (request && strcmp (request_url (request), "http://127.0.0.1:9000/v1/chat/completions") == 0);
    assert (strcmp (request_body (request, NULL), "{\"messages\":[]}") == 0);
    request_destroy (&request);
    request = s_plan_for (config, "llm", "mock", "{\"request\":{\"endpoint\":\"../admin\"}}",
                          error, sizeof error);
    assert (request == NULL && strstr (error, "request.endpoint"));

    // A fallback's attempt (DISPATCH `via` and `model`): the call goes to
    // that provider, an llm request with the model named; without a model
    // the request's is kept; other kinds only change provider.
    config->providers_count = 2;
    job_t *fallback = job_new ();
    job_id_generate (fallback->id);
    job_set_str (&fallback->kind, "llm");
    job_set_str (&fallback->provider, "mock");
    job_set_str (&fallback->spec, "{\"request\":{\"model\":\"m\",\"messages\":[]}}");
    job_set_str (&fallback->via, "backup");
    job_set_str (&fallback->model, "b-model");
    request = request_new (fallback, config, error, sizeof error);
    assert (request);
    assert (strcmp (request_url (request), "http://127.0.0.1:9001/b/chat/completions") == 0);
    assert (strstr (request_body (request, NULL), "\"model\":\"b-model\""));
    assert (!request_header (request, "x-default"));
    request_destroy (&request);
    job_set_str (&fallback->model, NULL);
    request = request_new (fallback, config, error, sizeof error);
    assert (request && strstr (request_body (request, NULL), "\"model\":\"m\""));
    request_destroy (&request);
    job_set_str (&fallback->kind, "http");
    job_set_str (&fallback->spec, "{\"request\":{\"path\":\"/x\"}}");
    job_set_str (&fallback->model, "b-model");
    request = request_new (fallback, config, error, sizeof error);
    assert (request && strcmp (request_url (request), "http://127.0.0.1:9001/b/x") == 0);
    assert (!request_body (request, NULL));
    request_destroy (&request);
    job_destroy (&fallback);

    // Search templates: GET with path, renamed params, defaults and extras
    // (the request's extras win over the template's params).
    providers[0].search = json_pack ("{s:s, s:s, s:s, s:s, s:{s:s, s:s}}", "method", "GET",
                                     "path", "/search", "query_param", "query",
                                     "count_param", "num", "params", "safe", "active",
                                     "lang", "en");
    request = s_plan_for (config, "search", "mock",
                          "{\"request\":{\"query\":\"a b\",\"count\":3,\"lang\":\"fr\"}}",
                          error, sizeof error);
    assert (request && strcmp (request_method (request), "GET") == 0);
    assert (strcmp (request_url (request),
                    "http://127.0.0.1:9000/v1/search?safe=active&lang=fr&query=a%20b&num=3") == 0);
    request_destroy (&request);
    json_object_set_new (providers[0].search, "method", json_string ("POST"));
    request = s_plan_for (config, "search", "mock", "{\"request\":{\"query\":\"x\",\"page\":2}}",
                          error, sizeof error);
    assert (request && strcmp (request_method (request), "POST") == 0);
    assert (strcmp (request_url (request), "http://127.0.0.1:9000/v1/search") == 0);
    json_t *sent = json_loads (request_body (request, NULL), 0, NULL);
    assert (sent && json_object_size (sent) == 4);
    assert (strcmp (json_string_value (json_object_get (sent, "query")), "x") == 0);
    assert (json_integer_value (json_object_get (sent, "page")) == 2);
    assert (strcmp (json_string_value (json_object_get (sent, "safe")), "active") == 0);
    json_decref (sent);
    assert (strcmp (request_header (request, "content-type"), "application/json") == 0);
    request_destroy (&request);
    json_decref (providers[0].search);
    providers[0].search = NULL;

    // Provider auth: added to provider calls last (a request header cannot
    // replace it), never to user URLs or crawls; a secret not loaded is an
    // error that does not quote anything secret.
    providers[0].auth_header = mem_strdup ("X-Api-Key");
    providers[0].auth_prefix = mem_strdup ("Key ");
    request = s_plan_for (config, "http", "mock", "{\"request\":{\"path\":\"/\"}}",
                          error, sizeof error);
    assert (request == NULL && strstr (error, "not loaded"));
    providers[0].auth_secret = mem_strdup ("s3cret");
    request = s_plan_for (config, "http", "mock",
                          "{\"request\":{\"path\":\"/\",\"headers\":{\"x-api-key\":\"mine\"}}}",
                          error, sizeof error);
    assert (request);
    assert (strcmp (request_header (request, "X-API-KEY"), "Key s3cret") == 0);
    assert (strcmp (request_auth_header (request), "X-Api-Key") == 0);
    assert (strcmp (request_secret (request), "s3cret") == 0);
    request_destroy (&request);
    request = s_plan_for (config, "llm", "mock", "{\"request\":{\"messages\":[]}}",
                          error, sizeof error);
    assert (request && strcmp (request_header (request, "x-api-key"), "Key s3cret") == 0);
    request_destroy (&request);
    request = s_plan_for (config, "http", NULL, "{\"request\":{\"url\":\"http://example.com/\"}}",
                          error, sizeof error);
    assert (request && !request_header (request, "x-api-key") && !request_secret (request));
    request_destroy (&request);
    request = s_plan_for (config, "crawl", "mock", "{\"request\":{\"url\":\"http://example.com/\"}}",
                          error, sizeof error);
    assert (request && !request_header (request, "x-api-key") && !request_secret (request));
    request_destroy (&request);

    // Headers that steer a provider call elsewhere are refused, in any case;
    // a user's URL may set them (no secret goes there). Framing headers are
    // refused everywhere. The provider's auth header wins over a request
    // header of the same name in any case, and is sent once.
    static const char *const steering[] = { "Host", "host", "X-Forwarded-Host", "Forwarded",
                                            "X-Original-URL", "x-rewrite-url", "X-HOST" };
    for (size_t i = 0; i < sizeof steering / sizeof steering[0]; i++) {
        char spec[256];
        snprintf (spec, sizeof spec,
                  "{\"request\":{\"path\":\"/\",\"headers\":{\"%s\":\"evil.example\"}}}",
                  steering[i]);
        error[0] = '\0';
        request = s_plan_for (config, "http", "mock", spec, error, sizeof error);
        assert (request == NULL && strstr (error, "reserved"));
        snprintf (spec, sizeof spec,
                  "{\"request\":{\"url\":\"http://example.com/\",\"headers\":{\"%s\":\"a.example\"}}}",
                  steering[i]);
        request = s_plan_for (config, "http", NULL, spec, error, sizeof error);
        assert (request && strcmp (request_header (request, steering[i]), "a.example") == 0);
        request_destroy (&request);
    }
    static const char *const framing[] = { "Content-Length", "Transfer-Encoding", "connection",
                                           "TE", "Upgrade" };
    for (size_t i = 0; i < sizeof framing / sizeof framing[0]; i++) {
        char spec[256];
        snprintf (spec, sizeof spec,
                  "{\"request\":{\"url\":\"http://example.com/\",\"headers\":{\"%s\":\"5\"}}}",
                  framing[i]);
        request = s_plan_for (config, "crawl", NULL, spec, error, sizeof error);
        assert (request == NULL && strstr (error, "reserved"));
    }
    request = s_plan_for (config, "http", "mock",
                          "{\"request\":{\"path\":\"/\",\"headers\":{\"X-API-KEY\":\"mine\","
                          "\"x-Api-key\":\"also mine\",\"X-Other\":\"s3cret\"}}}",
                          error, sizeof error);
    assert (request);
    size_t auth_lines = 0;
    for (struct curl_slist *line = request->header_list; line; line = line->next)
        if (strncasecmp (line->data, "x-api-key", 9) == 0) {
            assert (strcmp (line->data, "X-Api-Key: Key s3cret") == 0);
            auth_lines++;
        }
    assert (auth_lines == 1);
    request_destroy (&request);
    // A webhook delivery whose payload holds a NUL (a stored result's
    // "\u0000") reads under the same JSON policy as everything else.
    request = s_plan_for (config, "webhook", NULL,
                          "{\"kind\":\"webhook\",\"request\":{\"url\":\"http://example.com/h\","
                          "\"payload\":{\"result\":{\"body\":\"a\\u0000b\"}}}}", error,
                          sizeof error);
    if (!request)
        fprintf (stderr, "request: %s\n", error);
    assert (request && request_is_webhook (request));
    assert (strcmp (request_body (request, NULL), "{\"result\":{\"body\":\"a\\u0000b\"}}") == 0);
    request_destroy (&request);
    // With webhooks.secret the delivery carries the Standard Webhooks
    // signature of exactly the body sent, under its id and timestamp.
    const char *secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    assert (webhook_key_decode (secret, strlen (secret), &config->webhook_key,
                                &config->webhook_key_size) == 0);
    request = s_plan_for (config, "webhook", NULL,
                          "{\"request\":{\"url\":\"http://example.com/h\",\"payload\":{\"a\":1}}}",
                          error, sizeof error);
    assert (request);
    char signature[WEBHOOK_SIGNATURE_SIZE];
    const char *delivered = request_body (request, &size);
    webhook_sign (config->webhook_key, config->webhook_key_size,
                  request_header (request, "webhook-id"),
                  request_header (request, "webhook-timestamp"), delivered, size, signature);
    assert (strcmp (request_header (request, "webhook-signature"), signature) == 0);
    assert (strcmp (delivered, "{\"a\":1}") == 0);
    assert (strlen (request_header (request, "webhook-id")) == JOB_ID_LEN);
    request_destroy (&request);

    // Invalid specs are refused with a reason, whatever their shape.
    static const struct {
        const char *kind;       // job kind
        const char *provider;   // job provider
        const char *spec;       // spec text
    } bad[] = {
        { "http", NULL, "not json" },
        { "http", NULL, "[1,2]" },
        { "http", NULL, "{}" },
        { "http", NULL, "{\"request\":[]}" },
        { "http", NULL, "{\"request\":{}}" },
        { "http", NULL, "{\"request\":{\"url\":5}}" },
        { "http", NULL, "{\"request\":{\"url\":\"ftp://example.com/\"}}" },
        { "http", NULL, "{\"request\":{\"url\":\"file:///etc/passwd\"}}" },
        { "http", NULL, "{\"request\":{\"url\":\"/relative\"}}" },
        { "http", NULL, "{\"request\":{\"url\":\"http://\"}}" },
        { "http", NULL, "{\"request\":{\"url\":\"http://a/\",\"method\":\"GE T\"}}" },
        { "http", NULL, "{\"request\":{\"url\":\"http://a/\",\"method\":7}}" },
        // NUL is no token character (it once passed, cutting the method).
        { "http", NULL, "{\"request\":{\"url\":\"http://a/\",\"method\":\"GE\\u0000T\"}}" },
        { "http", NULL, "{\"request\":{\"url\":\"http://a/\",\"query\":[1]}}" },
        { "http", NULL, "{\"request\":{\"url\":\"http://a/\",\"query\":{\"a\":{}}}}" },
        { "http", NULL, "{\"request\":{\"url\":\"http://a/\",\"headers\":{\"a\":1}}}" },
        { "http", NULL, "{\"request\":{\"url\":\"http://a/\",\"headers\":{\"a\":\"x\\r\\nB: y\"}}}" },
        { "http", NULL, "{\"request\":{\"url\":\"http://a/\",\"headers\":{\"a b\":\"x\"}}}" },
        { "http", NULL, "{\"request\":{\"url\":\"http://a/\",\"headers\":\"x\"}}" },
        { "http", "nope", "{\"request\":{\"path\":\"/\"}}" },
        { "http", "mock", "{\"request\":{\"path\":\"/a b\"}}" },
        { "http", "mock", "{\"request\":{\"path\":7}}" },
        { "crawl", NULL, "{\"request\":{}}" },
        { "crawl", NULL, "{\"request\":{\"url\":\"http://a/\",\"max_bytes\":0}}" },
        { "crawl", NULL, "{\"request\":{\"url\":\"http://a/\",\"max_bytes\":\"big\"}}" },
        { "search", NULL, "{\"request\":{\"query\":\"x\"}}" },
        { "search", "mock", "{\"request\":{}}" },
        { "search", "mock", "{\"request\":{\"query\":7}}" },
        { "search", "mock", "{\"request\":{\"query\":\"x\",\"count\":0}}" },
        { "search", "mock", "{\"request\":{\"query\":\"x\",\"extra\":{}}}" },
        { "llm", NULL, "{\"request\":{}}" },
        { "telnet", NULL, "{\"request\":{}}" },
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        error[0] = '\0';
        request = s_plan_for (config, bad[i].kind, bad[i].provider, bad[i].spec, error,
                              sizeof error);
        if (request)
            fprintf (stderr, "request: accepted bad spec %s\n", bad[i].spec);
        assert (request == NULL);
        assert (error[0]);
        if (verbose)
            printf ("\n   refused %s: %s", bad[i].spec, error);
    }
    config_destroy (&config);
    if (verbose)
        printf ("\n   OK\n");
}
