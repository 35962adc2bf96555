// url — the one rule for a URL jobgate calls, read by libcurl's own parser.
//
// The gateway checks a client's URLs when a job is submitted (request.url,
// callback.url: common to every kind that takes one), the worker checks the
// URL it is about to call; both ask url_problem, so a URL is never accepted
// on one side and refused on the other. The parser is libcurl's URL API
// (curl_url), the same that reads CURLOPT_URL when the call is made: what
// is checked is what will be called. So an internationalised host name
// ("http://bücher.example/") is accepted on both sides and libcurl turns it
// into its ASCII form (libidn2) when it connects.
//
// On top of libcurl's grammar, a client's own URL (no same_origin_as) must
// not hide anything from a reader of the spec:
// * it starts with "http://" or "https://" and names a host right after:
//   libcurl also reads "http:/a" and "http:///a" as host "a";
// * no spaces or control characters anywhere, no raw backslash (some
//   servers take it for '/'), no byte beyond ASCII outside the host:
//   those are percent-encoded;
// * no credentials ("user:password@"), no port 0.
// A provider call's URL (the operator's base_url joined with a path that
// common/urlpath.h checked) must stay on the base_url's host and port.
//
// The SSRF policy (SPEC §5) is not here: it applies to the address actually
// connected, in the worker (worker/ssrf.h).
#ifndef JOBGATE_URL_H
#define JOBGATE_URL_H

#include <stdbool.h>
#include <stddef.h>

// url_problem says why url is not an absolute http(s) URL jobgate may call,
// or returns NULL when it is one. url is NUL-terminated and len is its
// length as the caller knows it (a JSON string's may hold a NUL before its
// end: refused). With same_origin_as (a provider's base_url, NUL-terminated) the URL
// must also keep that URL's host and port. The reasons are plain-English
// phrases that follow a field name ("must name a host"). This function
// can't fail (out of memory aborts: common/mem.h).
const char *url_problem (const char *url, size_t len, const char *same_origin_as);

// url_test runs the self-test.
void url_test (bool verbose);

#endif
