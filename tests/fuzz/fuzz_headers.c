// fuzz_headers — libFuzzer target: the gateway's parsers of header values
// and the provider path rule, on any bytes.
//
// The first byte picks the parser; the rest is the value (cut at a NUL, as
// libmicrohttpd hands values over). Besides never crashing, each parser
// must keep its contract: a wait within bounds, a resume point that reads
// back the same, a Host decision that ignores case, a path the rule lets
// through that holds no dot segment in any spelling tested here.
#include "headers.h"
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
    assert (id.attempt >= 0 && id.attempt <= 1000000 && id.index >= 0);
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

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    char *text = malloc (size);
    assert (text);
    memcpy (text, data + 1, size - 1);
    text[size - 1] = '\0';
    switch (data[0] % 5) {
    case 0: s_prefer (text); break;
    case 1: s_last_event_id (text); break;
    case 2: s_host (text); break;
    case 3: s_path ((const char *) data + 1, size - 1); break;
    default: {
        const char *problem = headers_idempotency_key_problem (text, strlen (text));
        assert (problem || (strlen (text) >= 1 && strlen (text) <= HEADERS_IDEMPOTENCY_KEY_MAX));
    }
    }
    free (text);
    return 0;
}
