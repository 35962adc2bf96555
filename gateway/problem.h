// problem — RFC 9457 problem details, the body of every error answer.
#ifndef JOBGATE_PROBLEM_H
#define JOBGATE_PROBLEM_H

#include <jansson.h>
#include <stdbool.h>

// problem_new builds {"type", "title", "status", "detail"} for status; slug
// names the problem type ("/problems/<slug>"). errors (stolen, may be NULL)
// becomes the "errors" array of {field, message}. Returns a new reference.
json_t *problem_new (int status, const char *slug, const char *detail, json_t *errors);

// problem_title returns the standard reason phrase of an HTTP status.
const char *problem_title (int status);

// problem_test runs the self-test.
void problem_test (bool verbose);

#endif
