// gearman-worker — the Gearman peer's worker (bench/peers/README.md).
//
// A Gearman worker is one job at a time per connection to gearmand (the
// libgearman worker loop blocks), so a worker process runs --threads N
// threads, each a gearman worker registered for the function "call" with its
// own libcurl easy handle: the job's workload is the upstream path, the call
// goes to --upstream over a kept-alive connection, a 200 answer's body is the
// job's result. Each finished job appends "HANDLE FINISHED_MS STATUS" to
// --finished (wall clock, ms), written out once a second and at the stop: the
// bench's record of which jobs ended and when (gearmand keeps no results of
// background jobs).
//
//   gearman-worker --server 127.0.0.1:PORT --upstream http://127.0.0.1:PORT
//                  --threads N --finished FILE
//
// Stops on SIGTERM or SIGINT (the record is flushed first).

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <libgearman/gearman.h>

#include "peer.h"

#define WORKER_FUNCTION "call"            // what gearman-front submits
#define WORKER_MAX_ANSWER (1024 * 1024)   // a larger upstream answer fails the job
#define WORKER_MAX_URL 4096               // upstream base + path

// One worker thread's state.
typedef struct {
    CURL *easy;                    // its libcurl handle: the connection is kept alive
    char *answer;                  // the upstream's body as it arrives
    size_t answer_size;            // bytes in answer
    size_t answer_capacity;        // bytes allocated
} slot_t;

static const char *s_server_host = "127.0.0.1";   // gearmand
static in_port_t s_server_port;                   // gearmand's port
static const char *s_upstream;                    // base URL of the upstream
static pthread_mutex_t s_record_lock = PTHREAD_MUTEX_INITIALIZER;   // guards s_record
static char *s_record;                            // "HANDLE MS STATUS\n" lines not yet written
static size_t s_record_size;                      // bytes in s_record
static FILE *s_record_file;                       // --finished

static size_t
s_receive (char *data, size_t size, size_t count, void *cls)
{
    slot_t *slot = cls;
    size_t bytes = size * count;
    if (slot->answer_size + bytes > WORKER_MAX_ANSWER)
        return 0;                  // libcurl fails the transfer
    if (slot->answer_size + bytes > slot->answer_capacity) {
        size_t capacity = slot->answer_capacity? slot->answer_capacity * 2: 2048;
        while (capacity < slot->answer_size + bytes)
            capacity *= 2;
        char *grown = realloc (slot->answer, capacity);
        if (!grown)
            return 0;
        slot->answer = grown;
        slot->answer_capacity = capacity;
    }
    memcpy (slot->answer + slot->answer_size, data, bytes);
    slot->answer_size += bytes;
    return bytes;
}

// s_note appends one finished job to the record.
static void
s_note (const char *handle, const char *status)
{
    struct timespec now;
    clock_gettime (CLOCK_REALTIME, &now);
    char line [GEARMAN_JOB_HANDLE_SIZE + 64];
    int length = snprintf (line, sizeof line, "%s %lld %s\n", handle,
                           (long long) now.tv_sec * 1000 + now.tv_nsec / 1000000, status);
    pthread_mutex_lock (&s_record_lock);
    char *grown = realloc (s_record, s_record_size + (size_t) length);
    if (grown) {
        memcpy (grown + s_record_size, line, (size_t) length);
        s_record = grown;
        s_record_size += (size_t) length;
    }
    pthread_mutex_unlock (&s_record_lock);
}

static void
s_flush_record (void)
{
    pthread_mutex_lock (&s_record_lock);
    if (s_record_size) {
        fwrite (s_record, 1, s_record_size, s_record_file);
        fflush (s_record_file);
        s_record_size = 0;
    }
    pthread_mutex_unlock (&s_record_lock);
}

// s_call runs one job: GET upstream + workload; the body is the result.
static void *
s_call (gearman_job_st *job, void *context, size_t *result_size, gearman_return_t *ret)
{
    slot_t *slot = context;
    char url [WORKER_MAX_URL];
    size_t path_size = gearman_job_workload_size (job);
    if (strlen (s_upstream) + path_size + 1 > sizeof url) {
        s_note (gearman_job_handle (job), "failed");
        *ret = GEARMAN_WORK_FAIL;
        return NULL;
    }
    snprintf (url, sizeof url, "%s%.*s", s_upstream, (int) path_size,
              (const char *) gearman_job_workload (job));
    slot->answer_size = 0;
    curl_easy_setopt (slot->easy, CURLOPT_URL, url);
    long status = 0;
    CURLcode code = curl_easy_perform (slot->easy);
    if (code == CURLE_OK)
        curl_easy_getinfo (slot->easy, CURLINFO_RESPONSE_CODE, &status);
    if (code != CURLE_OK || status != 200) {
        s_note (gearman_job_handle (job), "failed");
        *ret = GEARMAN_WORK_FAIL;
        return NULL;
    }
    char *result = malloc (slot->answer_size? slot->answer_size: 1);
    if (!result) {
        *ret = GEARMAN_MEMORY_ALLOCATION_FAILURE;
        return NULL;
    }
    memcpy (result, slot->answer, slot->answer_size);
    *result_size = slot->answer_size;
    *ret = GEARMAN_SUCCESS;
    s_note (gearman_job_handle (job), "succeeded");
    return result;                 // libgearman frees it
}

static void *
s_thread (void *unused)
{
    (void) unused;
    slot_t slot = { .easy = curl_easy_init () };
    gearman_worker_st *worker = gearman_worker_create (NULL);
    if (!slot.easy || !worker
    ||  gearman_worker_add_server (worker, s_server_host, s_server_port) != GEARMAN_SUCCESS
    ||  gearman_worker_add_function (worker, WORKER_FUNCTION, 0, s_call, &slot) != GEARMAN_SUCCESS) {
        fprintf (stderr, "gearman-worker: cannot set up a worker thread\n");
        exit (1);
    }
    curl_easy_setopt (slot.easy, CURLOPT_WRITEFUNCTION, s_receive);
    curl_easy_setopt (slot.easy, CURLOPT_WRITEDATA, &slot);
    curl_easy_setopt (slot.easy, CURLOPT_TIMEOUT_MS, 30000L);
    curl_easy_setopt (slot.easy, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt (slot.easy, CURLOPT_TCP_NODELAY, 1L);
    curl_easy_setopt (slot.easy, CURLOPT_BUFFERSIZE, 2048L);
    for (;;) {
        gearman_return_t ret = gearman_worker_work (worker);
        if (ret != GEARMAN_SUCCESS && ret != GEARMAN_WORK_FAIL) {
            fprintf (stderr, "gearman-worker: %s\n", gearman_worker_error (worker));
            sleep (1);             // gearmand gone: the bench is stopping us
        }
    }
    return NULL;
}

static void
s_usage (void)
{
    fprintf (stderr, "usage: gearman-worker --server HOST:PORT --upstream URL --threads N --finished FILE\n");
    exit (2);
}

int
main (int argc, char *argv [])
{
    unsigned long threads = 0;
    const char *finished = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp (argv [i], "--server") == 0 && i + 1 < argc) {
            if (peer_parse_server (argv [++i], &s_server_host, &s_server_port) != 0)
                s_usage ();
        }
        else
        if (strcmp (argv [i], "--upstream") == 0 && i + 1 < argc)
            s_upstream = argv [++i];
        else
        if (strcmp (argv [i], "--threads") == 0 && i + 1 < argc)
            threads = strtoul (argv [++i], NULL, 10);
        else
        if (strcmp (argv [i], "--finished") == 0 && i + 1 < argc)
            finished = argv [++i];
        else
            s_usage ();
    }
    if (!s_server_port || !s_upstream || strncmp (s_upstream, "http://127.0.0.1:", 17) != 0
    ||  threads == 0 || threads > 20000 || !finished)
        s_usage ();
    s_record_file = fopen (finished, "a");
    if (!s_record_file) {
        fprintf (stderr, "gearman-worker: %s: %s\n", finished, strerror (errno));
        return 1;
    }
    curl_global_init (CURL_GLOBAL_DEFAULT);
    sigset_t stop;
    peer_block_stop_signals (&stop);

    pthread_attr_t attributes;
    pthread_attr_init (&attributes);
    pthread_attr_setstacksize (&attributes, 256 * 1024);
    pthread_attr_setdetachstate (&attributes, PTHREAD_CREATE_DETACHED);
    for (unsigned long i = 0; i < threads; i++) {
        pthread_t thread;
        int rc = pthread_create (&thread, &attributes, s_thread, NULL);
        if (rc != 0) {
            fprintf (stderr, "gearman-worker: thread %lu: %s\n", i, strerror (rc));
            return 1;
        }
    }
    fprintf (stderr, "gearman-worker: %lu threads, gearmand %s:%u, upstream %s\n", threads,
             s_server_host, (unsigned int) s_server_port, s_upstream);
    struct timespec second = { .tv_sec = 1 };
    for (;;) {
        int signal_number = sigtimedwait (&stop, NULL, &second);
        s_flush_record ();
        if (signal_number > 0) {
            fprintf (stderr, "gearman-worker: signal %d, stopping\n", signal_number);
            _exit (0);             // threads may be blocked in gearmand calls
        }
    }
}
