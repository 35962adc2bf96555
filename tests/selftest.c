// jobgate-selftest — runs the module self-tests: all, or one with -t NAME.
#include "clock.h"
#include "config.h"
#include "curve.h"
#include "evloop.h"
#include "job.h"
#include "html.h"
#include "httpfield.h"
#include "jsontext.h"
#include "log.h"
#include "urlpath.h"
#include "url.h"
#include "mem.h"
#include "metrics.h"
#include "listenaddr.h"
#include "pack.h"
#include "proto.h"
#include "request.h"
#include "response.h"
#include "scrub.h"
#include "textbuf.h"
#include "ssrf.h"
#include "stream.h"
#include "llmusage.h"
#include "transfer.h"
#include "utf8.h"
#include "webhook.h"
#include "worker.h"
#include "acks.h"
#include "broker.h"
#include "jobspec.h"
#include "headers.h"
#include "http1.h"
#include "frontdoor.h"
#include "jobcache.h"
#include "brokerclient.h"
#include "sse.h"
#include "waiters.h"
#include "mhdloop.h"
#include "batch.h"
#include "listpage.h"
#include "openai.h"
#include "gateway.h"
#include "routes.h"
#include "problem.h"
#include "queue.h"
#include "provider.h"
#include "store.h"
#include "bucket.h"
#include "tokens.h"
#include "ledger.h"
#include "cache.h"
#include "delivery.h"
#include "jobs.h"
#include "exporter.h"
#include "outbox.h"
#include "report.h"
#include "scheduler.h"
#include "service.h"
#include "telemetry.h"
#include "tenant.h"
#include "testpeer.h"
#include "throughput.h"
#include "workers.h"

#include <stdio.h>
#include <string.h>

typedef struct {
    const char *name;               // module name for -t
    void (*test) (bool verbose);    // its self-test
} selftest_t;

static const selftest_t s_tests[] = {
    { "mem", mem_test },           { "clock", clock_test },           { "utf8", utf8_test },         { "pack", pack_test },
    { "proto", proto_test },       { "job", job_test },           { "jsontext", jsontext_test },
    { "log", log_test },           { "urlpath", urlpath_test },   { "url", url_test },
    { "httpfield", httpfield_test }, { "metrics", metrics_test },
    { "listenaddr", listenaddr_test },
    { "webhook", webhook_test },   { "config", config_test },     { "evloop", evloop_test },
    { "service", service_test },
    { "curve", curve_test },
    { "queue", queue_test },       { "store", store_test },       { "bucket", bucket_test },
    { "tokens", tokens_test },     { "ledger", ledger_test },
    { "provider", provider_test }, { "tenant", tenant_test },     { "scheduler", scheduler_test },
    { "workers", workers_test },   { "report", report_test },     { "delivery", delivery_test },
    { "testpeer", testpeer_test }, { "acks", acks_test }, { "outbox", outbox_test },     { "jobs", jobs_test },
    { "cache", cache_test },         { "exporter", exporter_test },
    { "telemetry", telemetry_test },
    { "throughput", throughput_test },
    { "broker", broker_test },
    { "jobspec", jobspec_test },   { "problem", problem_test },   { "headers", headers_test },
    { "http1", http1_test },       { "frontdoor", frontdoor_test },
    { "jobcache", jobcache_test },  { "waiters", waiters_test },   { "sse", sse_test },
    { "batch", batch_test },        { "listpage", listpage_test }, { "mhdloop", mhdloop_test },
    { "brokerclient", brokerclient_test }, { "openai", openai_test },
    { "routes", routes_test },      { "gateway", gateway_test },
    { "ssrf", ssrf_test },         { "textbuf", textbuf_test },   { "html", html_test },
    { "scrub", scrub_test },       { "stream", stream_test },     { "response", response_test },
    { "llmusage", llmusage_test },
    { "request", request_test },
    { "transfer", transfer_test }, { "worker", worker_test },
};

int
main (int argc, char **argv)
{
    const char *only = NULL;
    bool verbose = true;
    for (int i = 1; i < argc; i++) {
        if (strcmp (argv[i], "-t") == 0 && i + 1 < argc)
            only = argv[++i];
        else if (strcmp (argv[i], "-q") == 0)
            verbose = false;
        else {
            printf ("usage: jobgate-selftest [-t NAME] [-q]\n");
            return strcmp (argv[i], "--help") == 0 ? 0 : 2;
        }
    }
    mem_init ();
    zsys_init ();
    int ran = 0;
    for (size_t i = 0; i < sizeof s_tests / sizeof s_tests[0]; i++)
        if (!only || strcmp (only, s_tests[i].name) == 0) {
            s_tests[i].test (verbose);
            ran++;
        }
    zsys_shutdown ();
    if (ran == 0) {
        fprintf (stderr, "jobgate-selftest: no test named %s\n", only);
        return 2;
    }
    return 0;
}
