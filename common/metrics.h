// metrics — a process's Prometheus series and their text rendering.
//
// A registry holds families (counter, gauge, histogram), each with a fixed
// list of label names, and their series, one per list of label values. A
// process registers its families once, at start, and creates the label
// sets it already knows (every provider × status, every tenant…) with zero
// values, so that increase() sees the first event. Values are plain
// doubles updated in the owning process's one loop: nothing here locks.
//
// Label values may come from outside the process (a worker's identity, an
// error type in a RESULT): callers map open sets onto closed ones where they
// can, and every family holds at most METRICS_SERIES_MAX series; further
// ones are dropped and counted (jobgate_metrics_series_dropped_total), never
// grown without bound. Values are escaped as the text format requires.
//
// Every rendering ends with the process's own facts: process_* (CPU, memory,
// file descriptors, start time, from /proc/self) and
// jobgate_build_info{version,process}.
//
// The text format is Prometheus' exposition format 0.0.4 (HELP, TYPE, then
// the samples; histograms as cumulative _bucket{le} with +Inf, _sum and
// _count), which `promtool check metrics` accepts.
#ifndef JOBGATE_METRICS_H
#define JOBGATE_METRICS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

// Series one family holds at most.
#define METRICS_SERIES_MAX 10000
// Label names one family has at most.
#define METRICS_LABELS_MAX 4

typedef struct _metrics_t metrics_t;
typedef struct _metric_t metric_t;

// The facts of a process, read from /proc/self (zeros where unreadable).
typedef struct {
    double cpu_seconds;         // user + system CPU time
    double resident_bytes;      // resident set size
    double virtual_bytes;       // virtual memory size
    double open_fds;            // file descriptors open
    double max_fds;             // their soft limit
    double start_time_seconds;  // when the process started, Unix seconds
} metrics_process_t;

// Bucket bounds, in seconds, for durations from a millisecond to ten
// minutes (upstream latency, queue wait, end to end).
extern const double metrics_seconds_buckets[];
extern const size_t metrics_seconds_buckets_count;

// metrics_new makes an empty registry of process (its name in
// jobgate_build_info: "broker", "gateway"). This function can't fail.
metrics_t *metrics_new (const char *process);

// metrics_destroy frees the registry and its families; nulls *self_p.
void metrics_destroy (metrics_t **self_p);

// metrics_counter, metrics_gauge and metrics_histogram register a family.
// labels is a comma-separated list of label names ("" for none, at most
// METRICS_LABELS_MAX); help is one line. A histogram takes count bucket
// upper bounds, increasing (+Inf is added). The family belongs to the
// registry. Names and labels are the program's own: a bad one aborts.
metric_t *metrics_counter (metrics_t *self, const char *name, const char *labels,
                           const char *help);
metric_t *metrics_gauge (metrics_t *self, const char *name, const char *labels,
                         const char *help);
metric_t *metrics_histogram (metrics_t *self, const char *name, const char *labels,
                             const double *bounds, size_t count, const char *help);

// metric_add adds value to the series named by the label values that
// follow (as many const char * as the family has labels; NULL reads as
// ""), made at zero if new. For counters and gauges.
void metric_add (metric_t *self, double value, ...);

// metric_set sets a gauge's series, or a counter's that mirrors a count a
// module keeps itself (it never goes down there).
void metric_set (metric_t *self, double value, ...);

// metric_observe counts one observation of a histogram's series.
void metric_observe (metric_t *self, double value, ...);

// metric_touch makes the series exist (at zero) without changing it.
void metric_touch (metric_t *self, ...);

// metric_clear drops every series of the family: for gauges rebuilt at each
// rendering whose label sets come and go (workers).
void metric_clear (metric_t *self);

// metric_value returns a counter's or gauge's series value, or a
// histogram's count; 0 when the series does not exist. For tests.
double metric_value (metric_t *self, ...);

// metrics_render returns the whole registry in the text format, then the
// process's facts; *size is its length. The caller frees it.
char *metrics_render (metrics_t *self, size_t *size);

// metrics_process_read reads the calling process's facts.
metrics_process_t metrics_process_read (void);

// metrics_process_text returns process_* and jobgate_build_info of the
// calling process (named process) in the text format: for a process that
// renders its other series itself. The caller frees it.
char *metrics_process_text (const char *process);

// metrics_text_has is true when text holds line as a whole line (tests).
bool metrics_text_has (const char *text, const char *line);

// metrics_test runs the self-test.
void metrics_test (bool verbose);

#endif
