// problem — RFC 9457 problem details, the body of every error answer.
#include "problem.h"

#include <assert.h>
#include <stdio.h>
#include <string.h>

const char *
problem_title (int status)
{
    switch (status) {
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 413: return "Content Too Large";
    case 415: return "Unsupported Media Type";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 503: return "Service Unavailable";
    case 505: return "HTTP Version Not Supported";
    default: return "Error";
    }
}

json_t *
problem_new (int status, const char *slug, const char *detail, json_t *errors)
{
    char type[128];
    snprintf (type, sizeof type, "/problems/%s", slug);
    json_t *problem = json_pack ("{s:s, s:s, s:i, s:s}", "type", type, "title",
                                 problem_title (status), "status", status, "detail",
                                 detail ? detail : "");
    if (errors)
        json_object_set_new (problem, "errors", errors);
    return problem;
}

void
problem_test (bool verbose)
{
    if (verbose)
        printf (" * problem: ");
    json_t *errors = json_pack ("[{s:s, s:s}]", "field", "kind", "message", "is required");
    json_t *problem = problem_new (400, "invalid-job", "the job spec is invalid", errors);
    assert (json_integer_value (json_object_get (problem, "status")) == 400);
    assert (strcmp (json_string_value (json_object_get (problem, "type")),
                    "/problems/invalid-job") == 0);
    assert (json_array_size (json_object_get (problem, "errors")) == 1);
    json_decref (problem);
    assert (strcmp (problem_title (415), "Unsupported Media Type") == 0);
    if (verbose)
        printf ("OK\n");
}
