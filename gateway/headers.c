// headers — the request header values the gateway acts on, parsed exactly.
#include "headers.h"
#include "job.h"

#include <assert.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

// s_tchar is true for a character of an RFC 9110 token.
static bool
s_tchar (char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')
           || (c != '\0' && strchr ("!#$%&'*+-.^_`|~", c));
}

// s_skip_ows moves past optional whitespace (SP and HTAB).
static const char *
s_skip_ows (const char *p)
{
    while (*p == ' ' || *p == '\t')
        p++;
    return p;
}

// s_word reads a token or a quoted string at p into value (size bytes, the
// quoted pairs unescaped, cut to fit), sets *value_len (a value cut to fit
// is longer than size - 1), and returns the position after it; NULL when
// the quoted string does not end.
static const char *
s_word (const char *p, char *value, size_t size, size_t *value_len)
{
    size_t len = 0;
    if (*p == '"') {
        for (p++; *p != '"'; p++) {
            if (*p == '\0')
                return NULL;
            if (*p == '\\' && p[1] != '\0')
                p++;
            if (len + 1 < size)
                value[len] = *p;
            len++;
        }
        p++;
    }
    else
        for (; s_tchar (*p); p++) {
            if (len + 1 < size)
                value[len] = *p;
            len++;
        }
    value[len + 1 < size ? len : size - 1] = '\0';
    *value_len = len;
    return p;
}

// s_skip_element moves to the next top-level ',' (quoted strings skipped)
// or the end: where a malformed list element ends.
static const char *
s_skip_element (const char *p)
{
    while (*p && *p != ',') {
        if (*p == '"') {
            for (p++; *p && *p != '"'; p++)
                if (*p == '\\' && p[1] != '\0')
                    p++;
            if (*p == '"')
                p++;
        }
        else
            p++;
    }
    return p;
}

// What s_prefer_find found for a preference name.
typedef enum { PREFER_ABSENT, PREFER_INVALID, PREFER_FOUND } prefer_found_t;

// s_prefer_find looks for the first preference called name in one Prefer
// line; on PREFER_FOUND its value is in value (empty when none was given).
// A malformed element with that name is PREFER_INVALID: still the first
// instance, and ignored.
static prefer_found_t
s_prefer_find (const char *line, const char *name, char *value, size_t size)
{
    const char *p = line;
    while (*p) {
        p = s_skip_ows (p);
        if (*p == ',') {
            p++;
            continue;
        }
        if (!*p)
            break;
        const char *token = p;
        while (s_tchar (*p))
            p++;
        size_t token_len = (size_t) (p - token);
        bool named = token_len == strlen (name) && strncasecmp (token, name, token_len) == 0;
        bool ok = token_len > 0;
        value[0] = '\0';
        size_t value_len = 0;
        p = s_skip_ows (p);
        if (ok && *p == '=') {
            p = s_word (s_skip_ows (p + 1), value, size, &value_len);
            ok = p != NULL && value_len < size;
            if (p)
                p = s_skip_ows (p);
        }
        while (ok && *p == ';') {
            p = s_skip_ows (p + 1);
            while (s_tchar (*p))
                p++;
            p = s_skip_ows (p);
            if (*p == '=') {
                char ignored[8];
                size_t ignored_len;
                p = s_word (s_skip_ows (p + 1), ignored, sizeof ignored, &ignored_len);
                ok = p != NULL;
                if (p)
                    p = s_skip_ows (p);
            }
        }
        ok = ok && (*p == ',' || *p == '\0');
        if (named)
            return ok ? PREFER_FOUND : PREFER_INVALID;
        if (!p)
            break;
        p = s_skip_element (p);
    }
    return PREFER_ABSENT;
}

int
headers_prefer_wait (const char *const *values, size_t count, int max_s)
{
    for (size_t i = 0; i < count; i++) {
        if (!values[i])
            continue;
        char value[32];
        prefer_found_t found = s_prefer_find (values[i], "wait", value, sizeof value);
        if (found == PREFER_ABSENT)
            continue;
        if (found == PREFER_INVALID || value[0] == '\0')
            return -1;
        long long seconds = 0;
        for (const char *c = value; *c; c++) {
            if (*c < '0' || *c > '9')
                return -1;
            if (seconds <= max_s)
                seconds = seconds * 10 + (*c - '0');
        }
        return seconds > max_s ? max_s : (int) seconds;
    }
    return -1;
}

bool
headers_prefer_respond_async (const char *const *values, size_t count)
{
    for (size_t i = 0; i < count; i++) {
        char value[32];
        if (values[i] && s_prefer_find (values[i], "respond-async", value, sizeof value)
                         == PREFER_FOUND)
            return true;
    }
    return false;
}

// s_digits reads a run of 1 to 15 decimal digits at *p into *number.
static bool
s_digits (const char **p, int64_t *number)
{
    const char *start = *p;
    *number = 0;
    while (**p >= '0' && **p <= '9' && *p - start < 15) {
        *number = *number * 10 + (**p - '0');
        (*p)++;
    }
    return *p > start && !(**p >= '0' && **p <= '9');
}

int
headers_last_event_id (const char *text, headers_event_id_t *id)
{
    memset (id, 0, sizeof *id);
    if (!text || (text[0] != 'c' && text[0] != 's'))
        return -1;
    const char *p = text + 1;
    int64_t attempt;
    if (!s_digits (&p, &attempt) || attempt > INT32_MAX || *p != '.')
        return -1;
    p++;
    id->kind = text[0];
    id->attempt = (int) attempt;
    if (id->kind == 'c')
        return s_digits (&p, &id->index) && *p == '\0' ? 0 : -1;
    size_t len = strlen (p);
    if (len == 0 || len >= sizeof id->status)
        return -1;
    memcpy (id->status, p, len + 1);
    return job_status_parse (id->status) >= 0 ? 0 : -1;
}

bool
headers_host_allowed (const char *host, const char *const *allowed, size_t count)
{
    if (!host)
        return false;
    size_t name_len;
    const char *port;
    if (host[0] == '[') {
        const char *close = strchr (host, ']');
        if (!close)
            return false;
        name_len = (size_t) (close - host) + 1;
        port = close + 1;
    }
    else {
        name_len = strcspn (host, ":");
        port = host + name_len;
    }
    if (*port == ':')
        port++;
    else if (*port != '\0')
        return false;
    for (; *port; port++)
        if (*port < '0' || *port > '9')
            return false;
    if (name_len > 0 && host[name_len - 1] == '.')
        name_len--;
    if (name_len == 0 || name_len > 253)
        return false;
    for (size_t i = 0; i < name_len; i++)
        if (!s_tchar (host[i]) && !strchr ("[]:", host[i]))
            return false;
    for (size_t i = 0; i < count; i++)
        if (strcmp (allowed[i], "*") == 0
            || (strlen (allowed[i]) == name_len && strncasecmp (allowed[i], host, name_len) == 0))
            return true;
    return false;
}

const char *
headers_idempotency_key_problem (const char *key, size_t len)
{
    if (len == 0)
        return "must not be empty";
    if (len > HEADERS_IDEMPOTENCY_KEY_MAX)
        return "must be at most 255 bytes";
    for (size_t i = 0; i < len; i++)
        if ((unsigned char) key[i] < 0x20 || (unsigned char) key[i] > 0x7e)
            return "must be printable ASCII";
    return NULL;
}

void
headers_test (bool verbose)
{
    if (verbose)
        printf (" * headers: ");
    // Prefer: RFC 7240 lists, exactly.
    struct {
        const char *lines[3];   // the Prefer lines, NULL-terminated
        int wait;               // expected
    } prefers[] = {
        { { "wait=5" }, 5 },
        { { "WAIT=5" }, 5 },
        { { "respond-async, wait=10" }, 10 },
        { { "  wait = 7 ; x=1 ;y, return=minimal" }, 7 },
        { { "wait=\"12\"" }, 12 },
        { { "nowait=2" }, -1 },                      // another preference
        { { "return=minimal; wait=2" }, -1 },        // a parameter, not a preference
        { { "foo=\"a, wait=3\"" }, -1 },             // inside a quoted string
        { { "foo=\"a, wait=3\", wait=4" }, 4 },
        { { "wait=1e18" }, -1 },                     // not delta-seconds: ignored
        { { "wait=-1" }, -1 },
        { { "wait=" }, -1 },
        { { "wait" }, -1 },
        { { "wait=5 6" }, -1 },
        { { "wait=5x" }, -1 },
        { { "wait=99999999999999999999999" }, 60 },  // capped
        { { "wait=61" }, 60 },
        { { "wait=0" }, 0 },
        { { "wait=3, wait=9" }, 3 },                 // only the first instance
        { { "wait=x, wait=9" }, -1 },                // the first is not understood
        { { "respond-async", "wait=8" }, 8 },        // several lines
        { { "wait=2", "wait=8" }, 2 },
        { { "", ",,, wait=4" }, 4 },
        { { "=5, wait=6" }, 6 },                     // a malformed element is skipped
        { { "wait=\"5" }, -1 },                      // an unterminated quote
        { { "x=\"\\\"\", wait=1" }, 1 },             // a quoted pair
        { { NULL }, -1 },
    };
    for (size_t i = 0; i < sizeof prefers / sizeof prefers[0]; i++) {
        size_t count = 0;
        while (count < 3 && prefers[i].lines[count])
            count++;
        int wait = headers_prefer_wait (prefers[i].lines, count, 60);
        if (wait != prefers[i].wait) {
            fprintf (stderr, "prefer case %zu (%s): got %d, expected %d\n", i,
                     prefers[i].lines[0] ? prefers[i].lines[0] : "-", wait, prefers[i].wait);
            assert (false);
        }
    }

    // respond-async among other preferences, in any case; not a prefix.
    const char *async_lines[] = { "wait=5", "handling=lenient, Respond-Async" };
    assert (headers_prefer_respond_async (async_lines, 2));
    assert (!headers_prefer_respond_async (async_lines, 1));
    const char *not_async[] = { "respond-asynchronously", "x=\"respond-async\"" };
    assert (!headers_prefer_respond_async (not_async, 2));

    headers_event_id_t id;
    assert (headers_last_event_id ("c2.17", &id) == 0 && id.kind == 'c' && id.attempt == 2
            && id.index == 17);
    assert (headers_last_event_id ("s1.running", &id) == 0 && id.kind == 's'
            && id.attempt == 1 && strcmp (id.status, "running") == 0);
    const char *bad_ids[] = { "", "r", "c", "c1", "c1.", "c.1", "c-1.2", "c+1.2", "c 1.2",
                              "c1.2x", "c1.2.3", "c99999999999999999999.1", "c1.99999999999999999",
                              "c2147483648.1", "s1.nope", "s1.", "s.running", "s1.runningrunningrunning",
                              "x1.2", NULL };
    for (size_t i = 0; bad_ids[i]; i++)
        assert (headers_last_event_id (bad_ids[i], &id) == -1);
    assert (headers_last_event_id (NULL, &id) == -1);
    // Any attempt identity a record holds (attempt_seq, at most INT32_MAX).
    assert (headers_last_event_id ("s2147483647.queued", &id) == 0 && id.attempt == INT32_MAX);

    const char *allowed[] = { "localhost", "127.0.0.1", "[::1]", "api.example" };
    const char *good_hosts[] = { "localhost", "LOCALHOST:8080", "localhost.", "127.0.0.1:1",
                                 "[::1]:8080", "[::1]", "api.example:", NULL };
    for (size_t i = 0; good_hosts[i]; i++)
        assert (headers_host_allowed (good_hosts[i], allowed, 4));
    const char *bad_hosts[] = { "", "evil.example", "localhost.evil.example", "127.0.0.2",
                                "[::2]", "localhost:80:80", "localhost:x", "[::1", "[::1]x",
                                "local host", "127.0.0.1@evil", "::1", NULL };
    for (size_t i = 0; bad_hosts[i]; i++)
        assert (!headers_host_allowed (bad_hosts[i], allowed, 4));
    assert (!headers_host_allowed (NULL, allowed, 4));
    const char *any[] = { "*" };
    assert (headers_host_allowed ("whatever.example:1", any, 1));
    assert (!headers_host_allowed ("bad host", any, 1));

    assert (headers_idempotency_key_problem ("order-17", 8) == NULL);
    assert (headers_idempotency_key_problem ("", 0));
    assert (headers_idempotency_key_problem ("a\nb", 3));
    char key[HEADERS_IDEMPOTENCY_KEY_MAX + 1];
    memset (key, 'k', sizeof key);
    assert (headers_idempotency_key_problem (key, HEADERS_IDEMPOTENCY_KEY_MAX) == NULL);
    assert (strstr (headers_idempotency_key_problem (key, sizeof key), "255"));
    if (verbose)
        printf ("OK\n");
}
