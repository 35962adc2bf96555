// batch — one POST /v1/batch (SPEC §3): its items in order and their
// answers.
//
// Each valid spec of a batch is submitted like POST /v1/jobs, as an item
// with no HTTP connection of its own: its job id and its call to the
// broker. The batch keeps one answer per spec, in order — {"id","status"}
// once the broker has durably recorded the job, {"error": problem} when the
// spec was invalid or the broker refused it — and is complete when every
// submitted item is answered. At the deadline the items still waiting are
// reported as not accepted (503): each SUBMIT carries a deadline the broker
// enforces (docs/protocol.md §3.1), so an item reported as not accepted is
// never recorded afterwards. State only: no I/O.
#ifndef JOBGATE_BATCH_H
#define JOBGATE_BATCH_H

#include "job.h"
#include "proto.h"
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

// Jobs in one POST /v1/batch at most (SPEC §3).
#define BATCH_MAX 1000

typedef struct _batch_t batch_t;

// One submitted item: what the gateway needs to submit it and route the
// broker's answer back (the batch writes it; callers read it).
typedef struct {
    batch_t *batch;             // the batch it belongs to
    size_t index;               // its position in the batch
    char job_id[JOB_ID_LEN + 1]; // the job it submits
    uint64_t call;              // its call to the broker in flight, 0 = none
} batch_item_t;

// batch_new makes a batch of count specs (1 to BATCH_MAX), none answered,
// for owner (the request it answers; may be NULL). This function can't
// fail (out of memory aborts: common/mem.h).
batch_t *batch_new (size_t count, void *owner);

// batch_owner returns the owner given to batch_new.
void *batch_owner (const batch_t *self);

// batch_destroy frees the batch and its items (their calls must have been
// cancelled); nulls *self_p.
void batch_destroy (batch_t **self_p);

// batch_refuse answers spec index with problem (stolen): it is not submitted.
void batch_refuse (batch_t *self, size_t index, json_t *problem);

// batch_submit makes spec index an item that submits job job_id and returns
// it (owned by the batch); its answer is awaited.
batch_item_t *batch_submit (batch_t *self, size_t index, const char *job_id);

// batch_answer records the broker's answer to item (SUBMIT_OK, or ERROR
// with code and message; other commands are not answers to a SUBMIT and
// are ignored). Returns true when that completed the batch.
bool batch_answer (batch_item_t *item, proto_msg_t *msg);

// batch_item returns item index, or NULL when that spec was not submitted.
batch_item_t *batch_item (batch_t *self, size_t index);

// batch_count returns the specs in the batch; batch_waiting the submitted
// items not answered yet.
size_t batch_count (const batch_t *self);
size_t batch_waiting (const batch_t *self);

// batch_body returns the answer's body, {"jobs": [...]} in order; items
// still waiting are reported as not accepted (503). Returns a new reference.
json_t *batch_body (batch_t *self);

// batch_test runs the self-test.
void batch_test (bool verbose);

#endif
