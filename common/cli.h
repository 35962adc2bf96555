// cli — the start-up every jobgate binary shares: the memory policy
// installed (common/mem.h), stop signals blocked, --config FILE and --help,
// the configuration loaded, logging set, file-descriptor limit raised,
// czmq's own signal handling turned off.
#ifndef JOBGATE_CLI_H
#define JOBGATE_CLI_H

#include "config.h"

// cli_start does the above for the binary named process ("broker", …) with
// the given usage text. Returns the configuration (the caller destroys it),
// or NULL when the process must exit now with *exit_code: 0 after --help,
// 1 on a bad configuration (one line on stderr), 2 on bad usage.
config_t *cli_start (int argc, char **argv, const char *process, const char *usage,
                     int *exit_code);

#endif
