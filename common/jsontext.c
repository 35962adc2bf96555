// jsontext — the one JSON policy from upstream to client.
#include "jsontext.h"
#include "mem.h"

#include <assert.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// The deepest nesting a scan can track (its stack of container kinds).
#define SCAN_DEPTH_LIMIT 256

jsontext_shape_t
jsontext_scan (const char *text, size_t len, size_t max_depth, size_t max_values)
{
    jsontext_shape_t shape = { .offset = len, .within = true };
    if (max_depth > SCAN_DEPTH_LIMIT)
        max_depth = SCAN_DEPTH_LIMIT;
    // What each open level is; a key of an object is not a value.
    bool is_object[SCAN_DEPTH_LIMIT];
    size_t depth = 0;
    bool in_string = false, escaped = false, in_token = false, expect_key = false;
    for (size_t i = 0; i < len; i++) {
        char c = text[i];
        if (in_string) {
            if (escaped)
                escaped = false;
            else if (c == '\\')
                escaped = true;
            else if (c == '"')
                in_string = false;
            continue;
        }
        bool counted = false;
        if (c == '"') {
            in_string = true;
            in_token = false;
            counted = !expect_key;
            expect_key = false;
        }
        else if (c == '[' || c == '{') {
            in_token = false;
            if (depth == max_depth) {
                shape.depth = depth + 1;
                shape.offset = i;
                shape.within = false;
                return shape;
            }
            is_object[depth++] = c == '{';
            if (depth > shape.depth)
                shape.depth = depth;
            counted = true;
            expect_key = c == '{';
        }
        else if (c == ']' || c == '}') {
            in_token = false;
            expect_key = false;
            if (depth > 0)
                depth--;
        }
        else if (c == ',') {
            in_token = false;
            expect_key = depth > 0 && is_object[depth - 1];
        }
        else if (c == ':' || c == ' ' || c == '\t' || c == '\r' || c == '\n')
            in_token = false;
        else if (!in_token) {
            // The first byte of a number, true, false or null.
            in_token = true;
            counted = true;
        }
        if (counted && ++shape.values > max_values) {
            shape.offset = i;
            shape.within = false;
            return shape;
        }
    }
    return shape;
}

bool
jsontext_within (const char *text, size_t len)
{
    return jsontext_scan (text, len, JSONTEXT_MAX_DEPTH, JSONTEXT_MAX_VALUES).within;
}

json_t *
jsontext_load (const char *text, size_t len, json_error_t *error)
{
    jsontext_shape_t shape = jsontext_scan (text, len, JSONTEXT_MAX_DEPTH, JSONTEXT_MAX_VALUES);
    if (!shape.within) {
        if (error) {
            memset (error, 0, sizeof *error);
            error->position = (int) (shape.offset > INT32_MAX ? INT32_MAX : shape.offset);
            snprintf (error->text, sizeof error->text, "%s",
                      shape.values > JSONTEXT_MAX_VALUES
                          ? "more values than the JSON policy allows"
                          : "nested deeper than the JSON policy allows");
        }
        return NULL;
    }
    // A raw NUL byte is never JSON (only "\u0000" is), but jansson 2.14
    // takes one right after a top-level number for the end of the text
    // ("2\0" loads as 2): a text spliced on that word would carry the NUL
    // into a record that cannot hold it (fuzz_result found it).
    const char *nul = memchr (text, '\0', len);
    if (nul) {
        if (error) {
            memset (error, 0, sizeof *error);
            error->position = (int) (nul - text);
            snprintf (error->text, sizeof error->text, "a NUL byte is not JSON");
        }
        return NULL;
    }
    return json_loadb (text, len, JSON_DECODE_ANY | JSON_ALLOW_NUL, error);
}

json_t *
jsontext_loads (const char *text, json_error_t *error)
{
    if (!text) {
        if (error) {
            memset (error, 0, sizeof *error);
            snprintf (error->text, sizeof error->text, "no text");
        }
        return NULL;
    }
    return jsontext_load (text, strlen (text), error);
}

char *
jsontext_dump (const json_t *value)
{
    return json_dumps (value, JSON_COMPACT | JSON_ENCODE_ANY);
}

// --- self-test ---

// s_nested returns levels arrays nested in each other (caller frees).
static char *
s_nested (size_t levels)
{
    char *text = mem_alloc (2 * levels + 1);
    memset (text, '[', levels);
    memset (text + levels, ']', levels);
    text[2 * levels] = '\0';
    return text;
}

void
jsontext_test (bool verbose)
{
    if (verbose)
        printf (" * jsontext: ");
    // Values are counted exactly for valid JSON: keys are not values.
    static const struct {
        const char *text;       // input
        size_t depth;           // deepest nesting
        size_t values;          // values it holds
    } shapes[] = {
        { "1", 0, 1 },
        { "\"a\"", 0, 1 },
        { "[]", 1, 1 },
        { "{}", 1, 1 },
        { "[1,2,3]", 1, 4 },
        { "{\"a\":1,\"b\":\"x\"}", 1, 3 },
        { "{\"a\":{\"b\":[true,false,null]}}", 3, 6 },
        { " [ -1.5e3 , \"x,]}\\\"\" , {} ] ", 2, 4 },
        { "[{},{},{}]", 2, 4 },
        { "{\"k\\\"ey\":\"v\"}", 1, 2 },
    };
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
        const char *text = shapes[i].text;
        jsontext_shape_t shape = jsontext_scan (text, strlen (text), 64, 1000);
        if (shape.depth != shapes[i].depth || shape.values != shapes[i].values)
            fprintf (stderr, "jsontext: %s: depth %zu values %zu\n", text, shape.depth,
                     shape.values);
        assert (shape.within && shape.offset == strlen (text));
        assert (shape.depth == shapes[i].depth && shape.values == shapes[i].values);
    }
    // Limits stop the scan where they are exceeded.
    jsontext_shape_t shape = jsontext_scan ("[1,2,3,4]", 9, 64, 3);
    assert (!shape.within && shape.values == 4 && shape.offset == 5);
    shape = jsontext_scan ("[[[1]]]", 7, 2, 100);
    assert (!shape.within && shape.depth == 3 && shape.offset == 2);
    shape = jsontext_scan ("[[1]]", 5, 2, 100);
    assert (shape.within && shape.depth == 2);

    // The policy's limits: 64 levels pass, 65 do not; nothing deeper than
    // the scan's own stack is ever tracked.
    char *deep = s_nested (JSONTEXT_MAX_DEPTH);
    assert (jsontext_within (deep, strlen (deep)));
    json_t *value = jsontext_loads (deep, NULL);
    assert (json_is_array (value));
    json_decref (value);
    free (deep);
    deep = s_nested (JSONTEXT_MAX_DEPTH + 1);
    json_error_t error;
    assert (!jsontext_within (deep, strlen (deep)));
    assert (jsontext_loads (deep, &error) == NULL && strstr (error.text, "deeper"));
    free (deep);
    deep = s_nested (4096);
    assert (!jsontext_scan (deep, strlen (deep), 100000, 10).within);
    free (deep);

    // Too many values: refused before jansson builds anything.
    size_t count = JSONTEXT_MAX_VALUES;
    char *wide = mem_alloc (3 * count + 2);
    wide[0] = '[';
    size_t at = 1;
    for (size_t i = 0; i < count; i++) {
        memcpy (wide + at, "{},", 3);
        at += 3;
    }
    wide[at - 1] = ']';
    wide[at] = '\0';
    assert (!jsontext_within (wide, at));
    assert (jsontext_load (wide, at, &error) == NULL && strstr (error.text, "values"));
    free (wide);

    // What one process writes, every other reads: NUL in strings, any type.
    value = jsontext_loads ("{\"a\":\"x\\u0000y\"}", NULL);
    assert (value && json_string_length (json_object_get (value, "a")) == 3);
    char *text = jsontext_dump (value);
    assert (text && strcmp (text, "{\"a\":\"x\\u0000y\"}") == 0);
    free (text);
    json_decref (value);
    value = jsontext_loads ("\"bare\"", NULL);
    assert (json_is_string (value));
    json_decref (value);
    assert (jsontext_loads ("{nope", &error) == NULL);
    // A raw NUL is not JSON, even where jansson would stop at it.
    assert (jsontext_load ("2\0", 2, &error) == NULL && strstr (error.text, "NUL"));
    assert (jsontext_load ("\"a\0\"", 4, &error) == NULL);
    assert (jsontext_loads (NULL, &error) == NULL);
    if (verbose)
        printf ("OK\n");
}
