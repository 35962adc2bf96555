// transfer — one attempt of one job: a libcurl easy handle and its state.
#include "transfer.h"
#include "llmusage.h"
#include "mem.h"
#include "scrub.h"
#include "ssrf.h"
#include "stream.h"

#include <assert.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>

// Connecting never needs more than this; the rest of the timeout is for
// the upstream to think.
#define CONNECT_TIMEOUT_MAX_MS 10000
#define USER_AGENT "jobgate-worker/0.1"
// libcurl's receive buffer, allocated per call: 16 KiB by default, a third
// of a call's memory when thousands are in flight (docs/performance.md).
// 2 KiB costs a large answer a few more reads, nothing else.
#define TRANSFER_BUFFER_BYTES 2048L

struct _transfer_t {
    job_t *job;                 // the job record from DISPATCH
    int attempt;                // this attempt's number (1-based)
    request_t *request;         // what to send
    response_t *response;       // what came back so far
    CURL *easy;                 // the libcurl handle
    const config_t *config;     // borrowed configuration (SSRF allow-list)
    bool allow_private;         // SSRF policy opt-out
    bool blocked;               // the SSRF policy refused a connection
    int64_t started_ms;         // monotonic start of the attempt
    void *handle;               // owner's bookkeeping (list entry)
    void *owner;                // the multi handle's owner running it
    char curl_error[CURL_ERROR_SIZE]; // libcurl's detailed error text
    stream_t *stream;           // SSE parser for a streamed llm call, or NULL
    bool sse_checked;           // the first body bytes decided whether it is SSE
    bool sse;                   // the answer is a 2xx event stream: parse, don't keep
    transfer_chunk_fn *chunk_fn;// where deltas go, or NULL
    void *chunk_arg;            // chunk_fn's argument
    int chunk_index;            // the next delta's index in this attempt
    scrub_t *scrub;             // keeps the provider's secret out of results and chunks, or NULL
};

// s_relay hands one piece of scrubbed stream text to the chunk function.
static void
s_relay (void *arg, const char *text, size_t len)
{
    transfer_t *self = arg;
    int index = self->chunk_index++;
    if (self->chunk_fn)
        self->chunk_fn (self, index, text, len, self->chunk_arg);
}

// s_on_delta relays one delta of a streamed answer as it arrives, scrubbed:
// a secret split across two deltas is held back until it can be replaced.
static void
s_on_delta (void *arg, const char *text, size_t len)
{
    transfer_t *self = arg;
    if (scrub_stream (self->scrub, text, len, s_relay, self) < 0)
        // Nothing unscrubbed may leave: the attempt ends (out of memory is
        // reported like an oversized answer).
        response_overflow (self->response);
}

// s_on_header hands one header line to the response.
static size_t
s_on_header (char *data, size_t size, size_t count, void *arg)
{
    transfer_t *self = arg;
    response_header (self->response, data, size * count);
    return size * count;
}

// s_on_body hands decoded body bytes to the response; a short count stops
// the transfer when the cap is reached.
static size_t
s_on_body (char *data, size_t size, size_t count, void *arg)
{
    transfer_t *self = arg;
    if (self->stream && !self->sse_checked) {
        // Only a successful event stream is parsed; an error answer (a JSON
        // 401, an HTML 502) is kept as it is, like any other result.
        self->sse_checked = true;
        long status = 0;
        curl_easy_getinfo (self->easy, CURLINFO_RESPONSE_CODE, &status);
        const char *type = response_header_value (self->response, "content-type");
        self->sse = status >= 200 && status <= 299 && type
                    && strncasecmp (type, "text/event-stream", 17) == 0;
    }
    if (self->sse) {
        if (stream_feed (self->stream, data, size * count, s_on_delta, self) < 0
            || response_overflowed (self->response)) {
            response_overflow (self->response);
            return 0;
        }
        return size * count;
    }
    return response_body (self->response, data, size * count) ? size * count : 0;
}

// s_on_open_socket opens each new connection libcurl makes, after the SSRF
// policy accepted the address it is about to connect to: the address DNS
// actually returned, so DNS rebinding does not get around it. A request
// sent on a connection already open is checked by s_on_prereq.
static curl_socket_t
s_on_open_socket (void *arg, curlsocktype purpose, struct curl_sockaddr *address)
{
    transfer_t *self = arg;
    if (purpose == CURLSOCKTYPE_IPCXN
        && !ssrf_policy_allows (&address->addr, self->allow_private,
                                self->config->allow_networks,
                                self->config->allow_networks_count)) {
        self->blocked = true;
        return CURL_SOCKET_BAD;
    }
    return socket (address->family, address->socktype | SOCK_CLOEXEC, address->protocol);
}

// s_on_prereq checks the address of the connection a request is about to
// be sent on, new or reused: libcurl 7.88 runs the open-socket check only
// for new sockets, and reuses a pooled connection for a redirect hop
// whatever CURLOPT_FRESH_CONNECT says, so this is the check that always
// runs (for the first request and every hop).
static int
s_on_prereq (void *arg, char *primary_ip, char *local_ip, int primary_port, int local_port)
{
    transfer_t *self = arg;
    struct sockaddr_storage address;
    // An address that does not parse is refused like a denied one.
    ssrf_address_parse (primary_ip, &address);
    if (ssrf_policy_allows ((const struct sockaddr *) &address, self->allow_private,
                            self->config->allow_networks, self->config->allow_networks_count))
        return CURL_PREREQFUNC_OK;
    self->blocked = true;
    return CURL_PREREQFUNC_ABORT;
}

// s_setup configures the easy handle. Returns 0, or -1 when libcurl refused
// an option (an old or oddly built libcurl).
static int
s_setup (transfer_t *self, const config_t *config)
{
    CURL *easy = self->easy;
    int64_t timeout = request_timeout_ms (self->request);
    int64_t connect_timeout = timeout < CONNECT_TIMEOUT_MAX_MS ? timeout : CONNECT_TIMEOUT_MAX_MS;
    bool crawl = request_is_crawl (self->request);
    CURLcode rc = CURLE_OK;
#define SET(option, value) \
    if (rc == CURLE_OK)     \
        rc = curl_easy_setopt (easy, option, value)
    SET (CURLOPT_PRIVATE, self);
    SET (CURLOPT_NOSIGNAL, 1L);
    SET (CURLOPT_ERRORBUFFER, self->curl_error);
    SET (CURLOPT_HEADERFUNCTION, s_on_header);
    SET (CURLOPT_HEADERDATA, self);
    SET (CURLOPT_WRITEFUNCTION, s_on_body);
    SET (CURLOPT_WRITEDATA, self);
    SET (CURLOPT_TIMEOUT_MS, (long) timeout);
    SET (CURLOPT_CONNECTTIMEOUT_MS, (long) connect_timeout);
    SET (CURLOPT_PROTOCOLS_STR, "http,https");
    SET (CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
    // Every encoding libcurl can decode; the cap counts decoded bytes, so a
    // compression bomb stops at the cap like any other large answer.
    SET (CURLOPT_ACCEPT_ENCODING, "");
    SET (CURLOPT_USERAGENT, USER_AGENT);
    SET (CURLOPT_BUFFERSIZE, TRANSFER_BUFFER_BYTES);
    // The declared length is refused early when it is over the cap; a crawl
    // keeps a truncated page instead.
    // A stream's cap is on the assembled text (stream.h), not on the wire.
    if (!crawl && !request_is_stream (self->request))
        SET (CURLOPT_MAXFILESIZE_LARGE, (curl_off_t) request_max_bytes (self->request));
    if (request_user_url (self->request)) {
        SET (CURLOPT_OPENSOCKETFUNCTION, s_on_open_socket);
        SET (CURLOPT_OPENSOCKETDATA, self);
        SET (CURLOPT_PREREQFUNCTION, s_on_prereq);
        SET (CURLOPT_PREREQDATA, self);
        // A proxy from the environment would make the policy check the
        // proxy's address instead of the target's.
        SET (CURLOPT_PROXY, "");
        // Defence in depth beside the checks above and the worker's separate
        // pools: a user's first request opens its own connection, and its
        // connections are not kept for anyone else's.
        SET (CURLOPT_FRESH_CONNECT, 1L);
        SET (CURLOPT_FORBID_REUSE, 1L);
    }
#undef SET
    if (rc != CURLE_OK)
        return -1;
    return request_apply (self->request, easy);
}

transfer_t *
transfer_new (job_t **job_p, int attempt, const config_t *config, char *error,
              size_t error_size)
{
    assert (job_p && *job_p);
    transfer_t *self = mem_calloc (1, sizeof *self);
    self->attempt = attempt;
    self->allow_private = config->allow_private_networks;
    self->config = config;
    self->request = request_new (*job_p, config, error, error_size);
    if (!self->request) {
        free (self);
        return NULL;
    }
    self->response = response_new (request_max_bytes (self->request),
                                   request_is_crawl (self->request));
    // curl_easy_init fails only when it cannot allocate the handle.
    self->easy = mem_lib (curl_easy_init ());
    if (request_is_stream (self->request))
        self->stream = stream_new (request_max_bytes (self->request));
    self->scrub = scrub_new (request_secret (self->request));
    response_redact (self->response, request_auth_header (self->request), self->scrub);
    if (s_setup (self, config) < 0) {
        snprintf (error, error_size, "cannot set up the transfer: libcurl refused an option");
        transfer_destroy (&self);
        return NULL;
    }
    self->job = *job_p;
    *job_p = NULL;
    return self;
}

void
transfer_destroy (transfer_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    transfer_t *self = *self_p;
    if (self->easy)
        curl_easy_cleanup (self->easy);
    response_destroy (&self->response);
    stream_destroy (&self->stream);
    request_destroy (&self->request);
    scrub_destroy (&self->scrub);
    job_destroy (&self->job);
    free (self);
    *self_p = NULL;
}

transfer_t *
transfer_of (CURL *easy)
{
    char *pointer = NULL;
    if (curl_easy_getinfo (easy, CURLINFO_PRIVATE, &pointer) != CURLE_OK)
        return NULL;
    return (transfer_t *) (void *) pointer;
}

CURL *
transfer_easy (transfer_t *self)
{
    return self->easy;
}

const job_t *
transfer_job (const transfer_t *self)
{
    return self->job;
}

int
transfer_attempt (const transfer_t *self)
{
    return self->attempt;
}

const request_t *
transfer_request (const transfer_t *self)
{
    return self->request;
}

void
transfer_start (transfer_t *self, int64_t now_ms)
{
    self->started_ms = now_ms;
}

int64_t
transfer_started_ms (const transfer_t *self)
{
    return self->started_ms;
}

// s_scheme_refused is true when libcurl refused a redirect to a scheme
// other than http(s) (CURLOPT_REDIR_PROTOCOLS_STR): it reports that with the
// same code as a status line it cannot read, but its effective URL is then
// the refused one.
static bool
s_scheme_refused (CURLcode code, const char *effective_url)
{
    if (code != CURLE_UNSUPPORTED_PROTOCOL || !effective_url)
        return false;
    CURLU *url = mem_lib (curl_url ());
    char *scheme = NULL;
    CURLUcode rc = curl_url_set (url, CURLUPART_URL, effective_url, CURLU_NON_SUPPORT_SCHEME);
    if (rc == CURLUE_OK)
        rc = curl_url_get (url, CURLUPART_SCHEME, &scheme, 0);
    mem_abort_if (rc == CURLUE_OUT_OF_MEMORY);
    bool refused = !scheme || (strcasecmp (scheme, "http") != 0
                               && strcasecmp (scheme, "https") != 0);
    curl_free (scheme);
    curl_url_cleanup (url);
    return refused;
}

// s_usage_of adds to the RESULT fields of an llm call that got an answer
// what it says it cost (its usage and model: from the stream's last chunks
// or the body) and what its headers say of the provider's token budget
// (docs/protocol.md §3.2, revision 3). A model name that holds the
// provider's secret is not kept.
static void
s_usage_of (transfer_t *self, response_outcome_t *out)
{
    out->remaining_tokens = out->reset_tokens_ms = -1;
    if (!request_is_llm (self->request) || out->status < 200)
        return;
    if (self->sse) {
        json_t *summary = stream_summary (self->stream);
        llmusage_of_answer (summary, &out->usage, &out->model);
        json_decref (summary);
    }
    else if (out->status <= 299) {
        size_t len;
        const char *body = response_body_bytes (self->response, &len);
        llmusage_of_body (body, len, RESPONSE_JSON_PARSE_MAX_BYTES, &out->usage, &out->model);
    }
    if (out->model && scrub_found (self->scrub, out->model, strlen (out->model))) {
        free (out->model);
        out->model = NULL;
    }
    out->ratelimit = true;
    out->remaining_tokens = llmusage_count (response_header_value (self->response,
                                                                   "x-ratelimit-remaining-tokens"));
    out->reset_tokens_ms = llmusage_duration_ms (response_header_value (self->response,
                                                                        "x-ratelimit-reset-tokens"));
}

void
transfer_finish (transfer_t *self, CURLcode code, int64_t now_ms, response_outcome_t *out)
{
    long status = 0;
    char *final_url = NULL;
    curl_easy_getinfo (self->easy, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_getinfo (self->easy, CURLINFO_EFFECTIVE_URL, &final_url);
    // The stream's last held-back text cannot begin a secret any more.
    if (self->sse)
        scrub_stream_end (self->scrub, s_relay, self);
    response_info_t info = {
        .code = code,
        .curl_detail = self->curl_error,
        .status = status,
        .latency_ms = now_ms - self->started_ms,
        .timeout_ms = request_timeout_ms (self->request),
        .blocked = self->blocked,
        .scheme_refused = s_scheme_refused (code, final_url),
        .crawl = request_is_crawl (self->request),
        .retry_all = request_is_webhook (self->request),
        .final_url = final_url,
        .now_s = (int64_t) time (NULL),
        .max_result_bytes = self->config->max_result_bytes,
    };
    // A complete stream becomes one chat.completion; a broken one is
    // reported by its transfer error like any other.
    if (self->sse && code == CURLE_OK) {
        char *completion = stream_completion (self->stream, self->config->max_result_bytes);
        if (!completion || response_set_body (self->response, completion, strlen (completion),
                                              true) < 0)
            response_overflow (self->response);
        free (completion);
    }
    response_finish (self->response, &info, out);
    s_usage_of (self, out);
}

void
transfer_set_chunk_fn (transfer_t *self, transfer_chunk_fn *fn, void *arg)
{
    self->chunk_fn = fn;
    self->chunk_arg = arg;
}

int
transfer_chunks (const transfer_t *self)
{
    return self->chunk_index;
}

void
transfer_set_handle (transfer_t *self, void *handle)
{
    self->handle = handle;
}

void *
transfer_handle (const transfer_t *self)
{
    return self->handle;
}

void
transfer_set_owner (transfer_t *self, void *owner)
{
    self->owner = owner;
}

void *
transfer_owner (const transfer_t *self)
{
    return self->owner;
}

// --- self-test ---

// s_job returns a job record for the test.
static job_t *
s_job (const char *kind, const char *spec)
{
    job_t *job = job_new ();
    assert (job);
    job_id_generate (job->id);
    job_set_str (&job->kind, kind);
    job_set_str (&job->spec, spec);
    job->timeout_ms = 2000;
    return job;
}

void
transfer_test (bool verbose)
{
    if (verbose)
        printf (" * transfer: ");
    char error[256];
    config_t *config = config_load (NULL, error, sizeof error);
    assert (config && !config->allow_private_networks);

    // An invalid spec leaves the job with the caller.
    job_t *job = s_job ("http", "{\"request\":{}}");
    transfer_t *transfer = transfer_new (&job, 1, config, error, sizeof error);
    assert (transfer == NULL && job != NULL);
    assert (strstr (error, "request.url"));
    job_destroy (&job);

    // A user URL towards loopback is refused by the SSRF policy before any
    // packet leaves: the socket is never opened.
    job = s_job ("http", "{\"request\":{\"url\":\"http://127.0.0.1:9/\"}}");
    transfer = transfer_new (&job, 2, config, error, sizeof error);
    assert (transfer && job == NULL);
    assert (transfer_of (transfer_easy (transfer)) == transfer);
    assert (transfer_attempt (transfer) == 2);
    assert (strcmp (transfer_job (transfer)->kind, "http") == 0);
    transfer_set_handle (transfer, &job);
    assert (transfer_handle (transfer) == &job);
    transfer_start (transfer, 0);
    CURLcode code = curl_easy_perform (transfer_easy (transfer));
    assert (code != CURLE_OK);
    response_outcome_t out;
    transfer_finish (transfer, code, 5, &out);
    assert (strcmp (out.outcome, "failed") == 0 && out.result == NULL);
    json_t *error_object = json_loads (out.error, 0, NULL);
    assert (error_object);
    assert (strcmp (json_string_value (json_object_get (error_object, "type")),
                    "blocked_by_policy") == 0);
    json_decref (error_object);
    response_outcome_free (&out);
    transfer_destroy (&transfer);
    transfer_destroy (&transfer);

    // The check before each request, on the address of the connection it
    // goes out on, new or reused (the one that always runs).
    job = s_job ("crawl", "{\"request\":{\"url\":\"http://example.com/\"}}");
    transfer = transfer_new (&job, 1, config, error, sizeof error);
    assert (transfer);
    static const struct {
        const char *address;    // conn_primary_ip as libcurl gives it
        bool allowed;           // the policy's verdict
    } connected[] = {
        { "127.0.0.1", false }, { "::1", false }, { "::ffff:127.0.0.1", false },
        { "169.254.169.254", false }, { "10.1.2.3", false }, { "not an address", false },
        { "", false }, { "93.184.215.14", true }, { "2606:2800:21f:cb07:6820:80da:af6b:8b2c", true },
    };
    for (size_t i = 0; i < sizeof connected / sizeof connected[0]; i++) {
        transfer->blocked = false;
        char ip[64];
        snprintf (ip, sizeof ip, "%s", connected[i].address);
        int verdict = s_on_prereq (transfer, ip, ip, 80, 40000);
        assert (verdict == (connected[i].allowed ? CURL_PREREQFUNC_OK : CURL_PREREQFUNC_ABORT));
        assert (transfer->blocked == !connected[i].allowed);
    }
    assert (s_on_prereq (transfer, NULL, NULL, 0, 0) == CURL_PREREQFUNC_ABORT);
    transfer_destroy (&transfer);
    // A redirect that leaves http(s) is the policy's refusal; the same code
    // with an http URL is a status line libcurl could not read.
    assert (s_scheme_refused (CURLE_UNSUPPORTED_PROTOCOL, "ftp://127.0.0.1/x"));
    assert (s_scheme_refused (CURLE_UNSUPPORTED_PROTOCOL, "gopher://a:70/"));
    assert (!s_scheme_refused (CURLE_UNSUPPORTED_PROTOCOL, "http://127.0.0.1:9/"));
    assert (!s_scheme_refused (CURLE_UNSUPPORTED_PROTOCOL, "HTTPS://example.com/"));
    assert (!s_scheme_refused (CURLE_COULDNT_CONNECT, "ftp://127.0.0.1/x"));

    // The same for IPv6 loopback and the cloud metadata address, through a
    // crawl (whose redirects would be checked the same way).
    const char *blocked[] = { "{\"request\":{\"url\":\"http://[::1]:9/\"}}",
                              "{\"request\":{\"url\":\"http://169.254.169.254/latest\"}}" };
    for (size_t i = 0; i < 2; i++) {
        job = s_job ("crawl", blocked[i]);
        transfer = transfer_new (&job, 1, config, error, sizeof error);
        assert (transfer);
        code = curl_easy_perform (transfer_easy (transfer));
        transfer_finish (transfer, code, 0, &out);
        assert (strcmp (out.outcome, "failed") == 0);
        assert (strstr (out.error, "blocked_by_policy"));
        response_outcome_free (&out);
        transfer_destroy (&transfer);
    }
    config_destroy (&config);
    if (verbose)
        printf ("OK\n");
}
