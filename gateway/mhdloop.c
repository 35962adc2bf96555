// mhdloop — libmicrohttpd on the process's one event loop.
#include "mhdloop.h"
#include "log.h"
#include "mem.h"
#include "routes.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

// Parked connections per millisecond of spacing between resume batches.
#define RESUME_BATCH_PARKED_PER_MS 1000
// New connections go to one more server per this many open (unless the
// limits say otherwise): while few are open, one server runs once per loop
// turn for all of them (each further server costs a run of its own in the
// turns its connections need: 5 µs per job at the accept ceiling with 64
// servers from the start). Counted by open connections, not parked ones:
// a client's pool opens its connections before any request parks.
#define CONNECTIONS_PER_SERVER 128

// One HTTP server: a libmicrohttpd daemon and the connections given to it.
typedef struct {
    mhdloop_t *owner;           // the module
    struct MHD_Daemon *daemon;  // the HTTP server
    int epoll_fd;               // its epoll fd, watched by the loop
    evloop_timer_t *timer;      // its own next timeout
    bool run_needed;            // run it in this loop turn
    mhdloop_conn_t *resume_list; // connections waiting for its next resume batch
    int64_t last_resume_ms;     // monotonic time of its last batch
    mhdloop_conn_t *suspended;  // its suspended connections
    size_t suspended_count;     // how many
    size_t open;                // connections it holds
} mhd_server_t;

struct _mhdloop_t {
    evloop_t *loop;             // borrowed event loop
    mhd_server_t servers[MHDLOOP_SERVERS]; // the servers
    size_t suspended_count;     // suspended connections, all servers
    size_t open;                // connections open, all servers
    uint8_t *server_of;         // connection fd → index of the server that holds it
    size_t server_of_size;      // entries in server_of
    size_t connections_per_server; // one more server in use per this many open
};

// s_log passes libmicrohttpd's messages on as debug lines.
static void
s_log (void *cls, const char *fmt, va_list ap)
{
    // Connections reach libmicrohttpd through socketpairs (frontdoor.c),
    // where TCP options do not apply: expected, and said for every answer.
    if (strncmp (fmt, "Setting TCP_", 12) == 0 || strncmp (fmt, "Failed to push", 14) == 0)
        return;
    char line[512];
    vsnprintf (line, sizeof line, fmt, ap);
    size_t len = strlen (line);
    while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
        line[--len] = '\0';
    log_debug (NULL, "http: %s", line);
}

static void s_timeout (evloop_t *loop, void *arg);

// s_server_run runs one server now.
static void
s_server_run (mhd_server_t *server)
{
    server->run_needed = false;
    MHD_run (server->daemon);
    evloop_timer_cancel (server->owner->loop, &server->timer);
    MHD_UNSIGNED_LONG_LONG timeout;
    if (MHD_get_timeout (server->daemon, &timeout) == MHD_YES)
        server->timer = evloop_timer_start (server->owner->loop, (int64_t) timeout, s_timeout,
                                            server);
}

static void
s_timeout (evloop_t *loop, void *arg)
{
    mhd_server_t *server = arg;
    server->timer = NULL;
    s_server_run (server);
}

void
mhdloop_run (mhdloop_t *self)
{
    for (size_t i = 0; i < MHDLOOP_SERVERS; i++)
        s_server_run (&self->servers[i]);
}

static void
s_ready (evloop_t *loop, int fd, int events, void *arg)
{
    s_server_run (arg);
}

// s_unescape is libmicrohttpd's unescape callback: paths and query
// arguments decode by the routes' rule (routes_unescape: "%00" stays).
static size_t
s_unescape (void *cls, struct MHD_Connection *connection, char *text)
{
    return routes_unescape (text);
}

// s_connection_counted keeps count of the connections a server holds.
static void
s_connection_counted (void *cls, struct MHD_Connection *connection, void **socket_context,
                      enum MHD_ConnectionNotificationCode code)
{
    mhd_server_t *server = cls;
    if (code == MHD_CONNECTION_NOTIFY_STARTED) {
        server->open++;
        server->owner->open++;
    }
    else
    if (code == MHD_CONNECTION_NOTIFY_CLOSED) {
        server->open--;
        server->owner->open--;
    }
}

// s_server_stop stops a server that was started (its suspended connections
// resumed first).
static void
s_server_stop (mhd_server_t *server)
{
    evloop_fd_remove (server->owner->loop, server->epoll_fd);
    evloop_timer_cancel (server->owner->loop, &server->timer);
    MHD_stop_daemon (server->daemon);
    server->daemon = NULL;
}

mhdloop_t *
mhdloop_new (evloop_t *loop, const mhdloop_limits_t *limits, MHD_AccessHandlerCallback access,
             MHD_RequestCompletedCallback completed, void *arg, char *error, size_t error_size)
{
    mhdloop_t *self = mem_calloc (1, sizeof *self);
    self->loop = loop;
    self->connections_per_server = limits->connections_per_server
                                       ? limits->connections_per_server
                                       : CONNECTIONS_PER_SERVER;
    unsigned int flags = MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG
                         | MHD_USE_NO_LISTEN_SOCKET;
    for (size_t i = 0; i < MHDLOOP_SERVERS; i++) {
        mhd_server_t *server = &self->servers[i];
        server->owner = self;
        // Each server may hold every connection: the front door holds the limit.
        server->daemon = MHD_start_daemon (
            flags, 0, NULL, NULL, access, arg, MHD_OPTION_EXTERNAL_LOGGER, s_log, self,
            MHD_OPTION_NOTIFY_COMPLETED, completed, arg, MHD_OPTION_NOTIFY_CONNECTION,
            s_connection_counted, server, MHD_OPTION_CONNECTION_LIMIT,
            limits->max_connections, MHD_OPTION_CONNECTION_TIMEOUT, limits->timeout_s,
            MHD_OPTION_CONNECTION_MEMORY_LIMIT, limits->connection_memory,
            MHD_OPTION_STRICT_FOR_CLIENT, (int) 1, MHD_OPTION_UNESCAPE_CALLBACK, s_unescape, NULL,
            MHD_OPTION_END);
        if (!server->daemon)
            snprintf (error, error_size, "cannot start the HTTP server: %s", strerror (errno));
        else {
            server->epoll_fd = MHD_get_daemon_info (server->daemon,
                                                    MHD_DAEMON_INFO_EPOLL_FD)->epoll_fd;
            if (evloop_fd_add (loop, server->epoll_fd, EVLOOP_READ, s_ready, server) < 0) {
                snprintf (error, error_size, "cannot watch the HTTP server: %s", strerror (errno));
                MHD_stop_daemon (server->daemon);
                server->daemon = NULL;
            }
        }
        if (!server->daemon) {
            while (i-- > 0)
                s_server_stop (&self->servers[i]);
            free (self);
            return NULL;
        }
        s_server_run (server);
    }
    return self;
}

// s_server_of returns the server of a connection given to the module.
static mhd_server_t *
s_server_of (mhdloop_t *self, int fd)
{
    assert (fd >= 0 && (size_t) fd < self->server_of_size);
    return &self->servers[self->server_of[fd]];
}

// s_server_for picks the server for a new connection fd and remembers it:
// the one holding fewest among as many as the open connections call for.
static mhd_server_t *
s_server_for (mhdloop_t *self, int fd)
{
    if ((size_t) fd >= self->server_of_size) {
        size_t size = self->server_of_size ? self->server_of_size : 1024;
        while (size <= (size_t) fd)
            size *= 2;
        self->server_of = mem_realloc (self->server_of, size);
        memset (self->server_of + self->server_of_size, 0, size - self->server_of_size);
        self->server_of_size = size;
    }
    size_t in_use = 1 + self->open / self->connections_per_server;
    if (in_use > MHDLOOP_SERVERS)
        in_use = MHDLOOP_SERVERS;
    size_t least = 0;
    for (size_t i = 1; i < in_use; i++)
        if (self->servers[i].open < self->servers[least].open)
            least = i;
    self->server_of[fd] = (uint8_t) least;
    return &self->servers[self->server_of[fd]];
}

// s_unsuspended takes conn (suspended) off its server's suspended connections.
static void
s_unsuspended (mhdloop_t *self, mhdloop_conn_t *conn)
{
    mhd_server_t *server = &self->servers[conn->server];
    if (conn->prev)
        conn->prev->next = conn->next;
    else
        server->suspended = conn->next;
    if (conn->next)
        conn->next->prev = conn->prev;
    conn->prev = conn->next = NULL;
    conn->suspended = false;
    server->suspended_count--;
    self->suspended_count--;
}

// s_resume_now resumes conn at once (it is suspended).
static void
s_resume_now (mhdloop_t *self, mhdloop_conn_t *conn)
{
    conn->resume_queued = false;
    self->servers[conn->server].run_needed = true;
    s_unsuspended (self, conn);
    MHD_resume_connection (conn->connection);
}

void
mhdloop_destroy (mhdloop_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    mhdloop_t *self = *self_p;
    for (size_t i = 0; i < MHDLOOP_SERVERS; i++) {
        mhd_server_t *server = &self->servers[i];
        while (server->suspended)
            s_resume_now (self, server->suspended);
        server->resume_list = NULL;
        MHD_run (server->daemon);
        s_server_stop (server);
    }
    free (self->server_of);
    free (self);
    *self_p = NULL;
}

int
mhdloop_add_connection (mhdloop_t *self, int fd)
{
    // Not an IP socket: an AF_UNIX address says so (the client's address
    // stays with the front door).
    struct sockaddr_un address = { .sun_family = AF_UNIX };
    mhd_server_t *server = s_server_for (self, fd);
    if (MHD_add_connection (server->daemon, fd, (const struct sockaddr *) &address,
                            sizeof address) != MHD_YES) {
        log_warn (NULL, "http: the server refused a connection: %s", strerror (errno));
        return -1;
    }
    server->run_needed = true;
    return 0;
}

void
mhdloop_kick (mhdloop_t *self, int fd)
{
    s_server_of (self, fd)->run_needed = true;
}

void
mhdloop_suspend (mhdloop_t *self, mhdloop_conn_t *conn)
{
    if (conn->suspended)
        return;
    const union MHD_ConnectionInfo *info =
        MHD_get_connection_info (conn->connection, MHD_CONNECTION_INFO_CONNECTION_FD);
    assert (info);
    mhd_server_t *server = s_server_of (self, info->connect_fd);
    conn->server = (unsigned) (server - self->servers);
    conn->suspended = true;
    conn->prev = NULL;
    conn->next = server->suspended;
    if (server->suspended)
        server->suspended->prev = conn;
    server->suspended = conn;
    server->suspended_count++;
    self->suspended_count++;
    MHD_suspend_connection (conn->connection);
}

void
mhdloop_resume (mhdloop_t *self, mhdloop_conn_t *conn)
{
    if (!conn->suspended || conn->resume_queued)
        return;
    mhd_server_t *server = &self->servers[conn->server];
    conn->resume_queued = true;
    conn->resume_next = server->resume_list;
    server->resume_list = conn;
}

// s_resume_batch resumes a server's queued connections when their time has
// come (or at once with force), else makes the loop wake for it.
static void
s_resume_batch (mhdloop_t *self, mhd_server_t *server, bool force)
{
    if (!server->resume_list)
        return;
    int64_t now = evloop_now_ms (self->loop);
    int64_t spacing = (int64_t) (server->suspended_count / RESUME_BATCH_PARKED_PER_MS);
    if (!force && now - server->last_resume_ms < spacing) {
        evloop_wake_in (self->loop, spacing - (now - server->last_resume_ms));
        return;
    }
    mhdloop_conn_t *conn = server->resume_list;
    server->resume_list = NULL;
    while (conn) {
        mhdloop_conn_t *next = conn->resume_next;
        conn->resume_next = NULL;
        if (conn->resume_queued && conn->suspended)
            s_resume_now (self, conn);
        conn = next;
    }
    server->last_resume_ms = now;
}

void
mhdloop_resume_all (mhdloop_t *self)
{
    for (size_t i = 0; i < MHDLOOP_SERVERS; i++)
        s_resume_batch (self, &self->servers[i], true);
}

void
mhdloop_forget (mhdloop_t *self, mhdloop_conn_t *conn)
{
    if (conn->resume_queued) {
        mhd_server_t *server = &self->servers[conn->server];
        for (mhdloop_conn_t **at = &server->resume_list; *at; at = &(*at)->resume_next)
            if (*at == conn) {
                *at = conn->resume_next;
                break;
            }
        conn->resume_queued = false;
    }
    if (conn->suspended)
        s_unsuspended (self, conn);
}

void
mhdloop_on_idle (mhdloop_t *self)
{
    for (size_t i = 0; i < MHDLOOP_SERVERS; i++) {
        mhd_server_t *server = &self->servers[i];
        s_resume_batch (self, server, false);
        if (server->run_needed)
            s_server_run (server);
    }
}

size_t
mhdloop_suspended (const mhdloop_t *self)
{
    return self->suspended_count;
}

// --- self-test ---

// One request of the test server: "/now" is answered at once, "/park"
// waits until the test says its answer is ready.
typedef struct {
    mhdloop_conn_t conn;        // its parking state
    bool ready;                 // /park may be answered
} s_test_request_t;

// What the test server saw.
typedef struct {
    mhdloop_t *mhd;             // the server
    s_test_request_t *parked[8]; // /park requests, in arrival order
    size_t parked_count;        // how many
    int completed;              // requests completed
} s_test_server_t;

static enum MHD_Result
s_test_answer (struct MHD_Connection *connection, const char *text)
{
    struct MHD_Response *response = MHD_create_response_from_buffer (
        strlen (text), (void *) text, MHD_RESPMEM_PERSISTENT);
    enum MHD_Result rc = MHD_queue_response (connection, 200, response);
    MHD_destroy_response (response);
    return rc;
}

static enum MHD_Result
s_test_access (void *cls, struct MHD_Connection *connection, const char *url, const char *method,
               const char *version, const char *upload_data, size_t *upload_data_size,
               void **con_cls)
{
    s_test_server_t *server = cls;
    s_test_request_t *request = *con_cls;
    if (!request) {
        request = mem_calloc (1, sizeof *request);
        request->conn.connection = connection;
        *con_cls = request;
        return MHD_YES;
    }
    if (strcmp (url, "/now") == 0)
        return s_test_answer (connection, "now");
    if (request->ready)
        return s_test_answer (connection, "parked");
    if (!request->conn.suspended && server->parked_count < 8)
        server->parked[server->parked_count++] = request;
    mhdloop_suspend (server->mhd, &request->conn);
    return MHD_YES;
}

static void
s_test_completed (void *cls, struct MHD_Connection *connection, void **con_cls,
                  enum MHD_RequestTerminationCode code)
{
    s_test_server_t *server = cls;
    s_test_request_t *request = *con_cls;
    if (!request)
        return;
    mhdloop_forget (server->mhd, &request->conn);
    free (request);
    *con_cls = NULL;
    server->completed++;
}

static void
s_test_idle (evloop_t *loop, void *arg)
{
    mhdloop_on_idle (arg);
}

// s_test_client gives the server a connection and returns the client's end
// (non-blocking), after sending request on it.
static int
s_test_client (mhdloop_t *mhd, const char *path)
{
    int pair[2];
    assert (socketpair (AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, pair) == 0);
    assert (mhdloop_add_connection (mhd, pair[1]) == 0);
    char request[128];
    int len = snprintf (request, sizeof request, "GET %s HTTP/1.1\r\nHost: x\r\n\r\n", path);
    assert (write (pair[0], request, (size_t) len) == len);
    return pair[0];
}

// s_test_body reads what the server sent on fd and returns true when it is
// a 200 whose body is text ("" when nothing came).
static bool
s_test_body (int fd, const char *text)
{
    char answer[1024];
    ssize_t n = read (fd, answer, sizeof answer - 1);
    if (n <= 0)
        return *text == '\0';
    answer[n] = '\0';
    const char *body = strstr (answer, "\r\n\r\n");
    return strncmp (answer, "HTTP/1.1 200", 12) == 0 && body && strcmp (body + 4, text) == 0;
}

void
mhdloop_test (bool verbose)
{
    if (verbose)
        printf (" * mhdloop: ");
    evloop_t *loop = evloop_new ();
    s_test_server_t server = { 0 };
    mhdloop_limits_t limits = { .max_connections = 16, .timeout_s = 60,
                                .connection_memory = 16384, .connections_per_server = 2 };
    char error[256];
    server.mhd = mhdloop_new (loop, &limits, s_test_access, s_test_completed, &server, error,
                              sizeof error);
    assert (server.mhd);
    evloop_on_idle (loop, s_test_idle, server.mhd);

    // An answer decided when the request arrives leaves at once.
    int now = s_test_client (server.mhd, "/now");
    evloop_run_for (loop, 20);
    assert (s_test_body (now, "now") && server.completed == 1);

    // Parked requests hold no thread and send nothing until resumed; a
    // resume asked twice counts once.
    int first = s_test_client (server.mhd, "/park");
    int second = s_test_client (server.mhd, "/park");
    evloop_run_for (loop, 20);
    assert (server.parked_count == 2 && mhdloop_suspended (server.mhd) == 2);
    // While fewer than 2 were open, connections went to the first server.
    assert (server.parked[0]->conn.server == 0);
    assert (s_test_body (first, "") && s_test_body (second, ""));
    s_test_request_t *request = server.parked[0];
    request->ready = true;
    mhdloop_resume (server.mhd, &request->conn);
    mhdloop_resume (server.mhd, &request->conn);
    evloop_run_for (loop, 20);
    assert (mhdloop_suspended (server.mhd) == 1 && server.completed == 2);
    bool first_answered = s_test_body (first, "parked");
    assert (first_answered || s_test_body (second, "parked"));
    int last = first_answered ? second : first;
    assert (s_test_body (last, ""));

    // With more connections open, new ones are spread over more servers
    // (here one more per 2 open); each server parks and resumes its own.
    int more[4];
    for (size_t i = 0; i < 4; i++) {
        more[i] = s_test_client (server.mhd, "/park");
        evloop_run_for (loop, 10);
    }
    assert (server.parked_count == 6 && mhdloop_suspended (server.mhd) == 5);
    bool spread = false;
    for (size_t i = 3; i < 6; i++)
        spread |= server.parked[i]->conn.server != server.parked[2]->conn.server;
    assert (spread);
    for (size_t i = 2; i < 6; i++) {
        server.parked[i]->ready = true;
        mhdloop_resume (server.mhd, &server.parked[i]->conn);
    }
    evloop_run_for (loop, 20);
    assert (mhdloop_suspended (server.mhd) == 1 && server.completed == 6);
    for (size_t i = 0; i < 4; i++) {
        assert (s_test_body (more[i], "parked"));
        close (more[i]);
    }

    // Stopping resumes what is still parked: its answer goes out, and its
    // request completes.
    server.parked[1]->ready = true;
    mhdloop_destroy (&server.mhd);
    mhdloop_destroy (&server.mhd);
    assert (server.completed == 7);
    assert (s_test_body (last, "parked"));
    close (now);
    close (first);
    close (second);
    evloop_on_idle (loop, NULL, NULL);
    evloop_destroy (&loop);
    if (verbose)
        printf ("OK\n");
}
