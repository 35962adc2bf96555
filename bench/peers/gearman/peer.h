// peer.h — what gearman-front and gearman-worker share: the gearmand address
// from the command line and the stop on SIGTERM or SIGINT.
#ifndef JOBGATE_BENCH_GEARMAN_PEER_H
#define JOBGATE_BENCH_GEARMAN_PEER_H

#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

// peer_parse_server splits "HOST:PORT" in place; returns 0, or -1 when the
// text is not that shape or the port is not 1..65535.
static inline int
peer_parse_server (char *server, const char **host, in_port_t *port)
{
    char *colon = strrchr (server, ':');
    if (!colon)
        return -1;
    *colon = 0;
    unsigned long number = strtoul (colon + 1, NULL, 10);
    if (number == 0 || number > 65535)
        return -1;
    *host = server;
    *port = (in_port_t) number;
    return 0;
}

// peer_block_stop_signals blocks SIGTERM and SIGINT in the caller (and the
// threads it starts afterwards) and fills `stop` for sigwait: the main thread
// alone takes them. SIGPIPE is ignored (a client gone is an error return).
static inline void
peer_block_stop_signals (sigset_t *stop)
{
    sigemptyset (stop);
    sigaddset (stop, SIGTERM);
    sigaddset (stop, SIGINT);
    pthread_sigmask (SIG_BLOCK, stop, NULL);
    signal (SIGPIPE, SIG_IGN);
}

#endif
