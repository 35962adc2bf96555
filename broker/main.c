// jobgate-broker — the durable queue between gateways and workers.
#include "broker.h"
#include "cli.h"
#include "curve.h"
#include "log.h"
#include "service.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *s_usage =
    "usage: jobgate-broker [--config FILE] [--check-config] [--version]\n"
    "                      [--config-reference] [--help]\n"
    "       jobgate-broker --gen-keypair\n"
    "\n"
    "Owns the durable job store (LMDB), queues jobs by priority, dispatches\n"
    "them to workers with credit-based flow control, retries failures with\n"
    "backoff and publishes job events. Reads the \"broker\" section of the\n"
    "config: frontend, backend, publisher, data_dir, durability (fsync|os),\n"
    "result_ttl_s, max_queued. Environment JOBGATE_BROKER_<KEY> overrides.\n"
    "SIGTERM or SIGINT: commit, answer what is pending, exit. SIGHUP: reread\n"
    "the file, apply quotas, provider limits and log settings (docs/config.md),\n"
    "reopen log.file. --check-config: test the file, one line, exit 0 or 1.\n"
    "\n"
    "--gen-keypair prints a new CURVE key pair, {\"public_key\",\"secret_key\"}\n"
    "(Z85), for security.curve of a broker, gateway or worker.\n";

static void
s_stop (evloop_t *loop, void *arg)
{
    log_info (NULL, "signal received; stopping");
    service_stopping (arg);
    evloop_stop (loop);
}

static void
s_reloaded (void *arg)
{
    broker_config_changed (arg);
}

int
main (int argc, char **argv)
{
    // A key pair for security.curve (SPEC §6), before any configuration.
    if (argc == 2 && strcmp (argv[1], "--gen-keypair") == 0) {
        if (curve_print_keypair (stdout) < 0) {
            fprintf (stderr, "jobgate-broker: cannot make a key pair (libzmq without CURVE?)\n");
            return 1;
        }
        return 0;
    }
    int exit_code;
    config_t *config = cli_start (argc, argv, "broker", s_usage, NULL, &exit_code);
    if (!config)
        return exit_code;
    char error[512];

    evloop_t *loop = evloop_new ();
    service_t *service = service_new (loop, config, cli_config_path (), "broker", NULL);
    evloop_signal (loop, SIGTERM, s_stop, service);
    evloop_signal (loop, SIGINT, s_stop, service);
    zsys_init ();

    broker_t *broker = broker_new (config, loop, error, sizeof error);
    if (!broker) {
        fprintf (stderr, "jobgate-broker: %s\n", error);
        service_destroy (&service);
        evloop_destroy (&loop);
        config_destroy (&config);
        zsys_shutdown ();
        return 1;
    }
    service_on_reload (service, s_reloaded, broker);
    service_ready (service);
    int rc = evloop_run (loop);
    broker_destroy (&broker);
    service_destroy (&service);
    evloop_destroy (&loop);
    config_destroy (&config);
    zsys_shutdown ();
    log_info (NULL, "stopped");
    return rc == 0 ? 0 : 1;
}
