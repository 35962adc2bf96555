// utf8 — UTF-8 as RFC 3629 defines it (the functions are inline in utf8.h).
#include "utf8.h"

#include <assert.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>

void
utf8_test (bool verbose)
{
    if (verbose)
        printf (" * utf8: ");
    // Every code point writes a sequence that reads back whole, and that
    // jansson accepts as a string; surrogates are never written.
    for (uint32_t cp = 0; cp <= 0x10FFFF; cp++) {
        if (cp >= 0xD800 && cp <= 0xDFFF)
            continue;
        char bytes[4];
        size_t len = utf8_put (bytes, cp);
        assert (len == (cp < 0x80 ? 1u : cp < 0x800 ? 2u : cp < 0x10000 ? 3u : 4u));
        assert (utf8_sequence ((const unsigned char *) bytes, len) == len);
        // Cut short, it is no sequence.
        if (len > 1)
            assert (utf8_sequence ((const unsigned char *) bytes, len - 1) == 0);
        if (cp % 4099 == 0 || cp < 0x100) {
            json_t *text = json_stringn (bytes, len);
            assert (text);
            json_decref (text);
        }
    }
    // What is not well-formed: stray continuation bytes, overlong forms,
    // surrogates, past U+10FFFF, bytes that never appear, broken tails.
    static const struct {
        const char *bytes;      // the input
        size_t len;             // its length
    } bad[] = {
        { "\x80", 1 }, { "\xbf", 1 }, { "\xc0\xaf", 2 }, { "\xc1\xbf", 2 },
        { "\xe0\x80\xaf", 3 }, { "\xe0\x9f\xbf", 3 }, { "\xed\xa0\x80", 3 },
        { "\xed\xbf\xbf", 3 }, { "\xf0\x8f\xbf\xbf", 4 }, { "\xf4\x90\x80\x80", 4 },
        { "\xf5\x80\x80\x80", 4 }, { "\xff", 1 }, { "\xfe", 1 }, { "\xc3\x28", 2 },
        { "\xe2\x82\x28", 3 }, { "\xf0\x9f\x98\x28", 4 },
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert (utf8_sequence ((const unsigned char *) bad[i].bytes, bad[i].len) == 0);
        json_t *text = json_stringn (bad[i].bytes, bad[i].len);
        assert (text == NULL);      // the rule jansson applies too
    }
    // The edges that are well-formed.
    assert (utf8_sequence ((const unsigned char *) "\xed\x9f\xbf", 3) == 3);      // U+D7FF
    assert (utf8_sequence ((const unsigned char *) "\xee\x80\x80", 3) == 3);      // U+E000
    assert (utf8_sequence ((const unsigned char *) "\xf4\x8f\xbf\xbf", 4) == 4);  // U+10FFFF
    assert (utf8_sequence ((const unsigned char *) "\xc2\x80", 2) == 2);          // U+0080
    assert (utf8_sequence ((const unsigned char *) "a\xff", 2) == 1);
    if (verbose)
        printf ("OK\n");
}
