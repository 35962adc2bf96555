// service — the conventions of a system service that every jobgate process
// keeps (issue 13, "Daemon conventions"; docs/deploy.md, "Running as a
// service"). One per process, on its event loop; it owns the watchdog
// timer and the SIGHUP route, and borrows the running configuration.
//
// * systemd's notification protocol (libsystemd's sd_notify, for
//   Type=notify units): READY=1 once the process serves, STOPPING=1 when
//   it starts to stop, RELOADING=1 … READY=1 around a reload, and
//   WATCHDOG=1 every half of WATCHDOG_USEC (WatchdogSec=) from a timer of
//   the event loop itself: a loop that hangs stops the pings and systemd
//   restarts the process. Without NOTIFY_SOCKET (not under systemd) every
//   notification is a no-op. A notification is one datagram to systemd,
//   which reads its socket at once (a receiver that stopped reading would
//   block the send: the tests read theirs from a thread for that reason).
// * SIGHUP: the configuration file is read again. When it loads, passes
//   the process's own check and changes only keys a running process may
//   change (config_reloadable: API keys, quotas, provider limits, log), the
//   new values are moved into the running configuration in place, the log
//   is reopened (log.file, for logrotate) and the process's reloaded hook
//   refreshes what it derived from them. Otherwise the reload is refused
//   with one log line saying why, and the running configuration is kept
//   whole. A SIGHUP never stops the process.
#ifndef JOBGATE_SERVICE_H
#define JOBGATE_SERVICE_H

#include "cli.h"
#include "config.h"
#include "evloop.h"

#include <stdbool.h>

typedef struct _service_t service_t;

// Called after a reload was applied: the process refreshes what it derived
// from the reloadable keys (rate buckets, quota pointers).
typedef void (service_reloaded_fn) (void *arg);

// service_new routes SIGHUP to a reload of config from config_path (may be
// NULL: defaults only, nothing to reread) for the process named process,
// with check (may be NULL) as the process's own test of a configuration.
// SIGHUP must be blocked already (cli_start does). This function can't
// fail (out of memory aborts); a signal route that cannot be made is
// logged and SIGHUP stays blocked (ignored).
service_t *service_new (evloop_t *loop, config_t *config, const char *config_path,
                        const char *process, cli_check_fn *check);

// service_on_reload sets the hook run after each applied reload.
void service_on_reload (service_t *self, service_reloaded_fn *fn, void *arg);

// service_ready tells systemd the process serves (READY=1) and starts the
// watchdog pings when the unit asked for them.
void service_ready (service_t *self);

// service_stopping tells systemd the process is stopping (STOPPING=1):
// TimeoutStopSec= now bounds the drain. The watchdog pings go on while the
// loop runs. Idempotent.
void service_stopping (service_t *self);

// service_reload does what SIGHUP does. Returns 0 when the new
// configuration was applied, -1 when it was refused (logged).
int service_reload (service_t *self);

// service_destroy stops the watchdog pings and frees the service; nulls
// *self_p.
void service_destroy (service_t **self_p);

// service_test runs the self-test.
void service_test (bool verbose);

#endif
