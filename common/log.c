// log — one line per event on stderr.
#include "log.h"
#include "utf8.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static const char *s_process = "jobgate";
static log_level_t s_min_level = LOG_INFO_;
static int s_pid;                   // getpid () is a system call each time
static bool s_json;                 // one JSON object per line

// The longest message kept; longer ones are cut (a log is not a dump).
#define LOG_MESSAGE_MAX 1536

void
log_init (const char *process, log_level_t min_level)
{
    s_process = process;
    s_min_level = min_level;
    s_pid = (int) getpid ();
}

void
log_set_json (bool json)
{
    s_json = json;
}

// s_open_file opens path as the log: appended, created 0640 when missing.
// Returns the fd, or -1 with one line in error.
static int
s_open_file (const char *path, char *error, size_t error_size)
{
    int fd = open (path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOCTTY, 0640);
    if (fd < 0)
        snprintf (error, error_size, "log.file: cannot open %s: %s", path, strerror (errno));
    return fd;
}

int
log_check (const char *path, char *error, size_t error_size)
{
    if (!path || !*path)
        return 0;
    int fd = s_open_file (path, error, error_size);
    if (fd < 0)
        return -1;
    close (fd);
    return 0;
}

int
log_open (const char *path, char *error, size_t error_size)
{
    // The stderr the process started with (a terminal, the journal's
    // stream), kept to return to when the file is unset again.
    static int original_stderr = -1;
    if (original_stderr < 0)
        original_stderr = fcntl (STDERR_FILENO, F_DUPFD_CLOEXEC, 3);
    int fd = original_stderr;
    if (path && *path) {
        fd = s_open_file (path, error, error_size);
        if (fd < 0)
            return -1;
    }
    int rc = fd >= 0 ? dup2 (fd, STDERR_FILENO) : 0;
    int saved_errno = errno;
    if (fd != original_stderr)
        close (fd);
    if (rc < 0) {
        snprintf (error, error_size, "log.file: cannot redirect stderr to %s: %s",
                  path && *path ? path : "the original stderr", strerror (saved_errno));
        return -1;
    }
    return 0;
}

// s_printable_length returns the length of the well-formed UTF-8 sequence
// at bytes (at most left bytes) when it may be written as it is, or 0: not
// UTF-8 (common/utf8.h), or a C1 control (U+0080..U+009F, escapes on some
// terminals).
static size_t
s_printable_length (const unsigned char *bytes, size_t left)
{
    size_t step = utf8_sequence (bytes, left);
    return step == 2 && bytes[0] == 0xC2 && bytes[1] < 0xA0 ? 0 : step;
}

size_t
log_escape (const char *text, size_t len, char *out, size_t out_size)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *bytes = (const unsigned char *) text;
    size_t used = 0;
    if (out_size == 0)
        return 0;
    for (size_t i = 0; i < len;) {
        size_t step = s_printable_length (bytes + i, len - i);
        bool plain = step > 1 || (step == 1 && bytes[i] >= 0x20 && bytes[i] != 0x7F
                                  && bytes[i] != '\\');
        if (plain) {
            if (used + step >= out_size)
                break;
            memcpy (out + used, bytes + i, step);
            used += step;
            i += step;
            continue;
        }
        // One byte escaped; a broken sequence is escaped byte by byte.
        const char *escaped = NULL;
        char code[5];
        if (bytes[i] == '\\')
            escaped = "\\\\";
        else {
            code[0] = '\\';
            code[1] = 'x';
            code[2] = hex[bytes[i] >> 4];
            code[3] = hex[bytes[i] & 0x0F];
            code[4] = '\0';
            escaped = code;
        }
        size_t escaped_len = strlen (escaped);
        if (used + escaped_len >= out_size)
            break;
        memcpy (out + used, escaped, escaped_len);
        used += escaped_len;
        i++;
    }
    out[used] = '\0';
    return used;
}

// s_stamp writes the time of tv as 2026-11-30T02:21:15.123Z.
static void
s_stamp (const struct timeval *tv, char *buf, size_t size)
{
    // The date and time to the second change once a second, lines far
    // more often: format them once per second (processes are single-threaded).
    static time_t stamp_sec = -1;
    static char stamp[32];
    if (tv->tv_sec != stamp_sec) {
        struct tm tm;
        gmtime_r (&tv->tv_sec, &tm);
        strftime (stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%S", &tm);
        stamp_sec = tv->tv_sec;
    }
    snprintf (buf, size, "%s.%03dZ", stamp, (int) (tv->tv_usec / 1000));
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
    char stamp[40];
    s_stamp (&tv, stamp, sizeof stamp);

    char raw[LOG_MESSAGE_MAX];
    va_list ap;
    va_start (ap, fmt);
    int raw_len = vsnprintf (raw, sizeof raw, fmt, ap);
    va_end (ap);
    if (raw_len < 0)
        return;
    if ((size_t) raw_len >= sizeof raw)
        raw_len = (int) sizeof raw - 1;
    // Escaping at most quadruples a byte.
    char message[4 * LOG_MESSAGE_MAX + 1];
    log_escape (raw, (size_t) raw_len, message, sizeof message);
    char job[48];
    log_escape (job_id ? job_id : "-", job_id ? strlen (job_id) : 1, job, sizeof job);
    const char *base = strrchr (file, '/');
    base = base ? base + 1 : file;
    int pid = s_pid ? s_pid : (int) getpid ();

    // Build the whole line first so concurrent processes sharing a terminal
    // never interleave halves of lines (one write(2) per event).
    char buf[sizeof message + 256];
    int n;
    if (s_json) {
        char src[96];
        snprintf (src, sizeof src, "%s:%d", base, line);
        json_t *object = json_pack ("{s:s, s:s, s:s, s:i, s:s?, s:s, s:s?}", "ts", stamp,
                                    "level", labels[level], "process", s_process, "pid", pid,
                                    "job", job_id ? job : NULL, "msg", message, "src",
                                    level >= LOG_WARN_ ? src : NULL);
        n = object ? (int) json_dumpb (object, buf, sizeof buf - 1, JSON_COMPACT) : 0;
        json_decref (object);
        if (n <= 0 || (size_t) n > sizeof buf - 1)
            return;
    }
    else {
        n = snprintf (buf, sizeof buf, "%s %s %s[%d] job=%s %s", stamp, labels[level],
                      s_process, pid, job, message);
        if (n < 0)
            return;
        if ((size_t) n >= sizeof buf - 64)
            n = (int) sizeof buf - 64;
        if (level >= LOG_WARN_)
            n += snprintf (buf + n, sizeof buf - (size_t) n, " (%s:%d)", base, line);
    }
    buf[n++] = '\n';
    ssize_t rc = write (STDERR_FILENO, buf, (size_t) n);
    (void) rc;
}

// s_test_read returns the text of path (at most size - 1 bytes).
static char *
s_test_read (const char *path, char *text, size_t size)
{
    int fd = open (path, O_RDONLY);
    assert (fd >= 0);
    ssize_t got = read (fd, text, size - 1);
    close (fd);
    assert (got >= 0);
    text[got] = '\0';
    return text;
}

// s_test_open covers log_open as logrotate uses it: the file moved away,
// SIGHUP, the same path opened anew; then back to the original stderr.
static void
s_test_open (void)
{
    char dir[] = "/tmp/jobgate-log-test-XXXXXX";
    assert (mkdtemp (dir));
    char path[64], moved[80], text[512];
    snprintf (path, sizeof path, "%s/jobgate.log", dir);
    snprintf (moved, sizeof moved, "%s/jobgate.log.1", dir);
    int saved = dup (STDERR_FILENO);
    assert (saved >= 0);
    char error[256];
    assert (log_open (path, error, sizeof error) == 0);
    log_line (LOG_ERROR_, __FILE__, __LINE__, NULL, "before the rotation");
    assert (rename (path, moved) == 0);
    log_line (LOG_ERROR_, __FILE__, __LINE__, NULL, "still to the moved file");
    assert (log_open (path, error, sizeof error) == 0);
    log_line (LOG_ERROR_, __FILE__, __LINE__, NULL, "after the reopen");
    // A path that cannot be opened: refused, the lines keep their file.
    assert (log_check ("/nonexistent-dir/x.log", error, sizeof error) < 0);
    assert (strstr (error, "log.file: cannot open /nonexistent-dir/x.log"));
    assert (log_check (path, error, sizeof error) == 0 && log_check ("", error, sizeof error) == 0);
    assert (log_open ("/nonexistent-dir/x.log", error, sizeof error) < 0);
    assert (strstr (error, "log.file: cannot open /nonexistent-dir/x.log") && !strchr (error, '\n'));
    log_line (LOG_ERROR_, __FILE__, __LINE__, NULL, "after the refusal");
    assert (log_open ("", error, sizeof error) == 0);
    s_test_read (moved, text, sizeof text);
    assert (strstr (text, "before the rotation") && strstr (text, "still to the moved file"));
    assert (!strstr (text, "after the reopen"));
    s_test_read (path, text, sizeof text);
    assert (strstr (text, "after the reopen") && strstr (text, "after the refusal"));
    assert (!strstr (text, "before the rotation"));
    // Back to the stderr the process started with (the same open file).
    struct stat original, now;
    assert (fstat (saved, &original) == 0 && fstat (STDERR_FILENO, &now) == 0);
    assert (original.st_ino == now.st_ino && original.st_dev == now.st_dev);
    close (saved);
    unlink (path);
    unlink (moved);
    rmdir (dir);
}

void
log_test (bool verbose)
{
    if (verbose)
        printf (" * log: ");
    static const struct {
        const char *in;         // raw text
        const char *out;        // as logged
    } cases[] = {
        { "plain text", "plain text" },
        { "forged\n2026-01-01 info x", "forged\\x0a2026-01-01 info x" },
        { "cr\rtab\tnul", "cr\\x0dtab\\x09nul" },
        { "\x1b[31mred", "\\x1b[31mred" },
        { "del\x7f", "del\\x7f" },
        { "back\\slash", "back\\\\slash" },
        { "caf\xc3\xa9 \xe2\x98\xba \xf0\x9f\x98\x80", "caf\xc3\xa9 \xe2\x98\xba \xf0\x9f\x98\x80" },
        { "c1 \xc2\x9b" "2J", "c1 \\xc2\\x9b2J" },
        { "bad \xff\xc3", "bad \\xff\\xc3" },
        { "overlong \xc0\xaf", "overlong \\xc0\\xaf" },
        { "surrogate \xed\xa0\x80", "surrogate \\xed\\xa0\\x80" },
    };
    char out[256];
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        size_t len = log_escape (cases[i].in, strlen (cases[i].in), out, sizeof out);
        if (strcmp (out, cases[i].out) != 0)
            fprintf (stderr, "log: escaped [%s], want [%s]\n", out, cases[i].out);
        assert (strcmp (out, cases[i].out) == 0 && len == strlen (out));
    }
    // An embedded NUL is a byte like any other.
    log_escape ("a\0b", 3, out, sizeof out);
    assert (strcmp (out, "a\\x00b") == 0);
    // Truncation never splits an escape or a character.
    log_escape ("\n\n\n", 3, out, 9);
    assert (strcmp (out, "\\x0a\\x0a") == 0);
    log_escape ("\xc3\xa9\xc3\xa9", 4, out, 4);
    assert (strcmp (out, "\xc3\xa9") == 0);
    assert (log_escape ("x", 1, out, 0) == 0);

    // Whole lines, in both formats: hostile values stay inside one line.
    int pipe_fds[2];
    assert (pipe (pipe_fds) == 0);
    int saved = dup (STDERR_FILENO);
    assert (saved >= 0 && dup2 (pipe_fds[1], STDERR_FILENO) >= 0);
    const char *hostile = "k\n2026-01-01T00:00:00.000Z error broker[1] job=- forged\x1b[2J\xc2\x9b";
    log_line (LOG_WARN_, __FILE__, __LINE__, "job\n1", "param %s refused", hostile);
    log_set_json (true);
    log_line (LOG_ERROR_, __FILE__, __LINE__, NULL, "param %s refused \xff", hostile);
    log_set_json (false);
    assert (dup2 (saved, STDERR_FILENO) >= 0);
    close (saved);
    close (pipe_fds[1]);
    char lines[4096];
    ssize_t got = read (pipe_fds[0], lines, sizeof lines - 1);
    close (pipe_fds[0]);
    assert (got > 0);
    lines[got] = '\0';
    char *second = strchr (lines, '\n');
    assert (second && second[1] && strchr (second + 1, '\n') == lines + got - 1);
    *second = '\0';
    for (ssize_t i = 0; i < got; i++)
        assert (lines[i] != 0x1b && (unsigned char) lines[i] != 0x9b);
    assert (strstr (lines, " warn ") && strstr (lines, "job=job\\x0a1 param k\\x0a2026"));
    json_error_t error;
    json_t *object = json_loads (second + 1, 0, &error);
    assert (object);
    assert (strcmp (json_string_value (json_object_get (object, "level")), "error") == 0);
    assert (json_is_null (json_object_get (object, "job")) || !json_object_get (object, "job"));
    assert (strstr (json_string_value (json_object_get (object, "msg")), "k\\x0a2026"));
    assert (strstr (json_string_value (json_object_get (object, "msg")), "refused \\xff"));
    assert (strstr (json_string_value (json_object_get (object, "src")), "log.c:"));
    json_decref (object);
    s_test_open ();
    if (verbose)
        printf ("OK\n");
}
