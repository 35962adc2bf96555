// cli — the start-up every jobgate binary shares.
#include "cli.h"
#include "log.h"
#include "mem.h"

#include <czmq.h>
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>

config_t *
cli_start (int argc, char **argv, const char *process, const char *usage, int *exit_code)
{
    // The memory policy holds in the libraries before they allocate.
    mem_init ();
    // Block the stop signals first: one arriving during start-up then waits
    // for the loop's signalfd instead of killing the process, and every
    // thread created later (ZeroMQ's) inherits the mask.
    sigset_t stop_signals;
    sigemptyset (&stop_signals);
    sigaddset (&stop_signals, SIGTERM);
    sigaddset (&stop_signals, SIGINT);
    sigprocmask (SIG_BLOCK, &stop_signals, NULL);
    signal (SIGPIPE, SIG_IGN);

    const char *config_path = NULL;
    static struct option options[] = { { "config", required_argument, NULL, 'c' },
                                       { "help", no_argument, NULL, 'h' },
                                       { "config-reference", no_argument, NULL, 'r' },
                                       { NULL, 0, NULL, 0 } };
    int option;
    optind = 1;
    while ((option = getopt_long (argc, argv, "c:h", options, NULL)) != -1) {
        if (option == 'c')
            config_path = optarg;
        else if (option == 'r') {
            // The reference of every key, as docs/config.md holds it.
            config_reference (stdout);
            *exit_code = 0;
            return NULL;
        }
        else if (option == 'h') {
            fputs (usage, stdout);
            *exit_code = 0;
            return NULL;
        }
        else {
            fputs (usage, stderr);
            *exit_code = 2;
            return NULL;
        }
    }
    if (optind < argc) {
        fprintf (stderr, "jobgate-%s: unexpected argument \"%s\"\n", process, argv[optind]);
        *exit_code = 2;
        return NULL;
    }
    char error[512];
    config_t *config = config_load (config_path, error, sizeof error);
    if (!config) {
        fprintf (stderr, "jobgate-%s: %s\n", process, error);
        *exit_code = 1;
        return NULL;
    }
    log_init (process, (log_level_t) config->log_level);
    log_set_json (config->log_json);

    // Connections, upstream calls and parked requests are file descriptors.
    struct rlimit limit;
    if (getrlimit (RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur < limit.rlim_max) {
        limit.rlim_cur = limit.rlim_max;
        if (setrlimit (RLIMIT_NOFILE, &limit) < 0)
            log_warn (NULL, "cannot raise RLIMIT_NOFILE: %s", strerror (errno));
    }
    // STYLE: own the signals; czmq must not install its handler.
    zsys_handler_set (NULL);
    *exit_code = 0;
    return config;
}
