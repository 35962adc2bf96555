// webhook — the Standard Webhooks signature scheme, symmetric version.
#include "webhook.h"
#include "mem.h"

#include <assert.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>

_Static_assert (WEBHOOK_SIGNATURE_SIZE
                    == 3 + sodium_base64_ENCODED_LEN (crypto_auth_hmacsha256_BYTES,
                                                      sodium_base64_VARIANT_ORIGINAL),
                "a signature is v1, and the base64 of one HMAC-SHA256");

int
webhook_key_decode (const char *secret, size_t len, unsigned char **key, size_t *key_size)
{
    *key = NULL;
    *key_size = 0;
    if (len == 0)
        return -1;
    // Decoding never lengthens: len bytes hold the key either way.
    unsigned char *bytes = mem_alloc (len);
    size_t prefix_len = strlen (WEBHOOK_SECRET_PREFIX);
    size_t size = 0;
    if (len >= prefix_len && memcmp (secret, WEBHOOK_SECRET_PREFIX, prefix_len) == 0) {
        if (sodium_base642bin (bytes, len, secret + prefix_len, len - prefix_len, NULL, &size,
                               NULL, sodium_base64_VARIANT_ORIGINAL) != 0
            || size == 0) {
            sodium_memzero (bytes, len);
            free (bytes);
            return -1;
        }
    }
    else {
        memcpy (bytes, secret, len);
        size = len;
    }
    *key = bytes;
    *key_size = size;
    return 0;
}

// s_hmac_add feeds len bytes of data to the MAC.
static void
s_hmac_add (crypto_auth_hmacsha256_state *state, const char *data, size_t len)
{
    crypto_auth_hmacsha256_update (state, (const unsigned char *) data, len);
}

void
webhook_sign (const unsigned char *key, size_t key_size, const char *id, const char *timestamp,
              const char *body, size_t body_size, char *signature)
{
    assert (!strchr (id, '.') && !strchr (timestamp, '.'));
    unsigned char mac[crypto_auth_hmacsha256_BYTES];
    crypto_auth_hmacsha256_state state;
    crypto_auth_hmacsha256_init (&state, key, key_size);
    s_hmac_add (&state, id, strlen (id));
    s_hmac_add (&state, ".", 1);
    s_hmac_add (&state, timestamp, strlen (timestamp));
    s_hmac_add (&state, ".", 1);
    s_hmac_add (&state, body, body_size);
    crypto_auth_hmacsha256_final (&state, mac);
    memcpy (signature, "v1,", 3);
    sodium_bin2base64 (signature + 3, WEBHOOK_SIGNATURE_SIZE - 3, mac, sizeof mac,
                       sodium_base64_VARIANT_ORIGINAL);
    sodium_memzero (&state, sizeof state);
}

// --- self-test ---

// s_mac_matches is true when signature is "v1," + the base64 of the
// HMAC-SHA256 of content under key, checked the way a receiver would:
// decode, then compare with libsodium's own verification.
static bool
s_mac_matches (const char *signature, const unsigned char *key, size_t key_size,
               const char *content, size_t content_len)
{
    if (strncmp (signature, "v1,", 3) != 0)
        return false;
    unsigned char mac[crypto_auth_hmacsha256_BYTES];
    size_t mac_size = 0;
    if (sodium_base642bin (mac, sizeof mac, signature + 3, strlen (signature + 3), NULL,
                           &mac_size, NULL, sodium_base64_VARIANT_ORIGINAL) != 0
        || mac_size != sizeof mac)
        return false;
    // crypto_auth_hmacsha256_verify takes a 32-byte key: the state API
    // takes any, as webhook_sign does.
    unsigned char expected[crypto_auth_hmacsha256_BYTES];
    crypto_auth_hmacsha256_state state;
    crypto_auth_hmacsha256_init (&state, key, key_size);
    crypto_auth_hmacsha256_update (&state, (const unsigned char *) content, content_len);
    crypto_auth_hmacsha256_final (&state, expected);
    return sodium_memcmp (mac, expected, sizeof mac) == 0;
}

void
webhook_test (bool verbose)
{
    if (verbose)
        printf (" * webhook: ");
    assert (sodium_init () >= 0);
    // The known answer: the Standard Webhooks reference implementations'
    // signing vector (standard-webhooks/standard-webhooks,
    // libraries/go/webhook_test.go TestWebhookSign; the same values in the
    // other languages' tests).
    const char *secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const char *id = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const char *timestamp = "1614265330";
    const char *payload = "{\"test\": 2432232314}";
    const char *expected = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";
    unsigned char *key = NULL;
    size_t key_size = 0;
    assert (webhook_key_decode (secret, strlen (secret), &key, &key_size) == 0);
    assert (key_size == 24);
    char signature[WEBHOOK_SIGNATURE_SIZE];
    webhook_sign (key, key_size, id, timestamp, payload, strlen (payload), signature);
    if (strcmp (signature, expected) != 0)
        fprintf (stderr, "webhook: signed %s, want %s\n", signature, expected);
    assert (strcmp (signature, expected) == 0);

    // Round trips: what a receiver computes over id.timestamp.body matches;
    // any other id, timestamp, body or key does not.
    char content[256];
    int content_len = snprintf (content, sizeof content, "%s.%s.%s", id, timestamp, payload);
    assert (s_mac_matches (signature, key, key_size, content, (size_t) content_len));
    webhook_sign (key, key_size, id, "1614265331", payload, strlen (payload), signature);
    assert (!s_mac_matches (signature, key, key_size, content, (size_t) content_len));
    webhook_sign (key, key_size, "msg_p5jXN8AQM9LWM0D4loKWxJeK", timestamp, payload,
                  strlen (payload), signature);
    assert (!s_mac_matches (signature, key, key_size, content, (size_t) content_len));
    webhook_sign (key, key_size, id, timestamp, payload, strlen (payload) - 1, signature);
    assert (!s_mac_matches (signature, key, key_size, content, (size_t) content_len));
    key[0] ^= 1;
    webhook_sign (key, key_size, id, timestamp, payload, strlen (payload), signature);
    assert (strcmp (signature, expected) != 0);
    sodium_memzero (key, key_size);
    free (key);
    // The body is bytes: a NUL in it is signed, not an end; a raw secret
    // is the key's bytes as written.
    const char body[] = "{\"a\":\"x\0y\"}";
    assert (webhook_key_decode ("my own secret", 13, &key, &key_size) == 0);
    assert (key_size == 13 && memcmp (key, "my own secret", 13) == 0);
    webhook_sign (key, key_size, "0192f1c2-0000-7000-8000-000000000000", "1700000000", body,
                  sizeof body - 1, signature);
    char whole[128];
    int whole_len = snprintf (whole, sizeof whole, "0192f1c2-0000-7000-8000-000000000000."
                              "1700000000.");
    memcpy (whole + whole_len, body, sizeof body - 1);
    assert (s_mac_matches (signature, key, key_size, whole, (size_t) whole_len + sizeof body - 1));
    assert (strlen (signature) == WEBHOOK_SIGNATURE_SIZE - 1);
    sodium_memzero (key, key_size);
    free (key);
    // Secrets that say they are base64 and are not, or hold nothing.
    assert (webhook_key_decode ("whsec_", 6, &key, &key_size) == -1 && !key);
    assert (webhook_key_decode ("whsec_not*base64", 16, &key, &key_size) == -1 && !key);
    assert (webhook_key_decode ("", 0, &key, &key_size) == -1 && !key);
    if (verbose)
        printf ("OK\n");
}
