// service — the conventions of a system service (sd_notify, watchdog,
// SIGHUP reload).
#include "service.h"
#include "log.h"
#include "mem.h"

#include <assert.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

struct _service_t {
    evloop_t *loop;                 // the process's loop
    config_t *config;               // borrowed: the running configuration
    char *config_path;              // the file reread on SIGHUP, or NULL
    const char *process;            // "broker", …: names the process in log lines
    cli_check_fn *check;            // the process's own test of a configuration, or NULL
    service_reloaded_fn *reloaded;  // run after an applied reload, or NULL
    void *reloaded_arg;             // its argument
    evloop_timer_t *watchdog;       // repeating WATCHDOG=1, or NULL
    bool stopping;                  // STOPPING=1 sent
};

// s_notify sends state to systemd when NOTIFY_SOCKET names its socket; a
// failure is logged once, never fatal (the service still serves).
static void
s_notify (const char *state)
{
    static bool failure_logged;
    int rc = sd_notify (0, state);
    if (rc < 0 && !failure_logged) {
        failure_logged = true;
        log_warn (NULL, "sd_notify: %s", strerror (-rc));
    }
}

static void
s_watchdog_ping (evloop_t *loop, void *arg)
{
    s_notify ("WATCHDOG=1");
}

static void
s_on_sighup (evloop_t *loop, void *arg)
{
    service_reload (arg);
}

service_t *
service_new (evloop_t *loop, config_t *config, const char *config_path, const char *process,
             cli_check_fn *check)
{
    service_t *self = mem_calloc (1, sizeof *self);
    self->loop = loop;
    self->config = config;
    self->config_path = config_path ? mem_strdup (config_path) : NULL;
    self->process = process;
    self->check = check;
    if (evloop_signal (loop, SIGHUP, s_on_sighup, self) < 0)
        log_error (NULL, "cannot route SIGHUP (%s): reloads are off, SIGHUP is ignored",
                   strerror (errno));
    return self;
}

void
service_on_reload (service_t *self, service_reloaded_fn *fn, void *arg)
{
    self->reloaded = fn;
    self->reloaded_arg = arg;
}

void
service_ready (service_t *self)
{
    s_notify ("READY=1\nSTATUS=serving");
    uint64_t usec = 0;
    // > 0: the unit set WatchdogSec= (and WATCHDOG_PID, when set, is ours).
    if (!self->watchdog && sd_watchdog_enabled (0, &usec) > 0 && usec > 0) {
        // Half the interval, as sd_watchdog_enabled(3) advises: one late
        // loop iteration is not a missed ping.
        int64_t period_ms = (int64_t) (usec / 2000);
        self->watchdog = evloop_timer_every (self->loop, period_ms > 0 ? period_ms : 1,
                                             s_watchdog_ping, self);
        s_notify ("WATCHDOG=1");
        log_info (NULL, "systemd watchdog: a ping every %lld ms", (long long) period_ms);
    }
}

void
service_stopping (service_t *self)
{
    if (self->stopping)
        return;
    self->stopping = true;
    s_notify ("STOPPING=1\nSTATUS=stopping");
}

// s_refuse logs why a reload was refused and tells systemd the process
// serves on, unchanged.
static int
s_refuse (service_t *self, const char *reason)
{
    log_error (NULL, "reload refused, the running configuration is kept: %s", reason);
    s_notify ("READY=1\nSTATUS=serving (the last reload was refused)");
    return -1;
}

int
service_reload (service_t *self)
{
    if (self->stopping)
        return s_refuse (self, "the process is stopping");
    // MONOTONIC_USEC: what systemd 253's Type=notify-reload also asks for.
    struct timespec now;
    clock_gettime (CLOCK_MONOTONIC, &now);
    char reloading[96];
    snprintf (reloading, sizeof reloading, "RELOADING=1\nSTATUS=reloading\nMONOTONIC_USEC=%llu",
              (unsigned long long) now.tv_sec * 1000000ULL + (unsigned long long) now.tv_nsec / 1000);
    s_notify (reloading);
    char error[512];
    if (!self->config_path)
        return s_refuse (self, "no --config file to read again");
    config_t *fresh = config_load (self->config_path, error, sizeof error);
    if (!fresh)
        return s_refuse (self, error);
    if (self->check && self->check (fresh, error, sizeof error) < 0) {
        config_destroy (&fresh);
        return s_refuse (self, error);
    }
    // The log file first: once it is open, what remains cannot fail but
    // by a fixed key, and then the old file is opened again.
    if (log_open (fresh->log_file, error, sizeof error) < 0) {
        config_destroy (&fresh);
        return s_refuse (self, error);
    }
    if (config_reload (self->config, fresh, error, sizeof error) < 0) {
        char reopen_error[256];
        if (log_open (self->config->log_file, reopen_error, sizeof reopen_error) < 0)
            log_error (NULL, "%s", reopen_error);
        config_destroy (&fresh);
        return s_refuse (self, error);
    }
    log_init (self->process, (log_level_t) self->config->log_level);
    log_set_json (self->config->log_json);
    if (self->reloaded)
        self->reloaded (self->reloaded_arg);
    // Only now: the hook may still read the values replaced.
    config_destroy (&fresh);
    log_info (NULL, "configuration reloaded from %s", self->config_path);
    s_notify ("READY=1\nSTATUS=serving");
    return 0;
}

void
service_destroy (service_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    service_t *self = *self_p;
    evloop_timer_cancel (self->loop, &self->watchdog);
    free (self->config_path);
    free (self);
    *self_p = NULL;
}

// --- self-test ---

// s_test_write writes text to path.
static void
s_test_write (const char *path, const char *text)
{
    FILE *file = fopen (path, "w");
    assert (file);
    fputs (text, file);
    fclose (file);
}

// s_test_next reads the next notification systemd would receive (waiting
// for it on loop at most about two seconds); "" when none came.
static const char *
s_test_next (evloop_t *loop, int fd, char *buf, size_t size)
{
    for (int tries = 0; tries < 200; tries++) {
        ssize_t got = recv (fd, buf, size - 1, MSG_DONTWAIT);
        if (got >= 0) {
            buf[got] = '\0';
            return buf;
        }
        evloop_run_for (loop, 10);
    }
    buf[0] = '\0';
    return buf;
}

static int s_test_checks;           // calls of s_test_check
static int s_test_reloads;          // calls of s_test_reloaded

// s_test_check plays a process's own check: it refuses listen port 1.
static int
s_test_check (config_t *config, char *error, size_t error_size)
{
    s_test_checks++;
    if (strcmp (config->gateway_listen, "127.0.0.1:1") == 0) {
        snprintf (error, error_size, "gateway: port 1 refused by the check");
        return -1;
    }
    return 0;
}

static void
s_test_reloaded (void *arg)
{
    s_test_reloads++;
}

void
service_test (bool verbose)
{
    if (verbose)
        printf (" * service: ");
    char dir[] = "/tmp/jobgate-service-test-XXXXXX";
    assert (mkdtemp (dir));
    char socket_path[96], config_path[96], log_path[96], buf[256];
    snprintf (socket_path, sizeof socket_path, "%s/notify", dir);
    snprintf (config_path, sizeof config_path, "%s/config.json", dir);
    snprintf (log_path, sizeof log_path, "%s/service.log", dir);

    // systemd's side: a datagram socket named by NOTIFY_SOCKET.
    int notify_fd = socket (AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    assert (notify_fd >= 0);
    struct sockaddr_un address = { .sun_family = AF_UNIX };
    snprintf (address.sun_path, sizeof address.sun_path, "%s", socket_path);
    assert (bind (notify_fd, (struct sockaddr *) &address, sizeof address) == 0);
    char *saved_notify = getenv ("NOTIFY_SOCKET") ? strdup (getenv ("NOTIFY_SOCKET")) : NULL;
    setenv ("NOTIFY_SOCKET", socket_path, 1);
    setenv ("WATCHDOG_USEC", "20000", 1);
    unsetenv ("WATCHDOG_PID");

    const char *keyed = "{\"gateway\":{\"listen\":\"127.0.0.1:9\",\"api_keys\":"
                        "[{\"key\":\"k1\",\"tenant\":\"a\"}]},\"log\":{\"level\":\"warn\"}}";
    s_test_write (config_path, keyed);
    char error[256];
    config_t *config = config_load (config_path, error, sizeof error);
    assert (config);
    evloop_t *loop = evloop_new ();
    service_t *self = service_new (loop, config, config_path, "selftest", s_test_check);
    service_on_reload (self, s_test_reloaded, NULL);

    // Ready, then watchdog pings from the loop's timer.
    service_ready (self);
    assert (strcmp (s_test_next (loop, notify_fd, buf, sizeof buf),
                    "READY=1\nSTATUS=serving") == 0);
    assert (strcmp (s_test_next (loop, notify_fd, buf, sizeof buf), "WATCHDOG=1") == 0);
    assert (strcmp (s_test_next (loop, notify_fd, buf, sizeof buf), "WATCHDOG=1") == 0);
    assert (self->watchdog);

    // Stderr goes to a pipe while reloads log (and log_open may move it).
    int saved_stderr = dup (STDERR_FILENO);
    assert (saved_stderr >= 0);

    // An applied reload: the key changes, the log file opens, the hook runs.
    char text[512];
    snprintf (text, sizeof text,
              "{\"gateway\":{\"listen\":\"127.0.0.1:9\",\"api_keys\":"
              "[{\"key\":\"k2\",\"tenant\":\"b\"}]},\"log\":{\"level\":\"info\",\"file\":\"%s\"}}",
              log_path);
    s_test_write (config_path, text);
    assert (service_reload (self) == 0);
    assert (s_test_reloads == 1 && s_test_checks == 1);
    assert (truncate (log_path, 0) == 0);
    assert (config_tenant_for_key (config, "k2", 2) && !config_tenant_for_key (config, "k1", 2));
    assert (config->log_level == LOG_INFO_ && strcmp (config->log_file, log_path) == 0);
    // RELOADING=1, then READY=1 (the pings may come between).
    bool reloading = false, ready = false;
    for (int i = 0; i < 20 && !ready; i++) {
        s_test_next (loop, notify_fd, buf, sizeof buf);
        reloading = reloading || (strncmp (buf, "RELOADING=1", 11) == 0
                                  && strstr (buf, "\nMONOTONIC_USEC="));
        ready = reloading && strncmp (buf, "READY=1", 7) == 0;
    }
    assert (ready);

    // Refused: a bad file, the process's check, a fixed key. Nothing
    // changes and the process serves on.
    const char *refused[][2] = {
        { "{\"gateway\":{\"listen\":", "reload refused, the running configuration is kept: config: " },
        { "{\"gateway\":{\"listen\":\"127.0.0.1:1\",\"api_keys\":[{\"key\":\"k3\",\"tenant\":\"c\"}]}}",
          "reload refused, the running configuration is kept: gateway: port 1 refused by the check" },
        { "{\"gateway\":{\"listen\":\"127.0.0.1:8\",\"api_keys\":[{\"key\":\"k3\",\"tenant\":\"c\"}]}}",
          "reload refused, the running configuration is kept: config: gateway.listen changed" },
        { "{\"gateway\":{\"listen\":\"127.0.0.1:9\",\"api_keys\":[{\"key\":\"k3\",\"tenant\":\"c\"}]},"
          "\"log\":{\"file\":\"/nonexistent-dir/x.log\"}}",
          "reload refused, the running configuration is kept: log.file: cannot open" },
    };
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) {
        s_test_write (config_path, refused[i][0]);
        assert (service_reload (self) == -1);
        assert (config_tenant_for_key (config, "k2", 2) && !config_tenant_for_key (config, "k3", 2));
        assert (strcmp (config->log_file, log_path) == 0);
        char logged[4096];
        FILE *file = fopen (log_path, "r");
        assert (file);
        size_t got = fread (logged, 1, sizeof logged - 1, file);
        fclose (file);
        logged[got] = '\0';
        if (!strstr (logged, refused[i][1]))
            fprintf (stderr, "service: case %zu logged [%s]\n", i, logged);
        assert (strstr (logged, refused[i][1]) && !strstr (logged, "configuration reloaded"));
        // Each case reads only its own lines (the file is appended to).
        assert (truncate (log_path, 0) == 0);
    }
    assert (s_test_reloads == 1);

    // Stopping: STOPPING=1 once; a reload now is refused.
    service_stopping (self);
    service_stopping (self);
    bool stopping = false;
    for (int i = 0; i < 20 && !stopping; i++)
        stopping = strncmp (s_test_next (loop, notify_fd, buf, sizeof buf), "STOPPING=1", 10) == 0;
    assert (stopping);
    s_test_write (config_path, keyed);
    assert (service_reload (self) == -1 && s_test_reloads == 1);

    assert (dup2 (saved_stderr, STDERR_FILENO) >= 0);
    close (saved_stderr);
    log_open ("", error, sizeof error);
    log_init ("selftest", LOG_INFO_);
    service_destroy (&self);
    service_destroy (&self);
    evloop_destroy (&loop);
    config_destroy (&config);

    // Not under systemd: notifications are no-ops, and no watchdog.
    unsetenv ("NOTIFY_SOCKET");
    unsetenv ("WATCHDOG_USEC");
    loop = evloop_new ();
    self = service_new (loop, NULL, NULL, "selftest", NULL);
    service_ready (self);
    assert (!self->watchdog);
    service_destroy (&self);
    evloop_destroy (&loop);
    if (saved_notify)
        setenv ("NOTIFY_SOCKET", saved_notify, 1);
    free (saved_notify);

    close (notify_fd);
    unlink (socket_path);
    unlink (config_path);
    unlink (log_path);
    rmdir (dir);
    if (verbose)
        printf ("OK\n");
}
