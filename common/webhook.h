// webhook — the Standard Webhooks signature scheme, symmetric version.
//
// The specification (standard-webhooks/standard-webhooks,
// spec/standard-webhooks.md, "Signature scheme"): a delivery is a POST whose
// headers carry webhook-id (the same for every attempt), webhook-timestamp
// (Unix seconds of this attempt) and webhook-signature, "v1," followed by
// the base64 of HMAC-SHA256 over "{webhook-id}.{webhook-timestamp}.{body}",
// keyed with the secret's bytes. A secret is written "whsec_" + the base64
// of its bytes. jobgate signs its callback deliveries this way (SPEC §5)
// with webhooks.secret; the worker computes each attempt's signature.
//
// Pure functions: no I/O, no clock (the caller passes the timestamp).
#ifndef JOBGATE_WEBHOOK_H
#define JOBGATE_WEBHOOK_H

#include <stdbool.h>
#include <stddef.h>

// The "whsec_" prefix of a secret written as the specification does.
#define WEBHOOK_SECRET_PREFIX "whsec_"
// Bytes of a signature header value, "v1," + 44 base64 characters, with
// its NUL.
#define WEBHOOK_SIGNATURE_SIZE 48

// webhook_key_decode reads a configured secret (len bytes): "whsec_" +
// base64 gives the bytes the base64 holds, any other text is taken as the
// key's bytes as they are (an operator's own random string). Returns 0 with
// a new buffer in *key (caller wipes and frees it) and its size, or -1 when
// the text is empty or is "whsec_" with no base64 (or none) after it.
int webhook_key_decode (const char *secret, size_t len, unsigned char **key, size_t *key_size);

// webhook_sign writes the webhook-signature value of one delivery attempt
// into signature (WEBHOOK_SIGNATURE_SIZE bytes): "v1," + base64 (standard
// alphabet, padded) of HMAC-SHA256 (key, id "." timestamp "." body). id and
// timestamp are the webhook-id and webhook-timestamp header values, as
// sent; neither may hold a '.' (a programmer error: then they could be
// moved across the separators). body is body_size bytes, any bytes. This
// function can't fail.
void webhook_sign (const unsigned char *key, size_t key_size, const char *id,
                   const char *timestamp, const char *body, size_t body_size, char *signature);

// webhook_test runs the self-test.
void webhook_test (bool verbose);

#endif
