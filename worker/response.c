// response — what one upstream attempt answered, and what it means.
#include "response.h"
#include "html.h"
#include "httpfield.h"
#include "mem.h"
#include "utf8.h"

#include <assert.h>
#include <ctype.h>
#include <jansson.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

// Header bytes kept per response: enough for any real API, bounded for a
// hostile upstream (libcurl bounds single lines, not their number).
#define HEADER_BYTES_MAX (64 * 1024)
// Retry-After values beyond a day are nonsense or hostile.
#define RETRY_AFTER_MAX_S 86400

struct _response_t {
    json_t *headers;            // lower-case name → value of the latest block
    size_t header_bytes;        // bytes kept in headers, against the cap
    char *body;                 // decoded body bytes (not NUL-terminated)
    size_t body_size;           // bytes in body
    size_t body_alloc;          // bytes allocated for body
    size_t max_bytes;           // body cap
    bool truncate;              // past the cap: keep a truncated page (crawl)
    bool truncated;             // the cap cut the body (truncate mode)
    bool too_large;             // the cap was exceeded (error mode)
    bool body_json;             // render the body as JSON whatever the content type
    char redact_header[129];    // extra header to redact (lower case), or ""
    const scrub_t *scrub;       // keeps the provider's secret out (borrowed), or NULL
};

// Header names whose values are credentials or sessions: a result never
// shows them (SPEC §5), whichever side sent them.
static const char *const s_sensitive_headers[] = {
    "authorization", "proxy-authorization", "cookie", "set-cookie", "set-cookie2",
    "x-api-key", "api-key", "proxy-authenticate", NULL
};

response_t *
response_new (size_t max_bytes, bool truncate)
{
    response_t *self = mem_calloc (1, sizeof *self);
    self->headers = json_object ();
    self->max_bytes = max_bytes;
    self->truncate = truncate;
    return self;
}

void
response_destroy (response_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    response_t *self = *self_p;
    json_decref (self->headers);
    free (self->body);
    free (self);
    *self_p = NULL;
}

void
response_header (response_t *self, const char *line, size_t len)
{
    while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
        len--;
    if (len == 0)
        return;
    // A status line starts the next response (redirect, 100 Continue): the
    // result shows the headers of the final one only.
    if (len >= 5 && memcmp (line, "HTTP/", 5) == 0) {
        json_object_clear (self->headers);
        self->header_bytes = 0;
        return;
    }
    // Obsolete line folding is not worth a special case: drop it.
    if (line[0] == ' ' || line[0] == '\t')
        return;
    const char *colon = memchr (line, ':', len);
    if (!colon || colon == line || self->header_bytes + len > HEADER_BYTES_MAX)
        return;
    size_t name_len = (size_t) (colon - line);
    char name[256];
    if (name_len >= sizeof name)
        return;
    // A name is an RFC 9110 token; anything else is no header to show.
    if (!httpfield_token (line, name_len))
        return;
    for (size_t i = 0; i < name_len; i++)
        name[i] = (char) tolower ((unsigned char) line[i]);
    name[name_len] = '\0';
    const char *value = colon + 1;
    size_t value_len = len - name_len - 1;
    while (value_len > 0 && (*value == ' ' || *value == '\t')) {
        value++;
        value_len--;
    }
    while (value_len > 0 && (value[value_len - 1] == ' ' || value[value_len - 1] == '\t'))
        value_len--;
    json_t *existing = json_object_get (self->headers, name);
    if (!existing && json_object_size (self->headers) >= RESPONSE_HEADERS_MAX)
        return;
    json_t *joined = NULL;
    if (existing) {
        // Repeated headers are one list (RFC 9110 §5.3). HEADER_BYTES_MAX
        // bounds it: an ordinary allocation under the policy.
        const char *old = json_string_value (existing);
        size_t old_len = json_string_length (existing);
        char *buffer = mem_alloc (old_len + 2 + value_len);
        memcpy (buffer, old, old_len);
        memcpy (buffer + old_len, ", ", 2);
        memcpy (buffer + old_len + 2, value, value_len);
        joined = json_stringn (buffer, old_len + 2 + value_len);
        free (buffer);
    }
    else
        joined = json_stringn (value, value_len);
    // json_stringn refuses invalid UTF-8: such a header is dropped.
    if (joined) {
        json_object_set_new (self->headers, name, joined);
        self->header_bytes += len;
    }
}

bool
response_body (response_t *self, const char *data, size_t len)
{
    if (self->truncated || self->too_large)
        return false;
    size_t room = self->max_bytes - self->body_size;
    bool over = len > room;
    if (over) {
        if (!self->truncate) {
            self->too_large = true;
            return false;
        }
        len = room;
        self->truncated = true;
    }
    if (self->body_size + len > self->body_alloc) {
        size_t alloc = self->body_alloc ? self->body_alloc : 4096;
        while (alloc < self->body_size + len)
            alloc *= 2;
        if (alloc > self->max_bytes)
            alloc = self->max_bytes;
        // The upstream sizes the body (up to the cap): the memory policy's
        // exception (common/mem.h).
        char *grown = mem_try_realloc (self->body, alloc);
        if (!grown) {
            // Out of memory is reported like an oversized answer: the
            // attempt cannot be held, and retrying would not help.
            self->too_large = true;
            return false;
        }
        self->body = grown;
        self->body_alloc = alloc;
    }
    if (len > 0)
        memcpy (self->body + self->body_size, data, len);
    self->body_size += len;
    return !over;
}

const char *
response_header_value (const response_t *self, const char *name)
{
    return json_string_value (json_object_get (self->headers, name));
}

void
response_overflow (response_t *self)
{
    self->too_large = true;
}

bool
response_overflowed (const response_t *self)
{
    return self->too_large;
}

int
response_set_body (response_t *self, const char *data, size_t len, bool json)
{
    // An assembled stream, as large as the upstream made it (behind the
    // result cap): the memory policy's exception (common/mem.h).
    char *copy = mem_try_alloc (len ? len : 1);
    if (!copy)
        return -1;
    if (len)
        memcpy (copy, data, len);
    free (self->body);
    self->body = copy;
    self->body_size = len;
    self->body_alloc = len ? len : 1;
    self->body_json = json;
    self->truncated = false;
    return 0;
}

void
response_redact (response_t *self, const char *header_name, const scrub_t *scrub)
{
    if (header_name) {
        size_t i = 0;
        for (; header_name[i] && i < sizeof self->redact_header - 1; i++)
            self->redact_header[i] = (char) tolower ((unsigned char) header_name[i]);
        self->redact_header[i] = '\0';
    }
    self->scrub = scrub;
}

// s_sensitive is true for a header name (lower case) whose value is redacted.
static bool
s_sensitive (const response_t *self, const char *name)
{
    for (size_t i = 0; s_sensitive_headers[i]; i++)
        if (strcmp (name, s_sensitive_headers[i]) == 0)
            return true;
    return self->redact_header[0] && strcmp (name, self->redact_header) == 0;
}

// s_headers_redacted returns the headers as the result shows them: the
// values of sensitive headers, and any value holding the secret, redacted;
// a header whose name holds the secret left out.
static json_t *
s_headers_redacted (const response_t *self)
{
    json_t *headers = json_object ();
    const char *name;
    json_t *value;
    json_object_foreach (self->headers, name, value) {
        if (scrub_found (self->scrub, name, strlen (name)))
            continue;
        bool hide = s_sensitive (self, name)
                    || scrub_found (self->scrub, json_string_value (value),
                                    json_string_length (value));
        json_object_set_new (headers, name, hide ? json_string (RESPONSE_REDACTED)
                                                 : json_incref (value));
    }
    return headers;
}

bool
response_truncated (const response_t *self)
{
    return self->truncated;
}

// s_is_json_type is true for application/json and any +json media type.
static bool
s_is_json_type (const char *content_type)
{
    if (!content_type)
        return false;
    size_t len = strcspn (content_type, ";");
    while (len > 0 && isspace ((unsigned char) content_type[len - 1]))
        len--;
    while (len > 0 && isspace ((unsigned char) *content_type)) {
        content_type++;
        len--;
    }
    if (len == 16 && strncasecmp (content_type, "application/json", 16) == 0)
        return true;
    return len > 5 && strncasecmp (content_type + len - 5, "+json", 5) == 0;
}

// s_utf8_whole_prefix returns the length of data without a multi-byte UTF-8
// sequence cut at its end, so a truncated page still reads as text.
static size_t
s_utf8_whole_prefix (const char *data, size_t size)
{
    const unsigned char *bytes = (const unsigned char *) data;
    // Walk back over at most three continuation bytes to the lead byte.
    size_t lead = size;
    for (size_t back = 0; back < 4 && lead > 0; back++) {
        lead--;
        if ((bytes[lead] & 0xC0) != 0x80)
            break;
    }
    if (lead == size)
        return size;
    unsigned char c = bytes[lead];
    size_t need = c < 0x80 ? 1 : (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3
                 : (c & 0xF8) == 0xF0 ? 4 : 1;
    return size - lead < need ? lead : size;
}

// s_json_string_size returns the bytes data takes as a JSON string written
// by s_json_string_put (quotes included), or SIZE_MAX when data is not
// UTF-8 (it is then shown as base64); it stops counting past cap (any
// size over cap will do for the caller).
static size_t
s_json_string_size (const char *data, size_t len, size_t cap)
{
    const unsigned char *bytes = (const unsigned char *) data;
    size_t size = 2;
    for (size_t i = 0; i < len && size <= cap;) {
        unsigned char c = bytes[i];
        if (c >= 0x80) {
            size_t sequence = utf8_sequence (bytes + i, len - i);
            if (sequence == 0)
                return SIZE_MAX;
            size += sequence;
            i += sequence;
            continue;
        }
        size += c == '"' || c == '\\' || c == '\n' || c == '\r' || c == '\t' ? 2
                : c < 0x20 ? 6 : 1;
        i++;
    }
    return size;
}

// s_json_string_put writes data (UTF-8) as a JSON string at out, which has
// room for s_json_string_size bytes; returns the bytes written. Escaping
// here costs a pass over the bytes, where building a jansson string and
// dumping it cost ten times as much (a sprintf per control character).
static size_t
s_json_string_put (char *out, const char *data, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    char *at = out;
    *at++ = '"';
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char) data[i];
        if (c >= 0x20 && c != '"' && c != '\\') {
            *at++ = (char) c;
            continue;
        }
        *at++ = '\\';
        if (c == '"' || c == '\\')
            *at++ = (char) c;
        else if (c == '\n')
            *at++ = 'n';
        else if (c == '\r')
            *at++ = 'r';
        else if (c == '\t')
            *at++ = 't';
        else {
            memcpy (at, "u00", 3);
            at[3] = hex[c >> 4];
            at[4] = hex[c & 0xF];
            at += 5;
        }
    }
    *at++ = '"';
    return (size_t) (at - out);
}

int
response_json_string (const char *data, size_t len, size_t cap, char **out, size_t *out_len)
{
    *out = NULL;
    *out_len = 0;
    size_t size = s_json_string_size (data, len, cap);
    if (size == SIZE_MAX)
        return 1;
    if (size > cap)
        return -1;
    // data is an upstream's text (behind cap): the memory policy's
    // exception (common/mem.h).
    *out = mem_try_alloc (size + 1);
    if (!*out)
        return -1;
    *out_len = s_json_string_put (*out, data, len);
    (*out)[*out_len] = '\0';
    return 0;
}

// s_json_within_policy is true when a body may be shown as the JSON value
// it holds: small enough to parse at a bounded cost, shaped within the
// policy less what wraps it, and valid JSON (jsontext_load parses it).
static bool
s_json_within_policy (const char *data, size_t len)
{
    if (len > RESPONSE_JSON_PARSE_MAX_BYTES
        || !jsontext_scan (data, len, RESPONSE_BODY_MAX_DEPTH, RESPONSE_BODY_MAX_VALUES).within)
        return false;
    json_t *value = jsontext_load (data, len, NULL);
    json_decref (value);
    return value != NULL;
}

// The body as the result shows it: a JSON text to splice in.
typedef struct {
    char *owned;                // text allocated here, or NULL
    const char *text;           // the JSON text of the body value
    size_t len;                 // its length
    const char *encoding;       // body_encoding ("base64", "json_text"), or NULL
} s_body_t;

// s_body_render renders body (size bytes, already scrubbed) as the JSON
// text of the result's body: the JSON the upstream sent, as sent, when it
// is JSON within the policy; else a string when it is UTF-8 and not much
// longer so than base64 (escaping control characters can make a string six
// times the bytes: a zero-filled body goes as base64); else base64. Returns 0,
// or -1 when the text would exceed cap bytes or memory ran out.
static int
s_body_render (const response_t *self, const char *body, size_t size, const char *content_type,
               size_t cap, s_body_t *out)
{
    *out = (s_body_t) { .text = "\"\"", .len = 2 };
    bool json = (self->body_json || s_is_json_type (content_type)) && size > 0;
    if (json && !self->truncated && s_json_within_policy (body, size)) {
        out->text = body;
        out->len = size;
        return size > cap ? -1 : 0;
    }
    size_t text_size = self->truncated ? s_utf8_whole_prefix (body, size) : size;
    size_t base64_size = sodium_base64_ENCODED_LEN (size, sodium_base64_VARIANT_ORIGINAL) - 1 + 2;
    // Text stays text unless base64 saves more than a line's worth.
    size_t string_limit = base64_size + 64;
    if (s_json_string_size (body, text_size, string_limit) <= string_limit) {
        if (response_json_string (body, text_size, cap, &out->owned, &out->len) != 0)
            return -1;
        out->text = out->owned;
        out->encoding = json ? "json_text" : NULL;
        return 0;
    }
    if (base64_size > cap)
        return -1;
    // The upstream's size, behind cap: the memory policy's exception.
    out->owned = mem_try_alloc (base64_size + 1);
    if (!out->owned)
        return -1;
    out->owned[0] = '"';
    sodium_bin2base64 (out->owned + 1, base64_size - 1, (const unsigned char *) body, size,
                       sodium_base64_VARIANT_ORIGINAL);
    out->owned[base64_size - 1] = '"';
    out->owned[base64_size] = '\0';
    out->len = base64_size;
    out->text = out->owned;
    out->encoding = "base64";
    return 0;
}

// s_string_or_null returns a JSON string for text, or null when text is NULL
// or not UTF-8.
static json_t *
s_string_or_null (const char *text)
{
    json_t *value = text ? json_string (text) : NULL;
    return value ? value : json_null ();
}

// s_title_render renders the title of a crawled page (body, size bytes,
// already scrubbed) as JSON text: a string, or null when the page has none
// or it is not UTF-8. The title is as long as the page, an upstream's
// size: it is rendered by hand, not through jansson (common/mem.h).
// Returns 0 with *out a new text (caller frees) or NULL for null, or -1
// when it would exceed cap or memory ran out.
static int
s_title_render (const response_t *self, const char *body, size_t size, size_t cap, char **out,
                size_t *out_len)
{
    *out = NULL;
    *out_len = 0;
    char *title = NULL;
    int rc = html_title (body, size, &title);
    size_t title_len = title ? strlen (title) : 0;
    char *clean = NULL;
    size_t clean_len = 0;
    // Entities decoded can spell the secret the body did not show raw.
    if (rc == 1 && (rc = scrub_text (self->scrub, title, title_len, &clean, &clean_len)) == 1) {
        free (title);
        title = clean;
        title_len = clean_len;
    }
    if (rc >= 0 && title)
        rc = response_json_string (title, title_len, cap, out, out_len) < 0 ? -1 : 0;
    free (title);
    return rc < 0 ? -1 : 0;
}

// s_result_json renders the result object of SPEC §3: its small fields
// through jansson; what an upstream sized (the body, a crawl's title)
// rendered by hand and spliced in after them. Returns NULL when the text
// would exceed info->max_result_bytes or memory for those parts ran out
// (they are the worker's graceful exception, common/mem.h).
static char *
s_result_json (response_t *self, const response_info_t *info)
{
    size_t cap = info->max_result_bytes ? info->max_result_bytes : SIZE_MAX;
    // An upstream that echoes the request (or leaks it in an error page)
    // must not carry the provider's secret into the result.
    const char *body = self->body ? self->body : "";
    size_t size = self->body_size;
    char *scrubbed = NULL;
    size_t scrubbed_size = 0;
    if (scrub_json (self->scrub, body, size, &scrubbed, &scrubbed_size) < 0)
        return NULL;
    if (scrubbed) {
        body = scrubbed;
        size = scrubbed_size;
    }
    json_t *headers = s_headers_redacted (self);
    const char *content_type = json_string_value (json_object_get (headers, "content-type"));
    s_body_t rendered = { .owned = NULL };
    char *title = NULL;
    size_t title_len = 0;
    if (s_body_render (self, body, size, content_type, cap, &rendered) < 0
        || (info->crawl && s_title_render (self, body, size, cap, &title, &title_len) < 0)) {
        json_decref (headers);
        free (rendered.owned);
        free (scrubbed);
        return NULL;
    }
    json_t *result = json_object ();
    json_object_set_new (result, "status", json_integer (info->status));
    json_object_set_new (result, "headers", headers);
    if (rendered.encoding)
        json_object_set_new (result, "body_encoding", json_string (rendered.encoding));
    json_object_set_new (result, "latency_ms", json_integer (info->latency_ms));
    if (info->crawl) {
        json_object_set_new (result, "final_url", s_string_or_null (info->final_url));
        json_object_set_new (result, "content_type", s_string_or_null (content_type));
    }
    char *head = json_dumps (result, JSON_COMPACT);
    json_decref (result);
    // The head ends with '}': the rest goes before it, in the order the
    // result always had (title and truncated last of the crawl fields).
    const char *title_text = title ? title : "null";
    if (!title)
        title_len = 4;
    const char *truncated = self->truncated ? "true" : "false";
    size_t head_len = strlen (head) - 1;
    size_t crawl_len = info->crawl ? strlen (",\"title\":") + title_len
                                     + strlen (",\"truncated\":") + strlen (truncated) : 0;
    size_t total = head_len + crawl_len + strlen (",\"body\":") + rendered.len + 1;
    // The whole result, an upstream's size behind cap: the memory policy's
    // exception (common/mem.h).
    char *text = total <= cap ? mem_try_realloc (head, total + 1) : NULL;
    if (text) {
        char *at = text + head_len;
        if (info->crawl)
            at += sprintf (at, ",\"title\":%s,\"truncated\":%s", title_text, truncated);
        memcpy (at, ",\"body\":", 8);
        memcpy (at + 8, rendered.text, rendered.len);
        memcpy (at + 8 + rendered.len, "}", 2);
    }
    else
        free (head);
    free (title);
    free (rendered.owned);
    free (scrubbed);
    return text;
}

// s_error_json renders an error object; upstream_status is left out when 0.
static char *
s_error_json (const char *type, const char *message, long upstream_status)
{
    json_t *error = json_object ();
    json_object_set_new (error, "type", json_string (type));
    // The message may quote upstream text that is not UTF-8.
    json_t *text = json_string (message ? message : "");
    json_object_set_new (error, "message", text ? text : json_string (type));
    if (upstream_status)
        json_object_set_new (error, "upstream_status", json_integer (upstream_status));
    char *dumped = json_dumps (error, JSON_COMPACT);
    json_decref (error);
    return dumped;
}

void
response_outcome_error (response_outcome_t *out, const char *outcome,
                        const char *type, const char *message)
{
    memset (out, 0, sizeof *out);
    out->outcome = outcome;
    out->error = s_error_json (type, message, 0);
}

void
response_outcome_free (response_outcome_t *out)
{
    free (out->result);
    free (out->error);
    free (out->usage);
    free (out->model);
    out->result = NULL;
    out->error = NULL;
    out->usage = NULL;
    out->model = NULL;
}

const char *
response_body_bytes (const response_t *self, size_t *len)
{
    *len = self->body_size;
    return self->body;
}

// s_fail fills out as an attempt that ended without a result; the message
// may quote the upstream (libcurl's error text), so it is scrubbed.
static void
s_fail (const response_t *self, response_outcome_t *out, const char *outcome, const char *type,
        const char *message)
{
    char *clean = NULL;
    size_t clean_len = 0;
    int rc = scrub_text (self->scrub, message, strlen (message), &clean, &clean_len);
    response_outcome_error (out, outcome, type, rc == 0 ? message
                                                : rc > 0 ? clean : RESPONSE_REDACTED);
    free (clean);
}

// s_upstream_protocol_error is true for the codes libcurl gives when the
// upstream's bytes are not HTTP it can read: a status line (including
// CURLE_UNSUPPORTED_PROTOCOL, unless info->scheme_refused says a redirect
// left http), a header line, a content encoding, an HTTP/2 frame, a
// redirect's Location.
static bool
s_upstream_protocol_error (CURLcode code)
{
    return code == CURLE_UNSUPPORTED_PROTOCOL || code == CURLE_WEIRD_SERVER_REPLY
           || code == CURLE_BAD_CONTENT_ENCODING || code == CURLE_HTTP2
           || code == CURLE_HTTP2_STREAM || code == CURLE_HTTP3 || code == CURLE_URL_MALFORMAT;
}

// response_finish maps the transfer's end onto SPEC §3's error types. The
// rule: blocked_by_policy means the SSRF policy refused (an address, or a
// redirect to another scheme) and nothing else; an upstream whose bytes do
// not make HTTP sense is an upstream_protocol_error (retried, and a
// failure of its provider for the breaker).
void
response_finish (response_t *self, const response_info_t *info, response_outcome_t *out)
{
    memset (out, 0, sizeof *out);
    out->status = info->status;
    const char *detail = info->curl_detail && *info->curl_detail
                         ? info->curl_detail : curl_easy_strerror (info->code);
    char message[512];
    CURLcode code = info->code;
    bool answered = code == CURLE_OK || (code == CURLE_WRITE_ERROR && self->truncated);

    if (!answered && info->blocked)
        s_fail (self, out, "failed", "blocked_by_policy",
                "the upstream address is private or reserved "
                "(security.allow_private_networks is off)");
    else if (!answered && info->scheme_refused)
        s_fail (self, out, "failed", "blocked_by_policy", "only http and https URLs are allowed");
    else if (self->too_large || code == CURLE_FILESIZE_EXCEEDED) {
        snprintf (message, sizeof message, "the upstream response exceeds %zu bytes",
                  self->max_bytes);
        s_fail (self, out, "failed", "response_too_large", message);
    }
    else if (answered && info->status >= 100) {
        out->result = s_result_json (self, info);
        long status = info->status;
        const char *dropped = out->result ? "" : " (its answer exceeds the result cap and is "
                                                 "not kept)";
        if (status >= 200 && status <= 299 && out->result)
            out->outcome = "succeeded";
        else if (status >= 200 && status <= 299) {
            snprintf (message, sizeof message, "the result exceeds %zu bytes",
                      info->max_result_bytes);
            s_fail (self, out, "failed", "response_too_large", message);
        }
        else {
            snprintf (message, sizeof message, "upstream answered %ld%s", status, dropped);
            out->error = s_error_json ("upstream_status", message, status);
            if (status == 429 || status >= 500 || info->retry_all) {
                out->outcome = "retry";
                const char *retry_after =
                    json_string_value (json_object_get (self->headers, "retry-after"));
                out->retry_after_ms = response_retry_after_ms (retry_after, info->now_s);
            }
            else
                out->outcome = "failed";
        }
    }
    else if (code == CURLE_OPERATION_TIMEDOUT) {
        snprintf (message, sizeof message, "no complete answer within %lld ms",
                  (long long) info->timeout_ms);
        s_fail (self, out, "retry", "upstream_timeout", message);
    }
    else if (code == CURLE_COULDNT_RESOLVE_HOST || code == CURLE_COULDNT_RESOLVE_PROXY
             || code == CURLE_COULDNT_CONNECT || code == CURLE_SSL_CONNECT_ERROR
             || code == CURLE_PEER_FAILED_VERIFICATION)
        s_fail (self, out, "retry", "connect_failed", detail);
    else if (code == CURLE_URL_MALFORMAT && info->status == 0)
        // The URL the request began with; a redirect's is the upstream's.
        s_fail (self, out, "failed", "invalid_request", detail);
    else if (s_upstream_protocol_error (code))
        s_fail (self, out, "retry", "upstream_protocol_error", detail);
    else if (code == CURLE_TOO_MANY_REDIRECTS)
        s_fail (self, out, "failed", "too_many_redirects", detail);
    else if (code == CURLE_OUT_OF_MEMORY)
        s_fail (self, out, "retry", "worker_out_of_memory", detail);
    else
        s_fail (self, out, "retry", "transfer_failed", detail);
    out->status = info->status;
}

int64_t
response_retry_after_ms (const char *value, int64_t now_s)
{
    if (!value)
        return 0;
    while (isspace ((unsigned char) *value))
        value++;
    if (!*value)
        return 0;
    int64_t seconds = -1;
    if (isdigit ((unsigned char) *value)) {
        const char *p = value;
        seconds = 0;
        while (isdigit ((unsigned char) *p)) {
            if (seconds <= RETRY_AFTER_MAX_S)
                seconds = seconds * 10 + (*p - '0');
            p++;
        }
        while (isspace ((unsigned char) *p))
            p++;
        if (*p)
            return 0;
    }
    else {
        time_t when = curl_getdate (value, NULL);
        if (when == (time_t) -1)
            return 0;
        seconds = (int64_t) when - now_s;
    }
    if (seconds <= 0)
        return 0;
    if (seconds > RETRY_AFTER_MAX_S)
        seconds = RETRY_AFTER_MAX_S;
    return seconds * 1000;
}

// --- self-test ---

// s_feed gives a response the header lines in a NULL-terminated list.
static void
s_feed (response_t *self, const char *const *lines)
{
    for (size_t i = 0; lines[i]; i++)
        response_header (self, lines[i], strlen (lines[i]));
}

// s_parse parses JSON text for a check, the way every reader will: what the
// worker emits is what common/jsontext reads back.
static json_t *
s_parse (const char *text)
{
    assert (text);
    json_t *value = jsontext_loads (text, NULL);
    assert (value);
    return value;
}

// s_render feeds a 200 answer of content_type with body (len bytes) to a
// new response and returns the parsed result; the outcome is checked.
static json_t *
s_render (const char *content_type, const char *body, size_t len, const scrub_t *scrubber,
          const char *outcome)
{
    response_t *response = response_new (64 * 1024 * 1024, false);
    assert (response);
    char line[256];
    snprintf (line, sizeof line, "Content-Type: %s\r\n", content_type);
    response_header (response, "HTTP/1.1 200 OK\r\n", 17);
    response_header (response, line, strlen (line));
    assert (response_body (response, body, len));
    response_redact (response, NULL, scrubber);
    response_info_t info = { .code = CURLE_OK, .status = 200, .max_result_bytes = 16 << 20 };
    response_outcome_t out;
    response_finish (response, &info, &out);
    assert (strcmp (out.outcome, outcome) == 0);
    json_t *result = out.result ? s_parse (out.result) : NULL;
    response_outcome_free (&out);
    response_destroy (&response);
    return result;
}

// s_repeat returns count copies of unit between open and close (caller frees).
static char *
s_repeat (const char *open, const char *unit, size_t count, const char *close, size_t *len)
{
    size_t unit_len = strlen (unit);
    char *text = mem_alloc (strlen (open) + unit_len * count + strlen (close) + 1);
    size_t at = (size_t) sprintf (text, "%s", open);
    for (size_t i = 0; i < count; i++, at += unit_len)
        memcpy (text + at, unit, unit_len);
    at += (size_t) sprintf (text + at, "%s", close);
    *len = at;
    return text;
}

// s_test_bounded_json checks the cost bounds: JSON beyond the policy (less
// its wrapping) or beyond the parse size is kept as a string marked
// json_text; JSON within it is the upstream's text, as sent; NUL survives.
static void
s_test_bounded_json (void)
{
    size_t len;
    // 2,048 levels and too many values: the text, as a string.
    char *deep = s_repeat ("", "[", 2048, "", &len);
    char *deep_closed = mem_realloc (deep, 4097);
    memset (deep_closed + 2048, ']', 2048);
    deep_closed[4096] = '\0';
    json_t *result = s_render ("application/json", deep_closed, 4096, NULL, "succeeded");
    assert (strcmp (json_string_value (json_object_get (result, "body")), deep_closed) == 0);
    assert (strcmp (json_string_value (json_object_get (result, "body_encoding")), "json_text") == 0);
    json_decref (result);
    free (deep_closed);
    // RESPONSE_BODY_MAX_DEPTH levels pass, one more does not.
    for (size_t depth = RESPONSE_BODY_MAX_DEPTH; depth <= RESPONSE_BODY_MAX_DEPTH + 1; depth++) {
        char *nested = mem_alloc (2 * depth + 1);
        memset (nested, '[', depth);
        memset (nested + depth, ']', depth);
        nested[2 * depth] = '\0';
        result = s_render ("application/json", nested, 2 * depth, NULL, "succeeded");
        json_t *body = json_object_get (result, "body");
        assert (depth == RESPONSE_BODY_MAX_DEPTH ? json_is_array (body) : json_is_string (body));
        json_decref (result);
        free (nested);
    }
    // The array and its members count: one member too many, then exactly
    // enough (two bytes a value keeps both under the parse size).
    char *wide = s_repeat ("[", "0,", RESPONSE_BODY_MAX_VALUES - 1, "0]", &len);
    assert (len <= RESPONSE_JSON_PARSE_MAX_BYTES);
    result = s_render ("application/json", wide, len, NULL, "succeeded");
    assert (json_string_length (json_object_get (result, "body")) == len);
    assert (strcmp (json_string_value (json_object_get (result, "body_encoding")), "json_text") == 0);
    json_decref (result);
    free (wide);
    wide = s_repeat ("[", "0,", RESPONSE_BODY_MAX_VALUES - 2, "0]", &len);
    result = s_render ("application/json", wide, len, NULL, "succeeded");
    assert (json_array_size (json_object_get (result, "body")) == RESPONSE_BODY_MAX_VALUES - 1);
    json_decref (result);
    free (wide);
    char *big = s_repeat ("[", "\"0123456789abcdef\",", RESPONSE_JSON_PARSE_MAX_BYTES / 19,
                          "\"x\"]", &len);
    assert (len > RESPONSE_JSON_PARSE_MAX_BYTES);
    result = s_render ("application/json", big, len, NULL, "succeeded");
    assert (json_is_string (json_object_get (result, "body")));
    json_decref (result);
    free (big);
    // Within the bounds the text is spliced as sent: numbers keep their
    // spelling, NUL in strings survives.
    const char *exact = "{\"a\": 0.1, \"b\":\"x\\u0000y\", \"c\":[1e2]}";
    response_t *response = response_new (1024, false);
    response_header (response, "Content-Type: application/json\r\n", 32);
    assert (response_body (response, exact, strlen (exact)));
    response_info_t info = { .code = CURLE_OK, .status = 200, .latency_ms = 3 };
    response_outcome_t out;
    response_finish (response, &info, &out);
    assert (strstr (out.result, ",\"body\":{\"a\": 0.1, \"b\":\"x\\u0000y\", \"c\":[1e2]}}"));
    result = s_parse (out.result);
    assert (json_string_length (json_object_get (json_object_get (result, "body"), "b")) == 3);
    assert (json_object_get (result, "body_encoding") == NULL);
    json_decref (result);
    response_outcome_free (&out);
    // The rendered text is capped: a 2xx over it fails as response_too_large,
    // a 503 over it is still retried, without the result.
    info.max_result_bytes = 64;
    response_finish (response, &info, &out);
    assert (strcmp (out.outcome, "failed") == 0 && !out.result);
    assert (strstr (out.error, "response_too_large"));
    response_outcome_free (&out);
    info.status = 503;
    response_finish (response, &info, &out);
    assert (strcmp (out.outcome, "retry") == 0 && !out.result);
    assert (strstr (out.error, "\"upstream_status\":503"));
    response_outcome_free (&out);
    response_destroy (&response);
    // Control characters escape as \u00XX, six bytes for one: a body that
    // would grow more as a string than as base64 goes as base64 (zeros);
    // text with a few of them stays a string.
    char zeros[4096] = { 0 };
    result = s_render ("application/octet-stream", zeros, sizeof zeros, NULL, "succeeded");
    assert (strcmp (json_string_value (json_object_get (result, "body_encoding")), "base64") == 0);
    assert (json_string_length (json_object_get (result, "body")) == (sizeof zeros + 2) / 3 * 4);
    json_decref (result);
    result = s_render ("text/plain", "a\0b\tc\n", 6, NULL, "succeeded");
    json_t *body = json_object_get (result, "body");
    assert (json_string_length (body) == 6 && memcmp (json_string_value (body), "a\0b\tc\n", 6) == 0);
    assert (json_object_get (result, "body_encoding") == NULL);
    json_decref (result);
    response = response_new (8192, false);
    assert (response_body (response, zeros, sizeof zeros));
    info = (response_info_t) { .code = CURLE_OK, .status = 200, .max_result_bytes = 4096 };
    response_finish (response, &info, &out);
    assert (strcmp (out.outcome, "failed") == 0 && strstr (out.error, "response_too_large"));
    response_outcome_free (&out);
    response_destroy (&response);
}

// s_test_secret_forms checks that a secret holding a quote, a backslash and
// a slash never reaches the client, however the upstream spells it.
static void
s_test_secret_forms (void)
{
    const char *secret = "sk-q\"b\\s/x0123";
    scrub_t *scrubber = scrub_new (secret);
    assert (scrubber);
    static const struct {
        const char *type;       // content type
        const char *body;       // what the upstream echoed
    } forms[] = {
        { "application/json", "{\"auth\":\"Bearer sk-q\\\"b\\\\s/x0123\"}" },
        { "application/json", "{\"auth\":\"Bearer sk-q\\\"b\\\\s\\/x0123\"}" },
        { "application/json", "{\"auth\":\"\\u0073\\u006b-q\\u0022b\\u005cs\\u002fx0123\"}" },
        { "application/json", "{\"sk-q\\\"b\\\\s/x0123\":1}" },
        { "application/json", "[\"sk-q\\\"b\\\\s\\/x0123\"" },
        { "text/plain", "Authorization: Bearer sk-q\"b\\s/x0123" },
        { "text/html", "<title>sk-q&quot;b\\s/x0123</title>" },
        { "application/octet-stream", "\xff\xfe sk-q\"b\\s/x0123 \xff" },
    };
    for (size_t i = 0; i < sizeof forms / sizeof forms[0]; i++) {
        json_t *result = s_render (forms[i].type, forms[i].body, strlen (forms[i].body), scrubber,
                                   "succeeded");
        char *text = jsontext_dump (result);
        assert (text && !scrub_found (scrubber, text, strlen (text)));
        json_t *body = json_object_get (result, "body");
        const char *encoding = json_string_value (json_object_get (result, "body_encoding"));
        if (encoding && strcmp (encoding, "base64") == 0) {
            unsigned char bytes[256];
            size_t size = 0;
            assert (sodium_base642bin (bytes, sizeof bytes, json_string_value (body),
                                       json_string_length (body), NULL, &size, NULL,
                                       sodium_base64_VARIANT_ORIGINAL) == 0);
            assert (!memmem (bytes, size, secret, strlen (secret)) && memmem (bytes, size,
                                                                               "[redacted]", 10));
        }
        else if (json_is_string (body))
            assert (!strstr (json_string_value (body), secret) && strstr (json_string_value (body),
                                                                         "[redacted]"));
        free (text);
        json_decref (result);
    }
    // Headers: the value holding the secret in any spelling, and a name
    // holding it, are hidden; the title decodes entities, then is scrubbed.
    response_t *response = response_new (1024, true);
    const char *const lines[] = {
        "HTTP/1.1 200 OK\r\n", "Content-Type: text/html\r\n",
        "X-Echo: Bearer sk-q\\\"b\\\\s\\/x0123\r\n", "X-Fine: ok\r\n", NULL
    };
    s_feed (response, lines);
    const char *page = "<title>sk-q&#34;b&#92;s&#47;x0123 &amp; more</title>";
    assert (response_body (response, page, strlen (page)));
    response_redact (response, NULL, scrubber);
    response_info_t info = { .code = CURLE_OK, .status = 200, .crawl = true };
    response_outcome_t out;
    response_finish (response, &info, &out);
    json_t *result = s_parse (out.result);
    json_t *headers = json_object_get (result, "headers");
    assert (strcmp (json_string_value (json_object_get (headers, "x-echo")), RESPONSE_REDACTED) == 0);
    assert (strcmp (json_string_value (json_object_get (headers, "x-fine")), "ok") == 0);
    assert (strcmp (json_string_value (json_object_get (result, "title")),
                    RESPONSE_REDACTED " & more") == 0);
    json_decref (result);
    response_outcome_free (&out);
    // Error messages that quote the upstream are scrubbed too.
    info = (response_info_t) { .code = CURLE_WEIRD_SERVER_REPLY,
                               .curl_detail = "bad header: sk-q\"b\\s/x0123" };
    response_finish (response, &info, &out);
    assert (!strstr (out.error, "x0123") && strstr (out.error, "upstream_protocol_error"));
    response_outcome_free (&out);
    response_destroy (&response);
    scrub_destroy (&scrubber);
}

// s_test_out_of_memory makes each allocation an upstream sizes fail in turn
// (the memory policy's exception, common/mem.h): the attempt fails as
// response_too_large, nothing shows the secret, nothing leaks (the ASan
// build runs this too); once none fails, the result is whole.
static void
s_test_out_of_memory (void)
{
    const char *secret = "sk-0123456789";
    scrub_t *scrubber = scrub_new (secret);
    static const struct {
        const char *type;       // content type
        const char *page;       // body
        size_t len;             // its length
    } answers[] = {
#define ANSWER(type, page) { type, page, sizeof page - 1 }
        // Title, scrubbed text, escaped controls.
        ANSWER ("text/html", "<title>t &amp; sk-0123456789</title>\"sk-0123\\u00345678\\u0039\" \x01"),
        // JSON spliced as sent, after its strings are decoded and scrubbed.
        ANSWER ("application/json", "{\"k\":\"sk-0123456789\",\"e\":\"\\u0073k-0123456789\"}"),
        // Bytes that are no text: base64.
        ANSWER ("application/octet-stream", "\xff\xfe\0\0sk-0123456789\0\0\0\0\0\0\0\0\0\0\0\0\0"),
#undef ANSWER
    };
    const char *const lines[] = { "HTTP/1.1 200 OK\r\n", NULL };
    for (size_t i = 0; i < sizeof answers / sizeof answers[0]; i++) {
        bool whole = false;
        long n = 0;
        for (; n < 100 && !whole; n++) {
            response_t *response = response_new (4096, true);
            s_feed (response, lines);
            char type[64];
            snprintf (type, sizeof type, "Content-Type: %s\r\n", answers[i].type);
            response_header (response, type, strlen (type));
            response_redact (response, NULL, scrubber);
            mem_try_fail_after (n);
            response_body (response, answers[i].page, answers[i].len);
            response_info_t info = { .code = CURLE_OK, .status = 200, .crawl = true,
                                     .max_result_bytes = 1 << 20 };
            response_outcome_t out;
            response_finish (response, &info, &out);
            size_t failed = mem_try_fail_after (-1);
            if (failed == 0) {
                whole = true;
                assert (strcmp (out.outcome, "succeeded") == 0 && out.result);
                json_t *result = s_parse (out.result);
                assert (json_is_string (json_object_get (result, "title"))
                        || i > 0);
                json_decref (result);
            }
            else {
                if (strcmp (out.outcome, "failed") != 0 || out.result
                    || !strstr (out.error, "response_too_large"))
                    fprintf (stderr, "response: allocation %ld failing gave %s %s\n", n,
                             out.outcome, out.error ? out.error : "-");
                assert (strcmp (out.outcome, "failed") == 0 && !out.result);
                assert (strstr (out.error, "response_too_large"));
            }
            assert (!out.result || !strstr (out.result, "0123456789"));
            assert (!strstr (out.error ? out.error : "", "0123456789"));
            response_outcome_free (&out);
            response_destroy (&response);
        }
        assert (whole && n > 1);
    }
    scrub_destroy (&scrubber);
}

void
response_test (bool verbose)
{
    if (verbose)
        printf (" * response: ");
    // Retry-After, both forms.
    assert (response_retry_after_ms ("120", 0) == 120000);
    assert (response_retry_after_ms (" 3 ", 0) == 3000);
    assert (response_retry_after_ms ("99999999999999999999", 0) == RETRY_AFTER_MAX_S * 1000LL);
    assert (response_retry_after_ms ("soon", 0) == 0);
    assert (response_retry_after_ms ("12abc", 0) == 0);
    assert (response_retry_after_ms (NULL, 0) == 0);
    assert (response_retry_after_ms ("", 0) == 0);
    // Wed, 21 Oct 2015 07:28:00 GMT is 1445412480.
    assert (response_retry_after_ms ("Wed, 21 Oct 2015 07:28:00 GMT", 1445412480 - 30) == 30000);
    assert (response_retry_after_ms ("Wed, 21 Oct 2015 07:28:00 GMT", 1445412480 + 30) == 0);

    // A JSON answer: headers lower-cased, repeated joined, cookies dropped,
    // only the final response of a redirect chain kept.
    response_t *response = response_new (1024, false);
    assert (response);
    const char *const lines[] = {
        "HTTP/1.1 302 Found\r\n", "Location: /elsewhere\r\n", "\r\n",
        "HTTP/1.1 200 OK\r\n", "Content-Type: application/problem+json; charset=utf-8\r\n",
        "X-Thing: a\r\n", "x-thing:   b  \r\n", "Set-Cookie: session=secret\r\n",
        "Bad header line\r\n", ": empty name\r\n", "\r\n", NULL
    };
    s_feed (response, lines);
    const char *body = "{\"ok\":true,\"n\":[1,2]}";
    assert (response_body (response, body, strlen (body)));
    response_info_t info = { .code = CURLE_OK, .status = 200, .latency_ms = 42,
                             .timeout_ms = 1000 };
    response_outcome_t out;
    response_finish (response, &info, &out);
    assert (strcmp (out.outcome, "succeeded") == 0 && out.error == NULL);
    json_t *result = s_parse (out.result);
    assert (json_integer_value (json_object_get (result, "status")) == 200);
    assert (json_integer_value (json_object_get (result, "latency_ms")) == 42);
    json_t *headers = json_object_get (result, "headers");
    assert (strcmp (json_string_value (json_object_get (headers, "x-thing")), "a, b") == 0);
    assert (strcmp (json_string_value (json_object_get (headers, "set-cookie")),
                    RESPONSE_REDACTED) == 0);
    assert (json_object_get (headers, "location") == NULL);
    assert (json_is_true (json_object_get (json_object_get (result, "body"), "ok")));
    assert (json_object_get (result, "body_encoding") == NULL);
    assert (json_object_get (result, "title") == NULL);
    json_decref (result);
    response_outcome_free (&out);
    response_destroy (&response);
    response_destroy (&response);

    // Invalid JSON under a JSON type is kept as a string; 404 is final.
    response = response_new (1024, false);
    const char *const json_lines[] = { "HTTP/1.1 404 Not Found\r\n",
                                       "Content-Type: application/json\r\n", NULL };
    s_feed (response, json_lines);
    assert (response_body (response, "{nope", 5));
    info.status = 404;
    response_finish (response, &info, &out);
    assert (strcmp (out.outcome, "failed") == 0);
    result = s_parse (out.result);
    assert (strcmp (json_string_value (json_object_get (result, "body")), "{nope") == 0);
    json_decref (result);
    json_t *error = s_parse (out.error);
    assert (strcmp (json_string_value (json_object_get (error, "type")), "upstream_status") == 0);
    assert (json_integer_value (json_object_get (error, "upstream_status")) == 404);
    assert (strcmp (json_string_value (json_object_get (error, "message")),
                    "upstream answered 404") == 0);
    json_decref (error);
    response_outcome_free (&out);
    response_destroy (&response);

    // 429 and 503 are retried with Retry-After; binary bodies are base64.
    response = response_new (1024, false);
    const char *const busy_lines[] = { "HTTP/1.1 429 Too Many Requests\r\n",
                                       "Retry-After: 7\r\n", NULL };
    s_feed (response, busy_lines);
    assert (response_body (response, "\xff\x00\x01", 3));
    info.status = 429;
    response_finish (response, &info, &out);
    assert (strcmp (out.outcome, "retry") == 0 && out.retry_after_ms == 7000);
    result = s_parse (out.result);
    assert (strcmp (json_string_value (json_object_get (result, "body")), "/wAB") == 0);
    assert (strcmp (json_string_value (json_object_get (result, "body_encoding")), "base64") == 0);
    json_decref (result);
    response_outcome_free (&out);
    info.status = 503;
    response_finish (response, &info, &out);
    assert (strcmp (out.outcome, "retry") == 0 && out.result && out.error);
    response_outcome_free (&out);
    info.status = 301;
    response_finish (response, &info, &out);
    assert (strcmp (out.outcome, "failed") == 0);
    response_outcome_free (&out);
    response_destroy (&response);

    // The cap: an error for http kinds, a truncated page for crawl.
    response = response_new (8, false);
    assert (response_body (response, "12345", 5));
    assert (!response_body (response, "6789", 4));
    assert (!response_body (response, "x", 1));
    info = (response_info_t) { .code = CURLE_WRITE_ERROR, .status = 200 };
    response_finish (response, &info, &out);
    assert (strcmp (out.outcome, "failed") == 0 && !out.result);
    error = s_parse (out.error);
    assert (strcmp (json_string_value (json_object_get (error, "type")), "response_too_large") == 0);
    json_decref (error);
    response_outcome_free (&out);
    response_destroy (&response);

    response = response_new (23, true);
    const char *const page_lines[] = { "HTTP/1.1 200 OK\r\n",
                                       "Content-Type: text/html\r\n", NULL };
    s_feed (response, page_lines);
    // "é" is two bytes; the cap falls between them.
    const char *page = "<title>Caf\xc3\xa9</title>\xc3\xa9\xc3\xa9";
    assert (!response_body (response, page, strlen (page)));
    assert (response_truncated (response));
    info = (response_info_t) { .code = CURLE_WRITE_ERROR, .status = 200, .crawl = true,
                               .final_url = "http://example.com/" };
    response_finish (response, &info, &out);
    assert (strcmp (out.outcome, "succeeded") == 0);
    result = s_parse (out.result);
    assert (json_is_true (json_object_get (result, "truncated")));
    assert (strcmp (json_string_value (json_object_get (result, "title")), "Café") == 0);
    assert (strcmp (json_string_value (json_object_get (result, "final_url")),
                    "http://example.com/") == 0);
    assert (strcmp (json_string_value (json_object_get (result, "content_type")), "text/html") == 0);
    assert (strcmp (json_string_value (json_object_get (result, "body")),
                    "<title>Caf\xc3\xa9</title>\xc3\xa9") == 0);
    json_decref (result);
    response_outcome_free (&out);
    response_destroy (&response);

    // A crawl without title or content type has nulls, not missing keys.
    response = response_new (100, true);
    info = (response_info_t) { .code = CURLE_OK, .status = 200, .crawl = true };
    response_finish (response, &info, &out);
    result = s_parse (out.result);
    assert (json_is_null (json_object_get (result, "title")));
    assert (json_is_null (json_object_get (result, "content_type")));
    assert (json_is_false (json_object_get (result, "truncated")));
    assert (strcmp (json_string_value (json_object_get (result, "body")), "") == 0);
    json_decref (result);
    response_outcome_free (&out);

    // Transfer errors map onto the SPEC §3 error types; blocked_by_policy
    // only ever means that the policy refused.
    static const struct {
        CURLcode code;          // what libcurl said
        bool blocked;           // the SSRF policy refused a connection
        bool scheme_refused;    // a redirect left http(s)
        long status;            // the last status seen (a redirect's)
        const char *outcome;    // expected outcome
        const char *type;       // expected error type
    } cases[] = {
        { CURLE_OPERATION_TIMEDOUT, false, false, 0, "retry", "upstream_timeout" },
        { CURLE_COULDNT_CONNECT, false, false, 0, "retry", "connect_failed" },
        { CURLE_COULDNT_RESOLVE_HOST, false, false, 0, "retry", "connect_failed" },
        { CURLE_SSL_CONNECT_ERROR, false, false, 0, "retry", "connect_failed" },
        { CURLE_COULDNT_CONNECT, true, false, 0, "failed", "blocked_by_policy" },
        { CURLE_ABORTED_BY_CALLBACK, true, false, 302, "failed", "blocked_by_policy" },
        { CURLE_UNSUPPORTED_PROTOCOL, false, true, 302, "failed", "blocked_by_policy" },
        { CURLE_UNSUPPORTED_PROTOCOL, false, false, 0, "retry", "upstream_protocol_error" },
        { CURLE_WEIRD_SERVER_REPLY, false, false, 0, "retry", "upstream_protocol_error" },
        { CURLE_BAD_CONTENT_ENCODING, false, false, 200, "retry", "upstream_protocol_error" },
        { CURLE_HTTP2, false, false, 0, "retry", "upstream_protocol_error" },
        { CURLE_URL_MALFORMAT, false, false, 302, "retry", "upstream_protocol_error" },
        { CURLE_URL_MALFORMAT, false, false, 0, "failed", "invalid_request" },
        { CURLE_TOO_MANY_REDIRECTS, false, false, 302, "failed", "too_many_redirects" },
        { CURLE_FILESIZE_EXCEEDED, false, false, 200, "failed", "response_too_large" },
        { CURLE_RECV_ERROR, false, false, 200, "retry", "transfer_failed" },
        { CURLE_GOT_NOTHING, false, false, 0, "retry", "transfer_failed" },
        { CURLE_ABORTED_BY_CALLBACK, false, false, 0, "retry", "transfer_failed" },
        { CURLE_OUT_OF_MEMORY, false, false, 0, "retry", "worker_out_of_memory" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        info = (response_info_t) { .code = cases[i].code, .blocked = cases[i].blocked,
                                   .scheme_refused = cases[i].scheme_refused,
                                   .status = cases[i].status, .timeout_ms = 500 };
        response_finish (response, &info, &out);
        error = s_parse (out.error);
        if (strcmp (out.outcome, cases[i].outcome) != 0
            || strcmp (json_string_value (json_object_get (error, "type")), cases[i].type) != 0)
            fprintf (stderr, "response: code %d gave %s %s\n", (int) cases[i].code, out.outcome,
                     out.error);
        assert (strcmp (out.outcome, cases[i].outcome) == 0);
        assert (out.result == NULL);
        assert (strcmp (json_string_value (json_object_get (error, "type")), cases[i].type) == 0);
        assert (json_is_string (json_object_get (error, "message")));
        json_decref (error);
        response_outcome_free (&out);
    }
    response_destroy (&response);

    // Redaction: sensitive headers by name (the built-in list and the
    // provider's auth header), and the secret wherever it shows up.
    response = response_new (4096, false);
    const char *const secret_lines[] = {
        "HTTP/1.1 200 OK\r\n", "Content-Type: application/json\r\n",
        "X-Api-Key: k1\r\n", "Authorization: Bearer sk-abcdefgh\r\n", "Cookie: c=1\r\n",
        "X-Custom-Auth: zzz\r\n", "X-Echo: was sk-abcdefgh here\r\n", "X-Fine: ok\r\n", NULL
    };
    s_feed (response, secret_lines);
    const char *echo = "{\"headers\":{\"authorization\":\"Bearer sk-abcdefgh\"},"
                       "\"twice\":\"sk-abcdefghsk-abcdefgh\"}";
    assert (response_body (response, echo, strlen (echo)));
    scrub_t *scrubber = scrub_new ("sk-abcdefgh");
    response_redact (response, "X-Custom-Auth", scrubber);
    info = (response_info_t) { .code = CURLE_OK, .status = 200 };
    response_finish (response, &info, &out);
    assert (!strstr (out.result, "sk-abcdefgh") && !strstr (out.result, "zzz"));
    result = s_parse (out.result);
    headers = json_object_get (result, "headers");
    static const char *const hidden[] = { "x-api-key", "authorization", "cookie",
                                          "x-custom-auth", "x-echo" };
    for (size_t i = 0; i < sizeof hidden / sizeof hidden[0]; i++)
        assert (strcmp (json_string_value (json_object_get (headers, hidden[i])),
                        RESPONSE_REDACTED) == 0);
    assert (strcmp (json_string_value (json_object_get (headers, "x-fine")), "ok") == 0);
    json_t *echoed = json_object_get (result, "body");
    assert (strcmp (json_string_value (json_object_get (json_object_get (echoed, "headers"),
                                                        "authorization")),
                    "Bearer " RESPONSE_REDACTED) == 0);
    assert (strcmp (json_string_value (json_object_get (echoed, "twice")),
                    RESPONSE_REDACTED RESPONSE_REDACTED) == 0);
    json_decref (result);
    response_outcome_free (&out);
    // A short secret is redacted in headers but not searched for in bodies.
    scrub_t *short_secret = scrub_new ("k1");
    response_redact (response, NULL, short_secret);
    response_finish (response, &info, &out);
    assert (strstr (out.result, "sk-abcdefgh") && !strstr (out.result, "\"k1\""));
    response_outcome_free (&out);
    scrub_destroy (&short_secret);
    scrub_destroy (&scrubber);
    // A replaced body is rendered as JSON whatever the content type.
    response_t *sse = response_new (100, false);
    const char *const sse_lines[] = { "HTTP/1.1 200 OK\r\n",
                                      "Content-Type: text/event-stream\r\n", NULL };
    s_feed (sse, sse_lines);
    assert (strcmp (response_header_value (sse, "content-type"), "text/event-stream") == 0);
    assert (response_header_value (sse, "nope") == NULL);
    assert (response_set_body (sse, "{\"a\":1}", 7, true) == 0);
    response_finish (sse, &info, &out);
    result = s_parse (out.result);
    assert (json_integer_value (json_object_get (json_object_get (result, "body"), "a")) == 1);
    json_decref (result);
    response_outcome_free (&out);
    response_overflow (sse);
    response_finish (sse, &info, &out);
    assert (strcmp (out.outcome, "failed") == 0 && strstr (out.error, "response_too_large"));
    response_outcome_free (&out);
    response_destroy (&sse);
    response_destroy (&response);

    response_outcome_error (&out, "failed", "invalid_request", "request.url is required");
    error = s_parse (out.error);
    assert (strcmp (json_string_value (json_object_get (error, "message")),
                    "request.url is required") == 0);
    json_decref (error);
    response_outcome_free (&out);
    s_test_bounded_json ();
    s_test_secret_forms ();
    s_test_out_of_memory ();
    if (verbose)
        printf ("OK\n");
}
