// clock — wall and monotonic time in milliseconds, RFC 3339 formatting, ids.
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
clock_mono_us (void)
{
    struct timespec ts;
    clock_gettime (CLOCK_MONOTONIC, &ts);
    return (int64_t) ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

int64_t
clock_mono_ms (void)
{
    return clock_mono_us () / 1000;
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

// job_id_generate makes a UUIDv7 (RFC 9562 §5.7): 48 bits of Unix time in
// ms, then random bits. Time order matters for the store: the job and
// active-index B-trees are keyed by id, and with random (v4) ids every
// insert of a group commit dirtied its own 4 KiB leaf page — the commit
// wrote and synced roughly a page per job. Ordered ids append to the same
// few right-hand pages. libuuid in Debian 12 (2.38) has no v7 generator
// (uuid_generate_time_v7 came in 2.41), so its random UUID gets the time
// and version fields RFC 9562 defines; the variant bits are already 10.
void
job_id_generate (char *buf)
{
    uuid_t uu;
    uuid_generate_random (uu);
    uint64_t ms = (uint64_t) clock_wall_ms ();
    for (int i = 5; i >= 0; i--) {
        uu[i] = (unsigned char) ms;
        ms >>= 8;
    }
    uu[6] = (unsigned char) ((uu[6] & 0x0F) | 0x70);
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
