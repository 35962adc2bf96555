// jobgate-broker — the durable queue between gateways and workers.
#include "broker.h"
#include "log.h"

#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *s_usage =
    "usage: jobgate-broker [--config FILE] [--help]\n"
    "\n"
    "Owns the durable job store (LMDB), queues jobs by priority, dispatches\n"
    "them to workers with credit-based flow control, retries failures with\n"
    "backoff and publishes job events. Reads the \"broker\" section of the\n"
    "config: frontend, backend, publisher, data_dir, durability (fsync|os),\n"
    "result_ttl_s, max_queued. Environment JOBGATE_BROKER_<KEY> overrides.\n"
    "SIGTERM or SIGINT: commit, answer what is pending, exit.\n";

static void
s_stop (evloop_t *loop, void *arg)
{
    log_info (NULL, "signal received; stopping");
    evloop_stop (loop);
}

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
    static struct option options[] = { { "config", required_argument, NULL, 'c' },
                                       { "help", no_argument, NULL, 'h' },
                                       { NULL, 0, NULL, 0 } };
    int option;
    while ((option = getopt_long (argc, argv, "c:h", options, NULL)) != -1) {
        if (option == 'c')
            config_path = optarg;
        else if (option == 'h') {
            fputs (s_usage, stdout);
            return 0;
        }
        else {
            fputs (s_usage, stderr);
            return 2;
        }
    }
    char error[512];
    config_t *config = config_load (config_path, error, sizeof error);
    if (!config) {
        fprintf (stderr, "jobgate-broker: %s\n", error);
        return 1;
    }
    log_init ("broker", (log_level_t) log_level_parse (config->log_level));

    // Own the signals before any ZeroMQ thread exists (STYLE: own the
    // signals), so every thread inherits the blocked mask.
    zsys_handler_set (NULL);
    evloop_t *loop = evloop_new ();
    evloop_signal (loop, SIGTERM, s_stop, NULL);
    evloop_signal (loop, SIGINT, s_stop, NULL);
    signal (SIGPIPE, SIG_IGN);
    zsys_init ();

    broker_t *broker = broker_new (config, loop, error, sizeof error);
    if (!broker) {
        fprintf (stderr, "jobgate-broker: %s\n", error);
        evloop_destroy (&loop);
        config_destroy (&config);
        zsys_shutdown ();
        return 1;
    }
    int rc = evloop_run (loop);
    broker_destroy (&broker);
    evloop_destroy (&loop);
    config_destroy (&config);
    zsys_shutdown ();
    log_info (NULL, "stopped");
    return rc == 0 ? 0 : 1;
}
