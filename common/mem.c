// mem — the memory policy: an allocation that fails aborts with file:line.
#include "mem.h"

#include <assert.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

void *
mem_check (void *pointer, size_t size, const char *file, int line)
{
    if (pointer)
        return pointer;
    // No allocation from here on: the message is built on the stack and
    // written with one write(2).
    char where[160];
    if (line > 0)
        snprintf (where, sizeof where, "at %s:%d", file, line);
    else
        snprintf (where, sizeof where, "in %s", file);
    char message[256];
    int n = size ? snprintf (message, sizeof message,
                             "out of memory allocating %zu bytes %s; aborting\n", size, where)
                 : snprintf (message, sizeof message, "out of memory %s; aborting\n", where);
    if (n > 0) {
        ssize_t rc = write (STDERR_FILENO, message, (size_t) n < sizeof message ? (size_t) n
                                                                               : sizeof message - 1);
        (void) rc;
    }
    abort ();
}

// The test seam of mem_try_*: calls that succeed before one fails
// (negative: none fails), and how many failed.
static long s_try_left = -1;
static size_t s_try_failed;

// s_try_fails is true when the seam makes this mem_try_* call fail.
static bool
s_try_fails (void)
{
    if (s_try_left < 0)
        return false;
    if (s_try_left-- > 0)
        return false;
    s_try_failed++;
    return true;
}

void *
mem_try_alloc (size_t size)
{
    return s_try_fails () ? NULL : malloc (size);
}

void *
mem_try_realloc (void *pointer, size_t size)
{
    return s_try_fails () ? NULL : realloc (pointer, size);
}

size_t
mem_try_fail_after (long count)
{
    size_t failed = s_try_failed;
    s_try_failed = 0;
    s_try_left = count;
    return failed;
}

// s_json_alloc is jansson's allocator: the caller's file and line are not
// known here, the library is.
static void *
s_json_alloc (size_t size)
{
    return mem_check (malloc (size), size, "jansson", 0);
}

void
mem_init (void)
{
    json_set_alloc_funcs (s_json_alloc, free);
}

// --- self-test ---

// s_dies_with runs fn in a child process and checks that it aborted after
// writing a line holding expected to stderr.
static void
s_dies_with (void (*fn) (void), const char *expected)
{
    int pipe_fds[2];
    assert (pipe (pipe_fds) == 0);
    pid_t child = fork ();
    assert (child >= 0);
    if (child == 0) {
        dup2 (pipe_fds[1], STDERR_FILENO);
        fn ();
        _exit (0);      // not reached when fn aborts
    }
    close (pipe_fds[1]);
    char text[512];
    size_t len = 0;
    ssize_t n;
    while (len < sizeof text - 1 && (n = read (pipe_fds[0], text + len, sizeof text - 1 - len)) > 0)
        len += (size_t) n;
    text[len] = '\0';
    close (pipe_fds[0]);
    int status = 0;
    assert (waitpid (child, &status, 0) == child);
    if (!WIFSIGNALED (status) || WTERMSIG (status) != SIGABRT || !strstr (text, expected))
        fprintf (stderr, "mem: child ended with status %d, wrote [%s], want [%s]\n", status,
                 text, expected);
    assert (WIFSIGNALED (status) && WTERMSIG (status) == SIGABRT);
    assert (strstr (text, expected));
    assert (strncmp (text, "out of memory ", 14) == 0 && strstr (text, "; aborting\n"));
}

static void
s_fail_alloc (void)
{
    mem_check (NULL, 4096, "here.c", 42);
}

static void
s_fail_lib (void)
{
    mem_lib (NULL);
}

static void
s_fail_lib_code (void)
{
    mem_abort_if (true);
}

void
mem_test (bool verbose)
{
    if (verbose)
        printf (" * mem: ");
    mem_init ();
    mem_init ();
    // A pointer goes through untouched; a failed call reports nothing.
    char *text = mem_strdup ("abc");
    assert (mem_lib (text) == text && strcmp (text, "abc") == 0);
    mem_abort_if (false);
    free (text);
    char *copy = mem_strndup ("abcdef", 3);
    assert (strcmp (copy, "abc") == 0);
    free (copy);
    // jansson allocates through the policy.
    json_malloc_t json_alloc = NULL;
    json_free_t json_free = NULL;
    json_get_alloc_funcs (&json_alloc, &json_free);
    assert (json_alloc == s_json_alloc && json_free == free);
    json_t *value = json_pack ("{s:[i,s]}", "k", 1, "x");
    char *dumped = json_dumps (value, JSON_COMPACT);
    assert (dumped && strcmp (dumped, "{\"k\":[1,\"x\"]}") == 0);
    free (dumped);
    json_decref (value);
    // The exception's seam: the third call fails, only that one.
    mem_try_fail_after (2);
    char *first = mem_try_alloc (8);
    char *second = mem_try_realloc (first, 16);
    assert (first && second);
    assert (mem_try_realloc (second, 32) == NULL);
    char *fine = mem_try_alloc (1);
    assert (fine && mem_try_fail_after (-1) == 1);
    free (second);
    free (fine);
    fine = mem_try_alloc (1);
    assert (fine && mem_try_fail_after (-1) == 0);
    free (fine);
    // A failure aborts with where it happened.
    fflush (stdout);
    s_dies_with (s_fail_alloc, "out of memory allocating 4096 bytes at here.c:42; aborting");
    s_dies_with (s_fail_lib, "mem.c:");
    s_dies_with (s_fail_lib_code, "mem.c:");
    if (verbose)
        printf ("OK\n");
}
