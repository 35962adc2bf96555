// clock — wall and monotonic time in milliseconds, RFC 3339 formatting, ids.
#ifndef JOBGATE_CLOCK_H
#define JOBGATE_CLOCK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

// clock_wall_ms returns milliseconds since the Unix epoch.
int64_t clock_wall_ms (void);

// clock_mono_ms returns a monotonic millisecond counter (for timeouts).
int64_t clock_mono_ms (void);

// clock_mono_us returns the same counter in microseconds.
int64_t clock_mono_us (void);

// clock_rfc3339 writes wall time ms as "2026-11-26T20:02:45.123Z" into buf
// (at least 32 bytes). This function can't fail.
void clock_rfc3339 (int64_t wall_ms, char *buf, size_t size);

// clock_rfc3339_parse reads an RFC 3339 date-time ("2026-11-26T20:02:45Z",
// "2026-11-26t20:02:45.5+01:00", a space for the T) of len bytes into
// wall ms (a fraction beyond ms is cut). Returns 0, or -1 when text is not
// one, is before 1970 or after 9999.
int clock_rfc3339_parse (const char *text, size_t len, int64_t *wall_ms);

// clock_test runs the self-test.
void clock_test (bool verbose);

// JOB_ID_LEN is the length of a job id string, without its NUL.
#define JOB_ID_LEN 36

// job_id_generate writes a new time-ordered UUID (RFC 9562 version 7) into buf
// (at least JOB_ID_LEN + 1 bytes).
void job_id_generate (char *buf);

// job_id_valid returns true when s (of length len) is a well-formed job id.
// Anything else (overlong, traversal-looking, non-hex) is rejected.
int job_id_valid (const char *s, size_t len);

// job_id_copy checks src (len bytes) like job_id_valid and, when valid,
// writes it lower-cased and NUL-terminated into dst (JOB_ID_LEN + 1 bytes).
// Returns 1 when copied, 0 when src is not a job id.
int job_id_copy (char *dst, const char *src, size_t len);

#endif
