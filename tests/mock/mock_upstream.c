// jobgate-mock-upstream - a scriptable slow HTTP upstream for tests and benchmarks.
//
// Every knob is a query parameter, so a test, a benchmark and the demo can ask
// for "5 s latency, then 429 with Retry-After" without a line of server code.
// Thousands of requests wait at once without a thread each: a waiting request
// is a suspended libmicrohttpd connection plus one entry in a timer min-heap.
// Connections are spread over MOCK_DAEMONS daemons listening on one port
// (SO_REUSEPORT): libmicrohttpd 0.9.75 walks every suspended connection of a
// daemon after any resume, so one daemon with 10,000 calls parked had to
// batch its resumes 10 ms apart (an error on every asked latency) and still
// spent a sixth of its CPU walking.
//
// Threading: libmicrohttpd runs in "external" polling mode on this process's
// own epoll loop, so the access handler, the content readers, the timers and
// the counters all live on the main thread. That is what makes the counters
// thread-safe and what lets the timer call MHD_resume_connection without any
// race against MHD_suspend_connection.

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <netdb.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <microhttpd.h>
#include <sodium.h>

#define MOCK_DEFAULT_LISTEN "127.0.0.1:9000"
#define MOCK_MAX_LATENCY_MS 600000ULL          // knobs above this are clamped
#define MOCK_MAX_SLOW_MS 600000ULL             // slow bodies are clamped likewise
#define MOCK_MAX_SIZE (64ULL * 1024 * 1024)    // largest body size= may ask for
#define MOCK_MAX_REQUEST_BODY (1024 * 1024)    // echo keeps this much of a request body
#define MOCK_SLOW_PIECES 10                    // a slow body arrives in this many pieces
#define MOCK_BINARY_DEFAULT_SIZE 256           // binary=1 without size= sends 0x00..0xFF
#define MOCK_MAX_PATH_KEYS 256                 // distinct paths tracked in by_path
#define MOCK_MAX_FLAKY_KEYS 100000             // distinct flaky keys before the map is cleared
#define MOCK_CONNECTION_LIMIT 20000            // simultaneous connections accepted
#define MOCK_LISTEN_BACKLOG 4096               // kernel accept queue for bursts
#define MOCK_DAEMONS 64                        // daemons sharing the port, each walking its own parked
#define MOCK_IDLE_TIMEOUT_S 600                // idle keep-alive connections are closed after this
#define MOCK_MAX_WAIT_MS 1000                  // the loop never sleeps longer than this
#define MOCK_MAX_SEARCH_COUNT 100              // /search answers at most this many results
#define MOCK_DEFAULT_TOKEN_MS 20               // a streamed chat sends one token this often
#define MOCK_MAX_TOKENS 10000                  // a chat answer holds at most this many tokens
#define MOCK_AFTER_STORM_KEPT 16               // arrivals after a storm whose in_flight is kept
#define MOCK_MAX_ARRIVAL_SECONDS 86400         // arrivals_by_second tracks one day after /reset
#define MOCK_TOKENS_PER_MINUTE 1000000         // the token budget the rate-limit headers report
#define MOCK_EMBEDDING_DIMENSIONS 8            // numbers in one embedding
#define MOCK_MAX_EMBEDDING_INPUTS 2048         // inputs one embeddings call may hold

typedef struct mock_t mock_t;
typedef struct request_t request_t;

// What a response body is made of.
typedef enum {
    BODY_BUFFER,                   // bytes held in request_t.body_buf
    BODY_TEXT_FILLER,              // "abcdefghij" repeated, generated on the fly
    BODY_BINARY_FILLER             // bytes 0x00..0xFF repeated, generated on the fly
} body_kind_t;

// One request, from its first header to its completion callback.
struct request_t {
    mock_t *mock;                  // the server that owns this request
    struct MHD_Connection *connection;  // connection to suspend and resume
    size_t daemon;                 // index of the daemon that holds the connection
    uint64_t start_ns;             // arrival time, for --verbose
    bool is_control;               // /stats or /reset: not counted, never delayed
    char *upload;                  // request body kept for /echo (at most 1 MiB)
    size_t upload_size;            // bytes held in upload
    size_t upload_cap;             // bytes allocated for upload
    bool waited;                   // latency_ms wait is over (or was never asked)
    bool suspended;                // connection is suspended and sits in the timer heap
    unsigned status;               // status answered, for --verbose
    body_kind_t body_kind;         // where the response body comes from
    char *body_buf;                // response body for BODY_BUFFER (owned)
    uint64_t body_size;            // response body length in bytes
    uint64_t body_start_ns;        // when the first body byte may be sent
    uint64_t slow_ns;              // spread the body over this long (0 = at once)
    unsigned pieces;               // the body is released in this many pieces
    char *method;                  // copy of the method, kept only with --verbose
    char *path;                    // copy of the path, kept only with --verbose
    bool storm;                    // arrived during a /storm: answered at once with its status
    uint64_t *piece_offsets;       // where each piece starts (SSE events), or NULL for even pieces
    bool openai;                   // an OpenAI-style answer: rate-limit headers go with it
    uint64_t prompt_tokens;        // its usage: tokens of the prompt (or the input), for
    uint64_t completion_tokens;    // the headers and --log; and of the completion
};

// One pending wake-up: resume this request's connection at due_ns.
typedef struct {
    uint64_t due_ns;               // monotonic deadline
    request_t *request;            // request whose connection is suspended
} timer_entry_t;

// The server: daemon, event loop, timers and counters.
struct mock_t {
    struct MHD_Daemon *daemons [MOCK_DAEMONS]; // libmicrohttpd daemons in external polling mode
    bool run_needed [MOCK_DAEMONS]; // daemons to run in this turn (ready or resumed)
    int epoll_fd;                  // our loop: the daemons' epoll fds and the signal fd
    int signal_fd;                 // SIGTERM/SIGINT arrive here instead of as handlers
    bool verbose;                  // log one line per request
    FILE *call_log;                // --log: one line per call answered, or NULL
    volatile bool stopping;        // shutting down: answer 503, skip delays
    timer_entry_t *timers;         // min-heap of deadlines, ordered by due_ns
    size_t timers_size;            // entries in use
    size_t timers_cap;             // entries allocated
    uint64_t last_batch_ns;        // when connections were last resumed
    uint64_t served;               // requests answered since start or /reset
    uint64_t in_flight;            // requests started and not yet completed
    uint64_t max_in_flight;        // high-water mark of in_flight since /reset
    json_t *by_path;               // path -> number of requests answered
    json_t *flaky;                 // flaky key -> number of requests seen
    json_t *captured;              // capture key -> array of the requests received (webhooks)
    uint64_t reset_ns;             // start or last /reset: second 0 of arrivals
    uint64_t *arrivals;            // requests arrived per second since reset_ns
    size_t arrivals_size;          // seconds tracked in arrivals
    uint64_t storm_until_ns;       // a storm answers every request until then (0 = none)
    unsigned storm_status;         // status a storm answers
    uint64_t storm_retry_after;    // Retry-After seconds a storm sends (0 = none)
    uint64_t storm_refused;        // requests a storm answered since /reset
    uint64_t after_storm[MOCK_AFTER_STORM_KEPT]; // in_flight seen by the first arrivals after a storm
    size_t after_storm_count;      // entries used in after_storm
    uint64_t tokens_window_ns;     // start of the current minute of the token budget
    uint64_t tokens_used;          // tokens answered in it (x-ratelimit-remaining-tokens)
};

// s_now_ns returns the monotonic clock in nanoseconds.
static uint64_t
s_now_ns (void)
{
    struct timespec ts;
    clock_gettime (CLOCK_MONOTONIC, &ts);
    return (uint64_t) ts.tv_sec * 1000000000ULL + (uint64_t) ts.tv_nsec;
}

// s_parse_u64 parses a whole decimal string; returns false on anything else,
// because a bad knob must be ignored rather than half-understood.
static bool
s_parse_u64 (const char *text, uint64_t *value)
{
    if (!text || *text < '0' || *text > '9')
        return false;
    errno = 0;
    char *end = NULL;
    unsigned long long parsed = strtoull (text, &end, 10);
    if (errno == ERANGE)
        parsed = ULLONG_MAX;       // a huge number is still a number: clamp later
    else
    if (errno || *end != '\0')
        return false;
    *value = parsed;
    return true;
}

// s_knob reads query parameter name as a number clamped to max; returns
// fallback when it is missing or malformed.
static uint64_t
s_knob (struct MHD_Connection *connection, const char *name, uint64_t max, uint64_t fallback)
{
    uint64_t value;
    const char *text = MHD_lookup_connection_value (connection, MHD_GET_ARGUMENT_KIND, name);
    if (!s_parse_u64 (text, &value))
        return fallback;
    return value > max? max: value;
}

// s_status_knob reads a status code parameter; only final codes 200..599 are
// accepted, since 1xx cannot end a request and 0 would crash a client parser.
static unsigned
s_status_knob (struct MHD_Connection *connection, const char *name, unsigned fallback)
{
    uint64_t value = s_knob (connection, name, 100000, 0);
    return (value >= 200 && value <= 599)? (unsigned) value: fallback;
}

// s_timer_push adds a wake-up to the heap; returns 0 or -1 when out of memory.
static int
s_timer_push (mock_t *self, uint64_t due_ns, request_t *request)
{
    if (self->timers_size == self->timers_cap) {
        size_t cap = self->timers_cap? self->timers_cap * 2: 1024;
        timer_entry_t *grown = realloc (self->timers, cap * sizeof (timer_entry_t));
        if (!grown)
            return -1;
        self->timers = grown;
        self->timers_cap = cap;
    }
    size_t index = self->timers_size++;
    while (index > 0) {
        size_t parent = (index - 1) / 2;
        if (self->timers [parent].due_ns <= due_ns)
            break;
        self->timers [index] = self->timers [parent];
        index = parent;
    }
    self->timers [index].due_ns = due_ns;
    self->timers [index].request = request;
    return 0;
}

// s_timer_pop removes and returns the earliest wake-up's request; the heap
// must not be empty.
static request_t *
s_timer_pop (mock_t *self)
{
    request_t *earliest = self->timers [0].request;
    timer_entry_t last = self->timers [--self->timers_size];
    size_t index = 0;
    while (true) {
        size_t child = index * 2 + 1;
        if (child >= self->timers_size)
            break;
        if (child + 1 < self->timers_size
        &&  self->timers [child + 1].due_ns < self->timers [child].due_ns)
            child++;
        if (last.due_ns <= self->timers [child].due_ns)
            break;
        self->timers [index] = self->timers [child];
        index = child;
    }
    if (self->timers_size > 0)
        self->timers [index] = last;
    return earliest;
}

// s_suspend_until parks the request's connection until due_ns; returns 0, or
// -1 when no timer could be allocated (the caller then answers at once).
// Only call from the access handler or a content reader (MHD's rule).
static int
s_suspend_until (mock_t *self, request_t *request, uint64_t due_ns)
{
    if (s_timer_push (self, due_ns, request))
        return -1;
    request->suspended = true;
    MHD_suspend_connection (request->connection);
    return 0;
}

// s_resume resumes one suspended request's connection.
static void
s_resume (request_t *request)
{
    request->suspended = false;
    request->mock->run_needed [request->daemon] = true;
    MHD_resume_connection (request->connection);
}

// s_next_batch_ns is the earliest time the next resume batch may run.
// libmicrohttpd 0.9.75 walks every suspended connection of a daemon in the
// MHD_run after any resume: with 5,000 calls parked in one daemon that
// walk, once per loop turn, took half the mock's CPU. Batches at most every
// (parked per daemon) µs bound it; the delays stay as asked to within
// parked/MOCK_DAEMONS µs (160 µs at 10,000 parked).
static uint64_t
s_next_batch_ns (const mock_t *self)
{
    return self->last_batch_ns + (uint64_t) self->timers_size * 1000 / MOCK_DAEMONS;
}

// s_fire_timers resumes every connection whose deadline has passed (all of
// them when stopping, because MHD must not be stopped with suspended
// connections).
static void
s_fire_timers (mock_t *self)
{
    uint64_t now = s_now_ns ();
    if (!self->stopping && now < s_next_batch_ns (self))
        return;
    bool resumed = false;
    while (self->timers_size > 0
       && (self->stopping || self->timers [0].due_ns <= now)) {
        s_resume (s_timer_pop (self));
        resumed = true;
    }
    if (resumed)
        self->last_batch_ns = now;
}

// s_fill writes body bytes [pos, pos + size) of a generated filler body.
static void
s_fill (body_kind_t kind, uint64_t pos, char *buf, size_t size)
{
    static const char text [] = "abcdefghij";
    for (size_t index = 0; index < size; index++) {
        uint64_t at = pos + index;
        buf [index] = kind == BODY_TEXT_FILLER? text [at % 10]: (char) (unsigned char) (at & 0xFF);
    }
}

// s_piece_start returns the offset where body piece `piece` begins.
static uint64_t
s_piece_start (const request_t *request, unsigned piece)
{
    if (request->piece_offsets)
        return request->piece_offsets [piece];
    return request->body_size * piece / request->pieces;
}

// s_body_reader is the content reader for generated and slow bodies: it hands
// out the body one piece at a time and suspends the connection until the next
// piece is due, so a slow body costs no thread and no busy loop.
static ssize_t
s_body_reader (void *cls, uint64_t pos, char *buf, size_t max)
{
    request_t *request = cls;
    mock_t *self = request->mock;
    if (self->stopping)
        return MHD_CONTENT_READER_END_WITH_ERROR;
    if (pos >= request->body_size)
        return MHD_CONTENT_READER_END_OF_STREAM;

    unsigned piece = (unsigned) (pos * request->pieces / request->body_size);
    while (piece + 1 < request->pieces && s_piece_start (request, piece + 1) <= pos)
        piece++;
    while (piece > 0 && s_piece_start (request, piece) > pos)
        piece--;
    if (request->pieces > 1) {
        uint64_t due = request->body_start_ns
                     + request->slow_ns * piece / (request->pieces - 1);
        if (s_now_ns () < due && s_suspend_until (self, request, due) == 0)
            return 0;              // MHD calls us again after the resume
    }
    uint64_t piece_end = piece + 1 < request->pieces
                       ? s_piece_start (request, piece + 1): request->body_size;
    size_t size = (size_t) (piece_end - pos < max? piece_end - pos: max);
    if (request->body_kind == BODY_BUFFER)
        memcpy (buf, request->body_buf + pos, size);
    else
        s_fill (request->body_kind, pos, buf, size);
    return (ssize_t) size;
}

// s_json_text returns a JSON string for arbitrary bytes: UTF-8 kept as is,
// anything else replaced by '?', because echo must answer valid JSON whatever
// the client sent.
static json_t *
s_json_text (const char *data, size_t size)
{
    json_t *text = json_stringn (data? data: "", data? size: 0);
    if (text)
        return text;
    char *copy = malloc (size + 1);
    if (!copy)
        return NULL;
    for (size_t index = 0; index < size; index++)
        copy [index] = (unsigned char) data [index] < 0x80? data [index]: '?';
    text = json_stringn (copy, size);
    free (copy);
    return text;
}

// s_collect_value adds one query argument or header to a JSON object.
static enum MHD_Result
s_collect_value (void *cls, enum MHD_ValueKind kind, const char *key, const char *value)
{
    (void) kind;
    json_t *object = cls;
    json_t *text = s_json_text (value, value? strlen (value): 0);
    if (key && text)
        json_object_set_new (object, key, text);
    else
        json_decref (text);
    return MHD_YES;
}

// s_html_escape returns a malloc'd copy of text safe inside HTML, or NULL.
static char *
s_html_escape (const char *text)
{
    size_t size = 1;
    for (const char *at = text; *at; at++)
        size += (*at == '<' || *at == '>')? 4: *at == '&'? 5: *at == '"'? 6: 1;
    char *escaped = malloc (size);
    if (!escaped)
        return NULL;
    char *out = escaped;
    for (const char *at = text; *at; at++) {
        const char *with = *at == '<'? "&lt;": *at == '>'? "&gt;"
                         : *at == '&'? "&amp;": *at == '"'? "&quot;": NULL;
        if (with) {
            size_t length = strlen (with);
            memcpy (out, with, length);
            out += length;
        }
        else
            *out++ = *at;
    }
    *out = '\0';
    return escaped;
}

// s_html_page returns a malloc'd HTML page titled title (escaped), or NULL.
static char *
s_html_page (const char *title)
{
    char *escaped = s_html_escape (title);
    if (!escaped)
        return NULL;
    char *page = NULL;
    if (asprintf (&page,
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>%s</title></head>\n"
        "<body><h1>%s</h1><p>Served by jobgate-mock-upstream.</p></body></html>\n",
        escaped, escaped) < 0)
        page = NULL;
    free (escaped);
    return page;
}

// s_dump serialises and frees a JSON value; returns a malloc'd string or NULL.
static char *
s_dump (json_t *value)
{
    char *text = value? json_dumps (value, JSON_COMPACT): NULL;
    json_decref (value);
    return text;
}

// s_count_path bumps by_path for path; past MOCK_MAX_PATH_KEYS distinct paths
// the rest share one bucket so a path scanner cannot grow memory forever.
static void
s_count_path (mock_t *self, const char *path)
{
    json_t *valid = json_string (path);   // by_path is served as JSON: keys must be UTF-8
    if (!valid)
        path = "(invalid utf-8)";
    json_decref (valid);
    json_t *count = json_object_get (self->by_path, path);
    if (!count && json_object_size (self->by_path) >= MOCK_MAX_PATH_KEYS)
        path = "(other)";
    count = json_object_get (self->by_path, path);
    json_object_set_new (self->by_path, path,
                         json_integer (count? json_integer_value (count) + 1: 1));
}

// s_count_arrival adds one request to arrivals_by_second, in the bucket of
// the second (since start or /reset) it arrived in. Counting at arrival, not
// at answer, is what shows a retry burst: latency would smear it out.
static void
s_count_arrival (mock_t *self, uint64_t now_ns)
{
    uint64_t second = (now_ns - self->reset_ns) / 1000000000ULL;
    if (second >= MOCK_MAX_ARRIVAL_SECONDS)
        second = MOCK_MAX_ARRIVAL_SECONDS - 1;
    if (second >= self->arrivals_size) {
        size_t size = self->arrivals_size? self->arrivals_size: 64;
        while (size <= second)
            size *= 2;
        uint64_t *grown = realloc (self->arrivals, size * sizeof (uint64_t));
        if (!grown)
            return;                // a lost count beats a lost request
        memset (grown + self->arrivals_size, 0, (size - self->arrivals_size) * sizeof (uint64_t));
        self->arrivals = grown;
        self->arrivals_size = size;
    }
    self->arrivals [second]++;
}

// s_arrivals_json renders arrivals_by_second: second offset -> count, for
// the seconds that saw at least one request.
static json_t *
s_arrivals_json (mock_t *self)
{
    json_t *object = json_object ();
    for (size_t second = 0; object && second < self->arrivals_size; second++)
        if (self->arrivals [second] > 0) {
            char key [24];
            snprintf (key, sizeof key, "%zu", second);
            json_object_set_new (object, key, json_integer ((json_int_t) self->arrivals [second]));
        }
    return object;
}

// s_stats_body returns the /stats document as a malloc'd string, or NULL.
static char *
s_stats_body (mock_t *self)
{
    uint64_t now = s_now_ns ();
    json_t *after_storm = json_array ();
    for (size_t i = 0; after_storm && i < self->after_storm_count; i++)
        json_array_append_new (after_storm, json_integer ((json_int_t) self->after_storm[i]));
    return s_dump (json_pack ("{s:I, s:I, s:I, s:O, s:o*, s:I, s:b, s:o*}",
        "served", (json_int_t) self->served,
        "in_flight", (json_int_t) self->in_flight,
        "max_in_flight", (json_int_t) self->max_in_flight,
        "by_path", self->by_path,
        "arrivals_by_second", s_arrivals_json (self),
        "storm_refused", (json_int_t) self->storm_refused,
        "storm_active", now < self->storm_until_ns,
        "in_flight_after_storm", after_storm));
}

// s_reset zeroes the counters; in_flight is a fact, not a counter, so it
// stays. A storm in progress stays too: /reset starts a measurement, and a
// test arms the storm right before measuring what it does.
static void
s_reset (mock_t *self)
{
    self->served = 0;
    self->max_in_flight = self->in_flight;
    self->reset_ns = s_now_ns ();
    self->storm_refused = 0;
    self->after_storm_count = 0;
    if (self->arrivals_size > 0)
        memset (self->arrivals, 0, self->arrivals_size * sizeof (uint64_t));
    json_object_clear (self->by_path);
    json_object_clear (self->flaky);
    json_object_clear (self->captured);
}

// s_storm arms (or, with for_ms=0, ends) a storm: every request arriving in
// the next for_ms is answered status (default 429) with Retry-After, the way
// an overloaded API sheds load. Returns the /storm answer.
static char *
s_storm (mock_t *self, struct MHD_Connection *connection)
{
    self->storm_status = s_status_knob (connection, "status", 429);
    self->storm_retry_after = s_knob (connection, "retry_after", 1000000000ULL, 0);
    uint64_t for_ms = s_knob (connection, "for_ms", MOCK_MAX_LATENCY_MS, 5000);
    self->storm_until_ns = for_ms? s_now_ns () + for_ms * 1000000ULL: 0;
    return s_dump (json_pack ("{s:b, s:I, s:I, s:I}", "ok", 1,
        "status", (json_int_t) self->storm_status,
        "retry_after", (json_int_t) self->storm_retry_after, "for_ms", (json_int_t) for_ms));
}

// s_key_accepted is true when require_key=K is absent, or the request's
// Authorization header is "Bearer K" or K itself; how an API refuses a
// missing or wrong key is exactly what the auth tests need to see.
static bool
s_key_accepted (struct MHD_Connection *connection)
{
    const char *key = MHD_lookup_connection_value (connection, MHD_GET_ARGUMENT_KIND, "require_key");
    if (!key)
        return true;
    const char *given = MHD_lookup_connection_value (connection, MHD_HEADER_KIND,
                                                     MHD_HTTP_HEADER_AUTHORIZATION);
    if (!given)
        return false;
    if (strncmp (given, "Bearer ", 7) == 0)
        given += 7;
    return strcmp (given, key) == 0;
}

// s_search_body returns the /search answer: count (default 10) results that
// are a pure function of the query, so a test can predict them.
static char *
s_search_body (struct MHD_Connection *connection)
{
    const char *query = MHD_lookup_connection_value (connection, MHD_GET_ARGUMENT_KIND, "q");
    if (!query)
        query = "";
    uint64_t count = s_knob (connection, "count", MOCK_MAX_SEARCH_COUNT, 10);
    json_t *results = json_array ();
    for (uint64_t index = 0; results && index < count; index++) {
        char title [64], url [64];
        snprintf (title, sizeof title, "Result %" PRIu64, index + 1);
        snprintf (url, sizeof url, "http://127.0.0.1/r/%" PRIu64, index);
        char *text = NULL;
        json_t *snippet = NULL;
        if (asprintf (&text, "Result %" PRIu64 " for %s", index + 1, query) >= 0) {
            snippet = s_json_text (text, strlen (text));
            free (text);
        }
        json_array_append_new (results, json_pack ("{s:s, s:s, s:o*}",
            "title", title, "url", url, "snippet", snippet));
    }
    return s_dump (json_pack ("{s:o*, s:o*}",
        "query", s_json_text (query, strlen (query)), "results", results));
}

// s_words counts the whitespace-separated words of text.
static json_int_t
s_words (const char *text)
{
    json_int_t words = 0;
    bool in_word = false;
    for (const char *at = text; *at; at++) {
        bool space = *at == ' ' || *at == '\t' || *at == '\n' || *at == '\r';
        if (!space && !in_word)
            words++;
        in_word = !space;
    }
    return words;
}

// s_chat_tokens splits "Echo: <last user message>" into word tokens, each
// after the first keeping its leading space, so the tokens joined are the
// answer. Returns a JSON array of strings, or NULL.
static json_t *
s_chat_tokens (json_t *messages)
{
    const char *last = "";
    size_t index;
    json_t *message;
    json_array_foreach (messages, index, message) {
        json_t *content = json_object_get (message, "content");
        const char *role = json_string_value (json_object_get (message, "role"));
        if (role && strcmp (role, "user") == 0 && json_is_string (content))
            last = json_string_value (content);
    }
    char *text = NULL;
    if (asprintf (&text, "Echo: %s", last) < 0)
        return NULL;
    json_t *tokens = json_array ();
    char *save = NULL;
    for (char *word = strtok_r (text, " \t\r\n", &save); tokens && word;
         word = strtok_r (NULL, " \t\r\n", &save)) {
        if (json_array_size (tokens) >= MOCK_MAX_TOKENS)
            break;
        char *token = NULL;
        if (asprintf (&token, "%s%s", json_array_size (tokens)? " ": "", word) >= 0) {
            json_array_append_new (tokens, s_json_text (token, strlen (token)));
            free (token);
        }
    }
    free (text);
    return tokens;
}

// s_sse_append appends one "data: JSON" event to an SSE body and records
// where it starts, so each event can be released as one piece.
static int
s_sse_append (char **body, size_t *size, uint64_t *offsets, unsigned *pieces, json_t *event)
{
    char *data = event? json_dumps (event, JSON_COMPACT): strdup ("[DONE]");
    json_decref (event);
    if (!data)
        return -1;
    size_t length = strlen (data) + 8;
    char *grown = realloc (*body, *size + length + 1);
    if (!grown) {
        free (data);
        return -1;
    }
    *body = grown;
    offsets [(*pieces)++] = *size;
    snprintf (*body + *size, length + 1, "data: %s\n\n", data);
    *size += length;
    free (data);
    return 0;
}

// s_log_call writes one line to the --log file for a call answered: its
// arrival (wall ms), path, and the prompt and completion tokens it counted
// (0 0 for calls that are not chats). Tests read the tokens an upstream saw
// per sliding minute from it.
static void
s_log_call (mock_t *self, const char *path, int64_t prompt_tokens, int64_t completion_tokens)
{
    if (!self->call_log)
        return;
    struct timespec now;
    clock_gettime (CLOCK_REALTIME, &now);
    fprintf (self->call_log, "%" PRId64 " %s %" PRId64 " %" PRId64 "\n",
             (int64_t) now.tv_sec * 1000 + now.tv_nsec / 1000000, path, prompt_tokens,
             completion_tokens);
    fflush (self->call_log);
}

// s_chat_refusal answers a chat whose model is "mock-status-NNN" the way
// OpenAI refuses a call: status NNN (400-599) with its error object, so a
// test sees exactly what the upstream said arrive through jobgate. NULL
// for every other model.
static char *
s_chat_refusal (request_t *request, const char *model)
{
    unsigned status = 0;
    if (!model || sscanf (model, "mock-status-%u", &status) != 1 || status < 400 || status > 599)
        return NULL;
    request->status = status;
    return s_dump (json_pack ("{s:{s:s, s:s, s:n, s:s}}", "error", "message",
                              "the mock refused this call as asked", "type", "mock_error",
                              "param", "code", "mock_refusal"));
}

// s_chat answers POST /v1/chat/completions like an OpenAI-compatible API:
// "Echo: <last user message>", split into word tokens. With "stream": true
// the answer is an SSE stream, one event per token every token_ms (released
// by the slow-body timer, so no thread waits), then a final chunk with
// finish_reason and usage, then [DONE]. Sets *content_type; returns the
// body, or NULL when out of memory.
static char *
s_chat (request_t *request, const char **content_type)
{
    struct MHD_Connection *connection = request->connection;
    json_t *body = json_loadb (request->upload? request->upload: "", request->upload_size, 0, NULL);
    json_t *messages = json_object_get (body, "messages");
    if (!json_is_object (body) || !json_is_array (messages)) {
        json_decref (body);
        request->status = 400;
        return strdup ("{\"error\":{\"message\":\"the body must be a JSON object with "
                       "messages\",\"type\":\"invalid_request_error\"}}");
    }
    const char *model = json_string_value (json_object_get (body, "model"));
    char *refusal = s_chat_refusal (request, model);
    if (refusal) {
        json_decref (body);
        return refusal;
    }
    json_t *model_value = json_string (model? model: "mock-model");
    bool stream = json_is_true (json_object_get (body, "stream"));
    json_int_t prompt_tokens = 0;
    size_t index;
    json_t *message;
    json_array_foreach (messages, index, message) {
        json_t *content = json_object_get (message, "content");
        if (json_is_string (content))
            prompt_tokens += s_words (json_string_value (content));
    }
    json_t *tokens = s_chat_tokens (messages);
    json_decref (body);
    if (!tokens || !model_value) {
        json_decref (tokens);
        json_decref (model_value);
        return NULL;
    }
    json_int_t completion_tokens = (json_int_t) json_array_size (tokens);
    request->openai = true;
    request->prompt_tokens = (uint64_t) prompt_tokens;
    request->completion_tokens = (uint64_t) completion_tokens;
    json_t *usage = json_pack ("{s:I, s:I, s:I}", "prompt_tokens", prompt_tokens,
        "completion_tokens", completion_tokens, "total_tokens", prompt_tokens + completion_tokens);
    char *answer = NULL;
    if (!stream) {
        size_t size = 0;
        json_t *token;
        json_array_foreach (tokens, index, token)
            size += json_string_length (token);
        char *text = calloc (1, size + 1);
        if (text) {
            json_array_foreach (tokens, index, token)
                strcat (text, json_string_value (token));
            answer = s_dump (json_pack ("{s:s, s:s, s:O, s:[{s:i, s:{s:s, s:o*}, s:s}], s:O}",
                "id", "chatcmpl-mock", "object", "chat.completion", "model", model_value,
                "choices", "index", 0, "message", "role", "assistant",
                "content", s_json_text (text, size), "finish_reason", "stop", "usage", usage));
            free (text);
        }
    }
    else {
        unsigned events = (unsigned) json_array_size (tokens) + 2;
        request->piece_offsets = calloc (events, sizeof (uint64_t));
        size_t size = 0;
        unsigned pieces = 0;
        bool ok = request->piece_offsets != NULL;
        json_t *token;
        json_array_foreach (tokens, index, token) {
            json_t *delta = index == 0
                ? json_pack ("{s:s, s:O}", "role", "assistant", "content", token)
                : json_pack ("{s:O}", "content", token);
            ok = ok && s_sse_append (&answer, &size, request->piece_offsets, &pieces,
                json_pack ("{s:s, s:s, s:O, s:[{s:i, s:o*}]}", "id", "chatcmpl-mock",
                           "object", "chat.completion.chunk", "model", model_value,
                           "choices", "index", 0, "delta", delta)) == 0;
        }
        ok = ok && s_sse_append (&answer, &size, request->piece_offsets, &pieces,
            json_pack ("{s:s, s:s, s:O, s:[{s:i, s:{}, s:s}], s:O}", "id", "chatcmpl-mock",
                       "object", "chat.completion.chunk", "model", model_value,
                       "choices", "index", 0, "delta", "finish_reason", "stop",
                       "usage", usage)) == 0;
        ok = ok && s_sse_append (&answer, &size, request->piece_offsets, &pieces, NULL) == 0;
        if (!ok) {
            free (answer);
            answer = NULL;
            free (request->piece_offsets);
            request->piece_offsets = NULL;
        }
        else {
            request->pieces = pieces;
            uint64_t token_ms = s_knob (connection, "token_ms", 60000, MOCK_DEFAULT_TOKEN_MS);
            request->slow_ns = token_ms * 1000000ULL * (pieces - 1);
            *content_type = "text/event-stream";
        }
    }
    json_decref (usage);
    json_decref (tokens);
    json_decref (model_value);
    return answer;
}

// --- OpenAI door ---
// What an OpenAI-compatible API adds to chat answers: /embeddings with
// usage, and the token rate-limit headers OpenAI sends with every answer
// (x-ratelimit-remaining-tokens, x-ratelimit-reset-tokens as "1m0s",
// "20s", "250ms"), counted against a budget of MOCK_TOKENS_PER_MINUTE per
// minute (the headers say how much is left; the mock never refuses).

// s_embedding_of fills vector with numbers made from text (deterministic:
// the same input, the same embedding).
static void
s_embedding_of (const char *text, size_t len, float *vector)
{
    uint64_t hash = 14695981039346656037ULL;
    for (size_t i = 0; i < len; i++)
        hash = (hash ^ (unsigned char) text [i]) * 1099511628211ULL;
    for (int d = 0; d < MOCK_EMBEDDING_DIMENSIONS; d++) {
        hash ^= hash << 13;
        hash ^= hash >> 7;
        hash ^= hash << 17;
        vector [d] = (float) ((double) (hash >> 40) / (double) (1ULL << 24)) - 0.5f;
    }
}

// s_embedding_value renders vector as a JSON array of numbers, or with
// base64 as OpenAI's base64 of little-endian float32s.
static json_t *
s_embedding_value (const float *vector, bool base64)
{
    if (!base64) {
        json_t *numbers = json_array ();
        for (int d = 0; numbers && d < MOCK_EMBEDDING_DIMENSIONS; d++)
            json_array_append_new (numbers, json_real (vector [d]));
        return numbers;
    }
    unsigned char bytes [MOCK_EMBEDDING_DIMENSIONS * 4];
    for (int d = 0; d < MOCK_EMBEDDING_DIMENSIONS; d++) {
        uint32_t bits;
        memcpy (&bits, &vector [d], 4);
        for (int b = 0; b < 4; b++)
            bytes [d * 4 + b] = (unsigned char) (bits >> (8 * b));
    }
    char text [sizeof bytes * 2 + 4];
    sodium_bin2base64 (text, sizeof text, bytes, sizeof bytes, sodium_base64_VARIANT_ORIGINAL);
    return json_string (text);
}

// s_embeddings answers POST /v1/embeddings like OpenAI: one embedding per
// input (a string, an array of strings, or token arrays), "usage" with the
// input's tokens (words; a token array's length).
static char *
s_embeddings (request_t *request)
{
    json_t *body = json_loadb (request->upload? request->upload: "", request->upload_size, 0, NULL);
    json_t *input = json_object_get (body, "input");
    json_t *inputs = json_is_string (input)? json_pack ("[O]", input): json_incref (input);
    const char *model = json_string_value (json_object_get (body, "model"));
    const char *format = json_string_value (json_object_get (body, "encoding_format"));
    bool base64 = format && strcmp (format, "base64") == 0;
    if (!json_is_array (inputs) || json_array_size (inputs) == 0
        || json_array_size (inputs) > MOCK_MAX_EMBEDDING_INPUTS) {
        json_decref (inputs);
        json_decref (body);
        request->status = 400;
        return strdup ("{\"error\":{\"message\":\"input must be a string or a non-empty "
                       "array\",\"type\":\"invalid_request_error\",\"param\":\"input\"}}");
    }
    json_t *data = json_array ();
    uint64_t tokens = 0;
    size_t index;
    json_t *item;
    json_array_foreach (inputs, index, item) {
        float vector [MOCK_EMBEDDING_DIMENSIONS];
        char *text = json_dumps (item, JSON_ENCODE_ANY | JSON_COMPACT);
        s_embedding_of (text? text: "", text? strlen (text): 0, vector);
        free (text);
        tokens += json_is_string (item)? (uint64_t) s_words (json_string_value (item))
                : json_is_array (item)? json_array_size (item): 1;
        json_array_append_new (data, json_pack ("{s:s, s:I, s:o*}", "object", "embedding",
            "index", (json_int_t) index, "embedding", s_embedding_value (vector, base64)));
    }
    request->openai = true;
    request->prompt_tokens = tokens;
    char *answer = s_dump (json_pack ("{s:s, s:o*, s:s, s:{s:I, s:I}}", "object", "list",
        "data", data, "model", model? model: "mock-embedding", "usage",
        "prompt_tokens", (json_int_t) tokens, "total_tokens", (json_int_t) tokens));
    json_decref (inputs);
    json_decref (body);
    return answer;
}

// s_duration renders ms as OpenAI writes a reset time: "250ms", "20s", "1m5s".
static void
s_duration (uint64_t ms, char *out, size_t size)
{
    if (ms < 1000)
        snprintf (out, size, "%" PRIu64 "ms", ms);
    else if (ms < 60000)
        snprintf (out, size, "%" PRIu64 "s", (ms + 999) / 1000);
    else
        snprintf (out, size, "%" PRIu64 "m%" PRIu64 "s", ms / 60000, (ms % 60000 + 999) / 1000);
}

// s_ratelimit_headers counts an OpenAI-style answer's tokens against the
// minute's budget and adds the rate-limit headers OpenAI sends.
static bool
s_ratelimit_headers (mock_t *self, request_t *request, struct MHD_Response *response)
{
    uint64_t now = s_now_ns ();
    if (self->tokens_window_ns == 0 || now - self->tokens_window_ns >= 60000000000ULL) {
        self->tokens_window_ns = now;
        self->tokens_used = 0;
    }
    self->tokens_used += request->prompt_tokens + request->completion_tokens;
    uint64_t remaining = self->tokens_used < MOCK_TOKENS_PER_MINUTE
                       ? MOCK_TOKENS_PER_MINUTE - self->tokens_used: 0;
    char limit_text [32], remaining_text [32], reset_text [32];
    snprintf (limit_text, sizeof limit_text, "%d", MOCK_TOKENS_PER_MINUTE);
    snprintf (remaining_text, sizeof remaining_text, "%" PRIu64, remaining);
    s_duration ((self->tokens_window_ns + 60000000000ULL - now) / 1000000, reset_text,
                sizeof reset_text);
    return MHD_add_response_header (response, "x-ratelimit-limit-tokens", limit_text) == MHD_YES
        && MHD_add_response_header (response, "x-ratelimit-remaining-tokens", remaining_text) == MHD_YES
        && MHD_add_response_header (response, "x-ratelimit-reset-tokens", reset_text) == MHD_YES;
}
// --- end OpenAI door ---

// s_flaky_attempt counts one request for key and returns its 1-based number.
static uint64_t
s_flaky_attempt (mock_t *self, const char *key)
{
    json_t *count = json_object_get (self->flaky, key);
    if (!count && json_object_size (self->flaky) >= MOCK_MAX_FLAKY_KEYS)
        json_object_clear (self->flaky);
    uint64_t attempt = count? (uint64_t) json_integer_value (count) + 1: 1;
    // never serialised, so keys need not be UTF-8: any client key must count
    json_object_set_new_nocheck (self->flaky, key, json_integer ((json_int_t) attempt));
    return attempt;
}

// s_queue builds the response described by request and queues it; the
// content type, the optional Location and Retry-After headers are added here.
static enum MHD_Result
s_queue (request_t *request, const char *content_type,
         const char *location, const char *retry_after)
{
    struct MHD_Response *response;
    request->body_start_ns = s_now_ns ();
    if (request->body_size > 0 && (request->slow_ns > 0 || request->body_kind != BODY_BUFFER)) {
        if (!request->piece_offsets)
            request->pieces = request->slow_ns > 0
                        ? (unsigned) (request->body_size < MOCK_SLOW_PIECES? request->body_size: MOCK_SLOW_PIECES)
                        : 1;
        response = MHD_create_response_from_callback (request->body_size, 64 * 1024,
                                                      s_body_reader, request, NULL);
    }
    else {
        response = MHD_create_response_from_buffer ((size_t) request->body_size,
                                                    request->body_buf, MHD_RESPMEM_MUST_FREE);
        if (response)
            request->body_buf = NULL;   // the response frees it now
    }
    if (!response)
        return MHD_NO;

    bool headers_ok = MHD_add_response_header (response, MHD_HTTP_HEADER_CONTENT_TYPE, content_type) == MHD_YES;
    if (location)
        headers_ok = headers_ok && MHD_add_response_header (response, MHD_HTTP_HEADER_LOCATION, location) == MHD_YES;
    if (retry_after)
        headers_ok = headers_ok && MHD_add_response_header (response, MHD_HTTP_HEADER_RETRY_AFTER, retry_after) == MHD_YES;
    if (request->openai && request->status == 200)
        headers_ok = headers_ok && s_ratelimit_headers (request->mock, request, response);
    if (!headers_ok) {
        // MHD refuses header values with CR/LF: a bad to= is the client's fault
        MHD_destroy_response (response);
        static const char bad [] = "{\"error\":\"bad header value\"}";
        response = MHD_create_response_from_buffer (sizeof bad - 1, (void *) bad, MHD_RESPMEM_PERSISTENT);
        if (!response)
            return MHD_NO;
        MHD_add_response_header (response, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
        request->status = 400;
    }
    enum MHD_Result result = MHD_queue_response (request->connection, request->status, response);
    MHD_destroy_response (response);
    return result;
}

// --- hardening: worker ---
// Endpoints under /hardening/worker/ that answer what a hostile or sloppy
// upstream answers (issues 10 and 17, the worker's side): the provider's
// secret echoed in every spelling, a stream splitting it across deltas,
// JSON too big or too deep to parse, NUL bytes, a broken status line, and
// the raw request headers for counting. Each queues its own answer.

// gzip of 4096 zero bytes (`head -c 4096 /dev/zero | gzip -9n`).
static const unsigned char s_hardening_zeros_gzip [] = {
    0x1f, 0x8b, 0x08, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02, 0x03, 0xed, 0xc1,
    0x01, 0x0d, 0x00, 0x00, 0x00, 0xc2, 0xa0, 0xf7, 0x4f, 0x6d, 0x0f, 0x07,
    0x14, 0x00, 0x00, 0x00, 0xf0, 0x6e, 0x11, 0x00, 0x1c, 0xc7, 0x00, 0x10,
    0x00, 0x00
};

// s_hardening_answer queues size bytes of body (taken, may hold NUL) with a
// content type and one optional extra header.
static enum MHD_Result
s_hardening_answer (request_t *request, unsigned status, const char *content_type, char *body,
                    size_t size, const char *header, const char *value)
{
    if (!body)
        return MHD_NO;
    struct MHD_Response *response = MHD_create_response_from_buffer (size, body,
                                                                     MHD_RESPMEM_MUST_FREE);
    if (!response) {
        free (body);
        return MHD_NO;
    }
    request->status = status;
    MHD_add_response_header (response, MHD_HTTP_HEADER_CONTENT_TYPE, content_type);
    if (header && value)
        MHD_add_response_header (response, header, value);
    enum MHD_Result result = MHD_queue_response (request->connection, status, response);
    MHD_destroy_response (response);
    return result;
}

// s_hardening_echo_secret answers the request's Authorization value (the
// provider's "Bearer SECRET") back in the spelling form= asks for.
static enum MHD_Result
s_hardening_echo_secret (request_t *request)
{
    struct MHD_Connection *connection = request->connection;
    const char *form = MHD_lookup_connection_value (connection, MHD_GET_ARGUMENT_KIND, "form");
    const char *secret = MHD_lookup_connection_value (connection, MHD_HEADER_KIND,
                                                      MHD_HTTP_HEADER_AUTHORIZATION);
    if (!form)
        form = "json";
    if (!secret)
        secret = "";
    json_t *value = s_json_text (secret, strlen (secret));
    char *body = NULL;
    const char *type = "application/json";
    if (strcmp (form, "json") == 0 || strcmp (form, "slash") == 0)
        body = s_dump (json_pack ("{s:O, s:s}", "authorization", value, "path", "/a/b"));
    if (strcmp (form, "slash") == 0) {
        // PHP's json_encode escapes every slash.
        json_t *parsed = json_loads (body ? body : "", 0, NULL);
        free (body);
        body = parsed ? json_dumps (parsed, JSON_COMPACT | JSON_ESCAPE_SLASH) : NULL;
        json_decref (parsed);
    }
    else if (strcmp (form, "unicode") == 0) {
        // Every character of the value as \u00XX.
        size_t length = strlen (secret);
        body = malloc (6 * length + 32);
        if (body) {
            size_t at = (size_t) sprintf (body, "{\"authorization\":\"");
            for (size_t index = 0; index < length; index++)
                at += (size_t) sprintf (body + at, "\\u%04x", (unsigned char) secret [index]);
            sprintf (body + at, "\"}");
        }
    }
    else if (strcmp (form, "key") == 0)
        body = s_dump (json_pack ("{s:{s:i}}", "seen", secret, 1));
    else if (strcmp (form, "text") == 0) {
        type = "text/plain";
        if (asprintf (&body, "Authorization: %s\n", secret) < 0)
            body = NULL;
    }
    else if (strcmp (form, "html") == 0) {
        type = "text/html";
        char *escaped = s_html_escape (secret);
        if (!escaped || asprintf (&body, "<html><head><title>%s</title></head><body>%s</body></html>",
                                  escaped, escaped) < 0)
            body = NULL;
        free (escaped);
    }
    else if (strcmp (form, "binary") == 0) {
        type = "application/octet-stream";
        if (asprintf (&body, "\xff\xfe%s\xff", secret) < 0)
            body = NULL;
    }
    else if (strcmp (form, "header") == 0) {
        json_decref (value);
        return s_hardening_answer (request, 200, type, strdup ("{}"), 2, "X-Echo", secret);
    }
    json_decref (value);
    return s_hardening_answer (request, 200, type, body, body? strlen (body): 0, NULL, NULL);
}

// s_hardening_secret_llm answers a chat completion stream whose deltas
// carry the provider's secret: split across two deltas, then whole.
static enum MHD_Result
s_hardening_secret_llm (request_t *request)
{
    const char *authorization = MHD_lookup_connection_value (request->connection,
                                                             MHD_HEADER_KIND,
                                                             MHD_HTTP_HEADER_AUTHORIZATION);
    const char *secret = authorization && strncmp (authorization, "Bearer ", 7) == 0
                       ? authorization + 7: "";
    size_t half = strlen (secret) / 2;
    char *first = strndup (secret, half);
    char *second = NULL;
    if (!first || asprintf (&second, "%s and again ", secret + half) < 0) {
        free (first);
        return MHD_NO;
    }
    const char *deltas [] = { "The key is ", first, second, secret, "." };
    size_t count = sizeof deltas / sizeof deltas [0];
    request->piece_offsets = calloc (count + 2, sizeof (uint64_t));
    char *body = NULL;
    size_t size = 0;
    unsigned pieces = 0;
    bool ok = request->piece_offsets != NULL;
    for (size_t index = 0; ok && index < count; index++)
        ok = s_sse_append (&body, &size, request->piece_offsets, &pieces,
            json_pack ("{s:s, s:s, s:[{s:i, s:{s:o*}}]}", "id", "chatcmpl-hardening",
                       "object", "chat.completion.chunk", "choices", "index", 0,
                       "delta", "content", s_json_text (deltas [index], strlen (deltas [index]))))
             == 0;
    ok = ok && s_sse_append (&body, &size, request->piece_offsets, &pieces, NULL) == 0;
    free (first);
    free (second);
    if (!ok) {
        free (body);
        return MHD_NO;
    }
    // One event per piece, 20 ms apart: each delta reaches the worker alone.
    request->body_buf = body;
    request->body_size = size;
    request->pieces = pieces;
    request->slow_ns = 20ULL * 1000000ULL * (pieces - 1);
    request->status = 200;
    return s_queue (request, "text/event-stream", NULL, NULL);
}

// s_hardening_collect_pair appends one header to an array as [name, value].
static enum MHD_Result
s_hardening_collect_pair (void *cls, enum MHD_ValueKind kind, const char *key, const char *value)
{
    (void) kind;
    json_array_append_new (cls, json_pack ("[o*, o*]", s_json_text (key, key? strlen (key): 0),
                                           s_json_text (value, value? strlen (value): 0)));
    return MHD_YES;
}

// s_hardening_headers answers (and records under capture=K) every request
// header in arrival order, repeats included: {"headers": [[name, value], ...]}.
static enum MHD_Result
s_hardening_headers (mock_t *self, request_t *request)
{
    json_t *pairs = json_array ();
    if (!pairs)
        return MHD_NO;
    MHD_get_connection_values (request->connection, MHD_HEADER_KIND, s_hardening_collect_pair,
                               pairs);
    const char *capture = MHD_lookup_connection_value (request->connection,
                                                       MHD_GET_ARGUMENT_KIND, "capture");
    if (capture) {
        json_t *list = json_object_get (self->captured, capture);
        if (!list && json_object_size (self->captured) < MOCK_MAX_FLAKY_KEYS) {
            list = json_array ();
            json_object_set_new (self->captured, capture, list);
        }
        if (list && json_array_size (list) < 10000)
            json_array_append (list, pairs);
    }
    char *body = s_dump (json_pack ("{s:o}", "headers", pairs));
    return s_hardening_answer (request, 200, "application/json", body, body? strlen (body): 0,
                               NULL, NULL);
}

// s_hardening_bad_status writes a status line libcurl cannot read straight
// to the socket and closes it (libmicrohttpd only writes valid ones):
// line=0 a non-numeric code, 1 an unknown version, 2 no status line at
// all, 3 a header line without a colon.
static enum MHD_Result
s_hardening_bad_status (request_t *request)
{
    static const char *const answers [] = {
        "HTTP/1.1 2OO Broken\r\nContent-Length: 2\r\n\r\nok",
        "HTTP/9.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
        "garbage instead of a status line\r\n\r\n",
        "HTTP/1.1 200 OK\r\nNot a header line\r\nContent-Length: 2\r\n\r\nok",
    };
    uint64_t line = s_knob (request->connection, "line", 3, 0);
    const union MHD_ConnectionInfo *info = MHD_get_connection_info (
        request->connection, MHD_CONNECTION_INFO_CONNECTION_FD);
    if (info) {
        ssize_t sent = send (info->connect_fd, answers [line], strlen (answers [line]),
                             MSG_NOSIGNAL);
        (void) sent;
    }
    return MHD_NO;                 // libmicrohttpd closes the connection, writing nothing
}

// s_hardening_worker answers the paths under /hardening/worker/.
static enum MHD_Result
s_hardening_worker (mock_t *self, request_t *request, const char *path)
{
    struct MHD_Connection *connection = request->connection;
    if (strcmp (path, "secret-echo") == 0)
        return s_hardening_echo_secret (request);
    if (strcmp (path, "secret-llm/chat/completions") == 0)
        return s_hardening_secret_llm (request);
    if (strcmp (path, "headers") == 0)
        return s_hardening_headers (self, request);
    if (strcmp (path, "bad-status") == 0)
        return s_hardening_bad_status (request);
    if (strcmp (path, "big-json") == 0) {
        // [{},{},...] of at most bytes= bytes (default 10 MiB, the worker's
        // default response cap): 3 bytes a value.
        uint64_t count = (s_knob (connection, "bytes", MOCK_MAX_SIZE, 10ULL << 20) - 1) / 3;
        if (count == 0)
            count = 1;
        char *body = malloc (3 * count + 2);
        if (!body)
            return MHD_NO;
        body [0] = '[';
        for (uint64_t index = 0; index < count; index++)
            memcpy (body + 1 + 3 * index, "{},", 3);
        body [3 * count] = ']';
        return s_hardening_answer (request, 200, "application/json", body, 3 * count + 1,
                                   NULL, NULL);
    }
    if (strcmp (path, "deep-json") == 0) {
        uint64_t depth = s_knob (connection, "depth", 1000000, 2048);
        char *body = malloc (2 * depth + 1);
        if (!body)
            return MHD_NO;
        memset (body, '[', depth);
        memset (body + depth, ']', depth);
        return s_hardening_answer (request, 200, "application/json", body, 2 * depth, NULL, NULL);
    }
    if (strcmp (path, "nul-json") == 0) {
        static const char json [] = "{\"text\":\"a\\u0000b\",\"n\":1}";
        return s_hardening_answer (request, 200, "application/json", strdup (json),
                                   sizeof json - 1, NULL, NULL);
    }
    if (strcmp (path, "nul-title") == 0) {
        static const char page [] = "<html><head><title>A\0B</title></head><body>x\0y</body></html>";
        char *body = malloc (sizeof page - 1);
        if (body)
            memcpy (body, page, sizeof page - 1);
        return s_hardening_answer (request, 200, "text/html; charset=utf-8", body,
                                   sizeof page - 1, NULL, NULL);
    }
    if (strcmp (path, "zeros-gzip") == 0) {
        char *body = malloc (sizeof s_hardening_zeros_gzip);
        if (body)
            memcpy (body, s_hardening_zeros_gzip, sizeof s_hardening_zeros_gzip);
        return s_hardening_answer (request, 200, "application/octet-stream", body,
                                   sizeof s_hardening_zeros_gzip, "Content-Encoding", "gzip");
    }
    static const char unknown [] = "{\"error\":\"no such hardening endpoint\"}";
    return s_hardening_answer (request, 404, "application/json", strdup (unknown),
                               sizeof unknown - 1, NULL, NULL);
}
// --- end hardening: worker ---

// s_respond answers a request whose body is read and whose wait is over.
static enum MHD_Result
s_respond (mock_t *self, request_t *request, const char *url, const char *method)
{
    struct MHD_Connection *connection = request->connection;
    const char *content_type = "application/json";
    const char *location = NULL;
    char location_buf [64];
    char retry_after_buf [32];
    const char *retry_after = NULL;
    uint64_t retry_after_s;
    if (s_parse_u64 (MHD_lookup_connection_value (connection, MHD_GET_ARGUMENT_KIND, "retry_after"),
                     &retry_after_s)) {
        snprintf (retry_after_buf, sizeof retry_after_buf, "%" PRIu64,
                  retry_after_s > UINT64_C (1000000000)? UINT64_C (1000000000): retry_after_s);
        retry_after = retry_after_buf;
    }
    request->status = 200;

    if (self->stopping) {
        request->status = 503;
        request->body_buf = strdup ("{\"error\":\"shutting down\"}");
    }
    else
    if (strcmp (url, "/stats") == 0) {
        request->body_buf = s_stats_body (self);
        retry_after = NULL;
    }
    else
    if (strcmp (url, "/reset") == 0) {
        s_reset (self);
        request->body_buf = strdup ("{\"ok\":true}");
        retry_after = NULL;
    }
    else
    if (strcmp (url, "/captured") == 0) {
        // The requests recorded under ?key= by any path with ?capture=key.
        const char *key = MHD_lookup_connection_value (connection, MHD_GET_ARGUMENT_KIND, "key");
        json_t *list = key? json_object_get (self->captured, key): NULL;
        request->body_buf = s_dump (list? json_incref (list): json_array ());
        retry_after = NULL;
    }
    else
    if (strcmp (url, "/storm") == 0) {
        request->body_buf = s_storm (self, connection);
        retry_after = NULL;
    }
    else
    if (request->storm) {
        self->served++;
        self->storm_refused++;
        s_count_path (self, url);
        request->status = self->storm_status;
        retry_after = NULL;
        if (self->storm_retry_after > 0) {
            snprintf (retry_after_buf, sizeof retry_after_buf, "%" PRIu64, self->storm_retry_after);
            retry_after = retry_after_buf;
        }
        request->body_buf = s_dump (json_pack ("{s:s, s:i}", "error", "storm",
                                               "status", (int) request->status));
    }
    else {
        uint64_t number = ++self->served;
        s_count_path (self, url);
        // A chat call logs its tokens once it has counted them.
        if (strcmp (url, "/v1/chat/completions") != 0 && strcmp (url, "/chat/completions") != 0)
            s_log_call (self, url, 0, 0);
        request->status = s_status_knob (connection, "status", 200);
        if (!s_key_accepted (connection)) {
            request->status = 401;
            request->body_buf = strdup ("{\"error\":{\"message\":\"missing or invalid API key\","
                                        "\"type\":\"invalid_request_error\"}}");
        }
        else
        if (strcmp (url, "/search") == 0)
            request->body_buf = s_search_body (connection);
        else
        if (strcmp (url, "/v1/chat/completions") == 0 || strcmp (url, "/chat/completions") == 0) {
            if (strcmp (method, "POST") == 0) {
                request->body_buf = s_chat (request, &content_type);
                s_log_call (self, url, (int64_t) request->prompt_tokens, (int64_t) request->completion_tokens);
            }
            else {
                request->status = 405;
                request->body_buf = strdup ("{\"error\":{\"message\":\"use POST\"}}");
            }
        }
        else
        if (strcmp (url, "/v1/embeddings") == 0 || strcmp (url, "/embeddings") == 0) {
            if (strcmp (method, "POST") == 0)
                request->body_buf = s_embeddings (request);
            else {
                request->status = 405;
                request->body_buf = strdup ("{\"error\":{\"message\":\"use POST\"}}");
            }
        }
        else
        // --- hardening: gateway ---
        // /fast/chat/completions streams a chat answer of model
        // "fast-<tokens>-<bytes>[-<pause ms>-<more tokens>]": that many
        // tokens of that many bytes, one per millisecond (an llm provider
        // with base_url ".../fast"), then optionally a pause (SSE comments)
        // and more tokens, so a test streams megabytes of chunks in seconds
        // and knows when the upstream is quiet (a slow SSE reader).
        if (strcmp (url, "/fast/chat/completions") == 0) {
            json_t *body = json_loadb (request->upload? request->upload: "", request->upload_size, 0, NULL);
            unsigned tokens = 1000, size = 8, pause = 0, more = 0;
            const char *model = json_string_value (json_object_get (body, "model"));
            if (model && sscanf (model, "fast-%u-%u-%u-%u", &tokens, &size, &pause, &more) < 2)
                tokens = 1000, size = 8;
            tokens = tokens < MOCK_MAX_TOKENS? tokens: MOCK_MAX_TOKENS;
            more = more < MOCK_MAX_TOKENS? more: MOCK_MAX_TOKENS;
            pause = pause < 60000? pause: 60000;
            size = size < 4096? size: 4096;
            json_decref (body);
            char *token = malloc (size + 1);
            request->piece_offsets = calloc (tokens + pause + more + 1, sizeof (uint64_t));
            unsigned pieces = 0;
            size_t length = 0;
            bool ok = token && request->piece_offsets;
            if (token) {
                memset (token, 'x', size);
                token [size] = '\0';
            }
            for (unsigned i = 0; ok && i < tokens + pause + more; i++) {
                if (i >= tokens && i < tokens + pause) {
                    char *grown = realloc (request->body_buf, length + 6);
                    ok = grown != NULL;
                    if (ok) {
                        request->body_buf = grown;
                        request->piece_offsets [pieces++] = length;
                        memcpy (grown + length, ": p\n\n", 6);
                        length += 5;
                    }
                    continue;
                }
                ok = s_sse_append (&request->body_buf, &length, request->piece_offsets, &pieces,
                    json_pack ("{s:s, s:[{s:i, s:{s:s}}]}", "object", "chat.completion.chunk",
                               "choices", "index", 0, "delta", "content", token)) == 0;
            }
            ok = ok && s_sse_append (&request->body_buf, &length, request->piece_offsets, &pieces,
                                     NULL) == 0;
            free (token);
            if (ok) {
                request->pieces = pieces;
                request->slow_ns = 1000000ULL * (pieces - 1);
                content_type = "text/event-stream";
            }
            else {
                free (request->body_buf);
                request->body_buf = NULL;
            }
        }
        // --- end hardening: gateway ---
        else
        if (strcmp (url, "/json") == 0)
            request->body_buf = s_dump (json_pack ("{s:b, s:I}", "ok", 1, "n", (json_int_t) number));
        else
        if (strcmp (url, "/html") == 0) {
            const char *title = MHD_lookup_connection_value (connection, MHD_GET_ARGUMENT_KIND, "title");
            request->body_buf = s_html_page (title? title: "Mock Page");
            content_type = "text/html; charset=utf-8";
        }
        else
        if (strcmp (url, "/redirect") == 0) {
            location = MHD_lookup_connection_value (connection, MHD_GET_ARGUMENT_KIND, "to");
            if (!location)
                location = "/html";
            uint64_t code = s_knob (connection, "code", 1000, 302);
            request->status = (code >= 300 && code <= 399)? (unsigned) code: 302;
            request->body_buf = strdup ("<!DOCTYPE html>\n<html><body>Redirecting</body></html>\n");
            content_type = "text/html; charset=utf-8";
        }
        else
        if (strcmp (url, "/redirect-chain") == 0) {
            uint64_t left = s_knob (connection, "n", 1000, 0);
            if (left > 0) {
                snprintf (location_buf, sizeof location_buf, "/redirect-chain?n=%" PRIu64, left - 1);
                location = location_buf;
                request->status = 302;
                request->body_buf = strdup ("<!DOCTYPE html>\n<html><body>Redirecting</body></html>\n");
            }
            else
                request->body_buf = s_html_page ("Mock Page");
            content_type = "text/html; charset=utf-8";
        }
        else
        if (strcmp (url, "/flaky") == 0) {
            const char *key = MHD_lookup_connection_value (connection, MHD_GET_ARGUMENT_KIND, "key");
            uint64_t fail = s_knob (connection, "fail", 1000000000ULL, 1);
            uint64_t attempt = s_flaky_attempt (self, key? key: "");
            bool failing = attempt <= fail;
            request->status = failing? s_status_knob (connection, "status", 500): 200;
            if (!failing)
                retry_after = NULL;    // Retry-After belongs to the failures only
            request->body_buf = s_dump (json_pack ("{s:b, s:o*, s:I, s:I}",
                "ok", !failing, "key", s_json_text (key, key? strlen (key): 0),
                "attempt", (json_int_t) attempt, "n", (json_int_t) number));
        }
        else
        // --- hardening: worker ---
        if (strncmp (url, "/hardening/worker/", 18) == 0)
            return s_hardening_worker (self, request, url + 18);
        // --- end hardening: worker ---
        else {
            // /echo and every unknown path
            json_t *query = json_object ();
            json_t *headers = json_object ();
            if (query)
                MHD_get_connection_values (connection, MHD_GET_ARGUMENT_KIND, s_collect_value, query);
            if (headers)
                MHD_get_connection_values (connection, MHD_HEADER_KIND, s_collect_value, headers);
            json_t *echo = json_pack ("{s:o*, s:o*, s:o*, s:o*, s:o*, s:I}",
                "method", s_json_text (method, strlen (method)),
                "path", s_json_text (url, strlen (url)), "query", query, "headers", headers,
                "body", s_json_text (request->upload, request->upload_size),
                "n", (json_int_t) number);
            // ?capture=K records the request for /captured?key=K (webhook
            // tests); with &fail=N the first N of them answer 500.
            const char *capture = MHD_lookup_connection_value (connection, MHD_GET_ARGUMENT_KIND,
                                                               "capture");
            if (capture && echo) {
                json_t *list = json_object_get (self->captured, capture);
                if (!list && json_object_size (self->captured) < MOCK_MAX_FLAKY_KEYS) {
                    list = json_array ();
                    json_object_set_new (self->captured, capture, list);
                }
                if (list && json_array_size (list) < 10000)
                    json_array_append (list, echo);
                uint64_t fail = s_knob (connection, "fail", 1000000000ULL, 0);
                if (list && json_array_size (list) <= fail)
                    request->status = 500;
            }
            request->body_buf = s_dump (echo);
        }

        // size= and binary=1 replace whatever body the path would give
        uint64_t binary = s_knob (connection, "binary", 1, 0);
        uint64_t size = s_knob (connection, "size", MOCK_MAX_SIZE,
                                binary? MOCK_BINARY_DEFAULT_SIZE: UINT64_MAX);
        if (binary || size != UINT64_MAX) {
            free (request->piece_offsets);
            request->piece_offsets = NULL;
            free (request->body_buf);
            request->body_buf = strdup ("");
            request->body_kind = binary? BODY_BINARY_FILLER: BODY_TEXT_FILLER;
            request->body_size = size;
            content_type = binary? "application/octet-stream": "text/plain";
        }
        if (!request->piece_offsets)
            request->slow_ns = s_knob (connection, "slow_ms", MOCK_MAX_SLOW_MS, 0) * 1000000ULL;
    }
    if (!request->body_buf)
        return MHD_NO;             // out of memory: closing is all we can do
    if (request->body_kind == BODY_BUFFER)
        request->body_size = strlen (request->body_buf);
    return s_queue (request, content_type, location, retry_after);
}

// s_keep_upload appends request body bytes for /echo, dropping what exceeds
// MOCK_MAX_REQUEST_BODY; returns 0 or -1 when out of memory.
static int
s_keep_upload (request_t *request, const char *data, size_t size)
{
    if (request->upload_size + size > MOCK_MAX_REQUEST_BODY)
        size = MOCK_MAX_REQUEST_BODY - request->upload_size;
    if (size == 0)
        return 0;
    if (request->upload_size + size > request->upload_cap) {
        size_t cap = request->upload_cap? request->upload_cap: 4096;
        while (cap < request->upload_size + size)
            cap *= 2;
        char *grown = realloc (request->upload, cap);
        if (!grown)
            return -1;
        request->upload = grown;
        request->upload_cap = cap;
    }
    memcpy (request->upload + request->upload_size, data, size);
    request->upload_size += size;
    return 0;
}

// s_access_handler is MHD's per-request callback: it is called once when the
// headers arrive, once per body chunk, once when the body is complete, and
// again each time a suspended connection is resumed.
static enum MHD_Result
s_access_handler (void *cls, struct MHD_Connection *connection, const char *url,
                  const char *method, const char *version, const char *upload_data,
                  size_t *upload_data_size, void **con_cls)
{
    (void) version;
    mock_t *self = cls;
    request_t *request = *con_cls;
    if (!request) {
        request = calloc (1, sizeof (request_t));
        if (!request)
            return MHD_NO;
        request->mock = self;
        request->connection = connection;
        const union MHD_ConnectionInfo *held =
            MHD_get_connection_info (connection, MHD_CONNECTION_INFO_DAEMON);
        while (held && request->daemon + 1 < MOCK_DAEMONS
           &&  self->daemons [request->daemon] != held->daemon)
            request->daemon++;
        request->start_ns = s_now_ns ();
        request->is_control = strcmp (url, "/stats") == 0 || strcmp (url, "/reset") == 0
                           || strcmp (url, "/storm") == 0;
        if (self->verbose) {
            request->method = strdup (method);
            request->path = strdup (url);
        }
        if (!request->is_control) {
            s_count_arrival (self, request->start_ns);
            request->storm = request->start_ns < self->storm_until_ns;
            self->in_flight++;
            if (self->in_flight > self->max_in_flight)
                self->max_in_flight = self->in_flight;
            // How the upstream recovers after a storm shows in the calls in
            // flight at the first arrivals that the storm no longer answers
            // (a slow start: 1, then at most 2, …).
            if (self->storm_until_ns && !request->storm
                && self->after_storm_count < MOCK_AFTER_STORM_KEPT)
                self->after_storm[self->after_storm_count++] = self->in_flight;
        }
        *con_cls = request;
        return MHD_YES;
    }
    if (*upload_data_size > 0) {
        if (s_keep_upload (request, upload_data, *upload_data_size))
            return MHD_NO;
        *upload_data_size = 0;
        return MHD_YES;
    }
    if (!request->waited) {
        request->waited = true;
        uint64_t latency_ms = request->is_control || request->storm
                            ? 0: s_knob (connection, "latency_ms", MOCK_MAX_LATENCY_MS, 0);
        if (latency_ms > 0 && !self->stopping
        &&  s_suspend_until (self, request, s_now_ns () + latency_ms * 1000000ULL) == 0)
            return MHD_YES;        // MHD calls us again after the resume
    }
    return s_respond (self, request, url, method);
}

// s_request_completed frees a request once MHD is done with its connection.
static void
s_request_completed (void *cls, struct MHD_Connection *connection, void **con_cls,
                     enum MHD_RequestTerminationCode toe)
{
    (void) connection;
    mock_t *self = cls;
    request_t *request = *con_cls;
    if (!request)
        return;
    *con_cls = NULL;
    if (!request->is_control && self->in_flight > 0)
        self->in_flight--;
    if (self->verbose)
        fprintf (stderr, "mock: %s %s %u %.1f ms%s\n",
                 request->method? request->method: "?", request->path? request->path: "?",
                 request->status, (double) (s_now_ns () - request->start_ns) / 1e6,
                 toe == MHD_REQUEST_TERMINATED_COMPLETED_OK? "": " (aborted)");
    free (request->method);
    free (request->path);
    free (request->upload);
    free (request->body_buf);
    free (request->piece_offsets);
    free (request);
}

// s_raise_fd_limit lifts the soft open-files limit to the hard one, because
// thousands of parked connections need thousands of descriptors.
static void
s_raise_fd_limit (void)
{
    struct rlimit limit;
    if (getrlimit (RLIMIT_NOFILE, &limit) == 0) {
        limit.rlim_cur = limit.rlim_max == RLIM_INFINITY? 1048576: limit.rlim_max;
        if (setrlimit (RLIMIT_NOFILE, &limit))
            fprintf (stderr, "mock: warning: setrlimit(RLIMIT_NOFILE): %s\n", strerror (errno));
    }
}

// s_resolve turns "HOST:PORT" (or "[V6]:PORT") into a socket address;
// returns 0 or -1 with a message printed.
static int
s_resolve (const char *listen, struct sockaddr_storage *address, bool *ipv6)
{
    char host [256];
    const char *colon = strrchr (listen, ':');
    if (!colon || colon == listen || (size_t) (colon - listen) >= sizeof host) {
        fprintf (stderr, "mock: --listen wants HOST:PORT, got '%s'\n", listen);
        return -1;
    }
    memcpy (host, listen, (size_t) (colon - listen));
    host [colon - listen] = '\0';
    char *name = host;
    if (host [0] == '[' && host [strlen (host) - 1] == ']') {
        host [strlen (host) - 1] = '\0';
        name = host + 1;
    }
    uint64_t port;
    if (!s_parse_u64 (colon + 1, &port) || port > 65535) {
        fprintf (stderr, "mock: bad port in --listen '%s'\n", listen);
        return -1;
    }
    // IPv4 first, so "localhost" means 127.0.0.1 like the rest of the stack
    int families [] = { AF_INET, AF_INET6 };
    for (size_t index = 0; index < 2; index++) {
        struct addrinfo hints = { .ai_family = families [index], .ai_socktype = SOCK_STREAM,
                                  .ai_flags = AI_PASSIVE | AI_NUMERICSERV };
        struct addrinfo *found = NULL;
        if (getaddrinfo (name, colon + 1, &hints, &found) == 0 && found) {
            memcpy (address, found->ai_addr, found->ai_addrlen);
            *ipv6 = found->ai_family == AF_INET6;
            freeaddrinfo (found);
            return 0;
        }
    }
    fprintf (stderr, "mock: cannot resolve host '%s' in --listen\n", name);
    return -1;
}

// s_write_port_file writes the bound port to path atomically (temp + rename),
// so a test polling the file never reads half a number.
static int
s_write_port_file (const char *path, unsigned port)
{
    char temp [PATH_MAX];
    if (snprintf (temp, sizeof temp, "%s.tmp.%ld", path, (long) getpid ()) >= (int) sizeof temp)
        return -1;
    FILE *file = fopen (temp, "w");
    if (!file)
        return -1;
    bool ok = fprintf (file, "%u\n", port) > 0;
    ok = (fclose (file) == 0) && ok;
    if (!ok || rename (temp, path)) {
        unlink (temp);
        return -1;
    }
    return 0;
}

// s_usage prints the command line help.
static void
s_usage (FILE *out)
{
    fprintf (out,
        "Usage: jobgate-mock-upstream [--listen HOST:PORT] [--port-file FILE] [--log FILE]\n"
        "                             [--verbose] [--help]\n"
        "\n"
        "A scriptable slow HTTP upstream for jobgate tests and benchmarks.\n"
        "  --listen HOST:PORT  address to serve (default " MOCK_DEFAULT_LISTEN "; port 0 = ephemeral)\n"
        "  --port-file FILE    write the bound port to FILE once listening\n"
        "  --log FILE          append one line per call: wall ms, path, prompt and\n"
        "                      completion tokens (0 0 for calls that are not chats)\n"
        "  --verbose           log one line per request to stderr\n"
        "\n"
        "Query knobs, on any path: latency_ms=N status=N retry_after=S size=N slow_ms=N binary=1\n"
        "       require_key=K (401 unless Authorization is \"Bearer K\")\n"
        "Paths: /echo (default) /json /html?title=T /redirect?to=URL&code=302\n"
        "       /redirect-chain?n=K /flaky?key=K&fail=N&status=500\n"
        "       /search?q=Q&count=N\n"
        "       POST /v1/chat/completions (OpenAI-compatible; \"stream\": true streams\n"
        "            one token every token_ms, default 20)\n"
        "       /storm?status=429&retry_after=S&for_ms=N (every request answered status)\n"
        "       /stats /reset\n");
}

// s_run is the event loop: wait on MHD's epoll fd and the signal fd, at most
// until the next timer or MHD timeout, then fire timers and let MHD work.
static void
s_run (mock_t *self)
{
    struct epoll_event events [64];
    while (!self->stopping) {
        int wait_ms = MOCK_MAX_WAIT_MS;
        for (size_t daemon = 0; daemon < MOCK_DAEMONS; daemon++) {
            MHD_UNSIGNED_LONG_LONG mhd_timeout;
            if (MHD_get_timeout (self->daemons [daemon], &mhd_timeout) == MHD_YES
            &&  mhd_timeout < (MHD_UNSIGNED_LONG_LONG) wait_ms)
                wait_ms = (int) mhd_timeout;
        }
        if (self->timers_size > 0) {
            uint64_t now = s_now_ns ();
            uint64_t due = self->timers [0].due_ns;
            if (due < s_next_batch_ns (self))
                due = s_next_batch_ns (self);
            // round up so we never wake a hair early and spin
            uint64_t until_ms = due <= now? 0: (due - now + 999999) / 1000000;
            if (until_ms < (uint64_t) wait_ms)
                wait_ms = (int) until_ms;
        }
        int count = epoll_wait (self->epoll_fd, events, 64, wait_ms);
        if (count < 0 && errno != EINTR) {
            fprintf (stderr, "mock: epoll_wait: %s\n", strerror (errno));
            break;
        }
        for (int index = 0; index < count; index++)
            if (events [index].data.u64 == MOCK_DAEMONS) {
                struct signalfd_siginfo info;
                if (read (self->signal_fd, &info, sizeof info) > 0 && self->verbose)
                    fprintf (stderr, "mock: signal %u, stopping\n", info.ssi_signo);
                self->stopping = true;
            }
            else
                self->run_needed [events [index].data.u64] = true;
        s_fire_timers (self);
        // Each daemon runs when its epoll fd was ready, one of its
        // connections was resumed, or its own timeout came (wait_ms).
        for (size_t daemon = 0; daemon < MOCK_DAEMONS; daemon++) {
            MHD_UNSIGNED_LONG_LONG mhd_timeout;
            if (self->run_needed [daemon]
            || (count == 0 && MHD_get_timeout (self->daemons [daemon], &mhd_timeout) == MHD_YES
                           && mhd_timeout == 0)) {
                self->run_needed [daemon] = false;
                MHD_run (self->daemons [daemon]);
            }
        }
    }
    // Resume every parked connection (they answer 503) and give MHD a moment
    // to flush, because stopping with suspended connections leaks them.
    s_fire_timers (self);
    uint64_t give_up = s_now_ns () + 200000000ULL;
    do {
        for (size_t daemon = 0; daemon < MOCK_DAEMONS; daemon++)
            MHD_run (self->daemons [daemon]);
        s_fire_timers (self);
    } while (self->in_flight > 0 && s_now_ns () < give_up
         && epoll_wait (self->epoll_fd, events, 64, 10) >= 0);
}

// s_stop_daemons stops the daemons started.
static void
s_stop_daemons (mock_t *self)
{
    for (size_t daemon = 0; daemon < MOCK_DAEMONS; daemon++)
        if (self->daemons [daemon])
            MHD_stop_daemon (self->daemons [daemon]);
}

int
main (int argc, char *argv [])
{
    const char *listen = MOCK_DEFAULT_LISTEN;
    const char *port_file = NULL;
    mock_t self = { .epoll_fd = -1, .signal_fd = -1 };

    for (int index = 1; index < argc; index++) {
        const char *arg = argv [index];
        if (strcmp (arg, "--help") == 0 || strcmp (arg, "-h") == 0) {
            s_usage (stdout);
            return 0;
        }
        else
        if (strcmp (arg, "--verbose") == 0 || strcmp (arg, "-v") == 0)
            self.verbose = true;
        else
        if (strcmp (arg, "--listen") == 0 && index + 1 < argc)
            listen = argv [++index];
        else
        if (strcmp (arg, "--port-file") == 0 && index + 1 < argc)
            port_file = argv [++index];
        else
        if (strcmp (arg, "--log") == 0 && index + 1 < argc) {
            const char *log_path = argv [++index];
            if (self.call_log)
                fclose (self.call_log);
            self.call_log = fopen (log_path, "a");
            if (!self.call_log) {
                fprintf (stderr, "mock: cannot open --log %s: %s\n", log_path, strerror (errno));
                return 2;
            }
        }
        else {
            fprintf (stderr, "mock: unknown or incomplete option '%s' (try --help)\n", arg);
            return 2;
        }
    }

    struct sockaddr_storage address;
    bool ipv6 = false;
    memset (&address, 0, sizeof address);
    if (s_resolve (listen, &address, &ipv6))
        return 2;
    s_raise_fd_limit ();
    signal (SIGPIPE, SIG_IGN);

    // Signals are read from a signalfd on the loop, so no handler races MHD.
    sigset_t signals;
    sigemptyset (&signals);
    sigaddset (&signals, SIGTERM);
    sigaddset (&signals, SIGINT);
    sigprocmask (SIG_BLOCK, &signals, NULL);
    self.signal_fd = signalfd (-1, &signals, SFD_NONBLOCK | SFD_CLOEXEC);
    self.epoll_fd = epoll_create1 (EPOLL_CLOEXEC);
    self.by_path = json_object ();
    self.flaky = json_object ();
    self.captured = json_object ();
    self.reset_ns = s_now_ns ();
    if (self.signal_fd < 0 || self.epoll_fd < 0 || !self.by_path || !self.flaky || !self.captured) {
        fprintf (stderr, "mock: start-up failed: %s\n", strerror (errno));
        return 1;
    }

    unsigned flags = MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME;
    if (ipv6)
        flags |= MHD_USE_IPv6;
    if (self.verbose)
        flags |= MHD_USE_ERROR_LOG;
    // The first daemon binds (port 0: the kernel picks one); the others bind
    // the same port, and the kernel spreads connections between them.
    uint16_t bound_port = 0;
    for (size_t daemon = 0; daemon < MOCK_DAEMONS; daemon++) {
        self.daemons [daemon] = MHD_start_daemon (flags, 0, NULL, NULL, s_access_handler, &self,
            MHD_OPTION_SOCK_ADDR, (struct sockaddr *) &address,
            MHD_OPTION_CONNECTION_LIMIT, (unsigned) MOCK_CONNECTION_LIMIT,
            MHD_OPTION_LISTEN_BACKLOG_SIZE, (unsigned) MOCK_LISTEN_BACKLOG,
            MHD_OPTION_CONNECTION_TIMEOUT, (unsigned) MOCK_IDLE_TIMEOUT_S,
            MHD_OPTION_LISTENING_ADDRESS_REUSE, (unsigned) 1,
            MHD_OPTION_NOTIFY_COMPLETED, s_request_completed, &self,
            MHD_OPTION_END);
        if (!self.daemons [daemon]) {
            fprintf (stderr, "mock: cannot listen on %s (address in use or not local?)\n", listen);
            s_stop_daemons (&self);
            return 1;
        }
        const union MHD_DaemonInfo *info = MHD_get_daemon_info (self.daemons [daemon],
                                                                MHD_DAEMON_INFO_EPOLL_FD);
        const union MHD_DaemonInfo *port = MHD_get_daemon_info (self.daemons [daemon],
                                                                MHD_DAEMON_INFO_BIND_PORT);
        struct epoll_event mhd_event = { .events = EPOLLIN, .data.u64 = daemon };
        if (!info || !port || epoll_ctl (self.epoll_fd, EPOLL_CTL_ADD, info->epoll_fd, &mhd_event)) {
            fprintf (stderr, "mock: cannot set up the event loop\n");
            s_stop_daemons (&self);
            return 1;
        }
        if (daemon == 0) {
            bound_port = port->port;
            if (ipv6)
                ((struct sockaddr_in6 *) &address)->sin6_port = htons (bound_port);
            else
                ((struct sockaddr_in *) &address)->sin_port = htons (bound_port);
        }
    }
    struct epoll_event signal_event = { .events = EPOLLIN, .data.u64 = MOCK_DAEMONS };
    if (epoll_ctl (self.epoll_fd, EPOLL_CTL_ADD, self.signal_fd, &signal_event)) {
        fprintf (stderr, "mock: cannot set up the event loop\n");
        s_stop_daemons (&self);
        return 1;
    }
    if (port_file && s_write_port_file (port_file, bound_port)) {
        fprintf (stderr, "mock: cannot write port file %s: %s\n", port_file, strerror (errno));
        s_stop_daemons (&self);
        return 1;
    }
    if (self.verbose)
        fprintf (stderr, "mock: listening on %s (port %u)\n", listen, (unsigned) bound_port);

    s_run (&self);

    s_stop_daemons (&self);
    free (self.timers);
    json_decref (self.by_path);
    json_decref (self.flaky);
    json_decref (self.captured);
    free (self.arrivals);
    if (self.call_log)
        fclose (self.call_log);
    close (self.epoll_fd);
    close (self.signal_fd);
    return 0;
}
