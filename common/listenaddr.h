// listenaddr — the one reading of a listening address in the config
// ("HOST:PORT", "[V6]:PORT"; "localhost" is 127.0.0.1, "" or "*" every
// IPv4 address; port 0 lets the kernel choose), for gateway.listen and
// broker.metrics_listen alike. Numbers only: a listener never resolves a
// host name.
#ifndef JOBGATE_LISTENADDR_H
#define JOBGATE_LISTENADDR_H

#include <stdbool.h>
#include <sys/socket.h>

// listenaddr_parse turns text into a socket address. Returns 0, or -1
// when text is not one of the forms above (then *addr means nothing).
int listenaddr_parse (const char *text, struct sockaddr_storage *addr);

// listenaddr_test runs the self-test.
void listenaddr_test (bool verbose);

#endif
