// jobcache — rendered job objects, shared, and the cache of finished ones.
//
// A job object is rendered once (job_render) into a jobtext: an immutable,
// reference-counted text that every reader of that version shares — the
// request that asked, each HTTP response sending it (without a copy), an
// event stream's result event, and the cache. The cache keeps the finished
// jobs this gateway has seen, so reads go on while the broker restarts; it
// is bounded by entries and by bytes (issue 10 #6: 20 jobs of 8 MB once
// grew a gateway by 220 MB), oldest out first, and never holds one text
// bigger than a quarter of its byte budget. State only: no I/O, no clock.
#ifndef JOBGATE_JOBCACHE_H
#define JOBGATE_JOBCACHE_H

#include <stdbool.h>
#include <stddef.h>

typedef struct _jobtext_t jobtext_t;

// jobtext_new takes text (len bytes, malloc'd, NUL-terminated) into a new
// jobtext with one reference. This function can't fail (out of memory
// aborts: common/mem.h).
jobtext_t *jobtext_new (char *text, size_t len);

// jobtext_ref adds a reference; returns self.
jobtext_t *jobtext_ref (jobtext_t *self);

// jobtext_unref drops a reference (the last frees it); nulls *self_p.
void jobtext_unref (jobtext_t **self_p);

// jobtext_data returns the text (NUL-terminated); jobtext_size its length.
const char *jobtext_data (const jobtext_t *self);
size_t jobtext_size (const jobtext_t *self);

typedef struct _jobcache_t jobcache_t;

// jobcache_new makes an empty cache of at most max_entries jobs and
// max_bytes bytes (texts plus bookkeeping). This function can't fail.
jobcache_t *jobcache_new (size_t max_entries, size_t max_bytes);

// jobcache_destroy drops every entry; nulls *self_p.
void jobcache_destroy (jobcache_t **self_p);

// jobcache_put remembers text (a reference is taken) as job id's latest
// version, owned by tenant, evicting the oldest entries to make room. A
// text over a quarter of the budget is not kept (and an older version of
// the job is forgotten).
void jobcache_put (jobcache_t *self, const char *id, const char *tenant, jobtext_t *text);

// jobcache_get returns job id's cached text (borrowed) and its tenant in
// *tenant, or NULL when it is not cached.
jobtext_t *jobcache_get (jobcache_t *self, const char *id, const char **tenant);

// jobcache_forget drops job id (it is active again).
void jobcache_forget (jobcache_t *self, const char *id);

// jobcache_size returns the entries held; jobcache_bytes their bytes.
size_t jobcache_size (jobcache_t *self);
size_t jobcache_bytes (jobcache_t *self);

// jobcache_test runs the self-test.
void jobcache_test (bool verbose);

#endif
