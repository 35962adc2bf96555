// fuzz_http1 — libFuzzer target: any bytes as what a client sends to the
// gateway's front door.
//
// The strict reader must never crash or read out of bounds, and must not
// depend on how the network split the bytes: read whole, and in pieces of
// a size chosen by the first byte, the same bytes must give the same
// events and the same verdict. An error is final.
#include "http1.h"

#include <assert.h>
#include <stdint.h>
#include <string.h>

// s_run reads text in pieces of step bytes; writes the events (H, R, E) into
// events and returns the error status, or 0.
static int
s_run (const char *text, size_t len, size_t step, char *events, size_t size)
{
    http1_t reader;
    http1_init (&reader, 512);
    size_t n = 0, at = 0;
    while (true) {
        size_t piece = len - at < step ? len - at : step;
        size_t used;
        http1_event_t event = http1_feed (&reader, text + at, piece, &used);
        assert (used <= piece);
        at += used;
        if (event == HTTP1_ERROR) {
            assert (reader.error_status >= 400 && reader.error_reason);
            size_t again;
            assert (http1_feed (&reader, text, len, &again) == HTTP1_ERROR && again == 0);
            if (n + 1 < size)
                events[n++] = 'E';
            events[n] = '\0';
            return reader.error_status;
        }
        if (event == HTTP1_HEAD_DONE || event == HTTP1_REQUEST_DONE) {
            assert (!http1_in_head (&reader));
            if (n + 1 < size)
                events[n++] = event == HTTP1_HEAD_DONE ? 'H' : 'R';
            continue;
        }
        assert (used == piece);
        if (at == len)
            break;
    }
    events[n] = '\0';
    return 0;
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    size_t step = (size_t) (data[0] % 16) + 1;
    const char *text = (const char *) data + 1;
    char whole[256], pieces[256];
    int status_whole = s_run (text, size - 1, size, whole, sizeof whole);
    int status_pieces = s_run (text, size - 1, step, pieces, sizeof pieces);
    assert (status_whole == status_pieces);
    assert (strcmp (whole, pieces) == 0);
    return 0;
}
