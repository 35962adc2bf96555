// jobgate-gateway — the HTTP API in front of the broker.
#include "gateway.h"
#include "cli.h"
#include "log.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
    int exit_code;
    config_t *config = cli_start (argc, argv, "gateway", s_usage, &exit_code);
    if (!config)
        return exit_code;
    char error[512];

    process_t process = { 0 };
    process.loop = evloop_new ();
    evloop_signal (process.loop, SIGTERM, s_signal, &process);
    evloop_signal (process.loop, SIGINT, s_signal, &process);
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
