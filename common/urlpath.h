// urlpath — the one rule for a path appended to a provider's base_url.
//
// A provider job names request.path, which the worker appends to the
// provider's operator-trusted base_url. The rule: the path may not leave
// the base_url's path, however the upstream decodes it. Upstreams differ:
// some percent-decode once, some twice (a proxy in front), some before
// splitting on '/' ("%2f"), some strip ";parameters" from segments
// (Tomcat: "/a/..;/b"), some take '\' for '/' (IIS), some trim trailing
// dots and spaces from names (Windows). Tracking every interpretation is
// fragile; instead no interpretation may see a dot segment at all: after
// percent-decoding any number of times, splitting on '/' and '\', and
// stripping ";..." and trailing spaces and dots, a segment must not be
// empty-of-everything-but-dots. A path without dot segments can only go
// down from its base, never up. Encoded control characters (%00, %0a...)
// are refused too: a NUL may end a path early in C servers.
//
// Both the gateway (jobspec, on every submission) and the worker (before
// it builds the URL) call urlpath_problem, so the rule lives here once.
#ifndef JOBGATE_URLPATH_H
#define JOBGATE_URLPATH_H

#include <stdbool.h>
#include <stddef.h>

// Longest path accepted, in bytes (query string included).
#define URLPATH_MAX_BYTES 8192

// urlpath_problem says why path (len bytes, not NUL-terminated: "/a/b" with
// an optional "?query") cannot be appended to a base URL, or returns NULL
// when it can. The reasons are plain-English messages for a client: the
// path must start with '/', be printable ASCII without spaces, '#' or a
// raw '\', and hold no dot segment and no encoded control character under
// any decoding (see above). Only the part before '?' is a path; the query
// is checked for characters only. This function can't fail.
const char *urlpath_problem (const char *path, size_t len);

// urlpath_test runs the self-test.
void urlpath_test (bool verbose);

#endif
