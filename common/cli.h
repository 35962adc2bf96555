// cli — the start-up every jobgate binary shares: the memory policy
// installed (common/mem.h), stop and reload signals blocked, the options
// (--config FILE, --check-config, --version, --help), the configuration
// loaded and checked, logging set, file-descriptor limit raised, czmq's own
// signal handling turned off.
#ifndef JOBGATE_CLI_H
#define JOBGATE_CLI_H

#include "config.h"

// cli_check_fn tests what only one process knows about a configuration
// (the gateway its listen address and open mode, the worker its providers'
// secrets, which it reads into config). Run at start, by --check-config and
// on every reload (common/service.h). Returns 0, or -1 with one line in
// error.
typedef int (cli_check_fn) (config_t *config, char *error, size_t error_size);

// cli_start does the above for the binary named process ("broker", …) with
// the given usage text and check (may be NULL). Returns the configuration
// (the caller destroys it), or NULL when the process must exit now with
// *exit_code: 0 after --help, --version or a --check-config that passed
// (its one-line verdict on stdout), 1 on a bad configuration (one line on
// stderr, naming the file and the first problem), 2 on bad usage.
config_t *cli_start (int argc, char **argv, const char *process, const char *usage,
                     cli_check_fn *check, int *exit_code);

// cli_config_path returns the --config FILE of the last cli_start, or NULL
// (defaults only). Borrowed from argv.
const char *cli_config_path (void);

#endif
