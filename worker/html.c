// html — what the worker reads out of an HTML page: its title.
#include "html.h"
#include "mem.h"
#include "utf8.h"

#include <assert.h>
#include <ctype.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

// s_find_ci finds needle (lower case, starting with a character that has
// no case, like '<') in data, ignoring ASCII case.
static const char *
s_find_ci (const char *data, const char *end, const char *needle)
{
    size_t needle_len = strlen (needle);
    for (const char *p = data; p + needle_len <= end; p++) {
        p = memchr (p, needle[0], (size_t) (end - p));
        if (!p || p + needle_len > end)
            return NULL;
        size_t i = 1;
        while (i < needle_len && tolower ((unsigned char) p[i]) == needle[i])
            i++;
        if (i == needle_len)
            return p;
    }
    return NULL;
}

// s_entity decodes the entity at p (which starts with '&') into out. Returns
// the bytes of source consumed, or 0 when it is not an entity we decode. The
// output is never longer than the source.
static size_t
s_entity (const char *p, const char *end, char *out, size_t *written)
{
    static const struct {
        const char *name;       // entity including & and ;
        char value;             // the character
    } named[] = { { "&amp;", '&' }, { "&lt;", '<' }, { "&gt;", '>' },
                  { "&quot;", '"' }, { "&#39;", '\'' }, { "&apos;", '\'' } };
    for (size_t i = 0; i < sizeof named / sizeof named[0]; i++) {
        size_t len = strlen (named[i].name);
        if ((size_t) (end - p) >= len && strncasecmp (p, named[i].name, len) == 0) {
            out[0] = named[i].value;
            *written = 1;
            return len;
        }
    }
    if (end - p < 4 || p[1] != '#')
        return 0;
    const char *q = p + 2;
    bool hex = q < end && (*q == 'x' || *q == 'X');
    if (hex)
        q++;
    unsigned long cp = 0;
    const char *digits = q;
    while (q < end && q - digits < 8
           && (hex ? isxdigit ((unsigned char) *q) : isdigit ((unsigned char) *q))) {
        int digit = isdigit ((unsigned char) *q) ? *q - '0'
                                                 : tolower ((unsigned char) *q) - 'a' + 10;
        cp = cp * (hex ? 16 : 10) + (unsigned long) digit;
        q++;
    }
    if (q == digits || q >= end || *q != ';' || cp == 0 || cp > 0x10FFFF
        || (cp >= 0xD800 && cp <= 0xDFFF))
        return 0;
    size_t consumed = (size_t) (q + 1 - p);
    size_t bytes = utf8_put (out, (uint32_t) cp);
    if (bytes > consumed)
        return 0;
    *written = bytes;
    return consumed;
}

int
html_title (const char *html, size_t len, char **title_p)
{
    *title_p = NULL;
    if (!html)
        return 0;
    const char *end = html + len;
    const char *open = html;
    const char *start = NULL;
    while ((open = s_find_ci (open, end, "<title")) != NULL) {
        const char *after = open + 6;
        if (after < end && (*after == '>' || *after == '/' || isspace ((unsigned char) *after))) {
            const char *close = memchr (after, '>', (size_t) (end - after));
            if (!close)
                return 0;
            start = close + 1;
            break;
        }
        open = after;
    }
    if (!start)
        return 0;
    const char *stop = s_find_ci (start, end, "</title");
    if (!stop)
        return 0;
    // A NUL becomes U+FFFD, three bytes: the only thing that grows. The
    // title is as long as the page (an upstream's size, behind the crawl's
    // cap): the memory policy's exception, running out fails the one call
    // (common/mem.h).
    char *title = mem_try_alloc (3 * (size_t) (stop - start) + 1);
    if (!title)
        return -1;
    size_t size = 0;
    bool space = false;
    for (const char *p = start; p < stop;) {
        if (isspace ((unsigned char) *p)) {
            space = size > 0;
            p++;
            continue;
        }
        if (space) {
            title[size++] = ' ';
            space = false;
        }
        size_t written = 0;
        size_t consumed = *p == '&' ? s_entity (p, stop, title + size, &written) : 0;
        if (consumed) {
            size += written;
            p += consumed;
        }
        else if (*p == '\0') {
            size += utf8_put (title + size, UTF8_REPLACEMENT);
            p++;
        }
        else
            title[size++] = *p++;
    }
    title[size] = '\0';
    *title_p = title;
    return 1;
}

// --- self-test ---

// s_check_title asserts the title of html.
static void
s_check_title (const char *html, const char *expected)
{
    char *title = NULL;
    int rc = html_title (html, strlen (html), &title);
    assert (rc == (expected ? 1 : 0));
    if (!expected)
        assert (title == NULL);
    else {
        if (!title || strcmp (title, expected) != 0)
            fprintf (stderr, "html: title of %s: got [%s], want [%s]\n", html,
                     title ? title : "(null)", expected);
        assert (title && strcmp (title, expected) == 0);
    }
    free (title);
}

void
html_test (bool verbose)
{
    if (verbose)
        printf (" * html: ");
    s_check_title ("<html><head><title>Hello</title></head></html>", "Hello");
    s_check_title ("<TITLE lang=\"en\">\n  Big \t\n News  </Title>", "Big News");
    s_check_title ("<title>Tom &amp; Jerry &lt;3 &gt; &quot;x&quot; it&#39;s</title>",
                   "Tom & Jerry <3 > \"x\" it's");
    s_check_title ("<title>caf&#233; &#x263A; &bogus; &#0; &</title>", "café ☺ &bogus; &#0; &");
    s_check_title ("<titles>no</titles><title>yes</title>", "yes");
    s_check_title ("<title></title>", "");
    s_check_title ("<p>no title</p>", NULL);
    s_check_title ("<title>unclosed", NULL);
    s_check_title ("<title", NULL);
    char *title = NULL;
    assert (html_title (NULL, 0, &title) == 0 && !title);
    // NUL reads as U+FFFD; a page cut inside the title has none.
    assert (html_title ("<title>A\0B</title>", 18, &title) == 1);
    assert (strcmp (title, "A\xef\xbf\xbd" "B") == 0);
    free (title);
    assert (html_title ("<title>A\0B</title>", 16, &title) == 0 && !title);

    // Entities a title may not grow from: an unterminated one, beyond
    // U+10FFFF, a surrogate, more digits than any code point has.
    s_check_title ("<title>&#x110000; &#xD800; &#1234567890; &#65</title>",
                   "&#x110000; &#xD800; &#1234567890; &#65");
    s_check_title ("<title>&#X41;&#x1F600;&AMP;</title>", "A\xf0\x9f\x98\x80&");
    if (verbose)
        printf ("OK\n");
}
