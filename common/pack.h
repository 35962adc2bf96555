// pack — msgpack maps with string keys: the body of every protocol message.
//
// A writer appends key/value pairs and patches the map's size at the end, so
// callers never count fields by hand. A reader looks fields up by key and
// checks their types; a missing or mistyped field is an error, not a crash.
#ifndef JOBGATE_PACK_H
#define JOBGATE_PACK_H

#include <msgpack.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct _pack_writer_t pack_writer_t;

// pack_writer_new starts an empty map. This function can't fail (out of
// memory aborts: common/mem.h), nor can the puts below.
pack_writer_t *pack_writer_new (void);

// pack_writer_destroy frees the writer; nulls *self_p.
void pack_writer_destroy (pack_writer_t **self_p);

// Add one field. A NULL string value is written as nil.
void pack_put_str (pack_writer_t *self, const char *key, const char *value);
void pack_put_strn (pack_writer_t *self, const char *key, const char *value, size_t len);
void pack_put_int (pack_writer_t *self, const char *key, int64_t value);
void pack_put_bool (pack_writer_t *self, const char *key, bool value);
// pack_put_str_array writes an array of strings.
void pack_put_str_array (pack_writer_t *self, const char *key,
                         const char *const *values, size_t count);

// pack_put_bin_array writes an array of binary blobs (e.g. packed records).
void pack_put_bin_array (pack_writer_t *self, const char *key, const void *const *datas,
                         const size_t *sizes, size_t count);

// pack_put_int_map writes a map of count integers (names[i] → values[i]),
// e.g. RESULT's ratelimit (docs/protocol.md §3.2).
void pack_put_int_map (pack_writer_t *self, const char *key, const char *const *names,
                       const int64_t *values, size_t count);

// pack_writer_data returns the encoded map (valid until the next put) and
// its size.
const void *pack_writer_data (pack_writer_t *self, size_t *size);

// pack_writer_field_count returns how many fields were written.
size_t pack_writer_field_count (pack_writer_t *self);

typedef struct _pack_reader_t pack_reader_t;

// pack_reader_new decodes data as one msgpack map. Returns NULL when data is
// not exactly one map (truncated, trailing bytes, another type, nested
// deeper than msgpack reads).
pack_reader_t *pack_reader_new (const void *data, size_t size);

// pack_reader_destroy frees the reader; nulls *self_p.
void pack_reader_destroy (pack_reader_t **self_p);

// pack_get_str finds a string (str or bin) field. Returns a borrowed pointer,
// NOT NUL-terminated, with *len set; NULL when missing, nil or not a string.
const char *pack_get_str (pack_reader_t *self, const char *key, size_t *len);

// pack_get_strdup returns a NUL-terminated copy of a string field, or NULL
// when missing or when the value holds a NUL byte. The caller frees it.
char *pack_get_strdup (pack_reader_t *self, const char *key);

// pack_get_int reads an integer field into *value. Returns 0, or -1 when the
// field is missing or not an integer.
int pack_get_int (pack_reader_t *self, const char *key, int64_t *value);

// pack_get_map_int reads the integer name of the map field key into *value.
// Returns 0, or -1 when the field is not a map or holds no such integer.
int pack_get_map_int (pack_reader_t *self, const char *key, const char *name, int64_t *value);

// pack_get_bool reads a boolean field. Returns 0 or -1.
int pack_get_bool (pack_reader_t *self, const char *key, bool *value);

// pack_get_array returns an array field, or NULL.
const msgpack_object_array *pack_get_array (pack_reader_t *self, const char *key);

// pack_test runs the self-test.
void pack_test (bool verbose);

#endif
