// httpfield — what a header field jobgate reads or sends may be (RFC 9110).
//
// One rule per concept, for every process that checks or builds a header
// field (a client's request.headers, a provider's configured headers and
// auth header, an upstream's answer):
//
// * a field name is a token (RFC 9110 §5.6.2: 1*tchar, tchar = ALPHA /
//   DIGIT / one of !#$%&'*+-.^_`|~), as is a method (§9.1);
// * a field value never holds CR, LF or NUL (§5.5: a recipient must reject
//   them or replace them): with them a value would end its line and start
//   a header, or a request, of its own. The grammar's stricter form
//   (field-vchar, SP and HTAB only: no other control character) is there
//   for the inputs that owe it;
// * some names only jobgate sets on an upstream call: the framing and
//   hop-by-hop ones on every call (libcurl computes them; a client's would
//   smuggle a second request into the connection), and on a call to a
//   provider those that name the host or resource the call is for (with
//   them a tenant could steer the provider's secret to another virtual host
//   or path behind the same address, issue 10 #5), or what a proxy in front
//   of it takes as the original request and client. On a client's own URL
//   the latter are harmless: no secret goes there, and the SSRF policy
//   checks the address connected. One list, for the gateway (which refuses
//   them all on every kind, jobspec.c) and the worker (its own hold).
//
// Everything here is pure and locale-independent.
#ifndef JOBGATE_HTTPFIELD_H
#define JOBGATE_HTTPFIELD_H

#include <stdbool.h>
#include <stddef.h>

// A header name only jobgate sets on an upstream call.
typedef struct {
    const char *name;           // lower case
    bool provider_only;         // reserved on calls to a provider only (it routes the call)
} httpfield_reserved_t;

// The reserved names, ended by { NULL, false }: data for whoever checks a
// client's headers (the gateway on submit, the worker on every call).
extern const httpfield_reserved_t httpfield_reserved[];

// httpfield_token is true when text (len bytes) is an RFC 9110 token: a
// field name or a method. This function can't fail.
bool httpfield_token (const char *text, size_t len);

// httpfield_value_safe is true when a field value (len bytes) holds no CR,
// LF or NUL: it cannot split the message it is sent in. This function
// can't fail.
bool httpfield_value_safe (const char *value, size_t len);

// httpfield_value_valid is true when a field value (len bytes) follows the
// grammar: visible characters, obs-text (bytes 0x80-0xFF), SP and HTAB, no
// other control character and no DEL. This function can't fail.
bool httpfield_value_valid (const char *value, size_t len);

// httpfield_is_reserved is true when a client may not set header name (any
// case) on a call to a provider (provider_call) or to a URL of its own.
// This function can't fail.
bool httpfield_is_reserved (const char *name, bool provider_call);

// httpfield_test runs the self-test.
void httpfield_test (bool verbose);

#endif
