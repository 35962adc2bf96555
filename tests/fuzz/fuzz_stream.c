// fuzz_stream — libFuzzer target: any bytes as an upstream's Server-Sent
// Events answer to a streamed chat completion (worker/stream.c), relayed
// through the secret scrubber (worker/scrub.c).
//
// The first two bytes choose where the answer is split into two reads;
// the first byte after them, with the next ones, a secret. The invariants:
// a split changes nothing (the same deltas as feeding byte by byte), the
// completion is JSON that common/jsontext reads back holding exactly the
// deltas joined, and no relayed piece shows the secret.
#include "jsontext.h"
#include "scrub.h"
#include "stream.h"

#include <assert.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

// The stream's cap: small, so the over-cap paths are reached too.
#define FUZZ_STREAM_CAP 4096

// Deltas or relayed pieces, joined.
typedef struct {
    char data[FUZZ_STREAM_CAP * 2]; // the text
    size_t len;                     // bytes used
    size_t pieces;                  // pieces seen
} s_joined_t;

// s_on_piece records one delta (never empty) or relayed piece.
static void
s_on_piece (void *arg, const char *text, size_t len)
{
    s_joined_t *joined = arg;
    assert (len > 0);
    assert (joined->len + len <= sizeof joined->data);
    memcpy (joined->data + joined->len, text, len);
    joined->len += len;
    joined->pieces++;
}

// What one way of feeding the answer gave.
typedef struct {
    s_joined_t deltas;          // every delta, joined
    int rc;                     // the last feed's return
    bool done;                  // [DONE] arrived
} s_fed_t;

// s_feed feeds the answer in two reads (split), or byte by byte (split = -1).
static stream_t *
s_feed (const uint8_t *data, size_t size, long split, s_fed_t *fed)
{
    stream_t *stream = stream_new (FUZZ_STREAM_CAP);
    assert (stream);
    memset (fed, 0, sizeof *fed);
    if (split < 0) {
        for (size_t i = 0; i < size && fed->rc == 0; i++)
            fed->rc = stream_feed (stream, (const char *) data + i, 1, s_on_piece, &fed->deltas);
    }
    else {
        fed->rc = stream_feed (stream, (const char *) data, (size_t) split, s_on_piece,
                               &fed->deltas);
        if (fed->rc == 0)
            fed->rc = stream_feed (stream, (const char *) data + split, size - (size_t) split,
                                   s_on_piece, &fed->deltas);
    }
    fed->done = stream_done (stream);
    return stream;
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
    if (size < 3)
        return 0;
    size_t secret_len = data[2] % 24;
    if (size < 3 + secret_len)
        return 0;
    char secret[32];
    memcpy (secret, data + 3, secret_len);
    secret[secret_len] = '\0';
    size_t secret_bytes = strlen (secret);
    size_t split = ((size_t) data[0] << 8 | data[1]);
    data += 3 + secret_len;
    size -= 3 + secret_len;
    if (split > size)
        split = size;

    s_fed_t whole, bytewise;
    stream_t *stream = s_feed (data, size, (long) split, &whole);
    stream_t *again = s_feed (data, size, -1, &bytewise);
    assert ((whole.rc == 0) == (bytewise.rc == 0));
    if (whole.rc == 0) {
        assert (whole.deltas.len == bytewise.deltas.len && whole.done == bytewise.done);
        assert (memcmp (whole.deltas.data, bytewise.deltas.data, whole.deltas.len) == 0);
        assert (stream_deltas (stream) == whole.deltas.pieces);
        // The completion reads back under the JSON policy, holding the deltas.
        char *text = stream_completion (stream, 1024 * 1024);
        assert (text);
        json_t *completion = jsontext_loads (text, NULL);
        assert (json_is_object (completion));
        json_t *message = json_object_get (json_array_get (json_object_get (completion, "choices"),
                                                           0), "message");
        json_t *content = json_object_get (message, "content");
        assert (json_string_length (content) == whole.deltas.len);
        assert (memcmp (json_string_value (content), whole.deltas.data, whole.deltas.len) == 0);
        json_decref (completion);
        free (text);
    }
    stream_destroy (&stream);
    stream_destroy (&again);

    // The deltas relayed through the scrubber, in the pieces they came in:
    // the secret never shows, whatever splits it.
    scrub_t *scrub = scrub_new (secret);
    s_joined_t relayed = { .len = 0 };
    size_t at = 0;
    while (at < whole.deltas.len) {
        size_t piece = 1 + (whole.deltas.data[at] & 7);
        if (piece > whole.deltas.len - at)
            piece = whole.deltas.len - at;
        assert (scrub_stream (scrub, whole.deltas.data + at, piece, s_on_piece, &relayed) == 0);
        at += piece;
    }
    scrub_stream_end (scrub, s_on_piece, &relayed);
    if (secret_bytes >= SCRUB_SECRET_MIN)
        assert (!memmem (relayed.data, relayed.len, secret, secret_bytes));
    else
        assert (relayed.len == whole.deltas.len
                && memcmp (relayed.data, whole.deltas.data, relayed.len) == 0);
    scrub_destroy (&scrub);
    return 0;
}
