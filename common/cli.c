// cli — the start-up every jobgate binary shares.
#include "cli.h"
#include "curve.h"
#include "log.h"
#include "mem.h"
#include "version.h"

#include <czmq.h>
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>

static const char *s_config_path;   // --config FILE of the last cli_start

const char *
cli_config_path (void)
{
    return s_config_path;
}

config_t *
cli_start (int argc, char **argv, const char *process, const char *usage, cli_check_fn *check,
           int *exit_code)
{
    // The memory policy holds in the libraries before they allocate.
    mem_init ();
    // Block the stop and reload signals first: one arriving during start-up
    // then waits for the loop's signalfd instead of killing the process (a
    // SIGHUP's default action is to terminate: a reload must never stop a
    // process), and every thread created later (ZeroMQ's) inherits the mask.
    sigset_t routed_signals;
    sigemptyset (&routed_signals);
    sigaddset (&routed_signals, SIGTERM);
    sigaddset (&routed_signals, SIGINT);
    sigaddset (&routed_signals, SIGHUP);
    sigprocmask (SIG_BLOCK, &routed_signals, NULL);
    signal (SIGPIPE, SIG_IGN);

    const char *config_path = NULL;
    bool check_only = false;
    static struct option options[] = { { "config", required_argument, NULL, 'c' },
                                       { "help", no_argument, NULL, 'h' },
                                       { "version", no_argument, NULL, 'V' },
                                       { "check-config", no_argument, NULL, 't' },
                                       { "config-reference", no_argument, NULL, 'r' },
                                       { NULL, 0, NULL, 0 } };
    int option;
    optind = 1;
    while ((option = getopt_long (argc, argv, "c:htV", options, NULL)) != -1) {
        if (option == 'c')
            config_path = optarg;
        else if (option == 't')
            check_only = true;
        else if (option == 'V') {
            printf ("jobgate-%s %s (%s)\n", process, JOBGATE_VERSION, JOBGATE_REVISION);
            *exit_code = 0;
            return NULL;
        }
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
    s_config_path = config_path;
    char error[512];
    config_t *config = config_load (config_path, error, sizeof error);
    if (config && check && check (config, error, sizeof error) < 0)
        config_destroy (&config);
    // --check-config judges the CURVE keys (files read, shapes and pairs
    // checked) as curve_new will at start, which checks them itself then:
    // the broker is the server, the others its clients.
    if (config && check_only
        && curve_check (config, strcmp (process, "broker") == 0, error, sizeof error) < 0)
        config_destroy (&config);
    if (config && check_only && log_check (config->log_file, error, sizeof error) < 0)
        config_destroy (&config);
    const char *shown = config_path ? config_path : "(defaults only)";
    if (!config) {
        // Like nginx -t: the file and its first problem, on one line.
        if (check_only)
            fprintf (stderr, "jobgate-%s: configuration %s is invalid: %s\n", process, shown,
                     error);
        else
            fprintf (stderr, "jobgate-%s: %s\n", process, error);
        *exit_code = 1;
        return NULL;
    }
    if (check_only) {
        printf ("jobgate-%s: configuration %s is valid\n", process, shown);
        config_destroy (&config);
        *exit_code = 0;
        return NULL;
    }
    if (log_open (config->log_file, error, sizeof error) < 0) {
        fprintf (stderr, "jobgate-%s: %s\n", process, error);
        config_destroy (&config);
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
