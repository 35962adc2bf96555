// textbuf — a growable text that remembers a failed allocation.
//
// URLs, scrubbed bodies and decoded strings are built a piece at a time;
// checking every append for out of memory buried the logic, so a textbuf
// records the failure and ignores what follows: the builder checks once,
// at the end. The text is always NUL-terminated once anything was added.
//
// It holds the upstream's text (stream lines and events, scrubbed copies),
// the memory policy's exception (common/mem.h): a failure fails the one
// call. A builder of text the policy covers (a URL from a client's spec,
// the spellings of an operator's secret) aborts on failed instead
// (mem_abort_if).
#ifndef JOBGATE_TEXTBUF_H
#define JOBGATE_TEXTBUF_H

#include <stdbool.h>
#include <stddef.h>

// Start one as { 0 }; free data when done.
typedef struct {
    char *data;                 // NUL-terminated bytes (may hold NUL), or NULL
    size_t len;                 // bytes used, without the terminating NUL
    size_t alloc;               // bytes allocated
    bool failed;                // an allocation failed: the text is unusable
} textbuf_t;

// textbuf_add appends len bytes of data. This function can't fail: a
// failed allocation sets failed.
void textbuf_add (textbuf_t *self, const char *data, size_t len);

// textbuf_str appends a C string.
void textbuf_str (textbuf_t *self, const char *text);

// textbuf_test runs the self-test.
void textbuf_test (bool verbose);

#endif
