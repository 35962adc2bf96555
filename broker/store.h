// store — the broker's durable job store, on LMDB.
//
// Writes are batched: store_put records a job's new version in memory and
// store_commit writes every version of the batch in one transaction (group
// commit, docs/protocol.md §6). Later versions of the same job in one batch
// replace earlier ones, so a job submitted and dispatched in the same
// iteration costs one write. Reads see the batch first, then the disk.
//
// Databases inside the LMDB environment:
//   jobs      id → job record (msgpack map, common/job.h)
//   active    id → ""      every job not in a terminal state, for recovery
//   expiry    be64(expire_at_ms) ‖ id → ""   finished jobs, oldest first
//   expiry_of id → be64(expire_at_ms)   the one expiry entry a finished job has
//   tenants   tenant ‖ NUL ‖ be64(created_at) ‖ id → ""   listing, newest last
//   idem      tenant ‖ NUL ‖ idempotency key → id           Idempotency-Key
//   usage     "t" ‖ tenant → be64(bytes)   the bytes of each tenant's records
//   meta      "lease_key" → 32 random bytes; "usage" → "1" once usage is whole
//   tokens    broker/ledger.h's rows: HOUR ‖ 0x1f ‖ tenant ‖ 0x1f ‖ provider ‖ 0x1f ‖
//             model → be64 × 4: requests, prompt, completion, total tokens (SPEC §3.3)
//   cache     cache key → be64(succeeded_at_ms) ‖ id   the newest cached success of
//             each key (SPEC §3.2; broker/cache.h makes the keys)
//   cache_of  id → cache key   the entry a cached success holds, deleted with it
//
// A job has one expiry entry at most: each finish moves it, a retry removes
// it, so an earlier finish never deletes a job that finished again later.
// The bytes each tenant's records take are kept with every write, in the
// same transaction, so they hold across restarts (a store written before
// they were kept is counted once when opened).
//
// When the map is full (MDB_MAP_FULL), a commit writes the versions that fit,
// one per transaction, and keeps only those that do not: one large record
// never holds back the others. store_inject_map_full is the seam that makes
// this testable without filling a disk (beanstalkd's falloc).
#ifndef JOBGATE_STORE_H
#define JOBGATE_STORE_H

#include "job.h"
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

// Bytes of a lease key (store_lease_key).
#define STORE_LEASE_KEY_BYTES 32
// Bytes of a result cache key (store_cache_index).
#define STORE_CACHE_KEY_BYTES 32

typedef struct _store_t store_t;

// store_new opens (creating if needed) the store in dir. With fsync each
// commit is synced to disk in LMDB's order (data pages, then the meta page
// that names them), so the store survives a power loss whole; otherwise
// writing back is left to the OS (a process crash loses nothing). On error
// returns NULL and writes one line into error.
store_t *store_new (const char *dir, size_t map_mb, bool fsync, char *error, size_t error_size);

// store_destroy syncs and closes the store; nulls *self_p. Uncommitted
// writes are lost: commit first.
void store_destroy (store_t **self_p);

// store_put adds this version of job to the batch. expire_at_ms (wall) is
// when a finished job may be deleted; ignored for active jobs. is_new adds
// the job to the listing and idempotency indexes. This function can't fail
// (out of memory aborts, common/mem.h).
void store_put (store_t *self, const job_t *job, int64_t expire_at_ms, bool is_new);

// store_find_idempotent writes into id (JOB_ID_LEN + 1 bytes) the job a
// tenant submitted with an Idempotency-Key, batch included. Returns 0 when
// found, -1 when not.
int store_find_idempotent (store_t *self, const char *tenant, const char *key, char *id);

// What a listing callback did with a job.
typedef enum {
    STORE_LIST_MORE,    // took it; go on
    STORE_LIST_LAST,    // took it; the page is complete
    STORE_LIST_FULL     // did not take it (the page has no room): the next
                        // page starts with this job
} store_list_step_t;

// Called for each job of a listing, newest first; the callback owns it
// (and destroys it when it does not take it).
typedef store_list_step_t (store_list_fn) (job_t *job, void *arg);

// store_list visits a tenant's committed jobs newest first, starting after
// cursor (NULL: from the newest), keeping those whose status matches
// status_filter (-1: all), until fn ends the page or max_scanned index
// entries were read. Writes into next_cursor (at least 64 bytes) where the
// next page starts, or "" at the end. Returns 0, or -1 on error.
int store_list (store_t *self, const char *tenant, int status_filter, const char *cursor,
                size_t max_scanned, store_list_fn *fn, void *arg, char *next_cursor);

// store_get returns the newest version of a job (batch first), or NULL
// when unknown. The caller destroys it.
job_t *store_get (store_t *self, const char *id);

// store_pending returns how many versions wait in the batch.
size_t store_pending (store_t *self);

// store_commit writes the batch in one transaction and, in fsync mode,
// syncs it. On success the batch is empty and 0 is returned. When the map is
// full it writes, one transaction each, the versions that still fit, keeps
// the others in the batch, returns -1 and sets errno to ENOSPC; on another
// error (I/O) the whole batch is kept, -1 is returned and errno is EIO.
int store_commit (store_t *self);

// store_pending_has is true while a version of the job waits in the batch.
bool store_pending_has (store_t *self, const char *id);

// store_cache_index makes the batch's version of job id, a success, the
// newest answer to cache key (STORE_CACHE_KEY_BYTES) as of succeeded_at_ms
// (wall): written with it, and deleted with the job when it expires. A later
// version of the job in the same batch drops the index (a result the store
// could not keep is no answer). The version must be in the batch and
// terminal.
void store_cache_index (store_t *self, const char *id, const unsigned char *key,
                        int64_t succeeded_at_ms);

// store_cache_find writes into id (JOB_ID_LEN + 1 bytes) the newest success
// indexed under cache key, batch included, and when it succeeded into
// *succeeded_at_ms. Returns 0 when found, -1 when not. The job may be gone
// or changed since: the caller reads it and checks.
int store_cache_find (store_t *self, const unsigned char *key, char *id,
                      int64_t *succeeded_at_ms);

// Called for each version waiting in the batch: its job id, its size in
// bytes and whether the job is finished in it.
typedef void (store_pending_fn) (const char *id, size_t size, bool terminal, void *arg);

// store_pending_each calls fn for every version of the batch. fn may call
// store_put for the job it was given (replacing that version), nothing else.
void store_pending_each (store_t *self, store_pending_fn *fn, void *arg);

// store_discard drops the batch's version of a job that was never committed
// (a submission that will be refused). Returns 0, or -1 when the job has no
// such version (nothing is dropped then).
int store_discard (store_t *self, const char *id);

// store_indexable is true when a job of this tenant, with this idempotency
// key (may be NULL), fits the listing and idempotency indexes. This
// function can't fail.
bool store_indexable (const char *tenant, const char *idempotency_key);

// store_tenant_bytes returns the bytes the tenant's committed records take.
uint64_t store_tenant_bytes (store_t *self, const char *tenant);

// store_used_bytes returns the bytes of the map in use (pages written less
// pages free for reuse; while the file is under half the map, simply the
// pages written, which bound them) and writes the map's size into
// *map_bytes. Returns 0 when the store cannot be read.
uint64_t store_used_bytes (store_t *self, uint64_t *map_bytes);

// store_lease_key returns the store's secret for lease tokens
// (STORE_LEASE_KEY_BYTES), made when the store was created and kept in it, so
// tokens outlive a restart. This function can't fail.
const unsigned char *store_lease_key (store_t *self);

// store_inject_map_full makes writing any record larger than max_record_bytes
// fail from now on as if the map were full (MDB_MAP_FULL); 0 fails every
// record, SIZE_MAX ends the fault. Deletes are not affected. For tests.
void store_inject_map_full (store_t *self, size_t max_record_bytes);

// Called for each active job during store_scan_active.
typedef void (store_scan_fn) (job_t *job, void *arg);

// store_scan_active calls fn with every job that is not terminal (the caller
// owns each job). Returns the number visited, or -1 on error.
long store_scan_active (store_t *self, store_scan_fn *fn, void *arg);

// store_expire deletes up to limit finished jobs whose expiry time is at or
// before now_ms, in its own transaction (also while commits fail: deletes
// free space). Returns how many expiry entries were taken, or -1 on error.
long store_expire (store_t *self, int64_t now_ms, size_t limit);

// The counts of one tokens row (broker/ledger.h): requests, prompt,
// completion and total tokens.
#define STORE_TOKENS_COUNTS 4

// store_put_tokens adds a tokens row (key: a NUL-terminated text; counts:
// STORE_TOKENS_COUNTS of them, or NULL to delete the row) to the batch: it
// is written with the next commit, in the same transaction as the job
// versions of the batch. This function can't fail.
void store_put_tokens (store_t *self, const char *key, const uint64_t *counts);

// Called for each committed tokens row (key and counts borrowed for the
// call).
typedef void (store_tokens_fn) (const char *key, size_t key_len, const uint64_t *counts,
                                void *arg);

// store_scan_tokens calls fn for every committed tokens row, in key order
// (a row that is not one — a key with a NUL, a value of another size — is
// skipped). Returns the number visited, or -1 on error.
long store_scan_tokens (store_t *self, store_tokens_fn *fn, void *arg);

// store_count returns how many job records the disk holds.
size_t store_count (store_t *self);

// store_test runs the self-test.
void store_test (bool verbose);

#endif
