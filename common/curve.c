// curve — CURVE security of every ZeroMQ socket (docs/protocol.md §1.1).
#include "curve.h"
#include "clock.h"
#include "log.h"
#include "mem.h"

#include <assert.h>
#include <errno.h>
#include <sodium.h>
#include <string.h>
#include <unistd.h>

// A Z85 key is 40 characters for 32 bytes.
#define CURVE_KEY_TEXT 40
#define CURVE_KEY_BYTES 32
// A key file holds one key and whitespace; an authorized-keys file one key
// per line and comments. Anything larger is not one.
#define CURVE_KEY_FILE_MAX 4096
#define CURVE_KEYS_FILE_MAX (4 * 1024 * 1024)
// The ZAP domain of the broker's sockets (RFC 27): names them to zauth.
#define CURVE_ZAP_DOMAIN "jobgate"

// One watched socket: libzmq's monitor of its handshakes, read on the loop.
typedef struct {
    curve_t *owner;             // the curve object counting its refusals
    zsock_t *sock;              // the socket watched (borrowed)
    zsock_t *monitor;           // PAIR receiving the socket's monitor events
    evloop_t *loop;             // the loop the monitor is read on (borrowed)
    char name[32];              // which socket, for the log ("backend")
    uint64_t unlogged[CURVE_REFUSED_COUNT_]; // refusals on it not yet in a log line
    int64_t logged_ms[CURVE_REFUSED_COUNT_]; // monotonic time a reason was last logged, 0 never
} watch_t;

struct _curve_t {
    bool enabled;               // security.curve is set
    bool server;                // the broker (accepts) rather than a client (connects)
    zcert_t *cert;              // this process's key pair
    char broker_key[CURVE_KEY_TEXT + 1]; // a client's: the broker's public key (Z85)
    zactor_t *auth;             // a server's zauth actor (ZAP handler), or NULL
    size_t authorized;          // a server's: distinct keys it accepts
    zlistx_t *watches;          // watch_t * of the sockets watched
    uint64_t refused[CURVE_REFUSED_COUNT_];  // handshakes failed, by reason
};

static const char *const s_refusal_names[CURVE_REFUSED_COUNT_] = {
    "no_key", "wrong_key", "unlisted_key", "other"
};

const char *
curve_refusal_name (curve_refusal_t reason)
{
    return (unsigned) reason < CURVE_REFUSED_COUNT_ ? s_refusal_names[reason] : "?";
}

// --- keys ---

// s_trim returns text without surrounding whitespace, cut in place.
static char *
s_trim (char *text)
{
    while (*text == ' ' || *text == '\t' || *text == '\r' || *text == '\n')
        text++;
    size_t len = strlen (text);
    while (len > 0 && strchr (" \t\r\n", text[len - 1]))
        text[--len] = '\0';
    return text;
}

// s_read_file reads path whole (at most max bytes) into a new string, or
// returns NULL with a reason in error.
static char *
s_read_file (const char *path, size_t max, const char *key, char *error, size_t error_size)
{
    FILE *file = fopen (path, "rb");
    if (!file) {
        snprintf (error, error_size, "config: %s: cannot read %s: %s", key, path,
                  strerror (errno));
        return NULL;
    }
    char *text = mem_calloc (1, max + 1);
    size_t size = fread (text, 1, max + 1, file);
    bool failed = ferror (file);
    fclose (file);
    if (failed || size > max) {
        snprintf (error, error_size, "config: %s: %s %s", key, path,
                  failed ? "cannot be read" : "is too large to hold keys");
        sodium_memzero (text, size);
        free (text);
        return NULL;
    }
    text[size] = '\0';
    return text;
}

// s_decode checks that text is one Z85 key and decodes it into key.
static bool
s_decode (const char *text, uint8_t key[CURVE_KEY_BYTES])
{
    return strlen (text) == CURVE_KEY_TEXT && zmq_z85_decode (key, text) != NULL;
}

// s_load_key reads the key named name (security.curve.NAME) from its inline
// value or its file (exactly one of them; neither is allowed unless
// required) into key. Returns 1 when found, 0 when absent, -1 on error.
static int
s_load_key (const char *inline_value, const char *file, const char *name, bool required,
            uint8_t key[CURVE_KEY_BYTES], char *error, size_t error_size)
{
    if (inline_value && file) {
        snprintf (error, error_size, "config: security.curve.%s and %s_file are both set: "
                  "give one", name, name);
        return -1;
    }
    if (!inline_value && !file) {
        if (required)
            snprintf (error, error_size, "config: security.curve.%s (or %s_file) is required "
                      "with CURVE on", name, name);
        return required ? -1 : 0;
    }
    char where[96];
    snprintf (where, sizeof where, "security.curve.%s%s", name, file ? "_file" : "");
    char *text = file ? s_read_file (file, CURVE_KEY_FILE_MAX, where, error, error_size)
                      : mem_strdup (inline_value);
    if (!text)
        return -1;
    bool ok = s_decode (s_trim (text), key);
    sodium_memzero (text, strlen (text));
    free (text);
    if (!ok) {
        snprintf (error, error_size, "config: %s%s%s must hold a Z85 key of 40 characters", where,
                  file ? " " : "", file ? file : "");
        return -1;
    }
    return 1;
}

// s_authorize adds one public key to the store (once).
static void
s_authorize (curve_t *self, zcertstore_t *store, const uint8_t key[CURVE_KEY_BYTES])
{
    char text[CURVE_KEY_TEXT + 1];
    zmq_z85_encode (text, key, CURVE_KEY_BYTES);
    if (zcertstore_lookup (store, text))
        return;
    // The store keeps certificates; only their public half is ever read.
    static const uint8_t unused_secret[CURVE_KEY_BYTES];
    zcert_t *cert = mem_lib (zcert_new_from (key, unused_secret));
    zcertstore_insert (store, &cert);
    self->authorized++;
}

// s_load_authorized fills store with authorized_keys and the keys of
// authorized_keys_file. Returns 0 or -1.
static int
s_load_authorized (curve_t *self, const config_t *config, zcertstore_t *store, char *error,
                   size_t error_size)
{
    uint8_t key[CURVE_KEY_BYTES];
    for (size_t i = 0; i < config->curve_authorized_keys_count; i++) {
        if (!s_decode (config->curve_authorized_keys[i], key)) {
            snprintf (error, error_size, "config: security.curve.authorized_keys[%zu] is not a "
                      "Z85 key", i);
            return -1;
        }
        s_authorize (self, store, key);
    }
    const char *path = config->curve_authorized_keys_file;
    if (!path)
        return 0;
    char *text = s_read_file (path, CURVE_KEYS_FILE_MAX, "security.curve.authorized_keys_file",
                              error, error_size);
    if (!text)
        return -1;
    int rc = 0;
    size_t number = 0;
    for (char *line = text, *next; line && rc == 0; line = next) {
        number++;
        next = strchr (line, '\n');
        if (next)
            *next++ = '\0';
        // '#' is a Z85 character, but the last of the alphabet (84): a group
        // starting with it is over 2^32, so no key starts with it. A comment
        // is a line that starts with '#', or what follows a key after
        // whitespace.
        char *entry = s_trim (line);
        if (!*entry || *entry == '#')
            continue;
        char *rest = entry + strnlen (entry, CURVE_KEY_TEXT);
        char *after = rest;
        while (*after == ' ' || *after == '\t')
            after++;
        bool trailing_ok = *after == '\0' || (after > rest && *after == '#');
        *rest = '\0';
        if (trailing_ok && s_decode (entry, key))
            s_authorize (self, store, key);
        else {
            snprintf (error, error_size, "config: security.curve.authorized_keys_file %s:%zu is "
                      "not a Z85 key of 40 characters", path, number);
            rc = -1;
        }
    }
    free (text);
    return rc;
}

// s_configured is true when any security.curve key is set.
static bool
s_configured (const config_t *config)
{
    return config->curve_public_key || config->curve_secret_key || config->curve_public_key_file
           || config->curve_secret_key_file || config->curve_broker_public_key
           || config->curve_broker_public_key_file || config->curve_authorized_keys
           || config->curve_authorized_keys_file;
}

// s_new is curve_new; with check_only it reads and checks the keys and
// starts nothing, logs nothing (curve_check).
static curve_t *
s_new (const config_t *config, bool server, bool check_only, char *error, size_t error_size)
{
    curve_t *self = mem_calloc (1, sizeof *self);
    self->server = server;
    self->watches = zlistx_new ();
    if (!s_configured (config))
        return self;
    self->enabled = true;
    uint8_t public_key[CURVE_KEY_BYTES], secret_key[CURVE_KEY_BYTES], derived[CURVE_KEY_BYTES];
    if (s_load_key (config->curve_public_key, config->curve_public_key_file, "public_key", true,
                    public_key, error, error_size) < 0
        || s_load_key (config->curve_secret_key, config->curve_secret_key_file, "secret_key", true,
                       secret_key, error, error_size) < 0) {
        curve_destroy (&self);
        return NULL;
    }
    // A public key that is not the secret key's would fail every handshake
    // with a cryptographic error far from its cause: say it here.
    bool pair = crypto_scalarmult_base (derived, secret_key) == 0
                && sodium_memcmp (derived, public_key, CURVE_KEY_BYTES) == 0;
    if (pair)
        self->cert = mem_lib (zcert_new_from (public_key, secret_key));
    sodium_memzero (secret_key, sizeof secret_key);
    if (!pair) {
        snprintf (error, error_size, "config: security.curve.public_key is not the public key of "
                  "security.curve.secret_key");
        curve_destroy (&self);
        return NULL;
    }
    if (!server) {
        uint8_t broker_key[CURVE_KEY_BYTES];
        if (s_load_key (config->curve_broker_public_key, config->curve_broker_public_key_file,
                        "broker_public_key", true, broker_key, error, error_size) < 0) {
            curve_destroy (&self);
            return NULL;
        }
        zmq_z85_encode (self->broker_key, broker_key, CURVE_KEY_BYTES);
        if (!check_only)
            log_info (NULL, "CURVE on: this process's public key %s, the broker's %s",
                      zcert_public_txt (self->cert), self->broker_key);
        return self;
    }
    zcertstore_t *store = mem_lib (zcertstore_new (NULL));
    if (s_load_authorized (self, config, store, error, error_size) < 0) {
        zcertstore_destroy (&store);
        curve_destroy (&self);
        return NULL;
    }
    if (self->authorized == 0) {
        zcertstore_destroy (&store);
        snprintf (error, error_size, "config: security.curve.authorized_keys (or "
                  "authorized_keys_file) lists no key: no gateway or worker could connect");
        curve_destroy (&self);
        return NULL;
    }
    if (check_only) {
        zcertstore_destroy (&store);
        return self;
    }
    // zauth takes the store; it answers ZAP requests on czmq's context
    // from its own thread (czmq's design: a handler must answer while the
    // libzmq I/O thread waits), and must exist before a socket binds.
    self->auth = zactor_new (zauth, store);
    if (!self->auth) {
        zcertstore_destroy (&store);
        snprintf (error, error_size, "curve: cannot start the ZAP handler (zauth)");
        curve_destroy (&self);
        return NULL;
    }
    log_info (NULL, "CURVE on: this broker's public key %s, %zu authorized keys",
              zcert_public_txt (self->cert), self->authorized);
    return self;
}

curve_t *
curve_new (const config_t *config, bool server, char *error, size_t error_size)
{
    return s_new (config, server, false, error, error_size);
}

int
curve_check (const config_t *config, bool server, char *error, size_t error_size)
{
    curve_t *curve = s_new (config, server, true, error, error_size);
    if (!curve)
        return -1;
    curve_destroy (&curve);
    return 0;
}

void
curve_destroy (curve_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    curve_t *self = *self_p;
    watch_t *watch;
    while (self->watches && (watch = zlistx_first (self->watches)) != NULL)
        curve_unwatch (self, watch->sock);
    zlistx_destroy (&self->watches);
    zactor_destroy (&self->auth);
    zcert_destroy (&self->cert);
    free (self);
    *self_p = NULL;
}

bool
curve_enabled (const curve_t *self)
{
    return self && self->enabled;
}

void
curve_secure (curve_t *self, zsock_t *sock)
{
    if (!curve_enabled (self))
        return;
    zcert_apply (self->cert, sock);
    if (self->server) {
        zsock_set_curve_server (sock, 1);
        zsock_set_zap_domain (sock, CURVE_ZAP_DOMAIN);
    }
    else
        zsock_set_curve_serverkey (sock, self->broker_key);
}

// --- refused handshakes ---

// s_classify says why a handshake failed, from a monitor event, on the
// server or a client side.
static curve_refusal_t
s_classify (bool server, uint16_t event, uint32_t value)
{
    // A CURVE server gives no reason when a HELLO does not decrypt: it
    // closes the connection, which its client sees as the peer hanging up.
    if (!server && event == ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL
        && (value == EPIPE || value == ECONNRESET))
        return CURVE_REFUSED_WRONG_KEY;
    if (event == ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL) {
        if (value == ZMQ_PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH)
            return CURVE_REFUSED_NO_KEY;
        if (value == ZMQ_PROTOCOL_ERROR_ZMTP_CRYPTOGRAPHIC)
            return CURVE_REFUSED_WRONG_KEY;
    }
    if (event == ZMQ_EVENT_HANDSHAKE_FAILED_AUTH && value == 400)
        return CURVE_REFUSED_UNLISTED_KEY;
    return CURVE_REFUSED_OTHER;
}

// s_explain says in a log line what a refusal means on this side.
static const char *
s_explain (const curve_t *self, curve_refusal_t reason)
{
    static const char *const server_text[CURVE_REFUSED_COUNT_] = {
        "it has no CURVE key", "its key does not match (another broker key, or a broken pair)",
        "its public key is not in security.curve.authorized_keys",
        "the handshake failed or the peer left it (a refused peer often hangs up first)"
    };
    static const char *const client_text[CURVE_REFUSED_COUNT_] = {
        "the broker does not speak CURVE",
        "the broker closed the handshake: is security.curve.broker_public_key the broker's?",
        "the broker does not list this process's public key in its authorized_keys",
        "the handshake failed"
    };
    return self->server ? server_text[reason] : client_text[reason];
}

// s_refused counts one failed handshake on a watched socket and logs it:
// a reason's first on the socket at once, later ones at most once per
// CURVE_LOG_INTERVAL_MS with their count (a refused peer reconnects every
// 100 ms or so). endpoint is the socket's (libzmq's monitor names no peer
// for an accepted connection).
static void
s_refused (watch_t *watch, uint16_t event, uint32_t value, const char *endpoint)
{
    curve_t *self = watch->owner;
    curve_refusal_t reason = s_classify (self->server, event, value);
    self->refused[reason]++;
    watch->unlogged[reason]++;
    int64_t now = clock_mono_ms ();
    if (watch->logged_ms[reason] && now - watch->logged_ms[reason] < CURVE_LOG_INTERVAL_MS)
        return;
    char detail[64] = "";
    if (reason == CURVE_REFUSED_OTHER)
        snprintf (detail, sizeof detail, " (monitor event 0x%x, value 0x%x)", event, value);
    if (self->server)
        log_warn (NULL, "CURVE: refused %llu peer handshakes (%s) on %s %s: %s%s",
                  (unsigned long long) watch->unlogged[reason], curve_refusal_name (reason),
                  watch->name, endpoint, s_explain (self, reason), detail);
    else
        log_error (NULL, "CURVE: %llu handshakes with the broker refused (%s) on %s %s: %s%s",
                   (unsigned long long) watch->unlogged[reason], curve_refusal_name (reason),
                   watch->name, endpoint, s_explain (self, reason), detail);
    watch->unlogged[reason] = 0;
    watch->logged_ms[reason] = now;
}

// s_on_monitor reads one monitor event: [u16 event, u32 value] [address].
static void
s_on_monitor (evloop_t *loop, zsock_t *sock, void *arg)
{
    watch_t *watch = arg;
    zmsg_t *msg = zmsg_recv (sock);
    if (!msg)
        return;
    zframe_t *head = zmsg_first (msg);
    zframe_t *address = zmsg_next (msg);
    if (head && zframe_size (head) == 6) {
        uint16_t event;
        uint32_t value;
        memcpy (&event, zframe_data (head), sizeof event);
        memcpy (&value, zframe_data (head) + 2, sizeof value);
        char endpoint[128] = "?";
        if (address)
            snprintf (endpoint, sizeof endpoint, "%.*s", (int) zframe_size (address),
                      (const char *) zframe_data (address));
        s_refused (watch, event, value, endpoint);
    }
    zmsg_destroy (&msg);
}

int
curve_watch (curve_t *self, evloop_t *loop, zsock_t *sock, const char *name)
{
    if (!curve_enabled (self))
        return 0;
    static unsigned s_watch_number;
    char endpoint[96];
    snprintf (endpoint, sizeof endpoint, "inproc://jobgate-curve-monitor-%d-%u", (int) getpid (),
              ++s_watch_number);
    int events = ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL | ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL
                 | ZMQ_EVENT_HANDSHAKE_FAILED_AUTH;
    if (zmq_socket_monitor (zsock_resolve (sock), endpoint, events) < 0) {
        log_error (NULL, "CURVE: cannot watch the %s socket: %s", name, zmq_strerror (zmq_errno ()));
        return -1;
    }
    watch_t *watch = mem_calloc (1, sizeof *watch);
    watch->owner = self;
    watch->sock = sock;
    watch->loop = loop;
    snprintf (watch->name, sizeof watch->name, "%s", name);
    watch->monitor = zsock_new (ZMQ_PAIR);
    if (!watch->monitor || zsock_connect (watch->monitor, "%s", endpoint) < 0
        || evloop_sock_add (loop, watch->monitor, s_on_monitor, watch) < 0) {
        log_error (NULL, "CURVE: cannot read the %s socket's monitor", name);
        zmq_socket_monitor (zsock_resolve (sock), NULL, 0);
        zsock_destroy (&watch->monitor);
        free (watch);
        return -1;
    }
    zlistx_add_end (self->watches, watch);
    return 0;
}

void
curve_unwatch (curve_t *self, zsock_t *sock)
{
    if (!self || !self->watches)
        return;
    for (watch_t *watch = zlistx_first (self->watches); watch;
         watch = zlistx_next (self->watches)) {
        if (watch->sock != sock)
            continue;
        zlistx_detach_cur (self->watches);
        zmq_socket_monitor (zsock_resolve (sock), NULL, 0);
        evloop_sock_remove (watch->loop, watch->monitor);
        zsock_destroy (&watch->monitor);
        free (watch);
        return;
    }
}

uint64_t
curve_refused (const curve_t *self, curve_refusal_t reason)
{
    return self && (unsigned) reason < CURVE_REFUSED_COUNT_ ? self->refused[reason] : 0;
}

int
curve_print_keypair (FILE *out)
{
    zcert_t *cert = zcert_new ();
    if (!cert)
        return -1;
    // Z85 has neither '"' nor '\\': the keys go into JSON as they are.
    int rc = fprintf (out, "{\"public_key\":\"%s\",\"secret_key\":\"%s\"}\n",
                      zcert_public_txt (cert), zcert_secret_txt (cert)) < 0 ? -1 : 0;
    zcert_destroy (&cert);
    return rc;
}

// --- self-test ---

// s_test_pair makes a key pair as --gen-keypair prints it.
static void
s_test_pair (char public_text[41], char secret_text[41])
{
    char *text = NULL;
    size_t size = 0;
    FILE *out = open_memstream (&text, &size);
    assert (out && curve_print_keypair (out) == 0);
    fclose (out);
    assert (strlen (text) == strlen ("{\"public_key\":\"\",\"secret_key\":\"\"}\n") + 80);
    assert (sscanf (text, "{\"public_key\":\"%40[^\"]\",\"secret_key\":\"%40[^\"]\"}", public_text,
                    secret_text) == 2);
    free (text);
}

// s_test_config returns a default configuration with the given keys.
static config_t *
s_test_config (const char *public_key, const char *secret_key, const char *broker_key,
               const char *authorized)
{
    char error[256];
    config_t *config = config_load (NULL, error, sizeof error);
    assert (config);
    config->curve_public_key = public_key ? mem_strdup (public_key) : NULL;
    config->curve_secret_key = secret_key ? mem_strdup (secret_key) : NULL;
    config->curve_broker_public_key = broker_key ? mem_strdup (broker_key) : NULL;
    if (authorized) {
        config->curve_authorized_keys = mem_calloc (2, sizeof (char *));
        config->curve_authorized_keys[0] = mem_strdup (authorized);
        config->curve_authorized_keys_count = 1;
    }
    return config;
}

// s_test_refused checks that curve_new refuses config with a message
// containing expected.
static void
s_test_refused (config_t *config, bool server, const char *expected)
{
    char error[512] = "";
    assert (curve_check (config, server, error, sizeof error) < 0 && strstr (error, expected));
    curve_t *curve = curve_new (config, server, error, sizeof error);
    if (curve || !strstr (error, expected))
        fprintf (stderr, "curve: expected \"%s\", got \"%s\"\n", expected, error);
    assert (!curve && strstr (error, expected));
    config_destroy (&config);
}

// s_test_client connects a DEALER with config's keys (CURVE off when it
// has none) to port and says hello.
static zsock_t *
s_test_client (curve_t *curve, int port)
{
    zsock_t *dealer = zsock_new (ZMQ_DEALER);
    assert (dealer);
    zsock_set_linger (dealer, 0);
    curve_secure (curve, dealer);
    assert (zsock_connect (dealer, "tcp://127.0.0.1:%d", port) == 0);
    zstr_send (dealer, "hello");
    return dealer;
}

// s_test_wait runs the loop until the server counted a refusal for reason
// (bounded: the test fails after 5 s of nothing).
static void
s_test_wait (evloop_t *loop, curve_t *server, curve_refusal_t reason)
{
    for (int i = 0; i < 100 && curve_refused (server, reason) == 0; i++)
        evloop_run_for (loop, 50);
    assert (curve_refused (server, reason) > 0);
}

void
curve_test (bool verbose)
{
    if (verbose)
        printf (" * curve: ");
    // The refusals are logged as errors by the refused clients: expected here.
    log_init ("curve-test", (log_level_t) (LOG_ERROR_ + 1));
    char server_public[41], server_secret[41], client_public[41], client_secret[41];
    char other_public[41], other_secret[41];
    s_test_pair (server_public, server_secret);
    s_test_pair (client_public, client_secret);
    s_test_pair (other_public, other_secret);
    assert (strcmp (server_public, client_public) != 0);

    // Off without keys: nothing to do, every call is a no-op.
    char error[512];
    config_t *config = s_test_config (NULL, NULL, NULL, NULL);
    curve_t *off = curve_new (config, true, error, sizeof error);
    assert (off && !curve_enabled (off));
    curve_destroy (&off);
    curve_destroy (&off);
    config_destroy (&config);

    // Bad configurations are refused with the key named.
    s_test_refused (s_test_config (server_public, NULL, NULL, client_public), true,
                    "security.curve.secret_key (or secret_key_file) is required");
    s_test_refused (s_test_config (server_public, client_secret, NULL, client_public), true,
                    "public_key is not the public key of security.curve.secret_key");
    s_test_refused (s_test_config (server_public, "not-a-key", NULL, client_public), true,
                    "security.curve.secret_key must hold a Z85 key");
    s_test_refused (s_test_config (server_public, server_secret, NULL, NULL), true,
                    "lists no key");
    s_test_refused (s_test_config (client_public, client_secret, NULL, NULL), false,
                    "security.curve.broker_public_key (or broker_public_key_file) is required");
    config = s_test_config (client_public, client_secret, NULL, NULL);
    config->curve_public_key_file = mem_strdup ("/nonexistent/key");
    s_test_refused (config, false, "public_key and public_key_file are both set");
    config = s_test_config (client_public, client_secret, server_public, NULL);
    config->curve_broker_public_key_file = mem_strdup ("/nonexistent/key");
    s_test_refused (config, false, "broker_public_key and broker_public_key_file are both set");

    // Keys from files: whitespace around a key, comments and blank lines in
    // the authorized keys; a line that is not a key is named.
    char dir[] = "/tmp/jobgate-curve-test-XXXXXX";
    assert (mkdtemp (dir));
    char secret_path[128], keys_path[128];
    snprintf (secret_path, sizeof secret_path, "%s/secret", dir);
    snprintf (keys_path, sizeof keys_path, "%s/authorized", dir);
    FILE *file = fopen (secret_path, "w");
    assert (file);
    fprintf (file, "\n  %s \n", server_secret);
    fclose (file);
    file = fopen (keys_path, "w");
    assert (file);
    fprintf (file, "# gateways and workers\n\n%s  # worker-1\n  %s\n%s\n", client_public,
             client_public, "01234567891#2345678956789567895678956789");
    fclose (file);
    config = s_test_config (server_public, NULL, NULL, NULL);
    config->curve_secret_key_file = mem_strdup (secret_path);
    config->curve_authorized_keys_file = mem_strdup (keys_path);
    assert (curve_check (config, true, error, sizeof error) == 0);
    curve_t *server = curve_new (config, true, error, sizeof error);
    if (!server)
        fprintf (stderr, "curve: %s\n", error);
    assert (server && curve_enabled (server) && server->authorized == 2);
    config_destroy (&config);
    file = fopen (keys_path, "a");
    assert (file);
    fprintf (file, "%s\nnot a key\n", other_public);
    fclose (file);
    config = s_test_config (server_public, server_secret, NULL, NULL);
    config->curve_authorized_keys_file = mem_strdup (keys_path);
    s_test_refused (config, true, "authorized_keys_file");
    config = s_test_config (server_public, server_secret, NULL, NULL);
    config->curve_authorized_keys_file = mem_strdup (keys_path);
    config->curve_authorized_keys_file[0] = 'X';
    s_test_refused (config, true, "cannot read");
    unlink (secret_path);
    unlink (keys_path);
    rmdir (dir);

    // The server: a listed client's message arrives; a client with no key,
    // one that uses another broker key, and one whose key is not listed get
    // nothing, and each is counted under its reason.
    evloop_t *loop = evloop_new ();
    assert (loop);
    zsock_t *router = zsock_new (ZMQ_ROUTER);
    assert (router);
    zsock_set_linger (router, 0);
    zsock_set_rcvtimeo (router, 0);
    curve_secure (server, router);
    assert (curve_watch (server, loop, router, "test") == 0);
    int port = zsock_bind (router, "tcp://127.0.0.1:*");
    assert (port > 0);

    config = s_test_config (client_public, client_secret, server_public, NULL);
    curve_t *client = curve_new (config, false, error, sizeof error);
    assert (client && curve_enabled (client));
    config_destroy (&config);
    zsock_t *good = s_test_client (client, port);
    zsock_set_rcvtimeo (router, 5000);
    zmsg_t *hello = zmsg_recv (router);
    assert (hello && zmsg_size (hello) == 2);
    zmsg_destroy (&hello);
    zsock_set_rcvtimeo (router, 0);

    zsock_t *no_key = s_test_client (NULL, port);
    s_test_wait (loop, server, CURVE_REFUSED_NO_KEY);

    config = s_test_config (client_public, client_secret, other_public, NULL);
    curve_t *wrong = curve_new (config, false, error, sizeof error);
    assert (wrong);
    config_destroy (&config);
    zsock_t *wrong_key = s_test_client (wrong, port);
    s_test_wait (loop, server, CURVE_REFUSED_WRONG_KEY);

    config = s_test_config (other_public, other_secret, server_public, NULL);
    curve_t *unlisted = curve_new (config, false, error, sizeof error);
    assert (unlisted);
    config_destroy (&config);
    zsock_t *unlisted_key = s_test_client (unlisted, port);
    assert (curve_watch (unlisted, loop, unlisted_key, "frontend") == 0);
    s_test_wait (loop, server, CURVE_REFUSED_UNLISTED_KEY);
    // The refused client hears why (the broker's ERROR): it counts too.
    s_test_wait (loop, unlisted, CURVE_REFUSED_UNLISTED_KEY);
    curve_unwatch (unlisted, unlisted_key);

    // Nothing of theirs reached the server.
    evloop_run_for (loop, 100);
    zmsg_t *leaked = zmsg_recv (router);
    assert (leaked == NULL);
    assert (strcmp (curve_refusal_name (CURVE_REFUSED_UNLISTED_KEY), "unlisted_key") == 0);

    zsock_destroy (&good);
    zsock_destroy (&no_key);
    zsock_destroy (&wrong_key);
    zsock_destroy (&unlisted_key);
    curve_unwatch (server, router);
    zsock_destroy (&router);
    curve_destroy (&client);
    curve_destroy (&wrong);
    curve_destroy (&unlisted);
    curve_destroy (&server);
    evloop_destroy (&loop);
    log_init ("jobgate", LOG_INFO_);
    if (verbose)
        printf ("OK\n");
}
