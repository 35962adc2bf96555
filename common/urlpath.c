#include "urlpath.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// How many rounds of percent-decoding are followed before a path is refused
// as suspicious: nobody encodes a path segment eight times on purpose.
#define URLPATH_MAX_DECODES 8

// s_hex returns the value of hex digit c, or -1.
static int
s_hex (char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

// s_decode_once percent-decodes text[0..*len) in place; returns true when
// at least one "%XX" was decoded (false: the text is at its fixed point).
static bool
s_decode_once (char *text, size_t *len)
{
    size_t out = 0;
    bool decoded = false;
    for (size_t i = 0; i < *len; i++) {
        int high, low;
        if (text[i] == '%' && i + 2 < *len && (high = s_hex (text[i + 1])) >= 0
            && (low = s_hex (text[i + 2])) >= 0) {
            text[out++] = (char) (high * 16 + low);
            i += 2;
            decoded = true;
        }
        else
            text[out++] = text[i];
    }
    *len = out;
    return decoded;
}

// s_dot_segment is true when segment[0..len), its ";parameters" stripped,
// is made of dots and spaces only (at least one dot): ".", "..", "..;x",
// ". .", "..." — what some server resolves as a step up or in place.
static bool
s_dot_segment (const char *segment, size_t len)
{
    const char *semicolon = memchr (segment, ';', len);
    if (semicolon)
        len = (size_t) (semicolon - segment);
    bool dot = false;
    for (size_t i = 0; i < len; i++) {
        if (segment[i] == '.')
            dot = true;
        else if (segment[i] != ' ')
            return false;
    }
    return dot;
}

// s_has_dot_segment is true when text[0..len), split on '/' and '\', holds
// a dot segment.
static bool
s_has_dot_segment (const char *text, size_t len)
{
    size_t start = 0;
    for (size_t i = 0; i <= len; i++)
        if (i == len || text[i] == '/' || text[i] == '\\') {
            if (i > start && s_dot_segment (text + start, i - start))
                return true;
            start = i + 1;
        }
    return false;
}

const char *
urlpath_problem (const char *path, size_t len)
{
    if (len == 0 || path[0] != '/')
        return "must start with '/'";
    if (len > URLPATH_MAX_BYTES)
        return "must be at most 8192 bytes";
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char) path[i];
        if (c <= 0x20 || c == 0x7f)
            return "must not contain spaces or control characters (percent-encode them)";
        if (c >= 0x80)
            return "must contain only ASCII characters (percent-encode the others)";
    }
    if (memchr (path, '#', len))
        return "must not contain a fragment ('#')";
    if (memchr (path, '\\', len))
        return "must not contain a backslash (percent-encode it)";
    const char *query = memchr (path, '?', len);
    size_t path_len = query ? (size_t) (query - path) : len;
    char copy[URLPATH_MAX_BYTES];
    memcpy (copy, path, path_len);
    size_t copy_len = path_len;
    for (int round = 0;; round++) {
        if (s_has_dot_segment (copy, copy_len))
            return "must not contain '.' or '..' segments, however it is decoded "
                   "(percent-encoding, ';' parameters, '\\' as '/'): it may not leave the "
                   "provider's base_url path";
        if (round > 0)
            for (size_t i = 0; i < copy_len; i++)
                if ((unsigned char) copy[i] < 0x20 || copy[i] == 0x7f)
                    return "must not percent-encode control characters (%00 to %1f, %7f)";
        if (!s_decode_once (copy, &copy_len))
            return NULL;
        if (round == URLPATH_MAX_DECODES)
            return "is percent-encoded too many times over";
    }
}

void
urlpath_test (bool verbose)
{
    if (verbose)
        printf (" * urlpath: ");
    struct {
        const char *path;       // the path given
        bool accepted;          // whether the rule lets it through
        const char *says;       // expected in the reason, or NULL
    } cases[] = {
        { "/", true, NULL },
        { "/v1/search?q=a.b&next=../x", true, NULL },   // the query is not a path
        { "/v1/..x/a.b/.hidden/x..", true, NULL },
        { "/files/100%25", true, NULL },
        { "/a%2Fb", true, NULL },                       // an encoded slash alone is no step up
        { "/a;b=1/c", true, NULL },
        { "/a//b", true, NULL },
        { "", false, "start with" },
        { "v1/x", false, "start with" },
        { "/a b", false, "spaces" },
        { "/a\x01", false, "control" },
        { "/caf\xc3\xa9", false, "ASCII" },
        { "/a#frag", false, "fragment" },
        { "/a\\..\\b", false, "backslash" },
        { "/.", false, "'..'" },
        { "/..", false, "'..'" },
        { "/v1/../admin", false, "'..'" },
        { "/v1/./x", false, "'..'" },
        { "/v1/..", false, "'..'" },
        { "/a/..;/b", false, "'..'" },                  // Tomcat path parameters
        { "/a/..;jsessionid=1/b", false, "'..'" },
        { "/a/%2e%2e/b", false, "'..'" },
        { "/a/%2E%2e/b", false, "'..'" },
        { "/a/.%2e/b", false, "'..'" },
        { "/a%2f..%2fb", false, "'..'" },               // decoded before splitting
        { "/a%2f..%2f..%2fadmin", false, "'..'" },
        { "/a%5c..%5cb", false, "'..'" },               // an encoded backslash
        { "/a/%252e%252e/b", false, "'..'" },           // encoded twice
        { "/a/%25252e%25252e/b", false, "'..'" },       // three times
        { "/a/...", false, "'..'" },                    // Windows trims trailing dots
        { "/a/..%20/b", false, "'..'" },                // and spaces
        { "/a/..%3b/b", false, "'..'" },                // an encoded ';'
        { "/a%00/b", false, "control" },
        { "/a%0d%0aX:1", false, "control" },
        { "/a%2500", false, "control" },                // a NUL encoded twice
        { "/a/%2525252525252525252e", false, "too many" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *problem = urlpath_problem (cases[i].path, strlen (cases[i].path));
        bool ok = cases[i].accepted ? problem == NULL
                                    : problem != NULL && (!cases[i].says
                                                          || strstr (problem, cases[i].says));
        if (!ok) {
            fprintf (stderr, "urlpath case %zu \"%s\": got %s\n", i, cases[i].path,
                     problem ? problem : "accepted");
            assert (false);
        }
    }
    // Bytes, not C strings: a length shorter than the text is honoured, and
    // an overlong path is refused before anything is copied.
    assert (urlpath_problem ("/a/..", 3) == NULL);
    char *long_path = malloc (URLPATH_MAX_BYTES + 2);
    assert (long_path);
    memset (long_path, 'a', URLPATH_MAX_BYTES + 1);
    long_path[0] = '/';
    assert (urlpath_problem (long_path, URLPATH_MAX_BYTES) == NULL);
    assert (strstr (urlpath_problem (long_path, URLPATH_MAX_BYTES + 1), "8192"));
    free (long_path);
    if (verbose)
        printf ("OK\n");
}
