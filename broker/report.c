// report — a worker's RESULT, read and judged.
#include "report.h"
#include "jsontext.h"
#include "log.h"
#include "mem.h"

#include <assert.h>
#include <stdio.h>
#include <string.h>

// An error text from a worker is at most this long (a type and a message).
#define ERROR_TEXT_MAX (64 * 1024)
// Retry-After is taken between 0 and a day.
#define RETRY_AFTER_MAX_MS (24LL * 3600 * 1000)

static const char *const s_outcomes[] = { "succeeded", "failed", "retry", "handback", "canceled" };

char *
report_error_json (const char *type, const char *message)
{
    json_t *error = json_pack ("{s:s, s:s}", "type", type, "message", message);
    char *text = json_dumps (error, JSON_COMPACT);
    json_decref (error);
    return (char *) mem_check (text, 0, __FILE__, __LINE__);
}

// s_replace makes the report's outcome and error what the broker decided,
// and returns the error parsed.
static json_t *
s_replace (report_t *self, report_outcome_t outcome, const char *type, const char *message)
{
    self->outcome = outcome;
    self->error = report_error_json (type, message);
    return jsontext_loads (self->error, NULL);
}

// s_fields checks the fields: outcome, result, error, retry_after_ms.
// Returns the error object parsed (or NULL), for the classification.
static json_t *
s_fields (report_t *self, pack_reader_t *body, size_t max_result_bytes, const char *id)
{
    size_t outcome_len = 0, result_len = 0, error_len = 0;
    const char *outcome = pack_get_str (body, "outcome", &outcome_len);
    const char *result = pack_get_str (body, "result", &result_len);
    const char *error = pack_get_str (body, "error", &error_len);
    pack_get_int (body, "retry_after_ms", &self->retry_after_ms);
    if (self->retry_after_ms < 0 || self->retry_after_ms > RETRY_AFTER_MAX_MS)
        self->retry_after_ms = 0;
    const char *problem = "an unknown outcome";
    for (size_t i = 0; outcome && i < sizeof s_outcomes / sizeof s_outcomes[0]; i++)
        if (outcome_len == strlen (s_outcomes[i]) && memcmp (outcome, s_outcomes[i], outcome_len) == 0) {
            self->outcome = (report_outcome_t) i;
            problem = NULL;
        }
    if (!problem && result && result_len > max_result_bytes) {
        char message[160];
        snprintf (message, sizeof message, "the result is %zu bytes, over broker.max_result_bytes "
                  "(%zu)", result_len, max_result_bytes);
        log_warn (id, "%s: not stored", message);
        return s_replace (self, REPORT_FAILED, "response_too_large", message);
    }
    // (json_is_* are macros that evaluate their argument twice: parse first.)
    json_t *parsed = !problem && result ? jsontext_load (result, result_len, NULL) : NULL;
    if (!problem && result && !json_is_object (parsed))
        problem = "a result that is not a JSON object within the policy";
    json_decref (parsed);
    json_t *error_object = NULL;
    if (!problem && error && error_len <= ERROR_TEXT_MAX)
        error_object = jsontext_load (error, error_len, NULL);
    if (!problem && error && !json_is_string (json_object_get (error_object, "type")))
        problem = "an error that is not a JSON object with a type";
    if (problem) {
        char message[160];
        snprintf (message, sizeof message, "the worker sent %s", problem);
        log_warn (id, "RESULT refused: %s", message);
        json_decref (error_object);
        return s_replace (self, REPORT_RETRY, "worker_invalid_result", message);
    }
    self->result = result ? mem_strndup (result, result_len) : NULL;
    self->error = error ? mem_strndup (error, error_len) : NULL;
    return error_object;
}

// s_count reads a count of tokens of usage into *count: 1 when it is one,
// 0 when absent, -1 when it is something else.
static int
s_count (json_t *usage, const char *name, int64_t *count)
{
    json_t *value = json_object_get (usage, name);
    if (!value)
        return 0;
    if (!json_is_integer (value) || json_integer_value (value) < 0
        || json_integer_value (value) > (json_int_t) 1e15)
        return -1;
    *count = json_integer_value (value);
    return 1;
}

// s_model_ok is true for a model name that can be a label and a JSON
// string as it is: UTF-8, no control characters, not empty.
static bool
s_model_ok (const char *name, size_t len)
{
    if (len == 0 || len > REPORT_MODEL_MAX)
        return false;
    for (size_t i = 0; i < len; i++)
        if ((unsigned char) name[i] < 0x20 || name[i] == 0x7f)
            return false;
    json_t *string = json_stringn (name, len);
    json_decref (string);
    return string != NULL;
}

// s_usage_fields reads usage, model and ratelimit (revision 3).
static void
s_usage_fields (report_t *self, pack_reader_t *body, const char *id)
{
    self->remaining_tokens = self->reset_tokens_ms = -1;
    size_t usage_len = 0, model_len = 0;
    const char *usage = pack_get_str (body, "usage", &usage_len);
    const char *model = pack_get_str (body, "model", &model_len);
    json_t *parsed = usage && usage_len <= REPORT_USAGE_MAX ? jsontext_load (usage, usage_len, NULL)
                                                            : NULL;
    int counted = 0, prompt = 0, completion = 0, total = 0;
    if (json_is_object (parsed)) {
        prompt = s_count (parsed, "prompt_tokens", &self->prompt_tokens);
        completion = s_count (parsed, "completion_tokens", &self->completion_tokens);
        total = s_count (parsed, "total_tokens", &self->total_tokens);
        counted = prompt > 0 || completion > 0 || total > 0;
    }
    if (usage && (!counted || prompt < 0 || completion < 0 || total < 0)) {
        log_warn (id, "RESULT usage dropped: not a usage object with token counts");
        self->prompt_tokens = self->completion_tokens = self->total_tokens = 0;
    }
    else if (usage) {
        if (total == 0)
            self->total_tokens = self->prompt_tokens + self->completion_tokens;
        self->usage = jsontext_dump (parsed);
    }
    json_decref (parsed);
    if (model && s_model_ok (model, model_len)) {
        memcpy (self->model, model, model_len);
        self->model[model_len] = '\0';
    }
    else if (model)
        log_warn (id, "RESULT model dropped: not a model name");
    int64_t value;
    if (pack_get_map_int (body, "ratelimit", "remaining_tokens", &value) == 0 && value >= 0)
        self->remaining_tokens = value;
    if (pack_get_map_int (body, "ratelimit", "reset_tokens_ms", &value) == 0 && value >= 0)
        self->reset_tokens_ms = value < RETRY_AFTER_MAX_MS ? value : RETRY_AFTER_MAX_MS;
}

// s_classify tells what the checked outcome and error say about the
// upstream.
static provider_outcome_t
s_classify (report_t *self, json_t *error)
{
    if (self->outcome == REPORT_SUCCEEDED)
        return PROVIDER_ANSWERED;
    if (self->outcome == REPORT_HANDBACK || self->outcome == REPORT_CANCELED)
        return PROVIDER_NEUTRAL;
    const char *type = json_string_value (json_object_get (error, "type"));
    snprintf (self->error_type, sizeof self->error_type, "%s", type ? type : "failed");
    json_int_t status = json_integer_value (json_object_get (error, "upstream_status"));
    self->upstream_status = status >= 0 && status < 1000 ? (int) status : 0;
    if (strncmp (self->error_type, "worker_", 7) == 0
        || strcmp (self->error_type, "invalid_request") == 0
        || strcmp (self->error_type, "blocked_by_policy") == 0)
        return PROVIDER_NEUTRAL;
    if (self->upstream_status == 429 || self->upstream_status == 503) {
        // An overloaded upstream that names no delay still gets a breather.
        if (self->pause_ms <= 0)
            self->pause_ms = 1000;
        return PROVIDER_OVERLOADED;
    }
    if (self->outcome == REPORT_FAILED && self->upstream_status > 0)
        return PROVIDER_ANSWERED; // a final 4xx: the upstream is fine
    if (self->outcome == REPORT_FAILED && strcmp (self->error_type, "response_too_large") == 0)
        return PROVIDER_ANSWERED;
    return PROVIDER_FAILED;
}

void
report_read (report_t *self, pack_reader_t *body, size_t max_result_bytes, const char *id)
{
    memset (self, 0, sizeof *self);
    s_usage_fields (self, body, id);
    json_t *error = s_fields (self, body, max_result_bytes, id);
    self->pause_ms = self->retry_after_ms;
    self->verdict = s_classify (self, error);
    json_decref (error);
}

void
report_free (report_t *self)
{
    free (self->result);
    self->result = NULL;
    free (self->error);
    self->error = NULL;
    free (self->usage);
    self->usage = NULL;
}

provider_call_t
report_call (const report_t *self)
{
    return (provider_call_t) { .outcome = self->verdict, .retry_after_ms = self->pause_ms,
                               .error_type = self->error_type,
                               .upstream_status = self->upstream_status };
}

// --- self-test ---

// s_test_read reads a RESULT with these fields (NULL: absent).
static void
s_test_read (report_t *report, const char *outcome, const char *result, const char *error,
             int64_t retry_after_ms)
{
    pack_writer_t *writer = pack_writer_new ();
    pack_put_str (writer, "id", "0190a000-0000-7000-8000-00000000000a");
    if (outcome)
        pack_put_str (writer, "outcome", outcome);
    pack_put_str (writer, "result", result);
    pack_put_str (writer, "error", error);
    pack_put_int (writer, "retry_after_ms", retry_after_ms);
    size_t size;
    const void *data = pack_writer_data (writer, &size);
    pack_reader_t *reader = pack_reader_new (data, size);
    assert (reader);
    report_read (report, reader, 64, "-");
    pack_reader_destroy (&reader);
    pack_writer_destroy (&writer);
}

// s_test_verdict checks a report's outcome, verdict, error type and pause.
static void
s_test_verdict (const report_t *report, report_outcome_t outcome, provider_outcome_t verdict,
                const char *type, int64_t pause_ms)
{
    if (report->outcome != outcome || report->verdict != verdict
        || strcmp (report->error_type, type) != 0 || report->pause_ms != pause_ms)
        fprintf (stderr, "report: outcome %d verdict %d type \"%s\" pause %lld\n",
                 report->outcome, report->verdict, report->error_type,
                 (long long) report->pause_ms);
    assert (report->outcome == outcome && report->verdict == verdict);
    assert (strcmp (report->error_type, type) == 0 && report->pause_ms == pause_ms);
}

void
report_test (bool verbose)
{
    if (verbose)
        printf (" * report: ");
    log_init ("report-test", LOG_ERROR_);
    report_t report;
    // Succeeded: the result is kept as sent.
    s_test_read (&report, "succeeded", "{\"status\":200}", NULL, 0);
    s_test_verdict (&report, REPORT_SUCCEEDED, PROVIDER_ANSWERED, "", 0);
    assert (strcmp (report.result, "{\"status\":200}") == 0 && !report.error);
    report_free (&report);

    // Over max_result_bytes (64 here): failed, nothing of it kept; the
    // upstream answered.
    s_test_read (&report, "succeeded", "{\"body\":\"" "0123456789012345678901234567890123456789"
                 "0123456789012345678901234567890123456789\"}", NULL, 0);
    s_test_verdict (&report, REPORT_FAILED, PROVIDER_ANSWERED, "response_too_large", 0);
    assert (!report.result && strstr (report.error, "\"type\":\"response_too_large\""));
    report_free (&report);

    // The worker's fault: retried as worker_invalid_result, nothing kept, the
    // provider not blamed.
    const char *invalid[][3] = {
        { "succeeded", "{\"body\":", NULL }, { "succeeded", "[1]", NULL },
        { "failed", NULL, "[\"no type\"]" }, { "failed", NULL, "{\"type\":1}" },
        { "exploded", "{}", NULL }, { NULL, "{}", NULL },
    };
    for (size_t i = 0; i < sizeof invalid / sizeof invalid[0]; i++) {
        s_test_read (&report, invalid[i][0], invalid[i][1], invalid[i][2], 0);
        s_test_verdict (&report, REPORT_RETRY, PROVIDER_NEUTRAL, "worker_invalid_result", 0);
        assert (!report.result && strstr (report.error, "worker_invalid_result"));
        report_free (&report);
    }

    // Whose fault a failure was, and what the answer asks of the provider:
    // an overload pauses it as long as it asks (1 s when it names nothing),
    // and the backoff's floor is what it asked (Retry-After, 0 out of range).
    static const struct {
        const char *outcome, *error;       // what the worker sent
        int64_t retry_after_ms;            // and its Retry-After
        report_outcome_t expected;         // the outcome kept
        provider_outcome_t verdict;        // the provider's verdict
        const char *type;                  // the error type
        int64_t pause_ms, backoff_ms;      // the pause, the backoff's floor
        int upstream_status;               // the upstream's status
    } cases[] = {
        { "failed", "{\"type\":\"upstream_status\",\"upstream_status\":404}", 0, REPORT_FAILED,
          PROVIDER_ANSWERED, "upstream_status", 0, 0, 404 },
        { "failed", "{\"type\":\"blocked_by_policy\"}", 0, REPORT_FAILED, PROVIDER_NEUTRAL,
          "blocked_by_policy", 0, 0, 0 },
        { "retry", "{\"type\":\"upstream_timeout\"}", 0, REPORT_RETRY, PROVIDER_FAILED,
          "upstream_timeout", 0, 0, 0 },
        { "retry", "{\"message\":\"x\",\"type\":\"connect_failed\"}", 0, REPORT_RETRY,
          PROVIDER_FAILED, "connect_failed", 0, 0, 0 },
        { "retry", "{\"type\":\"upstream_status\",\"upstream_status\":429}", 0, REPORT_RETRY,
          PROVIDER_OVERLOADED, "upstream_status", 1000, 0, 429 },
        { "retry", "{\"type\":\"upstream_status\",\"upstream_status\":503}", 5000, REPORT_RETRY,
          PROVIDER_OVERLOADED, "upstream_status", 5000, 5000, 503 },
        { "retry", "{\"type\":\"transfer_failed\"}", 25LL * 3600 * 1000, REPORT_RETRY,
          PROVIDER_FAILED, "transfer_failed", 0, 0, 0 },
        { "retry", "{\"type\":\"transfer_failed\"}", -1, REPORT_RETRY, PROVIDER_FAILED,
          "transfer_failed", 0, 0, 0 },
        // Handback and canceled say nothing about the upstream.
        { "handback", "{\"type\":\"worker_draining\"}", 0, REPORT_HANDBACK, PROVIDER_NEUTRAL, "", 0,
          0, 0 },
        { "canceled", "{\"type\":\"canceled\"}", 0, REPORT_CANCELED, PROVIDER_NEUTRAL, "", 0, 0, 0 },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        s_test_read (&report, cases[i].outcome, NULL, cases[i].error, cases[i].retry_after_ms);
        s_test_verdict (&report, cases[i].expected, cases[i].verdict, cases[i].type,
                        cases[i].pause_ms);
        assert (report.retry_after_ms == cases[i].backoff_ms);
        assert (report.upstream_status == cases[i].upstream_status);
        assert (!report.result && strcmp (report.error, cases[i].error) == 0);
        provider_call_t call = report_call (&report);
        assert (call.outcome == cases[i].verdict && call.retry_after_ms == cases[i].pause_ms);
        assert (strcmp (call.error_type, cases[i].type) == 0);
        report_free (&report);
    }
    report_free (&report);

    // Revision 3: usage, model and the token budget's headers. A usage
    // without a total gets their sum; one without counts, with a negative
    // or fractional count, or too long, is dropped; so is a model name
    // with a control character; the attempt's outcome stands either way.
    static const struct {
        const char *usage;      // RESULT usage (NULL: absent)
        const char *model;      // RESULT model (NULL: absent)
        bool kept;              // usage kept
        int64_t prompt, completion, total; // the counts read
        const char *model_kept; // the model kept
    } usages[] = {
        { "{\"prompt_tokens\":4,\"completion_tokens\":6,\"total_tokens\":10}", "m-1", true, 4,
          6, 10, "m-1" },
        { "{\"prompt_tokens\":4,\"completion_tokens\":6}", "gpt-4o", true, 4, 6, 10, "gpt-4o" },
        { "{\"prompt_tokens\":5,\"total_tokens\":5}", NULL, true, 5, 0, 5, "" },
        { "{\"prompt_tokens\":-4}", "a\nb", false, 0, 0, 0, "" },
        { "{\"prompt_tokens\":4,\"completion_tokens\":1.5}", "", false, 0, 0, 0, "" },
        { "{\"other\":4}", NULL, false, 0, 0, 0, "" },
        { "[4]", NULL, false, 0, 0, 0, "" },
        { "{\"prompt_tokens\":4", NULL, false, 0, 0, 0, "" },
    };
    for (size_t i = 0; i < sizeof usages / sizeof usages[0]; i++) {
        pack_writer_t *writer = pack_writer_new ();
        pack_put_str (writer, "outcome", "succeeded");
        pack_put_str (writer, "result", "{\"status\":200}");
        pack_put_str (writer, "usage", usages[i].usage);
        if (usages[i].model)
            pack_put_str (writer, "model", usages[i].model);
        const char *names[] = { "remaining_tokens", "reset_tokens_ms" };
        const int64_t values[] = { (int64_t) i, i == 0 ? 6000 : -5 };
        pack_put_int_map (writer, "ratelimit", names, values, 2);
        size_t size;
        const void *data = pack_writer_data (writer, &size);
        pack_reader_t *reader = pack_reader_new (data, size);
        report_read (&report, reader, 1024, "-");
        assert (report.outcome == REPORT_SUCCEEDED && report.result);
        assert ((report.usage != NULL) == usages[i].kept);
        assert (report.prompt_tokens == usages[i].prompt);
        assert (report.completion_tokens == usages[i].completion);
        assert (report.total_tokens == usages[i].total);
        assert (strcmp (report.model, usages[i].model_kept) == 0);
        assert (report.remaining_tokens == (int64_t) i);
        assert (report.reset_tokens_ms == (i == 0 ? 6000 : -1));
        report_free (&report);
        pack_reader_destroy (&reader);
        pack_writer_destroy (&writer);
    }
    // A RESULT of revision 2 has none of them.
    s_test_read (&report, "succeeded", "{}", NULL, 0);
    assert (!report.usage && report.total_tokens == 0 && report.model[0] == '\0');
    assert (report.remaining_tokens == -1 && report.reset_tokens_ms == -1);
    report_free (&report);

    char *error = report_error_json ("expired", "a \"quoted\" message");
    assert (strcmp (error, "{\"type\":\"expired\",\"message\":\"a \\\"quoted\\\" message\"}") == 0);
    free (error);
    log_init ("jobgate", LOG_INFO_);
    if (verbose)
        printf ("OK\n");
}
