// scrub — keeps a provider's secret out of everything a client reads.
#include "scrub.h"
#include "mem.h"
#include "textbuf.h"
#include "utf8.h"

#include <assert.h>
#include <curl/curl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// Ways of writing the secret searched for: raw, two JSON escapings, HTML,
// percent-encoded (duplicates are dropped).
#define SPELLINGS_MAX 5

struct _scrub_t {
    char *spellings[SPELLINGS_MAX];     // the secret as each encoding writes it
    size_t spelling_lens[SPELLINGS_MAX];// their lengths
    size_t spellings_count;             // spellings in use (the raw one first)
    size_t longest;                     // the longest spelling's length
    const char *marker;                 // what replaces one: SCRUB_REDACTED, or "" when that holds the secret
    char *held;                         // stream text held back (may begin a spelling), or NULL
    size_t held_len;                    // bytes in held
};

// s_json_escape appends data as the inside of a JSON string: quote,
// backslash and control characters escaped (slash too with escape_slash),
// every other byte as it is.
static void
s_json_escape (textbuf_t *buf, const char *data, size_t len, bool escape_slash)
{
    size_t plain = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char) data[i];
        const char *escape = c == '"' ? "\\\"" : c == '\\' ? "\\\\" : c == '\n' ? "\\n"
                             : c == '\r' ? "\\r" : c == '\t' ? "\\t" : c == '\b' ? "\\b"
                             : c == '\f' ? "\\f" : c == '/' && escape_slash ? "\\/" : NULL;
        char code[8];
        if (!escape && c < 0x20) {
            snprintf (code, sizeof code, "\\u%04x", c);
            escape = code;
        }
        if (!escape)
            continue;
        textbuf_add (buf, data + plain, i - plain);
        textbuf_add (buf, escape, strlen (escape));
        plain = i + 1;
    }
    textbuf_add (buf, data + plain, len - plain);
}

// s_html_escape appends data with the five HTML special characters escaped.
static void
s_html_escape (textbuf_t *buf, const char *data, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        const char *entity = data[i] == '&' ? "&amp;" : data[i] == '<' ? "&lt;"
                             : data[i] == '>' ? "&gt;" : data[i] == '"' ? "&quot;"
                             : data[i] == '\'' ? "&#39;" : NULL;
        if (entity)
            textbuf_add (buf, entity, strlen (entity));
        else
            textbuf_add (buf, data + i, 1);
    }
}

// s_spelling_add keeps text (taken) as one more spelling unless it is
// already one.
static void
s_spelling_add (scrub_t *self, char *text, size_t len)
{
    for (size_t i = 0; i < self->spellings_count; i++)
        if (self->spelling_lens[i] == len && memcmp (self->spellings[i], text, len) == 0) {
            free (text);
            return;
        }
    assert (self->spellings_count < SPELLINGS_MAX);
    self->spellings[self->spellings_count] = text;
    self->spelling_lens[self->spellings_count++] = len;
    if (len > self->longest)
        self->longest = len;
}

// s_spelling_add_built keeps a spelling built in a textbuf. The secret is
// the operator's (configuration): the memory policy applies, not the
// upstream exception.
static void
s_spelling_add_built (scrub_t *self, textbuf_t *built)
{
    mem_abort_if (built->failed);
    s_spelling_add (self, built->data, built->len);
}

// s_find_spelling is true when data holds one of the spellings.
static bool
s_find_spelling (const scrub_t *self, const char *data, size_t len)
{
    for (size_t i = 0; i < self->spellings_count; i++)
        if (memmem (data, len, self->spellings[i], self->spelling_lens[i]))
            return true;
    return false;
}

scrub_t *
scrub_new (const char *secret)
{
    if (!secret || !*secret)
        return NULL;
    scrub_t *self = mem_calloc (1, sizeof *self);
    size_t len = strlen (secret);
    s_spelling_add (self, mem_strdup (secret), len);
    textbuf_t json = { 0 }, json_slash = { 0 }, html = { 0 };
    s_json_escape (&json, secret, len, false);
    s_spelling_add_built (self, &json);
    s_json_escape (&json_slash, secret, len, true);
    s_spelling_add_built (self, &json_slash);
    s_html_escape (&html, secret, len);
    s_spelling_add_built (self, &html);
    char *percent = mem_lib (curl_easy_escape (NULL, secret, (int) len));
    s_spelling_add (self, mem_strdup (percent), strlen (percent));
    curl_free (percent);
    self->marker = s_find_spelling (self, SCRUB_REDACTED, strlen (SCRUB_REDACTED))
                   ? "" : SCRUB_REDACTED;
    return self;
}

void
scrub_destroy (scrub_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    scrub_t *self = *self_p;
    for (size_t i = 0; i < self->spellings_count; i++) {
        memset (self->spellings[i], 0, self->spelling_lens[i]);
        free (self->spellings[i]);
    }
    free (self->held);
    free (self);
    *self_p = NULL;
}

// s_hex4 reads four hex digits; -1 when they are not.
static long
s_hex4 (const char *p)
{
    long value = 0;
    for (int i = 0; i < 4; i++) {
        char c = p[i];
        int digit = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10
                    : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
        if (digit < 0)
            return -1;
        value = value * 16 + digit;
    }
    return value;
}

// s_json_decode appends the inside of a JSON string (len bytes, no quotes)
// decoded. It is lenient, for it reads whatever an upstream sent: an
// unknown escape stands for its character, a lone surrogate for U+FFFD.
static void
s_json_decode (textbuf_t *buf, const char *data, size_t len)
{
    size_t i = 0;
    while (i < len) {
        const char *slash = memchr (data + i, '\\', len - i);
        size_t plain = slash ? (size_t) (slash - (data + i)) : len - i;
        textbuf_add (buf, data + i, plain);
        i += plain;
        if (!slash || i + 1 >= len) {
            textbuf_add (buf, data + i, len - i);
            return;
        }
        char c = data[i + 1];
        i += 2;
        if (c != 'u') {
            char decoded = c == 'n' ? '\n' : c == 'r' ? '\r' : c == 't' ? '\t' : c == 'b' ? '\b'
                           : c == 'f' ? '\f' : c;
            textbuf_add (buf, &decoded, 1);
            continue;
        }
        long cp = i + 4 <= len ? s_hex4 (data + i) : -1;
        if (cp < 0) {
            textbuf_add (buf, "u", 1);
            continue;
        }
        i += 4;
        if (cp >= 0xD800 && cp <= 0xDBFF && i + 6 <= len && data[i] == '\\' && data[i + 1] == 'u') {
            long low = s_hex4 (data + i + 2);
            if (low >= 0xDC00 && low <= 0xDFFF) {
                cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
                i += 6;
            }
        }
        if (cp >= 0xD800 && cp <= 0xDFFF)
            cp = UTF8_REPLACEMENT;
        char bytes[4];
        textbuf_add (buf, bytes, utf8_put (bytes, (uint32_t) cp));
    }
}

// s_next_escaped finds the next JSON string from *pos that holds an escape
// (one without reads as it is written): *start is its first byte after the
// opening quote, *end its closing quote (or len when it is not closed).
// *pos moves past it. Returns false when no such string is left.
static bool
s_next_escaped (const char *data, size_t len, size_t *pos, size_t *start, size_t *end)
{
    while (*pos < len) {
        const char *quote = memchr (data + *pos, '"', len - *pos);
        if (!quote)
            break;
        *start = (size_t) (quote - data) + 1;
        bool escaped = false;
        size_t at = *start;
        while (at < len) {
            const char *stop = memchr (data + at, '"', len - at);
            const char *slash = memchr (data + at, '\\',
                                        stop ? (size_t) (stop - (data + at)) : len - at);
            if (!slash) {
                at = stop ? (size_t) (stop - data) : len;
                break;
            }
            escaped = true;
            at = (size_t) (slash - data) + 2;
        }
        *end = at < len ? at : len;
        *pos = *end < len ? *end + 1 : len;
        if (escaped)
            return true;
    }
    *pos = len;
    return false;
}

// s_replace appends data to out with every needle replaced by marker;
// returns how many were.
static size_t
s_replace (textbuf_t *out, const char *data, size_t len, const char *needle, size_t needle_len,
           const char *marker)
{
    size_t count = 0;
    const char *at = data, *end = data + len;
    const char *found;
    while ((found = memmem (at, (size_t) (end - at), needle, needle_len)) != NULL) {
        textbuf_add (out, at, (size_t) (found - at));
        textbuf_add (out, marker, strlen (marker));
        at = found + needle_len;
        count++;
    }
    textbuf_add (out, at, (size_t) (end - at));
    return count;
}

// s_finish hands a replaced text out: the whole text becomes the marker
// when a spelling survived the replacement (check with found_fn).
static int
s_finish (const scrub_t *self, textbuf_t *buf, bool (*found_fn) (const scrub_t *, const char *,
                                                                size_t),
          char **out, size_t *out_len)
{
    if (!buf->failed && found_fn (self, buf->data, buf->len)) {
        buf->len = 0;
        textbuf_add (buf, self->marker, strlen (self->marker));
    }
    if (buf->failed) {
        free (buf->data);
        return -1;
    }
    *out = buf->data;
    *out_len = buf->len;
    return 1;
}

int
scrub_text (const scrub_t *self, const char *data, size_t len, char **out, size_t *out_len)
{
    *out = NULL;
    *out_len = 0;
    if (!self || self->spelling_lens[0] < SCRUB_SECRET_MIN || !data)
        return 0;
    textbuf_t text = { 0 };
    for (size_t i = 0; i < self->spellings_count; i++) {
        const char *from = text.data ? text.data : data;
        size_t from_len = text.data ? text.len : len;
        if (!memmem (from, from_len, self->spellings[i], self->spelling_lens[i]))
            continue;
        textbuf_t next = { 0 };
        s_replace (&next, from, from_len, self->spellings[i], self->spelling_lens[i],
                   self->marker);
        free (text.data);
        text = next;
        if (text.failed) {
            free (text.data);
            return -1;
        }
    }
    if (!text.data)
        return 0;
    return s_finish (self, &text, s_find_spelling, out, out_len);
}

bool
scrub_found (const scrub_t *self, const char *data, size_t len)
{
    if (!self || !data)
        return false;
    if (s_find_spelling (self, data, len))
        return true;
    size_t pos = 0, start, end;
    while (s_next_escaped (data, len, &pos, &start, &end)) {
        // Decoding never lengthens a string: one shorter than the secret
        // cannot hold it.
        if (end - start < self->spelling_lens[0])
            continue;
        textbuf_t decoded = { 0 };
        s_json_decode (&decoded, data + start, end - start);
        bool found = decoded.failed || (decoded.data
                                        && s_find_spelling (self, decoded.data, decoded.len));
        free (decoded.data);
        if (found)
            return true;
    }
    return false;
}

int
scrub_json (const scrub_t *self, const char *data, size_t len, char **out, size_t *out_len)
{
    *out = NULL;
    *out_len = 0;
    if (!self || self->spelling_lens[0] < SCRUB_SECRET_MIN || !data)
        return 0;
    // Strings with escapes are decoded; those that hold the secret are
    // written again, scrubbed. Strings without escapes read as they are
    // written, so the scrub_text pass below covers them.
    textbuf_t rewritten = { 0 };
    size_t pos = 0, start, end, copied = 0;
    while (s_next_escaped (data, len, &pos, &start, &end)) {
        if (end - start < self->spelling_lens[0])
            continue;
        textbuf_t decoded = { 0 };
        s_json_decode (&decoded, data + start, end - start);
        char *clean = NULL;
        size_t clean_len = 0;
        int rc = decoded.failed ? -1
                 : scrub_text (self, decoded.data, decoded.len, &clean, &clean_len);
        free (decoded.data);
        if (rc < 0) {
            free (rewritten.data);
            return -1;
        }
        if (rc == 0)
            continue;
        textbuf_add (&rewritten, data + copied, start - copied);
        s_json_escape (&rewritten, clean, clean_len, false);
        copied = end;
        free (clean);
    }
    if (rewritten.data || rewritten.failed)
        textbuf_add (&rewritten, data + copied, len - copied);
    if (rewritten.failed) {
        free (rewritten.data);
        return -1;
    }
    const char *text = rewritten.data ? rewritten.data : data;
    size_t text_len = rewritten.data ? rewritten.len : len;
    char *clean = NULL;
    size_t clean_len = 0;
    int rc = scrub_text (self, text, text_len, &clean, &clean_len);
    if (rc < 0) {
        free (rewritten.data);
        return -1;
    }
    if (rc == 0 && !rewritten.data)
        return 0;
    textbuf_t result = { 0 };
    if (rc == 1) {
        free (rewritten.data);
        result = (textbuf_t) { .data = clean, .len = clean_len, .alloc = clean_len + 1 };
    }
    else
        result = rewritten;
    return s_finish (self, &result, scrub_found, out, out_len);
}

// s_held_tail returns how many bytes at the end of text (len bytes) could
// be the start of a spelling, widened to begin on a UTF-8 character.
static size_t
s_held_tail (const scrub_t *self, const char *text, size_t len)
{
    size_t hold = 0;
    size_t most = self->longest - 1 < len ? self->longest - 1 : len;
    for (size_t k = most; k > 0 && hold == 0; k--)
        for (size_t i = 0; i < self->spellings_count; i++)
            if (self->spelling_lens[i] > k && memcmp (text + len - k, self->spellings[i], k) == 0) {
                hold = k;
                break;
            }
    while (hold < len && ((unsigned char) text[len - hold] & 0xC0) == 0x80)
        hold++;
    return hold;
}

int
scrub_stream (scrub_t *self, const char *data, size_t len, scrub_emit_fn *fn, void *arg)
{
    if (!self || self->spelling_lens[0] < SCRUB_SECRET_MIN) {
        if (len)
            fn (arg, data, len);
        return 0;
    }
    textbuf_t pending = { 0 };
    textbuf_add (&pending, self->held ? self->held : "", self->held_len);
    textbuf_add (&pending, data, len);
    free (self->held);
    self->held = NULL;
    self->held_len = 0;
    if (pending.failed) {
        free (pending.data);
        return -1;
    }
    char *clean = NULL;
    size_t clean_len = 0;
    int rc = scrub_text (self, pending.data, pending.len, &clean, &clean_len);
    if (rc < 0) {
        free (pending.data);
        return -1;
    }
    if (rc == 1) {
        free (pending.data);
        pending = (textbuf_t) { .data = clean, .len = clean_len };
    }
    size_t hold = s_held_tail (self, pending.data, pending.len);
    if (hold > 0) {
        // Usually shorter than a spelling, but widened over a run of UTF-8
        // continuation bytes the upstream chose: its size, the memory
        // policy's exception (common/mem.h).
        self->held = mem_try_alloc (hold);
        if (!self->held) {
            free (pending.data);
            return -1;
        }
        memcpy (self->held, pending.data + pending.len - hold, hold);
        self->held_len = hold;
    }
    if (pending.len > hold)
        fn (arg, pending.data, pending.len - hold);
    free (pending.data);
    return 0;
}

void
scrub_stream_end (scrub_t *self, scrub_emit_fn *fn, void *arg)
{
    if (!self || !self->held)
        return;
    // What is held is shorter than every spelling, so it holds none.
    fn (arg, self->held, self->held_len);
    free (self->held);
    self->held = NULL;
    self->held_len = 0;
}

// --- self-test ---

// s_check_json scrubs text with scrubber and compares with expected
// (NULL: nothing replaced).
static void
s_check_json (const scrub_t *scrubber, const char *text, const char *expected)
{
    char *out = NULL;
    size_t out_len = 0;
    int rc = scrub_json (scrubber, text, strlen (text), &out, &out_len);
    if (expected ? rc != 1 || strcmp (out, expected) != 0 : rc != 0)
        fprintf (stderr, "scrub: %s gave %s, want %s\n", text, out ? out : "(nothing)",
                 expected ? expected : "(nothing)");
    assert (expected ? rc == 1 && strcmp (out, expected) == 0 && out_len == strlen (out)
                     : rc == 0 && !out);
    free (out);
}

// What the test's stream saw.
typedef struct {
    char text[512];             // pieces joined with '|'
    size_t pieces;              // pieces seen
} s_seen_t;

// s_test_emit records one piece of stream text.
static void
s_test_emit (void *arg, const char *text, size_t len)
{
    s_seen_t *seen = arg;
    size_t used = strlen (seen->text);
    snprintf (seen->text + used, sizeof seen->text - used, "%s%.*s", seen->pieces ? "|" : "",
              (int) len, text);
    seen->pieces++;
}

void
scrub_test (bool verbose)
{
    if (verbose)
        printf (" * scrub: ");
    assert (scrub_new (NULL) == NULL);
    assert (scrub_new ("") == NULL);
    // A secret with every character JSON and HTML escape: quote, backslash,
    // slash, ampersand.
    scrub_t *scrubber = scrub_new ("sk-a\"b\\c/d&e");
    assert (scrubber);

    // Raw, JSON-escaped (both ways), HTML-escaped and percent-encoded
    // spellings, in any text.
    static const struct {
        const char *text;       // what an upstream sent
        const char *expected;   // what a client may read
    } texts[] = {
        { "x sk-a\"b\\c/d&e y", "x [redacted] y" },
        { "{\"h\":\"Bearer sk-a\\\"b\\\\c/d&e\"}", "{\"h\":\"Bearer [redacted]\"}" },
        { "{\"h\":\"Bearer sk-a\\\"b\\\\c\\/d&e\"}", "{\"h\":\"Bearer [redacted]\"}" },
        { "<b>sk-a&quot;b\\c/d&amp;e</b>", "<b>[redacted]</b>" },
        { "?k=sk-a%22b%5Cc%2Fd%26e&x=1", "?k=[redacted]&x=1" },
        { "twice: sk-a\"b\\c/d&esk-a\"b\\c/d&e.", "twice: [redacted][redacted]." },
    };
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) {
        s_check_json (scrubber, texts[i].text, texts[i].expected);
        assert (scrub_found (scrubber, texts[i].text, strlen (texts[i].text)));
        char *out = NULL;
        size_t out_len = 0;
        assert (scrub_text (scrubber, texts[i].text, strlen (texts[i].text), &out, &out_len) == 1);
        assert (strcmp (out, texts[i].expected) == 0);
        free (out);
    }
    // Any other escaping of a JSON string is decoded first: \u00XX for every
    // character, a surrogate pair, keys as well as values; strings without
    // the secret are left exactly as they were written.
    s_check_json (scrubber,
        "{\"a\\/b\":\"\\u0073\\u006b\\u002d\\u0061\\u0022\\u0062\\u005c\\u0063\\u002f\\u0064"
        "\\u0026\\u0065 \\ud83d\\ude00\",\"k\\u0020\":1}",
        "{\"a\\/b\":\"[redacted] \xf0\x9f\x98\x80\",\"k\\u0020\":1}");
    s_check_json (scrubber, "{\"sk-a\\\"b\\\\c/d&e\":[\"ok\\n\"]}", "{\"[redacted]\":[\"ok\\n\"]}");
    s_check_json (scrubber, "[\"\\u00e9\\/\", 1.5e3, \"sk-a\\\"b\"]", NULL);
    // Lenient on what is not JSON: odd escapes, an unclosed string, a lone
    // surrogate, text outside quotes.
    s_check_json (scrubber, "\"\\x\\ud800\\u12\" \"sk-a\\\"b\\\\c/d&e", "\"\\x\\ud800\\u12\" \"[redacted]");
    s_check_json (scrubber, "plain text, no secret", NULL);
    s_check_json (scrubber, "", NULL);
    assert (!scrub_found (scrubber, "sk-a\"b", 6));
    assert (!scrub_found (NULL, "anything", 8));
    char *out = NULL;
    size_t out_len = 0;
    assert (scrub_text (NULL, "sk-a\"b\\c/d&e", 12, &out, &out_len) == 0 && !out);

    // A stream: the secret split across pieces never shows, whatever the
    // split; the tail that might begin it waits for the next piece or the end.
    const char *wire = "say sk-a\"b\\c/d&e and sk-a\"b\\c/d&e, then sk-a\"b";
    size_t wire_len = strlen (wire);
    for (size_t split = 0; split <= wire_len; split++) {
        s_seen_t seen = { .pieces = 0 };
        assert (scrub_stream (scrubber, wire, split, s_test_emit, &seen) == 0);
        assert (scrub_stream (scrubber, wire + split, wire_len - split, s_test_emit, &seen) == 0);
        scrub_stream_end (scrubber, s_test_emit, &seen);
        char joined[512];
        size_t at = 0;
        for (const char *p = seen.text; *p; p++)
            if (*p != '|')
                joined[at++] = *p;
        joined[at] = '\0';
        if (strcmp (joined, "say [redacted] and [redacted], then sk-a\"b") != 0)
            fprintf (stderr, "scrub: split %zu gave %s\n", split, seen.text);
        assert (strcmp (joined, "say [redacted] and [redacted], then sk-a\"b") == 0);
        // No piece shows the secret.
        assert (!strstr (seen.text, "sk-a\"b\\c/d&e"));
    }
    // Each allocation a scrub makes fails in turn (the memory policy's
    // exception, common/mem.h): the call says so, and what it emitted
    // before holds no secret; once none fails, the result is whole.
    bool whole = false;
    for (long n = 0; n < 200 && !whole; n++) {
        mem_try_fail_after (n);
        char *out_text = NULL;
        size_t out_text_len = 0;
        int rc = scrub_json (scrubber, texts[1].text, strlen (texts[1].text), &out_text,
                             &out_text_len);
        s_seen_t seen = { .pieces = 0 };
        int stream_rc = scrub_stream (scrubber, wire, 9, s_test_emit, &seen);
        if (stream_rc == 0)
            stream_rc = scrub_stream (scrubber, wire + 9, wire_len - 9, s_test_emit, &seen);
        scrub_stream_end (scrubber, s_test_emit, &seen);
        size_t failed = mem_try_fail_after (-1);
        assert (!strstr (seen.text, "sk-a\"b\\c/d&e"));
        assert (rc == 1 ? strcmp (out_text, texts[1].expected) == 0 : rc == -1 && !out_text);
        assert (failed == 0 ? rc == 1 && stream_rc == 0 : rc == -1 || stream_rc == -1);
        whole = failed == 0;
        free (out_text);
    }
    assert (whole);

    // A held tail never splits a UTF-8 character.
    scrub_t *accented = scrub_new ("\xc3\xa9t\xc3\xa9-secret");
    s_seen_t seen = { .pieces = 0 };
    assert (scrub_stream (accented, "caf\xc3\xa9t\xc3", 7, s_test_emit, &seen) == 0);
    assert (strcmp (seen.text, "caf") == 0);
    scrub_stream_end (accented, s_test_emit, &seen);
    assert (strcmp (seen.text, "caf|\xc3\xa9t\xc3") == 0);
    scrub_destroy (&accented);
    // Without a secret a stream passes through.
    seen = (s_seen_t) { .pieces = 0 };
    assert (scrub_stream (NULL, "abc", 3, s_test_emit, &seen) == 0);
    scrub_stream_end (NULL, s_test_emit, &seen);
    assert (strcmp (seen.text, "abc") == 0);
    scrub_destroy (&scrubber);
    scrub_destroy (&scrubber);

    // Short secrets are found (headers are hidden whole) but not replaced.
    scrubber = scrub_new ("k1");
    assert (scrub_found (scrubber, "a k1 b", 6));
    assert (scrub_json (scrubber, "a k1 b", 6, &out, &out_len) == 0);
    scrub_destroy (&scrubber);
    // A secret that the marker itself holds, or that re-forms around it:
    // the whole text goes.
    scrubber = scrub_new ("redacted");
    assert (scrub_json (scrubber, "x redacted y", 12, &out, &out_len) == 1);
    assert (strcmp (out, "x  y") == 0);
    free (out);
    scrub_destroy (&scrubber);
    scrubber = scrub_new ("ted]abcd");
    assert (scrub_text (scrubber, "ted]abcdabcd", 12, &out, &out_len) == 1);
    assert (strcmp (out, SCRUB_REDACTED) == 0);
    free (out);
    scrub_destroy (&scrubber);
    if (verbose)
        printf ("OK\n");
}
