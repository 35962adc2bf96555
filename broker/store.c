#include "store.h"
#include "log.h"
#include "mem.h"

#include <assert.h>
#include <czmq.h>
#include <sodium.h>
#include <errno.h>
#include <lmdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

typedef struct {
    void *data;                 // encoded record
    size_t size;                // its size
    bool active;                // the record is not terminal
    int64_t expire_at_ms;       // for terminal records: when to delete
    bool is_new;                // first version: index it
    char *tenant;               // its tenant (indexes, usage)
    char *idempotency_key;      // for the idem index (is_new only), or NULL
    int64_t created_at;         // for the listing index
    bool cached;                // a success the result cache indexes (store_cache_index)
    unsigned char cache_key[STORE_CACHE_KEY_BYTES]; // its cache key, when cached
    int64_t succeeded_at_ms;    // when it succeeded (wall), when cached
} store_version_t;

struct _store_t {
    MDB_env *env;               // the LMDB environment
    MDB_dbi jobs;               // id → record
    MDB_dbi active;             // id → "" for non-terminal jobs
    MDB_dbi expiry;             // be64(expire_at) ‖ id → ""
    MDB_dbi expiry_of;          // id → be64(expire_at) of its one expiry entry
    MDB_dbi tenants;            // tenant ‖ NUL ‖ be64(created_at) ‖ id → ""
    MDB_dbi idem;               // tenant ‖ NUL ‖ idempotency key → id
    MDB_dbi usage;              // "t" ‖ tenant → be64(bytes of its records)
    MDB_dbi meta;               // lease key, usage flag
    MDB_dbi tokens;             // broker/ledger.h rows: key → their counts
    MDB_dbi cache;              // cache key → be64(succeeded_at) ‖ id (SPEC §3.2)
    MDB_dbi cache_of;           // id → the cache key that names it
    zhashx_t *batch;            // id → store_version_t waiting for commit
    zhashx_t *batch_idem;       // tenant ‖ NUL-as-'\x1f' ‖ key → id, uncommitted
    zhashx_t *batch_cache;      // hex cache key → id of a cached success, uncommitted
    zhashx_t *usage_bytes;      // tenant → uint64_t *, committed bytes per tenant
    zhashx_t *batch_tokens;     // tokens key → s_row_value_t, uncommitted (NULL data: delete)
    unsigned char lease_key[STORE_LEASE_KEY_BYTES]; // secret of lease tokens
    bool fsync;                 // sync each commit
    size_t fault_max_record;    // records larger than this fail as MAP_FULL (tests)
    MDB_txn *reader;            // read transaction kept for point reads, or
                                // NULL; reset (holding no snapshot) while
                                // reader_live is false
    bool reader_live;           // reader shows the last commit
};

// A tokens row waiting for the commit: its new value, or a deletion.
typedef struct {
    size_t size;                // bytes of data
    unsigned char *data;        // the value; NULL: delete the row
} s_row_value_t;

static void
s_row_value_destroy (void **item)
{
    s_row_value_t *value = *item;
    if (value) {
        free (value->data);
        free (value);
        *item = NULL;
    }
}

static void
s_version_destroy (void **item)
{
    store_version_t *version = *item;
    if (version) {
        free (version->data);
        free (version->tenant);
        free (version->idempotency_key);
        free (version);
        *item = NULL;
    }
}

// s_usage_key writes the usage database's key of a tenant into key (512
// bytes): LMDB keys may not be empty, and the open mode's tenant is "".
// Returns its length, or 0 when the tenant is too long.
static size_t
s_usage_key (unsigned char *key, const char *tenant)
{
    size_t len = strlen (tenant);
    if (len + 1 > 511)
        return 0;
    key[0] = 't';
    memcpy (key + 1, tenant, len);
    return len + 1;
}

static void
s_put_be64 (unsigned char *out, uint64_t value)
{
    for (int i = 7; i >= 0; i--) {
        out[i] = (unsigned char) value;
        value >>= 8;
    }
}

static uint64_t
s_get_be64 (const unsigned char *in)
{
    uint64_t value = 0;
    for (int i = 0; i < 8; i++)
        value = value << 8 | in[i];
    return value;
}

// s_usage_set records a tenant's committed bytes in memory.
static void
s_usage_set (store_t *self, const char *tenant, uint64_t bytes)
{
    uint64_t *slot = zhashx_lookup (self->usage_bytes, tenant);
    if (!slot) {
        slot = mem_alloc (sizeof *slot);
        zhashx_insert (self->usage_bytes, tenant, slot);
    }
    *slot = bytes;
}

// s_record_tenant reads the tenant of an encoded record into a new string
// ("" when it has none), or NULL when the record is not a map.
static char *
s_record_tenant (const void *data, size_t size)
{
    pack_reader_t *reader = pack_reader_new (data, size);
    if (!reader)
        return NULL;
    char *tenant = pack_get_strdup (reader, "tenant");
    pack_reader_destroy (&reader);
    return tenant ? tenant : mem_strdup ("");
}

// s_usage_rebuild counts every record's bytes per tenant, for a store
// written before usage was kept. Returns an LMDB code.
static int
s_usage_rebuild (store_t *self, MDB_txn *txn)
{
    zhashx_t *sums = zhashx_new ();
    zhashx_set_destructor (sums, (zhashx_destructor_fn *) zstr_free);
    MDB_cursor *cursor;
    int rc = mdb_cursor_open (txn, self->jobs, &cursor);
    MDB_val key, value;
    if (rc == 0) {
        int step = mdb_cursor_get (cursor, &key, &value, MDB_FIRST);
        while (step == 0) {
            char *tenant = s_record_tenant (value.mv_data, value.mv_size);
            if (tenant) {
                uint64_t *sum = zhashx_lookup (sums, tenant);
                if (!sum) {
                    sum = mem_calloc (1, sizeof *sum);
                    zhashx_insert (sums, tenant, sum);
                }
                *sum += value.mv_size;
                free (tenant);
            }
            step = mdb_cursor_get (cursor, &key, &value, MDB_NEXT);
        }
        mdb_cursor_close (cursor);
    }
    for (uint64_t *sum = zhashx_first (sums); sum && rc == 0; sum = zhashx_next (sums)) {
        unsigned char bytes[8], raw[512];
        s_put_be64 (bytes, *sum);
        MDB_val tkey = { s_usage_key (raw, zhashx_cursor (sums)), raw }, tvalue = { 8, bytes };
        if (tkey.mv_size)
            rc = mdb_put (txn, self->usage, &tkey, &tvalue, 0);
    }
    MDB_val flag_key = { 5, (void *) "usage" }, flag = { 1, (void *) "1" };
    if (rc == 0)
        rc = mdb_put (txn, self->meta, &flag_key, &flag, 0);
    if (rc == 0)
        log_info (NULL, "store: counted the bytes of %zu tenants' records", zhashx_size (sums));
    zhashx_destroy (&sums);
    return rc;
}

// s_open_meta reads (or makes) the lease key and loads the tenants' usage.
// Returns an LMDB code.
static int
s_open_meta (store_t *self, MDB_txn *txn)
{
    MDB_val key = { 9, (void *) "lease_key" }, value;
    int rc = mdb_get (txn, self->meta, &key, &value);
    if (rc == 0 && value.mv_size == STORE_LEASE_KEY_BYTES)
        memcpy (self->lease_key, value.mv_data, STORE_LEASE_KEY_BYTES);
    else {
        randombytes_buf (self->lease_key, STORE_LEASE_KEY_BYTES);
        value = (MDB_val) { STORE_LEASE_KEY_BYTES, self->lease_key };
        rc = mdb_put (txn, self->meta, &key, &value, 0);
        if (rc != 0)
            return rc;
    }
    MDB_val flag_key = { 5, (void *) "usage" };
    rc = mdb_get (txn, self->meta, &flag_key, &value);
    if (rc == MDB_NOTFOUND)
        rc = s_usage_rebuild (self, txn);
    if (rc != 0)
        return rc;
    MDB_cursor *cursor;
    rc = mdb_cursor_open (txn, self->usage, &cursor);
    if (rc != 0)
        return rc;
    int step = mdb_cursor_get (cursor, &key, &value, MDB_FIRST);
    while (step == 0) {
        char tenant[512];
        if (key.mv_size >= 1 && key.mv_size < sizeof tenant && value.mv_size == 8) {
            memcpy (tenant, (const char *) key.mv_data + 1, key.mv_size - 1);
            tenant[key.mv_size - 1] = '\0';
            s_usage_set (self, tenant, s_get_be64 (value.mv_data));
        }
        step = mdb_cursor_get (cursor, &key, &value, MDB_NEXT);
    }
    mdb_cursor_close (cursor);
    return 0;
}

store_t *
store_new (const char *dir, size_t map_mb, bool fsync, char *error, size_t error_size)
{
    if (mkdir (dir, 0700) < 0 && errno != EEXIST) {
        snprintf (error, error_size, "store: cannot create %s: %s", dir, strerror (errno));
        return NULL;
    }
    if (sodium_init () < 0) {
        snprintf (error, error_size, "store: libsodium failed to initialise");
        return NULL;
    }
    store_t *self = mem_calloc (1, sizeof *self);
    self->fault_max_record = SIZE_MAX;
    self->usage_bytes = zhashx_new ();
    zhashx_set_destructor (self->usage_bytes, (zhashx_destructor_fn *) zstr_free);
    int rc = mdb_env_create (&self->env);
    if (rc == 0)
        rc = mdb_env_set_maxdbs (self->env, 16);
    if (rc == 0)
        rc = mdb_env_set_mapsize (self->env, map_mb * 1024 * 1024);
    // With fsync, MDB_NOMETASYNC: a commit syncs its data pages before it
    // writes the meta page that points at them, so a power loss at any
    // moment leaves either the old tree or the new one, never a meta page
    // over pages that did not reach the disk (what MDB_NOSYNC followed by
    // one sync allows); store_commit then syncs the meta page, which makes
    // the commit durable: two syncs per group commit, LMDB's own order.
    // Without fsync, MDB_NOSYNC: commits reach the OS at once (a process
    // crash loses nothing; a power loss may lose or damage the store, which
    // is what durability "os" says). MDB_NOTLS: read transactions are not
    // tied to threads.
    if (rc == 0)
        rc = mdb_env_open (self->env, dir, (fsync ? MDB_NOMETASYNC : MDB_NOSYNC) | MDB_NOTLS,
                           0600);
    if (rc != 0) {
        snprintf (error, error_size, "store: cannot open %s: %s%s", dir, mdb_strerror (rc),
                  rc == MDB_INVALID || rc == MDB_VERSION_MISMATCH || rc == MDB_CORRUPTED
                      ? " (the store is damaged or not an LMDB store)"
                      : "");
        mdb_env_close (self->env);
        zhashx_destroy (&self->usage_bytes);
        free (self);
        return NULL;
    }
    MDB_txn *txn;
    rc = mdb_txn_begin (self->env, NULL, 0, &txn);
    if (rc == 0)
        rc = mdb_dbi_open (txn, "jobs", MDB_CREATE, &self->jobs);
    if (rc == 0)
        rc = mdb_dbi_open (txn, "active", MDB_CREATE, &self->active);
    if (rc == 0)
        rc = mdb_dbi_open (txn, "expiry", MDB_CREATE, &self->expiry);
    if (rc == 0)
        rc = mdb_dbi_open (txn, "expiry_of", MDB_CREATE, &self->expiry_of);
    if (rc == 0)
        rc = mdb_dbi_open (txn, "tenants", MDB_CREATE, &self->tenants);
    if (rc == 0)
        rc = mdb_dbi_open (txn, "idem", MDB_CREATE, &self->idem);
    if (rc == 0)
        rc = mdb_dbi_open (txn, "usage", MDB_CREATE, &self->usage);
    if (rc == 0)
        rc = mdb_dbi_open (txn, "meta", MDB_CREATE, &self->meta);
    if (rc == 0)
        rc = mdb_dbi_open (txn, "tokens", MDB_CREATE, &self->tokens);
    if (rc == 0)
        rc = mdb_dbi_open (txn, "cache", MDB_CREATE, &self->cache);
    if (rc == 0)
        rc = mdb_dbi_open (txn, "cache_of", MDB_CREATE, &self->cache_of);
    if (rc == 0)
        rc = s_open_meta (self, txn);
    if (rc == 0)
        rc = mdb_txn_commit (txn);
    else
        mdb_txn_abort (txn);
    if (rc != 0) {
        snprintf (error, error_size, "store: cannot open databases in %s: %s", dir,
                  mdb_strerror (rc));
        mdb_env_close (self->env);
        zhashx_destroy (&self->usage_bytes);
        free (self);
        return NULL;
    }
    self->fsync = fsync;
    self->batch = zhashx_new ();
    zhashx_set_destructor (self->batch, s_version_destroy);
    self->batch_idem = zhashx_new ();
    zhashx_set_destructor (self->batch_idem, (zhashx_destructor_fn *) zstr_free);
    zhashx_set_duplicator (self->batch_idem, (zhashx_duplicator_fn *) strdup);
    self->batch_tokens = zhashx_new ();
    zhashx_set_destructor (self->batch_tokens, s_row_value_destroy);
    self->batch_cache = zhashx_new ();
    zhashx_set_destructor (self->batch_cache, (zhashx_destructor_fn *) zstr_free);
    zhashx_set_duplicator (self->batch_cache, (zhashx_duplicator_fn *) strdup);
    return self;
}

void
store_destroy (store_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    store_t *self = *self_p;
    if (self->reader)
        mdb_txn_abort (self->reader);
    mdb_env_sync (self->env, 1);
    mdb_env_close (self->env);
    zhashx_destroy (&self->batch);
    zhashx_destroy (&self->batch_idem);
    zhashx_destroy (&self->batch_tokens);
    zhashx_destroy (&self->batch_cache);
    zhashx_destroy (&self->usage_bytes);
    sodium_memzero (self->lease_key, sizeof self->lease_key);
    free (self);
    *self_p = NULL;
}

// s_idem_name is the batch_idem key of a tenant's idempotency key; the
// caller frees it.
static char *
s_idem_name (const char *tenant, const char *key)
{
    size_t tenant_len = strlen (tenant), key_len = strlen (key);
    char *name = mem_alloc (tenant_len + key_len + 2);
    memcpy (name, tenant, tenant_len);
    name[tenant_len] = '\x1f';
    memcpy (name + tenant_len + 1, key, key_len + 1);
    return name;
}

void
store_put (store_t *self, const job_t *job, int64_t expire_at_ms, bool is_new)
{
    pack_writer_t *writer = pack_writer_new ();
    job_pack (job, writer);
    size_t size;
    const void *data = pack_writer_data (writer, &size);
    store_version_t *version = mem_calloc (1, sizeof *version);
    void *copy = mem_alloc (size);
    char *tenant = mem_strdup (job->tenant ? job->tenant : "");
    memcpy (copy, data, size);
    pack_writer_destroy (&writer);
    *version = (store_version_t) { .data = copy, .size = size,
                                   .active = !job_status_terminal (job->status),
                                   .expire_at_ms = expire_at_ms,
                                   .tenant = tenant,
                                   .created_at = job->created_at };
    // A later version in the same batch keeps the first one's indexing.
    store_version_t *older = zhashx_lookup (self->batch, job->id);
    if (is_new || (older && older->is_new)) {
        version->is_new = true;
        if (job->idempotency_key) {
            version->idempotency_key = mem_strdup (job->idempotency_key);
            char *name = s_idem_name (version->tenant, job->idempotency_key);
            zhashx_update (self->batch_idem, name, (void *) job->id);
            free (name);
        }
    }
    // zhashx_update replaces (and destroys) an older version in the batch.
    zhashx_update (self->batch, job->id, version);
}

// s_tenant_key writes tenant ‖ NUL ‖ be64(created_at) ‖ id into key (which
// holds 512 bytes) and returns its length, or 0 when the tenant is too long.
static size_t
s_tenant_key (unsigned char *key, const char *tenant, int64_t created_at, const char *id)
{
    size_t tenant_len = strlen (tenant);
    if (tenant_len + 1 + 8 + JOB_ID_LEN > 511)
        return 0;
    memcpy (key, tenant, tenant_len);
    key[tenant_len] = '\0';
    s_put_be64 (key + tenant_len + 1, (uint64_t) created_at);
    memcpy (key + tenant_len + 9, id, JOB_ID_LEN);
    return tenant_len + 9 + JOB_ID_LEN;
}

// s_idem_key writes tenant ‖ NUL ‖ key into out (512 bytes); 0 if too long.
static size_t
s_idem_key (unsigned char *out, const char *tenant, const char *key)
{
    size_t tenant_len = strlen (tenant), key_len = strlen (key);
    if (tenant_len + 1 + key_len > 511)
        return 0;
    memcpy (out, tenant, tenant_len);
    out[tenant_len] = '\0';
    memcpy (out + tenant_len + 1, key, key_len);
    return tenant_len + 1 + key_len;
}

bool
store_indexable (const char *tenant, const char *idempotency_key)
{
    unsigned char key[512];
    return s_tenant_key (key, tenant, 0, "00000000-0000-0000-0000-000000000000") > 0
           && (!idempotency_key || s_idem_key (key, tenant, idempotency_key) > 0);
}

// s_reader returns a read transaction showing the last commit. Point reads
// come once or twice per job state change; beginning a transaction for each
// took a reader-table slot every time, renewing a kept one does not.
static MDB_txn *
s_reader (store_t *self)
{
    if (self->reader && self->reader_live)
        return self->reader;
    if (self->reader && mdb_txn_renew (self->reader) != 0) {
        mdb_txn_abort (self->reader);
        self->reader = NULL;
    }
    if (!self->reader && mdb_txn_begin (self->env, NULL, MDB_RDONLY, &self->reader) != 0) {
        self->reader = NULL;
        return NULL;
    }
    self->reader_live = true;
    return self->reader;
}

// s_reader_release lets go of the reader's snapshot before a write: a
// snapshot held open would keep LMDB from reusing the pages the writes
// free, and the next read must see the write anyway.
static void
s_reader_release (store_t *self)
{
    if (self->reader && self->reader_live)
        mdb_txn_reset (self->reader);
    self->reader_live = false;
}

int
store_find_idempotent (store_t *self, const char *tenant, const char *key, char *id)
{
    char *name = s_idem_name (tenant, key);
    const char *pending = zhashx_lookup (self->batch_idem, name);
    free (name);
    if (pending) {
        memcpy (id, pending, JOB_ID_LEN + 1);
        return 0;
    }
    unsigned char raw[512];
    size_t len = s_idem_key (raw, tenant, key);
    if (!len)
        return -1;
    MDB_txn *txn = s_reader (self);
    if (!txn)
        return -1;
    MDB_val k = { len, raw }, value;
    int rc = -1;
    if (mdb_get (txn, self->idem, &k, &value) == 0 && value.mv_size == JOB_ID_LEN) {
        memcpy (id, value.mv_data, JOB_ID_LEN);
        id[JOB_ID_LEN] = '\0';
        rc = 0;
    }
    return rc;
}

// s_cache_name is the batch_cache key of a cache key (hex; caller frees).
static char *
s_cache_name (const unsigned char *key)
{
    char *name = mem_alloc (2 * STORE_CACHE_KEY_BYTES + 1);
    sodium_bin2hex (name, 2 * STORE_CACHE_KEY_BYTES + 1, key, STORE_CACHE_KEY_BYTES);
    return name;
}

void
store_cache_index (store_t *self, const char *id, const unsigned char *key,
                   int64_t succeeded_at_ms)
{
    store_version_t *version = zhashx_lookup (self->batch, id);
    assert (version && !version->active);
    version->cached = true;
    memcpy (version->cache_key, key, STORE_CACHE_KEY_BYTES);
    version->succeeded_at_ms = succeeded_at_ms;
    char *name = s_cache_name (key);
    zhashx_update (self->batch_cache, name, (void *) id);
    free (name);
}

int
store_cache_find (store_t *self, const unsigned char *key, char *id, int64_t *succeeded_at_ms)
{
    // The batch first: a success not committed yet is already the answer
    // (a later version of that job without the index is not).
    char *name = s_cache_name (key);
    const char *pending = zhashx_lookup (self->batch_cache, name);
    free (name);
    store_version_t *version = pending ? zhashx_lookup (self->batch, pending) : NULL;
    if (version && version->cached
        && memcmp (version->cache_key, key, STORE_CACHE_KEY_BYTES) == 0) {
        memcpy (id, pending, JOB_ID_LEN + 1);
        *succeeded_at_ms = version->succeeded_at_ms;
        return 0;
    }
    MDB_txn *txn = s_reader (self);
    if (!txn)
        return -1;
    MDB_val k = { STORE_CACHE_KEY_BYTES, (void *) key }, value;
    if (mdb_get (txn, self->cache, &k, &value) != 0 || value.mv_size != 8 + JOB_ID_LEN)
        return -1;
    *succeeded_at_ms = (int64_t) s_get_be64 (value.mv_data);
    memcpy (id, (const char *) value.mv_data + 8, JOB_ID_LEN);
    id[JOB_ID_LEN] = '\0';
    return 0;
}

// s_decode turns stored bytes into a job, or NULL (logged) when damaged.
static job_t *
s_decode (const void *data, size_t size, const char *id)
{
    pack_reader_t *reader = pack_reader_new (data, size);
    job_t *job = reader ? job_unpack (reader) : NULL;
    pack_reader_destroy (&reader);
    if (!job)
        log_error (id, "store: damaged record (%zu bytes) skipped", size);
    return job;
}

job_t *
store_get (store_t *self, const char *id)
{
    store_version_t *version = zhashx_lookup (self->batch, id);
    if (version)
        return s_decode (version->data, version->size, id);
    MDB_txn *txn = s_reader (self);
    if (!txn)
        return NULL;
    MDB_val key = { strlen (id), (void *) id }, value;
    job_t *job = NULL;
    if (mdb_get (txn, self->jobs, &key, &value) == 0)
        job = s_decode (value.mv_data, value.mv_size, id);
    return job;
}

size_t
store_pending (store_t *self)
{
    return zhashx_size (self->batch);
}

bool
store_pending_has (store_t *self, const char *id)
{
    return zhashx_lookup (self->batch, id) != NULL;
}

void
store_pending_each (store_t *self, store_pending_fn *fn, void *arg)
{
    // fn may replace the version it is given: walk a copy of the ids.
    zlistx_t *ids = zhashx_keys (self->batch);
    for (const char *id = zlistx_first (ids); id; id = zlistx_next (ids)) {
        store_version_t *version = zhashx_lookup (self->batch, id);
        if (version)
            fn (id, version->size, !version->active, arg);
    }
    zlistx_destroy (&ids);
}

// s_forget_idem drops the batch's idempotency entry of a version.
static void
s_forget_idem (store_t *self, const store_version_t *version)
{
    if (!version->is_new || !version->idempotency_key)
        return;
    char *name = s_idem_name (version->tenant, version->idempotency_key);
    zhashx_delete (self->batch_idem, name);
    free (name);
}

int
store_discard (store_t *self, const char *id)
{
    store_version_t *version = zhashx_lookup (self->batch, id);
    if (!version || !version->is_new)
        return -1;
    s_forget_idem (self, version);
    zhashx_delete (self->batch, id);
    return 0;
}

// s_expiry_key writes be64(expire_at) ‖ id into key (8 + 36 bytes).
static void
s_expiry_key (unsigned char *key, int64_t expire_at_ms, const char *id)
{
    s_put_be64 (key, (uint64_t) expire_at_ms);
    memcpy (key + 8, id, JOB_ID_LEN);
}

// s_expiry_drop removes a job's expiry entry, if it has one.
static int
s_expiry_drop (store_t *self, MDB_txn *txn, MDB_val *job_key)
{
    MDB_val at;
    int rc = mdb_get (txn, self->expiry_of, job_key, &at);
    if (rc == MDB_NOTFOUND)
        return 0;
    if (rc != 0 || at.mv_size != 8 || job_key->mv_size != JOB_ID_LEN)
        return rc;
    unsigned char expiry_key[8 + JOB_ID_LEN];
    memcpy (expiry_key, at.mv_data, 8);
    memcpy (expiry_key + 8, job_key->mv_data, JOB_ID_LEN);
    MDB_val ekey = { sizeof expiry_key, expiry_key };
    rc = mdb_del (txn, self->expiry, &ekey, NULL);
    if (rc == 0 || rc == MDB_NOTFOUND)
        rc = mdb_del (txn, self->expiry_of, job_key, NULL);
    return rc == MDB_NOTFOUND ? 0 : rc;
}

// s_usage_add adds delta to a tenant's bytes in a transaction's tally
// (tenant → int64_t *).
static void
s_usage_add (zhashx_t *tally, const char *tenant, int64_t delta)
{
    int64_t *sum = zhashx_lookup (tally, tenant);
    if (!sum) {
        sum = mem_calloc (1, sizeof *sum);
        zhashx_insert (tally, tenant, sum);
    }
    *sum += delta;
}

// s_usage_write writes a transaction's tally into the usage database; the
// tally then holds each tenant's new total, for s_usage_apply.
static int
s_usage_write (store_t *self, MDB_txn *txn, zhashx_t *tally)
{
    int rc = 0;
    for (int64_t *delta = zhashx_first (tally); delta && rc == 0; delta = zhashx_next (tally)) {
        const char *tenant = zhashx_cursor (tally);
        uint64_t *known = zhashx_lookup (self->usage_bytes, tenant);
        int64_t total = (int64_t) (known ? *known : 0) + *delta;
        *delta = total > 0 ? total : 0;
        unsigned char bytes[8], raw[512];
        s_put_be64 (bytes, (uint64_t) *delta);
        MDB_val key = { s_usage_key (raw, tenant), raw }, value = { 8, bytes };
        if (key.mv_size)
            rc = mdb_put (txn, self->usage, &key, &value, 0);
    }
    return rc;
}

// s_usage_apply takes a committed tally's totals into memory.
static void
s_usage_apply (store_t *self, zhashx_t *tally)
{
    for (int64_t *total = zhashx_first (tally); total; total = zhashx_next (tally))
        s_usage_set (self, zhashx_cursor (tally), (uint64_t) *total);
}

static zhashx_t *
s_tally_new (void)
{
    zhashx_t *tally = zhashx_new ();
    zhashx_set_destructor (tally, (zhashx_destructor_fn *) zstr_free);
    return tally;
}

// s_write_version writes one version and its index entries in txn, and
// tallies its tenant's change in bytes. Returns an LMDB code.
static int
s_write_version (store_t *self, MDB_txn *txn, const char *id, const store_version_t *version,
                 zhashx_t *tally)
{
    if (version->size > self->fault_max_record)
        return MDB_MAP_FULL;    // the test seam: as if no page were left
    MDB_val empty = { 0, (void *) "" };
    MDB_val key = { strlen (id), (void *) id };
    MDB_val value = { version->size, version->data }, old;
    int rc = mdb_get (txn, self->jobs, &key, &old);
    size_t old_size = rc == 0 ? old.mv_size : 0;
    rc = rc == 0 || rc == MDB_NOTFOUND ? mdb_put (txn, self->jobs, &key, &value, 0) : rc;
    if (rc == 0 && version->is_new) {
        unsigned char index_key[512];
        size_t len = s_tenant_key (index_key, version->tenant, version->created_at, id);
        MDB_val ikey = { len, index_key };
        if (len)
            rc = mdb_put (txn, self->tenants, &ikey, &empty, 0);
        len = version->idempotency_key
                  ? s_idem_key (index_key, version->tenant, version->idempotency_key)
                  : 0;
        MDB_val idem_key = { len, index_key }, idem_value = { JOB_ID_LEN, (void *) id };
        if (rc == 0 && len)
            rc = mdb_put (txn, self->idem, &idem_key, &idem_value, 0);
    }
    // A job has one expiry entry at most: an active version has none (a
    // retried job must not be deleted by its earlier finish), a finished one
    // has exactly the one of its latest finish.
    if (rc == 0)
        rc = s_expiry_drop (self, txn, &key);
    if (rc == 0 && version->active)
        rc = mdb_put (txn, self->active, &key, &empty, 0);
    else if (rc == 0) {
        rc = mdb_del (txn, self->active, &key, NULL);
        if (rc == MDB_NOTFOUND)
            rc = 0;
        if (rc == 0 && version->expire_at_ms > 0 && key.mv_size == JOB_ID_LEN) {
            unsigned char expiry_key[8 + JOB_ID_LEN];
            s_expiry_key (expiry_key, version->expire_at_ms, id);
            MDB_val ekey = { sizeof expiry_key, expiry_key };
            MDB_val at = { 8, expiry_key };
            rc = mdb_put (txn, self->expiry, &ekey, &empty, 0);
            if (rc == 0)
                rc = mdb_put (txn, self->expiry_of, &key, &at, 0);
        }
    }
    if (rc == 0 && version->cached && key.mv_size == JOB_ID_LEN) {
        // The newest success of a key wins; the job remembers its key so that
        // its deletion takes the entry with it (s_delete_job).
        unsigned char entry[8 + JOB_ID_LEN];
        s_put_be64 (entry, (uint64_t) version->succeeded_at_ms);
        memcpy (entry + 8, id, JOB_ID_LEN);
        MDB_val ckey = { STORE_CACHE_KEY_BYTES, (void *) version->cache_key };
        MDB_val cvalue = { sizeof entry, entry };
        rc = mdb_put (txn, self->cache, &ckey, &cvalue, 0);
        if (rc == 0)
            rc = mdb_put (txn, self->cache_of, &key, &ckey, 0);
    }
    if (rc == 0)
        s_usage_add (tally, version->tenant, (int64_t) version->size - (int64_t) old_size);
    return rc;
}

// s_tokens_write writes the batch's tokens rows in txn (broker/ledger.h:
// they change with the commit of the RESULT that counted them). Returns an
// LMDB code.
static int
s_tokens_write (store_t *self, MDB_txn *txn)
{
    int rc = 0;
    for (s_row_value_t *value = zhashx_first (self->batch_tokens); value && rc == 0;
         value = zhashx_next (self->batch_tokens)) {
        const char *name = zhashx_cursor (self->batch_tokens);
        MDB_val key = { strlen (name), (void *) name }, data = { value->size, value->data };
        if (value->data)
            rc = mdb_put (txn, self->tokens, &key, &data, 0);
        else if ((rc = mdb_del (txn, self->tokens, &key, NULL)) == MDB_NOTFOUND)
            rc = 0;
    }
    return rc;
}

// One version of the batch, by its id, for writing in id order.
typedef struct {
    const char *id;             // the batch's key (the hash owns it)
    const store_version_t *version;
} s_ordered_t;

static int
s_ordered_compare (const void *a, const void *b)
{
    return strcmp (((const s_ordered_t *) a)->id, ((const s_ordered_t *) b)->id);
}

// s_commit_versions writes the batch's version of only_id, or the whole
// batch when only_id is NULL, and with with_tokens the batch's tokens rows,
// in one transaction. Returns an LMDB code.
static int
s_commit_versions (store_t *self, const char *only_id, bool with_tokens)
{
    MDB_txn *txn;
    int rc = mdb_txn_begin (self->env, NULL, 0, &txn);
    if (rc != 0)
        return rc;
    zhashx_t *tally = s_tally_new ();
    if (only_id)
        rc = s_write_version (self, txn, only_id, zhashx_lookup (self->batch, only_id), tally);
    else {
        // In id order. Ids rise (common/clock.h), so a batch's new jobs go to
        // the right edge of the jobs, active and listing trees, and in order
        // they fill each leaf page before the next. In the hash's order they
        // landed between one another and every split left half a page
        // empty: the store took 792 bytes per queued job, 627 in order.
        // An array of pointers and qsort: zhashx_keys copied every key and
        // its list's sort cost 4 % of the broker at the accept ceiling.
        size_t count = 0;
        s_ordered_t *ordered = mem_alloc ((zhashx_size (self->batch) + 1) * sizeof *ordered);
        for (store_version_t *version = zhashx_first (self->batch); version;
             version = zhashx_next (self->batch))
            ordered[count++] = (s_ordered_t) { zhashx_cursor (self->batch), version };
        qsort (ordered, count, sizeof *ordered, s_ordered_compare);
        for (size_t i = 0; i < count && rc == 0; i++)
            rc = s_write_version (self, txn, ordered[i].id, ordered[i].version, tally);
        free (ordered);
    }
    if (rc == 0)
        rc = s_usage_write (self, txn, tally);
    if (rc == 0 && with_tokens)
        rc = s_tokens_write (self, txn);
    if (rc == 0)
        rc = mdb_txn_commit (txn);
    else
        mdb_txn_abort (txn);
    if (rc == 0)
        s_usage_apply (self, tally);
    zhashx_destroy (&tally);
    return rc;
}

// s_commit_each writes the batch one version per transaction after the map
// filled up, so what fits is written and only what does not stays. Returns
// how many were written, or -1 on an error other than a full map.
static long
s_commit_each (store_t *self)
{
    zlistx_t *ids = zhashx_keys (self->batch);
    long written = 0;
    int failure = 0;
    for (const char *id = zlistx_first (ids); id; id = zlistx_next (ids)) {
        // The tokens rows go with the first version that fits.
        bool with_tokens = zhashx_size (self->batch_tokens) > 0;
        int rc = s_commit_versions (self, id, with_tokens);
        if (rc == 0 && with_tokens)
            zhashx_purge (self->batch_tokens);
        if (rc == 0) {
            s_forget_idem (self, zhashx_lookup (self->batch, id));
            zhashx_delete (self->batch, id);
            written++;
        }
        else if (rc != MDB_MAP_FULL) {
            failure = rc;
            break;
        }
    }
    zlistx_destroy (&ids);
    if (failure)
        log_error (NULL, "store: commit failed: %s", mdb_strerror (failure));
    return failure ? -1 : written;
}

int
store_commit (store_t *self)
{
    if (zhashx_size (self->batch) == 0 && zhashx_size (self->batch_tokens) == 0)
        return 0;
    s_reader_release (self);
    size_t pending = zhashx_size (self->batch);
    int rc = s_commit_versions (self, NULL, true);
    if (rc == 0 && self->fsync)
        rc = mdb_env_sync (self->env, 1);
    if (rc == 0) {
        zhashx_purge (self->batch);
        zhashx_purge (self->batch_idem);
        zhashx_purge (self->batch_tokens);
        zhashx_purge (self->batch_cache);
        return 0;
    }
    if (rc != MDB_MAP_FULL && rc != ENOSPC) {
        log_error (NULL, "store: commit of %zu records failed: %s", pending, mdb_strerror (rc));
        errno = EIO;
        return -1;
    }
    long written = s_commit_each (self);
    if (written > 0 && self->fsync && mdb_env_sync (self->env, 1) != 0)
        written = -1;
    if (written < 0) {
        errno = EIO;
        return -1;
    }
    if (zhashx_size (self->batch) == 0)
        return 0;
    log_error (NULL, "store: map full: %ld of %zu records written, %zu wait for space",
               written, pending, zhashx_size (self->batch));
    errno = ENOSPC;
    return -1;
}

// Called by s_each for one entry of a database, in its read transaction;
// true when the entry counts as visited.
typedef bool (s_each_fn) (store_t *self, MDB_txn *txn, const MDB_val *key, const MDB_val *value,
                          void *arg);

// s_each calls fn for every entry of dbi, in key order, in one read
// transaction. Returns how many fn counted, or -1 when the database cannot
// be read.
static long
s_each (store_t *self, MDB_dbi dbi, s_each_fn *fn, void *arg)
{
    MDB_txn *txn;
    MDB_cursor *cursor;
    if (mdb_txn_begin (self->env, NULL, MDB_RDONLY, &txn) != 0)
        return -1;
    if (mdb_cursor_open (txn, dbi, &cursor) != 0) {
        mdb_txn_abort (txn);
        return -1;
    }
    long visited = 0;
    MDB_val key, value;
    int rc = mdb_cursor_get (cursor, &key, &value, MDB_FIRST);
    while (rc == 0) {
        if (fn (self, txn, &key, &value, arg))
            visited++;
        rc = mdb_cursor_get (cursor, &key, &value, MDB_NEXT);
    }
    mdb_cursor_close (cursor);
    mdb_txn_abort (txn);
    return visited;
}

// A scan's function and its argument, through s_each.
typedef struct {
    store_scan_fn *scan;        // store_scan_active's, or NULL
    store_tokens_fn *tokens;    // store_scan_tokens's, or NULL
    void *arg;                  // theirs
} s_scan_t;

// s_active_job hands the record of one active job to the scan.
static bool
s_active_job (store_t *self, MDB_txn *txn, const MDB_val *key, const MDB_val *value, void *arg)
{
    s_scan_t *scan = arg;
    MDB_val record;
    char id[JOB_ID_LEN + 1] = "";
    if (key->mv_size == JOB_ID_LEN)
        memcpy (id, key->mv_data, JOB_ID_LEN);
    if (mdb_get (txn, self->jobs, (MDB_val *) key, &record) != 0)
        return false;
    job_t *job = s_decode (record.mv_data, record.mv_size, id);
    if (job)
        scan->scan (job, scan->arg);
    return job != NULL;
}

long
store_scan_active (store_t *self, store_scan_fn *fn, void *arg)
{
    s_scan_t scan = { .scan = fn, .arg = arg };
    return s_each (self, self->active, s_active_job, &scan);
}

// s_cache_drop removes the cache entry that names a job being deleted, unless
// a newer success of the same key has taken it over.
static void
s_cache_drop (store_t *self, MDB_txn *txn, MDB_val *job_key)
{
    MDB_val ckey, entry;
    if (mdb_get (txn, self->cache_of, job_key, &ckey) != 0)
        return;
    unsigned char key[STORE_CACHE_KEY_BYTES];
    if (ckey.mv_size == STORE_CACHE_KEY_BYTES) {
        memcpy (key, ckey.mv_data, sizeof key);
        MDB_val lookup = { sizeof key, key };
        if (mdb_get (txn, self->cache, &lookup, &entry) == 0 && entry.mv_size == 8 + JOB_ID_LEN
            && job_key->mv_size == JOB_ID_LEN
            && memcmp ((const char *) entry.mv_data + 8, job_key->mv_data, JOB_ID_LEN) == 0)
            mdb_del (txn, self->cache, &lookup, NULL);
    }
    mdb_del (txn, self->cache_of, job_key, NULL);
}

// s_delete_job deletes a finished job's record and index entries, and
// tallies its bytes off its tenant.
static void
s_delete_job (store_t *self, MDB_txn *txn, const char *id, zhashx_t *tally)
{
    MDB_val job_key = { JOB_ID_LEN, (void *) id }, record;
    if (mdb_get (txn, self->jobs, &job_key, &record) != 0)
        return;
    size_t size = record.mv_size;
    job_t *job = s_decode (record.mv_data, record.mv_size, id);
    if (job) {
        unsigned char index_key[512];
        size_t len = s_tenant_key (index_key, job->tenant, job->created_at, id);
        MDB_val ikey = { len, index_key };
        if (len)
            mdb_del (txn, self->tenants, &ikey, NULL);
        len = job->idempotency_key ? s_idem_key (index_key, job->tenant, job->idempotency_key) : 0;
        MDB_val idem_key = { len, index_key };
        if (len)
            mdb_del (txn, self->idem, &idem_key, NULL);
        s_usage_add (tally, job->tenant, -(int64_t) size);
        job_destroy (&job);
    }
    s_cache_drop (self, txn, &job_key);
    mdb_del (txn, self->jobs, &job_key, NULL);
    mdb_del (txn, self->expiry_of, &job_key, NULL);
}

long
store_expire (store_t *self, int64_t now_ms, size_t limit)
{
    s_reader_release (self);
    MDB_txn *txn;
    MDB_cursor *cursor;
    if (mdb_txn_begin (self->env, NULL, 0, &txn) != 0)
        return -1;
    if (mdb_cursor_open (txn, self->expiry, &cursor) != 0) {
        mdb_txn_abort (txn);
        return -1;
    }
    zhashx_t *tally = s_tally_new ();
    long deleted = 0;
    MDB_val key, value;
    int rc = mdb_cursor_get (cursor, &key, &value, MDB_FIRST);
    while (rc == 0 && (size_t) deleted < limit && key.mv_size == 8 + JOB_ID_LEN) {
        const unsigned char *bytes = key.mv_data;
        int64_t at = (int64_t) s_get_be64 (bytes);
        if (at > now_ms)
            break;
        char id[JOB_ID_LEN + 1];
        memcpy (id, bytes + 8, JOB_ID_LEN);
        id[JOB_ID_LEN] = '\0';
        // Only the job's current expiry entry deletes it. A stale one (left
        // by a store written before expiry_of existed, the job requeued or
        // finished again since) is dropped alone.
        MDB_val job_key = { JOB_ID_LEN, id }, found;
        int current = mdb_get (txn, self->expiry_of, &job_key, &found);
        bool stale = current == 0 ? found.mv_size != 8 || s_get_be64 (found.mv_data) != (uint64_t) at
                                  : mdb_get (txn, self->active, &job_key, &found) == 0;
        if (!stale && !zhashx_lookup (self->batch, id))
            s_delete_job (self, txn, id, tally);
        rc = mdb_cursor_del (cursor, 0);
        if (rc == 0) {
            deleted++;
            // The oldest entry is always first: restart from there.
            rc = mdb_cursor_get (cursor, &key, &value, MDB_FIRST);
        }
    }
    mdb_cursor_close (cursor);
    if (rc == 0 || rc == MDB_NOTFOUND)
        rc = s_usage_write (self, txn, tally);
    if (rc != 0) {
        mdb_txn_abort (txn);
        zhashx_destroy (&tally);
        return -1;
    }
    if (mdb_txn_commit (txn) != 0) {
        zhashx_destroy (&tally);
        return -1;
    }
    s_usage_apply (self, tally);
    zhashx_destroy (&tally);
    if (deleted > 0 && self->fsync)
        mdb_env_sync (self->env, 1);
    return deleted;
}

int
store_list (store_t *self, const char *tenant, int status_filter, const char *cursor,
            size_t max_scanned, store_list_fn *fn, void *arg, char *next_cursor)
{
    next_cursor[0] = '\0';
    size_t tenant_len = strlen (tenant);
    unsigned char start[512];
    size_t start_len;
    if (cursor && *cursor) {
        // The cursor is "<created_at ms>.<id>" of the last job returned.
        long long created = 0;
        char id[JOB_ID_LEN + 1] = "";
        if (sscanf (cursor, "%lld.%36s", &created, id) != 2 || !job_id_valid (id, strlen (id)))
            return -1;
        start_len = s_tenant_key (start, tenant, created, id);
    }
    else {
        // Just past this tenant's last possible key.
        start_len = s_tenant_key (start, tenant, INT64_MAX, "ffffffff-ffff-ffff-ffff-ffffffffffff");
    }
    if (!start_len)
        return -1;
    MDB_txn *txn;
    MDB_cursor *mc;
    if (mdb_txn_begin (self->env, NULL, MDB_RDONLY, &txn) != 0)
        return -1;
    if (mdb_cursor_open (txn, self->tenants, &mc) != 0) {
        mdb_txn_abort (txn);
        return -1;
    }
    MDB_val key = { start_len, start }, value;
    int rc = mdb_cursor_get (mc, &key, &value, MDB_SET_RANGE);
    // Step back to the greatest key strictly below the start.
    if (rc == MDB_NOTFOUND)
        rc = mdb_cursor_get (mc, &key, &value, MDB_LAST);
    else if (rc == 0)
        rc = mdb_cursor_get (mc, &key, &value, MDB_PREV);
    size_t scanned = 0;
    bool more = true;
    char last[64] = "";
    if (cursor)
        snprintf (last, sizeof last, "%s", cursor);
    while (rc == 0 && more) {
        if (key.mv_size != tenant_len + 9 + JOB_ID_LEN
            || memcmp (key.mv_data, tenant, tenant_len) != 0
            || ((unsigned char *) key.mv_data)[tenant_len] != 0)
            break; // another tenant's keys: this tenant's are exhausted
        const unsigned char *bytes = (const unsigned char *) key.mv_data + tenant_len + 1;
        uint64_t created = 0;
        for (int i = 0; i < 8; i++)
            created = created << 8 | bytes[i];
        char id[JOB_ID_LEN + 1];
        memcpy (id, bytes + 8, JOB_ID_LEN);
        id[JOB_ID_LEN] = '\0';
        MDB_val job_key = { JOB_ID_LEN, id }, record;
        if (mdb_get (txn, self->jobs, &job_key, &record) == 0) {
            job_t *job = s_decode (record.mv_data, record.mv_size, id);
            if (job && (status_filter < 0 || (int) job->status == status_filter)) {
                store_list_step_t step = fn (job, arg);
                if (step == STORE_LIST_FULL) {
                    // The cursor stays before this job: the next page starts with it.
                    more = false;
                    break;
                }
                more = step == STORE_LIST_MORE;
            }
            else
                job_destroy (&job);
        }
        snprintf (last, sizeof last, "%lld.%s", (long long) created, id);
        if (++scanned >= max_scanned)
            break;
        rc = mdb_cursor_get (mc, &key, &value, MDB_PREV);
    }
    // More may follow when we stopped early; an exhausted scan has no cursor.
    if ((!more || scanned >= max_scanned) && rc == 0)
        snprintf (next_cursor, 64, "%s", last);
    mdb_cursor_close (mc);
    mdb_txn_abort (txn);
    return 0;
}

void
store_put_tokens (store_t *self, const char *key, const uint64_t *counts)
{
    s_row_value_t *row = mem_calloc (1, sizeof *row);
    if (counts) {
        row->size = 8 * STORE_TOKENS_COUNTS;
        row->data = mem_alloc (row->size);
        for (int i = 0; i < STORE_TOKENS_COUNTS; i++)
            s_put_be64 (row->data + 8 * i, counts[i]);
    }
    zhashx_update (self->batch_tokens, key, row);
}

// s_token_row hands one committed tokens row to the scan; false for one
// that is not a row.
static bool
s_token_row (store_t *self, MDB_txn *txn, const MDB_val *key, const MDB_val *value, void *arg)
{
    s_scan_t *scan = arg;
    char name[512];
    uint64_t counts[STORE_TOKENS_COUNTS];
    if (value->mv_size != sizeof counts || key->mv_size >= sizeof name
        || memchr (key->mv_data, '\0', key->mv_size))
        return false;
    memcpy (name, key->mv_data, key->mv_size);
    name[key->mv_size] = '\0';
    for (int i = 0; i < STORE_TOKENS_COUNTS; i++)
        counts[i] = s_get_be64 ((const unsigned char *) value->mv_data + 8 * i);
    scan->tokens (name, key->mv_size, counts, scan->arg);
    return true;
}

long
store_scan_tokens (store_t *self, store_tokens_fn *fn, void *arg)
{
    s_scan_t scan = { .tokens = fn, .arg = arg };
    return s_each (self, self->tokens, s_token_row, &scan);
}

size_t
store_count (store_t *self)
{
    MDB_txn *txn;
    MDB_stat stat;
    if (mdb_txn_begin (self->env, NULL, MDB_RDONLY, &txn) != 0)
        return 0;
    size_t count = mdb_stat (txn, self->jobs, &stat) == 0 ? stat.ms_entries : 0;
    mdb_txn_abort (txn);
    return count;
}

uint64_t
store_tenant_bytes (store_t *self, const char *tenant)
{
    uint64_t *bytes = zhashx_lookup (self->usage_bytes, tenant);
    return bytes ? *bytes : 0;
}

uint64_t
store_used_bytes (store_t *self, uint64_t *map_bytes)
{
    MDB_envinfo info;
    MDB_stat stat;
    *map_bytes = 0;
    if (mdb_env_info (self->env, &info) != 0 || mdb_env_stat (self->env, &stat) != 0)
        return 0;
    *map_bytes = info.me_mapsize;
    // Under half the map, the pages ever written bound what is in use: no
    // need to count the free ones. Not above: that bound never falls when
    // records are deleted, and a caller's line may be as low as half the map
    // (the broker's reserve is at most half of it), which it would then
    // never see the store go back under.
    uint64_t pages = (uint64_t) info.me_last_pgno + 1;
    if (pages * stat.ms_psize < info.me_mapsize / 2)
        return pages * stat.ms_psize;
    // Pages free for reuse are listed in LMDB's free-page database (dbi 0):
    // each record is an array whose first word is its page count.
    MDB_txn *txn;
    uint64_t free_pages = 0;
    if (mdb_txn_begin (self->env, NULL, MDB_RDONLY, &txn) == 0) {
        MDB_cursor *cursor;
        if (mdb_cursor_open (txn, 0, &cursor) == 0) {
            MDB_val key, value;
            int rc = mdb_cursor_get (cursor, &key, &value, MDB_FIRST);
            while (rc == 0) {
                size_t count;
                if (value.mv_size >= sizeof count) {
                    memcpy (&count, value.mv_data, sizeof count);
                    free_pages += count;
                }
                rc = mdb_cursor_get (cursor, &key, &value, MDB_NEXT);
            }
            mdb_cursor_close (cursor);
        }
        mdb_txn_abort (txn);
    }
    return (pages > free_pages ? pages - free_pages : 0) * stat.ms_psize;
}

const unsigned char *
store_lease_key (store_t *self)
{
    return self->lease_key;
}

void
store_inject_map_full (store_t *self, size_t max_record_bytes)
{
    self->fault_max_record = max_record_bytes;
}

static void
s_test_scan_fn (job_t *job, void *arg)
{
    int *seen = arg;
    assert (job->status == JOB_RUNNING);
    (*seen)++;
    job_destroy (&job);
}

// s_test_job makes a job of tenant with a result of result_bytes.
static job_t *
s_test_job (const char *tenant, job_status_t status, size_t result_bytes)
{
    job_t *job = job_new ();
    job_id_generate (job->id);
    job_set_str (&job->tenant, tenant);
    job_set_str (&job->kind, "http");
    job_set_str (&job->spec, "{}");
    job->status = status;
    job->created_at = 1;
    if (result_bytes) {
        job->result = malloc (result_bytes + 1);
        memset (job->result, 'r', result_bytes);
        job->result[result_bytes] = '\0';
    }
    return job;
}

// s_test_size is the encoded size of a job's record.
static size_t
s_test_size (const job_t *job)
{
    pack_writer_t *writer = pack_writer_new ();
    job_pack (job, writer);
    size_t size;
    pack_writer_data (writer, &size);
    pack_writer_destroy (&writer);
    return size;
}

// s_test_packed: a batch of new jobs fills the jobs and active trees'
// leaf pages, whatever order the jobs were put in (the batch is a hash).
// Written out of order, each page split leaves half a page empty: about
// twice the pages counted here.
static void
s_test_packed (void)
{
    char dir[] = "/tmp/jobgate-store-packed-XXXXXX";
    assert (mkdtemp (dir));
    char error[256];
    store_t *store = store_new (dir, 64, false, error, sizeof error);
    assert (store);
    enum { JOBS = 4000 };
    size_t job_bytes = 0, active_bytes = 0;
    for (int i = 0; i < JOBS; i++) {
        job_t *job = s_test_job ("t", JOB_QUEUED, 0);
        // A leaf node: 8 bytes of header, the key, the data, and its
        // 2-byte slot in the page (LMDB's NODESIZE and indx_t).
        job_bytes += 8 + JOB_ID_LEN + s_test_size (job) + 2;
        active_bytes += 8 + JOB_ID_LEN + 2;
        store_put (store, job, 0, true);
        job_destroy (&job);
    }
    assert (store_commit (store) == 0);
    MDB_txn *txn;
    MDB_stat jobs, active;
    assert (mdb_txn_begin (store->env, NULL, MDB_RDONLY, &txn) == 0);
    assert (mdb_stat (txn, store->jobs, &jobs) == 0 && mdb_stat (txn, store->active, &active) == 0);
    mdb_txn_abort (txn);
    assert (jobs.ms_entries == JOBS && active.ms_entries == JOBS);
    // Pages nearly full (16 bytes of page header; a node does not span
    // pages): measured 1.15 and 1.04 times the bytes, 1.75 and 1.6 times in
    // the hash's order.
    size_t room = jobs.ms_psize - 16;
    assert (jobs.ms_leaf_pages <= job_bytes / room * 5 / 4 + 2);
    assert (active.ms_leaf_pages <= active_bytes / room * 5 / 4 + 2);
    store_destroy (&store);
    char command[100];
    snprintf (command, sizeof command, "rm -rf '%s'", dir);
    assert (system (command) == 0);
}

// s_test_used: what the store reports in use falls when records are
// deleted, above half the map (where the broker's line may be) as well as
// near its end; the pages ever written only bound it below half the map.
static void
s_test_used (void)
{
    char dir[] = "/tmp/jobgate-store-used-XXXXXX";
    assert (mkdtemp (dir));
    char error[256];
    store_t *store = store_new (dir, 16, false, error, sizeof error);
    assert (store);
    char ids[10][JOB_ID_LEN + 1];
    for (int i = 0; i < 10; i++) {
        job_t *job = s_test_job ("t", JOB_SUCCEEDED, 1000000);
        strcpy (ids[i], job->id);
        store_put (store, job, 1000, true);
    assert (store_commit (store) == 0);
        job_destroy (&job);
    }
    uint64_t map, used = store_used_bytes (store, &map);
    assert (map == 16 * 1024 * 1024 && used > 10000000 && used < map / 10 * 7);
    assert (store_expire (store, 1000, 100) == 10);
    used = store_used_bytes (store, &map);
    if (used >= 1000000)
        fprintf (stderr, "store: %llu bytes used after the deletes\n", (unsigned long long) used);
    assert (used < 1000000);
    store_destroy (&store);
    char command[100];
    snprintf (command, sizeof command, "rm -rf '%s'", dir);
    assert (system (command) == 0);
}

// s_test_hardening covers issues 10 #4 and 17 #9: one expiry per job, the
// bytes per tenant (kept across restarts, rebuilt for an older store), and
// a full map that holds back only what does not fit.
static void
s_test_hardening (const char *dir)
{
    char error[256];
    store_t *store = store_new (dir, 64, false, error, sizeof error);
    assert (store);
    unsigned flags = 0;
    assert (mdb_env_get_flags (store->env, &flags) == 0);
    assert ((flags & MDB_NOSYNC) && !(flags & MDB_NOMETASYNC));
    uint64_t tenant_before = store_tenant_bytes (store, "t");
    unsigned char key[STORE_LEASE_KEY_BYTES];
    memcpy (key, store_lease_key (store), sizeof key);
    assert (!sodium_is_zero (key, sizeof key));

    // A job finished (expiry 1000), retried, finished again (expiry 5000):
    // the first finish's expiry no longer deletes it.
    job_t *job = s_test_job ("t", JOB_FAILED, 0);
    store_put (store, job, 1000, true);
    assert (store_commit (store) == 0);
    size_t size = s_test_size (job);
    assert (store_tenant_bytes (store, "t") == tenant_before + size);
    job->status = JOB_QUEUED;
    store_put (store, job, 0, false);
    assert (store_commit (store) == 0);
    job->status = JOB_FAILED;
    store_put (store, job, 5000, false);
    assert (store_commit (store) == 0);
    assert (store_expire (store, 2000, 10) == 0);
    job_t *read = store_get (store, job->id);
    assert (read);
    job_destroy (&read);
    assert (store_expire (store, 5000, 10) == 1);
    assert (store_get (store, job->id) == NULL);
    assert (store_tenant_bytes (store, "t") == tenant_before);
    // Finished, then retried and still running: no expiry deletes it.
    job->status = JOB_SUCCEEDED;
    job_id_generate (job->id);
    store_put (store, job, 3000, true);
    assert (store_commit (store) == 0);
    job->status = JOB_RUNNING;
    store_put (store, job, 0, false);
    assert (store_commit (store) == 0);
    assert (store_expire (store, 10000, 10) == 0);
    read = store_get (store, job->id);
    assert (read && read->status == JOB_RUNNING);
    job_destroy (&read);

    // Bytes per tenant: a record's versions replace each other.
    job_t *big = s_test_job ("u", JOB_QUEUED, 0);
    store_put (store, big, 0, true);
    assert (store_commit (store) == 0);
    big->status = JOB_SUCCEEDED;
    job_set_str (&big->result, "{\"status\":200,\"body\":\"0123456789\"}");
    store_put (store, big, 9000, false);
    assert (store_commit (store) == 0);
    size_t big_size = s_test_size (big);
    assert (store_tenant_bytes (store, "u") == big_size);
    uint64_t map = 0, used = store_used_bytes (store, &map);
    assert (map == 64ULL * 1024 * 1024 && used > 0 && used < map);
    store_destroy (&store);

    // Across a restart; and rebuilt for a store that never counted them.
    store = store_new (dir, 64, false, error, sizeof error);
    assert (store && store_tenant_bytes (store, "u") == big_size);
    assert (memcmp (store_lease_key (store), key, sizeof key) == 0);
    uint64_t t_bytes = store_tenant_bytes (store, "t");
    MDB_txn *txn;
    assert (mdb_txn_begin (store->env, NULL, 0, &txn) == 0);
    assert (mdb_drop (txn, store->usage, 0) == 0);
    MDB_val flag = { 5, (void *) "usage" };
    assert (mdb_del (txn, store->meta, &flag, NULL) == 0);
    assert (mdb_txn_commit (txn) == 0);
    store_destroy (&store);
    store = store_new (dir, 64, false, error, sizeof error);
    assert (store && store_tenant_bytes (store, "u") == big_size);
    assert (store_tenant_bytes (store, "t") == t_bytes);

    // A full map: the version that does not fit waits, the others are
    // written; the sweep still deletes.
    store_inject_map_full (store, 2048);
    job_t *small = s_test_job ("u", JOB_QUEUED, 0);
    job_t *huge = s_test_job ("u", JOB_SUCCEEDED, 4096);
    store_put (store, small, 0, true);
    store_put (store, huge, 20000, true);
    errno = 0;
    assert (store_commit (store) == -1 && errno == ENOSPC);
    assert (store_pending (store) == 1 && store_pending_has (store, huge->id));
    assert (!store_pending_has (store, small->id));
    store_inject_map_full (store, 0);
    assert (store_commit (store) == -1 && errno == ENOSPC);
    assert (store_expire (store, 9000, 10) == 1);
    assert (store_tenant_bytes (store, "u") == s_test_size (small));
    // A new job never committed can be dropped; a committed one cannot.
    assert (store_discard (store, small->id) == -1);
    assert (store_discard (store, huge->id) == 0 && store_pending (store) == 0);
    store_inject_map_full (store, SIZE_MAX);
    assert (store_commit (store) == 0);
    assert (store_indexable ("t", "key") && store_indexable ("t", NULL));
    char long_tenant[600];
    memset (long_tenant, 'x', sizeof long_tenant - 1);
    long_tenant[sizeof long_tenant - 1] = '\0';
    assert (!store_indexable (long_tenant, NULL));
    assert (!store_indexable ("t", long_tenant));
    store_destroy (&store);
    job_destroy (&job);
    job_destroy (&big);
    job_destroy (&small);
    job_destroy (&huge);
}

// s_test_row_fn checks the committed tokens rows, in key order: row-a
// holding 1, 2, 3, 5, then row-b holding 2, 20, 30, UINT64_MAX; counts them
// in *arg.
static void
s_test_row_fn (const char *key, size_t key_len, const uint64_t *counts, void *arg)
{
    int *rows = arg;
    assert (key_len == 5 && strcmp (key, *rows == 0 ? "row-a" : "row-b") == 0);
    assert (counts[0] == (*rows == 0 ? 1 : 2) && counts[1] == (*rows == 0 ? 2 : 20));
    assert (counts[3] == (*rows == 0 ? 5 : UINT64_MAX));
    (*rows)++;
}

// s_test_cache: the cache index is found before and after its commit,
// survives a reopen, gives way to a newer success of the same key, and goes
// with the job it names, never with a newer one's.
static void
s_test_cache (void)
{
    char dir[] = "/tmp/jobgate-store-cache-XXXXXX";
    assert (mkdtemp (dir));
    char error[256], id[JOB_ID_LEN + 1];
    int64_t at = 0;
    store_t *store = store_new (dir, 16, false, error, sizeof error);
    assert (store);
    unsigned char key[STORE_CACHE_KEY_BYTES], other[STORE_CACHE_KEY_BYTES];
    memset (key, 0xa5, sizeof key);
    memset (other, 0x5a, sizeof other);
    assert (store_cache_find (store, key, id, &at) == -1);

    job_t *first = s_test_job ("a", JOB_SUCCEEDED, 10);
    store_put (store, first, 5000, true);
    store_cache_index (store, first->id, key, 1000);
    assert (store_cache_find (store, key, id, &at) == 0);
    assert (strcmp (id, first->id) == 0 && at == 1000);
    assert (store_cache_find (store, other, id, &at) == -1);
    assert (store_commit (store) == 0);
    store_destroy (&store);
    store = store_new (dir, 16, false, error, sizeof error);
    assert (store);
    assert (store_cache_find (store, key, id, &at) == 0);
    assert (strcmp (id, first->id) == 0 && at == 1000);

    // A later version of the job in the same batch drops its index.
    job_t *dropped = s_test_job ("a", JOB_SUCCEEDED, 10);
    store_put (store, dropped, 5000, true);
    store_cache_index (store, dropped->id, other, 1500);
    store_put (store, dropped, 5000, false);
    assert (store_cache_find (store, other, id, &at) == -1);
    assert (store_commit (store) == 0);
    assert (store_cache_find (store, other, id, &at) == -1);

    // A newer success takes the key over; the older job's expiry leaves it.
    job_t *second = s_test_job ("a", JOB_SUCCEEDED, 10);
    store_put (store, second, 9000, true);
    store_cache_index (store, second->id, key, 2000);
    assert (store_commit (store) == 0);
    assert (store_cache_find (store, key, id, &at) == 0);
    assert (strcmp (id, second->id) == 0 && at == 2000);
    assert (store_expire (store, 5000, 10) == 2);
    assert (store_cache_find (store, key, id, &at) == 0 && strcmp (id, second->id) == 0);
    // The newest one's expiry takes the entry with it.
    assert (store_expire (store, 9000, 10) == 1);
    assert (store_cache_find (store, key, id, &at) == -1);
    assert (store_count (store) == 0);

    job_destroy (&first);
    job_destroy (&dropped);
    job_destroy (&second);
    store_destroy (&store);
    char command[128];
    snprintf (command, sizeof command, "rm -rf '%s'", dir);
    assert (system (command) == 0);
}

void
store_test (bool verbose)
{
    if (verbose)
        printf (" * store: ");
    char dir[] = "/tmp/jobgate-store-test-XXXXXX";
    assert (mkdtemp (dir));
    char error[256];
    store_t *store = store_new (dir, 64, true, error, sizeof error);
    assert (store);
    // fsync: data synced before the meta page that names it, never after.
    unsigned flags = 0;
    assert (mdb_env_get_flags (store->env, &flags) == 0);
    assert ((flags & MDB_NOMETASYNC) && !(flags & MDB_NOSYNC));

    job_t *job = job_new ();
    job_id_generate (job->id);
    job_set_str (&job->kind, "http");
    job_set_str (&job->spec, "{}");
    job->created_at = 1;
    store_put (store, job, 0, true);
    job->status = JOB_RUNNING;
    store_put (store, job, 0, true);
    assert (store_pending (store) == 1);
    job_t *read = store_get (store, job->id);
    assert (read && read->status == JOB_RUNNING);
    job_destroy (&read);
    assert (store_commit (store) == 0);
    assert (store_pending (store) == 0);
    read = store_get (store, job->id);
    assert (read && read->status == JOB_RUNNING);
    job_destroy (&read);

    job_t *done = job_new ();
    job_id_generate (done->id);
    job_set_str (&done->kind, "http");
    job_set_str (&done->spec, "{}");
    done->status = JOB_SUCCEEDED;
    store_put (store, done, 1000, true);
    // Tokens rows go with the commit; a later value replaces an earlier
    // one, a NULL deletes; a commit of rows alone writes them too.
    const uint64_t one[STORE_TOKENS_COUNTS] = { 1, 2, 3, 5 };
    const uint64_t two[STORE_TOKENS_COUNTS] = { 2, 20, 30, UINT64_MAX };
    store_put_tokens (store, "row-b", two);
    store_put_tokens (store, "row-a", two);
    store_put_tokens (store, "row-c", one);
    store_put_tokens (store, "row-a", one);
    int rows = 0;
    assert (store_scan_tokens (store, s_test_row_fn, &rows) == 0);
    assert (store_commit (store) == 0);
    assert (store_count (store) == 2);
    store_put_tokens (store, "row-c", NULL);
    assert (store_commit (store) == 0);
    store_destroy (&store);

    // Reopen: the active job is found by the scan, the finished one is not.
    store = store_new (dir, 64, false, error, sizeof error);
    assert (store);
    assert (store_scan_tokens (store, s_test_row_fn, &rows) == 2 && rows == 2);
    int seen = 0;
    assert (store_scan_active (store, s_test_scan_fn, &seen) == 1);
    assert (seen == 1);
    assert (store_expire (store, 999, 10) == 0);
    assert (store_expire (store, 1000, 10) == 1);
    assert (store_count (store) == 1);
    read = store_get (store, done->id);
    assert (read == NULL);
    store_destroy (&store);
    store_destroy (&store);
    s_test_hardening (dir);
    s_test_used ();
    s_test_packed ();
    s_test_cache ();

    // A damaged store is refused with a clear line.
    char path[300];
    snprintf (path, sizeof path, "%s/data.mdb", dir);
    FILE *file = fopen (path, "r+");
    assert (file);
    char garbage[8192];
    memset (garbage, 0x5a, sizeof garbage);
    fwrite (garbage, 1, sizeof garbage, file);
    fclose (file);
    store = store_new (dir, 64, true, error, sizeof error);
    assert (store == NULL);
    assert (strstr (error, "store: cannot open"));

    job_destroy (&job);
    job_destroy (&done);
    snprintf (path, sizeof path, "%s/data.mdb", dir);
    unlink (path);
    snprintf (path, sizeof path, "%s/lock.mdb", dir);
    unlink (path);
    rmdir (dir);
    if (verbose)
        printf ("OK\n");
}
