// jobgate-gateway — the HTTP API in front of the broker.
#include "gateway.h"
#include "cli.h"
#include "log.h"
#include "service.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *s_usage =
    "usage: jobgate-gateway [--config FILE] [--check-config] [--version]\n"
    "                       [--config-reference] [--help]\n"
    "\n"
    "Serves the jobgate HTTP API on gateway.listen: POST /v1/jobs (202 once\n"
    "the broker has durably recorded the job; Prefer: wait=N parks the\n"
    "request until it finishes), GET /v1/jobs/{id} (?wait=N long-polls),\n"
    "GET /v1/jobs/{id}/events (Server-Sent Events), DELETE /v1/jobs/{id},\n"
    "GET /v1/jobs?status=&limit=&cursor=, POST /v1/jobs/{id}/retry,\n"
    "GET /v1/providers, /healthz, /readyz. Reads the \"gateway\", \"broker\"\n"
    "(endpoints) and \"providers\" sections of the config; environment\n"
    "JOBGATE_GATEWAY_<KEY> overrides. SIGTERM or SIGINT: stop accepting,\n"
    "answer parked requests, exit; a second signal exits at once. SIGHUP:\n"
    "reread the file, apply API keys, quotas, provider limits and log\n"
    "settings (docs/config.md), reopen log.file. --check-config: test the\n"
    "file, one line, exit 0 or 1.\n";

// How long a draining gateway waits for its requests before it stops anyway,
// and how often it looks.
#define DRAIN_TIMEOUT_MS 10000
#define DRAIN_CHECK_MS 50

typedef struct {
    gateway_t *gateway;         // the server
    evloop_t *loop;             // its loop
    int64_t drain_started_ms;   // when the first signal came, 0 = not yet
    evloop_timer_t *drain_timer; // repeating: checks progress of the drain
    service_t *service;         // sd_notify, watchdog, SIGHUP reloads
} process_t;

static void
s_drain_check (evloop_t *loop, void *arg)
{
    process_t *process = arg;
    bool idle = gateway_drain (process->gateway);
    if (idle || evloop_now_ms (loop) - process->drain_started_ms > DRAIN_TIMEOUT_MS)
        evloop_stop (loop);
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
    service_stopping (process->service);
    process->drain_started_ms = evloop_now_ms (loop);
    process->drain_timer = evloop_timer_every (loop, DRAIN_CHECK_MS, s_drain_check, process);
    s_drain_check (loop, process);
}

int
main (int argc, char **argv)
{
    int exit_code;
    config_t *config = cli_start (argc, argv, "gateway", s_usage, gateway_check_config,
                                  &exit_code);
    if (!config)
        return exit_code;
    char error[512];

    process_t process = { 0 };
    process.loop = evloop_new ();
    process.service = service_new (process.loop, config, cli_config_path (), "gateway",
                                   gateway_check_config);
    evloop_signal (process.loop, SIGTERM, s_signal, &process);
    evloop_signal (process.loop, SIGINT, s_signal, &process);
    zsys_init ();

    process.gateway = gateway_new (config, process.loop, error, sizeof error);
    if (!process.gateway) {
        fprintf (stderr, "jobgate-gateway: %s\n", error);
        service_destroy (&process.service);
        evloop_destroy (&process.loop);
        config_destroy (&config);
        zsys_shutdown ();
        return 1;
    }
    service_ready (process.service);
    int rc = evloop_run (process.loop);
    evloop_timer_cancel (process.loop, &process.drain_timer);
    gateway_destroy (&process.gateway);
    service_destroy (&process.service);
    evloop_destroy (&process.loop);
    config_destroy (&config);
    zsys_shutdown ();
    log_info (NULL, "stopped");
    return rc == 0 ? 0 : 1;
}
