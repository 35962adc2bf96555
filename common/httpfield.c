// httpfield — what a header field jobgate reads or sends may be (RFC 9110).
#include "httpfield.h"

#include <assert.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

const httpfield_reserved_t httpfield_reserved[] = {
    // Framing and hop-by-hop: libcurl's on every call.
    { "content-length", false }, { "transfer-encoding", false }, { "connection", false },
    { "keep-alive", false }, { "upgrade", false }, { "te", false }, { "trailer", false },
    { "proxy-connection", false },
    // The host or resource a provider call is for.
    { "host", true }, { "forwarded", true }, { "x-forwarded-host", true },
    { "x-forwarded-server", true }, { "x-host", true }, { "x-original-host", true },
    { "x-http-host-override", true }, { "x-original-url", true }, { "x-rewrite-url", true },
    // What a proxy or framework in front of the provider takes as the
    // original request (its scheme, port, prefix, client) and a proxy's own
    // credentials and trail: the gateway refused these from the start.
    { "x-forwarded-proto", true }, { "x-forwarded-port", true }, { "x-forwarded-prefix", true },
    { "x-forwarded-scheme", true }, { "x-forwarded-for", true }, { "x-real-ip", true },
    { "x-proxy-url", true }, { "proxy-authorization", true }, { "proxy-authenticate", true },
    { "via", true },
    { NULL, false },
};

// s_tchar is true for a token character (RFC 9110 §5.6.2). ASCII ranges,
// not isalnum: the rule must not move with the locale.
static bool
s_tchar (unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')
           || (c != '\0' && strchr ("!#$%&'*+-.^_`|~", c));
}

bool
httpfield_token (const char *text, size_t len)
{
    if (len == 0)
        return false;
    for (size_t i = 0; i < len; i++)
        if (!s_tchar ((unsigned char) text[i]))
            return false;
    return true;
}

bool
httpfield_value_safe (const char *value, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (value[i] == '\r' || value[i] == '\n' || value[i] == '\0')
            return false;
    return true;
}

bool
httpfield_value_valid (const char *value, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char) value[i];
        if ((c < 0x20 && c != '\t') || c == 0x7F)
            return false;
    }
    return true;
}

bool
httpfield_is_reserved (const char *name, bool provider_call)
{
    for (size_t i = 0; httpfield_reserved[i].name; i++)
        if (strcasecmp (name, httpfield_reserved[i].name) == 0)
            return !httpfield_reserved[i].provider_only || provider_call;
    return false;
}

// --- self-test ---

void
httpfield_test (bool verbose)
{
    if (verbose)
        printf (" * httpfield: ");
    // Tokens: every tchar, and nothing else (separators, space, controls,
    // NUL, bytes beyond ASCII).
    const char *every = "!#$%&'*+-.^_`|~09azAZ";
    assert (httpfield_token (every, strlen (every)));
    assert (httpfield_token ("X-Api-Key", 9) && httpfield_token ("GET", 3));
    static const char *const not_tokens[] = {
        "", "a b", "a:b", "a/b", "\"a\"", "(a)", "a,b", "a;b", "a=b", "a@b", "a[b]", "a?b",
        "a{b}", "a\\b", "a\tb", "a\x7f", "caf\xc3\xa9", "<a>",
    };
    for (size_t i = 0; i < sizeof not_tokens / sizeof not_tokens[0]; i++)
        assert (!httpfield_token (not_tokens[i], strlen (not_tokens[i])));
    // NUL is no token character, wherever it stands.
    assert (!httpfield_token ("GE\0T", 4) && !httpfield_token ("\0", 1));
    for (int c = 0; c < 256; c++) {
        char byte = (char) c;
        bool expected = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z')
                        || (c >= 'A' && c <= 'Z') || (c && strchr ("!#$%&'*+-.^_`|~", c));
        assert (httpfield_token (&byte, 1) == expected);
    }

    // Values: safe keeps the message whole; valid is the grammar.
    const char *odd = "Bearer a\tb \x01\x7f\xc3\xa9";
    assert (httpfield_value_safe (odd, strlen (odd)) && !httpfield_value_valid (odd, strlen (odd)));
    assert (httpfield_value_safe ("", 0));
    assert (!httpfield_value_safe ("a\r\nX-Evil: 1", 13));
    assert (!httpfield_value_safe ("a\nb", 3) && !httpfield_value_safe ("a\rb", 3));
    assert (!httpfield_value_safe ("a\0b", 3));
    const char *fine = "Bearer a\tb caf\xc3\xa9 \xff";
    assert (httpfield_value_valid (fine, strlen (fine)) && httpfield_value_valid ("", 0));
    assert (!httpfield_value_valid ("a\x01", 2) && !httpfield_value_valid ("a\x7f", 2));
    assert (!httpfield_value_valid ("a\r\nb", 4) && !httpfield_value_valid ("a\0b", 3));

    // Reserved names: framing everywhere, routing on provider calls, any
    // case; other names never.
    static const char *const framing[] = { "Content-Length", "transfer-encoding", "CONNECTION",
                                           "Keep-Alive", "Upgrade", "TE", "Trailer",
                                           "Proxy-Connection" };
    for (size_t i = 0; i < sizeof framing / sizeof framing[0]; i++)
        assert (httpfield_is_reserved (framing[i], false)
                && httpfield_is_reserved (framing[i], true));
    static const char *const routing[] = { "Host", "Forwarded", "X-Forwarded-Host",
                                           "x-forwarded-server", "X-Host", "X-Original-Host",
                                           "X-HTTP-Host-Override", "X-Original-URL",
                                           "x-rewrite-url", "X-Forwarded-Proto", "X-Forwarded-For",
                                           "X-Real-IP", "Proxy-Authorization", "Via" };
    for (size_t i = 0; i < sizeof routing / sizeof routing[0]; i++)
        assert (httpfield_is_reserved (routing[i], true)
                && !httpfield_is_reserved (routing[i], false));
    static const char *const free_names[] = { "Authorization", "Content-Type", "Accept",
                                              "X-Forwarded", "Hostname", "X-Api-Key", "Vias" };
    for (size_t i = 0; i < sizeof free_names / sizeof free_names[0]; i++)
        assert (!httpfield_is_reserved (free_names[i], true));
    // The table is lower case and its names are tokens.
    for (size_t i = 0; httpfield_reserved[i].name; i++) {
        const char *name = httpfield_reserved[i].name;
        assert (httpfield_token (name, strlen (name)));
        for (const char *c = name; *c; c++)
            assert (!(*c >= 'A' && *c <= 'Z'));
    }
    if (verbose)
        printf ("OK\n");
}
