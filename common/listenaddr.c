// listenaddr — the one reading of a listening address in the config.
#include "listenaddr.h"

#include <arpa/inet.h>
#include <assert.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int
listenaddr_parse (const char *text, struct sockaddr_storage *addr)
{
    memset (addr, 0, sizeof *addr);
    const char *colon = strrchr (text, ':');
    if (!colon || !colon[1])
        return -1;
    char *end;
    long port = strtol (colon + 1, &end, 10);
    if (*end || port < 0 || port > 65535)
        return -1;
    char host[64];
    size_t host_len = (size_t) (colon - text);
    if (host_len >= sizeof host)
        return -1;
    memcpy (host, text, host_len);
    host[host_len] = '\0';
    if (host[0] == '[' && host_len > 2 && host[host_len - 1] == ']') {
        host[host_len - 1] = '\0';
        struct sockaddr_in6 *in6 = (struct sockaddr_in6 *) addr;
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons ((uint16_t) port);
        return inet_pton (AF_INET6, host + 1, &in6->sin6_addr) == 1 ? 0 : -1;
    }
    struct sockaddr_in *in4 = (struct sockaddr_in *) addr;
    in4->sin_family = AF_INET;
    in4->sin_port = htons ((uint16_t) port);
    if (strcmp (host, "localhost") == 0)
        strcpy (host, "127.0.0.1");
    if (host[0] == '\0' || strcmp (host, "*") == 0)
        strcpy (host, "0.0.0.0");
    return inet_pton (AF_INET, host, &in4->sin_addr) == 1 ? 0 : -1;
}

void
listenaddr_test (bool verbose)
{
    if (verbose)
        printf (" * listenaddr: ");
    struct sockaddr_storage addr;
    assert (listenaddr_parse ("127.0.0.1:8080", &addr) == 0 && addr.ss_family == AF_INET);
    struct sockaddr_in *in4 = (struct sockaddr_in *) &addr;
    assert (ntohs (in4->sin_port) == 8080 && ntohl (in4->sin_addr.s_addr) == 0x7f000001);
    assert (listenaddr_parse ("localhost:0", &addr) == 0
            && ntohl (in4->sin_addr.s_addr) == 0x7f000001 && in4->sin_port == 0);
    assert (listenaddr_parse (":9100", &addr) == 0 && in4->sin_addr.s_addr == 0);
    assert (listenaddr_parse ("*:9100", &addr) == 0 && in4->sin_addr.s_addr == 0);
    assert (listenaddr_parse ("[::1]:9100", &addr) == 0 && addr.ss_family == AF_INET6
            && ntohs (((struct sockaddr_in6 *) &addr)->sin6_port) == 9100);
    // Not an address: no port, a port out of range or not a number, a name.
    const char *bad[] = { "127.0.0.1", "127.0.0.1:", "127.0.0.1:65536", "127.0.0.1:-1",
                          "127.0.0.1:80x", "example:80", "[::1:80", "[]:80", "1.2.3:80",
                          "0123456789012345678901234567890123456789012345678901234567890123:1" };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert (listenaddr_parse (bad[i], &addr) == -1);
    if (verbose)
        printf ("OK\n");
}
