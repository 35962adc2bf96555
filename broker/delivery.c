// delivery — the webhook delivery of a finished job.
#include "delivery.h"
#include "jsontext.h"
#include "mem.h"
#include "tenant.h"
#include "clock.h"

#include <assert.h>
#include <stdio.h>
#include <string.h>

char *
delivery_url (const job_t *job)
{
    // Most specs ask for no callback: look before parsing.
    if (!job->spec || !strstr (job->spec, "\"callback\""))
        return NULL;
    json_t *spec = jsontext_loads (job->spec, NULL);
    const char *url = json_string_value (json_object_get (json_object_get (spec, "callback"), "url"));
    char *copy = url ? mem_strdup (url) : NULL;
    json_decref (spec);
    return copy;
}

// s_spec writes {"kind":"webhook","request":{"url":URL,"job_id":ID,
// "payload":PAYLOAD}} (url_text already JSON) into a new string.
static char *
s_spec (const char *url_text, const char *id, const char *payload, size_t *len)
{
    static const char format[] = "{\"kind\":\"webhook\",\"request\":{\"url\":%s,\"job_id\":\"%s\","
                                 "\"payload\":%s}}";
    int size = snprintf (NULL, 0, format, url_text, id, payload);
    assert (size > 0);
    char *spec = mem_alloc ((size_t) size + 1);
    snprintf (spec, (size_t) size + 1, format, url_text, id, payload);
    *len = (size_t) size;
    return spec;
}

// s_envelope wraps data, a rendered job object, in the Standard Webhooks
// envelope: the type names how the job ended, the timestamp is when (the
// event's time, the same for every attempt; webhook-timestamp is the
// attempt's). Returns a new string.
static char *
s_envelope (const job_t *job, const char *data)
{
    char stamp[40];
    clock_rfc3339 (job->finished_at > 0 ? job->finished_at : job->created_at, stamp,
                   sizeof stamp);
    static const char format[] = "{\"type\":\"job.%s\",\"timestamp\":\"%s\",\"data\":%s}";
    const char *status = job_status_name (job->status);
    int size = snprintf (NULL, 0, format, status, stamp, data);
    assert (size > 0);
    char *text = mem_alloc ((size_t) size + 1);
    snprintf (text, (size_t) size + 1, format, status, stamp, data);
    return text;
}

char *
delivery_spec (const job_t *job, const char *url)
{
    job_t *copy = mem_check (job_dup (job), sizeof *copy, __FILE__, __LINE__);
    json_t *url_json = json_string (url);
    char *url_text = mem_check (jsontext_dump (url_json), 0, __FILE__, __LINE__);
    json_decref (url_json);
    char *spec = NULL;
    for (int fallback = 0; !spec && fallback < 3; fallback++) {
        if (fallback >= 1)
            job_set_str (&copy->result, "{\"omitted\":\"too large or deep for a webhook; "
                                        "GET /v1/jobs/{id} has it\"}");
        if (fallback >= 2)
            job_set_str (&copy->metadata, NULL);
        char *data = mem_check (job_render (copy), 0, __FILE__, __LINE__);
        char *payload = s_envelope (copy, data);
        free (data);
        size_t len;
        spec = s_spec (url_text, job->id, payload, &len);
        free (payload);
        if (!jsontext_within (spec, len)) {
            free (spec);
            spec = NULL;
        }
    }
    free (url_text);
    job_destroy (&copy);
    return spec;
}

int
delivery_job_id (const job_t *delivery, char *id)
{
    static const char member[] = "\"job_id\":\"";
    if (!delivery->kind || strcmp (delivery->kind, "webhook") != 0 || !delivery->spec)
        return -1;
    const char *at = strstr (delivery->spec, member);
    if (!at)
        return -1;
    at += sizeof member - 1;
    if (strnlen (at, JOB_ID_LEN + 1) != JOB_ID_LEN + 1 || at[JOB_ID_LEN] != '"'
        || !job_id_valid (at, JOB_ID_LEN))
        return -1;
    memcpy (id, at, JOB_ID_LEN);
    id[JOB_ID_LEN] = '\0';
    return 0;
}

static const char *s_state_names[DELIVERY_STATE_COUNT_] = { "pending", "delivered", "given_up" };

static const char *s_outcome_names[DELIVERY_OUTCOME_COUNT_] = {
    "delivered", "retried", "given_up", "not_queued"
};

const char *
delivery_outcome_name (delivery_outcome_t outcome)
{
    return (unsigned) outcome < DELIVERY_OUTCOME_COUNT_ ? s_outcome_names[outcome] : "unknown";
}

char *
delivery_state (const delivery_state_t *state)
{
    json_t *object = json_object ();
    json_object_set_new (object, "id", state->id ? json_string (state->id) : json_null ());
    json_object_set_new (object, "state", json_string (s_state_names[state->state]));
    json_object_set_new (object, "attempts", json_integer (state->attempts));
    json_object_set_new (object, "max_attempts", json_integer (state->max_attempts));
    json_object_set_new (object, "last_status", state->last_status > 0
                                                    ? json_integer (state->last_status)
                                                    : json_null ());
    json_object_set_new (object, "last_error", state->last_error
                                                   ? json_string (state->last_error)
                                                   : json_null ());
    json_object_set_new (object, "last_attempt_at", job_time_json (state->last_attempt_at));
    json_object_set_new (object, "next_attempt_at", job_time_json (state->next_attempt_at));
    char *text = mem_check (jsontext_dump (object), 0, __FILE__, __LINE__);
    json_decref (object);
    return text;
}

bool
delivery_state_is_of (const char *state_text, const char *delivery_id)
{
    json_t *state = state_text ? jsontext_loads (state_text, NULL) : NULL;
    const char *id = json_string_value (json_object_get (state, "id"));
    bool is_of = id && strcmp (id, delivery_id) == 0;
    json_decref (state);
    return is_of;
}

job_t *
delivery_new (const job_t *job, const char *url, const config_t *config, int64_t now_ms)
{
    char *spec = delivery_spec (job, url);
    if (!spec)
        return NULL;
    job_t *delivery = mem_check (job_new (), sizeof *delivery, __FILE__, __LINE__);
    job_id_generate (delivery->id);
    char owner[TENANT_RECORD_NAME_MAX];
    tenant_webhook_owner (job->tenant, owner);
    job_set_str (&delivery->tenant, owner);
    job_set_str (&delivery->kind, "webhook");
    delivery->max_attempts = config->webhook_max_attempts;
    delivery->timeout_ms = config->webhook_timeout_ms;
    delivery->created_at = now_ms;
    delivery->spec = spec;
    return delivery;
}

void
delivery_test (bool verbose)
{
    if (verbose)
        printf (" * delivery: ");
    job_t *job = job_new ();
    job_id_generate (job->id);
    job_set_str (&job->tenant, "c");
    job_set_str (&job->kind, "http");
    job->status = JOB_SUCCEEDED;
    job_set_str (&job->spec, "{\"request\":{\"path\":\"/json\"},"
                             "\"callback\":{\"url\":\"http://127.0.0.1:9/hook\"}}");
    job_set_str (&job->result, "{\"status\":200,\"body\":{\"n\":\"a\\u0000b\"}}");
    job->finished_at = 1796032800250;   // 2026-11-30T10:00:00.250Z
    config_t config = { .webhook_max_attempts = 4, .webhook_timeout_ms = 7000 };

    // The callback, and the delivery: the job object spliced, NUL and all.
    char *url = delivery_url (job);
    assert (url && strcmp (url, "http://127.0.0.1:9/hook") == 0);
    job_t *delivery = delivery_new (job, url, &config, 1234);
    free (url);
    assert (delivery && strcmp (delivery->kind, "webhook") == 0);
    assert (strcmp (delivery->tenant, TENANT_WEBHOOK_PREFIX "c") == 0);
    assert (delivery->max_attempts == 4 && delivery->timeout_ms == 7000);
    assert (delivery->created_at == 1234 && delivery->status == JOB_QUEUED);
    assert (strcmp (delivery->id, job->id) != 0);
    json_t *spec = jsontext_loads (delivery->spec, NULL);
    json_t *request = json_object_get (spec, "request");
    assert (strcmp (json_string_value (json_object_get (spec, "kind")), "webhook") == 0);
    assert (strcmp (json_string_value (json_object_get (request, "job_id")), job->id) == 0);
    // The payload is the Standard Webhooks envelope: the type names the
    // end, the timestamp is the finish, the data the job object.
    json_t *payload = json_object_get (request, "payload");
    assert (json_object_size (payload) == 3);
    assert (strcmp (json_string_value (json_object_get (payload, "type")), "job.succeeded") == 0);
    assert (strcmp (json_string_value (json_object_get (payload, "timestamp")),
                    "2026-11-30T10:00:00.250Z") == 0);
    json_t *data = json_object_get (payload, "data");
    assert (strcmp (json_string_value (json_object_get (data, "id")), job->id) == 0);
    assert (strcmp (json_string_value (json_object_get (data, "status")), "succeeded") == 0);
    json_t *n = json_object_get (json_object_get (json_object_get (data, "result"), "body"), "n");
    assert (json_string_length (n) == 3);
    json_decref (spec);
    // The delivery names its job without its payload being parsed; a
    // record of another kind, or without the member, names none.
    char reported[JOB_ID_LEN + 1];
    assert (delivery_job_id (delivery, reported) == 0 && strcmp (reported, job->id) == 0);
    assert (delivery_job_id (job, reported) == -1);
    job_destroy (&delivery);
    job->status = JOB_FAILED;
    delivery = delivery_new (job, "http://127.0.0.1:9/\"job_id\":\"0190a000-0000-7000-8000-"
                             "000000000000\"", &config, 1234);
    spec = jsontext_loads (delivery->spec, NULL);
    payload = json_object_get (json_object_get (spec, "request"), "payload");
    assert (strcmp (json_string_value (json_object_get (payload, "type")), "job.failed") == 0);
    json_decref (spec);
    // A URL that holds the member's text, escaped, is not taken for it.
    assert (delivery_job_id (delivery, reported) == 0 && strcmp (reported, job->id) == 0);
    job_set_str (&delivery->spec, "{\"kind\":\"webhook\",\"request\":{\"job_id\":\"x\"}}");
    assert (delivery_job_id (delivery, reported) == -1);
    job_set_str (&delivery->spec, "{\"request\":{\"job_id\":\"0190a000-0000-7000-8000-000000");
    assert (delivery_job_id (delivery, reported) == -1);
    job_destroy (&delivery);
    job->status = JOB_SUCCEEDED;

    // The state a job shows: every member, absent values null.
    delivery_state_t state = { .id = "0190a000-0000-7000-8000-00000000000d",
                               .state = DELIVERY_PENDING, .attempts = 1, .max_attempts = 4,
                               .last_status = 503, .last_error = "upstream_status",
                               .last_attempt_at = 1764496800000,
                               .next_attempt_at = 1764496801500 };
    char *text = delivery_state (&state);
    assert (strcmp (text, "{\"id\":\"0190a000-0000-7000-8000-00000000000d\",\"state\":\"pending\","
                          "\"attempts\":1,\"max_attempts\":4,\"last_status\":503,"
                          "\"last_error\":\"upstream_status\","
                          "\"last_attempt_at\":\"2025-11-30T10:00:00.000Z\","
                          "\"next_attempt_at\":\"2025-11-30T10:00:01.500Z\"}") == 0);
    assert (delivery_state_is_of (text, "0190a000-0000-7000-8000-00000000000d"));
    assert (!delivery_state_is_of (text, "0190a000-0000-7000-8000-00000000000e"));
    assert (!delivery_state_is_of (NULL, "0190a000-0000-7000-8000-00000000000d"));
    free (text);
    state = (delivery_state_t) { .state = DELIVERY_GIVEN_UP, .max_attempts = 4,
                                 .last_error = "not_queued" };
    text = delivery_state (&state);
    assert (strcmp (text, "{\"id\":null,\"state\":\"given_up\",\"attempts\":0,\"max_attempts\":4,"
                          "\"last_status\":null,\"last_error\":\"not_queued\","
                          "\"last_attempt_at\":null,\"next_attempt_at\":null}") == 0);
    free (text);
    assert (strcmp (delivery_outcome_name (DELIVERY_OUTCOME_GIVEN_UP), "given_up") == 0);
    assert (strcmp (delivery_outcome_name (DELIVERY_OUTCOME_COUNT_), "unknown") == 0);

    // No callback, or none with a URL: no delivery.
    job_set_str (&job->spec, "{\"request\":{\"path\":\"/json\"}}");
    assert (!delivery_url (job));
    job_set_str (&job->spec, "{\"request\":{},\"callback\":{\"secret\":\"x\"}}");
    assert (!delivery_url (job));

    // A payload too deep for the policy once wrapped is delivered without
    // its result, never unreadable.
    char deep[200] = "";
    for (int i = 0; i < 63; i++)
        strcat (deep, "[");
    for (int i = 0; i < 63; i++)
        strcat (deep, "]");
    assert (jsontext_within (deep, strlen (deep)));
    job_set_str (&job->result, deep);
    text = delivery_spec (job, "http://127.0.0.1:9/hook");
    assert (text && jsontext_within (text, strlen (text)) && strstr (text, "\"omitted\""));
    free (text);
    // ... and when the metadata is as deep, without it too.
    job_set_str (&job->metadata, "{\"m\":" "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["
                                 "]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}");
    text = delivery_spec (job, "http://127.0.0.1:9/hook");
    assert (text && jsontext_within (text, strlen (text)) && strstr (text, "\"metadata\":null"));
    free (text);
    // A URL is a JSON string in the spec, whatever it holds.
    job_set_str (&job->result, "{\"status\":200}");
    job_set_str (&job->metadata, NULL);
    text = delivery_spec (job, "http://127.0.0.1:9/\"hook");
    spec = jsontext_loads (text, NULL);
    assert (spec && strcmp (json_string_value (json_object_get (json_object_get (spec, "request"),
                                                                  "url")), "http://127.0.0.1:9/\"hook") == 0);
    json_decref (spec);
    free (text);
    job_destroy (&job);
    if (verbose)
        printf ("OK\n");
}
