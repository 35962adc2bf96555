// jobcache — rendered job objects, shared, and the cache of finished ones.
#include "jobcache.h"
#include "clock.h"
#include "mem.h"

#include <assert.h>
#include <czmq.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct _jobtext_t {
    size_t refs;                // references held
    size_t size;                // bytes of text, without its NUL
    char *text;                 // the rendered job object
};

jobtext_t *
jobtext_new (char *text, size_t len)
{
    assert (text);
    jobtext_t *self = mem_alloc (sizeof *self);
    *self = (jobtext_t) { .refs = 1, .size = len, .text = text };
    return self;
}

jobtext_t *
jobtext_ref (jobtext_t *self)
{
    self->refs++;
    return self;
}

void
jobtext_unref (jobtext_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    jobtext_t *self = *self_p;
    if (--self->refs == 0) {
        free (self->text);
        free (self);
    }
    *self_p = NULL;
}

const char *
jobtext_data (const jobtext_t *self)
{
    return self->text;
}

size_t
jobtext_size (const jobtext_t *self)
{
    return self->size;
}

typedef struct _entry_t entry_t;
struct _entry_t {
    char id[JOB_ID_LEN + 1];    // job id
    char *tenant;               // its owner
    jobtext_t *text;            // its latest finished version
    size_t bytes;               // what it counts against the budget
    entry_t *older;             // FIFO neighbours, for eviction
    entry_t *newer;
};

struct _jobcache_t {
    zhashx_t *entries;          // id → entry_t
    entry_t *oldest;            // eviction end
    entry_t *newest;            // insertion end
    size_t max_entries;         // entries at most
    size_t max_bytes;           // bytes at most
    size_t bytes;               // bytes held
};

// What an entry costs besides its text: the entry, its tenant, the hash slot.
#define ENTRY_OVERHEAD 160

jobcache_t *
jobcache_new (size_t max_entries, size_t max_bytes)
{
    jobcache_t *self = mem_calloc (1, sizeof *self);
    self->entries = mem_lib (zhashx_new ());
    self->max_entries = max_entries;
    self->max_bytes = max_bytes;
    return self;
}

// s_remove unlinks and frees an entry.
static void
s_remove (jobcache_t *self, entry_t *entry)
{
    if (entry->older)
        entry->older->newer = entry->newer;
    else
        self->oldest = entry->newer;
    if (entry->newer)
        entry->newer->older = entry->older;
    else
        self->newest = entry->older;
    self->bytes -= entry->bytes;
    zhashx_delete (self->entries, entry->id);
    jobtext_unref (&entry->text);
    free (entry->tenant);
    free (entry);
}

void
jobcache_destroy (jobcache_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    jobcache_t *self = *self_p;
    while (self->oldest)
        s_remove (self, self->oldest);
    zhashx_destroy (&self->entries);
    free (self);
    *self_p = NULL;
}

void
jobcache_put (jobcache_t *self, const char *id, const char *tenant, jobtext_t *text)
{
    jobcache_forget (self, id);
    size_t bytes = jobtext_size (text) + strlen (tenant) + ENTRY_OVERHEAD;
    if (bytes > self->max_bytes / 4 || self->max_entries == 0)
        return;
    while (self->oldest
           && (zhashx_size (self->entries) >= self->max_entries
               || self->bytes + bytes > self->max_bytes))
        s_remove (self, self->oldest);
    entry_t *entry = mem_calloc (1, sizeof *entry);
    snprintf (entry->id, sizeof entry->id, "%s", id);
    entry->tenant = mem_strdup (tenant);
    entry->text = jobtext_ref (text);
    entry->bytes = bytes;
    entry->older = self->newest;
    if (self->newest)
        self->newest->newer = entry;
    else
        self->oldest = entry;
    self->newest = entry;
    self->bytes += bytes;
    zhashx_insert (self->entries, entry->id, entry);
}

jobtext_t *
jobcache_get (jobcache_t *self, const char *id, const char **tenant)
{
    entry_t *entry = zhashx_lookup (self->entries, id);
    if (!entry)
        return NULL;
    *tenant = entry->tenant;
    return entry->text;
}

void
jobcache_forget (jobcache_t *self, const char *id)
{
    entry_t *entry = zhashx_lookup (self->entries, id);
    if (entry)
        s_remove (self, entry);
}

size_t
jobcache_size (jobcache_t *self)
{
    return zhashx_size (self->entries);
}

size_t
jobcache_bytes (jobcache_t *self)
{
    return self->bytes;
}

// s_test_text makes a jobtext of len bytes.
static jobtext_t *
s_test_text (size_t len)
{
    char *text = mem_alloc (len + 1);
    memset (text, 'x', len);
    text[len] = '\0';
    return jobtext_new (text, len);
}

void
jobcache_test (bool verbose)
{
    if (verbose)
        printf (" * jobcache: ");
    // Shared texts: the last reference frees.
    jobtext_t *text = s_test_text (10);
    jobtext_t *other = jobtext_ref (text);
    assert (jobtext_size (other) == 10 && strlen (jobtext_data (other)) == 10);
    jobtext_unref (&text);
    assert (!text && jobtext_size (other) == 10);
    jobtext_unref (&other);
    jobtext_unref (&other);

    // Bounded by bytes: 10 texts of 1,000 bytes in a 4,000-byte cache keep
    // the newest three.
    jobcache_t *cache = jobcache_new (100, 4000);
    char id[JOB_ID_LEN + 1];
    char ids[10][JOB_ID_LEN + 1];
    for (int i = 0; i < 10; i++) {
        job_id_generate (ids[i]);
        text = s_test_text (1000 - ENTRY_OVERHEAD - 1);
        jobcache_put (cache, ids[i], "a", text);
        jobtext_unref (&text);
    }
    assert (jobcache_size (cache) == 4 && jobcache_bytes (cache) == 4000);
    const char *tenant = NULL;
    assert (!jobcache_get (cache, ids[5], &tenant));
    assert (jobcache_get (cache, ids[9], &tenant) && strcmp (tenant, "a") == 0);
    assert (jobcache_get (cache, ids[6], &tenant));
    // One text over a quarter of the budget is not kept, and the older
    // version it replaces is forgotten (it is stale).
    text = s_test_text (1001);
    jobcache_put (cache, ids[9], "a", text);
    jobtext_unref (&text);
    assert (!jobcache_get (cache, ids[9], &tenant) && jobcache_size (cache) == 3);
    // Forgetting an entry from the middle keeps the order of the others.
    jobcache_forget (cache, ids[7]);
    assert (jobcache_size (cache) == 2 && jobcache_bytes (cache) == 2000);
    job_id_generate (id);
    text = s_test_text (1000 - ENTRY_OVERHEAD - 1);
    jobcache_put (cache, id, "a", text);
    jobcache_put (cache, ids[6], "b", text);   // a new version: moves to the newest end
    jobtext_unref (&text);
    assert (jobcache_size (cache) == 3);
    text = s_test_text (1000 - ENTRY_OVERHEAD - 1);
    jobcache_put (cache, ids[0], "a", text);
    jobcache_put (cache, ids[1], "a", text);
    jobtext_unref (&text);
    assert (jobcache_size (cache) == 4 && !jobcache_get (cache, ids[8], &tenant));
    assert (jobcache_get (cache, ids[6], &tenant) && strcmp (tenant, "b") == 0);
    jobcache_destroy (&cache);
    jobcache_destroy (&cache);

    // Bounded by entries too.
    cache = jobcache_new (2, 1 << 20);
    text = s_test_text (5);
    for (int i = 0; i < 3; i++)
        jobcache_put (cache, ids[i], "a", text);
    jobtext_unref (&text);
    assert (jobcache_size (cache) == 2 && !jobcache_get (cache, ids[0], &tenant));
    jobcache_destroy (&cache);
    if (verbose)
        printf ("OK\n");
}
