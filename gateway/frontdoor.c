// frontdoor — the gateway's listening socket and every client connection.
#include "frontdoor.h"
#include "http1.h"
#include "log.h"
#include "mem.h"
#include "problem.h"

#include <assert.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

// Bytes moved per readiness and direction: large answers go out in pieces
// of this size, so one client's 8 MB result never holds the loop.
#define RELAY_CHUNK (64 * 1024)
// Connections accepted per readiness of the listening socket.
#define ACCEPT_BATCH 64
// After running out of file descriptors, accepting waits this long.
#define ACCEPT_RETRY_MS 100
// After a refusal, what the client still sends is read and dropped for at
// most this long (or this much) before the socket closes: closing with
// unread bytes sends a reset, which can destroy the refusal in flight.
#define LINGER_MS 2000
#define LINGER_BYTES (1024 * 1024)

typedef struct _door_conn_t door_conn_t;

// One client connection and the socketpair end that stands for it.
struct _door_conn_t {
    frontdoor_t *door;              // owner
    door_conn_t *prev;              // neighbours among all connections
    door_conn_t *next;
    door_conn_t *timed_prev;        // neighbours among those with a deadline
    door_conn_t *timed_next;
    bool timed;                     // on the deadline list
    door_conn_t *kicked_next;       // next on the list of connections that fed the server
    bool kicked;                    // on that list
    int client_fd;                  // the client's TCP socket
    int server_fd;                  // our end of the socketpair, -1 once closed
    int handed_fd;                  // the end the HTTP server owns (its number only)
    int client_events;              // events watched on client_fd (0 = not watched)
    int server_events;              // events watched on server_fd (0 = not watched)
    http1_t reader;                 // the strict reader of what the client sends
    char *head;                     // a head arriving in pieces, held until complete
    size_t head_len;                // bytes in head
    bool head_forwarding;           // part of the current head went to the server
    char *to_server;                // checked bytes the server has not taken yet
    size_t to_server_len;           // bytes in to_server
    char *to_client;                // server bytes the client has not taken yet
    size_t to_client_len;           // bytes in to_client
    int64_t head_started_ms;        // when the current head's time began, 0 = none
    bool silent;                    // nothing received yet on this connection
    int64_t body_started_ms;        // when the current body began, 0 = none
    uint64_t body_bytes;            // body bytes received so far
    int64_t paused_ms;              // when reading was paused for the server, 0 = not
    bool forwarded;                 // a byte of this connection reached the server
    bool partial;                   // the server holds a request whose body is not whole
    bool client_done;               // no more is read from the client
    bool client_eof;                // the client closed its sending side
    int64_t linger_until_ms;        // lingering: everything sent, reading to drop, 0 = not
    size_t lingered;                // bytes dropped while lingering
    bool server_shut;               // the server was told no more comes (SHUT_WR)
    bool server_done;               // the server closed its end
    int refuse_status;              // a refusal to send once the server is done
    const char *refuse_reason;      // its reason
    bool closing;                   // close once to_client is flushed
};

struct _frontdoor_t {
    evloop_t *loop;                 // borrowed loop
    frontdoor_limits_t limits;      // what is enforced
    frontdoor_handoff_fn *handoff;  // gives a connection to the HTTP server
    frontdoor_kick_fn *kick;        // asks the HTTP server to run now
    frontdoor_gone_fn *gone;        // tells the HTTP server a client left, or NULL
    void *handoff_arg;              // argument of both
    door_conn_t *kicked;            // connections that fed the server this turn
    int listen_fd;                  // the listening socket, -1 once closed
    bool accepting;                 // listen_fd is watched
    evloop_timer_t *accept_timer;   // retries accepting after EMFILE
    evloop_timer_t *tick;           // checks deadlines while any runs
    door_conn_t *conns;             // every connection
    door_conn_t *timed;             // connections with a running deadline
    frontdoor_stats_t stats;        // counters
    int port;                       // bound port
    char scratch[RELAY_CHUNK];      // one read's bytes, either direction
};

static void s_client_ready (evloop_t *loop, int fd, int events, void *arg);
static void s_server_ready (evloop_t *loop, int fd, int events, void *arg);
static void s_listen_ready (evloop_t *loop, int fd, int events, void *arg);
static void s_update (door_conn_t *conn);

// --- small helpers ---

// s_append adds data to a growing buffer (bounded by its caller: a head
// at most max_head_bytes, what one read brought).
static void
s_append (char **buffer, size_t *len, const char *data, size_t size)
{
    if (size == 0)
        return;
    *buffer = mem_realloc (*buffer, *len + size);
    memcpy (*buffer + *len, data, size);
    *len += size;
}

// s_consumed drops the first n bytes of a buffer (freed when empty).
static void
s_consumed (char **buffer, size_t *len, size_t n)
{
    if (n >= *len) {
        free (*buffer);
        *buffer = NULL;
        *len = 0;
        return;
    }
    memmove (*buffer, *buffer + n, *len - n);
    *len -= n;
}

// s_watch makes fd watched for exactly events (0: not watched at all, so a
// hang-up cannot wake the loop over and over while nothing can be done).
static void
s_watch (door_conn_t *conn, int fd, int *current, int events, evloop_fd_fn *fn)
{
    if (fd < 0 || *current == events)
        return;
    evloop_t *loop = conn->door->loop;
    if (events == 0)
        evloop_fd_remove (loop, fd);
    else if (*current == 0)
        evloop_fd_add (loop, fd, events, fn, conn);
    else
        evloop_fd_modify (loop, fd, events);
    *current = events;
}

// s_refusal renders the answer to a refused request (problem+json, closing).
static char *
s_refusal (int status, const char *reason, size_t *len)
{
    const char *slug = status == 408 ? "request-timeout" : status == 431 ? "head-too-large"
                     : status == 501 ? "not-implemented" : status == 505 ? "http-version"
                     : status == 503 ? "unavailable" : "bad-request";
    json_t *problem = problem_new (status, slug, reason, NULL);
    char *body = json_dumps (problem, JSON_COMPACT);
    json_decref (problem);
    char *text = NULL;
    int n = asprintf (&text,
                      "HTTP/1.1 %d %s\r\nContent-Type: application/problem+json\r\n"
                      "Connection: close\r\nContent-Length: %zu\r\n\r\n%s",
                      status, problem_title (status), strlen (body), body);
    mem_abort_if (n < 0);
    free (body);
    *len = (size_t) n;
    return text;
}

// --- the deadline list ---

static void s_tick (evloop_t *loop, void *arg);

// s_tick_ms is how often deadlines are checked: often enough to end a late
// head within a tenth of its time.
static int64_t
s_tick_ms (frontdoor_t *self)
{
    int64_t tick = self->limits.header_timeout_ms / 10;
    return tick < 25 ? 25 : tick > 500 ? 500 : tick;
}

// s_timing puts conn on the deadline list when a head or body is running,
// and takes it off when none is.
static void
s_timing (door_conn_t *conn)
{
    frontdoor_t *self = conn->door;
    bool running = conn->linger_until_ms
                   || (!conn->refuse_status && (conn->head_started_ms || conn->body_started_ms));
    if (running && !conn->timed) {
        conn->timed = true;
        conn->timed_prev = NULL;
        conn->timed_next = self->timed;
        if (self->timed)
            self->timed->timed_prev = conn;
        self->timed = conn;
        if (!self->tick)
            self->tick = evloop_timer_start (self->loop, s_tick_ms (self), s_tick, self);
    }
    else if (!running && conn->timed) {
        if (conn->timed_prev)
            conn->timed_prev->timed_next = conn->timed_next;
        else
            self->timed = conn->timed_next;
        if (conn->timed_next)
            conn->timed_next->timed_prev = conn->timed_prev;
        conn->timed = false;
        conn->timed_prev = conn->timed_next = NULL;
    }
}

// --- closing ---

// s_close ends a connection: both sockets closed (the HTTP server sees its
// end close and forgets the connection), accepting resumed if it was full.
static void
s_close (door_conn_t *conn)
{
    frontdoor_t *self = conn->door;
    conn->refuse_status = 0;
    conn->head_started_ms = conn->body_started_ms = conn->linger_until_ms = 0;
    s_timing (conn);
    if (conn->kicked)
        for (door_conn_t **at = &self->kicked; *at; at = &(*at)->kicked_next)
            if (*at == conn) {
                *at = conn->kicked_next;
                break;
            }
    s_watch (conn, conn->client_fd, &conn->client_events, 0, NULL);
    s_watch (conn, conn->server_fd, &conn->server_events, 0, NULL);
    close (conn->client_fd);
    if (conn->server_fd >= 0)
        close (conn->server_fd);
    if (conn->prev)
        conn->prev->next = conn->next;
    else
        self->conns = conn->next;
    if (conn->next)
        conn->next->prev = conn->prev;
    free (conn->head);
    free (conn->to_server);
    free (conn->to_client);
    free (conn);
    self->stats.open--;
    if (self->listen_fd >= 0 && !self->accepting && !self->accept_timer
        && self->stats.open < self->limits.max_connections) {
        evloop_fd_add (self->loop, self->listen_fd, EVLOOP_READ, s_listen_ready, self);
        self->accepting = true;
    }
}

// s_server_close closes our end of the socketpair.
static void
s_server_close (door_conn_t *conn)
{
    s_watch (conn, conn->server_fd, &conn->server_events, 0, NULL);
    if (conn->server_fd >= 0)
        close (conn->server_fd);
    conn->server_fd = -1;
    conn->server_done = true;
}

// --- writing ---

// s_to_client sends bytes to the client, keeping what it does not take.
// Returns false when the connection was closed (the client is gone).
static bool
s_to_client (door_conn_t *conn, const char *data, size_t len)
{
    size_t sent = 0;
    if (conn->to_client_len == 0) {
        ssize_t n = send (conn->client_fd, data, len, MSG_NOSIGNAL);
        if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
            s_close (conn);
            return false;
        }
        sent = n > 0 ? (size_t) n : 0;
    }
    if (sent < len)
        s_append (&conn->to_client, &conn->to_client_len, data + sent, len - sent);
    return true;
}

// s_to_server sends checked client bytes to the HTTP server, keeping what
// it does not take (reading the client then pauses).
static void
s_to_server (door_conn_t *conn, const char *data, size_t len)
{
    if (len == 0 || conn->server_fd < 0)
        return;     // nothing, or nobody to take it (its close is handled)
    conn->forwarded = true;
    size_t sent = 0;
    if (conn->to_server_len == 0 && conn->server_fd >= 0) {
        ssize_t n = send (conn->server_fd, data, len, MSG_NOSIGNAL);
        sent = n > 0 ? (size_t) n : 0;
        if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
            sent = len;     // the server is gone; its close is seen on read
    }
    if (sent < len)
        s_append (&conn->to_server, &conn->to_server_len, data + sent, len - sent);
    frontdoor_t *self = conn->door;
    if (!conn->kicked) {
        conn->kicked = true;
        conn->kicked_next = self->kicked;
        self->kicked = conn;
        if (self->kick)
            self->kick (conn->handed_fd, self->handoff_arg);
    }
}

// s_stop_reading reads no more from the client: a head it left unfinished
// never reaches the server, and no deadline runs.
static void
s_stop_reading (door_conn_t *conn)
{
    conn->client_done = true;
    free (conn->head);
    conn->head = NULL;
    conn->head_len = 0;
    conn->head_started_ms = conn->body_started_ms = 0;
    s_timing (conn);
}

// s_refuse stops reading the client and answers status once every request
// before this one was answered.
static void
s_refuse (door_conn_t *conn, int status, const char *reason)
{
    frontdoor_t *self = conn->door;
    if (conn->refuse_status || conn->closing)
        return;
    if (status == 408)
        self->stats.timed_out++;
    else
        self->stats.refused++;
    log_debug (NULL, "http: refused a request with %d: %s", status, reason);
    conn->refuse_status = status;
    conn->refuse_reason = reason;
    s_stop_reading (conn);
}

// s_progress moves a connection towards its end: the server is told when
// no more comes, a refusal is queued once the server is done, and the
// connection closes once everything was flushed. Returns false when the
// connection was closed.
static bool
s_progress (door_conn_t *conn)
{
    if (conn->client_done && !conn->server_done) {
        if (!conn->forwarded || conn->partial) {
            // The server never saw a byte, or holds a request that will never
            // be whole: nothing to wait for. (libmicrohttpd 0.9.75, reading
            // edge-triggered, misses an end of input that arrives with the
            // last bytes of an unfinished request, and would wait out its idle
            // timeout: its end is closed instead.)
            s_consumed (&conn->to_server, &conn->to_server_len, conn->to_server_len);
            s_server_close (conn);
        }
        else if (!conn->server_shut && conn->to_server_len == 0) {
            // Earlier requests are whole: the server answers them, then sees
            // the end of input and closes.
            shutdown (conn->server_fd, SHUT_WR);
            conn->server_shut = true;
        }
    }
    if (conn->server_done && !conn->closing) {
        conn->closing = true;
        if (conn->refuse_status) {
            size_t len = 0;
            char *answer = s_refusal (conn->refuse_status, conn->refuse_reason, &len);
            bool open = s_to_client (conn, answer, len);
            free (answer);
            if (!open)
                return false;
        }
    }
    if (conn->closing && conn->to_client_len == 0 && !conn->linger_until_ms) {
        shutdown (conn->client_fd, SHUT_WR);
        if (conn->client_eof) {
            s_close (conn);
            return false;
        }
        conn->linger_until_ms = evloop_now_ms (conn->door->loop) + LINGER_MS;
        s_timing (conn);
    }
    s_update (conn);
    return true;
}

// s_linger reads and drops what a client sends after the end; closes the
// connection at its end of file, after LINGER_BYTES, or on an error.
static void
s_linger (door_conn_t *conn)
{
    frontdoor_t *self = conn->door;
    ssize_t n = recv (conn->client_fd, self->scratch, sizeof self->scratch, 0);
    if (n > 0 && (conn->lingered += (size_t) n) < LINGER_BYTES)
        return;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
        return;
    s_close (conn);
}

// s_update watches each socket for what can be done with it now.
static void
s_update (door_conn_t *conn)
{
    int64_t now = evloop_now_ms (conn->door->loop);
    if (conn->linger_until_ms) {
        s_watch (conn, conn->client_fd, &conn->client_events, EVLOOP_READ, s_client_ready);
        s_watch (conn, conn->server_fd, &conn->server_events, 0, NULL);
        return;
    }
    bool read_client = !conn->client_done && conn->to_server_len == 0;
    // Time waiting for the server is not the client's: deadlines pause.
    if (!read_client && !conn->client_done && !conn->paused_ms)
        conn->paused_ms = now;
    else if (read_client && conn->paused_ms) {
        if (conn->head_started_ms)
            conn->head_started_ms += now - conn->paused_ms;
        if (conn->body_started_ms)
            conn->body_started_ms += now - conn->paused_ms;
        conn->paused_ms = 0;
    }
    int client = (read_client ? EVLOOP_READ : 0) | (conn->to_client_len ? EVLOOP_WRITE : 0);
    int server = conn->server_done ? 0
               : (conn->to_client_len == 0 ? EVLOOP_READ : 0) | (conn->to_server_len ? EVLOOP_WRITE : 0);
    s_watch (conn, conn->client_fd, &conn->client_events, client, s_client_ready);
    s_watch (conn, conn->server_fd, &conn->server_events, server, s_server_ready);
}

// --- reading the client ---

// s_forward_head sends a complete head: the pieces held, then the rest.
// Empty lines before the request line are not passed on.
static void
s_forward_head (door_conn_t *conn, const char *rest, size_t rest_len)
{
    const char *parts[2] = { conn->head, rest };
    size_t lens[2] = { conn->head_len, rest_len };
    for (int i = 0; i < 2; i++) {
        if (lens[i] == 0)
            continue;
        size_t skip = 0;
        while (!conn->head_forwarding && skip < lens[i]
               && (parts[i][skip] == '\r' || parts[i][skip] == '\n'))
            skip++;
        if (skip < lens[i])
            conn->head_forwarding = true;
        s_to_server (conn, parts[i] + skip, lens[i] - skip);
    }
    free (conn->head);
    conn->head = NULL;
    conn->head_len = 0;
    conn->head_forwarding = false;
}

// s_consume runs bytes from the client through the strict reader and
// forwards what it accepts.
static void
s_consume (door_conn_t *conn, const char *data, size_t len)
{
    int64_t now = evloop_now_ms (conn->door->loop);
    size_t at = 0;
    while (true) {
        bool in_body = http1_in_body (&conn->reader);
        size_t used;
        http1_event_t event = http1_feed (&conn->reader, data + at, len - at, &used);
        if (in_body) {
            conn->body_bytes += used;
            s_to_server (conn, data + at, used);
            if (event == HTTP1_REQUEST_DONE) {
                conn->body_started_ms = 0;
                conn->partial = false;
            }
        }
        else {
            if (used > 0 && !conn->head_started_ms)
                conn->head_started_ms = now;    // the first byte of a later head
            if (used > 0)
                conn->silent = false;
            if (event == HTTP1_HEAD_DONE) {
                s_forward_head (conn, data + at, used);
                conn->head_started_ms = 0;
                if (http1_in_body (&conn->reader)) {
                    conn->body_started_ms = now;
                    conn->body_bytes = 0;
                    conn->partial = true;
                }
            }
            else if (event == HTTP1_MORE)
                s_append (&conn->head, &conn->head_len, data + at, used);
        }
        at += used;
        if (event == HTTP1_ERROR) {
            s_refuse (conn, conn->reader.error_status, conn->reader.error_reason);
            break;
        }
        if (event == HTTP1_MORE || (event == HTTP1_REQUEST_DONE && at == len))
            break;
    }
    s_timing (conn);
}

static void
s_client_ready (evloop_t *loop, int fd, int events, void *arg)
{
    door_conn_t *conn = arg;
    frontdoor_t *self = conn->door;
    if (conn->linger_until_ms) {
        s_linger (conn);
        return;
    }
    if ((events & EVLOOP_WRITE) && conn->to_client_len > 0) {
        ssize_t n = send (fd, conn->to_client, conn->to_client_len, MSG_NOSIGNAL);
        if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
            s_close (conn);
            return;
        }
        if (n > 0)
            s_consumed (&conn->to_client, &conn->to_client_len, (size_t) n);
    }
    if ((events & EVLOOP_READ) && !conn->client_done && conn->to_server_len == 0) {
        ssize_t n = recv (fd, self->scratch, sizeof self->scratch, 0);
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
            // The client sent all it will. HTTP/1.1 lets a client half-close
            // and still read, but none does while it waits for an answer:
            // a request parked for it is ended now, not at its deadline.
            conn->client_eof = true;
            s_stop_reading (conn);
            if (self->gone && !conn->server_done && conn->forwarded)
                self->gone (conn->handed_fd, self->handoff_arg);
            if (n < 0) {
                s_close (conn);
                return;
            }
        }
        else if (n > 0)
            s_consume (conn, self->scratch, (size_t) n);
    }
    s_progress (conn);
}

// --- reading the server ---

static void
s_server_ready (evloop_t *loop, int fd, int events, void *arg)
{
    door_conn_t *conn = arg;
    frontdoor_t *self = conn->door;
    if ((events & EVLOOP_WRITE) && conn->to_server_len > 0) {
        ssize_t n = send (fd, conn->to_server, conn->to_server_len, MSG_NOSIGNAL);
        if (n > 0)
            s_consumed (&conn->to_server, &conn->to_server_len, (size_t) n);
        else if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
            s_consumed (&conn->to_server, &conn->to_server_len, conn->to_server_len);
    }
    if ((events & EVLOOP_READ) && !conn->server_done && conn->to_client_len == 0) {
        ssize_t n = recv (fd, self->scratch, sizeof self->scratch, 0);
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
            s_server_close (conn);
            if (!conn->refuse_status)
                conn->client_done = true;
        }
        else if (n > 0 && !s_to_client (conn, self->scratch, (size_t) n))
            return;
    }
    s_progress (conn);
}

// --- accepting ---

static void
s_accept_retry (evloop_t *loop, void *arg)
{
    frontdoor_t *self = arg;
    self->accept_timer = NULL;
    if (self->listen_fd >= 0 && !self->accepting
        && self->stats.open < self->limits.max_connections) {
        evloop_fd_add (loop, self->listen_fd, EVLOOP_READ, s_listen_ready, self);
        self->accepting = true;
    }
}

// s_pause_accepting stops watching the listening socket: new connections
// wait in the kernel's backlog until one closes (or retry_ms passes).
static void
s_pause_accepting (frontdoor_t *self, int64_t retry_ms)
{
    if (self->accepting) {
        evloop_fd_remove (self->loop, self->listen_fd);
        self->accepting = false;
    }
    if (retry_ms > 0 && !self->accept_timer)
        self->accept_timer = evloop_timer_start (self->loop, retry_ms, s_accept_retry, self);
}

void
frontdoor_on_gone (frontdoor_t *self, frontdoor_gone_fn *fn)
{
    self->gone = fn;
}

// s_admit takes a new client connection.
static void
s_admit (frontdoor_t *self, int client_fd)
{
    int one = 1;
    setsockopt (client_fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    int pair[2];
    if (socketpair (AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, pair) < 0) {
        close (client_fd);
        s_pause_accepting (self, ACCEPT_RETRY_MS);
        return;
    }
    if (self->handoff (pair[1], self->handoff_arg) < 0) {
        // Not taken: say so at once (best effort) and close.
        size_t len = 0;
        char *answer = s_refusal (503, "the gateway cannot take more connections now", &len);
        if (send (client_fd, answer, len, MSG_NOSIGNAL | MSG_DONTWAIT) < 0)
            log_debug (NULL, "http: could not tell a refused client: %s", strerror (errno));
        free (answer);
        close (pair[0]);
        close (client_fd);
        return;
    }
    door_conn_t *conn = mem_calloc (1, sizeof *conn);
    conn->door = self;
    conn->client_fd = client_fd;
    conn->server_fd = pair[0];
    conn->handed_fd = pair[1];
    http1_init (&conn->reader, self->limits.max_head_bytes);
    conn->head_started_ms = evloop_now_ms (self->loop);
    conn->silent = true;
    conn->next = self->conns;
    if (self->conns)
        self->conns->prev = conn;
    self->conns = conn;
    self->stats.accepted++;
    self->stats.open++;
    s_timing (conn);
    s_update (conn);
}

static void
s_listen_ready (evloop_t *loop, int fd, int events, void *arg)
{
    frontdoor_t *self = arg;
    for (int i = 0; i < ACCEPT_BATCH; i++) {
        if (self->stats.open >= self->limits.max_connections) {
            s_pause_accepting (self, 0);
            return;
        }
        int client = accept4 (fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (client < 0) {
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
                log_warn (NULL, "http: cannot accept: %s; retrying in %d ms", strerror (errno),
                          ACCEPT_RETRY_MS);
                s_pause_accepting (self, ACCEPT_RETRY_MS);
            }
            if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EMFILE || errno == ENFILE
                || errno == ENOBUFS || errno == ENOMEM)
                return;
            continue;   // the client left before it was accepted, or similar
        }
        s_admit (self, client);
    }
}

// --- deadlines ---

static void
s_tick (evloop_t *loop, void *arg)
{
    frontdoor_t *self = arg;
    self->tick = NULL;
    int64_t now = evloop_now_ms (loop);
    int64_t timeout = self->limits.header_timeout_ms;
    door_conn_t *conn = self->timed;
    while (conn) {
        door_conn_t *next = conn->timed_next;
        if (conn->linger_until_ms) {
            if (now >= conn->linger_until_ms)
                s_close (conn);
            conn = next;
            continue;
        }
        if (conn->paused_ms) {
            conn = next;
            continue;
        }
        if (conn->silent && now - conn->head_started_ms >= timeout) {
            // A connection that never sent a byte (a client's pool opened
            // ahead of need) is closed without an answer, as nginx does: a
            // 408 there would read as the answer to the request the client
            // sends next, where a bare close tells it to use another.
            self->stats.timed_out++;
            log_debug (NULL, "http: closed a connection that sent nothing in time");
            s_close (conn);
        }
        else if (conn->head_started_ms && now - conn->head_started_ms >= timeout) {
            s_refuse (conn, 408, "the request head did not arrive in time "
                                 "(gateway.header_timeout_ms)");
            s_progress (conn);
        }
        else if (conn->body_started_ms && self->limits.min_body_rate > 0
                 && now - conn->body_started_ms > timeout) {
            uint64_t due = (uint64_t) self->limits.min_body_rate
                           * (uint64_t) (now - conn->body_started_ms - timeout) / 1000;
            if (conn->body_bytes < due) {
                s_refuse (conn, 408, "the request body arrives too slowly "
                                     "(gateway.min_body_rate)");
                s_progress (conn);
            }
        }
        conn = next;
    }
    if (self->timed)
        self->tick = evloop_timer_start (loop, s_tick_ms (self), s_tick, self);
}

// --- the front door ---

frontdoor_t *
frontdoor_new (evloop_t *loop, const struct sockaddr *addr, socklen_t addr_len,
               const frontdoor_limits_t *limits, frontdoor_handoff_fn *handoff,
               frontdoor_kick_fn *kick, void *arg, char *error, size_t error_size)
{
    frontdoor_t *self = mem_calloc (1, sizeof *self);
    self->loop = loop;
    self->limits = *limits;
    self->handoff = handoff;
    self->kick = kick;
    self->handoff_arg = arg;
    self->listen_fd = socket (addr->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    if (self->listen_fd < 0
        || setsockopt (self->listen_fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0
        || (limits->reuse_port
            && setsockopt (self->listen_fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) < 0)
        || bind (self->listen_fd, addr, addr_len) < 0 || listen (self->listen_fd, 4096) < 0) {
        snprintf (error, error_size, "%s", strerror (errno));
        if (self->listen_fd >= 0)
            close (self->listen_fd);
        free (self);
        return NULL;
    }
    struct sockaddr_storage bound;
    socklen_t bound_len = sizeof bound;
    if (getsockname (self->listen_fd, (struct sockaddr *) &bound, &bound_len) == 0)
        self->port = ntohs (bound.ss_family == AF_INET6
                                ? ((struct sockaddr_in6 *) &bound)->sin6_port
                                : ((struct sockaddr_in *) &bound)->sin_port);
    evloop_fd_add (loop, self->listen_fd, EVLOOP_READ, s_listen_ready, self);
    self->accepting = true;
    return self;
}

void
frontdoor_relay_answers (frontdoor_t *self)
{
    while (self->kicked) {
        door_conn_t *conn = self->kicked;
        self->kicked = conn->kicked_next;
        conn->kicked = false;
        conn->kicked_next = NULL;
        if (conn->server_events & EVLOOP_READ)
            s_server_ready (self->loop, conn->server_fd, EVLOOP_READ, conn);
    }
}

int
frontdoor_port (frontdoor_t *self)
{
    return self->port;
}

void
frontdoor_stop_accepting (frontdoor_t *self)
{
    s_pause_accepting (self, 0);
    evloop_timer_cancel (self->loop, &self->accept_timer);
    if (self->listen_fd >= 0)
        close (self->listen_fd);
    self->listen_fd = -1;
}

frontdoor_stats_t
frontdoor_stats (frontdoor_t *self)
{
    return self->stats;
}

void
frontdoor_destroy (frontdoor_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    frontdoor_t *self = *self_p;
    frontdoor_stop_accepting (self);
    while (self->conns)
        s_close (self->conns);
    evloop_timer_cancel (self->loop, &self->tick);
    free (self);
    *self_p = NULL;
}

// --- self-test: a fake HTTP server on the other end of each socketpair ---

// The test server: answers "OK" once per request head it sees.
typedef struct {
    evloop_t *loop;             // the loop
    int fds[8];                 // server ends handed over
    size_t count;               // how many
    size_t heads;               // request heads seen
} s_test_server_t;

static void
s_test_server_ready (evloop_t *loop, int fd, int events, void *arg)
{
    s_test_server_t *server = arg;
    char buf[4096];
    ssize_t n = recv (fd, buf, sizeof buf, 0);
    if (n <= 0) {
        evloop_fd_remove (loop, fd);
        close (fd);
        for (size_t i = 0; i < server->count; i++)
            if (server->fds[i] == fd)
                server->fds[i] = -1;
        return;
    }
    for (ssize_t i = 0; i + 3 < n; i++)
        if (memcmp (buf + i, "\r\n\r\n", 4) == 0) {
            server->heads++;
            const char *answer = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nOK";
            assert (send (fd, answer, strlen (answer), MSG_NOSIGNAL) == (ssize_t) strlen (answer));
        }
}

static int
s_test_handoff (int fd, void *arg)
{
    s_test_server_t *server = arg;
    if (server->count == 8) {
        close (fd);
        return -1;
    }
    server->fds[server->count++] = fd;
    evloop_fd_add (server->loop, fd, EVLOOP_READ, s_test_server_ready, server);
    return 0;
}

// s_test_client connects a blocking client to port.
static int
s_test_client (int port)
{
    int fd = socket (AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in addr = { .sin_family = AF_INET, .sin_port = htons ((uint16_t) port),
                                .sin_addr.s_addr = htonl (INADDR_LOOPBACK) };
    assert (connect (fd, (struct sockaddr *) &addr, sizeof addr) == 0);
    return fd;
}

// s_test_read returns what fd has now (without waiting), NUL-terminated;
// *closed tells whether the peer closed.
static size_t
s_test_read (int fd, char *buf, size_t size, bool *closed)
{
    size_t len = 0;
    *closed = false;
    while (len + 1 < size) {
        ssize_t n = recv (fd, buf + len, size - 1 - len, MSG_DONTWAIT);
        if (n <= 0) {
            *closed = n == 0;
            break;
        }
        len += (size_t) n;
    }
    buf[len] = '\0';
    return len;
}

void
frontdoor_test (bool verbose)
{
    if (verbose)
        printf (" * frontdoor: ");
    evloop_t *loop = evloop_new ();
    s_test_server_t server = { .loop = loop };
    frontdoor_limits_t limits = { .max_connections = 2, .header_timeout_ms = 300,
                                  .min_body_rate = 0, .max_head_bytes = 8192 };
    struct sockaddr_in addr = { .sin_family = AF_INET, .sin_addr.s_addr = htonl (INADDR_LOOPBACK) };
    char error[128];
    frontdoor_t *door = frontdoor_new (loop, (struct sockaddr *) &addr, sizeof addr, &limits,
                                       s_test_handoff, NULL, &server, error, sizeof error);
    assert (door && frontdoor_port (door) > 0);
    char buf[4096];
    bool closed;

    // A valid request passes (in two pieces), its answer comes back.
    int a = s_test_client (frontdoor_port (door));
    assert (send (a, "GET / HTTP/1.1\r\nHo", 18, 0) == 18);
    evloop_run_for (loop, 20);
    assert (server.heads == 0);
    assert (send (a, "st: x\r\n\r\n", 9, 0) == 9);
    evloop_run_for (loop, 20);
    assert (server.heads == 1);
    s_test_read (a, buf, sizeof buf, &closed);
    assert (strstr (buf, "200 OK") && !closed);

    // An ambiguous one after it: 400, then the connection closes.
    assert (send (a, "GET / HTTP/1.1\nHost: x\n\n", 24, 0) == 24);
    evloop_run_for (loop, 30);
    s_test_read (a, buf, sizeof buf, &closed);
    assert (strstr (buf, "HTTP/1.1 400 Bad Request") && strstr (buf, "Connection: close"));
    assert (strstr (buf, "LF alone") && closed && server.heads == 1);
    close (a);

    // The limit: two connections; a third waits in the backlog until one
    // closes, then is served at once.
    int b = s_test_client (frontdoor_port (door));
    int c = s_test_client (frontdoor_port (door));
    int d = s_test_client (frontdoor_port (door));
    evloop_run_for (loop, 20);
    assert (frontdoor_stats (door).open == 2);
    close (b);
    evloop_run_for (loop, 20);
    assert (frontdoor_stats (door).open == 2);
    assert (send (d, "GET / HTTP/1.1\r\nHost: x\r\n\r\n", 27, 0) == 27);
    evloop_run_for (loop, 20);
    s_test_read (d, buf, sizeof buf, &closed);
    assert (strstr (buf, "200 OK"));

    // A head trickling in is cut at its deadline with 408, whatever arrives.
    assert (send (c, "GET / HTTP/1.1\r\n", 16, 0) == 16);
    for (int i = 0; i < 8; i++) {
        evloop_run_for (loop, 60);
        if (send (c, "X: y\r\n", 6, MSG_NOSIGNAL) < 0)
            break;
    }
    evloop_run_for (loop, 20);
    s_test_read (c, buf, sizeof buf, &closed);
    assert (strstr (buf, "408 Request Timeout") && closed);
    assert (frontdoor_stats (door).timed_out == 1 && frontdoor_stats (door).refused == 1);
    close (c);
    close (d);
    evloop_run_for (loop, 20);
    assert (frontdoor_stats (door).open == 0);

    // A connection that never sends a byte is closed at the deadline
    // without an answer (a 408 would answer the request it sends next).
    int e = s_test_client (frontdoor_port (door));
    evloop_run_for (loop, 200);
    assert (frontdoor_stats (door).open == 1);
    evloop_run_for (loop, 250);
    assert (s_test_read (e, buf, sizeof buf, &closed) == 0 && closed);
    assert (frontdoor_stats (door).timed_out == 2 && frontdoor_stats (door).open == 0);
    close (e);

    // Without reuse_port a second door cannot bind the port; with it on
    // both, both listen (several gateway processes on one port), and a
    // connection to the port is served by one of them.
    addr.sin_port = htons ((uint16_t) frontdoor_port (door));
    frontdoor_t *second = frontdoor_new (loop, (struct sockaddr *) &addr, sizeof addr, &limits,
                                         s_test_handoff, NULL, &server, error, sizeof error);
    assert (!second && strstr (error, "in use"));
    frontdoor_destroy (&door);
    frontdoor_limits_t sharing = limits;
    sharing.reuse_port = true;
    door = frontdoor_new (loop, (struct sockaddr *) &addr, sizeof addr, &sharing, s_test_handoff,
                          NULL, &server, error, sizeof error);
    second = frontdoor_new (loop, (struct sockaddr *) &addr, sizeof addr, &sharing,
                            s_test_handoff, NULL, &server, error, sizeof error);
    assert (door && second && frontdoor_port (second) == frontdoor_port (door));
    int f = s_test_client (frontdoor_port (door));
    assert (send (f, "GET / HTTP/1.1\r\nHost: x\r\n\r\n", 27, 0) == 27);
    evloop_run_for (loop, 20);
    s_test_read (f, buf, sizeof buf, &closed);
    assert (strstr (buf, "200 OK"));
    assert (frontdoor_stats (door).accepted + frontdoor_stats (second).accepted == 1);
    close (f);
    evloop_run_for (loop, 20);
    frontdoor_destroy (&second);
    frontdoor_destroy (&door);
    frontdoor_destroy (&door);
    for (size_t i = 0; i < server.count; i++)
        if (server.fds[i] >= 0) {
            evloop_fd_remove (loop, server.fds[i]);
            close (server.fds[i]);
        }
    evloop_destroy (&loop);
    if (verbose)
        printf ("OK\n");
}
