// http1 — strict reading of HTTP/1.1 request framing (RFC 9112), byte by byte.
#include "http1.h"

#include <assert.h>
#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

// Where in a request the reader is.
enum {
    ST_START,           // before a request line (empty lines allowed)
    ST_START_LF,        // after the CR of an empty line there
    ST_METHOD,          // in the method
    ST_TARGET,          // in the request target
    ST_VERSION,         // in the HTTP version
    ST_LINE_LF,         // after the CR of the request line
    ST_FIELD_START,     // at the start of a field line (or the empty line)
    ST_NAME,            // in a field name
    ST_VALUE,           // in a field value
    ST_VALUE_LF,        // after the CR of a field line
    ST_END_LF,          // after the CR of the empty line ending a section
    ST_BODY,            // in a Content-Length body
    ST_CHUNK_SIZE,      // in a chunk size
    ST_CHUNK_EXT,       // in a chunk extension
    ST_CHUNK_SIZE_LF,   // after the CR of a chunk size line
    ST_CHUNK_DATA,      // in a chunk's data
    ST_CHUNK_DATA_CR,   // after a chunk's data
    ST_CHUNK_DATA_LF,   // after the CR following a chunk's data
    ST_DONE,            // a body-less request ended; REQUEST_DONE comes next
    ST_FAILED           // an error was found
};

// The fields that frame a request or name its host.
enum { FIELD_OTHER, FIELD_HOST, FIELD_CONTENT_LENGTH, FIELD_TRANSFER_ENCODING };

// Empty lines tolerated before a request line (RFC 9112 §2.2: "at least one").
#define S_MAX_BLANK_LINES 4

void
http1_init (http1_t *self, size_t max_head_bytes)
{
    memset (self, 0, sizeof *self);
    self->max_head_bytes = max_head_bytes;
    self->state = ST_START;
}

// s_next_request forgets the request that ended.
static void
s_next_request (http1_t *self)
{
    size_t max_head_bytes = self->max_head_bytes;
    http1_init (self, max_head_bytes);
}

static bool
s_tchar (unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')
           || (c != 0 && strchr ("!#$%&'*+-.^_`|~", c));
}

// s_fail records an error; returns HTTP1_ERROR.
static http1_event_t
s_fail (http1_t *self, int status, const char *reason)
{
    self->state = ST_FAILED;
    self->error_status = status;
    self->error_reason = reason;
    return HTTP1_ERROR;
}


// s_transfer_codings reads one Transfer-Encoding value: a list of codings
// of which jobgate knows only "chunked", once.
static http1_event_t
s_transfer_codings (http1_t *self)
{
    if (self->value_len >= sizeof self->value)
        return s_fail (self, 400, "the Transfer-Encoding field is too long");
    const char *p = self->value;
    bool any = false;
    while (*p) {
        while (*p == ' ' || *p == '\t' || *p == ',')
            p++;
        if (!*p)
            break;
        const char *coding = p;
        while (s_tchar ((unsigned char) *p))
            p++;
        size_t len = (size_t) (p - coding);
        while (*p == ' ' || *p == '\t')
            p++;
        if (len == 0 || (*p != ',' && *p != '\0' && *p != ';'))
            return s_fail (self, 400, "the Transfer-Encoding field is malformed");
        if (len != 7 || strncasecmp (coding, "chunked", 7) != 0)
            return s_fail (self, 501, "a transfer coding other than chunked is not supported");
        if (*p == ';')
            return s_fail (self, 400, "the chunked transfer coding takes no parameters");
        if (self->chunked)
            return s_fail (self, 400, "the chunked transfer coding is applied more than once");
        self->chunked = true;
        any = true;
    }
    if (!any)
        return s_fail (self, 400, "the Transfer-Encoding field is empty");
    return HTTP1_MORE;
}

// s_field_end handles a complete field line.
static http1_event_t
s_field_end (http1_t *self)
{
    if (self->field == FIELD_OTHER)
        return HTTP1_MORE;
    if (self->trailers)
        return s_fail (self, 400, "a trailer field may not frame the message or name its host");
    // Trailing whitespace is not part of the value.
    size_t len = self->value_len < sizeof self->value ? self->value_len : sizeof self->value - 1;
    while (len > 0 && (self->value[len - 1] == ' ' || self->value[len - 1] == '\t'))
        len--;
    self->value[len] = '\0';
    if (self->value_len < sizeof self->value)
        self->value_len = len;
    if (self->field == FIELD_HOST) {
        self->hosts++;
        return HTTP1_MORE;
    }
    if (self->field == FIELD_TRANSFER_ENCODING) {
        self->transfer_encoding = true;
        return s_transfer_codings (self);
    }
    if (++self->content_lengths > 1)
        return s_fail (self, 400, "the request has more than one Content-Length field");
    if (len == 0 || len > 18 || self->value_len >= sizeof self->value)
        return s_fail (self, 400, "the Content-Length field is not a number of bytes");
    uint64_t length = 0;
    for (size_t i = 0; i < len; i++) {
        if (self->value[i] < '0' || self->value[i] > '9')
            return s_fail (self, 400, "the Content-Length field is not a number of bytes");
        length = length * 10 + (uint64_t) (self->value[i] - '0');
    }
    self->content_length = length;
    return HTTP1_MORE;
}

// s_head_end checks the head as a whole and sets up the body.
static http1_event_t
s_head_end (http1_t *self)
{
    if (self->trailers) {
        s_next_request (self);
        return HTTP1_REQUEST_DONE;
    }
    if (self->minor == 1 && self->hosts != 1)
        return s_fail (self, 400, self->hosts ? "the request has more than one Host field"
                                              : "an HTTP/1.1 request needs a Host field");
    if (self->hosts > 1)
        return s_fail (self, 400, "the request has more than one Host field");
    if (self->transfer_encoding && self->minor == 0)
        return s_fail (self, 400, "Transfer-Encoding is not allowed in an HTTP/1.0 request");
    if (self->transfer_encoding && self->content_lengths)
        return s_fail (self, 400, "the request has both Content-Length and Transfer-Encoding");
    if (self->chunked) {
        self->state = ST_CHUNK_SIZE;
        self->hex_digits = 0;
        self->remaining = 0;
        self->ext_len = 0;
    }
    else if (self->content_length > 0) {
        self->state = ST_BODY;
        self->remaining = self->content_length;
    }
    else
        self->state = ST_DONE;
    return HTTP1_HEAD_DONE;
}

// s_request_line_end checks the method, target and version.
static http1_event_t
s_request_line_end (http1_t *self)
{
    const char *v = self->version;
    if (self->version_len != 8 || strncmp (v, "HTTP/", 5) != 0 || v[5] < '0' || v[5] > '9'
        || v[6] != '.' || v[7] < '0' || v[7] > '9')
        return s_fail (self, 400, "the request line does not end with an HTTP version");
    if (v[5] != '1' || (v[7] != '0' && v[7] != '1'))
        return s_fail (self, 505, "only HTTP/1.0 and HTTP/1.1 are supported");
    self->minor = v[7] - '0';
    self->state = ST_LINE_LF;
    return HTTP1_MORE;
}

// s_head_byte counts one byte of a head or trailer section against the cap.
static bool
s_head_byte (http1_t *self)
{
    return ++self->head_bytes <= self->max_head_bytes;
}

http1_event_t
http1_feed (http1_t *self, const char *data, size_t len, size_t *used)
{
    *used = 0;
    if (self->state == ST_FAILED)
        return HTTP1_ERROR;
    if (self->state == ST_DONE) {
        s_next_request (self);
        return HTTP1_REQUEST_DONE;
    }
    size_t i = 0;
    while (i < len) {
        unsigned char c = (unsigned char) data[i];
        *used = i;
        switch (self->state) {
        case ST_BODY:
        case ST_CHUNK_DATA: {
            size_t take = len - i;
            if (take > self->remaining)
                take = (size_t) self->remaining;
            self->remaining -= take;
            i += take;
            if (self->remaining == 0) {
                if (self->state == ST_CHUNK_DATA)
                    self->state = ST_CHUNK_DATA_CR;
                else {
                    *used = i;
                    s_next_request (self);
                    return HTTP1_REQUEST_DONE;
                }
            }
            continue;
        }
        case ST_CHUNK_SIZE:
            if (isxdigit (c)) {
                if (++self->hex_digits > 15)
                    return s_fail (self, 400, "a chunk size is too large");
                self->remaining = self->remaining * 16
                                  + (uint64_t) (c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10);
            }
            else if (self->hex_digits == 0)
                return s_fail (self, 400, "a chunk size is not hexadecimal");
            else if (c == ';' || c == ' ' || c == '\t')
                self->state = ST_CHUNK_EXT;
            else if (c == '\r')
                self->state = ST_CHUNK_SIZE_LF;
            else if (c == '\n')
                return s_fail (self, 400, "a chunk size line ends with LF alone (CRLF is required)");
            else
                return s_fail (self, 400, "a chunk size line is malformed");
            break;
        case ST_CHUNK_EXT:
            if (c == '\r')
                self->state = ST_CHUNK_SIZE_LF;
            else if (c == '\n')
                return s_fail (self, 400, "a chunk size line ends with LF alone (CRLF is required)");
            else if (++self->ext_len > HTTP1_MAX_CHUNK_EXT)
                return s_fail (self, 400, "a chunk extension is longer than 256 bytes");
            else if ((c < 0x20 && c != '\t') || c == 0x7f)
                return s_fail (self, 400, "a chunk extension holds a control character");
            break;
        case ST_CHUNK_SIZE_LF:
            if (c != '\n')
                return s_fail (self, 400, "a chunk size line does not end with CRLF");
            if (self->remaining == 0) {
                self->trailers = true;
                self->head_bytes = 0;
                self->state = ST_FIELD_START;
            }
            else
                self->state = ST_CHUNK_DATA;
            break;
        case ST_CHUNK_DATA_CR:
            if (c != '\r')
                return s_fail (self, 400, "a chunk's data is longer than its size");
            self->state = ST_CHUNK_DATA_LF;
            break;
        case ST_CHUNK_DATA_LF:
            if (c != '\n')
                return s_fail (self, 400, "a chunk's data does not end with CRLF");
            self->state = ST_CHUNK_SIZE;
            self->hex_digits = 0;
            self->ext_len = 0;
            break;
        default:
            // Every other state reads a head or a trailer section.
            if (!s_head_byte (self))
                return s_fail (self, 431, "the request head is too large");
            switch (self->state) {
            case ST_START:
                if (c == '\r') {
                    if (++self->blank_lines > S_MAX_BLANK_LINES)
                        return s_fail (self, 400, "too many empty lines before the request line");
                    self->state = ST_START_LF;
                }
                else if (s_tchar (c)) {
                    self->method[self->method_len++] = (char) c;
                    self->state = ST_METHOD;
                }
                else
                    return s_fail (self, 400, "a request line was expected");
                break;
            case ST_START_LF:
                if (c != '\n')
                    return s_fail (self, 400, "a line does not end with CRLF");
                self->state = ST_START;
                break;
            case ST_METHOD:
                if (s_tchar (c)) {
                    if (self->method_len + 1 < sizeof self->method)
                        self->method[self->method_len] = (char) c;
                    self->method_len++;
                }
                else if (c == ' ')
                    self->state = ST_TARGET;
                else
                    return s_fail (self, 400, "the method is not a token followed by one space");
                break;
            case ST_TARGET:
                if (c == ' ') {
                    if (self->target_len == 0)
                        return s_fail (self, 400, "the request line has two spaces in a row");
                    if (self->target_first == '*'
                        && (self->target_len != 1 || self->method_len != 7
                            || strncmp (self->method, "OPTIONS", 7) != 0))
                        return s_fail (self, 400, "the request target \"*\" is for OPTIONS only");
                    if (self->target_first != '/' && self->target_first != '*')
                        return s_fail (self, 400, "the request target must be a path starting with /");
                    self->state = ST_VERSION;
                }
                else if (c > 0x20 && c < 0x7f) {
                    if (self->target_len++ == 0)
                        self->target_first = (char) c;
                }
                else
                    return s_fail (self, 400, "the request target holds a space, a control "
                                              "character or a non-ASCII byte");
                break;
            case ST_VERSION:
                if (c == '\r') {
                    if (s_request_line_end (self) == HTTP1_ERROR)
                        return HTTP1_ERROR;
                    break;
                }
                if (c == '\n')
                    return s_fail (self, 400, "a line ends with LF alone (CRLF is required)");
                if (self->version_len >= 8 || c <= 0x20 || c >= 0x7f)
                    return s_fail (self, 400, "the request line does not end with an HTTP version");
                self->version[self->version_len++] = (char) c;
                break;
            case ST_LINE_LF:
            case ST_VALUE_LF:
            case ST_END_LF:
                if (c != '\n')
                    return s_fail (self, 400, "a CR is not followed by LF");
                if (self->state == ST_LINE_LF)
                    self->state = ST_FIELD_START;
                else if (self->state == ST_END_LF) {
                    *used = i + 1;
                    return s_head_end (self);
                }
                else {
                    http1_event_t event = s_field_end (self);
                    if (event == HTTP1_ERROR)
                        return event;
                    self->state = ST_FIELD_START;
                }
                break;
            case ST_FIELD_START:
                if (c == '\r')
                    self->state = ST_END_LF;
                else if (c == ' ' || c == '\t')
                    return s_fail (self, 400, "obsolete line folding is not allowed");
                else if (s_tchar (c)) {
                    self->name_len = 0;
                    self->name[self->name_len++] = (char) (c | ((c >= 'A' && c <= 'Z') ? 0x20 : 0));
                    self->state = ST_NAME;
                }
                else if (c == '\n')
                    return s_fail (self, 400, "a line ends with LF alone (CRLF is required)");
                else
                    return s_fail (self, 400, "a field line does not start with a name");
                break;
            case ST_NAME:
                if (s_tchar (c)) {
                    if (self->name_len + 1 < sizeof self->name)
                        self->name[self->name_len] =
                            (char) (c | ((c >= 'A' && c <= 'Z') ? 0x20 : 0));
                    self->name_len++;
                }
                else if (c == ':') {
                    size_t n = self->name_len < sizeof self->name ? self->name_len : 0;
                    self->name[n] = '\0';
                    self->field = strcmp (self->name, "host") == 0 ? FIELD_HOST
                                : strcmp (self->name, "content-length") == 0 ? FIELD_CONTENT_LENGTH
                                : strcmp (self->name, "transfer-encoding") == 0
                                    ? FIELD_TRANSFER_ENCODING : FIELD_OTHER;
                    self->value_len = 0;
                    self->state = ST_VALUE;
                }
                else if (c == ' ' || c == '\t')
                    return s_fail (self, 400, "whitespace between a field name and its colon");
                else
                    return s_fail (self, 400, "a field name is not a token");
                break;
            case ST_VALUE:
                if (c == '\r')
                    self->state = ST_VALUE_LF;
                else if (c == '\n')
                    return s_fail (self, 400, "a line ends with LF alone (CRLF is required)");
                else if (c == 0)
                    return s_fail (self, 400, "a field value holds a NUL byte");
                else if ((c < 0x20 && c != '\t') || c == 0x7f)
                    return s_fail (self, 400, "a field value holds a control character");
                else if (self->value_len == 0 && (c == ' ' || c == '\t'))
                    ;   // leading whitespace is not part of the value
                else {
                    if (self->field != FIELD_OTHER && self->value_len + 1 < sizeof self->value)
                        self->value[self->value_len] = (char) c;
                    self->value_len++;
                }
                break;
            default:
                assert (false);
            }
        }
        i++;
    }
    *used = len;
    return HTTP1_MORE;
}

bool
http1_between_requests (const http1_t *self)
{
    return self->state == ST_START && self->head_bytes == 0;
}

bool
http1_in_head (const http1_t *self)
{
    return !self->trailers && self->state <= ST_END_LF && !http1_between_requests (self);
}

bool
http1_in_body (const http1_t *self)
{
    return (self->state >= ST_BODY && self->state <= ST_CHUNK_DATA_LF)
           || (self->trailers && self->state <= ST_END_LF);
}

// s_run feeds text in pieces of step bytes and writes the events seen as
// letters: H head done, R request done, E error (then stops). Returns the
// status of an error, or 0.
static int
s_run (const char *text, size_t len, size_t step, char *events, size_t size)
{
    http1_t parser;
    http1_init (&parser, 200);
    size_t n = 0, at = 0;
    events[0] = '\0';
    while (true) {
        size_t piece = len - at < step ? len - at : step;
        size_t used;
        http1_event_t event = http1_feed (&parser, text + at, piece, &used);
        at += used;
        if (event == HTTP1_ERROR) {
            if (n + 1 < size)
                events[n++] = 'E';
            events[n] = '\0';
            return parser.error_status;
        }
        if (event == HTTP1_HEAD_DONE || event == HTTP1_REQUEST_DONE) {
            if (n + 1 < size)
                events[n++] = event == HTTP1_HEAD_DONE ? 'H' : 'R';
            continue;
        }
        if (at == len)
            break;
    }
    events[n] = '\0';
    return 0;
}

void
http1_test (bool verbose)
{
    if (verbose)
        printf (" * http1: ");
    struct {
        const char *text;       // what a client sends (NUL-terminated here, except nul)
        size_t len;             // its length when it holds a NUL, else 0
        const char *events;     // H, R, E as s_run writes them
        int status;             // the error status, or 0
        const char *reason;     // in the error reason, or NULL
    } cases[] = {
        { "GET / HTTP/1.1\r\nHost: a\r\n\r\n", 0, "HR", 0, NULL },
        { "GET /x?y=1 HTTP/1.0\r\n\r\n", 0, "HR", 0, NULL },
        { "\r\nGET / HTTP/1.1\r\nHost: a\r\nX-Empty:\r\nX-Ws:  v \t\r\n\r\n", 0, "HR", 0, NULL },
        { "POST /v1/jobs HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhelloGET / HTTP/1.1\r\nHost: a\r\n\r\n",
          0, "HRHR", 0, NULL },
        { "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: Chunked\r\n\r\n"
          "5;name=\"v\"\r\nhello\r\nA\r\n0123456789\r\n0\r\nX-Trailer: t\r\n\r\n", 0, "HR", 0, NULL },
        { "OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n", 0, "HR", 0, NULL },
        { "GET / HTTP/1.1\r\nHost: a\r\nX-Bin: caf\xc3\xa9\r\n\r\n", 0, "HR", 0, NULL },
        // Ambiguous framing.
        { "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 5\r\n\r\nabc", 0, "E", 400, "more than one Content-Length" },
        { "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc", 0, "E", 400, "more than one Content-Length" },
        { "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n", 0, "E", 400, "both" },
        { "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n", 0, "E", 400, "both" },
        { "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3, 3\r\n\r\n", 0, "E", 400, "number" },
        { "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +3\r\n\r\n", 0, "E", 400, "number" },
        { "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1234567890123456789\r\n\r\n", 0, "E", 400, "number" },
        { "POST / HTTP/1.1\r\nHost: a\r\nContent-Length:\r\n\r\n", 0, "E", 400, "number" },
        { "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n", 0, "E", 501, "chunked" },
        { "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 0, "E", 501, NULL },
        { "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, identity\r\n\r\n", 0, "E", 501, NULL },
        { "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", 0, "E", 400, "more than once" },
        { "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n\r\n", 0, "E", 501, NULL },
        { "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:\r\n\r\n", 0, "E", 400, "empty" },
        { "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked;q=1\r\n\r\n", 0, "E", 400, NULL },
        { "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 0, "E", 400, "HTTP/1.0" },
        { "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:\r\n chunked\r\n\r\n", 0, "E", 400, NULL },
        { "POST / HTTP/1.1\r\nHost: a\r\nX-T: 1\r\n Transfer-Encoding: chunked\r\n\r\n", 0, "E", 400, "folding" },
        { "GET / HTTP/1.1\r\nHost: a\r\nX-A: a\r\n\tb\r\n\r\n", 0, "E", 400, "folding" },
        // Line ends and bytes that parsers disagree on.
        { "GET / HTTP/1.1\nHost: a\n\n", 0, "E", 400, "LF alone" },
        { "GET / HTTP/1.1\r\nHost: a\nX: y\r\n\r\n", 0, "E", 400, "LF alone" },
        { "GET / HTTP/1.1\r\nHost: a\rX-B: y\r\n\r\n", 0, "E", 400, "CR is not followed" },
        { "GET / HTTP/1.1\r\nHost: a\r\n\n", 0, "E", 400, "LF alone" },
        { "GET / HTTP/1.1\r\nHost: a\r\nX-N: a\0b\r\n\r\n", 37, "E", 400, "NUL" },
        { "GET / HTTP/1.1\r\nHost: a\r\nX-C: a\x01" "b\r\n\r\n", 0, "E", 400, "control" },
        { "GET / HTTP/1.1\r\nHost: a\r\nX-S : y\r\n\r\n", 0, "E", 400, "whitespace" },
        { "GET / HTTP/1.1\r\nHost: a\r\n: y\r\n\r\n", 0, "E", 400, "name" },
        { "GET / HTTP/1.1\r\nHost: a\r\nX(y): z\r\n\r\n", 0, "E", 400, "token" },
        { "\n", 0, "E", 400, NULL },
        { "\r\n\r\n\r\n\r\n\r\n", 0, "E", 400, "empty lines" },
        // Request lines.
        { "GET  / HTTP/1.1\r\n", 0, "E", 400, "two spaces" },
        { "GET / HTTP/1.1 \r\n", 0, "E", 400, NULL },
        { "GET /a b HTTP/1.1\r\n", 0, "E", 400, NULL },
        { "GET /\xff HTTP/1.1\r\n", 0, "E", 400, "non-ASCII" },
        { "GET http://evil.example/ HTTP/1.1\r\n", 0, "E", 400, "path" },
        { "CONNECT a.example:443 HTTP/1.1\r\n", 0, "E", 400, "path" },
        { "GET * HTTP/1.1\r\n", 0, "E", 400, "OPTIONS" },
        { "GET / HTTP/2.0\r\n", 0, "E", 505, NULL },
        { "GET / HTTP/1.2\r\n", 0, "E", 505, NULL },
        { "GET / HTTP/1.10\r\n", 0, "E", 400, NULL },
        { "GET / FTP/1.1\r\n", 0, "E", 400, "version" },
        { "G\x01T / HTTP/1.1\r\n", 0, "E", 400, NULL },
        // Host.
        { "GET / HTTP/1.1\r\n\r\n", 0, "E", 400, "needs a Host" },
        { "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 0, "E", 400, "more than one Host" },
        { "GET / HTTP/1.0\r\nHost: a\r\nhost: b\r\n\r\n", 0, "E", 400, "more than one Host" },
        // Chunks.
        { "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcd\r\n", 0, "HE", 400, "longer than its size" },
        { "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nx\r\n", 0, "HE", 400, "hexadecimal" },
        { "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n1000000000000000\r\n", 0, "HE", 400, "too large" },
        { "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\nabc\r\n", 0, "HE", 400, "CRLF" },
        { "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nContent-Length: 5\r\n\r\n", 0, "HE", 400, "trailer" },
        { "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3;\x01\r\n", 0, "HE", 400, "control" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        size_t len = cases[i].len ? cases[i].len : strlen (cases[i].text);
        // Whole, and one byte at a time: a reader must not depend on how
        // the bytes were split by the network.
        for (size_t step = 1; step <= len; step = step == 1 && len > 1 ? len : len + 1) {
            char events[16];
            int status = s_run (cases[i].text, len, step, events, sizeof events);
            if (strcmp (events, cases[i].events) != 0 || status != cases[i].status) {
                fprintf (stderr, "http1 case %zu (step %zu): events %s status %d, expected %s %d\n",
                         i, step, events, status, cases[i].events, cases[i].status);
                assert (false);
            }
        }
        if (cases[i].reason) {
            http1_t parser;
            http1_init (&parser, 200);
            size_t at = 0, used;
            http1_event_t event;
            while ((event = http1_feed (&parser, cases[i].text + at, len - at, &used)) != HTTP1_ERROR)
                at += used;
            if (!strstr (parser.error_reason, cases[i].reason)) {
                fprintf (stderr, "http1 case %zu: reason \"%s\" lacks \"%s\"\n", i,
                         parser.error_reason, cases[i].reason);
                assert (false);
            }
        }
    }

    // A head over the cap is 431; so is a trailer section.
    char big[400];
    snprintf (big, sizeof big, "GET / HTTP/1.1\r\nHost: a\r\nX-Big: %0250d\r\n\r\n", 0);
    char events[16];
    assert (s_run (big, strlen (big), 7, events, sizeof events) == 431);

    // Where the reader is, for the front door's deadlines; errors stick.
    http1_t parser;
    http1_init (&parser, 8192);
    size_t used;
    assert (http1_between_requests (&parser) && !http1_in_head (&parser));
    const char *head = "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\n\r\nab";
    assert (http1_feed (&parser, head, 10, &used) == HTTP1_MORE && used == 10);
    assert (http1_in_head (&parser) && !http1_between_requests (&parser));
    assert (http1_feed (&parser, head + 10, strlen (head) - 10, &used) == HTTP1_HEAD_DONE);
    assert (used == strlen (head) - 12 && http1_in_body (&parser) && !http1_in_head (&parser));
    assert (http1_feed (&parser, "ab", 2, &used) == HTTP1_MORE && used == 2);
    assert (http1_feed (&parser, "cdGET", 5, &used) == HTTP1_REQUEST_DONE && used == 2);
    assert (http1_between_requests (&parser) && !http1_in_body (&parser));
    assert (http1_feed (&parser, "\x01", 1, &used) == HTTP1_ERROR && used == 0);
    assert (parser.error_status == 400);
    assert (http1_feed (&parser, "GET", 3, &used) == HTTP1_ERROR && used == 0);
    if (verbose)
        printf ("OK\n");
}
