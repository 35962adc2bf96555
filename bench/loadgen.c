// jobgate-loadgen - an open-loop HTTP/1.1 load generator for loopback benchmarks.
//
// Open loop: request i is due at t0 + i / rate whatever happened to the
// requests before it, and its latency is measured from that intended time,
// not from when a socket was free to send it. A closed-loop tool that waits
// for a free connection hides exactly the stalls a benchmark must show
// (coordinated omission), so here a request queued behind busy connections
// keeps its clock running, and more connections are opened (up to
// --max-connections) rather than letting held requests serialise.
//
// One thread, one epoll loop, non-blocking sockets, keep-alive; responses are
// parsed properly (Content-Length, chunked, read-until-close). Only 127.0.0.1
// is ever contacted: this is a benchmark tool, not a way to flood the world.

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#define LOADGEN_MAX_HEADER 65536            // a response head larger than this is an error
#define LOADGEN_READ_CHUNK 65536            // bytes read per read() call
#define LOADGEN_MAX_CAPTURE (1024 * 1024)   // body bytes kept to look for "id"
#define LOADGEN_MAX_WAIT_NS 100000000ULL    // the loop never sleeps longer than this
#define LOADGEN_CONNECT_WAIT_NS 2000000000ULL  // time allowed to open the initial pool
#define LOADGEN_POOLED_NS 1000000000ULL        // a connection this old before its first request is a pool's
// s_request_failed's error for an answer that is not HTTP (errno values are
// positive, 0 is the server's close).
#define LOADGEN_PARSE_ERROR (-1)
// A request is resent at most this often after stale pool connections: the
// pool's connections opened together are closed together by a server's idle
// deadline, so the first resend can meet a second stale one.
#define LOADGEN_STALE_RESENDS 8
#define LOADGEN_EVENTS 512                  // epoll events handled per wake-up

// Where a connection is in its life.
typedef enum {
    CONN_CONNECTING,               // non-blocking connect() in progress
    CONN_IDLE,                     // connected, waiting for a request
    CONN_BUSY                      // a request is being written or answered
} conn_state_t;

// Where the response parser is.
typedef enum {
    PARSE_HEAD,                    // waiting for the status line and headers
    PARSE_BODY_LENGTH,             // reading a Content-Length body
    PARSE_CHUNK_SIZE,              // waiting for a chunk-size line
    PARSE_CHUNK_DATA,              // reading chunk data
    PARSE_CHUNK_END,               // waiting for the CRLF after chunk data
    PARSE_TRAILERS,                // reading trailer lines after the last chunk
    PARSE_BODY_EOF                 // no length given: the body ends at close
} parse_state_t;

// One scheduled request: all requests are alike except for when they were due.
typedef struct {
    uint64_t intended_ns;          // when the open-loop schedule wanted it sent
    int resent;                    // times resent after a stale keep-alive close
} job_t;

typedef struct conn_t conn_t;

// One TCP connection to the target.
struct conn_t {
    int fd;                        // socket, non-blocking
    conn_state_t state;            // connecting, idle or busy
    size_t idle_index;             // position in the idle stack while CONN_IDLE
    uint64_t served;               // responses completed on this connection
    uint64_t opened_ns;            // when connect() was called
    uint64_t dispatched_ns;        // when the current request was put on it
    job_t job;                     // the request in progress while CONN_BUSY
    size_t written;                // request bytes written so far
    conn_t *prev;                  // neighbour in the busy or connecting list
    conn_t *next;                  // neighbour in the busy or connecting list
    parse_state_t parse;           // response parser state
    char *buf;                     // unparsed response bytes
    size_t buf_size;               // bytes held in buf
    size_t buf_cap;                // bytes allocated for buf
    size_t got;                    // response bytes received for the current request
    int status;                    // status code of the response being parsed
    uint64_t remaining;            // body or chunk bytes still expected
    bool close_after;              // server said Connection: close (or HTTP/1.0)
    char *capture;                 // 2xx body kept for --ids-file
    size_t capture_size;           // bytes held in capture
    size_t capture_cap;            // bytes allocated for capture
};

// An intrusive list of connections; the busy one is ordered by dispatch,
// which is nearly deadline order, so timeouts are found at its head.
typedef struct {
    conn_t *head;                  // oldest entry
    conn_t *tail;                  // newest entry
    size_t size;                   // entries
} conn_list_t;

// FIFO of requests waiting for a connection (retries go back to the front).
typedef struct {
    job_t *items;                  // ring buffer storage
    size_t cap;                    // ring capacity, a power of two
    size_t head;                   // index of the oldest request
    size_t size;                   // requests queued
} queue_t;

// Command line settings.
typedef struct {
    const char *url;               // --url as given
    char host [64];                // host part, 127.0.0.1 or localhost
    uint16_t port;                 // target port
    const char *path;              // request target, path plus query
    const char *method;            // --method (GET, or POST when a body is given)
    char *body;                    // --body or --body-file contents
    size_t body_size;              // body length in bytes
    bool body_given;               // a body option was used, even an empty one
    const char **headers;          // --header values, in order
    size_t headers_size;           // number of --header values
    double rate;                   // requests per second
    double duration_s;             // seconds of scheduling
    uint64_t timeout_ms;           // a request unanswered after this is a timeout
    size_t connections;            // initial pool size
    size_t max_connections;        // upper bound on open connections
    const char *json_path;         // --json summary file
    const char *ids_path;          // --ids-file, appended with ids from 2xx bodies
    bool ids_times;                // --ids-format times: each id line also gets its send time and latency
} options_t;

// Everything the run needs: settings, sockets, queue and counters.
typedef struct {
    options_t options;             // parsed command line
    struct sockaddr_in target;     // 127.0.0.1:port
    char *request;                 // the serialised request, shared by all sends
    size_t request_size;           // its length
    int epoll_fd;                  // the one event loop
    FILE *ids_file;                // open --ids-file, or NULL
    conn_t **idle;                 // stack of idle connections
    size_t idle_size;              // idle connections
    conn_list_t busy;              // connections carrying a request, oldest first
    conn_list_t connecting;        // connections whose connect() is in progress
    size_t open_size;              // connections open or connecting
    queue_t pending;               // requests due but not yet on a connection
    uint64_t t0_ns;                // schedule origin
    int64_t wall_offset_ns;        // CLOCK_REALTIME - CLOCK_MONOTONIC at t0 (for --ids-format times)
    double interval_ns;            // time between two intended sends
    uint64_t total;                // requests to schedule: rate x duration
    uint64_t scheduled;            // requests whose intended time has come
    uint64_t sent;                 // requests fully written to a socket
    uint64_t completed;            // responses fully received
    uint64_t status_counts [600];  // completed responses by status code
    uint64_t errors_connect;       // requests failed because no connection could be made
    uint64_t errors_io;            // requests failed by a reset or early close
    uint64_t errors_parse;         // requests failed by a malformed response
    uint64_t timeouts;             // requests not answered within --timeout-ms
    uint64_t retries;              // requests resent after a stale keep-alive close
    uint64_t connections_opened;   // connect() calls made
    uint64_t ids_written;          // lines written to --ids-file
    size_t max_busy;               // high-water mark of requests on the wire
    size_t max_pending;            // high-water mark of requests waiting for a connection
    size_t max_open;               // high-water mark of open connections
    uint64_t last_send_ns;         // when the last request was fully written
    uint64_t first_done_ns;        // first response completion
    uint64_t last_done_ns;         // last response completion
    uint64_t *latencies;           // completed latencies in ns, from the intended time
    size_t latencies_size;         // entries in use
    size_t latencies_cap;          // entries allocated
} loadgen_t;

static volatile sig_atomic_t s_interrupted = 0;  // set by SIGINT/SIGTERM: stop and report

// s_on_signal asks the loop to stop; the summary is still printed.
static void
s_on_signal (int signo)
{
    (void) signo;
    s_interrupted = 1;
}

// s_now_ns returns the monotonic clock in nanoseconds.
static uint64_t
s_now_ns (void)
{
    struct timespec ts;
    clock_gettime (CLOCK_MONOTONIC, &ts);
    return (uint64_t) ts.tv_sec * 1000000000ULL + (uint64_t) ts.tv_nsec;
}

// s_fail prints a one-line error and exits; for start-up problems only.
static void
s_fail (const char *format, const char *detail)
{
    fprintf (stderr, "loadgen: ");
    fprintf (stderr, format, detail);
    fprintf (stderr, "\n");
    exit (2);
}

// s_intended_ns returns when request number index is due.
static uint64_t
s_intended_ns (const loadgen_t *self, uint64_t index)
{
    // computed from the index, never accumulated, so the schedule cannot drift
    return self->t0_ns + (uint64_t) ((double) index * self->interval_ns);
}

// s_queue_grow doubles the ring, unrolling it; returns 0 or -1 when out of memory.
static int
s_queue_grow (queue_t *queue)
{
    size_t cap = queue->cap? queue->cap * 2: 4096;
    job_t *items = malloc (cap * sizeof (job_t));
    if (!items)
        return -1;
    for (size_t index = 0; index < queue->size; index++)
        items [index] = queue->items [(queue->head + index) & (queue->cap - 1)];
    free (queue->items);
    queue->items = items;
    queue->cap = cap;
    queue->head = 0;
    return 0;
}

// s_queue_push_back appends a request at the tail; returns 0 or -1.
static int
s_queue_push_back (queue_t *queue, job_t job)
{
    if (queue->size == queue->cap && s_queue_grow (queue))
        return -1;
    queue->items [(queue->head + queue->size++) & (queue->cap - 1)] = job;
    return 0;
}

// s_queue_push_front puts a request back at the head (it is the oldest); returns 0 or -1.
static int
s_queue_push_front (queue_t *queue, job_t job)
{
    if (queue->size == queue->cap && s_queue_grow (queue))
        return -1;
    queue->head = (queue->head + queue->cap - 1) & (queue->cap - 1);
    queue->items [queue->head] = job;
    queue->size++;
    return 0;
}

// s_queue_pop removes and returns the head; the queue must not be empty.
static job_t
s_queue_pop (queue_t *queue)
{
    job_t job = queue->items [queue->head];
    queue->head = (queue->head + 1) & (queue->cap - 1);
    queue->size--;
    return job;
}

// s_parse_double parses a whole positive number; returns false otherwise.
static bool
s_parse_double (const char *text, double *value)
{
    char *end = NULL;
    errno = 0;
    double parsed = strtod (text, &end);
    if (errno || end == text || *end || !(parsed > 0) || !isfinite (parsed))
        return false;
    *value = parsed;
    return true;
}

// s_read_file returns a malloc'd copy of a whole file and its size, or exits.
static char *
s_read_file (const char *path, size_t *size)
{
    FILE *file = fopen (path, "rb");
    if (!file)
        s_fail ("cannot open body file '%s'", path);
    size_t cap = 4096, used = 0;
    char *data = malloc (cap);
    while (data) {
        if (used == cap) {
            char *grown = realloc (data, cap * 2);
            if (!grown) {
                free (data);
                data = NULL;
                break;
            }
            data = grown;
            cap *= 2;
        }
        size_t got = fread (data + used, 1, cap - used, file);
        used += got;
        if (got == 0)
            break;
    }
    bool failed = !data || ferror (file);
    fclose (file);
    if (failed)
        s_fail ("cannot read body file '%s'", path);
    *size = used;
    return data;
}

// s_parse_url splits http://HOST:PORT/path and refuses any host but the
// loopback, so a typo cannot turn a benchmark into an attack on someone else.
static void
s_parse_url (options_t *options)
{
    const char *url = options->url;
    if (strncmp (url, "http://", 7) != 0)
        s_fail ("--url must start with http:// (got '%s'); https is not supported", url);
    const char *host = url + 7;
    const char *host_end = host + strcspn (host, ":/?#");
    size_t host_size = (size_t) (host_end - host);
    if (host_size >= sizeof options->host)
        s_fail ("refusing host in '%s': only 127.0.0.1 or localhost may be loaded", url);
    memcpy (options->host, host, host_size);
    options->host [host_size] = '\0';
    if (strcmp (options->host, "127.0.0.1") != 0 && strcasecmp (options->host, "localhost") != 0)
        s_fail ("refusing host '%s': only 127.0.0.1 or localhost may be loaded", options->host);
    const char *rest = host_end;
    options->port = 80;
    if (*rest == ':') {
        char *end = NULL;
        long port = strtol (rest + 1, &end, 10);
        if (end == rest + 1 || port < 1 || port > 65535 || (*end && *end != '/' && *end != '?'))
            s_fail ("bad port in --url '%s'", url);
        options->port = (uint16_t) port;
        rest = end;
    }
    if (*rest == '#')
        rest = "";
    options->path = *rest == '/'? rest: *rest == '?'? NULL: "/";
    if (!options->path) {
        // "http://h:p?x" means "/?x"
        char *path = NULL;
        if (asprintf (&path, "/%s", rest) < 0)
            s_fail ("%s", "out of memory");
        options->path = path;      // lives until exit
    }
    if (strpbrk (options->path, " \r\n"))
        s_fail ("--url path must not contain spaces or line breaks: '%s'", url);
}

// s_usage prints the command line help.
static void
s_usage (FILE *out)
{
    fprintf (out,
        "Usage: jobgate-loadgen --url http://127.0.0.1:PORT/path --rate R --duration S [options]\n"
        "\n"
        "Open-loop HTTP/1.1 load generator: request i is due at i/R seconds and its\n"
        "latency is measured from that intended time (no coordinated omission).\n"
        "  --url URL              target; the host must be 127.0.0.1 or localhost\n"
        "  --rate R               requests per second (required)\n"
        "  --duration S           seconds of sending (required)\n"
        "  --method M             HTTP method (default GET, or POST with a body)\n"
        "  --body STRING          request body\n"
        "  --body-file FILE       request body read from FILE\n"
        "  --header 'K: V'        extra request header (repeatable)\n"
        "  --timeout-ms N         a request unanswered after N ms is a timeout (default 30000)\n"
        "  --connections N        initial keep-alive pool (default 256)\n"
        "  --max-connections N    open more connections up to N when all are busy (default 10000)\n"
        "  --json FILE            write the summary as JSON to FILE\n"
        "  --ids-file FILE        append the \"id\" of each 2xx JSON response body, one per line\n"
        "  --ids-format F         plain (default: the id alone) or times: \"ID SENT_MS LATENCY_MS\",\n"
        "                         SENT_MS the intended send time in wall-clock ms since the epoch\n"
        "                         and LATENCY_MS the response latency from it\n"
        "  --help                 this text\n"
        "Exit status: 0 when the run finished (whatever the responses), 2 on bad usage.\n");
}

// s_parse_count parses a positive integer option or exits.
static uint64_t
s_parse_count (const char *name, const char *text)
{
    char *end = NULL;
    errno = 0;
    unsigned long long value = strtoull (text, &end, 10);
    if (errno || end == text || *end || value == 0 || text [0] == '-')
        s_fail ("bad value for %s", name);
    return value;
}

// s_parse_options fills options from argv or exits with a clear message.
static void
s_parse_options (options_t *options, int argc, char *argv [])
{
    *options = (options_t) { .timeout_ms = 30000, .connections = 256, .max_connections = 10000 };
    options->headers = calloc ((size_t) argc, sizeof (char *));
    if (!options->headers)
        s_fail ("%s", "out of memory");
    const char *body_file = NULL;
    for (int index = 1; index < argc; index++) {
        const char *arg = argv [index];
        if (strcmp (arg, "--help") == 0 || strcmp (arg, "-h") == 0) {
            s_usage (stdout);
            exit (0);
        }
        if (index + 1 >= argc || strncmp (arg, "--", 2) != 0) {
            fprintf (stderr, "loadgen: unknown or incomplete option '%s' (try --help)\n", arg);
            exit (2);
        }
        const char *value = argv [++index];
        if (strcmp (arg, "--url") == 0)
            options->url = value;
        else
        if (strcmp (arg, "--method") == 0)
            options->method = value;
        else
        if (strcmp (arg, "--body") == 0) {
            free (options->body);
            options->body = strdup (value);
            options->body_size = strlen (value);
            options->body_given = true;
        }
        else
        if (strcmp (arg, "--body-file") == 0)
            body_file = value;
        else
        if (strcmp (arg, "--header") == 0) {
            if (!strchr (value, ':') || strpbrk (value, "\r\n"))
                s_fail ("--header wants 'Name: value' on one line, got '%s'", value);
            options->headers [options->headers_size++] = value;
        }
        else
        if (strcmp (arg, "--rate") == 0) {
            if (!s_parse_double (value, &options->rate))
                s_fail ("bad value for --rate: '%s'", value);
        }
        else
        if (strcmp (arg, "--duration") == 0) {
            if (!s_parse_double (value, &options->duration_s))
                s_fail ("bad value for --duration: '%s'", value);
        }
        else
        if (strcmp (arg, "--timeout-ms") == 0)
            options->timeout_ms = s_parse_count ("--timeout-ms", value);
        else
        if (strcmp (arg, "--connections") == 0)
            options->connections = (size_t) s_parse_count ("--connections", value);
        else
        if (strcmp (arg, "--max-connections") == 0)
            options->max_connections = (size_t) s_parse_count ("--max-connections", value);
        else
        if (strcmp (arg, "--json") == 0)
            options->json_path = value;
        else
        if (strcmp (arg, "--ids-file") == 0)
            options->ids_path = value;
        else
        if (strcmp (arg, "--ids-format") == 0) {
            if (strcmp (value, "plain") != 0 && strcmp (value, "times") != 0)
                s_fail ("--ids-format wants plain or times, got '%s'", value);
            options->ids_times = strcmp (value, "times") == 0;
        }
        else {
            fprintf (stderr, "loadgen: unknown option '%s' (try --help)\n", arg);
            exit (2);
        }
    }
    if (!options->url || options->rate <= 0 || options->duration_s <= 0)
        s_fail ("%s", "--url, --rate and --duration are required (try --help)");
    if (options->rate > 1e6 || options->duration_s > 86400 || options->rate * options->duration_s > 5e7)
        s_fail ("%s", "--rate x --duration is too large (at most 50 million requests)");
    if (body_file) {
        free (options->body);
        options->body = s_read_file (body_file, &options->body_size);
        options->body_given = true;
    }
    if (!options->method)
        options->method = options->body_given? "POST": "GET";
    if (options->max_connections < options->connections)
        options->max_connections = options->connections;
    s_parse_url (options);
}

// s_build_request serialises the one request every send reuses.
static void
s_build_request (loadgen_t *self)
{
    options_t *options = &self->options;
    bool has_host = false, has_length = false;
    size_t size = strlen (options->method) + strlen (options->path) + 256 + options->body_size;
    for (size_t index = 0; index < options->headers_size; index++) {
        size += strlen (options->headers [index]) + 2;
        has_host = has_host || strncasecmp (options->headers [index], "host:", 5) == 0;
        has_length = has_length || strncasecmp (options->headers [index], "content-length:", 15) == 0;
    }
    char *request = malloc (size);
    if (!request)
        s_fail ("%s", "out of memory");
    size_t used = (size_t) sprintf (request, "%s %s HTTP/1.1\r\n", options->method, options->path);
    if (!has_host)
        used += (size_t) sprintf (request + used, "Host: %s:%u\r\n", options->host, options->port);
    used += (size_t) sprintf (request + used, "User-Agent: jobgate-loadgen\r\n");
    for (size_t index = 0; index < options->headers_size; index++)
        used += (size_t) sprintf (request + used, "%s\r\n", options->headers [index]);
    bool wants_length = options->body_given
                     || strcmp (options->method, "POST") == 0
                     || strcmp (options->method, "PUT") == 0
                     || strcmp (options->method, "PATCH") == 0;
    if (wants_length && !has_length)
        used += (size_t) sprintf (request + used, "Content-Length: %zu\r\n", options->body_size);
    used += (size_t) sprintf (request + used, "\r\n");
    if (options->body_size)
        memcpy (request + used, options->body, options->body_size);
    self->request = request;
    self->request_size = used + options->body_size;
}

// s_raise_fd_limit lifts the soft open-files limit to the hard one, because
// --max-connections sockets need as many descriptors.
static void
s_raise_fd_limit (loadgen_t *self)
{
    struct rlimit limit;
    if (getrlimit (RLIMIT_NOFILE, &limit) == 0) {
        limit.rlim_cur = limit.rlim_max == RLIM_INFINITY? 1048576: limit.rlim_max;
        setrlimit (RLIMIT_NOFILE, &limit);
        getrlimit (RLIMIT_NOFILE, &limit);
        if (limit.rlim_cur < self->options.max_connections + 32) {
            size_t fit = limit.rlim_cur > 64? (size_t) limit.rlim_cur - 32: 32;
            fprintf (stderr, "loadgen: warning: open-files limit %zu, --max-connections lowered to %zu\n",
                     (size_t) limit.rlim_cur, fit);
            self->options.max_connections = fit;
            if (self->options.connections > fit)
                self->options.connections = fit;
        }
    }
}

// s_record_latency keeps one completed latency; a failed allocation only
// loses the sample, never the run.
static void
s_record_latency (loadgen_t *self, uint64_t latency_ns)
{
    if (self->latencies_size == self->latencies_cap) {
        size_t cap = self->latencies_cap? self->latencies_cap * 2: 65536;
        uint64_t *grown = realloc (self->latencies, cap * sizeof (uint64_t));
        if (!grown)
            return;
        self->latencies = grown;
        self->latencies_cap = cap;
    }
    self->latencies [self->latencies_size++] = latency_ns;
}

// s_idle_push makes a connection available for the next request.
static void
s_idle_push (loadgen_t *self, conn_t *conn)
{
    conn->state = CONN_IDLE;
    conn->idle_index = self->idle_size;
    self->idle [self->idle_size++] = conn;
}

// s_idle_remove takes a given connection out of the idle stack.
static void
s_idle_remove (loadgen_t *self, conn_t *conn)
{
    conn_t *last = self->idle [--self->idle_size];
    self->idle [conn->idle_index] = last;
    last->idle_index = conn->idle_index;
}

// s_list_append adds a connection at the tail of a list.
static void
s_list_append (conn_list_t *list, conn_t *conn)
{
    conn->prev = list->tail;
    conn->next = NULL;
    if (list->tail)
        list->tail->next = conn;
    else
        list->head = conn;
    list->tail = conn;
    list->size++;
}

// s_list_unlink takes a connection out of the list it is in.
static void
s_list_unlink (conn_list_t *list, conn_t *conn)
{
    if (conn->prev)
        conn->prev->next = conn->next;
    else
        list->head = conn->next;
    if (conn->next)
        conn->next->prev = conn->prev;
    else
        list->tail = conn->prev;
    conn->prev = conn->next = NULL;
    list->size--;
}

// s_conn_close closes and frees a connection in any state.
static void
s_conn_close (loadgen_t *self, conn_t *conn)
{
    if (conn->state == CONN_IDLE)
        s_idle_remove (self, conn);
    else
    if (conn->state == CONN_BUSY)
        s_list_unlink (&self->busy, conn);
    else
        s_list_unlink (&self->connecting, conn);
    self->open_size--;
    close (conn->fd);              // also removes it from the epoll set
    free (conn->buf);
    free (conn->capture);
    free (conn);
}

// s_conn_open starts a non-blocking connect; returns 0, or -1 if no socket
// could even be created (the caller counts a connect error).
static int
s_conn_open (loadgen_t *self)
{
    conn_t *conn = calloc (1, sizeof (conn_t));
    if (!conn)
        return -1;
    conn->fd = socket (AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (conn->fd < 0) {
        free (conn);
        return -1;
    }
    int one = 1;
    setsockopt (conn->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    int rc = connect (conn->fd, (struct sockaddr *) &self->target, sizeof self->target);
    struct epoll_event event = { .events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET, .data.ptr = conn };
    if ((rc && errno != EINPROGRESS) || epoll_ctl (self->epoll_fd, EPOLL_CTL_ADD, conn->fd, &event)) {
        close (conn->fd);
        free (conn);
        return -1;
    }
    conn->state = CONN_CONNECTING;
    conn->opened_ns = s_now_ns ();
    s_list_append (&self->connecting, conn);
    self->open_size++;
    self->connections_opened++;
    if (self->open_size > self->max_open)
        self->max_open = self->open_size;
    return 0;
}

// s_fail_one_pending charges a connect failure to the oldest waiting request,
// so a dead target drains the queue instead of spinning on connect().
static void
s_fail_one_pending (loadgen_t *self)
{
    if (self->pending.size > 0) {
        s_queue_pop (&self->pending);
        self->errors_connect++;
    }
}

// s_write_ids appends the top-level "id" of a JSON body to --ids-file; with
// --ids-format times also the request's intended send time (wall clock, ms)
// and its latency (ms), so a job's finish can be set against when it was due.
static void
s_write_ids (loadgen_t *self, const char *body, size_t size, uint64_t intended_ns, uint64_t latency_ns)
{
    json_t *root = json_loadb (body, size, 0, NULL);
    json_t *id = json_object_get (root, "id");
    char times [64] = "";
    if (self->options.ids_times)
        snprintf (times, sizeof times, " %.3f %.3f",
                  (double) ((int64_t) intended_ns + self->wall_offset_ns) / 1e6, (double) latency_ns / 1e6);
    if (json_is_string (id))
        fprintf (self->ids_file, "%s%s\n", json_string_value (id), times);
    else
    if (json_is_integer (id))
        fprintf (self->ids_file, "%" JSON_INTEGER_FORMAT "%s\n", json_integer_value (id), times);
    if (json_is_string (id) || json_is_integer (id))
        self->ids_written++;
    json_decref (root);
}

// s_request_done records a completed response and frees or recycles the connection.
static void
s_request_done (loadgen_t *self, conn_t *conn)
{
    uint64_t now = s_now_ns ();
    self->completed++;
    if (conn->status >= 100 && conn->status < 600)
        self->status_counts [conn->status]++;
    s_record_latency (self, now - conn->job.intended_ns);
    if (!self->first_done_ns)
        self->first_done_ns = now;
    self->last_done_ns = now;
    if (self->ids_file && conn->status >= 200 && conn->status < 300 && conn->capture_size)
        s_write_ids (self, conn->capture, conn->capture_size, conn->job.intended_ns, now - conn->job.intended_ns);
    conn->capture_size = 0;
    conn->served++;
    // leftover bytes would be an answer to a request we never sent
    if (conn->close_after || conn->buf_size > 0) {
        s_conn_close (self, conn);
        return;
    }
    s_list_unlink (&self->busy, conn);
    s_idle_push (self, conn);
}

// s_request_failed handles a connection error while a request was in
// progress: a keep-alive connection the server closed before answering gets
// its request resent (what every HTTP client does, up to LOADGEN_STALE_RESENDS
// times); otherwise it counts. error: the failure's errno, 0 when the server
// closed, LOADGEN_PARSE_ERROR when its answer was not HTTP.
static void
s_request_failed (loadgen_t *self, conn_t *conn, int error)
{
    bool parse_error = error == LOADGEN_PARSE_ERROR;
    uint64_t age_ns = conn->dispatched_ns - conn->opened_ns;
    unsigned long long served = (unsigned long long) conn->served;
    size_t got = conn->got;
    job_t job = conn->job;
    // A pool connection opened well before this request (the server may
    // close one that sent nothing for a while, as nginx does) is as stale
    // as a used one.
    bool pooled = served > 0 || age_ns > LOADGEN_POOLED_NS;
    bool stale = !parse_error && got == 0 && pooled && job.resent < LOADGEN_STALE_RESENDS;
    s_conn_close (self, conn);
    if (stale) {
        job.resent++;
        self->retries++;
        if (s_queue_push_front (&self->pending, job) == 0)
            return;
    }
    if (parse_error)
        self->errors_parse++;
    else
        self->errors_io++;
    // Say why, for the first few: a failure is the server's or ours.
    if (self->errors_io + self->errors_parse <= 5)
        fprintf (stderr,
                 "loadgen: request failed (%s) on a connection opened %.1f ms before it, "
                 "%llu answered on it before, %zu bytes of this answer read, resent %d times: %s\n",
                 parse_error ? "parse" : "io",
                 (double) age_ns / 1e6, served, got,
                 job.resent, parse_error ? "an answer that is not HTTP"
                             : error ? strerror (error) : "closed by the server");
}

// s_capture keeps body bytes of a 2xx response for --ids-file.
static void
s_capture (loadgen_t *self, conn_t *conn, const char *data, size_t size)
{
    if (size == 0 || !self->ids_file || conn->status < 200 || conn->status >= 300)
        return;
    if (conn->capture_size + size > LOADGEN_MAX_CAPTURE)
        return;                    // an id lives in a small document
    if (conn->capture_size + size > conn->capture_cap) {
        size_t cap = conn->capture_cap? conn->capture_cap: 4096;
        while (cap < conn->capture_size + size)
            cap *= 2;
        char *grown = realloc (conn->capture, cap);
        if (!grown)
            return;
        conn->capture = grown;
        conn->capture_cap = cap;
    }
    memcpy (conn->capture + conn->capture_size, data, size);
    conn->capture_size += size;
}

// s_find_line returns the offset just past the next CRLF at or after from, or 0.
static size_t
s_find_line (const conn_t *conn, size_t from)
{
    for (size_t index = from; index + 1 < conn->buf_size; index++)
        if (conn->buf [index] == '\r' && conn->buf [index + 1] == '\n')
            return index + 2;
    return 0;
}

// s_parse_head parses the status line and headers in buf [0, end); returns 0
// or -1 on a malformed head.
static int
s_parse_head (loadgen_t *self, conn_t *conn, size_t end)
{
    char *head = conn->buf;
    if (end < 12 || strncmp (head, "HTTP/1.", 7) != 0 || head [8] != ' ')
        return -1;
    int status = 0;
    for (int index = 9; index < 12; index++) {
        if (head [index] < '0' || head [index] > '9')
            return -1;
        status = status * 10 + (head [index] - '0');
    }
    if (status < 100 || status > 599)
        return -1;
    conn->status = status;
    conn->close_after = head [7] == '0';   // HTTP/1.0 closes unless told otherwise
    bool chunked = false, has_length = false;
    uint64_t length = 0;
    size_t line = s_find_line (conn, 0);
    while (line && line < end - 2) {
        size_t next = s_find_line (conn, line);
        char *name = head + line;
        size_t line_size = next - line - 2;
        char *colon = memchr (name, ':', line_size);
        if (colon) {
            size_t name_size = (size_t) (colon - name);
            char *value = colon + 1;
            char *value_end = head + next - 2;
            while (value < value_end && (*value == ' ' || *value == '\t'))
                value++;
            size_t value_size = (size_t) (value_end - value);
            if (name_size == 14 && strncasecmp (name, "content-length", 14) == 0) {
                length = 0;
                if (value_size == 0)
                    return -1;
                for (size_t index = 0; index < value_size; index++) {
                    if (value [index] < '0' || value [index] > '9' || length > UINT64_MAX / 20)
                        return -1;
                    length = length * 10 + (uint64_t) (value [index] - '0');
                }
                has_length = true;
            }
            else
            if (name_size == 17 && strncasecmp (name, "transfer-encoding", 17) == 0)
                chunked = memmem (value, value_size, "chunked", 7) != NULL;
            else
            if (name_size == 10 && strncasecmp (name, "connection", 10) == 0) {
                if (value_size >= 5 && strncasecmp (value, "close", 5) == 0)
                    conn->close_after = true;
                else
                if (value_size >= 10 && strncasecmp (value, "keep-alive", 10) == 0)
                    conn->close_after = false;
            }
        }
        line = next;
    }
    bool no_body = strcmp (self->options.method, "HEAD") == 0
                || status == 204 || status == 304 || status < 200;
    if (no_body) {
        conn->parse = PARSE_BODY_LENGTH;
        conn->remaining = 0;
    }
    else
    if (chunked)
        conn->parse = PARSE_CHUNK_SIZE;
    else
    if (has_length) {
        conn->parse = PARSE_BODY_LENGTH;
        conn->remaining = length;
    }
    else {
        conn->parse = PARSE_BODY_EOF;
        conn->close_after = true;
    }
    return 0;
}

// s_consume drops the first size bytes of the connection buffer.
static void
s_consume (conn_t *conn, size_t size)
{
    memmove (conn->buf, conn->buf + size, conn->buf_size - size);
    conn->buf_size -= size;
}

// s_parse advances the response parser over the buffered bytes; returns 1
// when the response is complete, 0 when more bytes are needed, -1 on error.
static int
s_parse (loadgen_t *self, conn_t *conn)
{
    while (true) {
        switch (conn->parse) {
            case PARSE_HEAD: {
                size_t end = 0;
                for (size_t index = 0; index + 3 < conn->buf_size; index++)
                    if (memcmp (conn->buf + index, "\r\n\r\n", 4) == 0) {
                        end = index + 4;
                        break;
                    }
                if (!end)
                    return conn->buf_size > LOADGEN_MAX_HEADER? -1: 0;
                if (s_parse_head (self, conn, end))
                    return -1;
                s_consume (conn, end);
                if (conn->status < 200 && conn->status != 101) {
                    conn->parse = PARSE_HEAD;   // 100 Continue and friends: the real answer follows
                    continue;
                }
                break;
            }
            case PARSE_BODY_LENGTH: {
                size_t take = conn->buf_size < conn->remaining? conn->buf_size: (size_t) conn->remaining;
                s_capture (self, conn, conn->buf, take);
                s_consume (conn, take);
                conn->remaining -= take;
                return conn->remaining == 0? 1: 0;
            }
            case PARSE_CHUNK_SIZE: {
                size_t next = s_find_line (conn, 0);
                if (!next)
                    return conn->buf_size > 1024? -1: 0;
                uint64_t size = 0;
                size_t index = 0;
                for (; index < next - 2; index++) {
                    char digit = conn->buf [index];
                    int value = digit >= '0' && digit <= '9'? digit - '0'
                              : digit >= 'a' && digit <= 'f'? digit - 'a' + 10
                              : digit >= 'A' && digit <= 'F'? digit - 'A' + 10: -1;
                    if (value < 0)
                        break;
                    if (size > UINT64_MAX / 32)
                        return -1;
                    size = size * 16 + (uint64_t) value;
                }
                if (index == 0)
                    return -1;     // no hex digits at all
                s_consume (conn, next);
                conn->remaining = size;
                conn->parse = size? PARSE_CHUNK_DATA: PARSE_TRAILERS;
                break;
            }
            case PARSE_CHUNK_DATA: {
                size_t take = conn->buf_size < conn->remaining? conn->buf_size: (size_t) conn->remaining;
                s_capture (self, conn, conn->buf, take);
                s_consume (conn, take);
                conn->remaining -= take;
                if (conn->remaining)
                    return 0;
                conn->parse = PARSE_CHUNK_END;
                break;
            }
            case PARSE_CHUNK_END:
                if (conn->buf_size < 2)
                    return 0;
                if (conn->buf [0] != '\r' || conn->buf [1] != '\n')
                    return -1;
                s_consume (conn, 2);
                conn->parse = PARSE_CHUNK_SIZE;
                break;
            case PARSE_TRAILERS: {
                size_t next = s_find_line (conn, 0);
                if (!next)
                    return conn->buf_size > LOADGEN_MAX_HEADER? -1: 0;
                s_consume (conn, next);
                if (next == 2)
                    return 1;      // the empty line ends the message
                break;
            }
            case PARSE_BODY_EOF:
                s_capture (self, conn, conn->buf, conn->buf_size);
                s_consume (conn, conn->buf_size);
                return 0;          // complete only when the server closes
        }
    }
}

// s_conn_write writes what is left of the request; returns 0 (done or
// waiting for EPOLLOUT) or -1 on a socket error.
static int
s_conn_write (loadgen_t *self, conn_t *conn)
{
    while (conn->written < self->request_size) {
        ssize_t rc = send (conn->fd, self->request + conn->written,
                           self->request_size - conn->written, MSG_NOSIGNAL);
        if (rc < 0 && errno == EINTR)
            continue;
        if (rc < 0)
            return (errno == EAGAIN || errno == EWOULDBLOCK)? 0: -1;
        conn->written += (size_t) rc;
        if (conn->written == self->request_size) {
            self->sent++;
            self->last_send_ns = s_now_ns ();
        }
    }
    return 0;
}

// s_conn_read reads everything available (edge-triggered) and parses it.
static void
s_conn_read (loadgen_t *self, conn_t *conn)
{
    while (true) {
        if (conn->buf_cap - conn->buf_size < LOADGEN_READ_CHUNK) {
            size_t cap = conn->buf_cap? conn->buf_cap * 2: LOADGEN_READ_CHUNK * 2;
            char *grown = realloc (conn->buf, cap);
            if (!grown) {
                s_request_failed (self, conn, ENOMEM);
                return;
            }
            conn->buf = grown;
            conn->buf_cap = cap;
        }
        ssize_t rc = recv (conn->fd, conn->buf + conn->buf_size, conn->buf_cap - conn->buf_size, 0);
        if (rc < 0 && errno == EINTR)
            continue;
        if (rc < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        if (rc <= 0) {
            // the server closed: the end of a read-until-close body, or a failure
            if (conn->state == CONN_BUSY && conn->parse == PARSE_BODY_EOF && rc == 0) {
                conn->close_after = true;
                s_request_done (self, conn);
            }
            else
            if (conn->state == CONN_BUSY)
                s_request_failed (self, conn, rc == 0 ? 0 : errno);
            else
                s_conn_close (self, conn);
            return;
        }
        if (conn->state != CONN_BUSY) {
            // bytes nobody asked for: the connection is no longer trustworthy
            s_conn_close (self, conn);
            return;
        }
        conn->buf_size += (size_t) rc;
        conn->got += (size_t) rc;
        int parsed = s_parse (self, conn);
        if (parsed < 0) {
            s_request_failed (self, conn, LOADGEN_PARSE_ERROR);
            return;
        }
        if (parsed > 0) {
            s_request_done (self, conn);
            return;                // an idle connection has nothing more to read
        }
    }
}

// s_idle_alive drops the idle connections on top of the pool that the
// server has closed, as libcurl checks a connection before reusing it: a
// server that closes many silent connections at once (the gateway's
// deadline for them) would otherwise see a request sent, and resent, onto
// closed ones before their close was read. True when one is left.
static bool
s_idle_alive (loadgen_t *self)
{
    while (self->idle_size > 0) {
        conn_t *conn = self->idle [self->idle_size - 1];
        char byte;
        ssize_t rc = recv (conn->fd, &byte, 1, MSG_PEEK | MSG_DONTWAIT);
        if (rc < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
            return true;
        // closed (0), reset (-1), or bytes nobody asked for: not reusable
        s_conn_close (self, conn);
    }
    return false;
}

// s_dispatch puts one request on an idle connection.
static void
s_dispatch (loadgen_t *self, job_t job)
{
    conn_t *conn = self->idle [--self->idle_size];
    conn->state = CONN_BUSY;
    conn->job = job;
    conn->written = 0;
    conn->dispatched_ns = s_now_ns ();
    conn->got = 0;
    conn->buf_size = 0;
    conn->capture_size = 0;
    conn->parse = PARSE_HEAD;
    conn->status = 0;
    conn->close_after = false;
    s_list_append (&self->busy, conn);
    if (self->busy.size > self->max_busy)
        self->max_busy = self->busy.size;
    if (s_conn_write (self, conn))
        s_request_failed (self, conn, errno);
}

// s_handle_event reacts to epoll readiness on one connection.
static void
s_handle_event (loadgen_t *self, conn_t *conn, uint32_t events)
{
    if (conn->state == CONN_CONNECTING) {
        int error = 0;
        socklen_t size = sizeof error;
        if (getsockopt (conn->fd, SOL_SOCKET, SO_ERROR, &error, &size) || error) {
            s_conn_close (self, conn);
            s_fail_one_pending (self);
            return;
        }
        if (!(events & EPOLLOUT))
            return;                // not connected yet
        s_list_unlink (&self->connecting, conn);
        s_idle_push (self, conn);
        if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))
            s_conn_read (self, conn);
        return;
    }
    if (conn->state == CONN_BUSY && (events & EPOLLOUT) && conn->written < self->request_size) {
        if (s_conn_write (self, conn)) {
            s_request_failed (self, conn, errno);
            return;
        }
    }
    if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))
        s_conn_read (self, conn);
}

// s_expire counts as timeouts the waiting and on-the-wire requests whose
// deadline has passed; a timed-out connection is closed because its late
// answer would otherwise be read as the next request's.
static void
s_expire (loadgen_t *self, uint64_t now)
{
    uint64_t timeout_ns = self->options.timeout_ms * 1000000ULL;
    while (self->pending.size > 0
       &&  self->pending.items [self->pending.head].intended_ns + timeout_ns <= now) {
        s_queue_pop (&self->pending);
        self->timeouts++;
    }
    while (self->busy.head && self->busy.head->job.intended_ns + timeout_ns <= now) {
        s_conn_close (self, self->busy.head);
        self->timeouts++;
    }
}

// s_schedule_and_dispatch moves due requests into the queue, hands queued
// requests to idle connections and opens more connections when they run out.
static void
s_schedule_and_dispatch (loadgen_t *self, uint64_t now)
{
    while (self->scheduled < self->total && s_intended_ns (self, self->scheduled) <= now) {
        job_t job = { .intended_ns = s_intended_ns (self, self->scheduled), .resent = 0 };
        if (s_queue_push_back (&self->pending, job))
            break;                 // out of memory: try again on the next turn
        self->scheduled++;
    }
    while (self->pending.size > 0 && s_idle_alive (self))
        s_dispatch (self, s_queue_pop (&self->pending));
    if (self->pending.size > self->max_pending)
        self->max_pending = self->pending.size;
    // every waiting request not covered by a connect in progress gets a new connection
    while (self->pending.size > self->connecting.size && self->open_size < self->options.max_connections) {
        if (s_conn_open (self)) {
            s_fail_one_pending (self);
            break;
        }
    }
}

// s_wait_ns returns how long the loop may sleep: until the next intended
// send or the next deadline.
static uint64_t
s_wait_ns (const loadgen_t *self, uint64_t now, uint64_t hard_stop_ns)
{
    uint64_t timeout_ns = self->options.timeout_ms * 1000000ULL;
    uint64_t next = hard_stop_ns;
    if (self->scheduled < self->total && s_intended_ns (self, self->scheduled) < next)
        next = s_intended_ns (self, self->scheduled);
    if (self->pending.size > 0 && self->pending.items [self->pending.head].intended_ns + timeout_ns < next)
        next = self->pending.items [self->pending.head].intended_ns + timeout_ns;
    if (self->busy.head && self->busy.head->job.intended_ns + timeout_ns < next)
        next = self->busy.head->job.intended_ns + timeout_ns;
    uint64_t wait = next <= now? 0: next - now;
    return wait > LOADGEN_MAX_WAIT_NS? LOADGEN_MAX_WAIT_NS: wait;
}

// s_poll waits at most wait_ns for socket events and handles them. The wait
// is nanosecond-precise where the kernel has epoll_pwait2 (5.11+): with
// millisecond timeouts every send would be up to 1 ms late, which an
// open-loop tool faithfully adds to sub-millisecond latencies.
static void
s_poll (loadgen_t *self, uint64_t wait_ns)
{
    static struct epoll_event events [LOADGEN_EVENTS];
    static bool no_pwait2 = false;
    int count = -1;
    if (!no_pwait2) {
        struct timespec timeout = { .tv_sec = (time_t) (wait_ns / 1000000000ULL),
                                    .tv_nsec = (long) (wait_ns % 1000000000ULL) };
        count = epoll_pwait2 (self->epoll_fd, events, LOADGEN_EVENTS, &timeout, NULL);
        no_pwait2 = count < 0 && errno == ENOSYS;
    }
    if (no_pwait2)
        // rounded up: a late wake is measured, an early one would spin
        count = epoll_wait (self->epoll_fd, events, LOADGEN_EVENTS, (int) ((wait_ns + 999999) / 1000000));
    for (int index = 0; index < count; index++)
        s_handle_event (self, events [index].data.ptr, events [index].events);
}

// s_open_pool opens the initial connections and waits (bounded) for them,
// so the schedule does not start with every request queued behind a handshake.
static void
s_open_pool (loadgen_t *self)
{
    for (size_t index = 0; index < self->options.connections; index++)
        if (s_conn_open (self))
            break;
    uint64_t give_up = s_now_ns () + LOADGEN_CONNECT_WAIT_NS;
    while (self->connecting.size > 0 && s_now_ns () < give_up && !s_interrupted)
        s_poll (self, 10000000ULL);
    if (self->idle_size == 0)
        fprintf (stderr, "loadgen: warning: no connection to %s:%u could be opened; "
                 "every request will fail\n", self->options.host, self->options.port);
}

// s_run drives the whole schedule; it returns after every request has an
// outcome, and never later than duration + timeout (+1 s of slack).
static void
s_run (loadgen_t *self)
{
    s_open_pool (self);
    struct timespec wall;
    clock_gettime (CLOCK_REALTIME, &wall);
    self->t0_ns = s_now_ns ();
    self->wall_offset_ns = (int64_t) wall.tv_sec * 1000000000LL + (int64_t) wall.tv_nsec - (int64_t) self->t0_ns;
    uint64_t hard_stop_ns = self->t0_ns + (uint64_t) (self->options.duration_s * 1e9)
                          + self->options.timeout_ms * 1000000ULL + 1000000000ULL;
    while (!s_interrupted) {
        uint64_t now = s_now_ns ();
        s_expire (self, now);
        s_schedule_and_dispatch (self, now);
        if (self->scheduled == self->total && self->pending.size == 0 && self->busy.size == 0)
            break;
        if (now >= hard_stop_ns)
            break;
        s_poll (self, s_wait_ns (self, now, hard_stop_ns));
    }
}

// s_compare_u64 orders latencies for qsort.
static int
s_compare_u64 (const void *left, const void *right)
{
    uint64_t a = *(const uint64_t *) left, b = *(const uint64_t *) right;
    return a < b? -1: a > b;
}

// s_percentile_ms returns the nearest-rank percentile of the sorted latencies in ms.
static double
s_percentile_ms (const loadgen_t *self, double percent)
{
    if (self->latencies_size == 0)
        return 0;
    size_t rank = (size_t) ceil (percent / 100.0 * (double) self->latencies_size);
    if (rank < 1)
        rank = 1;
    if (rank > self->latencies_size)
        rank = self->latencies_size;
    return (double) self->latencies [rank - 1] / 1e6;
}

// s_report prints the human summary and writes the JSON one; returns 0 or
// -1 when the JSON file cannot be written.
static int
s_report (loadgen_t *self)
{
    if (self->latencies_size > 0)
        qsort (self->latencies, self->latencies_size, sizeof (uint64_t), s_compare_u64);
    double sum_ms = 0;
    for (size_t index = 0; index < self->latencies_size; index++)
        sum_ms += (double) self->latencies [index] / 1e6;
    double mean_ms = self->latencies_size? sum_ms / (double) self->latencies_size: 0;
    // the open-loop rate actually achieved: sends over the time they took
    double send_window_s = (double) (self->last_send_ns > self->t0_ns? self->last_send_ns - self->t0_ns: 0) / 1e9;
    if (send_window_s < self->options.duration_s)
        send_window_s = self->options.duration_s;
    double achieved_rate = (double) self->sent / send_window_s;
    double done_window_s = (double) (self->last_done_ns - self->first_done_ns) / 1e9;
    double throughput = self->completed > 1 && done_window_s > 0
                      ? (double) (self->completed - 1) / done_window_s: 0;
    uint64_t unfinished = self->total - (self->completed + self->errors_connect + self->errors_io
                                       + self->errors_parse + self->timeouts);
    double percents [] = { 50, 90, 99, 99.9 };
    const char *names [] = { "p50", "p90", "p99", "p99.9" };
    double min_ms = self->latencies_size? (double) self->latencies [0] / 1e6: 0;
    double max_ms = self->latencies_size? (double) self->latencies [self->latencies_size - 1] / 1e6: 0;

    printf ("target        %s %s (rate %.1f/s for %.1f s, timeout %" PRIu64 " ms)\n",
            self->options.method, self->options.url, self->options.rate,
            self->options.duration_s, self->options.timeout_ms);
    printf ("requests      scheduled %" PRIu64 ", sent %" PRIu64 ", completed %" PRIu64 "%s\n",
            self->total, self->sent, self->completed, s_interrupted? " (interrupted)": "");
    printf ("status        ");
    for (int status = 0; status < 600; status++)
        if (self->status_counts [status])
            printf ("%d: %" PRIu64 "  ", status, self->status_counts [status]);
    printf ("\n");
    printf ("errors        connect %" PRIu64 ", io %" PRIu64 ", parse %" PRIu64
            ", timeouts %" PRIu64 ", unfinished %" PRIu64 " (retried %" PRIu64 ")\n",
            self->errors_connect, self->errors_io, self->errors_parse, self->timeouts,
            unfinished, self->retries);
    printf ("rate          achieved send rate %.1f/s, completion throughput %.1f/s\n",
            achieved_rate, throughput);
    printf ("concurrency   max in flight %zu, max waiting for a connection %zu, "
            "connections opened %" PRIu64 " (max open %zu)\n",
            self->max_busy, self->max_pending, self->connections_opened, self->max_open);
    printf ("latency (ms)  min %.2f", min_ms);
    for (size_t index = 0; index < 4; index++)
        printf ("  %s %.2f", names [index], s_percentile_ms (self, percents [index]));
    printf ("  max %.2f  mean %.2f\n", max_ms, mean_ms);
    if (self->ids_file)
        printf ("ids           %" PRIu64 " written to %s\n", self->ids_written, self->options.ids_path);

    if (!self->options.json_path)
        return 0;
    json_t *statuses = json_object ();
    for (int status = 0; status < 600 && statuses; status++)
        if (self->status_counts [status]) {
            char key [8];
            snprintf (key, sizeof key, "%d", status);
            json_object_set_new (statuses, key, json_integer ((json_int_t) self->status_counts [status]));
        }
    json_t *latency = json_pack ("{s:f, s:f, s:f, s:f, s:f, s:f, s:f}",
        "min", min_ms, "p50", s_percentile_ms (self, 50), "p90", s_percentile_ms (self, 90),
        "p99", s_percentile_ms (self, 99), "p99_9", s_percentile_ms (self, 99.9),
        "max", max_ms, "mean", mean_ms);
    json_t *errors = json_pack ("{s:I, s:I, s:I}",
        "connect", (json_int_t) self->errors_connect, "io", (json_int_t) self->errors_io,
        "parse", (json_int_t) self->errors_parse);
    json_t *root = json_pack ("{s:s, s:s, s:f, s:f, s:I, s:I, s:I, s:I, s:I, s:I, s:o*, s:o*, s:I,"
                              " s:I, s:I, s:f, s:f, s:I, s:I, s:I, s:I, s:o*, s:b}",
        "url", self->options.url, "method", self->options.method,
        "rate", self->options.rate, "duration_s", self->options.duration_s,
        "timeout_ms", (json_int_t) self->options.timeout_ms,
        "connections", (json_int_t) self->options.connections,
        "scheduled", (json_int_t) self->total, "sent", (json_int_t) self->sent,
        "completed", (json_int_t) self->completed,
        "timeouts", (json_int_t) self->timeouts,
        "status", statuses, "errors", errors,
        "unfinished", (json_int_t) unfinished, "retries", (json_int_t) self->retries,
        "ids_written", (json_int_t) self->ids_written,
        "achieved_rate", achieved_rate, "throughput", throughput,
        "max_in_flight", (json_int_t) self->max_busy, "max_waiting", (json_int_t) self->max_pending,
        "connections_opened", (json_int_t) self->connections_opened,
        "max_open_connections", (json_int_t) self->max_open,
        "latency_ms", latency, "interrupted", s_interrupted != 0);
    if (root) {
        // wall-clock anchors (ms since the epoch), to set the run against server timestamps
        json_object_set_new (root, "t0_wall_ms",
                             json_real ((double) ((int64_t) self->t0_ns + self->wall_offset_ns) / 1e6));
        if (self->last_send_ns)
            json_object_set_new (root, "last_send_wall_ms",
                                 json_real ((double) ((int64_t) self->last_send_ns + self->wall_offset_ns) / 1e6));
        if (self->last_done_ns)
            json_object_set_new (root, "last_done_wall_ms",
                                 json_real ((double) ((int64_t) self->last_done_ns + self->wall_offset_ns) / 1e6));
    }
    int rc = root? json_dump_file (root, self->options.json_path, JSON_INDENT (2)): -1;
    json_decref (root);
    if (rc)
        fprintf (stderr, "loadgen: cannot write JSON summary to %s\n", self->options.json_path);
    return rc? -1: 0;
}

int
main (int argc, char *argv [])
{
    static loadgen_t self;         // large counters array: keep it off the stack
    s_parse_options (&self.options, argc, argv);
    s_build_request (&self);
    s_raise_fd_limit (&self);

    self.target.sin_family = AF_INET;
    self.target.sin_port = htons (self.options.port);
    self.target.sin_addr.s_addr = htonl (INADDR_LOOPBACK);
    self.total = (uint64_t) floor (self.options.rate * self.options.duration_s);
    if (self.total == 0)
        s_fail ("%s", "--rate x --duration gives no request at all");
    self.interval_ns = 1e9 / self.options.rate;
    self.idle = calloc (self.options.max_connections, sizeof (conn_t *));
    self.epoll_fd = epoll_create1 (EPOLL_CLOEXEC);
    if (!self.idle || self.epoll_fd < 0)
        s_fail ("start-up failed: %s", strerror (errno));
    if (self.options.ids_path) {
        self.ids_file = fopen (self.options.ids_path, "a");
        if (!self.ids_file)
            s_fail ("cannot open --ids-file '%s'", self.options.ids_path);
    }
    struct sigaction action = { .sa_handler = s_on_signal };
    sigaction (SIGINT, &action, NULL);
    sigaction (SIGTERM, &action, NULL);
    signal (SIGPIPE, SIG_IGN);

    s_run (&self);
    int rc = s_report (&self);

    // close what is left so sanitizers see a clean exit
    while (self.busy.head)
        s_conn_close (&self, self.busy.head);
    while (self.connecting.head)
        s_conn_close (&self, self.connecting.head);
    while (self.idle_size)
        s_conn_close (&self, self.idle [self.idle_size - 1]);
    if (self.ids_file)
        fclose (self.ids_file);
    free (self.pending.items);
    free (self.latencies);
    free (self.idle);
    free (self.request);
    free (self.options.body);
    free (self.options.headers);
    close (self.epoll_fd);
    return rc? 1: 0;
}
