// ssrf — the SSRF policy for user-supplied URLs (SPEC §5).
//
// The check runs on addresses, not on the host name in the URL: the one
// libcurl is about to connect to (CURLOPT_OPENSOCKETFUNCTION) and the one a
// request is about to be sent on, new or reused (CURLOPT_PREREQFUNCTION,
// worker/transfer.c). So it holds for every redirect hop and against DNS
// rebinding: whatever a name resolved to, a request only goes to a public
// address.
#ifndef JOBGATE_SSRF_H
#define JOBGATE_SSRF_H

#include "config.h"

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

// ssrf_address_allowed returns true when a connection to addr may be opened.
// With allow_private every address is allowed (tests, local development);
// otherwise loopback, private, shared (CGNAT), link-local, multicast,
// reserved, broadcast and unspecified addresses are refused, for IPv4, IPv6
// and IPv4 embedded in IPv6 (mapped, compatible, NAT64, 6to4). An address of
// another family (or NULL) is refused. This function can't fail.
bool ssrf_address_allowed (const struct sockaddr *addr, bool allow_private);

// ssrf_policy_allows applies the whole policy: an address is allowed when
// ssrf_address_allowed says so, or when it lies in one of the operator's
// allow networks (security.allow_networks), which open single private hosts
// or ranges without opening all of them. An IPv4-mapped IPv6 address is
// matched as the IPv4 address it carries. This function can't fail.
bool ssrf_policy_allows (const struct sockaddr *addr, bool allow_private,
                         const config_network_t *allow, size_t allow_count);

// ssrf_address_parse fills address from an IPv4 or IPv6 literal (text may
// be NULL), as libcurl reports the address of a connection. Returns false
// when text is neither: address is then of no family, which the policy
// refuses. This function can't fail.
bool ssrf_address_parse (const char *text, struct sockaddr_storage *address);

// ssrf_test runs the self-test (pure: nothing is sent).
void ssrf_test (bool verbose);

#endif
