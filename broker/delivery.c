// delivery — the webhook delivery of a finished job.
#include "delivery.h"
#include "jsontext.h"
#include "mem.h"
#include "tenant.h"

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
        char *payload = mem_check (job_render (copy), 0, __FILE__, __LINE__);
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
    json_t *payload = json_object_get (request, "payload");
    assert (strcmp (json_string_value (json_object_get (payload, "id")), job->id) == 0);
    json_t *n = json_object_get (json_object_get (json_object_get (payload, "result"), "body"), "n");
    assert (json_string_length (n) == 3);
    json_decref (spec);
    job_destroy (&delivery);

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
    char *text = delivery_spec (job, "http://127.0.0.1:9/hook");
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
