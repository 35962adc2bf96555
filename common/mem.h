// mem — the memory policy of every jobgate process, in one place.
//
// An allocation that fails aborts the process with its file and line: a
// broker, gateway or worker that cannot allocate a few hundred bytes cannot
// keep its promises honestly (a half-built reply, a lost job), and the
// supervisor restarts it; the store and the retries make that safe. So no
// caller checks for NULL, and no function returns NULL for lack of memory.
//
// The one exception is where a process holds bytes that an outsider sized —
// the worker's buffers for upstream answers: those paths allocate with
// mem_try_alloc and mem_try_realloc (malloc and realloc, with a test seam)
// behind their caps and fail the one call (response_too_large,
// worker_out_of_memory) rather than the process. Each such site says so in
// a comment naming this file, and the worker's self-tests make each of
// them fail in turn (mem_try_fail_after).
//
// The libraries allocate too, and the same rule holds for them:
//
// * jansson: mem_init gives it an allocator that aborts, so a json_* call
//   never fails for lack of memory. A NULL (or -1) from jansson then only
//   means bad input — json_string on text that is not UTF-8, a load of text
//   that is not JSON, a dump of a value that cannot be encoded — and is
//   handled as such. Every process calls mem_init first (cli_start, the
//   self-test); the worker only ever hands jansson bounded pieces of an
//   upstream answer (headers, a body of at most RESPONSE_JSON_PARSE_MAX_BYTES,
//   one stream event), never the unbounded ones.
// * czmq allocates with zmalloc, which aborts on its own (czmq_prelude.h).
//   A NULL from a zframe_*/zmsg_* copy means libzmq could not allocate the
//   frame: wrap it in mem_lib. zsock_new's NULL is not about memory (the
//   socket could not be created) and stays an error to report.
// * msgpack's buffers (pack.c) and libcurl's small objects the worker makes
//   itself (curl_easy_init, curl_url, curl_slist_append, curl_easy_escape)
//   return NULL or an error only when out of memory: wrapped in mem_lib or
//   checked with mem_abort_if. What libcurl allocates while it runs a
//   transfer (buffers of the upstream's answer) stays graceful: the one
//   transfer fails with CURLE_OUT_OF_MEMORY (worker_out_of_memory).
#ifndef JOBGATE_MEM_H
#define JOBGATE_MEM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

// mem_check returns pointer, or aborts naming file:line (and size, when not
// 0) when it is NULL. Use the macros below rather than calling it.
void *mem_check (void *pointer, size_t size, const char *file, int line);

// glibc returns a unique pointer for a size of 0, never NULL.
#define mem_alloc(size)         mem_check (malloc (size), (size), __FILE__, __LINE__)
#define mem_calloc(count, size) mem_check (calloc ((count), (size)), (count) * (size), __FILE__, \
                                           __LINE__)
#define mem_realloc(p, size)    mem_check (realloc ((p), (size)), (size), __FILE__, __LINE__)
#define mem_strdup(text)        ((char *) mem_check (strdup (text), 0, __FILE__, __LINE__))
#define mem_strndup(text, n)    ((char *) mem_check (strndup ((text), (n)), (n), __FILE__, __LINE__))

// mem_lib returns a pointer a library allocated (see above: a NULL from
// that call can only mean out of memory), or aborts naming file:line.
#define mem_lib(pointer)        mem_check ((pointer), 0, __FILE__, __LINE__)

// mem_abort_if aborts naming file:line when failed is a report that memory
// ran out (a library's error code that means nothing else, a textbuf's
// failed flag where the policy, not the exception, applies).
#define mem_abort_if(failed)    ((failed) ? (void) mem_check (NULL, 0, __FILE__, __LINE__) \
                                          : (void) 0)

// mem_try_alloc is malloc for the exception above: NULL when out of
// memory, and the caller fails the one call.
void *mem_try_alloc (size_t size);

// mem_try_realloc is realloc for the exception above: NULL when out of
// memory (pointer is then left as it was).
void *mem_try_realloc (void *pointer, size_t size);

// mem_try_fail_after is the exception's test seam: after count more
// mem_try_* calls succeed, the next one fails (that one only, so each site
// must handle its own failure); count < 0 (the default) makes none fail.
// Returns how many failed since the previous call. A process is
// single-threaded where it allocates these: no lock.
size_t mem_try_fail_after (long count);

// mem_init installs the policy in the libraries that take an allocator
// (jansson). Call it first in main, before any other library call; calling
// it again does nothing.
void mem_init (void);

// mem_test runs the self-test.
void mem_test (bool verbose);

#endif
