// clock — wall and monotonic time in milliseconds, RFC 3339 formatting, ids.
#include "clock.h"

#include <assert.h>
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

// s_shaped is true when text (len bytes) starts with shape: 'd' a digit,
// 'T' one of "Tt ", 's' a sign, any other character itself.
static bool
s_shaped (const char *text, size_t len, const char *shape)
{
    for (size_t at = 0; shape[at]; at++) {
        char c = at < len ? text[at] : '\0';
        bool ok = shape[at] == 'd' ? c >= '0' && c <= '9'
                : shape[at] == 'T' ? c && strchr ("Tt ", c)
                : shape[at] == 's' ? c == '+' || c == '-'
                : c == shape[at];
        if (!ok)
            return false;
    }
    return true;
}

// s_number reads the count digits at text (checked by s_shaped).
static int
s_number (const char *text, int count)
{
    int value = 0;
    for (int i = 0; i < count; i++)
        value = value * 10 + text[i] - '0';
    return value;
}

int
clock_rfc3339_parse (const char *text, size_t len, int64_t *wall_ms)
{
    // The layout is checked by shape; the calendar is libc's (timegm).
    static const char date_time[] = "dddd-dd-ddTdd:dd:dd";
    if (!s_shaped (text, len, date_time))
        return -1;
    struct tm tm = { .tm_year = s_number (text, 4) - 1900, .tm_mon = s_number (text + 5, 2) - 1,
                     .tm_mday = s_number (text + 8, 2), .tm_hour = s_number (text + 11, 2),
                     .tm_min = s_number (text + 14, 2), .tm_sec = s_number (text + 17, 2) };
    size_t at = sizeof date_time - 1;
    int ms = 0;
    if (at < len && text[at] == '.') {
        size_t first = ++at;
        for (int scale = 100; at < len && text[at] >= '0' && text[at] <= '9'; at++, scale /= 10)
            ms += (text[at] - '0') * scale;
        if (at == first)
            return -1;
    }
    int offset_minutes = 0;
    if (at < len && (text[at] == 'Z' || text[at] == 'z'))
        at++;
    else if (s_shaped (text + at, len - at, "sdd:dd")) {
        int hours = s_number (text + at + 1, 2);
        int minutes = s_number (text + at + 4, 2);
        if (hours > 23 || minutes > 59)
            return -1;
        offset_minutes = (text[at] == '-' ? -1 : 1) * (hours * 60 + minutes);
        at += 6;
    }
    else
        return -1;
    if (at != len)
        return -1;
    // 60: a leap second, read as the next second.
    int leap_second = tm.tm_sec == 60;
    tm.tm_sec -= leap_second;
    struct tm asked = tm;
    int64_t seconds = (int64_t) timegm (&tm);
    // timegm normalises what is out of range (month 13, February 30, hour
    // 24): such a date-time is not one.
    if (tm.tm_year != asked.tm_year || tm.tm_mon != asked.tm_mon || tm.tm_mday != asked.tm_mday
        || tm.tm_hour != asked.tm_hour || tm.tm_min != asked.tm_min || tm.tm_sec != asked.tm_sec)
        return -1;
    seconds += leap_second - (int64_t) offset_minutes * 60;
    // Before 1970, or after 9999-12-31T23:59:59Z once the offset applies.
    if (seconds < 0 || seconds > 253402300799LL)
        return -1;
    *wall_ms = seconds * 1000 + ms;
    return 0;
}

// job_id_generate makes a UUIDv7 (RFC 9562 §5.7): 48 bits of Unix time in
// ms, then random bits. Time order matters for the store: the job and
// active-index B-trees are keyed by id, and with random (v4) ids every
// insert of a group commit dirtied its own 4 KiB leaf page — the commit
// wrote and synced roughly a page per job. Ordered ids append to the same
// few right-hand pages. libuuid in Debian 12 (2.38) has no v7 generator
// (uuid_generate_time_v7 came in 2.41), so its random UUID gets the time
// and version fields RFC 9562 defines; the variant bits are already 10.
//
// Within a process the ids rise strictly (RFC 9562 §6.2, method 2: the
// random bits count on within a millisecond): a tenant's listing orders
// jobs created in the same millisecond by id, and two of one client's
// submissions must list in the order they came, not by chance. A fresh id
// has the top bit of its low 56 random bits clear, so the count never
// carries into the variant. One event loop per process: no lock.
void
job_id_generate (char *buf)
{
    static uint64_t last_ms;
    static uuid_t last;
    uuid_t uu;
    uint64_t ms = (uint64_t) clock_wall_ms ();
    if (last_ms != 0 && ms <= last_ms) {
        // The same millisecond (or the wall clock stepped back): one more.
        uuid_copy (uu, last);
        for (int i = 15; i >= 9; i--)
            if (++uu[i] != 0)
                break;
    }
    else {
        uuid_generate_random (uu);
        uu[9] &= 0x7F;
        for (int i = 5; i >= 0; i--)
            uu[i] = (unsigned char) (ms >> (8 * (5 - i)));
        uu[6] = (unsigned char) ((uu[6] & 0x0F) | 0x70);
        last_ms = ms;
    }
    uuid_copy (last, uu);
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

void
clock_test (bool verbose)
{
    if (verbose)
        printf (" * clock: ");
    static const struct {
        const char *text;       // the date-time
        int64_t wall_ms;        // what it reads as, -1: refused
    } cases[] = {
        { "1970-01-01T00:00:00Z", 0 },
        { "2026-11-26T20:02:45.123Z", 1795723365123 },
        { "2026-11-26t20:02:45.1234567z", 1795723365123 },
        { "2026-11-26 21:02:45.5+01:00", 1795723365500 },
        { "2026-11-26T15:32:45-04:30", 1795723365000 },
        { "2024-02-29T00:00:00Z", 1709164800000 },
        { "2000-03-01T00:00:00Z", 951868800000 },
        { "2016-12-31T23:59:60Z", 1483228800000 },
        { "2023-02-29T00:00:00Z", -1 }, { "1900-02-29T00:00:00Z", -1 },
        { "1969-12-31T23:59:59Z", -1 }, { "1970-01-01T00:00:00+00:01", -1 },
        { "2026-13-01T00:00:00Z", -1 }, { "2026-04-31T00:00:00Z", -1 },
        { "2026-11-26T24:00:00Z", -1 }, { "2026-11-26T20:60:00Z", -1 },
        { "2026-11-26T20:02:45", -1 }, { "2026-11-26T20:02:45.Z", -1 },
        { "2026-11-26T20:02:45+0100", -1 }, { "2026-11-26", -1 }, { "", -1 },
        { "2026-11-26T20:02:45Zx", -1 }, { "+026-11-26T20:02:45Z", -1 },
        { "2026-11-26T20:02:45+24:00", -1 }, { "9999-12-31T23:59:59.999Z", 253402300799999 },
        { "9999-12-31T23:30:00-01:00", -1 },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int64_t wall_ms = -1;
        int rc = clock_rfc3339_parse (cases[i].text, strlen (cases[i].text), &wall_ms);
        if ((rc == 0 ? wall_ms : -1) != cases[i].wall_ms)
            fprintf (stderr, "clock: %s read as %lld\n", cases[i].text, (long long) wall_ms);
        assert ((rc == 0 ? wall_ms : -1) == cases[i].wall_ms);
    }
    // What clock_rfc3339 writes reads back the same; a NUL ends nothing.
    char stamp[32];
    clock_rfc3339 (1795723365123, stamp, sizeof stamp);
    int64_t back = 0;
    assert (clock_rfc3339_parse (stamp, strlen (stamp), &back) == 0 && back == 1795723365123);
    assert (clock_rfc3339_parse ("2026-11-26T20:02:45Z\0", 21, &back) == -1);
    // Job ids rise strictly, many in one millisecond too, and stay v7.
    char previous[JOB_ID_LEN + 1], id[JOB_ID_LEN + 1];
    job_id_generate (previous);
    for (int i = 0; i < 5000; i++) {
        job_id_generate (id);
        assert (strcmp (id, previous) > 0);
        assert (job_id_valid (id, strlen (id)) && id[14] == '7' && strchr ("89ab", id[19]));
        memcpy (previous, id, sizeof id);
    }
    if (verbose)
        printf ("OK\n");
}
