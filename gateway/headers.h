// headers — the request header values the gateway acts on, parsed exactly.
//
// Each parser takes the text of one header (or every line of a repeated
// one) as libmicrohttpd hands it over and never trusts its shape: what does
// not follow the grammar is ignored (Prefer, Last-Event-ID: a preference
// or resume point not understood is as if absent, RFC 7240 §2) or refused
// with a reason (Idempotency-Key, Host). Pure functions, no state.
#ifndef JOBGATE_HEADERS_H
#define JOBGATE_HEADERS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

// Longest Idempotency-Key accepted, in bytes. The broker indexes the key with
// the tenant in LMDB, whose keys hold at most 511 bytes.
#define HEADERS_IDEMPOTENCY_KEY_MAX 255

// headers_prefer_wait reads the "wait" preference (RFC 7240 §4.3) from the
// Prefer header lines values[0..count), in the order received: a list of
// preferences, each a token with an optional "=" value (token or quoted
// string) and ";" parameters. Names are compared case-insensitively, and
// only the first "wait" counts (§2). Returns its delta-seconds, capped at
// max_s; -1 when there is no "wait" or its value is not delta-seconds
// ("wait=1e18", "wait=-1", "wait"): such a preference is ignored.
int headers_prefer_wait (const char *const *values, size_t count, int max_s);

// headers_prefer_respond_async is true when the Prefer header lines
// values[0..count) hold a well-formed "respond-async" preference (RFC 7240
// §4.1), name compared case-insensitively.
bool headers_prefer_respond_async (const char *const *values, size_t count);

// What a Last-Event-ID names: the last event a client of an event stream
// received (sse.c writes these ids).
typedef struct {
    char kind;                  // 'c' a chunk, 's' a status
    int attempt;                // the attempt's identity (attempt_seq) it came with
    int64_t index;              // chunk: its index
    char status[16];            // status: its name
} headers_event_id_t;

// headers_last_event_id parses "c<attempt>.<index>" or "s<attempt>.<status>"
// (decimal digits only, attempt at most INT32_MAX as the record's
// attempt_seq, a known status name) into *id. Returns 0, or -1 when
// text is anything else (the stream then starts from the beginning).
int headers_last_event_id (const char *text, headers_event_id_t *id);

// headers_host_allowed is true when host (a Host header value: a name, an
// IPv4 literal or a bracketed IPv6 literal, with an optional port) names one
// of allowed[0..count): lower-case names or literals ("[::1]" for IPv6), any
// port; "*" allows every host. A trailing dot is ignored ("localhost.").
// A malformed host is not allowed.
bool headers_host_allowed (const char *host, const char *const *allowed, size_t count);

// headers_idempotency_key_problem says why key (len bytes) is not an
// acceptable Idempotency-Key, or returns NULL: 1 to
// HEADERS_IDEMPOTENCY_KEY_MAX bytes of printable ASCII (space to '~').
const char *headers_idempotency_key_problem (const char *key, size_t len);

// headers_test runs the self-test.
void headers_test (bool verbose);

#endif
