// routes — the gateway's one table of paths and methods.
#include "routes.h"
#include "clock.h"

#include <assert.h>
#include <microhttpd.h>
#include <stdio.h>
#include <string.h>

// Methods a row takes, as bits.
enum { M_GET = 1, M_POST = 2, M_DELETE = 4 };

// One row: a path, its methods, and what applies to it.
typedef struct {
    route_id_t id;              // the resource
    const char *template;       // its path; "{id}" one segment, "{id+}" the rest
    unsigned methods;           // M_* bits (GET takes HEAD too)
    const char *allow;          // the Allow header of a 405
    bool authenticated;         // the key check applies
    bool takes_work;            // refused while draining
    bool door;                  // the OpenAI-compatible door
    bool job_id;                // its parameter must be a job id (any text otherwise)
} row_t;

static const row_t s_rows[] = {
    { ROUTE_HEALTHZ, "/healthz", M_GET, "GET, HEAD", false, false, false, false },
    { ROUTE_READYZ, "/readyz", M_GET, "GET, HEAD", false, false, false, false },
    { ROUTE_METRICS, "/metrics", M_GET, "GET, HEAD", false, false, false, false },
    { ROUTE_OPENAPI, "/openapi.json", M_GET, "GET, HEAD", false, false, false, false },
    { ROUTE_DASHBOARD, "/", M_GET, "GET, HEAD", false, false, false, false },
    { ROUTE_PROVIDERS, "/v1/providers", M_GET, "GET, HEAD", true, false, false, false },
    { ROUTE_USAGE, "/v1/usage", M_GET, "GET, HEAD", true, false, false, false },
    { ROUTE_STATS, "/v1/stats", M_GET, "GET, HEAD", true, false, false, false },
    { ROUTE_CHAT, "/v1/chat/completions", M_POST, "POST", true, true, true, false },
    { ROUTE_EMBEDDINGS, "/v1/embeddings", M_POST, "POST", true, true, true, false },
    { ROUTE_MODELS, "/v1/models", M_GET, "GET, HEAD", true, false, true, false },
    { ROUTE_MODEL, "/v1/models/{id+}", M_GET, "GET, HEAD", true, false, true, false },
    { ROUTE_BATCH, "/v1/batch", M_POST, "POST", true, true, false, false },
    { ROUTE_JOBS, "/v1/jobs", M_GET | M_POST, "GET, HEAD, POST", true, true, false, false },
    { ROUTE_JOB, "/v1/jobs/{id}", M_GET | M_DELETE, "GET, HEAD, DELETE", true, true, false, true },
    { ROUTE_JOB_EVENTS, "/v1/jobs/{id}/events", M_GET, "GET, HEAD", true, true, false, true },
    { ROUTE_JOB_SPEC, "/v1/jobs/{id}/spec", M_GET, "GET, HEAD", true, true, false, true },
    { ROUTE_JOB_RETRY, "/v1/jobs/{id}/retry", M_POST, "POST", true, true, false, true },
};

// s_method_bit returns method's M_* bit, 0 for one no row takes.
static unsigned
s_method_bit (const char *method)
{
    if (strcmp (method, "GET") == 0 || strcmp (method, "HEAD") == 0)
        return M_GET;
    if (strcmp (method, "POST") == 0)
        return M_POST;
    if (strcmp (method, "DELETE") == 0)
        return M_DELETE;
    return 0;
}

// s_matches is true when path fits template; the parameter's text (if the
// template has one) goes to *param, *param_len.
static bool
s_matches (const char *template, const char *path, const char **param, size_t *param_len)
{
    const char *t = template, *p = path;
    while (*t) {
        if (*t == '{') {
            const char *close = strchr (t, '}');
            assert (close);
            bool rest = close[-1] == '+';
            size_t len = rest ? strlen (p) : strcspn (p, "/");
            if (len == 0)
                return false;
            *param = p;
            *param_len = len;
            p += len;
            t = close + 1;
        }
        else if (*t++ != *p++)
            return false;
    }
    return *p == '\0';
}

route_t
routes_match (const char *path, const char *method)
{
    route_t route = { .id = ROUTE_NONE };
    for (size_t i = 0; i < sizeof s_rows / sizeof s_rows[0]; i++) {
        const row_t *row = &s_rows[i];
        const char *param = NULL;
        size_t param_len = 0;
        if (!s_matches (row->template, path, &param, &param_len)
            || (row->job_id && !job_id_valid (param, param_len)))
            continue;
        route = (route_t) { .id = row->id, .template = row->template, .allow = row->allow,
                            .method_allowed = (row->methods & s_method_bit (method)) != 0,
                            .authenticated = row->authenticated, .takes_work = row->takes_work,
                            .door = row->door, .param = param, .param_len = param_len };
        break;
    }
    return route;
}

size_t
routes_unescape (char *text)
{
    size_t out = 0;
    char *piece = text;
    for (;;) {
        // Each piece between two "%00" shrinks as it is decoded, so it is
        // moved down over bytes already read.
        char *nul = strstr (piece, "%00");
        if (nul)
            *nul = '\0';
        size_t len = MHD_http_unescape (piece);
        memmove (text + out, piece, len);
        out += len;
        if (!nul)
            break;
        memcpy (text + out, "%00", 3);
        out += 3;
        piece = nul + 3;
    }
    text[out] = '\0';
    return out;
}

const char *
routes_template (route_id_t id)
{
    for (size_t i = 0; i < sizeof s_rows / sizeof s_rows[0]; i++)
        if (s_rows[i].id == id)
            return s_rows[i].template;
    return NULL;
}

// --- self-test ---

// s_expect checks what path and method get: the route, whether the method
// is taken, and the parameter ("" for none).
static void
s_expect (const char *path, const char *method, route_id_t id, bool allowed, const char *param)
{
    route_t route = routes_match (path, method);
    bool param_ok = route.param ? strlen (param) == route.param_len
                                      && memcmp (route.param, param, route.param_len) == 0
                                : param[0] == '\0';
    if (route.id != id || (id != ROUTE_NONE && route.method_allowed != allowed) || !param_ok)
        fprintf (stderr, "routes: %s %s: got route %d allowed %d\n", method, path, route.id,
                 route.method_allowed);
    assert (route.id == id && param_ok);
    assert (id == ROUTE_NONE ? !route.allow && !route.template : route.method_allowed == allowed);
}

void
routes_test (bool verbose)
{
    if (verbose)
        printf (" * routes: ");
    // Paths and arguments decode as libmicrohttpd decodes them, except that
    // "%00" stays as written: nothing after it is lost.
    const char *decoded[][2] = {
        { "/v1/jobs/%00/retry", "/v1/jobs/%00/retry" }, { "/healthz%00x", "/healthz%00x" },
        { "/a%2Fb%20c", "/a/b c" }, { "%00%41%00", "%00A%00" }, { "%2500", "%00" },
        { "%%00%", "%%00%" }, { "", "" }, { "plain+text", "plain+text" },
    };
    for (size_t i = 0; i < sizeof decoded / sizeof decoded[0]; i++) {
        char text[64];
        snprintf (text, sizeof text, "%s", decoded[i][0]);
        size_t len = routes_unescape (text);
        if (strcmp (text, decoded[i][1]) != 0)
            fprintf (stderr, "routes: %s decoded as %s\n", decoded[i][0], text);
        assert (strcmp (text, decoded[i][1]) == 0 && len == strlen (text));
    }
    const char *id = "0190a000-0000-7000-8000-000000000001";
    char path[128];
    // Each resource by its methods; HEAD goes with GET.
    s_expect ("/healthz", "GET", ROUTE_HEALTHZ, true, "");
    s_expect ("/healthz", "HEAD", ROUTE_HEALTHZ, true, "");
    s_expect ("/healthz", "POST", ROUTE_HEALTHZ, false, "");
    s_expect ("/", "GET", ROUTE_DASHBOARD, true, "");
    s_expect ("/v1/providers", "DELETE", ROUTE_PROVIDERS, false, "");
    s_expect ("/v1/jobs", "POST", ROUTE_JOBS, true, "");
    s_expect ("/v1/jobs", "GET", ROUTE_JOBS, true, "");
    s_expect ("/v1/jobs", "PUT", ROUTE_JOBS, false, "");
    snprintf (path, sizeof path, "/v1/jobs/%s", id);
    s_expect (path, "DELETE", ROUTE_JOB, true, id);
    s_expect (path, "POST", ROUTE_JOB, false, id);
    snprintf (path, sizeof path, "/v1/jobs/%s/retry", id);
    s_expect (path, "POST", ROUTE_JOB_RETRY, true, id);
    s_expect (path, "GET", ROUTE_JOB_RETRY, false, id);
    snprintf (path, sizeof path, "/v1/jobs/%s/events", id);
    s_expect (path, "GET", ROUTE_JOB_EVENTS, true, id);
    snprintf (path, sizeof path, "/v1/jobs/%s/spec", id);
    s_expect (path, "GET", ROUTE_JOB_SPEC, true, id);
    s_expect (path, "DELETE", ROUTE_JOB_SPEC, false, id);
    s_expect ("/v1/stats", "GET", ROUTE_STATS, true, "");
    s_expect ("/v1/stats", "POST", ROUTE_STATS, false, "");
    // A model id is the path's rest, slashes and all.
    s_expect ("/v1/models/mock/gpt-mock", "GET", ROUTE_MODEL, true, "mock/gpt-mock");
    s_expect ("/v1/models", "POST", ROUTE_MODELS, false, "");
    // The rule of issue 13: a path no row matches is 404 whatever the
    // method — an empty or missing segment, a NUL that cut the path short
    // (what "%00" decoded to before mhdloop kept it as written), a longer
    // or shorter path, a trailing slash, another case.
    const char *nowhere[] = { "/v1/jobs/", "/v1/jobs//retry", "/v1/jobs/x/retry/",
                              "/v1/jobs/x/cancel", "/v1/jobs/x/events/more", "/v1/job",
                              "/v1/jobsx", "/v1/models/", "/healthz/", "/HEALTHZ", "",
                              "/v1", "/v1/", "/v1/batch/x", "//", "/openapi.json/x" };
    const char *methods[] = { "GET", "HEAD", "POST", "DELETE", "PUT", "PATCH", "OPTIONS" };
    for (size_t i = 0; i < sizeof nowhere / sizeof nowhere[0]; i++)
        for (size_t m = 0; m < sizeof methods / sizeof methods[0]; m++)
            s_expect (nowhere[i], methods[m], ROUTE_NONE, false, "");
    // A job's segment is a job id or names nothing: "%00" (as mhdloop
    // leaves it) is no path, for any method; an id of the right shape is
    // the handler's to look up (404 for a job that does not exist).
    for (size_t m = 0; m < sizeof methods / sizeof methods[0]; m++) {
        s_expect ("/v1/jobs/%00/retry", methods[m], ROUTE_NONE, false, "");
        s_expect ("/v1/jobs/%00", methods[m], ROUTE_NONE, false, "");
        s_expect ("/v1/jobs/not-an-id/events", methods[m], ROUTE_NONE, false, "");
    }
    // What applies to each row.
    route_t route = routes_match ("/v1/chat/completions", "GET");
    assert (route.door && route.authenticated && route.takes_work && !route.method_allowed);
    assert (strcmp (route.allow, "POST") == 0);
    route = routes_match ("/metrics", "GET");
    assert (!route.door && !route.authenticated && !route.takes_work);
    route = routes_match ("/v1/usage", "GET");
    assert (route.authenticated && !route.takes_work);
    assert (strcmp (routes_template (ROUTE_JOB_RETRY), "/v1/jobs/{id}/retry") == 0);
    assert (!routes_template (ROUTE_NONE));
    // Every row is reachable by its own template (none hides another).
    for (int i = ROUTE_NONE + 1; i < ROUTE_COUNT_; i++) {
        const char *template = routes_template ((route_id_t) i);
        assert (template);
        char concrete[128] = "";
        const char *brace = strchr (template, '{');
        if (brace)
            snprintf (concrete, sizeof concrete, "%.*s%s%s", (int) (brace - template), template,
                      id, strchr (brace, '}') + 1);
        else
            snprintf (concrete, sizeof concrete, "%s", template);
        assert (routes_match (concrete, "GET").id == (route_id_t) i);
    }
    if (verbose)
        printf ("OK\n");
}
