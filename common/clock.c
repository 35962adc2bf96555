#include "clock.h"

#include <stdio.h>
#include <string.h>
#include <time.h>
#include <uuid/uuid.h>

int64_t
clock_wall_ms (void)
{
    struct timespec ts;
    clock_gettime (CLOCK_REALTIME, &ts);
    return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t
clock_mono_ms (void)
{
    struct timespec ts;
    clock_gettime (CLOCK_MONOTONIC, &ts);
    return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void
clock_rfc3339 (int64_t wall_ms, char *buf, size_t size)
{
    time_t secs = (time_t) (wall_ms / 1000);
    struct tm tm;
    gmtime_r (&secs, &tm);
    char stamp[24];
    strftime (stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf (buf, size, "%s.%03dZ", stamp, (int) (wall_ms % 1000));
}

void
job_id_generate (char *buf)
{
    uuid_t uu;
    uuid_generate_random (uu);
    uuid_unparse_lower (uu, buf);
}

int
job_id_valid (const char *s, size_t len)
{
    if (len != JOB_ID_LEN)
        return 0;
    char copy[JOB_ID_LEN + 1];
    memcpy (copy, s, JOB_ID_LEN);
    copy[JOB_ID_LEN] = '\0';
    uuid_t uu;
    return uuid_parse (copy, uu) == 0;
}

int
job_id_copy (char *dst, const char *src, size_t len)
{
    if (!job_id_valid (src, len))
        return 0;
    for (size_t i = 0; i < JOB_ID_LEN; i++)
        dst[i] = (char) (src[i] >= 'A' && src[i] <= 'F' ? src[i] - 'A' + 'a' : src[i]);
    dst[JOB_ID_LEN] = '\0';
    return 1;
}
