// http1 — strict reading of HTTP/1.1 request framing (RFC 9112), byte by byte.
//
// libmicrohttpd 0.9.75 parses leniently, even with MHD_OPTION_STRICT_FOR_CLIENT:
// it takes LF alone as a line end, keeps a bare CR inside a value, cuts a
// value at a NUL, glues an obs-folded line onto the field name, accepts two
// Content-Lengths (the first wins, the rest becomes a second request),
// Content-Length with Transfer-Encoding, and waits 60 s on a coding it does
// not know. Behind a proxy that reads the same bytes differently, each of
// these lets one request hide another (request smuggling). So the gateway's
// front door (frontdoor.c) runs every byte a client sends through this
// reader first, and libmicrohttpd only ever sees requests that have one
// meaning:
//
// * every line ends with CRLF; no NUL, bare CR, bare LF or other control
//   byte in a head; no obs-fold; no whitespace before a field's colon;
// * a request line "METHOD SP /path SP HTTP/1.x" (origin-form, or "*" for
//   OPTIONS), versions 1.0 and 1.1 only (505 for others);
// * exactly one Host in HTTP/1.1 (at most one in 1.0);
// * at most one Content-Length, all digits; never with Transfer-Encoding;
//   Transfer-Encoding only in HTTP/1.1 and only "chunked", once (501 for
//   any other coding);
// * chunk sizes in hex (at most 15 digits), chunk extensions at most
//   HTTP1_MAX_CHUNK_EXT bytes, CRLF after each chunk's data, trailer fields
//   as strict as header fields and never framing or Host;
// * a head (or trailer section) at most max_head_bytes (431 above).
//
// No state but this struct; no I/O; no allocation.
#ifndef JOBGATE_HTTP1_H
#define JOBGATE_HTTP1_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

// Longest chunk extension accepted, in bytes.
#define HTTP1_MAX_CHUNK_EXT 256

// What one call of http1_feed stopped at.
typedef enum {
    HTTP1_MORE,             // every byte given was valid; more is needed
    HTTP1_HEAD_DONE,        // a request's head ended at the last byte used
    HTTP1_REQUEST_DONE,     // a whole request (head and body) ended there
    HTTP1_ERROR             // the byte after the ones used is invalid
} http1_event_t;

typedef struct {
    size_t max_head_bytes;      // a head or trailer section may hold this much
    int error_status;           // on HTTP1_ERROR: 400, 431, 501 or 505
    const char *error_reason;   // on HTTP1_ERROR: what was wrong, plain English
    int state;                  // where in a request the reader is (private)
    size_t head_bytes;          // bytes of the current head or trailer section
    unsigned blank_lines;       // empty lines before the request line
    char method[8];             // the method's first bytes, NUL-terminated
    size_t method_len;          // the method's length
    char target_first;          // first byte of the request target
    size_t target_len;          // the target's length
    char version[9];            // "HTTP/1.1", NUL-terminated
    size_t version_len;         // its length so far
    int minor;                  // HTTP minor version (0 or 1)
    char name[24];              // current field name, lower case, cut to fit
    size_t name_len;            // its full length
    int field;                  // which framing field the current line is
    char value[128];            // value of a framing field, cut to fit
    size_t value_len;           // its full length
    unsigned hosts;             // Host fields seen
    unsigned content_lengths;   // Content-Length fields seen
    bool chunked;               // Transfer-Encoding: chunked seen
    bool transfer_encoding;     // a Transfer-Encoding field seen
    uint64_t content_length;    // its value
    uint64_t remaining;         // body or chunk bytes still to come
    unsigned hex_digits;        // digits of the chunk size so far
    size_t ext_len;             // bytes of the chunk extension so far
    bool trailers;              // reading the trailer section
} http1_t;

// http1_init readies self for a new connection.
void http1_init (http1_t *self, size_t max_head_bytes);

// http1_feed reads data[0..len) from where the last call stopped and sets
// *used to how many bytes it accepted: all of them (HTTP1_MORE), up to and
// including the byte that ended a head or a request, or those before the
// first invalid byte (HTTP1_ERROR; error_status and error_reason say why,
// and every later call fails the same way). A request without a body gives
// HTTP1_HEAD_DONE, then HTTP1_REQUEST_DONE with *used 0 at the next call.
http1_event_t http1_feed (http1_t *self, const char *data, size_t len, size_t *used);

// http1_between_requests is true when no byte of a next request has come.
bool http1_between_requests (const http1_t *self);

// http1_in_head is true while a head has begun and not ended.
bool http1_in_head (const http1_t *self);

// http1_in_body is true while a request's body is being read.
bool http1_in_body (const http1_t *self);

// http1_test runs the self-test.
void http1_test (bool verbose);

#endif
