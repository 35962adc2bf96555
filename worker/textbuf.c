// textbuf — a growable text that remembers a failed allocation.
#include "textbuf.h"
#include "mem.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void
textbuf_add (textbuf_t *self, const char *data, size_t len)
{
    if (self->failed)
        return;
    if (self->len + len + 1 > self->alloc) {
        size_t alloc = self->alloc ? self->alloc : 64;
        while (alloc < self->len + len + 1)
            alloc *= 2;
        // The memory policy's exception (common/mem.h): textbuf.h says who
        // may let a failure fail the call, and who aborts instead.
        char *grown = mem_try_realloc (self->data, alloc);
        if (!grown) {
            self->failed = true;
            return;
        }
        self->data = grown;
        self->alloc = alloc;
    }
    if (len)
        memcpy (self->data + self->len, data, len);
    self->len += len;
    self->data[self->len] = '\0';
}

void
textbuf_str (textbuf_t *self, const char *text)
{
    textbuf_add (self, text, strlen (text));
}

void
textbuf_test (bool verbose)
{
    if (verbose)
        printf (" * textbuf: ");
    textbuf_t text = { 0 };
    textbuf_add (&text, "", 0);
    assert (text.data && text.len == 0 && text.data[0] == '\0');
    for (int i = 0; i < 100; i++)
        textbuf_str (&text, "0123456789");
    textbuf_add (&text, "a\0b", 3);
    assert (text.len == 1003 && !text.failed && text.data[1003] == '\0');
    assert (memcmp (text.data + 1000, "a\0b", 3) == 0);
    // After a failure nothing more is added.
    text.failed = true;
    textbuf_str (&text, "more");
    assert (text.len == 1003);
    free (text.data);
    if (verbose)
        printf ("OK\n");
}
