// fuzz_response — libFuzzer target: any bytes as an upstream's answer head
// and body, read by worker/response.c and worker/html.c (header lines, the
// HTML title, the Retry-After value, the result a crawl renders).
//
// The input's lines up to the first empty one are header lines (a status
// line among them starts a new block, as after a redirect); the rest is the
// body. The invariants: the title is text without NUL no longer than the
// body allows, Retry-After stays within a day, and the result is JSON that
// common/jsontext reads back, with room left for what wraps it.
#include "html.h"
#include "jsontext.h"
#include "response.h"

#include <assert.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
    const char *text = (const char *) data;
    // The first byte picks the cap (with truncation, as a crawl) and the
    // status; the rest is the answer.
    if (size < 1)
        return 0;
    bool truncate = data[0] & 1;
    size_t cap = 16 + (size_t) (data[0] >> 1) * 64;
    text++;
    size--;
    response_t *response = response_new (cap, truncate);
    assert (response);
    size_t at = 0;
    while (at < size) {
        const char *end = memchr (text + at, '\n', size - at);
        size_t len = end ? (size_t) (end - (text + at)) + 1 : size - at;
        if (len <= 2 && (text[at] == '\n' || text[at] == '\r')) {
            at += len;
            break;
        }
        response_header (response, text + at, len);
        at += len;
    }
    const char *body = text + at;
    size_t body_size = size - at;

    char *title = NULL;
    int found = html_title (body, body_size, &title);
    assert (found >= 0 && (found == 1) == (title != NULL));
    if (title) {
        assert (strlen (title) <= 3 * body_size);
        free (title);
    }
    int64_t retry_after = response_retry_after_ms (response_header_value (response, "retry-after"),
                                                   1700000000);
    assert (retry_after >= 0 && retry_after <= 86400LL * 1000);

    bool kept = response_body (response, body, body_size);
    assert (kept || body_size > cap);
    response_info_t info = { .code = kept ? CURLE_OK : CURLE_WRITE_ERROR, .status = 200,
                             .crawl = true, .final_url = "http://example.com/",
                             .max_result_bytes = 1 << 20 };
    response_outcome_t out;
    response_finish (response, &info, &out);
    if (out.result) {
        size_t len = strlen (out.result);
        // What the worker emits is what every reader takes, wrapped in a job
        // object and a webhook delivery.
        assert (jsontext_scan (out.result, len, JSONTEXT_MAX_DEPTH - 4, JSONTEXT_MAX_VALUES - 4000)
                    .within);
        json_t *result = jsontext_loads (out.result, NULL);
        assert (json_is_object (result));
        assert (json_is_object (json_object_get (result, "headers")));
        json_t *title_value = json_object_get (result, "title");
        assert (json_is_string (title_value) || json_is_null (title_value));
        json_decref (result);
    }
    else
        assert (out.error && strcmp (out.outcome, "failed") == 0);
    response_outcome_free (&out);
    response_destroy (&response);
    return 0;
}
