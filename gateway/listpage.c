// listpage — one page of GET /v1/jobs, rendered as it is sent.
#include "listpage.h"
#include "job.h"
#include "jsontext.h"
#include "mem.h"

#include <assert.h>
#include <stdio.h>
#include <string.h>

struct _listpage_t {
    char *tenant;               // the caller: records of others are skipped
    void **records;             // packed job records, newest first
    size_t *sizes;              // their sizes
    size_t count;               // records
    size_t next;                // the record to render next
    char *cursor;               // next_cursor, or NULL at the end of the listing
    char *piece;                // what is being handed over
    size_t piece_len;           // its length
    size_t piece_offset;        // bytes of it handed over
    bool any;                   // a job was written (commas)
    bool ended;                 // the closing piece was made
};

listpage_t *
listpage_new (pack_reader_t *body, const char *tenant)
{
    listpage_t *self = mem_calloc (1, sizeof *self);
    const msgpack_object_array *records = pack_get_array (body, "jobs");
    size_t count = records ? records->size : 0;
    self->tenant = mem_strdup (tenant);
    self->records = mem_calloc (count + 1, sizeof *self->records);
    self->sizes = mem_calloc (count + 1, sizeof *self->sizes);
    self->cursor = pack_get_strdup (body, "next_cursor");
    for (uint32_t i = 0; i < count; i++) {
        const msgpack_object *item = &records->ptr[i];
        if (item->type != MSGPACK_OBJECT_BIN)
            continue;
        void *copy = mem_alloc (item->via.bin.size ? item->via.bin.size : 1);
        memcpy (copy, item->via.bin.ptr, item->via.bin.size);
        self->records[self->count] = copy;
        self->sizes[self->count++] = item->via.bin.size;
    }
    return self;
}

void
listpage_destroy (listpage_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    listpage_t *self = *self_p;
    for (size_t i = 0; i < self->count; i++)
        free (self->records[i]);
    free (self->records);
    free (self->sizes);
    free (self->tenant);
    free (self->cursor);
    free (self->piece);
    free (self);
    *self_p = NULL;
}

// s_next_piece makes the next piece: the opening and one job (a comma
// first but for the first), or the closing with next_cursor. False at the
// end.
static bool
s_next_piece (listpage_t *self)
{
    free (self->piece);
    self->piece = NULL;
    self->piece_len = self->piece_offset = 0;
    while (self->next < self->count) {
        size_t index = self->next++;
        pack_reader_t *reader = pack_reader_new (self->records[index], self->sizes[index]);
        job_t *job = reader ? job_unpack (reader) : NULL;
        char *text = job && strcmp (job->tenant, self->tenant) == 0 ? job_render (job) : NULL;
        job_destroy (&job);
        pack_reader_destroy (&reader);
        free (self->records[index]);
        self->records[index] = NULL;
        if (!text)
            continue;
        size_t len = strlen (text);
        self->piece = mem_alloc (len + 16);
        self->piece_len = (size_t) sprintf (self->piece, "%s%s", self->any ? "," : "{\"jobs\":[",
                                            text);
        self->any = true;
        free (text);
        return true;
    }
    if (self->ended)
        return false;
    self->ended = true;
    json_t *cursor = self->cursor ? json_string (self->cursor) : json_null ();
    // A cursor that is not UTF-8 text cannot be one this API returned.
    char *cursor_text = cursor ? jsontext_dump (cursor) : NULL;
    json_decref (cursor);
    mem_abort_if (asprintf (&self->piece, "%s],\"next_cursor\":%s}",
                            self->any ? "" : "{\"jobs\":[", cursor_text ? cursor_text : "null")
                  < 0);
    free (cursor_text);
    self->piece_len = strlen (self->piece);
    return true;
}

size_t
listpage_read (listpage_t *self, char *buf, size_t max)
{
    if (self->piece_offset == self->piece_len && !s_next_piece (self))
        return 0;
    size_t n = self->piece_len - self->piece_offset;
    if (n > max)
        n = max;
    memcpy (buf, self->piece + self->piece_offset, n);
    self->piece_offset += n;
    return n;
}

// --- self-test ---

// s_test_record packs a job of tenant into *data (caller frees).
static size_t
s_test_record (const char *id, const char *tenant, void **data)
{
    job_t *job = job_new ();
    memcpy (job->id, id, JOB_ID_LEN);
    job_set_str (&job->tenant, tenant);
    job_set_str (&job->kind, "http");
    job_set_str (&job->spec, "{}");
    job->created_at = 1700000000000;
    pack_writer_t *writer = pack_writer_new ();
    job_pack (job, writer);
    size_t size;
    const void *packed = pack_writer_data (writer, &size);
    *data = mem_alloc (size);
    memcpy (*data, packed, size);
    pack_writer_destroy (&writer);
    job_destroy (&job);
    return size;
}

// s_test_page reads a whole page in reads of step bytes; returns it (caller
// frees).
static char *
s_test_page (const void *const *records, const size_t *sizes, size_t count, const char *cursor,
             const char *tenant, size_t step)
{
    pack_writer_t *writer = pack_writer_new ();
    pack_put_bin_array (writer, "jobs", records, sizes, count);
    pack_put_str (writer, "next_cursor", cursor);
    size_t size;
    const void *data = pack_writer_data (writer, &size);
    pack_reader_t *body = pack_reader_new (data, size);
    listpage_t *page = listpage_new (body, tenant);
    pack_reader_destroy (&body);
    pack_writer_destroy (&writer);
    char *text = mem_alloc (1);
    size_t len = 0, n;
    char buf[64];
    while ((n = listpage_read (page, buf, step)) > 0) {
        text = mem_realloc (text, len + n + 1);
        memcpy (text + len, buf, n);
        len += n;
    }
    text[len] = '\0';
    assert (listpage_read (page, buf, step) == 0);
    listpage_destroy (&page);
    listpage_destroy (&page);
    return text;
}

void
listpage_test (bool verbose)
{
    if (verbose)
        printf (" * listpage: ");
    void *records[4];
    size_t sizes[4];
    sizes[0] = s_test_record ("0190a0b2-1c3d-7e4f-8a5b-6c7d8e9f0a03", "a", &records[0]);
    sizes[1] = s_test_record ("0190a0b2-1c3d-7e4f-8a5b-6c7d8e9f0a02", "b", &records[1]);
    records[2] = mem_strdup ("not a record");
    sizes[2] = strlen (records[2]);
    sizes[3] = s_test_record ("0190a0b2-1c3d-7e4f-8a5b-6c7d8e9f0a01", "a", &records[3]);
    // What the API shows of each of tenant a's jobs, rendered once here.
    char *expected_jobs[2];
    for (int i = 0; i < 2; i++) {
        pack_reader_t *reader = pack_reader_new (records[i * 3], sizes[i * 3]);
        job_t *job = job_unpack (reader);
        expected_jobs[i] = job_render (job);
        job_destroy (&job);
        pack_reader_destroy (&reader);
    }
    char expected[4096];
    snprintf (expected, sizeof expected, "{\"jobs\":[%s,%s],\"next_cursor\":\"1700000000000.x\"}",
              expected_jobs[0], expected_jobs[1]);
    // Whatever the reads' size, the same page: another tenant's record and
    // one that does not unpack are skipped.
    for (size_t step = 1; step <= 64; step *= 4) {
        char *page = s_test_page ((const void *const *) records, sizes, 4, "1700000000000.x", "a",
                                  step);
        assert (strcmp (page, expected) == 0);
        free (page);
    }
    // The last page; a page with no job of the caller.
    char *page = s_test_page ((const void *const *) records, sizes, 1, NULL, "a", 5);
    snprintf (expected, sizeof expected, "{\"jobs\":[%s],\"next_cursor\":null}", expected_jobs[0]);
    assert (strcmp (page, expected) == 0);
    free (page);
    page = s_test_page ((const void *const *) records, sizes, 3, "c", "z", 5);
    assert (strcmp (page, "{\"jobs\":[],\"next_cursor\":\"c\"}") == 0);
    free (page);
    page = s_test_page (NULL, NULL, 0, NULL, "a", 5);
    assert (strcmp (page, "{\"jobs\":[],\"next_cursor\":null}") == 0);
    free (page);
    for (int i = 0; i < 4; i++)
        free (records[i]);
    for (int i = 0; i < 2; i++)
        free (expected_jobs[i]);
    if (verbose)
        printf ("OK\n");
}
