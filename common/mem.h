// mem — the memory policy of every jobgate process, in one place.
//
// An allocation that fails aborts the process with its file and line: a
// broker, gateway or worker that cannot allocate a few hundred bytes cannot
// keep its promises honestly (a half-built reply, a lost job), and the
// supervisor restarts it; the store and the retries make that safe. So no
// caller checks for NULL, and no function returns NULL for lack of memory.
//
// The one exception is where a process holds bytes that an outsider sized —
// the worker's buffers for upstream answers: those paths use plain malloc
// and realloc behind their caps and fail the one call (response_too_large)
// rather than the process.
#ifndef JOBGATE_MEM_H
#define JOBGATE_MEM_H

#include <stddef.h>
#include <stdlib.h>
#include <string.h>

// mem_check returns pointer, or aborts naming file:line and size when it is
// NULL. Use the macros below rather than calling it.
void *mem_check (void *pointer, size_t size, const char *file, int line);

// glibc returns a unique pointer for a size of 0, never NULL.
#define mem_alloc(size)         mem_check (malloc (size), (size), __FILE__, __LINE__)
#define mem_calloc(count, size) mem_check (calloc ((count), (size)), (count) * (size), __FILE__, \
                                           __LINE__)
#define mem_realloc(p, size)    mem_check (realloc ((p), (size)), (size), __FILE__, __LINE__)
#define mem_strdup(text)        ((char *) mem_check (strdup (text), 0, __FILE__, __LINE__))
#define mem_strndup(text, n)    ((char *) mem_check (strndup ((text), (n)), (n), __FILE__, __LINE__))

#endif
