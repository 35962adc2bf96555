// job — the job record: what the broker stores, sends and the gateway shows.
#include "job.h"
#include "jsontext.h"
#include "mem.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

static const char *s_status_names[JOB_STATUS_COUNT_] = {
    "queued", "running", "succeeded", "failed", "canceled"
};

const char *
job_status_name (job_status_t status)
{
    return (unsigned) status < JOB_STATUS_COUNT_ ? s_status_names[status] : "unknown";
}

int
job_status_parse (const char *name)
{
    for (int i = 0; i < JOB_STATUS_COUNT_; i++)
        if (strcmp (name, s_status_names[i]) == 0)
            return i;
    return -1;
}

bool
job_status_terminal (job_status_t status)
{
    return status == JOB_SUCCEEDED || status == JOB_FAILED || status == JOB_CANCELED;
}

job_t *
job_new (void)
{
    job_t *self = mem_calloc (1, sizeof *self);
    self->status = JOB_QUEUED;
    self->priority = 5;
    self->max_attempts = 3;
    self->timeout_ms = 30000;
    return self;
}

void
job_destroy (job_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    job_t *self = *self_p;
    free (self->tenant);
    free (self->kind);
    free (self->provider);
    free (self->spec);
    free (self->result);
    free (self->error);
    free (self->idempotency_key);
    free (self->metadata);
    free (self->usage);
    free (self->cache);
    free (self->lease);
    free (self->answered_by);
    free (self->via);
    free (self->model);
    free (self->webhook);
    free (self);
    *self_p = NULL;
}

// s_copy_or_null returns a copy of text, or NULL for NULL.
static char *
s_copy_or_null (const char *text)
{
    return text ? mem_strdup (text) : NULL;
}

void
job_set_str (char **field, const char *value)
{
    free (*field);
    *field = s_copy_or_null (value);
}

job_t *
job_dup (const job_t *self)
{
    job_t *copy = mem_alloc (sizeof *copy);
    *copy = *self;
    copy->tenant = s_copy_or_null (self->tenant);
    copy->kind = s_copy_or_null (self->kind);
    copy->provider = s_copy_or_null (self->provider);
    copy->spec = s_copy_or_null (self->spec);
    copy->result = s_copy_or_null (self->result);
    copy->error = s_copy_or_null (self->error);
    copy->idempotency_key = s_copy_or_null (self->idempotency_key);
    copy->metadata = s_copy_or_null (self->metadata);
    copy->usage = s_copy_or_null (self->usage);
    copy->cache = s_copy_or_null (self->cache);
    copy->lease = s_copy_or_null (self->lease);
    copy->answered_by = s_copy_or_null (self->answered_by);
    copy->via = s_copy_or_null (self->via);
    copy->model = s_copy_or_null (self->model);
    copy->webhook = s_copy_or_null (self->webhook);
    return copy;
}

void
job_pack (const job_t *self, pack_writer_t *writer)
{
    pack_put_str (writer, "id", self->id);
    pack_put_str (writer, "tenant", self->tenant ? self->tenant : "");
    pack_put_str (writer, "kind", self->kind);
    pack_put_str (writer, "provider", self->provider);
    pack_put_str (writer, "status", job_status_name (self->status));
    pack_put_int (writer, "priority", self->priority);
    pack_put_int (writer, "max_attempts", self->max_attempts);
    pack_put_int (writer, "attempts", self->attempts);
    pack_put_int (writer, "timeout_ms", self->timeout_ms);
    pack_put_int (writer, "created_at", self->created_at);
    pack_put_str (writer, "spec", self->spec);
    // The keys of a 0 or a nil are left out (docs/protocol.md §4): every
    // reader takes absent as 0 or nil, and a queued job is most of the
    // store, whose records were a fifth names of empty fields.
    if (self->expire_after_ms)
        pack_put_int (writer, "expire_after_ms", self->expire_after_ms);
    if (self->started_at)
        pack_put_int (writer, "started_at", self->started_at);
    if (self->finished_at)
        pack_put_int (writer, "finished_at", self->finished_at);
    if (self->attempt_seq)
        pack_put_int (writer, "attempt_seq", self->attempt_seq);
    if (self->result)
        pack_put_str (writer, "result", self->result);
    if (self->error)
        pack_put_str (writer, "error", self->error);
    if (self->idempotency_key)
        pack_put_str (writer, "idempotency_key", self->idempotency_key);
    if (self->metadata)
        pack_put_str (writer, "metadata", self->metadata);
    if (self->usage)
        pack_put_str (writer, "usage", self->usage);
    if (self->cache)
        pack_put_str (writer, "cache", self->cache);
    if (self->lease)
        pack_put_str (writer, "lease", self->lease);
    if (self->answered_by)
        pack_put_str (writer, "answered_by", self->answered_by);
    if (self->webhook)
        pack_put_str (writer, "webhook", self->webhook);
}

job_t *
job_unpack (pack_reader_t *reader)
{
    job_t *self = job_new ();
    size_t len;
    const char *id = pack_get_str (reader, "id", &len);
    char *status = pack_get_strdup (reader, "status");
    int64_t priority = 5, max_attempts = 3, attempts = 0;
    int status_value = status ? job_status_parse (status) : -1;
    free (status);
    if (!id || !job_id_valid (id, len) || status_value < 0
        || pack_get_int (reader, "priority", &priority) < 0
        || pack_get_int (reader, "max_attempts", &max_attempts) < 0
        || pack_get_int (reader, "attempts", &attempts) < 0
        || pack_get_int (reader, "timeout_ms", &self->timeout_ms) < 0
        || pack_get_int (reader, "created_at", &self->created_at) < 0
        || priority < 0 || priority > 9 || max_attempts < 1 || max_attempts > 100
        || attempts < 0 || attempts > 1000000) {
        job_destroy (&self);
        return NULL;
    }
    memcpy (self->id, id, JOB_ID_LEN);
    self->id[JOB_ID_LEN] = '\0';
    self->status = (job_status_t) status_value;
    self->priority = (int) priority;
    self->max_attempts = (int) max_attempts;
    self->attempts = (int) attempts;
    pack_get_int (reader, "expire_after_ms", &self->expire_after_ms);
    pack_get_int (reader, "started_at", &self->started_at);
    pack_get_int (reader, "finished_at", &self->finished_at);
    self->tenant = pack_get_strdup (reader, "tenant");
    self->kind = pack_get_strdup (reader, "kind");
    self->provider = pack_get_strdup (reader, "provider");
    self->spec = pack_get_strdup (reader, "spec");
    self->result = pack_get_strdup (reader, "result");
    self->error = pack_get_strdup (reader, "error");
    self->idempotency_key = pack_get_strdup (reader, "idempotency_key");
    self->metadata = pack_get_strdup (reader, "metadata");
    self->usage = pack_get_strdup (reader, "usage");
    self->cache = pack_get_strdup (reader, "cache");
    self->lease = pack_get_strdup (reader, "lease");
    self->answered_by = pack_get_strdup (reader, "answered_by");
    self->webhook = pack_get_strdup (reader, "webhook");
    // Records written before attempt identities existed: the attempts
    // counter was the identity then.
    if (pack_get_int (reader, "attempt_seq", &self->attempt_seq) < 0 || self->attempt_seq < 0
        || self->attempt_seq > INT32_MAX)
        self->attempt_seq = self->attempts;
    if (!self->tenant)
        self->tenant = mem_strdup ("");
    if (!self->kind || !self->spec) {
        job_destroy (&self);
        return NULL;
    }
    return self;
}

json_t *
job_time_json (int64_t wall_ms)
{
    if (wall_ms <= 0)
        return json_null ();
    char stamp[40];
    clock_rfc3339 (wall_ms, stamp, sizeof stamp);
    return json_string (stamp);
}

// s_metadata_of returns the metadata text of a record made before metadata
// was kept apart from the spec (caller frees), or NULL.
static char *
s_metadata_of (const char *spec)
{
    json_t *parsed = jsontext_loads (spec, NULL);
    json_t *metadata = json_object_get (parsed, "metadata");
    char *text = metadata ? jsontext_dump (metadata) : NULL;
    json_decref (parsed);
    return text;
}

// One stored JSON text spliced into the rendered job: ,"key":text.
typedef struct {
    const char *key;            // the member's name
    const char *text;           // its JSON text as stored ("null" when absent)
    size_t text_len;            // strlen (text)
} s_spliced_t;

char *
job_render (const job_t *self)
{
    json_t *object = json_object ();
    json_object_set_new (object, "id", json_string (self->id));
    json_object_set_new (object, "kind", json_string (self->kind));
    json_object_set_new (object, "provider",
                         self->provider ? json_string (self->provider) : json_null ());
    json_object_set_new (object, "status", json_string (job_status_name (self->status)));
    json_object_set_new (object, "attempts", json_integer (self->attempts));
    json_object_set_new (object, "max_attempts", json_integer (self->max_attempts));
    json_object_set_new (object, "priority", json_integer (self->priority));
    json_object_set_new (object, "created_at", job_time_json (self->created_at));
    json_object_set_new (object, "started_at", job_time_json (self->started_at));
    json_object_set_new (object, "finished_at", job_time_json (self->finished_at));
    if (self->answered_by && job_status_terminal (self->status))
        json_object_set_new (object, "answered_by", json_string (self->answered_by));
    if (self->cache)
        json_object_set_new (object, "cache", json_string (self->cache));
    char *head = json_dumps (object, JSON_COMPACT);
    json_decref (object);
    char *metadata = self->metadata || !self->spec ? NULL : s_metadata_of (self->spec);
    s_spliced_t spliced[5] = {
        { .key = "metadata", .text = self->metadata ? self->metadata : metadata }
    };
    size_t count = 1;
    if (self->result)
        spliced[count++] = (s_spliced_t) { .key = "result", .text = self->result };
    if (self->error)
        spliced[count++] = (s_spliced_t) { .key = "error", .text = self->error };
    // SPEC §3.1: the usage the upstream reported, on llm jobs that have it.
    if (self->usage && self->kind && strcmp (self->kind, "llm") == 0)
        spliced[count++] = (s_spliced_t) { .key = "usage", .text = self->usage };
    // How the delivery of its callback goes (broker/delivery.h).
    if (self->webhook)
        spliced[count++] = (s_spliced_t) { .key = "webhook", .text = self->webhook };
    // The head ends with '}': the spliced members go before it, in one
    // allocation sized up front.
    size_t len = strlen (head) - 1, total = len + 2;
    for (size_t i = 0; i < count; i++) {
        if (!spliced[i].text)
            spliced[i].text = "null";
        spliced[i].text_len = strlen (spliced[i].text);
        total += strlen (spliced[i].key) + spliced[i].text_len + 4;
    }
    char *text = mem_realloc (head, total);
    for (size_t i = 0; i < count; i++) {
        size_t key_len = strlen (spliced[i].key);
        memcpy (text + len, ",\"", 2);
        memcpy (text + len + 2, spliced[i].key, key_len);
        memcpy (text + len + 2 + key_len, "\":", 2);
        memcpy (text + len + 4 + key_len, spliced[i].text, spliced[i].text_len);
        len += 4 + key_len + spliced[i].text_len;
    }
    free (metadata);
    text[len] = '}';
    text[len + 1] = '\0';
    return text;
}

json_t *
job_to_json (const job_t *self)
{
    char *text = job_render (self);
    json_t *object = jsontext_loads (text, NULL);
    free (text);
    return object;
}

void
job_test (bool verbose)
{
    if (verbose)
        printf (" * job: ");
    job_t *job = job_new ();
    job_id_generate (job->id);
    assert (job_id_valid (job->id, strlen (job->id)));
    assert (!job_id_valid ("../../etc/passwd", 16));
    assert (!job_id_valid ("0123456789012345678901234567890123456", 37));
    job_set_str (&job->tenant, "a");
    job_set_str (&job->kind, "http");
    job_set_str (&job->spec, "{\"kind\":\"http\",\"metadata\":{\"k\":1}}");
    job_set_str (&job->result, "{\"status\":200}");
    job->created_at = 1700000000123;
    job->status = JOB_SUCCEEDED;
    job->attempts = 2;
    job->attempt_seq = 7;
    job_set_str (&job->lease, "lease-token");
    job_set_str (&job->usage, "{\"prompt_tokens\":3,\"completion_tokens\":4,\"total_tokens\":7}");
    job_set_str (&job->cache, "hit");

    pack_writer_t *writer = pack_writer_new ();
    job_pack (job, writer);
    size_t size;
    const void *data = pack_writer_data (writer, &size);
    pack_reader_t *reader = pack_reader_new (data, size);
    job_t *copy = job_unpack (reader);
    assert (copy);
    assert (strcmp (copy->id, job->id) == 0);
    assert (strcmp (copy->tenant, "a") == 0);
    assert (copy->status == JOB_SUCCEEDED && copy->attempts == 2);
    assert (copy->provider == NULL && copy->error == NULL);
    assert (copy->attempt_seq == 7 && strcmp (copy->lease, "lease-token") == 0);
    assert (copy->answered_by == NULL);
    assert (strcmp (copy->cache, "hit") == 0);
    // Zeros and nils are not written: they read back as 0 and NULL.
    int64_t absent;
    assert (pack_get_int (reader, "finished_at", &absent) < 0);
    assert (copy->finished_at == 0);
    assert (pack_get_int (reader, "attempt_seq", &absent) == 0 && absent == 7);

    json_t *object = job_to_json (copy);
    assert (strcmp (json_string_value (json_object_get (object, "status")), "succeeded") == 0);
    assert (strcmp (json_string_value (json_object_get (object, "created_at")),
                    "2023-11-14T22:13:20.123Z") == 0);
    assert (json_integer_value (json_object_get (json_object_get (object, "metadata"), "k")) == 1);
    assert (json_integer_value (json_object_get (json_object_get (object, "result"), "status")) == 200);
    assert (strcmp (json_string_value (json_object_get (object, "cache")), "hit") == 0);
    json_decref (object);

    // Stored texts are spliced, not parsed: a NUL in a result survives, and
    // metadata kept apart wins over the spec's.
    job_set_str (&copy->result, "{\"body\":\"a\\u0000b\"}");
    job_set_str (&copy->error, "{\"type\":\"x\"}");
    job_set_str (&copy->metadata, "{\"k\":2}");
    char *text = job_render (copy);
    assert (text && strstr (text, ",\"metadata\":{\"k\":2},\"result\":{\"body\":\"a\\u0000b\"}"
                                  ",\"error\":{\"type\":\"x\"}}"));
    object = job_to_json (copy);
    assert (json_string_length (json_object_get (json_object_get (object, "result"), "body")) == 3);
    json_decref (object);
    free (text);
    job_set_str (&copy->metadata, NULL);
    job_set_str (&copy->result, "{\"status\":200}");
    job_set_str (&copy->error, NULL);
    // An llm job shows the usage its record keeps (packed and read back
    // above); another kind never shows one.
    assert (copy->usage && strcmp (copy->usage, job->usage) == 0);
    text = job_render (copy);
    assert (!strstr (text, "usage"));
    free (text);
    job_set_str (&copy->kind, "llm");
    object = job_to_json (copy);
    assert (json_integer_value (json_object_get (json_object_get (object, "usage"),
                                                 "total_tokens")) == 7);
    json_decref (object);
    job_set_str (&copy->kind, "http");

    // The provider that answered is kept and shown once the job is finished;
    // so is the delivery state of its callback, spliced as it is.
    job_set_str (&copy->answered_by, "backup");
    job_set_str (&copy->webhook, "{\"state\":\"pending\",\"attempts\":0}");
    pack_writer_t *again = pack_writer_new ();
    job_pack (copy, again);
    const void *again_data = pack_writer_data (again, &size);
    pack_reader_t *again_reader = pack_reader_new (again_data, size);
    job_t *answered = job_unpack (again_reader);
    assert (answered && strcmp (answered->answered_by, "backup") == 0);
    assert (answered->webhook && strcmp (answered->webhook, copy->webhook) == 0);
    text = job_render (answered);
    assert (strstr (text, "\"answered_by\":\"backup\""));
    assert (strstr (text, ",\"webhook\":{\"state\":\"pending\",\"attempts\":0}}"));
    free (text);
    answered->status = JOB_RUNNING;
    text = job_render (answered);
    assert (!strstr (text, "answered_by"));
    free (text);
    job_destroy (&answered);
    pack_reader_destroy (&again_reader);
    pack_writer_destroy (&again);

    job_t *dup = job_dup (copy);
    assert (dup && strcmp (dup->spec, copy->spec) == 0 && strcmp (dup->usage, copy->usage) == 0);
    assert (strcmp (dup->answered_by, "backup") == 0 && strcmp (dup->webhook, copy->webhook) == 0);
    job_destroy (&dup);
    job_destroy (&copy);
    pack_reader_destroy (&reader);
    pack_writer_destroy (&writer);

    // A record written before attempt identities existed takes its
    // attempts counter as the identity of its latest attempt.
    writer = pack_writer_new ();
    pack_put_str (writer, "id", job->id);
    pack_put_str (writer, "status", "running");
    pack_put_int (writer, "priority", 5);
    pack_put_int (writer, "max_attempts", 3);
    pack_put_int (writer, "attempts", 2);
    pack_put_int (writer, "timeout_ms", 1000);
    pack_put_int (writer, "created_at", 1);
    pack_put_str (writer, "kind", "http");
    pack_put_str (writer, "spec", "{}");
    data = pack_writer_data (writer, &size);
    reader = pack_reader_new (data, size);
    copy = job_unpack (reader);
    assert (copy && copy->attempts == 2 && copy->attempt_seq == 2 && copy->lease == NULL);
    // A job without a cache has no cache member.
    assert (copy->cache == NULL);
    text = job_render (copy);
    assert (!strstr (text, "\"cache\""));
    free (text);
    job_destroy (&copy);
    pack_reader_destroy (&reader);
    pack_writer_destroy (&writer);

    // A record without an id is refused.
    writer = pack_writer_new ();
    pack_put_str (writer, "status", "queued");
    data = pack_writer_data (writer, &size);
    reader = pack_reader_new (data, size);
    assert (job_unpack (reader) == NULL);
    pack_reader_destroy (&reader);
    pack_writer_destroy (&writer);

    job_destroy (&job);
    job_destroy (&job);
    if (verbose)
        printf ("OK\n");
}
