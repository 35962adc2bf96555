// log — one line per event on stderr: time, level, process, job id, message.
//
// Every line is exactly one line whatever the message holds: user- and
// upstream-supplied text reaches log lines (search parameters, URLs, error
// texts), so control characters, C1 controls and bytes that are not UTF-8
// are written as \xNN escapes — a value can neither forge a line nor send a
// terminal an escape sequence. With the JSON format each line is one JSON
// object (ts, level, process, pid, job, msg, src) for log shippers.
#ifndef JOBGATE_LOG_H
#define JOBGATE_LOG_H

#include <stdbool.h>
#include <stddef.h>

typedef enum { LOG_DEBUG_, LOG_INFO_, LOG_WARN_, LOG_ERROR_ } log_level_t;

// log_init names the process in every line and sets the lowest level shown.
void log_init (const char *process, log_level_t min_level);

// log_set_json switches between the text format (false, the default) and
// one JSON object per line (true).
void log_set_json (bool json);

// log_open sends every line (and whatever else the process writes to
// stderr) to path, appended, the file created 0640 when missing; "" or NULL
// sends them back to the stderr the process started with. Called at start
// and on SIGHUP: after logrotate moved the file away, opening the same path
// starts a new one. Returns 0, or -1 with one line in error (and the lines
// keep going where they went).
int log_open (const char *path, char *error, size_t error_size);

// log_check tests that log_open could open path (--check-config), creating
// the file as log_open would, and redirecting nothing. Returns 0, or -1
// with one line in error.
int log_check (const char *path, char *error, size_t error_size);

// log_line writes one event; job_id may be NULL. Errors carry file:line.
void log_line (log_level_t level, const char *file, int line,
               const char *job_id, const char *fmt, ...)
    __attribute__ ((format (printf, 5, 6)));

#define log_debug(job, ...) log_line (LOG_DEBUG_, __FILE__, __LINE__, job, __VA_ARGS__)
#define log_info(job, ...)  log_line (LOG_INFO_, __FILE__, __LINE__, job, __VA_ARGS__)
#define log_warn(job, ...)  log_line (LOG_WARN_, __FILE__, __LINE__, job, __VA_ARGS__)
#define log_error(job, ...) log_line (LOG_ERROR_, __FILE__, __LINE__, job, __VA_ARGS__)

// log_escape copies text (len bytes) into out (out_size bytes, NUL-terminated,
// truncated to fit) with control characters (C0, DEL, C1) and bytes that are
// not well-formed UTF-8 written as \xNN, and backslashes as \\, so the copy
// is printable, single-line UTF-8 that can be read back unambiguously.
// Returns the length written. This function can't fail.
size_t log_escape (const char *text, size_t len, char *out, size_t out_size);

// log_test runs the self-test.
void log_test (bool verbose);

#endif
