#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static const char *s_process = "jobgate";
static log_level_t s_min_level = LOG_INFO_;
static int s_pid;                   // getpid () is a system call each time

void
log_init (const char *process, log_level_t min_level)
{
    s_process = process;
    s_min_level = min_level;
    s_pid = (int) getpid ();
}

int
log_level_parse (const char *name)
{
    static const char *names[] = { "debug", "info", "warn", "error" };
    for (int i = 0; i < 4; i++)
        if (strcmp (name, names[i]) == 0)
            return i;
    return -1;
}

void
log_line (log_level_t level, const char *file, int line, const char *job_id,
          const char *fmt, ...)
{
    if (level < s_min_level)
        return;
    static const char *labels[] = { "debug", "info", "warn", "error" };
    struct timeval tv;
    gettimeofday (&tv, NULL);
    // The date and time to the second change once a second, lines far
    // more often: format them once per second (processes are single-threaded).
    static time_t stamp_sec = -1;
    static char stamp[32];
    if (tv.tv_sec != stamp_sec) {
        struct tm tm;
        gmtime_r (&tv.tv_sec, &tm);
        strftime (stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%S", &tm);
        stamp_sec = tv.tv_sec;
    }

    // Build the whole line first so concurrent processes sharing a terminal
    // never interleave halves of lines (one write(2) per event).
    char buf[2048];
    int n = snprintf (buf, sizeof buf, "%s.%03dZ %s %s[%d] job=%s ", stamp,
                      (int) (tv.tv_usec / 1000), labels[level], s_process,
                      s_pid ? s_pid : (int) getpid (), job_id ? job_id : "-");
    va_list ap;
    va_start (ap, fmt);
    if (n > 0 && (size_t) n < sizeof buf)
        n += vsnprintf (buf + n, sizeof buf - (size_t) n, fmt, ap);
    va_end (ap);
    if (n < 0)
        return;
    if ((size_t) n >= sizeof buf - 64)
        n = (int) sizeof buf - 64;
    if (level >= LOG_WARN_) {
        const char *base = strrchr (file, '/');
        n += snprintf (buf + n, sizeof buf - (size_t) n, " (%s:%d)",
                       base ? base + 1 : file, line);
    }
    buf[n++] = '\n';
    ssize_t rc = write (STDERR_FILENO, buf, (size_t) n);
    (void) rc;
}
