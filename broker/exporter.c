// exporter — the broker's HTTP listener for Prometheus.
#include "exporter.h"
#include "listenaddr.h"
#include "log.h"
#include "mem.h"

#include <arpa/inet.h>
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

// The longest the server goes without running (see the header).
#define RUN_AT_LEAST_EVERY_MS 1000
// Each connection's memory pool: a scraper's request head fits easily.
#define CONNECTION_MEMORY 16384

struct _exporter_t {
    evloop_t *loop;             // borrowed event loop
    struct MHD_Daemon *daemon;  // the HTTP server
    int epoll_fd;               // its epoll fd, watched by the loop
    evloop_timer_t *timer;      // its next run
    exporter_render_fn *render; // makes the metrics text
    void *render_arg;           // its argument
    int port;                   // the port listened on
    unsigned long scrapes;      // answers sent with the metrics
};

static void s_run (exporter_t *self);

static void
s_timeout (evloop_t *loop, void *arg)
{
    exporter_t *self = arg;
    self->timer = NULL;
    s_run (self);
}

// s_run runs the server and sets its next run: its own timeout, or within
// RUN_AT_LEAST_EVERY_MS.
static void
s_run (exporter_t *self)
{
    MHD_run (self->daemon);
    evloop_timer_cancel (self->loop, &self->timer);
    MHD_UNSIGNED_LONG_LONG timeout;
    int64_t next = RUN_AT_LEAST_EVERY_MS;
    if (MHD_get_timeout (self->daemon, &timeout) == MHD_YES && (int64_t) timeout < next)
        next = (int64_t) timeout;
    self->timer = evloop_timer_start (self->loop, next, s_timeout, self);
}

static void
s_ready (evloop_t *loop, int fd, int events, void *arg)
{
    s_run (arg);
}

static void
s_log (void *cls, const char *fmt, va_list ap)
{
    char line[512];
    vsnprintf (line, sizeof line, fmt, ap);
    size_t len = strlen (line);
    while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
        line[--len] = '\0';
    log_debug (NULL, "metrics http: %s", line);
}

// s_answer queues a response of text (taken) with status and content type.
static enum MHD_Result
s_answer (struct MHD_Connection *connection, unsigned int status, char *text, size_t size,
          const char *type, const char *allow)
{
    struct MHD_Response *response
        = MHD_create_response_from_buffer (size, text, MHD_RESPMEM_MUST_FREE);
    if (!response) {
        free (text);
        return MHD_NO;
    }
    MHD_add_response_header (response, MHD_HTTP_HEADER_CONTENT_TYPE, type);
    if (allow)
        MHD_add_response_header (response, MHD_HTTP_HEADER_ALLOW, allow);
    enum MHD_Result result = MHD_queue_response (connection, status, response);
    MHD_destroy_response (response);
    return result;
}

static enum MHD_Result
s_access (void *cls, struct MHD_Connection *connection, const char *url, const char *method,
          const char *version, const char *upload_data, size_t *upload_data_size,
          void **con_cls)
{
    exporter_t *self = cls;
    // A body is not read: the answer goes once the head is in.
    if (*upload_data_size > 0) {
        *upload_data_size = 0;
        return MHD_YES;
    }
    if (strcmp (url, "/metrics") != 0) {
        char *text = mem_strdup ("not found: the broker serves GET /metrics only\n");
        return s_answer (connection, MHD_HTTP_NOT_FOUND, text, strlen (text),
                         "text/plain; charset=utf-8", NULL);
    }
    if (strcmp (method, "GET") != 0 && strcmp (method, "HEAD") != 0) {
        char *text = mem_strdup ("method not allowed: use GET /metrics\n");
        return s_answer (connection, MHD_HTTP_METHOD_NOT_ALLOWED, text, strlen (text),
                         "text/plain; charset=utf-8", "GET, HEAD");
    }
    size_t size = 0;
    char *text = self->render (self->render_arg, &size);
    self->scrapes++;
    return s_answer (connection, MHD_HTTP_OK, text, size, "text/plain; version=0.0.4", NULL);
}

exporter_t *
exporter_new (evloop_t *loop, const char *listen, exporter_render_fn *render, void *arg,
              char *error, size_t error_size)
{
    struct sockaddr_storage addr;
    if (listenaddr_parse (listen, &addr) < 0) {
        snprintf (error, error_size, "broker.metrics_listen \"%s\" is not HOST:PORT", listen);
        return NULL;
    }
    exporter_t *self = mem_calloc (1, sizeof *self);
    self->loop = loop;
    self->render = render;
    self->render_arg = arg;
    unsigned int flags = MHD_USE_EPOLL | MHD_USE_ERROR_LOG;
    if (addr.ss_family == AF_INET6)
        flags |= MHD_USE_IPv6;
    self->daemon = MHD_start_daemon (
        flags, 0, NULL, NULL, s_access, self, MHD_OPTION_SOCK_ADDR, (struct sockaddr *) &addr,
        MHD_OPTION_EXTERNAL_LOGGER, s_log, self, MHD_OPTION_CONNECTION_LIMIT,
        (unsigned int) EXPORTER_CONNECTIONS_MAX, MHD_OPTION_CONNECTION_TIMEOUT,
        (unsigned int) EXPORTER_TIMEOUT_S, MHD_OPTION_CONNECTION_MEMORY_LIMIT,
        (size_t) CONNECTION_MEMORY, MHD_OPTION_STRICT_FOR_CLIENT, (int) 1, MHD_OPTION_END);
    if (!self->daemon) {
        snprintf (error, error_size, "broker: cannot serve metrics on %s: %s", listen,
                  strerror (errno));
        free (self);
        return NULL;
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info (self->daemon, MHD_DAEMON_INFO_EPOLL_FD);
    self->epoll_fd = info->epoll_fd;
    info = MHD_get_daemon_info (self->daemon, MHD_DAEMON_INFO_BIND_PORT);
    self->port = info ? info->port : 0;
    if (evloop_fd_add (loop, self->epoll_fd, EVLOOP_READ, s_ready, self) < 0) {
        snprintf (error, error_size, "broker: cannot watch the metrics server: %s",
                  strerror (errno));
        MHD_stop_daemon (self->daemon);
        free (self);
        return NULL;
    }
    s_run (self);
    return self;
}

void
exporter_destroy (exporter_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    exporter_t *self = *self_p;
    evloop_fd_remove (self->loop, self->epoll_fd);
    evloop_timer_cancel (self->loop, &self->timer);
    MHD_stop_daemon (self->daemon);
    free (self);
    *self_p = NULL;
}

int
exporter_port (const exporter_t *self)
{
    return self->port;
}

unsigned long
exporter_scrapes (const exporter_t *self)
{
    return self->scrapes;
}

// --- self-test ---

static int s_test_renders;

static char *
s_test_render (void *arg, size_t *size)
{
    s_test_renders++;
    char *text = mem_strdup ((const char *) arg);
    *size = strlen (text);
    return text;
}

// s_test_ask sends request to 127.0.0.1:port and returns what came back
// before the server closed or 3 s passed (the caller frees it), running
// loop meanwhile.
static char *
s_test_ask (evloop_t *loop, int port, const char *request)
{
    int fd = socket (AF_INET, SOCK_STREAM, 0);
    assert (fd >= 0);
    struct sockaddr_in addr = { .sin_family = AF_INET, .sin_port = htons ((uint16_t) port) };
    addr.sin_addr.s_addr = htonl (INADDR_LOOPBACK);
    assert (connect (fd, (struct sockaddr *) &addr, sizeof addr) == 0);
    assert (send (fd, request, strlen (request), 0) == (ssize_t) strlen (request));
    fcntl (fd, F_SETFL, O_NONBLOCK);
    char *answer = mem_calloc (1, 65536);
    size_t got = 0;
    for (int turn = 0; turn < 300; turn++) {
        evloop_run_for (loop, 10);
        ssize_t n = recv (fd, answer + got, 65535 - got, 0);
        if (n == 0)
            break;
        if (n > 0)
            got += (size_t) n;
    }
    close (fd);
    return answer;
}

void
exporter_test (bool verbose)
{
    if (verbose)
        printf (" * exporter: ");
    evloop_t *loop = evloop_new ();
    char error[256];
    const char *text = "# TYPE jobgate_up gauge\njobgate_up 1\n";
    // Not an address: refused with a line that says which key.
    assert (!exporter_new (loop, "localhost", s_test_render, (void *) text, error, sizeof error));
    assert (strstr (error, "broker.metrics_listen"));
    exporter_t *exporter = exporter_new (loop, "127.0.0.1:0", s_test_render, (void *) text,
                                         error, sizeof error);
    assert (exporter);
    int port = exporter_port (exporter);
    assert (port > 0);
    // A second listener on the same port fails with a clear line.
    char listen[32];
    snprintf (listen, sizeof listen, "127.0.0.1:%d", port);
    exporter_t *twice = exporter_new (loop, listen, s_test_render, NULL, error, sizeof error);
    assert (!twice && strstr (error, "cannot serve metrics"));

    char *answer = s_test_ask (loop, port, "GET /metrics HTTP/1.1\r\nHost: localhost\r\n"
                                           "Connection: close\r\n\r\n");
    assert (strncmp (answer, "HTTP/1.1 200", 12) == 0);
    assert (strstr (answer, "Content-Type: text/plain; version=0.0.4"));
    assert (strstr (answer, "\r\n\r\n# TYPE jobgate_up gauge\njobgate_up 1\n"));
    free (answer);
    assert (s_test_renders == 1 && exporter_scrapes (exporter) == 1);

    answer = s_test_ask (loop, port, "GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    assert (strncmp (answer, "HTTP/1.1 404", 12) == 0);
    free (answer);
    answer = s_test_ask (loop, port, "POST /metrics HTTP/1.1\r\nHost: localhost\r\n"
                                     "Content-Length: 3\r\nConnection: close\r\n\r\nabc");
    assert (strncmp (answer, "HTTP/1.1 405", 12) == 0 && strstr (answer, "Allow: GET, HEAD"));
    free (answer);
    // Garbage gets an error answer or a close, and the server goes on.
    answer = s_test_ask (loop, port, "\x01\x02 nonsense\r\n\r\n");
    assert (strncmp (answer, "HTTP/1.1 200", 12) != 0);
    free (answer);
    assert (s_test_renders == 1);

    // More clients than it holds at once: the extra ones wait in the
    // backlog and are served once others leave (the server runs again).
    int idle[EXPORTER_CONNECTIONS_MAX + 4];
    for (size_t i = 0; i < sizeof idle / sizeof idle[0]; i++) {
        idle[i] = socket (AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in addr = { .sin_family = AF_INET, .sin_port = htons ((uint16_t) port) };
        addr.sin_addr.s_addr = htonl (INADDR_LOOPBACK);
        assert (connect (idle[i], (struct sockaddr *) &addr, sizeof addr) == 0);
    }
    evloop_run_for (loop, 50);
    for (size_t i = 0; i < sizeof idle / sizeof idle[0]; i++)
        close (idle[i]);
    evloop_run_for (loop, 50);
    answer = s_test_ask (loop, port, "GET /metrics HTTP/1.0\r\n\r\n");
    assert (strstr (answer, " 200 ") && strstr (answer, "jobgate_up 1\n"));
    free (answer);
    assert (exporter_scrapes (exporter) == 2);

    exporter_destroy (&exporter);
    exporter_destroy (&exporter);
    evloop_destroy (&loop);
    if (verbose)
        printf ("OK\n");
}
