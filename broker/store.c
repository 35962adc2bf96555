#include "store.h"
#include "log.h"

#include <assert.h>
#include <czmq.h>
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
    char *tenant;               // for the indexes (is_new only)
    char *idempotency_key;      // for the idem index (is_new only), or NULL
    int64_t created_at;         // for the listing index
} store_version_t;

struct _store_t {
    MDB_env *env;               // the LMDB environment
    MDB_dbi jobs;               // id → record
    MDB_dbi active;             // id → "" for non-terminal jobs
    MDB_dbi expiry;             // be64(expire_at) ‖ id → ""
    MDB_dbi tenants;            // tenant ‖ NUL ‖ be64(created_at) ‖ id → ""
    MDB_dbi idem;               // tenant ‖ NUL ‖ idempotency key → id
    zhashx_t *batch;            // id → store_version_t waiting for commit
    zhashx_t *batch_idem;       // tenant ‖ NUL-as-'\x1f' ‖ key → id, uncommitted
    bool fsync;                 // sync each commit
    MDB_txn *reader;            // read transaction kept for point reads, or
                                // NULL; reset (holding no snapshot) while
                                // reader_live is false
    bool reader_live;           // reader shows the last commit
};

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

store_t *
store_new (const char *dir, size_t map_mb, bool fsync, char *error, size_t error_size)
{
    if (mkdir (dir, 0700) < 0 && errno != EEXIST) {
        snprintf (error, error_size, "store: cannot create %s: %s", dir, strerror (errno));
        return NULL;
    }
    store_t *self = calloc (1, sizeof *self);
    int rc = mdb_env_create (&self->env);
    if (rc == 0)
        rc = mdb_env_set_maxdbs (self->env, 8);
    if (rc == 0)
        rc = mdb_env_set_mapsize (self->env, map_mb * 1024 * 1024);
    // MDB_NOSYNC: commits reach the OS at once (a process crash loses
    // nothing); with fsync we sync ourselves after each group commit.
    // MDB_NOTLS: read transactions are not tied to threads.
    if (rc == 0)
        rc = mdb_env_open (self->env, dir, MDB_NOSYNC | MDB_NOTLS, 0600);
    if (rc != 0) {
        snprintf (error, error_size, "store: cannot open %s: %s%s", dir, mdb_strerror (rc),
                  rc == MDB_INVALID || rc == MDB_VERSION_MISMATCH || rc == MDB_CORRUPTED
                      ? " (the store is damaged or not an LMDB store)"
                      : "");
        mdb_env_close (self->env);
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
        rc = mdb_dbi_open (txn, "tenants", MDB_CREATE, &self->tenants);
    if (rc == 0)
        rc = mdb_dbi_open (txn, "idem", MDB_CREATE, &self->idem);
    if (rc == 0)
        rc = mdb_txn_commit (txn);
    else
        mdb_txn_abort (txn);
    if (rc != 0) {
        snprintf (error, error_size, "store: cannot open databases in %s: %s", dir,
                  mdb_strerror (rc));
        mdb_env_close (self->env);
        free (self);
        return NULL;
    }
    self->fsync = fsync;
    self->batch = zhashx_new ();
    zhashx_set_destructor (self->batch, s_version_destroy);
    self->batch_idem = zhashx_new ();
    zhashx_set_destructor (self->batch_idem, (zhashx_destructor_fn *) zstr_free);
    zhashx_set_duplicator (self->batch_idem, (zhashx_duplicator_fn *) strdup);
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
    free (self);
    *self_p = NULL;
}

// s_idem_name is the batch_idem key of a tenant's idempotency key; the
// caller frees it.
static char *
s_idem_name (const char *tenant, const char *key)
{
    size_t tenant_len = strlen (tenant), key_len = strlen (key);
    char *name = malloc (tenant_len + key_len + 2);
    memcpy (name, tenant, tenant_len);
    name[tenant_len] = '\x1f';
    memcpy (name + tenant_len + 1, key, key_len + 1);
    return name;
}

int
store_put (store_t *self, const job_t *job, int64_t expire_at_ms, bool is_new)
{
    pack_writer_t *writer = pack_writer_new ();
    if (!writer)
        return -1;
    job_pack (job, writer);
    size_t size;
    const void *data = pack_writer_data (writer, &size);
    store_version_t *version = calloc (1, sizeof *version);
    void *copy = malloc (size);
    if (!version || !copy) {
        free (version);
        free (copy);
        pack_writer_destroy (&writer);
        return -1;
    }
    memcpy (copy, data, size);
    pack_writer_destroy (&writer);
    *version = (store_version_t) { .data = copy, .size = size,
                                   .active = !job_status_terminal (job->status),
                                   .expire_at_ms = expire_at_ms,
                                   .created_at = job->created_at };
    // A later version in the same batch keeps the first one's indexing.
    store_version_t *older = zhashx_lookup (self->batch, job->id);
    if (is_new || (older && older->is_new)) {
        version->is_new = true;
        version->tenant = strdup (job->tenant ? job->tenant : "");
        if (job->idempotency_key) {
            version->idempotency_key = strdup (job->idempotency_key);
            char *name = s_idem_name (version->tenant, job->idempotency_key);
            zhashx_update (self->batch_idem, name, (void *) job->id);
            free (name);
        }
    }
    // zhashx_update replaces (and destroys) an older version in the batch.
    zhashx_update (self->batch, job->id, version);
    return 0;
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
    uint64_t at = (uint64_t) created_at;
    for (int i = 7; i >= 0; i--) {
        key[tenant_len + 1 + i] = (unsigned char) at;
        at >>= 8;
    }
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

// s_expiry_key writes be64(expire_at) ‖ id into key (8 + 36 bytes).
static void
s_expiry_key (unsigned char *key, int64_t expire_at_ms, const char *id)
{
    uint64_t at = (uint64_t) expire_at_ms;
    for (int i = 7; i >= 0; i--) {
        key[i] = (unsigned char) at;
        at >>= 8;
    }
    memcpy (key + 8, id, JOB_ID_LEN);
}

int
store_commit (store_t *self)
{
    if (zhashx_size (self->batch) == 0)
        return 0;
    s_reader_release (self);
    MDB_txn *txn;
    int rc = mdb_txn_begin (self->env, NULL, 0, &txn);
    if (rc != 0) {
        log_error (NULL, "store: begin: %s", mdb_strerror (rc));
        errno = rc == MDB_MAP_FULL ? ENOSPC : EIO;
        return -1;
    }
    MDB_val empty = { 0, (void *) "" };
    for (store_version_t *version = zhashx_first (self->batch); version && rc == 0;
         version = zhashx_next (self->batch)) {
        const char *id = zhashx_cursor (self->batch);
        MDB_val key = { strlen (id), (void *) id };
        MDB_val value = { version->size, version->data };
        rc = mdb_put (txn, self->jobs, &key, &value, 0);
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
        if (rc == 0 && version->active)
            rc = mdb_put (txn, self->active, &key, &empty, 0);
        else if (rc == 0) {
            rc = mdb_del (txn, self->active, &key, NULL);
            if (rc == MDB_NOTFOUND)
                rc = 0;
            if (rc == 0 && version->expire_at_ms > 0) {
                unsigned char expiry_key[8 + JOB_ID_LEN];
                s_expiry_key (expiry_key, version->expire_at_ms, id);
                MDB_val ekey = { sizeof expiry_key, expiry_key };
                rc = mdb_put (txn, self->expiry, &ekey, &empty, 0);
            }
        }
    }
    if (rc == 0)
        rc = mdb_txn_commit (txn);
    else
        mdb_txn_abort (txn);
    if (rc == 0 && self->fsync)
        rc = mdb_env_sync (self->env, 1);
    if (rc != 0) {
        log_error (NULL, "store: commit of %zu records failed: %s", zhashx_size (self->batch),
                   mdb_strerror (rc));
        errno = rc == MDB_MAP_FULL || rc == ENOSPC ? ENOSPC : EIO;
        return -1;
    }
    zhashx_purge (self->batch);
    zhashx_purge (self->batch_idem);
    return 0;
}

long
store_scan_active (store_t *self, store_scan_fn *fn, void *arg)
{
    MDB_txn *txn;
    MDB_cursor *cursor;
    if (mdb_txn_begin (self->env, NULL, MDB_RDONLY, &txn) != 0)
        return -1;
    if (mdb_cursor_open (txn, self->active, &cursor) != 0) {
        mdb_txn_abort (txn);
        return -1;
    }
    long visited = 0;
    MDB_val key, value;
    int rc = mdb_cursor_get (cursor, &key, &value, MDB_FIRST);
    while (rc == 0) {
        MDB_val record;
        char id[JOB_ID_LEN + 1] = "";
        if (key.mv_size == JOB_ID_LEN)
            memcpy (id, key.mv_data, JOB_ID_LEN);
        if (mdb_get (txn, self->jobs, &key, &record) == 0) {
            job_t *job = s_decode (record.mv_data, record.mv_size, id);
            if (job) {
                fn (job, arg);
                visited++;
            }
        }
        rc = mdb_cursor_get (cursor, &key, &value, MDB_NEXT);
    }
    mdb_cursor_close (cursor);
    mdb_txn_abort (txn);
    return visited;
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
    long deleted = 0;
    MDB_val key, value;
    int rc = mdb_cursor_get (cursor, &key, &value, MDB_FIRST);
    while (rc == 0 && (size_t) deleted < limit && key.mv_size == 8 + JOB_ID_LEN) {
        const unsigned char *bytes = key.mv_data;
        uint64_t at = 0;
        for (int i = 0; i < 8; i++)
            at = at << 8 | bytes[i];
        if ((int64_t) at > now_ms)
            break;
        char id[JOB_ID_LEN + 1];
        memcpy (id, bytes + 8, JOB_ID_LEN);
        id[JOB_ID_LEN] = '\0';
        // A job requeued by a retry after it finished is active again: the
        // stale expiry entry must not delete it.
        MDB_val job_key = { JOB_ID_LEN, id }, active_value;
        MDB_val record;
        if (mdb_get (txn, self->active, &job_key, &active_value) == MDB_NOTFOUND
            && !zhashx_lookup (self->batch, id)
            && mdb_get (txn, self->jobs, &job_key, &record) == 0) {
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
                job_destroy (&job);
            }
            mdb_del (txn, self->jobs, &job_key, NULL);
        }
        rc = mdb_cursor_del (cursor, 0);
        if (rc == 0) {
            deleted++;
            // The oldest entry is always first: restart from there.
            rc = mdb_cursor_get (cursor, &key, &value, MDB_FIRST);
        }
    }
    mdb_cursor_close (cursor);
    if (rc != 0 && rc != MDB_NOTFOUND) {
        mdb_txn_abort (txn);
        return -1;
    }
    if (mdb_txn_commit (txn) != 0)
        return -1;
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

static void
s_test_scan_fn (job_t *job, void *arg)
{
    int *seen = arg;
    assert (job->status == JOB_RUNNING);
    (*seen)++;
    job_destroy (&job);
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

    job_t *job = job_new ();
    job_id_generate (job->id);
    job_set_str (&job->kind, "http");
    job_set_str (&job->spec, "{}");
    job->created_at = 1;
    assert (store_put (store, job, 0, true) == 0);
    job->status = JOB_RUNNING;
    assert (store_put (store, job, 0, true) == 0);
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
    assert (store_put (store, done, 1000, true) == 0);
    assert (store_commit (store) == 0);
    assert (store_count (store) == 2);
    store_destroy (&store);

    // Reopen: the active job is found by the scan, the finished one is not.
    store = store_new (dir, 64, false, error, sizeof error);
    assert (store);
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
