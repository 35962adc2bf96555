// sse — one event stream of a job (GET /v1/jobs/{id}/events, SPEC §3):
// what its client has, what it is sent next, and in which order.
//
// State only: no I/O, no clock. The gateway feeds it job records (from a
// read of the store) and live events (from the broker's publisher), and
// hands libmicrohttpd what sse_read returns. The events:
//
//   id: s<attempt>.<status>  event: status  data: {"status","attempts"}
//   id: c<attempt>.<index>   event: chunk   data: {"attempt","index","data"}
//   id: r                    event: result  data: the job object
//
// <attempt> is the attempt's identity (the record's attempt_seq, docs/
// protocol.md §3.2.1): it never repeats for a job, across retries
// included, so an id names one event for good and a client that resumes
// with Last-Event-ID is sent exactly what it lacks. A chunk or status the
// client has (its id, or one before it) is not sent again.
//
// Memory is bounded by the buffer size given (gateway.sse_buffer_bytes): a
// chunk that does not fit is held back with every one after it — the stream
// is then stale, and reads the job's chunks again once its client has taken
// what was buffered, so a slow client gets every chunk in order without the
// gateway holding more than the buffer. Status events and the result's head
// always go in (few and small), a chunk always goes into an empty buffer
// (however large, it is one event), and the result's data is handed over
// straight from the shared rendered job, never copied whole (issue 17 #7).
#ifndef JOBGATE_SSE_H
#define JOBGATE_SSE_H

#include "job.h"
#include "jobcache.h"
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct _sse_t sse_t;

// What became of a chunk handed to the stream.
typedef enum {
    SSE_CHUNK_SENT,         // buffered for the client
    SSE_CHUNK_SKIPPED,      // the client has it, it is not text, or the stream is stale
    SSE_CHUNK_HELD_BACK,    // no room: the stream just went stale (a slow client)
} sse_chunk_t;

// sse_new makes a stream that buffers at most buffer_bytes. This function
// can't fail (out of memory aborts: common/mem.h).
sse_t *sse_new (size_t buffer_bytes);

// sse_destroy frees the stream; nulls *self_p.
void sse_destroy (sse_t **self_p);

// sse_resume_after takes a client's Last-Event-ID (may be NULL): what it
// names and everything before it is not sent. An id this stream never
// writes is ignored (the stream starts from the beginning).
void sse_resume_after (sse_t *self, const char *last_event_id);

// sse_job applies a fresh record of the job: its status, then the chunks of
// its running attempt the client lacks (chunks, size bytes: repeated
// [u32 index][u32 length][data] in host order, as JOB carries them, or
// NULL), then, when the job is finished, the result (rendered, a reference
// is taken) — after which the stream ends. Clears the stream's staleness.
// Returns SSE_CHUNK_HELD_BACK when chunks were held back, else
// SSE_CHUNK_SENT.
sse_chunk_t sse_job (sse_t *self, const job_t *job, const char *chunks, size_t size,
                     jobtext_t *rendered);

// sse_chunk applies a live chunk event (attempt is its identity). A stale
// stream skips it: its next read of the job brings it in order.
sse_chunk_t sse_chunk (sse_t *self, int64_t attempt, int64_t index, const char *data,
                       size_t len);

// sse_status applies a live status event (not terminal: the result comes
// with a read of the job) of the attempt whose identity is attempt. A stale
// stream skips it: its next read of the job brings the status.
void sse_status (sse_t *self, job_status_t status, int attempts, int64_t attempt);

// sse_set_stale makes the stream skip live chunks until its next sse_job:
// a status event came, and only a read of the job tells the status's
// attempt identity (what comes after it must come after it).
void sse_set_stale (sse_t *self);

// sse_comment buffers a comment line (": text"), unless the buffer is full
// (a keep-alive that finds the client behind is not needed).
void sse_comment (sse_t *self, const char *text);

// sse_end ends the stream after what is buffered (draining, client gone).
void sse_end (sse_t *self);

// sse_read copies up to max bytes of the stream into buf: buffered events
// first, then the result's data. Returns the bytes copied; 0 when there is
// nothing to hand over now (sse_over then says whether the stream is over).
size_t sse_read (sse_t *self, char *buf, size_t max);

// sse_over is true when the stream has ended and everything was read.
bool sse_over (const sse_t *self);

// sse_ended is true when the stream takes nothing more (result or end).
bool sse_ended (const sse_t *self);

// sse_stale is true when the next events must come from a read of the job.
bool sse_stale (const sse_t *self);

// sse_test runs the self-test.
void sse_test (bool verbose);

#endif
