// utf8 — UTF-8 as RFC 3629 defines it, for the code that reads or writes
// it a byte at a time (log escaping, JSON string rendering, entity and
// escape decoding).
//
// One definition of "well-formed": no overlong forms, no surrogates
// (U+D800..U+DFFF), nothing past U+10FFFF, the same rule jansson applies to
// the strings it accepts. The functions are inline: they sit in loops over
// every byte of an answer.
#ifndef JOBGATE_UTF8_H
#define JOBGATE_UTF8_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

// The code point a reader writes for what it cannot decode.
#define UTF8_REPLACEMENT 0xFFFD

// utf8_sequence returns the length (1 to 4) of the well-formed sequence at
// data (left bytes, at least 1), or 0 when there is none. This function
// can't fail.
static inline size_t
utf8_sequence (const unsigned char *data, size_t left)
{
    unsigned char c = data[0];
    if (c < 0x80)
        return 1;
    size_t need = c >= 0xC2 && c <= 0xDF ? 2 : c >= 0xE0 && c <= 0xEF ? 3
                  : c >= 0xF0 && c <= 0xF4 ? 4 : 0;
    if (need == 0 || left < need)
        return 0;
    // The second byte's range shuts out overlong forms (E0, F0),
    // surrogates (ED) and what lies past U+10FFFF (F4).
    unsigned char low = c == 0xE0 ? 0xA0 : c == 0xF0 ? 0x90 : 0x80;
    unsigned char high = c == 0xED ? 0x9F : c == 0xF4 ? 0x8F : 0xBF;
    if (data[1] < low || data[1] > high)
        return 0;
    for (size_t i = 2; i < need; i++)
        if ((data[i] & 0xC0) != 0x80)
            return 0;
    return need;
}

// utf8_put writes code point cp (at most U+10FFFF, not a surrogate) at out,
// which has room for 4 bytes, and returns the bytes written (1 to 4). This
// function can't fail.
static inline size_t
utf8_put (char *out, uint32_t cp)
{
    if (cp < 0x80) {
        out[0] = (char) cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char) (0xC0 | (cp >> 6));
        out[1] = (char) (0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char) (0xE0 | (cp >> 12));
        out[1] = (char) (0x80 | ((cp >> 6) & 0x3F));
        out[2] = (char) (0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char) (0xF0 | (cp >> 18));
    out[1] = (char) (0x80 | ((cp >> 12) & 0x3F));
    out[2] = (char) (0x80 | ((cp >> 6) & 0x3F));
    out[3] = (char) (0x80 | (cp & 0x3F));
    return 4;
}

// utf8_test runs the self-test.
void utf8_test (bool verbose);

#endif
