// jobgate-gateway — the HTTP API in front of the broker.
#include "gateway.h"
#include "log.h"

#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

static const char *s_usage =
    "usage: jobgate-gateway [--config FILE] [--help]\n"
    "\n"
    "Serves the jobgate HTTP API (POST /v1/jobs, GET /v1/jobs/{id}, /healthz,\n"
    "/readyz) on gateway.listen, answers 202 once the broker has durably\n"
    "recorded a job, and parks long-poll and Prefer: wait requests until the\n"
    "job finishes. Reads the \"gateway\", \"broker\" (endpoints) and \"providers\"\n"
    "sections of the config. Environment JOBGATE_GATEWAY_<KEY> overrides.\n"
    "SIGTERM or SIGINT: stop accepting, answer parked requests, exit.\n";

typedef struct {
    gateway_t *gateway;         // the server
    evloop_t *loop;             // its loop
    int64_t drain_started_ms;   // when the first signal came, 0 = not yet
    evloop_timer_t *drain_timer; // checks progress of the drain
} process_t;

static void
s_drain_check (evloop_t *loop, void *arg)
{
    process_t *process = arg;
    process->drain_timer = NULL;
    bool idle = gateway_drain (process->gateway);
    if (idle || evloop_now_ms (loop) - process->drain_started_ms > 10000)
        evloop_stop (loop);
    else
        process->drain_timer = evloop_timer_start (loop, 50, s_drain_check, process);
}

static void
s_signal (evloop_t *loop, void *arg)
{
    process_t *process = arg;
    if (process->drain_started_ms) {
        log_info (NULL, "second signal; stopping now");
        evloop_stop (loop);
        return;
    }
    log_info (NULL, "signal received; draining");
    process->drain_started_ms = evloop_now_ms (loop);
    s_drain_check (loop, process);
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
        fprintf (stderr, "jobgate-gateway: %s\n", error);
        return 1;
    }
    log_init ("gateway", (log_level_t) log_level_parse (config->log_level));

    // Parked connections are file descriptors: allow as many as permitted.
    struct rlimit limit;
    if (getrlimit (RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur < limit.rlim_max) {
        limit.rlim_cur = limit.rlim_max;
        setrlimit (RLIMIT_NOFILE, &limit);
    }
    zsys_handler_set (NULL);
    process_t process = { 0 };
    process.loop = evloop_new ();
    evloop_signal (process.loop, SIGTERM, s_signal, &process);
    evloop_signal (process.loop, SIGINT, s_signal, &process);
    signal (SIGPIPE, SIG_IGN);
    zsys_init ();

    process.gateway = gateway_new (config, process.loop, error, sizeof error);
    if (!process.gateway) {
        fprintf (stderr, "jobgate-gateway: %s\n", error);
        evloop_destroy (&process.loop);
        config_destroy (&config);
        zsys_shutdown ();
        return 1;
    }
    int rc = evloop_run (process.loop);
    evloop_timer_cancel (process.loop, &process.drain_timer);
    gateway_destroy (&process.gateway);
    evloop_destroy (&process.loop);
    config_destroy (&config);
    zsys_shutdown ();
    log_info (NULL, "stopped");
    return rc == 0 ? 0 : 1;
}
