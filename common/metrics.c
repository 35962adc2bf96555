// metrics — a process's Prometheus series and their text rendering.
#include "metrics.h"
#include "clock.h"
#include "mem.h"

#include <assert.h>
#include <czmq.h>
#include <dirent.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "version.h"


// Separates label values in a series' key (never in a value we keep: the
// text format's values are UTF-8, and callers pass names, not bytes).
#define KEY_SEPARATOR '\x1f'

const double metrics_seconds_buckets[] = { 0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                                           1,     2.5,   5,    10,    30,    60,  120, 300, 600 };
const size_t metrics_seconds_buckets_count
    = sizeof metrics_seconds_buckets / sizeof metrics_seconds_buckets[0];

typedef enum { TYPE_COUNTER, TYPE_GAUGE, TYPE_HISTOGRAM } metric_type_t;

// One series: a list of label values and its figures.
typedef struct {
    char *values[METRICS_LABELS_MAX]; // label values, in the family's order
    double value;               // counter or gauge value; a histogram's sum
    uint64_t count;             // a histogram's observations
    uint64_t *buckets;          // a histogram's observations per bucket (not cumulative)
} series_t;

struct _metric_t {
    metrics_t *registry;        // the registry it belongs to
    metric_type_t type;         // counter, gauge or histogram
    char *name;                 // the family's name
    char *help;                 // its HELP line
    char *labels[METRICS_LABELS_MAX]; // label names
    size_t labels_count;        // how many
    double *bounds;             // a histogram's bucket upper bounds, increasing
    size_t bounds_count;        // how many (+Inf not included)
    zhashx_t *series;           // key (values joined by KEY_SEPARATOR) → series_t
};

struct _metrics_t {
    char *process;              // the process's name, for jobgate_build_info
    zlistx_t *families;         // metric_t, in the order registered
    uint64_t series_dropped;    // series refused past METRICS_SERIES_MAX
};

static void
s_series_destroy (void **item)
{
    series_t *series = *item;
    if (!series)
        return;
    for (size_t i = 0; i < METRICS_LABELS_MAX; i++)
        free (series->values[i]);
    free (series->buckets);
    free (series);
    *item = NULL;
}

static void
s_metric_destroy (void **item)
{
    metric_t *self = *item;
    if (!self)
        return;
    zhashx_destroy (&self->series);
    free (self->name);
    free (self->help);
    for (size_t i = 0; i < self->labels_count; i++)
        free (self->labels[i]);
    free (self->bounds);
    free (self);
    *item = NULL;
}

metrics_t *
metrics_new (const char *process)
{
    metrics_t *self = mem_calloc (1, sizeof *self);
    self->process = mem_strdup (process);
    self->families = mem_lib (zlistx_new ());
    zlistx_set_destructor (self->families, s_metric_destroy);
    return self;
}

void
metrics_destroy (metrics_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    metrics_t *self = *self_p;
    zlistx_destroy (&self->families);
    free (self->process);
    free (self);
    *self_p = NULL;
}

// s_valid_name is true for a metric or label name of the text format.
static bool
s_valid_name (const char *name, size_t len)
{
    if (len == 0)
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = name[i];
        bool letter = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':';
        if (!letter && !(i > 0 && c >= '0' && c <= '9'))
            return false;
    }
    return true;
}

static metric_t *
s_register (metrics_t *self, metric_type_t type, const char *name, const char *labels,
            const char *help)
{
    assert (s_valid_name (name, strlen (name)));
    assert (help && !strchr (help, '\n'));
    metric_t *metric = mem_calloc (1, sizeof *metric);
    metric->registry = self;
    metric->type = type;
    metric->name = mem_strdup (name);
    metric->help = mem_strdup (help);
    const char *at = labels;
    while (at && *at) {
        const char *comma = strchr (at, ',');
        size_t len = comma ? (size_t) (comma - at) : strlen (at);
        assert (metric->labels_count < METRICS_LABELS_MAX && s_valid_name (at, len)
                && !(len == 2 && memcmp (at, "le", 2) == 0));
        metric->labels[metric->labels_count++] = mem_strndup (at, len);
        at = comma ? comma + 1 : NULL;
    }
    metric->series = mem_lib (zhashx_new ());
    zhashx_set_destructor (metric->series, s_series_destroy);
    zlistx_add_end (self->families, metric);
    return metric;
}

metric_t *
metrics_counter (metrics_t *self, const char *name, const char *labels, const char *help)
{
    // The text format names a counter's samples NAME; its family keeps
    // the conventional _total in the name itself.
    return s_register (self, TYPE_COUNTER, name, labels, help);
}

metric_t *
metrics_gauge (metrics_t *self, const char *name, const char *labels, const char *help)
{
    return s_register (self, TYPE_GAUGE, name, labels, help);
}

metric_t *
metrics_histogram (metrics_t *self, const char *name, const char *labels, const double *bounds,
                   size_t count, const char *help)
{
    metric_t *metric = s_register (self, TYPE_HISTOGRAM, name, labels, help);
    assert (count > 0);
    metric->bounds = mem_calloc (count, sizeof *metric->bounds);
    for (size_t i = 0; i < count; i++) {
        assert (i == 0 || bounds[i] > bounds[i - 1]);
        metric->bounds[i] = bounds[i];
    }
    metric->bounds_count = count;
    return metric;
}

// s_series returns the series named by the label values in args, made at
// zero when new; NULL when the family is full (counted), or with make
// false, when it does not exist.
static series_t *
s_series (metric_t *self, va_list args, bool make)
{
    const char *values[METRICS_LABELS_MAX];
    char key[1024];
    size_t len = 0;
    for (size_t i = 0; i < self->labels_count; i++) {
        const char *value = va_arg (args, const char *);
        values[i] = value ? value : "";
        int n = snprintf (key + len, sizeof key - len, "%s%c", values[i], KEY_SEPARATOR);
        if (n < 0 || (size_t) n >= sizeof key - len)
            return NULL; // a key this long is no label set we make
        len += (size_t) n;
    }
    key[len] = '\0';
    series_t *series = zhashx_lookup (self->series, key);
    if (series || !make)
        return series;
    if (zhashx_size (self->series) >= METRICS_SERIES_MAX) {
        self->registry->series_dropped++;
        return NULL;
    }
    series = mem_calloc (1, sizeof *series);
    for (size_t i = 0; i < self->labels_count; i++)
        series->values[i] = mem_strdup (values[i]);
    if (self->type == TYPE_HISTOGRAM)
        series->buckets = mem_calloc (self->bounds_count + 1, sizeof *series->buckets);
    zhashx_insert (self->series, key, series);
    return series;
}

// s_update adds value to a counter's or gauge's series, or sets it.
static void
s_update (metric_t *self, double value, bool add, va_list args)
{
    assert (self->type != TYPE_HISTOGRAM);
    series_t *series = s_series (self, args, true);
    if (series)
        series->value = add ? series->value + value : value;
}

void
metric_add (metric_t *self, double value, ...)
{
    va_list args;
    va_start (args, value);
    s_update (self, value, true, args);
    va_end (args);
}

void
metric_set (metric_t *self, double value, ...)
{
    va_list args;
    va_start (args, value);
    s_update (self, value, false, args);
    va_end (args);
}

void
metric_observe (metric_t *self, double value, ...)
{
    assert (self->type == TYPE_HISTOGRAM);
    va_list args;
    va_start (args, value);
    series_t *series = s_series (self, args, true);
    va_end (args);
    if (!series || isnan (value))
        return;
    size_t bucket = 0;
    while (bucket < self->bounds_count && value > self->bounds[bucket])
        bucket++;
    series->buckets[bucket]++;
    series->count++;
    series->value += value;
}

void
metric_touch (metric_t *self, ...)
{
    va_list args;
    va_start (args, self);
    s_series (self, args, true);
    va_end (args);
}

void
metric_clear (metric_t *self)
{
    zhashx_purge (self->series);
}

double
metric_value (metric_t *self, ...)
{
    va_list args;
    va_start (args, self);
    series_t *series = s_series (self, args, false);
    va_end (args);
    if (!series)
        return 0;
    return self->type == TYPE_HISTOGRAM ? (double) series->count : series->value;
}

// s_number writes a sample value as the text format reads it.
static void
s_number (FILE *out, double value)
{
    if (isnan (value))
        fputs ("NaN", out);
    else if (isinf (value))
        fputs (value > 0 ? "+Inf" : "-Inf", out);
    else if (value == floor (value) && fabs (value) < 1e15)
        fprintf (out, "%.0f", value);
    else {
        // The shortest form that reads back as the same double.
        char text[32];
        for (int digits = 15; digits <= 17; digits++) {
            snprintf (text, sizeof text, "%.*g", digits, value);
            if (strtod (text, NULL) == value)
                break;
        }
        fputs (text, out);
    }
}

// s_escaped writes a label value escaped (backslash, double quote, newline).
static void
s_escaped (FILE *out, const char *value)
{
    for (const char *c = value; *c; c++) {
        if (*c == '\\')
            fputs ("\\\\", out);
        else if (*c == '"')
            fputs ("\\\"", out);
        else if (*c == '\n')
            fputs ("\\n", out);
        else
            fputc (*c, out);
    }
}

// s_labels writes {a="x",b="y"} with the series' labels and, if le is
// given, the bucket's bound; nothing when there are none.
static void
s_labels (FILE *out, const metric_t *metric, const series_t *series, const char *le)
{
    if (metric->labels_count == 0 && !le)
        return;
    fputc ('{', out);
    for (size_t i = 0; i < metric->labels_count; i++) {
        fprintf (out, "%s%s=\"", i ? "," : "", metric->labels[i]);
        s_escaped (out, series->values[i]);
        fputc ('"', out);
    }
    if (le)
        fprintf (out, "%sle=\"%s\"", metric->labels_count ? "," : "", le);
    fputc ('}', out);
}

static int
s_compare_keys (const void *a, const void *b)
{
    return strcmp (*(const char *const *) a, *(const char *const *) b);
}

static void
s_render_family (FILE *out, metric_t *metric)
{
    static const char *types[] = { "counter", "gauge", "histogram" };
    fprintf (out, "# HELP %s %s\n# TYPE %s %s\n", metric->name, metric->help, metric->name,
             types[metric->type]);
    // Series in the order of their keys: the same text for the same figures.
    size_t count = zhashx_size (metric->series), i = 0;
    const char **keys = mem_calloc (count + 1, sizeof *keys);
    for (series_t *series = zhashx_first (metric->series); series;
         series = zhashx_next (metric->series))
        keys[i++] = zhashx_cursor (metric->series);
    qsort (keys, count, sizeof *keys, s_compare_keys);
    for (i = 0; i < count; i++) {
        series_t *series = zhashx_lookup (metric->series, keys[i]);
        if (metric->type != TYPE_HISTOGRAM) {
            fputs (metric->name, out);
            s_labels (out, metric, series, NULL);
            fputc (' ', out);
            s_number (out, series->value);
            fputc ('\n', out);
            continue;
        }
        uint64_t cumulative = 0;
        for (size_t b = 0; b <= metric->bounds_count; b++) {
            cumulative += series->buckets[b];
            char le[32];
            if (b < metric->bounds_count)
                snprintf (le, sizeof le, "%g", metric->bounds[b]);
            else
                snprintf (le, sizeof le, "+Inf");
            fprintf (out, "%s_bucket", metric->name);
            s_labels (out, metric, series, le);
            fprintf (out, " %llu\n", (unsigned long long) cumulative);
        }
        fprintf (out, "%s_sum", metric->name);
        s_labels (out, metric, series, NULL);
        fputc (' ', out);
        s_number (out, series->value);
        fprintf (out, "\n%s_count", metric->name);
        s_labels (out, metric, series, NULL);
        fprintf (out, " %llu\n", (unsigned long long) series->count);
    }
    free (keys);
}

// s_process writes process_* and jobgate_build_info.
static void
s_process (FILE *out, const char *process)
{
    metrics_process_t facts = metrics_process_read ();
    static const struct {
        const char *name, *type, *help;
        size_t offset;
    } rows[] = {
        { "process_cpu_seconds_total", "counter", "User and system CPU time spent in seconds.",
          offsetof (metrics_process_t, cpu_seconds) },
        { "process_resident_memory_bytes", "gauge", "Resident memory size in bytes.",
          offsetof (metrics_process_t, resident_bytes) },
        { "process_virtual_memory_bytes", "gauge", "Virtual memory size in bytes.",
          offsetof (metrics_process_t, virtual_bytes) },
        { "process_open_fds", "gauge", "Number of open file descriptors.",
          offsetof (metrics_process_t, open_fds) },
        { "process_max_fds", "gauge", "Maximum number of open file descriptors.",
          offsetof (metrics_process_t, max_fds) },
        { "process_start_time_seconds", "gauge",
          "Start time of the process since unix epoch in seconds.",
          offsetof (metrics_process_t, start_time_seconds) },
    };
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        fprintf (out, "# HELP %s %s\n# TYPE %s %s\n%s ", rows[i].name, rows[i].help,
                 rows[i].name, rows[i].type, rows[i].name);
        s_number (out, *(const double *) ((const char *) &facts + rows[i].offset));
        fputc ('\n', out);
    }
    fprintf (out, "# HELP jobgate_build_info The jobgate version this process runs (always 1).\n"
                  "# TYPE jobgate_build_info gauge\n"
                  "jobgate_build_info{version=\"%s\",process=\"",
             JOBGATE_VERSION);
    s_escaped (out, process);
    fputs ("\"} 1\n", out);
}

char *
metrics_render (metrics_t *self, size_t *size)
{
    char *text = NULL;
    size_t len = 0;
    FILE *out = open_memstream (&text, &len);
    mem_abort_if (!out);
    for (metric_t *metric = zlistx_first (self->families); metric;
         metric = zlistx_next (self->families))
        s_render_family (out, metric);
    fprintf (out, "# HELP jobgate_metrics_series_dropped_total Series not made because their "
                  "family held %d already.\n# TYPE jobgate_metrics_series_dropped_total counter\n"
                  "jobgate_metrics_series_dropped_total %llu\n",
             METRICS_SERIES_MAX, (unsigned long long) self->series_dropped);
    s_process (out, self->process);
    mem_abort_if (fclose (out) != 0);
    if (size)
        *size = len;
    return text;
}

char *
metrics_process_text (const char *process)
{
    char *text = NULL;
    size_t len = 0;
    FILE *out = open_memstream (&text, &len);
    mem_abort_if (!out);
    s_process (out, process);
    mem_abort_if (fclose (out) != 0);
    return text;
}

// s_boot_time returns when the machine booted, Unix seconds (0: unknown).
static double
s_boot_time (void)
{
    FILE *file = fopen ("/proc/stat", "r");
    if (!file)
        return 0;
    char line[256];
    double boot = 0;
    while (fgets (line, sizeof line, file))
        if (sscanf (line, "btime %lf", &boot) == 1)
            break;
    fclose (file);
    return boot;
}

metrics_process_t
metrics_process_read (void)
{
    metrics_process_t facts = { 0 };
    double ticks = (double) sysconf (_SC_CLK_TCK);
    double page = (double) sysconf (_SC_PAGESIZE);
    FILE *file = fopen ("/proc/self/stat", "r");
    if (file) {
        char line[1024];
        size_t len = fread (line, 1, sizeof line - 1, file);
        fclose (file);
        line[len] = '\0';
        // The command name may hold spaces and parentheses: the fields
        // start after its last ')'. Fields 14, 15 (utime, stime), 22
        // (starttime), 23 (vsize), 24 (rss), counting from 1.
        char *after = strrchr (line, ')');
        unsigned long utime, stime, vsize;
        unsigned long long start;
        long rss;
        if (after
            && sscanf (after + 2,
                       "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu %*d %*d %*d %*d "
                       "%*d %*d %llu %lu %ld",
                       &utime, &stime, &start, &vsize, &rss)
                   == 5
            && ticks > 0) {
            facts.cpu_seconds = (double) (utime + stime) / ticks;
            facts.start_time_seconds = s_boot_time () + (double) start / ticks;
            facts.virtual_bytes = (double) vsize;
            facts.resident_bytes = (double) rss * page;
        }
    }
    DIR *fds = opendir ("/proc/self/fd");
    if (fds) {
        size_t open = 0;
        for (struct dirent *entry = readdir (fds); entry; entry = readdir (fds))
            if (entry->d_name[0] != '.')
                open++;
        closedir (fds);
        facts.open_fds = (double) (open > 0 ? open - 1 : 0); // less the one reading it
    }
    struct rlimit limit;
    if (getrlimit (RLIMIT_NOFILE, &limit) == 0)
        facts.max_fds = limit.rlim_cur == RLIM_INFINITY ? 0 : (double) limit.rlim_cur;
    return facts;
}

bool
metrics_text_has (const char *text, const char *line)
{
    size_t len = strlen (line);
    for (const char *at = strstr (text, line); at; at = strstr (at + 1, line))
        if ((at == text || at[-1] == '\n') && at[len] == '\n')
            return true;
    return false;
}

// --- self-test ---

void
metrics_test (bool verbose)
{
    if (verbose)
        printf (" * metrics: ");
    metrics_t *metrics = metrics_new ("test");
    metric_t *finished = metrics_counter (metrics, "jobgate_jobs_finished_total",
                                          "provider,status", "Jobs finished.");
    metric_t *queued = metrics_gauge (metrics, "jobgate_queued_jobs", "provider,priority",
                                      "Jobs queued.");
    const double bounds[] = { 0.1, 1, 10 };
    metric_t *latency = metrics_histogram (metrics, "jobgate_upstream_duration_seconds",
                                           "provider", bounds, 3, "Upstream call durations.");
    metric_t *up = metrics_gauge (metrics, "jobgate_up", "", "Always 1.");

    // Label sets made at zero exist before the first event.
    metric_touch (finished, "mock", "failed");
    metric_add (finished, 1, "mock", "succeeded");
    metric_add (finished, 2, "mock", "succeeded");
    assert (metric_value (finished, "mock", "succeeded") == 3);
    assert (metric_value (finished, "mock", "failed") == 0);
    assert (metric_value (finished, "other", "failed") == 0);
    metric_set (queued, 7, "mock", "5");
    metric_set (queued, 4, "mock", "5");
    metric_set (up, 1);
    // Observations land in the first bucket whose bound holds them; the
    // bounds are inclusive (le).
    metric_observe (latency, 0.05, "mock");
    metric_observe (latency, 0.1, "mock");
    metric_observe (latency, 5, "mock");
    metric_observe (latency, 100, "mock");
    metric_observe (latency, NAN, "mock");
    assert (metric_value (latency, "mock") == 4);

    // Values that the format must escape; NULL reads as "".
    metric_add (finished, 1, "we\"ird\\na\nme", NULL);

    size_t size;
    char *text = metrics_render (metrics, &size);
    assert (strlen (text) == size);
    assert (metrics_text_has (text, "# HELP jobgate_jobs_finished_total Jobs finished."));
    assert (metrics_text_has (text, "# TYPE jobgate_jobs_finished_total counter"));
    assert (metrics_text_has (text, "jobgate_jobs_finished_total{provider=\"mock\",status=\"failed\"} 0"));
    assert (metrics_text_has (text,
                        "jobgate_jobs_finished_total{provider=\"mock\",status=\"succeeded\"} 3"));
    assert (metrics_text_has (text, "jobgate_jobs_finished_total{provider=\"we\\\"ird\\\\na\\nme\","
                              "status=\"\"} 1"));
    assert (metrics_text_has (text, "jobgate_queued_jobs{provider=\"mock\",priority=\"5\"} 4"));
    assert (metrics_text_has (text, "# TYPE jobgate_upstream_duration_seconds histogram"));
    assert (metrics_text_has (text,
                        "jobgate_upstream_duration_seconds_bucket{provider=\"mock\",le=\"0.1\"} 2"));
    assert (metrics_text_has (text,
                        "jobgate_upstream_duration_seconds_bucket{provider=\"mock\",le=\"1\"} 2"));
    assert (metrics_text_has (text,
                        "jobgate_upstream_duration_seconds_bucket{provider=\"mock\",le=\"10\"} 3"));
    assert (metrics_text_has (text,
                        "jobgate_upstream_duration_seconds_bucket{provider=\"mock\",le=\"+Inf\"} 4"));
    assert (metrics_text_has (text, "jobgate_upstream_duration_seconds_sum{provider=\"mock\"} 105.15"));
    assert (metrics_text_has (text, "jobgate_upstream_duration_seconds_count{provider=\"mock\"} 4"));
    assert (metrics_text_has (text, "jobgate_up 1"));
    assert (metrics_text_has (text, "# TYPE process_cpu_seconds_total counter"));
    assert (metrics_text_has (text, "jobgate_build_info{version=\"" JOBGATE_VERSION
                              "\",process=\"test\"} 1"));
    assert (metrics_text_has (text, "jobgate_metrics_series_dropped_total 0"));
    // The families come in the order registered; series sorted.
    assert (strstr (text, "jobgate_jobs_finished_total{") < strstr (text, "jobgate_queued_jobs{"));
    assert (strstr (text, "status=\"failed\"") < strstr (text, "status=\"succeeded\""));
    free (text);

    // A family cleared loses its series; it is still rendered (HELP, TYPE).
    metric_clear (queued);
    assert (metric_value (queued, "mock", "5") == 0);
    text = metrics_render (metrics, NULL);
    assert (metrics_text_has (text, "# TYPE jobgate_queued_jobs gauge"));
    assert (!strstr (text, "jobgate_queued_jobs{"));
    free (text);

    // A family holds at most METRICS_SERIES_MAX series: more are dropped
    // and counted, the ones it has still count.
    metric_t *many = metrics_counter (metrics, "jobgate_many_total", "id", "Many.");
    char id[32];
    for (int i = 0; i < METRICS_SERIES_MAX + 5; i++) {
        snprintf (id, sizeof id, "%d", i);
        metric_add (many, 1, id);
    }
    metric_add (many, 1, "0");
    assert (metric_value (many, "0") == 2);
    assert (metric_value (many, "10004") == 0);
    text = metrics_render (metrics, NULL);
    assert (metrics_text_has (text, "jobgate_metrics_series_dropped_total 5"));
    free (text);

    // The process's own facts are read from /proc.
    metrics_process_t facts = metrics_process_read ();
    assert (facts.resident_bytes > 0 && facts.virtual_bytes >= facts.resident_bytes);
    assert (facts.open_fds >= 3 && facts.max_fds >= facts.open_fds);
    double now = (double) clock_wall_ms () / 1000;
    assert (facts.start_time_seconds > now - 86400 * 365 && facts.start_time_seconds <= now + 1);
    char *process = metrics_process_text ("gateway");
    assert (metrics_text_has (process, "jobgate_build_info{version=\"" JOBGATE_VERSION
                                 "\",process=\"gateway\"} 1"));
    assert (strstr (process, "\nprocess_open_fds "));
    free (process);
    metrics_destroy (&metrics);
    metrics_destroy (&metrics);
    if (verbose)
        printf ("OK\n");
}
