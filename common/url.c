// url — the one rule for a URL jobgate calls, read by libcurl's own parser.
#include "url.h"
#include "mem.h"

#include <assert.h>
#include <curl/curl.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

// s_part reads one part of a parsed URL (caller frees with curl_free), or
// returns NULL when it has none. With default_port a URL without a port
// reads as its scheme's.
static char *
s_part (CURLU *handle, CURLUPart part, bool default_port)
{
    char *text = NULL;
    CURLUcode rc = curl_url_get (handle, part, &text, default_port ? CURLU_DEFAULT_PORT : 0);
    mem_abort_if (rc == CURLUE_OUT_OF_MEMORY);
    return rc == CURLUE_OK ? text : NULL;
}

// s_parse reads url into handle; returns libcurl's verdict.
static CURLUcode
s_parse (CURLU *handle, const char *url)
{
    CURLUcode rc = curl_url_set (handle, CURLUPART_URL, url, 0);
    mem_abort_if (rc == CURLUE_OUT_OF_MEMORY);
    return rc;
}

// s_parse_problem says what libcurl's refusal of a URL means to a client.
static const char *
s_parse_problem (CURLUcode rc)
{
    switch (rc) {
    case CURLUE_BAD_PORT_NUMBER:
        return "has an invalid port (1 to 65535)";
    case CURLUE_NO_HOST:
        return "must name a host";
    case CURLUE_BAD_HOSTNAME:
        return "has an invalid host";
    case CURLUE_BAD_IPV6:
        return "has an invalid IPv6 address";
    case CURLUE_BAD_LOGIN:
    case CURLUE_BAD_USER:
    case CURLUE_BAD_PASSWORD:
        return "must not contain credentials (user:password@)";
    case CURLUE_BAD_SCHEME:
    case CURLUE_NO_SCHEME:
        return "must be an absolute http:// or https:// URL";
    default:
        return "is not a valid URL";
    }
}

// s_text_problem holds a client's URL to what a reader of the spec sees:
// printable ASCII, but for the host, and no backslash.
static const char *
s_text_problem (const char *url, size_t len, size_t authority_end)
{
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char) url[i];
        if (c <= 0x20 || c == 0x7f)
            return "must not contain spaces or control characters (percent-encode them)";
        if (c == '\\')
            return "must not contain a backslash (percent-encode it)";
        if (c >= 0x80 && i >= authority_end)
            return "must contain only ASCII characters outside the host (percent-encode the others)";
    }
    return NULL;
}

// s_origin_problem is the provider call's rule: the URL keeps the host and
// port of same_origin_as ("/@evil.example" is a path, not a host).
static const char *
s_origin_problem (CURLU *handle, const char *same_origin_as)
{
    CURLU *base = mem_lib (curl_url ());
    char *host = s_part (handle, CURLUPART_HOST, false);
    char *port = s_part (handle, CURLUPART_PORT, true);
    char *base_host = NULL, *base_port = NULL;
    if (s_parse (base, same_origin_as) == CURLUE_OK) {
        base_host = s_part (base, CURLUPART_HOST, false);
        base_port = s_part (base, CURLUPART_PORT, true);
    }
    bool same = host && port && base_host && base_port && strcasecmp (host, base_host) == 0
                && strcmp (port, base_port) == 0;
    curl_free (host);
    curl_free (port);
    curl_free (base_host);
    curl_free (base_port);
    curl_url_cleanup (base);
    return same ? NULL : "must stay on the provider's host";
}

const char *
url_problem (const char *url, size_t len, const char *same_origin_as)
{
    bool client_url = same_origin_as == NULL;
    if (len == 0)
        return "must not be empty";
    if (memchr (url, '\0', len))
        return "must not contain spaces or control characters (percent-encode them)";
    size_t prefix = len >= 7 && strncasecmp (url, "http://", 7) == 0    ? 7
                    : len >= 8 && strncasecmp (url, "https://", 8) == 0 ? 8
                                                                         : 0;
    // Where the host (and port) end: libcurl parses them; this only tells
    // the host's bytes, which may be an internationalised name, from the rest.
    size_t authority_end = prefix + strcspn (url + prefix, "/?#");
    const char *problem = client_url ? s_text_problem (url, len, authority_end) : NULL;
    if (problem)
        return problem;
    if (prefix == 0)
        return "must be an absolute http:// or https:// URL";
    if (authority_end == prefix)
        return "must name a host";

    CURLU *handle = mem_lib (curl_url ());
    CURLUcode rc = s_parse (handle, url);
    char *scheme = NULL, *host = NULL, *port = NULL, *user = NULL, *password = NULL;
    if (rc != CURLUE_OK)
        problem = s_parse_problem (rc);
    else {
        scheme = s_part (handle, CURLUPART_SCHEME, false);
        host = s_part (handle, CURLUPART_HOST, false);
        port = s_part (handle, CURLUPART_PORT, false);
        user = s_part (handle, CURLUPART_USER, false);
        password = s_part (handle, CURLUPART_PASSWORD, false);
        if (!scheme || (strcasecmp (scheme, "http") != 0 && strcasecmp (scheme, "https") != 0))
            problem = "must be an absolute http:// or https:// URL";
        else if (!host || !*host)
            problem = "must name a host";
        else if (client_url && (user || password))
            problem = "must not contain credentials (user:password@)";
        else if (client_url && port && strcmp (port, "0") == 0)
            problem = "has an invalid port (1 to 65535)";
        else if (!client_url)
            problem = s_origin_problem (handle, same_origin_as);
    }
    curl_free (scheme);
    curl_free (host);
    curl_free (port);
    curl_free (user);
    curl_free (password);
    curl_url_cleanup (handle);
    return problem;
}

// --- self-test ---

void
url_test (bool verbose)
{
    if (verbose)
        printf (" * url: ");
    // Each case: a URL, the provider base it must stay on (or NULL for a
    // client's own URL), and a word of the expected problem (NULL: accepted).
    struct {
        const char *url;
        const char *base;
        const char *problem;
    } cases[] = {
        { "http://example.com/", NULL, NULL },
        { "HTTPS://Example.COM:8443/a/b?q=1#f", NULL, NULL },
        { "http://[::1]:8080/", NULL, NULL },
        { "http://127.0.0.1:9/x", NULL, NULL },
        { "http://a_b.example/", NULL, NULL },
        // An internationalised host is a host (libcurl converts it).
        { "http://b\xc3\xbc" "cher.example/", NULL, NULL },
        { "https://\xe4\xbe\x8b\xe3\x81\x88.\xe3\x83\x86\xe3\x82\xb9\xe3\x83\x88/p?q=1", NULL, NULL },
        { "http://xn--bcher-kva.example/", NULL, NULL },
        // Not http(s), or not absolute.
        { "ftp://a.example/f", NULL, "http:// or https://" },
        { "file:///etc/passwd", NULL, "http:// or https://" },
        { "javascript:alert(1)", NULL, "http:// or https://" },
        { "example.com/x", NULL, "http:// or https://" },
        { "http:/example.com/", NULL, "http:// or https://" },
        { "", NULL, "empty" },
        // No host, however libcurl would read it.
        { "http:///path", NULL, "host" },
        { "http://", NULL, "host" },
        { "http://?q", NULL, "host" },
        { "http://a b/", NULL, "spaces" },
        { "http://a.example/a b", NULL, "spaces" },
        { "http://a.example/\r\nX: y", NULL, "control" },
        { "http://a.example/\x7f", NULL, "control" },
        { "http://a.example/a\\b", NULL, "backslash" },
        { "http://a.example\\@b.example/", NULL, "backslash" },
        { "http://a.example/caf\xc3\xa9", NULL, "ASCII" },
        { "http://a.example/?q=\xc3\xa9", NULL, "ASCII" },
        { "http://u:p@a.example/", NULL, "credentials" },
        { "http://@a.example/", NULL, "credentials" },
        { "http://a.example:99999/", NULL, "port" },
        { "http://a.example:0/", NULL, "port" },
        { "http://[::1/", NULL, "IPv6" },
        { "http://[zz]/", NULL, "IPv6" },
        { "http://a<b/", NULL, "host" },
        // A provider call stays on its base_url's host and port.
        { "http://127.0.0.1:9000/v1/items", "http://127.0.0.1:9000/v1/", NULL },
        { "http://127.0.0.1:9000/v1/@evil.example/", "http://127.0.0.1:9000/v1/", NULL },
        { "http://API.example/v1", "http://api.example:80/", NULL },
        { "http://127.0.0.1:9001/v1/", "http://127.0.0.1:9000/v1/", "provider's host" },
        { "http://evil.example/v1/", "http://127.0.0.1:9000/v1/", "provider's host" },
        { "https://api.example/", "http://api.example/", "provider's host" },
        { "http://u:p@api.example/", "http://u:p@api.example/", NULL },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *problem = url_problem (cases[i].url, strlen (cases[i].url), cases[i].base);
        bool ok = cases[i].problem ? problem && strstr (problem, cases[i].problem)
                                   : problem == NULL;
        if (!ok)
            fprintf (stderr, "url case %zu: %s: expected %s, got %s\n", i, cases[i].url,
                     cases[i].problem ? cases[i].problem : "accepted",
                     problem ? problem : "accepted");
        assert (ok);
    }
    // A NUL inside the length given (a JSON string's "\u0000") is refused.
    assert (strstr (url_problem ("http://a.example/\0evil", 22, NULL), "control"));
    if (verbose)
        printf ("OK\n");
}
