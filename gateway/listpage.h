// listpage — one page of GET /v1/jobs (SPEC §3), rendered as it is sent.
//
// The broker answers LIST with packed job records, newest first, bounded
// by gateway.list_max_bytes (docs/protocol.md §3.1). The page keeps those
// records and renders one job at a time as the client reads: the gateway
// never holds more than the records and one rendered job, nor renders more
// at once than the client is ready to read (20 results of 8 MB once made
// one answer of 160 MB, issue 10 #6). Records of another tenant are
// skipped (defence in depth: the broker filters them already), as are
// records that do not unpack. State only: no I/O.
#ifndef JOBGATE_LISTPAGE_H
#define JOBGATE_LISTPAGE_H

#include "pack.h"
#include <stdbool.h>
#include <stddef.h>

typedef struct _listpage_t listpage_t;

// listpage_new takes the page from a LIST_OK body (its "jobs" records and
// "next_cursor", copied) for tenant. This function can't fail (out of
// memory aborts: common/mem.h).
listpage_t *listpage_new (pack_reader_t *body, const char *tenant);

// listpage_destroy frees the page; nulls *self_p.
void listpage_destroy (listpage_t **self_p);

// listpage_read copies up to max bytes of {"jobs":[...],"next_cursor":...}
// into buf, rendering the next job when the one before is all read.
// Returns the bytes copied; 0 at the end of the page.
size_t listpage_read (listpage_t *self, char *buf, size_t max);

// listpage_test runs the self-test.
void listpage_test (bool verbose);

#endif
