// gearman-front — the Gearman peer's HTTP front door (bench/peers/README.md).
//
// What a C team would put in front of Gearman: libmicrohttpd answering
// POST /v1/jobs (the same job body jobgate takes, checked with jansson), the
// job's path handed to gearmand as a background job of the function "call"
// (gearman_client_do_background) and a 202 with gearmand's job handle as the
// id. With `Prefer: wait=N` the job is run in the foreground
// (gearman_client_do) and the answer is 200 with the worker's result.
// libgearman's client calls block, so the server runs a thread pool
// (--threads N, the accept path) or a thread per connection
// (--thread-per-connection, wait mode, where each waiting request holds its
// thread); each thread has its own gearman client (a client is not
// thread-safe). gearmand keeps its queue in memory: not durable.
//
//   gearman-front --listen PORT --server 127.0.0.1:GEARMAND_PORT
//                 [--threads N | --thread-per-connection]
//
// Listens on 127.0.0.1 only. Stops on SIGTERM or SIGINT.

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <jansson.h>
#include <libgearman/gearman.h>
#include <microhttpd.h>

#include "peer.h"

#define FRONT_MAX_BODY 65536       // a job body larger than this is refused (413)
#define FRONT_MAX_WAIT_S 60        // Prefer: wait is capped here
#define FRONT_FUNCTION "call"      // the gearman function the workers register

// One request's body as it arrives.
typedef struct {
    char *data;                    // bytes received so far
    size_t size;                   // how many
    bool too_large;                // more than FRONT_MAX_BODY arrived
} body_t;

static const char *s_server_host = "127.0.0.1";   // gearmand's address
static in_port_t s_server_port;                   // and port
static pthread_key_t s_client_key;                // this thread's gearman client
static unsigned long s_wait_jobs;                 // foreground jobs submitted (their ids)

// s_client returns the calling thread's gearman client, made on first use
// (freed with the thread by the key's destructor), or NULL.
static gearman_client_st *
s_client (void)
{
    gearman_client_st *client = pthread_getspecific (s_client_key);
    if (client)
        return client;
    client = gearman_client_create (NULL);
    if (!client)
        return NULL;
    if (gearman_client_add_server (client, s_server_host, s_server_port) != GEARMAN_SUCCESS) {
        fprintf (stderr, "gearman-front: add_server: %s\n", gearman_client_error (client));
        gearman_client_free (client);
        return NULL;
    }
    pthread_setspecific (s_client_key, client);
    return client;
}

static void
s_client_free (void *client)
{
    gearman_client_free (client);
}

static enum MHD_Result
s_answer (struct MHD_Connection *connection, unsigned int status, char *text)
{
    struct MHD_Response *response = MHD_create_response_from_buffer (
        strlen (text), text, MHD_RESPMEM_MUST_FREE);
    MHD_add_response_header (response, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
    enum MHD_Result rc = MHD_queue_response (connection, status, response);
    MHD_destroy_response (response);
    return rc;
}

static enum MHD_Result
s_error (struct MHD_Connection *connection, unsigned int status, const char *message)
{
    char *text = NULL;
    if (asprintf (&text, "{\"error\":\"%s\"}", message) < 0)
        return MHD_NO;
    return s_answer (connection, status, text);
}

// s_prefer_wait reads N from a `Prefer: wait=N` header; 0 when absent.
static int
s_prefer_wait (struct MHD_Connection *connection)
{
    const char *prefer = MHD_lookup_connection_value (connection, MHD_HEADER_KIND, "Prefer");
    const char *wait = prefer? strstr (prefer, "wait="): NULL;
    if (!wait)
        return 0;
    long seconds = strtol (wait + 5, NULL, 10);
    if (seconds <= 0)
        return 0;
    return seconds > FRONT_MAX_WAIT_S? FRONT_MAX_WAIT_S: (int) seconds;
}

// s_submit checks the job body and hands its path to gearmand.
static enum MHD_Result
s_submit (struct MHD_Connection *connection, const body_t *body)
{
    json_error_t error;
    json_t *job = json_loadb (body->data? body->data: "", body->size, JSON_REJECT_DUPLICATES, &error);
    const char *kind = json_string_value (json_object_get (job, "kind"));
    const char *provider = json_string_value (json_object_get (job, "provider"));
    const char *path = json_string_value (json_object_get (json_object_get (job, "request"), "path"));
    if (!job || !kind || strcmp (kind, "http") != 0 || !provider || !*provider
    ||  !path || path [0] != '/' || strlen (path) > 2048) {
        json_decref (job);
        return s_error (connection, 400, "a job is an http job with a provider and a request.path starting with /");
    }
    char *workload = strdup (path);
    json_decref (job);
    gearman_client_st *client = s_client ();
    if (!workload || !client) {
        free (workload);
        return s_error (connection, 503, "no gearman client");
    }
    int wait = s_prefer_wait (connection);
    char *text = NULL;
    enum MHD_Result rc;
    if (wait == 0) {
        gearman_job_handle_t handle;
        gearman_client_set_timeout (client, 10000);
        gearman_return_t ret = gearman_client_do_background (
            client, FRONT_FUNCTION, NULL, workload, strlen (workload), handle);
        free (workload);
        if (ret != GEARMAN_SUCCESS)
            return s_error (connection, 503, gearman_strerror (ret));
        if (asprintf (&text, "{\"id\":\"%s\",\"status\":\"queued\"}", handle) < 0)
            return MHD_NO;
        return s_answer (connection, 202, text);
    }
    // a foreground job's handle is gone once it finished: the id is the
    // unique key given to gearmand (this process, a counter)
    char unique [64];
    snprintf (unique, sizeof unique, "%d-%lu", (int) getpid (),
              __atomic_add_fetch (&s_wait_jobs, 1, __ATOMIC_RELAXED));
    gearman_client_set_timeout (client, wait * 1000);
    size_t result_size = 0;
    gearman_return_t ret = GEARMAN_UNKNOWN_STATE;
    char *result = gearman_client_do (client, FRONT_FUNCTION, unique, workload, strlen (workload),
                                      &result_size, &ret);
    free (workload);
    if (ret == GEARMAN_SUCCESS && result) {
        // the worker's result is the upstream's JSON answer: spliced as it is
        rc = asprintf (&text, "{\"id\":\"%s\",\"status\":\"succeeded\",\"result\":%.*s}",
                       unique, (int) result_size, result) < 0? MHD_NO: s_answer (connection, 200, text);
    }
    else
    if (ret == GEARMAN_TIMEOUT)
        rc = s_error (connection, 504, "not finished within the wait");
    else
        rc = s_error (connection, 502, gearman_strerror (ret));
    free (result);
    return rc;
}

static enum MHD_Result
s_handle (void *cls, struct MHD_Connection *connection, const char *url, const char *method,
          const char *version, const char *upload_data, size_t *upload_data_size, void **state)
{
    (void) cls;
    (void) version;
    if (strcmp (url, "/healthz") == 0 && strcmp (method, "GET") == 0) {
        char *ok = strdup ("{\"ok\":true}");
        return ok? s_answer (connection, 200, ok): MHD_NO;
    }
    if (strcmp (url, "/v1/jobs") != 0)
        return s_error (connection, 404, "not found");
    if (strcmp (method, "POST") != 0)
        return s_error (connection, 405, "POST only");
    body_t *body = *state;
    if (!body) {
        body = calloc (1, sizeof (body_t));
        if (!body)
            return MHD_NO;
        *state = body;
        return MHD_YES;
    }
    if (*upload_data_size) {
        if (body->size + *upload_data_size > FRONT_MAX_BODY)
            body->too_large = true;
        else {
            char *grown = realloc (body->data, body->size + *upload_data_size);
            if (!grown)
                return MHD_NO;
            memcpy (grown + body->size, upload_data, *upload_data_size);
            body->data = grown;
            body->size += *upload_data_size;
        }
        *upload_data_size = 0;
        return MHD_YES;
    }
    if (body->too_large)
        return s_error (connection, 413, "job body too large");
    return s_submit (connection, body);
}

static void
s_completed (void *cls, struct MHD_Connection *connection, void **state,
             enum MHD_RequestTerminationCode code)
{
    (void) cls;
    (void) connection;
    (void) code;
    body_t *body = *state;
    if (body) {
        free (body->data);
        free (body);
        *state = NULL;
    }
}

static void
s_usage (void)
{
    fprintf (stderr, "usage: gearman-front --listen PORT --server HOST:PORT "
                     "[--threads N | --thread-per-connection]\n");
    exit (2);
}

int
main (int argc, char *argv [])
{
    unsigned int port = 0, threads = 2;
    bool per_connection = false;
    for (int i = 1; i < argc; i++) {
        if (strcmp (argv [i], "--listen") == 0 && i + 1 < argc)
            port = (unsigned int) strtoul (argv [++i], NULL, 10);
        else
        if (strcmp (argv [i], "--server") == 0 && i + 1 < argc) {
            if (peer_parse_server (argv [++i], &s_server_host, &s_server_port) != 0)
                s_usage ();
        }
        else
        if (strcmp (argv [i], "--threads") == 0 && i + 1 < argc)
            threads = (unsigned int) strtoul (argv [++i], NULL, 10);
        else
        if (strcmp (argv [i], "--thread-per-connection") == 0)
            per_connection = true;
        else
            s_usage ();
    }
    if (port == 0 || port > 65535 || s_server_port == 0 || threads == 0)
        s_usage ();
    pthread_key_create (&s_client_key, s_client_free);

    sigset_t stop;
    peer_block_stop_signals (&stop);

    struct sockaddr_in address = { .sin_family = AF_INET, .sin_port = htons ((uint16_t) port),
                                   .sin_addr.s_addr = htonl (INADDR_LOOPBACK) };
    unsigned int flags = per_connection
        ? MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_POLL
        : MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL;
    struct MHD_Daemon *daemon = MHD_start_daemon (
        flags, (uint16_t) port, NULL, NULL, s_handle, NULL,
        MHD_OPTION_SOCK_ADDR, &address,
        MHD_OPTION_NOTIFY_COMPLETED, s_completed, NULL,
        MHD_OPTION_CONNECTION_LIMIT, (unsigned int) 30000,
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int) 120,
        MHD_OPTION_LISTEN_BACKLOG_SIZE, (unsigned int) 4096,
        MHD_OPTION_THREAD_STACK_SIZE, (size_t) (256 * 1024),
        per_connection? MHD_OPTION_END: MHD_OPTION_THREAD_POOL_SIZE, threads,
        MHD_OPTION_END);
    if (!daemon) {
        fprintf (stderr, "gearman-front: cannot listen on 127.0.0.1:%u\n", port);
        return 1;
    }
    fprintf (stderr, "gearman-front: 127.0.0.1:%u, gearmand %s:%u, %s\n", port, s_server_host,
             (unsigned int) s_server_port, per_connection? "a thread per connection": "thread pool");
    int signal_number = 0;
    sigwait (&stop, &signal_number);
    // connection threads may be blocked in gearmand calls: do not wait for them
    fprintf (stderr, "gearman-front: signal %d, stopping\n", signal_number);
    _exit (0);
}
