// routes — the gateway's one table of paths and the methods each takes
// (SPEC §3, §3.1; gateway/assets/openapi.json describes the same table).
//
// What a request gets is decided here before anything is read: a path that
// matches no row is 404 whatever the method (issue 13: "/v1/jobs/%00/retry"
// once answered 405 because a NUL cut it to "/v1/jobs/"); a path that
// matches a row with a method it does not take is 405 with the row's methods
// in Allow; otherwise the row names the handler. A "{id}" segment of a job's
// path matches a well-formed job id only (anything else names no resource);
// the OpenAI door's "{id+}" is the path's non-empty rest ("PROVIDER/MODEL").
// GET rows take HEAD too. Pure: no I/O, no state.
#ifndef JOBGATE_ROUTES_H
#define JOBGATE_ROUTES_H

#include <stdbool.h>
#include <stddef.h>

// The resources the gateway serves, one per row of the table.
typedef enum {
    ROUTE_NONE,                 // no such path: 404
    ROUTE_HEALTHZ,              // GET /healthz
    ROUTE_READYZ,               // GET /readyz
    ROUTE_METRICS,              // GET /metrics
    ROUTE_OPENAPI,              // GET /openapi.json
    ROUTE_DASHBOARD,            // GET /
    ROUTE_PROVIDERS,            // GET /v1/providers
    ROUTE_USAGE,                // GET /v1/usage
    ROUTE_STATS,                // GET /v1/stats (operators: the dashboard's figures)
    ROUTE_CHAT,                 // POST /v1/chat/completions
    ROUTE_EMBEDDINGS,           // POST /v1/embeddings
    ROUTE_MODELS,               // GET /v1/models
    ROUTE_MODEL,                // GET /v1/models/{id+}
    ROUTE_BATCH,                // POST /v1/batch
    ROUTE_JOBS,                 // GET, POST /v1/jobs
    ROUTE_JOB,                  // GET, DELETE /v1/jobs/{id}
    ROUTE_JOB_EVENTS,           // GET /v1/jobs/{id}/events
    ROUTE_JOB_SPEC,             // GET /v1/jobs/{id}/spec
    ROUTE_JOB_RETRY,            // POST /v1/jobs/{id}/retry
    ROUTE_COUNT_
} route_id_t;

// What the table says about one request.
typedef struct {
    route_id_t id;              // the resource, ROUTE_NONE when no row matches
    const char *template;       // its row's path ("/v1/jobs/{id}"), NULL for none
    const char *allow;          // the methods it takes ("GET, HEAD, DELETE"), NULL for none
    bool method_allowed;        // the request's method is one of them
    bool authenticated;         // the API's key check applies (SPEC §5)
    bool takes_work;            // refused while the gateway drains (503)
    bool door;                  // the OpenAI-compatible door: errors in OpenAI's shape
    const char *param;          // the {id} text, borrowed from the path, or NULL
    size_t param_len;           // its length
} route_t;

// routes_match looks path (as decoded, without the query) and method up in
// the table. This function can't fail.
route_t routes_match (const char *path, const char *method);

// routes_unescape percent-decodes a request's path, or a query argument, in
// place (text is NUL-terminated) as libmicrohttpd's own decoder does, except
// that "%00" stays as written: a decoded NUL would end the C string early,
// so that "/v1/jobs/%00/retry" reached the table as "/v1/jobs/" and
// "/healthz%00x" as "/healthz". mhdloop installs it as libmicrohttpd's
// unescape callback. Returns the new length. This function can't fail.
size_t routes_unescape (char *text);

// routes_template returns the path of route id's row ("/v1/jobs/{id}"), or
// NULL for ROUTE_NONE. This function can't fail.
const char *routes_template (route_id_t id);

// routes_test runs the self-test.
void routes_test (bool verbose);

#endif
