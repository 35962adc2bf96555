// fuzz_headers — libFuzzer target: the gateway's parsers of header values,
// the URL and provider path rules, and an event stream fed any chunks, on
// any bytes.
//
// The first byte picks the parser; the rest is the value (cut at a NUL, as
// libmicrohttpd hands values over). Besides never crashing, each parser
// must keep its contract: a wait within bounds, a resume point that reads
// back the same, a Host decision that ignores case, a path the rule lets
// through that holds no dot segment in any spelling tested here, a URL the
// rule lets through that hides nothing from a reader, an event stream whose
// every line is one of its own and whose chunk ids never repeat, a request
// path decoded and looked up in the routes table as the gateway does.
#include "clock.h"
#include "headers.h"
#include "mem.h"
#include "routes.h"
#include "sse.h"
#include "url.h"
#include "urlpath.h"

#include <assert.h>
#include <ctype.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// s_prefer splits text into lines at '\n' and reads the wait preference.
static void
s_prefer (char *text)
{
    const char *lines[8];
    size_t count = 0;
    for (char *line = text; line && count < 8;) {
        lines[count++] = line;
        char *end = strchr (line, '\n');
        if (end)
            *end++ = '\0';
        line = end;
    }
    int wait = headers_prefer_wait (lines, count, 60);
    assert (wait >= -1 && wait <= 60);
    // Only a "wait" token can give a wait.
    bool named = false;
    for (size_t i = 0; i < count; i++)
        for (const char *p = lines[i]; *p && !named; p++)
            named = strncasecmp (p, "wait", 4) == 0;
    assert (wait == -1 || named);
}

// s_last_event_id parses text and checks that what it read writes back the same.
static void
s_last_event_id (const char *text)
{
    headers_event_id_t id;
    if (headers_last_event_id (text, &id) < 0)
        return;
    assert (id.kind == 'c' || id.kind == 's');
    assert (id.attempt >= 0 && id.attempt <= INT32_MAX && id.index >= 0);
    char again[64];
    if (id.kind == 'c')
        snprintf (again, sizeof again, "c%d.%lld", id.attempt, (long long) id.index);
    else
        snprintf (again, sizeof again, "s%d.%s", id.attempt, id.status);
    headers_event_id_t reread;
    assert (headers_last_event_id (again, &reread) == 0);
    assert (reread.kind == id.kind && reread.attempt == id.attempt && reread.index == id.index
            && strcmp (reread.status, id.status) == 0);
}

// s_host checks that the Host decision does not depend on letter case.
static void
s_host (char *text)
{
    const char *allowed[] = { "localhost", "127.0.0.1", "[::1]", "api.example" };
    bool ok = headers_host_allowed (text, allowed, 4);
    for (char *c = text; *c; c++)
        *c = (char) toupper ((unsigned char) *c);
    assert (headers_host_allowed (text, allowed, 4) == ok);
    if (ok)
        assert (strlen (text) > 0);
}

// s_path checks the path rule on text, and that an accepted path has no
// literal or singly encoded dot segment.
static void
s_path (const char *text, size_t len)
{
    const char *problem = urlpath_problem (text, len);
    if (problem)
        return;
    assert (len > 0 && text[0] == '/');
    const char *query = memchr (text, '?', len);
    size_t path_len = query ? (size_t) (query - text) : len;
    char *path = strndup (text, path_len);
    assert (path);
    for (char *c = path; *c; c++)
        *c = (char) tolower ((unsigned char) *c);
    const char *dots[] = { "/../", "/./", "/%2e%2e/", "/.%2e/", "/%2e./", "%2f..%2f", "/..;", NULL };
    for (size_t i = 0; dots[i]; i++)
        assert (!strstr (path, dots[i]));
    size_t n = strlen (path);
    assert (!(n >= 3 && strcmp (path + n - 3, "/..") == 0));
    assert (!(n >= 2 && strcmp (path + n - 2, "/.") == 0));
    free (path);
}

// s_url checks the URL rule on a client's URL: what it accepts is an
// absolute http(s) URL with a host and nothing a reader could miss.
static void
s_url (const char *text, size_t len)
{
    if (url_problem (text, len, NULL))
        return;
    assert (len >= 8 && memchr (text, '\0', len) == NULL);
    assert (strncasecmp (text, "http://", 7) == 0 || strncasecmp (text, "https://", 8) == 0);
    size_t start = strncasecmp (text, "http://", 7) == 0 ? 7 : 8;
    assert (text[start] != '/' && text[start] != '?' && text[start] != '#');
    size_t authority_end = start + strcspn (text + start, "/?#");
    assert (!memchr (text + start, '@', authority_end - start));
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char) text[i];
        assert (c > 0x20 && c != 0x7f && c != '\\');
        assert (c < 0x80 || i < authority_end);
    }
}

// s_stream feeds an event stream a resume point and chunks made of the
// input (lines: the first is the Last-Event-ID, each other one a chunk,
// its first two bytes the attempt and index), reading in small pieces,
// then checks what the client got: lines the stream writes, and chunk ids
// that only go forward.
static void
s_stream (char *text)
{
    char *line = strchr (text, '\n');
    if (line)
        *line++ = '\0';
    sse_t *sse = sse_new (64 + (unsigned char) text[0] * 4);
    sse_resume_after (sse, text);
    char *out = mem_alloc (1);
    size_t out_len = 0;
    char buf[23];
    int64_t step = 0;
    while (line) {
        char *next = strchr (line, '\n');
        if (next)
            *next++ = '\0';
        size_t len = strlen (line);
        int64_t attempt = len > 0 ? (unsigned char) line[0] % 4 : 0;
        int64_t index = len > 1 ? (unsigned char) line[1] % 8 : 0;
        if (step++ % 5 == 4) {
            sse_set_stale (sse);
            sse_comment (sse, "keep-alive");
        }
        sse_chunk (sse, attempt, index, len > 2 ? line + 2 : "", len > 2 ? len - 2 : 0);
        size_t n;
        while ((n = sse_read (sse, buf, (size_t) (step % 3) * 7 + 5)) > 0) {
            out = mem_realloc (out, out_len + n + 1);
            memcpy (out + out_len, buf, n);
            out_len += n;
        }
        line = next;
    }
    out[out_len] = '\0';
    int64_t last_attempt = -1, last_index = -1;
    for (char *at = out; *at;) {
        char *end = strchr (at, '\n');
        assert (end);
        *end = '\0';
        assert (*at == '\0' || strncmp (at, "id: ", 4) == 0 || strncmp (at, "event: ", 7) == 0
                || strncmp (at, "data: ", 6) == 0 || strncmp (at, ": ", 2) == 0);
        long long attempt, index;
        if (sscanf (at, "id: c%lld.%lld", &attempt, &index) == 2) {
            assert (attempt > last_attempt || (attempt == last_attempt && index > last_index));
            last_attempt = attempt;
            last_index = index;
        }
        at = end + 1;
    }
    free (out);
    sse_destroy (&sse);
}

// s_since reads GET /v1/usage's since (common/clock.h): a date it accepts
// is after 1970 and reads back, written by clock_rfc3339, as itself to the
// millisecond.
static void
s_since (const char *value, size_t len)
{
    int64_t wall_ms = -1;
    if (clock_rfc3339_parse (value, len, &wall_ms) < 0)
        return;
    assert (wall_ms >= 0);
    char stamp[40];
    clock_rfc3339 (wall_ms, stamp, sizeof stamp);
    int64_t again = -1;
    assert (clock_rfc3339_parse (stamp, strlen (stamp), &again) == 0 && again == wall_ms);
}

// s_routes decodes text as the gateway decodes a request's path
// (routes_unescape) and looks it up with each method: the decoding never
// grows the text nor makes a NUL; a path names no row, or one whose
// parameter lies within it (a job id for a job's rows), the same row
// whatever the method, the method taken exactly when Allow names it.
static void
s_routes (char *text)
{
    size_t before = strlen (text);
    size_t len = routes_unescape (text);
    assert (len <= before && len == strlen (text));
    const char *methods[] = { "GET", "HEAD", "POST", "DELETE", "PUT", "OPTIONS" };
    route_id_t id = routes_match (text, "GET").id;
    for (size_t m = 0; m < sizeof methods / sizeof methods[0]; m++) {
        route_t route = routes_match (text, methods[m]);
        assert (route.id == id);
        if (route.id == ROUTE_NONE) {
            assert (!route.template && !route.allow && !route.param && !route.method_allowed);
            continue;
        }
        assert (route.template && route.allow);
        assert (!route.param || (route.param > text && route.param_len > 0
                                 && route.param + route.param_len <= text + len));
        if (route.id == ROUTE_JOB || route.id == ROUTE_JOB_EVENTS || route.id == ROUTE_JOB_RETRY)
            assert (route.param && job_id_valid (route.param, route.param_len));
        assert (route.method_allowed == (strstr (route.allow, methods[m]) != NULL));
    }
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    char *text = malloc (size);
    assert (text);
    memcpy (text, data + 1, size - 1);
    text[size - 1] = '\0';
    switch (data[0] % 8) {
    case 0: s_prefer (text); break;
    case 1: s_last_event_id (text); break;
    case 2: s_host (text); break;
    case 3: s_path ((const char *) data + 1, size - 1); break;
    case 5: s_url (text, strlen (text)); break;
    case 6: s_stream (text); break;
    case 7: s_since ((const char *) data + 1, size - 1); break;
    default: {
        // 4, 12, 20, …: the idempotency key; 12 modulo 16: a request path.
        if (data[0] % 16 == 12) {
            s_routes (text);
            break;
        }
        const char *problem = headers_idempotency_key_problem (text, strlen (text));
        assert (problem || (strlen (text) >= 1 && strlen (text) <= HEADERS_IDEMPOTENCY_KEY_MAX));
    }
    }
    free (text);
    return 0;
}
