// fuzz_jobspec — libFuzzer target: any bytes as a POST /v1/jobs body.
//
// jobspec_parse must answer every input with a job or an error list, never
// a crash, a leak or undefined behaviour; the invariants below also check
// that the answer is well formed, which a crash-only fuzzer would miss.
#include "jobspec.h"

#include <assert.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

// A fixed configuration with one provider, as a test deployment has.
static config_provider_t s_providers[] = {
    { .name = (char *) "mock", .base_url = (char *) "http://127.0.0.1:9" },
};
static const config_t s_config = { .providers = s_providers, .providers_count = 1 };

// LLVMFuzzerTestOneInput parses one body and checks the shape of the answer.
int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
    json_t *errors = NULL;
    job_t *job = jobspec_parse ((const char *) data, size, &s_config, &errors);
    if (job) {
        // An accepted spec normalizes to JSON that itself is accepted.
        assert (!errors && job->kind && job->spec);
        json_t *again = NULL;
        job_t *copy = jobspec_parse (job->spec, strlen (job->spec), &s_config, &again);
        assert (copy && !again);
        assert (strcmp (copy->spec, job->spec) == 0);
        job_destroy (&copy);
        job_destroy (&job);
    }
    else {
        // A refusal lists at least one {field, message} of strings.
        assert (json_is_array (errors) && json_array_size (errors) > 0);
        for (size_t i = 0; i < json_array_size (errors); i++) {
            json_t *entry = json_array_get (errors, i);
            assert (json_is_string (json_object_get (entry, "field")));
            assert (json_is_string (json_object_get (entry, "message")));
        }
        char *text = json_dumps (errors, JSON_COMPACT);
        assert (text);
        free (text);
        json_decref (errors);
    }
    return 0;
}
