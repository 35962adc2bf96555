// fuzz_result — libFuzzer target: any bytes as an upstream answer echoing
// (or not) the provider's secret, rendered into a result by worker/response.c
// with the scrubber of worker/scrub.c.
//
// Input: one byte, the secret's length (0..40), the secret, one byte
// choosing the content type, then the body; an X-Echo header carries the
// body's first line. The invariants: the result is JSON common/jsontext
// reads back; no string a client decodes from it (keys and values, a body
// kept as JSON text once parsed, a base64 body once decoded) holds the
// secret; the rendered text is never over its cap.
#include "jsontext.h"
#include "response.h"
#include "scrub.h"

#include <assert.h>
#include <sodium.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

// The secret under test, for s_holds_secret.
static char s_secret[64];

// s_holds_secret is true when value or any string (or key) inside holds the secret.
static bool
s_holds_secret (json_t *value)
{
    if (json_is_string (value))
        return memmem (json_string_value (value), json_string_length (value), s_secret,
                       strlen (s_secret)) != NULL;
    const char *key;
    json_t *member;
    if (json_is_object (value))
        json_object_foreach (value, key, member)
            if (strstr (key, s_secret) || s_holds_secret (member))
                return true;
    size_t index;
    if (json_is_array (value))
        json_array_foreach (value, index, member)
            if (s_holds_secret (member))
                return true;
    return false;
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
    static const char *const types[] = { "application/json", "text/plain", "text/html",
                                         "application/octet-stream", "application/problem+json" };
    if (size < 2)
        return 0;
    size_t secret_len = data[0] % 41;
    if (size < 2 + secret_len)
        return 0;
    memcpy (s_secret, data + 1, secret_len);
    s_secret[secret_len] = '\0';
    const char *type = types[data[1 + secret_len] % 5];
    const char *body = (const char *) data + 2 + secret_len;
    size_t body_size = size - 2 - secret_len;
    size_t cap = data[1 + secret_len] & 0x80 ? 4096 : 1 << 20;

    scrub_t *scrub = scrub_new (s_secret);
    response_t *response = response_new (1 << 20, false);
    assert (response);
    char line[256];
    snprintf (line, sizeof line, "Content-Type: %s\r\n", type);
    response_header (response, "HTTP/1.1 200 OK\r\n", 17);
    response_header (response, line, strlen (line));
    size_t echo = 0;
    while (echo < body_size && body[echo] != '\r' && body[echo] != '\n')
        echo++;
    char header[300];
    int header_len = snprintf (header, sizeof header, "X-Echo: %.*s\r\n",
                               (int) (echo < 200 ? echo : 200), body);
    response_header (response, header, (size_t) header_len);
    assert (response_body (response, body, body_size));
    response_redact (response, NULL, scrub);
    response_info_t info = { .code = CURLE_OK, .status = 200, .max_result_bytes = cap };
    response_outcome_t out;
    response_finish (response, &info, &out);
    if (!out.result)
        assert (strcmp (out.outcome, "failed") == 0 && strstr (out.error, "response_too_large"));
    else {
        assert (strcmp (out.outcome, "succeeded") == 0 && strlen (out.result) <= cap);
        json_t *result = jsontext_loads (out.result, NULL);
        assert (json_is_object (result));
        if (strlen (s_secret) >= SCRUB_SECRET_MIN) {
            // The result's own keys and markers are jobgate's words, not the
            // upstream's: what came from upstream is the headers and the body.
            // (A base64 body is judged by its bytes: its text is letters
            // that may spell anything, "AAAA" for zeros.)
            json_t *body_value = json_object_get (result, "body");
            const char *encoding = json_string_value (json_object_get (result, "body_encoding"));
            assert (!s_holds_secret (json_object_get (result, "headers")));
            assert ((encoding && strcmp (encoding, "base64") == 0) || !s_holds_secret (body_value));
            if (encoding && strcmp (encoding, "json_text") == 0) {
                json_t *inner = json_loadb (json_string_value (body_value),
                                            json_string_length (body_value),
                                            JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
                assert (!inner || !s_holds_secret (inner));
                json_decref (inner);
            }
            if (encoding && strcmp (encoding, "base64") == 0) {
                size_t len = json_string_length (body_value);
                unsigned char *bytes = malloc (len + 1);
                size_t bytes_len = 0;
                assert (bytes && sodium_base642bin (bytes, len + 1, json_string_value (body_value),
                                                    len, NULL, &bytes_len, NULL,
                                                    sodium_base64_VARIANT_ORIGINAL) == 0);
                assert (!memmem (bytes, bytes_len, s_secret, strlen (s_secret)));
                free (bytes);
            }
        }
        json_decref (result);
    }
    response_outcome_free (&out);
    response_destroy (&response);
    scrub_destroy (&scrub);
    return 0;
}
