// jobgate-worker — runs upstream calls for the broker (SPEC §2, JGP/1 §3.2).
#include "cli.h"
#include "config.h"
#include "evloop.h"
#include "log.h"
#include "service.h"
#include "worker.h"

#include <curl/curl.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>

static const char *s_usage_text =
    "usage: jobgate-worker [--config FILE] [--check-config] [--version]\n"
    "                      [--config-reference] [--help]\n"
    "\n"
    "Connects to the broker (broker.backend) and runs up to\n"
    "worker.concurrency upstream calls at once with libcurl, on one event\n"
    "loop. Reads the broker, worker (concurrency, max_response_bytes,\n"
    "drain_timeout_ms), security, providers and log_level keys; provider\n"
    "secrets come from the environment or files named in providers.*.auth.\n"
    "\n"
    "SIGTERM or SIGINT drains: running calls finish and report, then the\n"
    "process exits 0; after worker.drain_timeout_ms (default 30 s) or a\n"
    "second signal the rest is handed back to the broker. SIGHUP: reread the\n"
    "file, apply the log settings (docs/config.md), reopen log.file.\n"
    "--check-config: test the file and the providers' secrets, one line,\n"
    "exit 0 or 1.\n";

// What the signal handlers reach.
typedef struct {
    worker_t *worker;           // the worker, once started
    service_t *service;         // sd_notify, watchdog, SIGHUP reloads
} process_t;

// s_check_nofile reports an open-file limit below the concurrency (cli_start
// raised it to the hard limit already): every call in flight holds a
// socket, and calls past the limit would fail as connect errors.
static void
s_check_nofile (int concurrency)
{
    struct rlimit limit;
    if (getrlimit (RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur != RLIM_INFINITY
        && limit.rlim_cur < (rlim_t) concurrency + 64)
        log_warn (NULL, "RLIMIT_NOFILE is %llu, too low for worker.concurrency %d",
                  (unsigned long long) limit.rlim_cur, concurrency);
}

// s_on_signal drains on the first SIGTERM/SIGINT and stops on the second.
static void
s_on_signal (evloop_t *loop, void *arg)
{
    process_t *process = arg;
    service_stopping (process->service);
    if (process->worker)
        worker_drain (process->worker);
    else
        evloop_stop (loop);
}

// main loads the configuration, owns the signals, and runs the worker on
// the process's one event loop until a drain completes.
int
main (int argc, char **argv)
{
    int exit_code;
    // Provider secrets are read by the check (config_load_secrets): only
    // workers hold them.
    config_t *config = cli_start (argc, argv, "worker", s_usage_text, config_load_secrets,
                                  &exit_code);
    if (!config)
        return exit_code;
    s_check_nofile (config->worker_concurrency);
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
    process_t process = { .service = service_new (loop, config, cli_config_path (), "worker",
                                                  config_load_secrets) };
    if (evloop_signal (loop, SIGTERM, s_on_signal, &process) < 0
        || evloop_signal (loop, SIGINT, s_on_signal, &process) < 0) {
        fprintf (stderr, "jobgate-worker: cannot route signals: %s\n", strerror (errno));
        service_destroy (&process.service);
        evloop_destroy (&loop);
        curl_global_cleanup ();
        config_destroy (&config);
        return 1;
    }
    process.worker = worker_new (config, loop);
    if (!process.worker) {
        fprintf (stderr, "jobgate-worker: cannot start (see the log above)\n");
        service_destroy (&process.service);
        evloop_destroy (&loop);
        curl_global_cleanup ();
        config_destroy (&config);
        return 1;
    }
    worker_set_timing (process.worker, 0, 0, config->drain_timeout_ms);
    service_ready (process.service);
    int rc = evloop_run (loop);
    log_info (NULL, "worker stopped");
    worker_destroy (&process.worker);
    service_destroy (&process.service);
    evloop_destroy (&loop);
    zsys_shutdown ();
    curl_global_cleanup ();
    config_destroy (&config);
    return rc == 0 ? 0 : 1;
}
