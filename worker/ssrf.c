// ssrf — the SSRF policy for user-supplied URLs (SPEC §5).
#include "ssrf.h"

#include <arpa/inet.h>
#include <assert.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

typedef struct {
    uint32_t network;           // network address, host byte order
    int prefix;                 // prefix length in bits
} s_v4_range_t;

// IPv4 ranges that must never be reached from a user-supplied URL: the
// SPEC §5 list plus the other special-purpose blocks of RFC 6890 that no
// public service lives in.
static const s_v4_range_t s_v4_denied[] = {
    { 0x00000000, 8 },          // 0.0.0.0/8 "this network", unspecified
    { 0x0A000000, 8 },          // 10.0.0.0/8 private
    { 0x64400000, 10 },         // 100.64.0.0/10 shared address space (CGNAT)
    { 0x7F000000, 8 },          // 127.0.0.0/8 loopback
    { 0xA9FE0000, 16 },         // 169.254.0.0/16 link-local, cloud metadata
    { 0xAC100000, 12 },         // 172.16.0.0/12 private
    { 0xC0000000, 24 },         // 192.0.0.0/24 IETF protocol assignments
    { 0xC0000200, 24 },         // 192.0.2.0/24 documentation
    { 0xC0A80000, 16 },         // 192.168.0.0/16 private
    { 0xC6120000, 15 },         // 198.18.0.0/15 benchmarking
    { 0xC6336400, 24 },         // 198.51.100.0/24 documentation
    { 0xCB007100, 24 },         // 203.0.113.0/24 documentation
    { 0xE0000000, 4 },          // 224.0.0.0/4 multicast
    { 0xF0000000, 4 },          // 240.0.0.0/4 reserved, 255.255.255.255 broadcast
};

// s_v4_allowed checks one IPv4 address in host byte order.
static bool
s_v4_allowed (uint32_t address)
{
    for (size_t i = 0; i < sizeof s_v4_denied / sizeof s_v4_denied[0]; i++) {
        uint32_t mask = 0xFFFFFFFFu << (32 - s_v4_denied[i].prefix);
        if ((address & mask) == s_v4_denied[i].network)
            return false;
    }
    return true;
}

// s_v4_at reads four bytes of an IPv6 address as an IPv4 address.
static uint32_t
s_v4_at (const uint8_t *bytes)
{
    return (uint32_t) bytes[0] << 24 | (uint32_t) bytes[1] << 16
           | (uint32_t) bytes[2] << 8 | (uint32_t) bytes[3];
}

// s_v6_allowed checks one IPv6 address. Addresses that embed an IPv4
// address are judged by it, since that is where the packets end up.
static bool
s_v6_allowed (const uint8_t *a)
{
    static const uint8_t zeros[16] = { 0 };
    static const uint8_t mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF };
    static const uint8_t nat64[12] = { 0x00, 0x64, 0xFF, 0x9B };
    // ::/128 unspecified and ::1 loopback
    if (memcmp (a, zeros, 15) == 0 && (a[15] == 0 || a[15] == 1))
        return false;
    // ::ffff:0:0/96 IPv4-mapped: the kernel sends these as IPv4
    if (memcmp (a, mapped, 12) == 0)
        return s_v4_allowed (s_v4_at (a + 12));
    // ::/96 IPv4-compatible (deprecated) and 64:ff9b::/96 NAT64
    if (memcmp (a, zeros, 12) == 0 || memcmp (a, nat64, 12) == 0)
        return s_v4_allowed (s_v4_at (a + 12));
    // 2002::/16 6to4 carries the relay's IPv4 address in bits 16..47
    if (a[0] == 0x20 && a[1] == 0x02)
        return s_v4_allowed (s_v4_at (a + 2));
    // fc00::/7 unique local
    if ((a[0] & 0xFE) == 0xFC)
        return false;
    // fe80::/10 link-local and fec0::/10 site-local (deprecated)
    if (a[0] == 0xFE && ((a[1] & 0xC0) == 0x80 || (a[1] & 0xC0) == 0xC0))
        return false;
    // ff00::/8 multicast
    if (a[0] == 0xFF)
        return false;
    // 100::/64 discard-only
    if (a[0] == 0x01 && a[1] == 0x00 && memcmp (a + 2, zeros, 6) == 0)
        return false;
    // 2001:db8::/32 documentation
    if (a[0] == 0x20 && a[1] == 0x01 && a[2] == 0x0D && a[3] == 0xB8)
        return false;
    return true;
}

bool
ssrf_address_allowed (const struct sockaddr *addr, bool allow_private)
{
    if (!addr)
        return false;
    if (addr->sa_family == AF_INET) {
        if (allow_private)
            return true;
        const struct sockaddr_in *in = (const struct sockaddr_in *) addr;
        return s_v4_allowed (ntohl (in->sin_addr.s_addr));
    }
    if (addr->sa_family == AF_INET6) {
        if (allow_private)
            return true;
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *) addr;
        return s_v6_allowed (in6->sin6_addr.s6_addr);
    }
    // Unix sockets and anything else are never a user's business.
    return false;
}

// s_prefix_match is true when the first prefix bits of a and b agree.
static bool
s_prefix_match (const uint8_t *a, const uint8_t *b, int prefix)
{
    int whole = prefix / 8;
    if (memcmp (a, b, (size_t) whole) != 0)
        return false;
    if (prefix % 8 == 0)
        return true;
    uint8_t mask = (uint8_t) (0xFF << (8 - prefix % 8));
    return (a[whole] & mask) == (b[whole] & mask);
}

bool
ssrf_policy_allows (const struct sockaddr *addr, bool allow_private,
                    const config_network_t *allow, size_t allow_count)
{
    if (ssrf_address_allowed (addr, allow_private))
        return true;
    if (!addr || (addr->sa_family != AF_INET && addr->sa_family != AF_INET6))
        return false;
    // Both forms of the address: IPv4 (when it is or embeds one) and IPv6
    // (IPv4 as mapped), so a network matches whichever way it was written.
    static const uint8_t mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF };
    uint8_t v6[16];
    const uint8_t *v4 = NULL;
    if (addr->sa_family == AF_INET) {
        memcpy (v6, mapped, 12);
        memcpy (v6 + 12, &((const struct sockaddr_in *) addr)->sin_addr, 4);
        v4 = v6 + 12;
    }
    else {
        memcpy (v6, ((const struct sockaddr_in6 *) addr)->sin6_addr.s6_addr, 16);
        if (memcmp (v6, mapped, 12) == 0)
            v4 = v6 + 12;
    }
    for (size_t i = 0; i < allow_count; i++) {
        if (allow[i].family == AF_INET && v4 && s_prefix_match (v4, allow[i].address, allow[i].prefix))
            return true;
        if (allow[i].family == AF_INET6 && s_prefix_match (v6, allow[i].address, allow[i].prefix))
            return true;
    }
    return false;
}

bool
ssrf_address_parse (const char *text, struct sockaddr_storage *address)
{
    memset (address, 0, sizeof *address);
    struct sockaddr_in *in = (struct sockaddr_in *) address;
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *) address;
    if (text && inet_pton (AF_INET, text, &in->sin_addr) == 1)
        in->sin_family = AF_INET;
    else if (text && inet_pton (AF_INET6, text, &in6->sin6_addr) == 1)
        in6->sin6_family = AF_INET6;
    else
        return false;
    return true;
}

// --- self-test ---

// s_address parses an IPv4 or IPv6 literal of the test into storage.
static const struct sockaddr *
s_address (const char *text, struct sockaddr_storage *storage)
{
    bool parsed = ssrf_address_parse (text, storage);
    assert (parsed);
    return (const struct sockaddr *) storage;
}

// s_check_allow_networks checks the operator's allow-list: exactly the
// listed networks open up, everything else stays denied.
static void
s_check_allow_networks (void)
{
    static const char *networks[] = { "127.0.0.2/32", "10.20.0.0/16", "fd00:1::/32", "172.16.5.0/25" };
    config_network_t allow[4];
    for (size_t i = 0; i < 4; i++)
        assert (config_network_parse (networks[i], &allow[i]) == 0);
    static const struct {
        const char *address;    // address connected to
        bool allowed;           // the policy's verdict with the list above
    } cases[] = {
        { "127.0.0.2", true }, { "::ffff:127.0.0.2", true }, { "127.0.0.1", false },
        { "127.0.0.3", false }, { "::1", false }, { "::ffff:127.0.0.1", false },
        { "10.20.255.1", true }, { "10.21.0.1", false }, { "10.19.255.255", false },
        { "fd00:1:ffff::1", true }, { "fd00:2::1", false }, { "172.16.5.127", true },
        { "172.16.5.128", false }, { "169.254.169.254", false }, { "0.0.0.0", false },
        { "8.8.8.8", true },
    };
    struct sockaddr_storage storage;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        bool allowed = ssrf_policy_allows (s_address (cases[i].address, &storage), false, allow, 4);
        if (allowed != cases[i].allowed)
            fprintf (stderr, "ssrf: %s should be %s by the allow-list\n", cases[i].address,
                     cases[i].allowed ? "allowed" : "denied");
        assert (allowed == cases[i].allowed);
        // Without a list the built-in policy decides alone.
        assert (ssrf_policy_allows ((const struct sockaddr *) &storage, false, NULL, 0)
                == ssrf_address_allowed ((const struct sockaddr *) &storage, false));
    }
    // "0.0.0.0/0" would open everything: the operator's choice, honoured.
    config_network_t everything;
    assert (config_network_parse ("0.0.0.0/0", &everything) == 0);
    assert (ssrf_policy_allows (s_address ("127.0.0.1", &storage), false, &everything, 1));
    assert (!ssrf_policy_allows (s_address ("::1", &storage), false, &everything, 1));
    struct sockaddr unix_addr = { .sa_family = AF_UNIX };
    assert (!ssrf_policy_allows (&unix_addr, false, &everything, 1));
    assert (!ssrf_policy_allows (NULL, false, &everything, 1));
}

// s_check parses text as an IPv4 or IPv6 address and checks the verdict.
static void
s_check (const char *text, bool expected)
{
    struct sockaddr_storage storage;
    bool allowed = ssrf_address_allowed (s_address (text, &storage), false);
    if (allowed != expected) {
        fprintf (stderr, "ssrf: %s should be %s\n", text, expected ? "allowed" : "denied");
        assert (allowed == expected);
    }
    // The opt-out allows everything of a known family.
    assert (ssrf_address_allowed ((struct sockaddr *) &storage, true));
}

void
ssrf_test (bool verbose)
{
    if (verbose)
        printf (" * ssrf: ");
    static const char *denied[] = {
        // IPv4, every range of SPEC §5 at its edges
        "127.0.0.1", "127.255.255.255", "0.0.0.0", "0.255.255.255",
        "10.0.0.0", "10.255.255.255", "172.16.0.0", "172.31.255.255",
        "192.168.0.0", "192.168.255.255", "169.254.169.254", "169.254.0.1",
        "100.64.0.0", "100.127.255.255", "224.0.0.1", "239.255.255.255",
        "240.0.0.1", "255.255.255.254", "255.255.255.255", "192.0.0.8",
        "198.18.0.1", "198.19.255.255", "192.0.2.1", "198.51.100.7", "203.0.113.9",
        // IPv6
        "::", "::1", "fc00::1", "fd12:3456::1", "fe80::1", "febf::1", "fec0::1",
        "ff02::1", "ff0e::1", "100::1", "2001:db8::1",
        // IPv4 embedded in IPv6 is judged by the IPv4 address
        "::ffff:127.0.0.1", "::ffff:10.1.2.3", "::ffff:169.254.169.254",
        "::ffff:0.0.0.0", "::127.0.0.1", "64:ff9b::192.168.1.1",
        "2002:7f00:0001::1", "2002:a9fe:a9fe::1",
    };
    static const char *allowed[] = {
        "1.1.1.1", "8.8.8.8", "9.255.255.255", "11.0.0.0", "100.63.255.255",
        "100.128.0.0", "126.255.255.255", "128.0.0.1", "169.253.255.255",
        "169.255.0.0", "172.15.255.255", "172.32.0.0", "192.167.255.255",
        "192.169.0.0", "198.17.255.255", "198.20.0.0", "223.255.255.255",
        "2606:4700:4700::1111", "2001:4860:4860::8888", "::ffff:8.8.8.8",
        "64:ff9b::808:808", "2002:0808:0808::1", "fbff::1", "fe7f::1",
    };
    for (size_t i = 0; i < sizeof denied / sizeof denied[0]; i++)
        s_check (denied[i], false);
    for (size_t i = 0; i < sizeof allowed / sizeof allowed[0]; i++)
        s_check (allowed[i], true);

    // Other families and NULL are refused even with the opt-out.
    struct sockaddr unix_addr = { .sa_family = AF_UNIX };
    assert (!ssrf_address_allowed (&unix_addr, false));
    assert (!ssrf_address_allowed (&unix_addr, true));
    assert (!ssrf_address_allowed (NULL, true));
    // What is no address parses to none, which the policy refuses.
    struct sockaddr_storage storage;
    static const char *const not_addresses[] = { "not an address", "", "1.2.3", "::g",
                                                  "127.0.0.1 ", "[::1]" };
    for (size_t i = 0; i < sizeof not_addresses / sizeof not_addresses[0]; i++) {
        assert (!ssrf_address_parse (not_addresses[i], &storage));
        assert (!ssrf_address_allowed ((const struct sockaddr *) &storage, true));
    }
    assert (!ssrf_address_parse (NULL, &storage));
    s_check_allow_networks ();
    if (verbose)
        printf ("OK\n");
}
