// log — one line per event on stderr: time, level, process, job id, message.
#ifndef JOBGATE_LOG_H
#define JOBGATE_LOG_H

typedef enum { LOG_DEBUG_, LOG_INFO_, LOG_WARN_, LOG_ERROR_ } log_level_t;

// log_init names the process in every line and sets the lowest level shown.
void log_init (const char *process, log_level_t min_level);

// log_line writes one event; job_id may be NULL. Errors carry file:line.
void log_line (log_level_t level, const char *file, int line,
               const char *job_id, const char *fmt, ...)
    __attribute__ ((format (printf, 5, 6)));

#define log_debug(job, ...) log_line (LOG_DEBUG_, __FILE__, __LINE__, job, __VA_ARGS__)
#define log_info(job, ...)  log_line (LOG_INFO_, __FILE__, __LINE__, job, __VA_ARGS__)
#define log_warn(job, ...)  log_line (LOG_WARN_, __FILE__, __LINE__, job, __VA_ARGS__)
#define log_error(job, ...) log_line (LOG_ERROR_, __FILE__, __LINE__, job, __VA_ARGS__)

// log_level_parse maps "debug" / "info" / "warn" / "error" to a level; -1 if unknown.
int log_level_parse (const char *name);

#endif
