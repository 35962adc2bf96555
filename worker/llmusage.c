// llmusage — what an LLM answer says it cost, and how much budget is left.
#include "llmusage.h"
#include "jsontext.h"
#include "mem.h"

#include <assert.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// The members that make a usage object worth keeping.
static const char *const s_counts[] = { "prompt_tokens", "completion_tokens", "total_tokens" };

// s_count_ok is true for a JSON integer that can be a count of tokens.
static bool
s_count_ok (json_t *value)
{
    return json_is_integer (value) && json_integer_value (value) >= 0
           && json_integer_value (value) <= (json_int_t) 1e15;
}

// s_integers_of copies the integer members of object (a level deeper: the
// objects of integers, such as prompt_tokens_details) into a new object.
static json_t *
s_integers_of (json_t *object, bool nested)
{
    json_t *copy = json_object ();
    const char *key;
    json_t *value;
    json_object_foreach (object, key, value) {
        if (s_count_ok (value))
            json_object_set (copy, key, value);
        else if (nested && json_is_object (value)) {
            json_t *inner = s_integers_of (value, false);
            if (json_object_size (inner) > 0)
                json_object_set (copy, key, inner);
            json_decref (inner);
        }
    }
    return copy;
}

void
llmusage_of_answer (json_t *answer, char **usage_text, char **model)
{
    *usage_text = NULL;
    *model = NULL;
    json_t *usage = json_object_get (answer, "usage");
    bool counted = false;
    for (size_t i = 0; json_is_object (usage) && i < sizeof s_counts / sizeof s_counts[0]; i++)
        counted = counted || s_count_ok (json_object_get (usage, s_counts[i]));
    if (counted) {
        json_t *kept = s_integers_of (usage, true);
        char *text = jsontext_dump (kept);
        json_decref (kept);
        if (text && strlen (text) <= LLMUSAGE_TEXT_MAX)
            *usage_text = text;
        else
            free (text);
    }
    json_t *name = json_object_get (answer, "model");
    if (json_is_string (name) && json_string_length (name) > 0
        && json_string_length (name) <= LLMUSAGE_MODEL_MAX
        && strlen (json_string_value (name)) == json_string_length (name))
        *model = mem_strdup (json_string_value (name));
}

void
llmusage_of_body (const char *body, size_t len, size_t max_parse_bytes, char **usage_text,
                  char **model)
{
    *usage_text = NULL;
    *model = NULL;
    if (!body || len == 0 || len > max_parse_bytes || !jsontext_within (body, len))
        return;
    json_t *answer = jsontext_load (body, len, NULL);
    if (json_is_object (answer))
        llmusage_of_answer (answer, usage_text, model);
    json_decref (answer);
}

int64_t
llmusage_duration_ms (const char *text)
{
    if (!text)
        return -1;
    while (isspace ((unsigned char) *text))
        text++;
    // Each part is a number (digits, maybe a fraction) and a unit; the
    // whole is their sum in microseconds (so "0.5ms" rounds up to 1).
    const char *at = text;
    double total_us = 0;
    int parts = 0;
    while (*at && !isspace ((unsigned char) *at)) {
        if (!isdigit ((unsigned char) *at))
            return -1;
        double number = 0;
        while (isdigit ((unsigned char) *at) && number < 1e12)
            number = number * 10 + (*at++ - '0');
        if (isdigit ((unsigned char) *at))
            return -1;
        if (*at == '.') {
            at++;
            if (!isdigit ((unsigned char) *at))
                return -1;
            for (double scale = 0.1; isdigit ((unsigned char) *at); scale /= 10)
                number += (*at++ - '0') * scale;
        }
        double unit_us;
        if (strncmp (at, "ms", 2) == 0)
            unit_us = 1e3, at += 2;
        else if (strncmp (at, "us", 2) == 0)
            unit_us = 1, at += 2;
        else if (strncmp (at, "ns", 2) == 0)
            unit_us = 1e-3, at += 2;
        else if (*at == 'h')
            unit_us = 3600e6, at++;
        else if (*at == 'm')
            unit_us = 60e6, at++;
        else if (*at == 's')
            unit_us = 1e6, at++;
        else
            return -1;
        total_us += number * unit_us;
        parts++;
    }
    while (isspace ((unsigned char) *at))
        at++;
    if (parts == 0 || *at)
        return -1;
    if (total_us > 86400e6)
        total_us = 86400e6;
    int64_t ms = (int64_t) (total_us / 1000);
    return (double) ms * 1000 < total_us ? ms + 1 : ms;
}

int64_t
llmusage_count (const char *text)
{
    if (!text)
        return -1;
    while (isspace ((unsigned char) *text))
        text++;
    if (!isdigit ((unsigned char) *text))
        return -1;
    int64_t value = 0;
    while (isdigit ((unsigned char) *text)) {
        if (value > 100000000000000)
            return -1;
        value = value * 10 + (*text++ - '0');
    }
    while (isspace ((unsigned char) *text))
        text++;
    return *text ? -1 : value;
}

// --- self-test ---

// s_test_body checks llmusage_of_body on text: the usage text and model.
static void
s_test_body (const char *text, const char *want_usage, const char *want_model)
{
    char *usage, *model;
    llmusage_of_body (text, strlen (text), 65536, &usage, &model);
    bool ok = (want_usage ? usage && strcmp (usage, want_usage) == 0 : !usage)
              && (want_model ? model && strcmp (model, want_model) == 0 : !model);
    if (!ok)
        fprintf (stderr, "llmusage: %s gave usage %s model %s\n", text, usage ? usage : "-",
                 model ? model : "-");
    assert (ok);
    free (usage);
    free (model);
}

void
llmusage_test (bool verbose)
{
    if (verbose)
        printf (" * llmusage: ");
    // A chat completion: the counts and the details of integers are kept,
    // anything else (a string could be an echoed secret) is not.
    s_test_body ("{\"id\":\"c\",\"model\":\"gpt-x\",\"choices\":[],\"usage\":{\"prompt_tokens\":9,"
                 "\"completion_tokens\":12,\"total_tokens\":21,\"note\":\"sk-secret\","
                 "\"prompt_tokens_details\":{\"cached_tokens\":3,\"x\":\"y\"},\"empty\":{}}}",
                 "{\"prompt_tokens\":9,\"completion_tokens\":12,\"total_tokens\":21,"
                 "\"prompt_tokens_details\":{\"cached_tokens\":3}}", "gpt-x");
    // Embeddings report no completion tokens.
    s_test_body ("{\"object\":\"list\",\"model\":\"e\",\"usage\":{\"prompt_tokens\":5,"
                 "\"total_tokens\":5}}", "{\"prompt_tokens\":5,\"total_tokens\":5}", "e");
    // No usage, a usage of nothing countable, negative or fractional counts.
    s_test_body ("{\"model\":\"m\"}", NULL, "m");
    s_test_body ("{\"usage\":{\"prompt_tokens\":-1,\"total_tokens\":1.5}}", NULL, NULL);
    s_test_body ("{\"usage\":[1,2],\"model\":7}", NULL, NULL);
    s_test_body ("{\"usage\":{\"total_tokens\":1e3}}", NULL, NULL);
    // A model name with a NUL, or too long, is not kept; neither is a body
    // that is not a JSON object, or is over the parse bound.
    s_test_body ("{\"model\":\"a\\u0000b\",\"usage\":{\"total_tokens\":1}}",
                 "{\"total_tokens\":1}", NULL);
    char long_model[LLMUSAGE_MODEL_MAX + 32];
    snprintf (long_model, sizeof long_model, "{\"model\":\"%0*d\"}", LLMUSAGE_MODEL_MAX + 1, 0);
    s_test_body (long_model, NULL, NULL);
    s_test_body ("[{\"usage\":{\"total_tokens\":1}}]", NULL, NULL);
    s_test_body ("{\"usage\":{\"total_tokens\":1}", NULL, NULL);
    char *usage, *model;
    const char *small = "{\"model\":\"m\",\"usage\":{\"total_tokens\":1}}";
    llmusage_of_body (small, strlen (small), 10, &usage, &model);
    assert (!usage && !model);
    llmusage_of_body (NULL, 0, 10, &usage, &model);
    assert (!usage && !model);

    // OpenAI's reset durations.
    static const struct {
        const char *text;       // the header value
        int64_t ms;             // what it means
    } durations[] = {
        { "1s", 1000 }, { "6m0s", 360000 }, { "250ms", 250 }, { "1h2m3.5s", 3723500 },
        { "0.5s", 500 }, { " 20ms ", 20 }, { "0.0001s", 1 }, { "1.2345s", 1235 },
        { "90000h", 86400000 }, { "0s", 0 }, { "", -1 }, { "s", -1 }, { "5", -1 },
        { "1x", -1 }, { "1.s", -1 }, { "-1s", -1 }, { "1s 2s", -1 }, { "10ms5", -1 },
    };
    for (size_t i = 0; i < sizeof durations / sizeof durations[0]; i++) {
        int64_t got = llmusage_duration_ms (durations[i].text);
        if (got != durations[i].ms)
            fprintf (stderr, "llmusage: \"%s\" gave %lld\n", durations[i].text, (long long) got);
        assert (got == durations[i].ms);
    }
    assert (llmusage_duration_ms (NULL) == -1);
    assert (llmusage_count ("149984") == 149984 && llmusage_count (" 0 ") == 0);
    assert (llmusage_count ("12a") == -1 && llmusage_count ("-5") == -1);
    assert (llmusage_count ("") == -1 && llmusage_count (NULL) == -1);
    assert (llmusage_count ("99999999999999999999999") == -1);
    if (verbose)
        printf ("OK\n");
}
