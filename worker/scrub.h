// scrub — keeps a provider's secret out of everything a client reads.
//
// An upstream that echoes its request (a debugging endpoint, an error page
// quoting the headers, a model repeating its prompt) hands the provider's
// secret back. Matching the raw bytes is not enough: a JSON answer can spell
// the secret with escapes ("\/" as PHP writes it, "\"", "\\", "\u0041"), an
// HTML page with entities, a URL with percent-escapes, and a stream can
// split it across two deltas. A scrubber replaces the secret in what the
// client will read, after decoding:
//
// * scrub_text replaces every spelling of the secret in raw bytes: as it
//   is, JSON-escaped (as jansson writes it, and with "\/"), HTML-escaped and
//   percent-encoded;
// * scrub_json first decodes every JSON string of a text (object keys and
//   values, any escapes) and rewrites each one whose decoded text holds the
//   secret as the scrubbed string, then applies scrub_text: a valid JSON
//   text stays valid, and a text that is not JSON is scanned the same way
//   (whatever stands between double quotes), so one function serves every
//   body;
// * scrub_stream takes text that arrives in pieces and holds back the tail
//   that could begin a spelling until the next piece (or the end) decides.
//
// Every occurrence becomes SCRUB_REDACTED. Should the secret still be found
// after that (a secret overlapping the marker), the whole text becomes the
// marker. Secrets shorter than SCRUB_SECRET_MIN bytes are never replaced
// (that would mangle ordinary text); scrub_found still finds them, so a
// header holding one is hidden whole.
//
// Every function takes a NULL scrubber as "no secret": nothing is found,
// nothing replaced, a stream passes through unchanged.
//
// What it scrubs is an upstream's text, as long as the upstream made it
// (behind the result cap): the copies are the memory policy's exception
// (common/mem.h). Running out of memory for one fails the call (-1), and
// the text is never shown unscrubbed.
#ifndef JOBGATE_SCRUB_H
#define JOBGATE_SCRUB_H

#include <stdbool.h>
#include <stddef.h>

// What a scrubbed secret reads as.
#define SCRUB_REDACTED "[redacted]"
// The shortest secret replaced in text.
#define SCRUB_SECRET_MIN 8

typedef struct _scrub_t scrub_t;

// Called with each piece of scrubbed stream text (borrowed for the call).
typedef void (scrub_emit_fn) (void *arg, const char *text, size_t len);

// scrub_new prepares a scrubber for secret (copied). Returns NULL when
// secret is NULL or empty: nothing to scrub. Otherwise this function can't
// fail (out of memory aborts: common/mem.h).
scrub_t *scrub_new (const char *secret);

// scrub_destroy frees a scrubber; nulls *self_p.
void scrub_destroy (scrub_t **self_p);

// scrub_found is true when data (len bytes) holds a spelling of the secret,
// raw or inside a JSON string once decoded. Any secret length counts.
bool scrub_found (const scrub_t *self, const char *data, size_t len);

// scrub_text replaces every spelling of the secret in data. Returns 1 with
// a new NUL-terminated text in *out (caller frees; *out_len its length) when
// something was replaced, 0 with *out NULL when nothing was, -1 when memory
// ran out (the text must then not be shown).
int scrub_text (const scrub_t *self, const char *data, size_t len, char **out,
                size_t *out_len);

// scrub_json is scrub_text after rewriting each JSON string whose decoded
// text holds a spelling of the secret (see above). Same returns.
int scrub_json (const scrub_t *self, const char *data, size_t len, char **out,
                size_t *out_len);

// scrub_stream scrubs the next piece of a text that arrives in pieces and
// calls fn with what can be shown now (nothing, when all of it may still
// be the start of the secret). Pieces are split only between UTF-8
// characters. Returns 0, or -1 when memory ran out.
int scrub_stream (scrub_t *self, const char *data, size_t len, scrub_emit_fn *fn, void *arg);

// scrub_stream_end calls fn with what the stream still holds back, if
// anything: the text has ended, so it cannot complete a secret.
void scrub_stream_end (scrub_t *self, scrub_emit_fn *fn, void *arg);

// scrub_test runs the self-test.
void scrub_test (bool verbose);

#endif
