// mem — the memory policy: an allocation that fails aborts with file:line.
#include "mem.h"

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

void *
mem_check (void *pointer, size_t size, const char *file, int line)
{
    if (pointer)
        return pointer;
    // No allocation from here on: the message is built on the stack and
    // written with one write(2).
    char message[256];
    int n = snprintf (message, sizeof message,
                      "out of memory allocating %zu bytes at %s:%d; aborting\n", size, file, line);
    if (n > 0) {
        ssize_t rc = write (STDERR_FILENO, message, (size_t) n < sizeof message ? (size_t) n
                                                                               : sizeof message - 1);
        (void) rc;
    }
    abort ();
}
