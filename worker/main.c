// jobgate-worker — runs upstream calls for the broker (SPEC §2, JGP/1 §3.2).
#include "config.h"
#include "evloop.h"
#include "log.h"
#include "worker.h"

#include <curl/curl.h>
#include <errno.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>

// s_usage prints the command line help to out.
static void
s_usage (FILE *out)
{
    fprintf (out,
             "usage: jobgate-worker [--config FILE]\n"
             "\n"
             "Connects to the broker (broker.backend) and runs up to\n"
             "worker.concurrency upstream calls at once with libcurl.\n"
             "\n"
             "  --config FILE  the jobgate JSON configuration (SPEC §6); reads the\n"
             "                 broker, worker, security, providers and log_level\n"
             "                 keys, plus worker.drain_timeout_ms (default %d)\n"
             "  --help         this text\n"
             "\n"
             "SIGTERM or SIGINT drains: running calls finish and report, then the\n"
             "process exits 0; a second signal exits at once.\n",
             WORKER_DRAIN_TIMEOUT_MS);
}

// s_raise_nofile lifts the open-file limit to the hard limit: every call in
// flight holds a socket. A limit below the concurrency is reported, since
// calls past it would fail as connect errors.
static void
s_raise_nofile (int concurrency)
{
    struct rlimit limit;
    if (getrlimit (RLIMIT_NOFILE, &limit) < 0)
        return;
    if (limit.rlim_cur < limit.rlim_max) {
        limit.rlim_cur = limit.rlim_max;
        if (setrlimit (RLIMIT_NOFILE, &limit) < 0)
            log_warn (NULL, "cannot raise RLIMIT_NOFILE: %s", strerror (errno));
        getrlimit (RLIMIT_NOFILE, &limit);
    }
    if (limit.rlim_cur != RLIM_INFINITY && limit.rlim_cur < (rlim_t) concurrency + 64)
        log_warn (NULL, "RLIMIT_NOFILE is %llu, too low for worker.concurrency %d",
                  (unsigned long long) limit.rlim_cur, concurrency);
}

// s_drain_timeout_ms reads the optional worker.drain_timeout_ms from the
// configuration file (config_t does not carry it). Returns -1 when the
// value is there but not a positive integer, 0 when absent.
static int64_t
s_drain_timeout_ms (const char *path)
{
    if (!path)
        return 0;
    json_t *root = json_load_file (path, 0, NULL);
    json_t *value = json_object_get (json_object_get (root, "worker"), "drain_timeout_ms");
    int64_t result = 0;
    if (value)
        result = json_is_integer (value) && json_integer_value (value) > 0
                 && json_integer_value (value) <= 3600000
                 ? (int64_t) json_integer_value (value) : -1;
    json_decref (root);
    return result;
}

// s_on_signal drains on the first SIGTERM/SIGINT and stops on the second.
static void
s_on_signal (evloop_t *loop, void *arg)
{
    worker_t **worker_p = arg;
    if (*worker_p)
        worker_drain (*worker_p);
    else
        evloop_stop (loop);
}

// main loads the configuration, owns the signals, and runs the worker on
// the process's one event loop until a drain completes.
int
main (int argc, char **argv)
{
    // Block the stop signals first: one arriving during start-up then
    // waits for the loop's signalfd instead of killing the process.
    sigset_t stop_signals;
    sigemptyset (&stop_signals);
    sigaddset (&stop_signals, SIGTERM);
    sigaddset (&stop_signals, SIGINT);
    sigprocmask (SIG_BLOCK, &stop_signals, NULL);
    const char *config_path = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp (argv[i], "--help") == 0 || strcmp (argv[i], "-h") == 0) {
            s_usage (stdout);
            return 0;
        }
        if (strcmp (argv[i], "--config") == 0 && i + 1 < argc)
            config_path = argv[++i];
        else if (strncmp (argv[i], "--config=", 9) == 0)
            config_path = argv[i] + 9;
        else {
            fprintf (stderr, "jobgate-worker: unknown argument %s (try --help)\n", argv[i]);
            return 2;
        }
    }
    char error[512];
    config_t *config = config_load (config_path, error, sizeof error);
    if (!config) {
        fprintf (stderr, "jobgate-worker: %s\n", error);
        return 1;
    }
    int64_t drain_timeout_ms = s_drain_timeout_ms (config_path);
    if (drain_timeout_ms < 0) {
        fprintf (stderr, "jobgate-worker: config: worker.drain_timeout_ms must be an integer "
                         "between 1 and 3600000\n");
        config_destroy (&config);
        return 1;
    }
    log_init ("worker", (log_level_t) log_level_parse (config->log_level));
    s_raise_nofile (config->worker_concurrency);
    // A peer closing a connection must not kill the process; libcurl
    // reports it as an error of that one call.
    signal (SIGPIPE, SIG_IGN);
    if (curl_global_init (CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        fprintf (stderr, "jobgate-worker: libcurl failed to initialise\n");
        config_destroy (&config);
        return 1;
    }

    evloop_t *loop = evloop_new ();
    if (!loop) {
        fprintf (stderr, "jobgate-worker: cannot create the event loop: %s\n", strerror (errno));
        curl_global_cleanup ();
        config_destroy (&config);
        return 1;
    }
    // Own the signals before czmq starts its threads (they inherit the
    // blocked mask, and the signalfd sees every SIGTERM).
    worker_t *worker = NULL;
    zsys_handler_set (NULL);
    if (evloop_signal (loop, SIGTERM, s_on_signal, &worker) < 0
        || evloop_signal (loop, SIGINT, s_on_signal, &worker) < 0) {
        fprintf (stderr, "jobgate-worker: cannot route signals: %s\n", strerror (errno));
        evloop_destroy (&loop);
        curl_global_cleanup ();
        config_destroy (&config);
        return 1;
    }
    worker = worker_new (config, loop);
    if (!worker) {
        fprintf (stderr, "jobgate-worker: cannot start (see the log above)\n");
        evloop_destroy (&loop);
        curl_global_cleanup ();
        config_destroy (&config);
        return 1;
    }
    if (drain_timeout_ms > 0)
        worker_set_timing (worker, 0, 0, drain_timeout_ms);
    int rc = evloop_run (loop);
    log_info (NULL, "worker stopped");
    worker_destroy (&worker);
    evloop_destroy (&loop);
    zsys_shutdown ();
    curl_global_cleanup ();
    config_destroy (&config);
    return rc == 0 ? 0 : 1;
}
