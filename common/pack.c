// pack — msgpack maps with string keys: the body of every protocol message.
#include "pack.h"
#include "mem.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct _pack_writer_t {
    msgpack_sbuffer buffer;     // encoded bytes; starts with a map32 header
    msgpack_packer packer;      // appends to buffer
    uint32_t fields;            // fields written so far
};

// s_buffer_write appends to the writer's buffer under the memory policy:
// msgpack's own write fails only when realloc does, and its packers ignore
// that (a body would go out with fields missing).
static int
s_buffer_write (void *buffer, const char *data, size_t len)
{
    mem_abort_if (msgpack_sbuffer_write (buffer, data, len) != 0);
    return 0;
}

pack_writer_t *
pack_writer_new (void)
{
    pack_writer_t *self = mem_calloc (1, sizeof *self);
    msgpack_sbuffer_init (&self->buffer);
    msgpack_packer_init (&self->packer, &self->buffer, s_buffer_write);
    // map32 header whose count is patched in pack_writer_data: 0xdf + 4 bytes.
    static const char header[5] = { (char) 0xdf, 0, 0, 0, 0 };
    s_buffer_write (&self->buffer, header, sizeof header);
    return self;
}

void
pack_writer_destroy (pack_writer_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    msgpack_sbuffer_destroy (&(*self_p)->buffer);
    free (*self_p);
    *self_p = NULL;
}

static void
s_key (pack_writer_t *self, const char *key)
{
    size_t len = strlen (key);
    msgpack_pack_str (&self->packer, len);
    msgpack_pack_str_body (&self->packer, key, len);
    self->fields++;
}

void
pack_put_strn (pack_writer_t *self, const char *key, const char *value, size_t len)
{
    s_key (self, key);
    if (!value) {
        msgpack_pack_nil (&self->packer);
        return;
    }
    msgpack_pack_str (&self->packer, len);
    msgpack_pack_str_body (&self->packer, value, len);
}

void
pack_put_str (pack_writer_t *self, const char *key, const char *value)
{
    pack_put_strn (self, key, value, value ? strlen (value) : 0);
}

void
pack_put_int (pack_writer_t *self, const char *key, int64_t value)
{
    s_key (self, key);
    msgpack_pack_int64 (&self->packer, value);
}

void
pack_put_bool (pack_writer_t *self, const char *key, bool value)
{
    s_key (self, key);
    if (value)
        msgpack_pack_true (&self->packer);
    else
        msgpack_pack_false (&self->packer);
}

void
pack_put_str_array (pack_writer_t *self, const char *key,
                    const char *const *values, size_t count)
{
    s_key (self, key);
    msgpack_pack_array (&self->packer, count);
    for (size_t i = 0; i < count; i++) {
        size_t len = strlen (values[i]);
        msgpack_pack_str (&self->packer, len);
        msgpack_pack_str_body (&self->packer, values[i], len);
    }
}

void
pack_put_bin_array (pack_writer_t *self, const char *key, const void *const *datas,
                    const size_t *sizes, size_t count)
{
    s_key (self, key);
    msgpack_pack_array (&self->packer, count);
    for (size_t i = 0; i < count; i++) {
        msgpack_pack_bin (&self->packer, sizes[i]);
        msgpack_pack_bin_body (&self->packer, datas[i], sizes[i]);
    }
}

void
pack_put_int_map (pack_writer_t *self, const char *key, const char *const *names,
                  const int64_t *values, size_t count)
{
    s_key (self, key);
    msgpack_pack_map (&self->packer, count);
    for (size_t i = 0; i < count; i++) {
        size_t len = strlen (names[i]);
        msgpack_pack_str (&self->packer, len);
        msgpack_pack_str_body (&self->packer, names[i], len);
        msgpack_pack_int64 (&self->packer, values[i]);
    }
}

const void *
pack_writer_data (pack_writer_t *self, size_t *size)
{
    unsigned char *p = (unsigned char *) self->buffer.data;
    p[1] = (unsigned char) (self->fields >> 24);
    p[2] = (unsigned char) (self->fields >> 16);
    p[3] = (unsigned char) (self->fields >> 8);
    p[4] = (unsigned char) self->fields;
    *size = self->buffer.size;
    return self->buffer.data;
}

size_t
pack_writer_field_count (pack_writer_t *self)
{
    return self->fields;
}

struct _pack_reader_t {
    msgpack_unpacked unpacked;  // owns the zone holding the decoded objects
    msgpack_object_map *map;    // the top-level map
    char *data;                 // own copy of the bytes: decoded strings point into it
};

// s_plausible walks the msgpack headers in data without decoding and is
// false when a declared array, map, string or binary is longer than the bytes
// that follow could hold. msgpack_unpack_next allocates a container's
// elements from its declared count before reading them, so a 5-byte frame
// claiming 2^32 entries would ask for 64 GiB.
static bool
s_plausible (const unsigned char *data, size_t size)
{
    size_t pos = 0;
    uint64_t pending = 1;               // objects still to read
    while (pending > 0) {
        if (pos >= size)
            return false;
        unsigned char c = data[pos++];
        uint64_t children = 0, skip = 0;
        size_t width = 0;               // bytes of a length or count field
        if (c <= 0x7f || c >= 0xe0 || c == 0xc0 || c == 0xc2 || c == 0xc3)
            ;
        else if (c >= 0x80 && c <= 0x8f)
            children = 2 * (uint64_t) (c & 0x0f);
        else if (c >= 0x90 && c <= 0x9f)
            children = c & 0x0f;
        else if (c >= 0xa0 && c <= 0xbf)
            skip = c & 0x1f;
        else
            switch (c) {
                case 0xc4: case 0xd9: width = 1; break;          // bin8, str8
                case 0xc5: case 0xda: width = 2; break;          // bin16, str16
                case 0xc6: case 0xdb: width = 4; break;          // bin32, str32
                case 0xc7: width = 1; skip = 1; break;           // ext8 (+type)
                case 0xc8: width = 2; skip = 1; break;           // ext16
                case 0xc9: width = 4; skip = 1; break;           // ext32
                case 0xca: skip = 4; break;                      // float32
                case 0xcb: skip = 8; break;                      // float64
                case 0xcc: case 0xd0: skip = 1; break;           // (u)int8
                case 0xcd: case 0xd1: skip = 2; break;           // (u)int16
                case 0xce: case 0xd2: skip = 4; break;           // (u)int32
                case 0xcf: case 0xd3: skip = 8; break;           // (u)int64
                case 0xd4: skip = 2; break;                      // fixext1
                case 0xd5: skip = 3; break;                      // fixext2
                case 0xd6: skip = 5; break;                      // fixext4
                case 0xd7: skip = 9; break;                      // fixext8
                case 0xd8: skip = 17; break;                     // fixext16
                case 0xdc: case 0xde: width = 2; break;          // array16, map16
                case 0xdd: case 0xdf: width = 4; break;          // array32, map32
                default: return false;                           // 0xc1: never used
            }
        if (width) {
            if (size - pos < width)
                return false;
            uint64_t n = 0;
            for (size_t i = 0; i < width; i++)
                n = (n << 8) | data[pos++];
            if (c >= 0xdc && c <= 0xdd)
                children = n;
            else if (c >= 0xde)
                children = 2 * n;
            else
                skip += n;
        }
        if (skip > size - pos)
            return false;
        pos += (size_t) skip;
        pending = pending - 1 + children;
        // Every object still to come takes at least one byte.
        if (pending > size - pos)
            return false;
    }
    return true;
}

pack_reader_t *
pack_reader_new (const void *data, size_t size)
{
    if (!s_plausible (data, size))
        return NULL;
    pack_reader_t *self = mem_calloc (1, sizeof *self);
    msgpack_unpacked_init (&self->unpacked);
    // msgpack_unpack_next does not copy strings: they point into the input,
    // which callers (a ZeroMQ frame) free before reading the fields.
    self->data = mem_alloc (size ? size : 1);
    if (size)   // memcpy from a NULL pointer is undefined even for 0 bytes
        memcpy (self->data, data, size);
    size_t offset = 0;
    msgpack_unpack_return rc = msgpack_unpack_next (&self->unpacked, self->data, size, &offset);
    // MSGPACK_UNPACK_NOMEM_ERROR is no proof of memory running out: msgpack
    // reports containers nested deeper than its stack (32) with it too, so
    // it is refused like any other bad input (s_plausible already bounded
    // what the zone allocates by the bytes at hand).
    if (rc != MSGPACK_UNPACK_SUCCESS || offset != size
        || self->unpacked.data.type != MSGPACK_OBJECT_MAP) {
        pack_reader_destroy (&self);
        return NULL;
    }
    self->map = &self->unpacked.data.via.map;
    return self;
}

void
pack_reader_destroy (pack_reader_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    msgpack_unpacked_destroy (&(*self_p)->unpacked);
    free ((*self_p)->data);
    free (*self_p);
    *self_p = NULL;
}

// s_find returns the value for key, or NULL.
static const msgpack_object *
s_find (pack_reader_t *self, const char *key)
{
    size_t len = strlen (key);
    for (uint32_t i = 0; i < self->map->size; i++) {
        const msgpack_object *k = &self->map->ptr[i].key;
        if (k->type == MSGPACK_OBJECT_STR && k->via.str.size == len
            && memcmp (k->via.str.ptr, key, len) == 0)
            return &self->map->ptr[i].val;
    }
    return NULL;
}

const char *
pack_get_str (pack_reader_t *self, const char *key, size_t *len)
{
    const msgpack_object *v = s_find (self, key);
    if (!v)
        return NULL;
    if (v->type == MSGPACK_OBJECT_STR) {
        *len = v->via.str.size;
        // A zero-length string may carry a NULL pointer; give a valid one.
        return v->via.str.ptr ? v->via.str.ptr : "";
    }
    if (v->type == MSGPACK_OBJECT_BIN) {
        *len = v->via.bin.size;
        return v->via.bin.ptr ? v->via.bin.ptr : "";
    }
    return NULL;
}

char *
pack_get_strdup (pack_reader_t *self, const char *key)
{
    size_t len;
    const char *s = pack_get_str (self, key, &len);
    if (!s || memchr (s, '\0', len))
        return NULL;
    char *copy = mem_alloc (len + 1);
    memcpy (copy, s, len);
    copy[len] = '\0';
    return copy;
}

// s_int_of reads an integer object into *value: 0, or -1 when it is none.
static int
s_int_of (const msgpack_object *v, int64_t *value)
{
    if (!v)
        return -1;
    if (v->type == MSGPACK_OBJECT_POSITIVE_INTEGER) {
        if (v->via.u64 > INT64_MAX)
            return -1;
        *value = (int64_t) v->via.u64;
        return 0;
    }
    if (v->type == MSGPACK_OBJECT_NEGATIVE_INTEGER) {
        *value = v->via.i64;
        return 0;
    }
    return -1;
}

int
pack_get_int (pack_reader_t *self, const char *key, int64_t *value)
{
    return s_int_of (s_find (self, key), value);
}

int
pack_get_map_int (pack_reader_t *self, const char *key, const char *name, int64_t *value)
{
    const msgpack_object *v = s_find (self, key);
    if (!v || v->type != MSGPACK_OBJECT_MAP)
        return -1;
    size_t len = strlen (name);
    for (uint32_t i = 0; i < v->via.map.size; i++) {
        const msgpack_object *k = &v->via.map.ptr[i].key;
        if (k->type == MSGPACK_OBJECT_STR && k->via.str.size == len
            && memcmp (k->via.str.ptr, name, len) == 0)
            return s_int_of (&v->via.map.ptr[i].val, value);
    }
    return -1;
}

int
pack_get_bool (pack_reader_t *self, const char *key, bool *value)
{
    const msgpack_object *v = s_find (self, key);
    if (!v || v->type != MSGPACK_OBJECT_BOOLEAN)
        return -1;
    *value = v->via.boolean;
    return 0;
}

const msgpack_object_array *
pack_get_array (pack_reader_t *self, const char *key)
{
    const msgpack_object *v = s_find (self, key);
    if (!v || v->type != MSGPACK_OBJECT_ARRAY)
        return NULL;
    return &v->via.array;
}

void
pack_test (bool verbose)
{
    if (verbose)
        printf (" * pack: ");
    pack_writer_t *w = pack_writer_new ();
    pack_put_str (w, "id", "abc");
    pack_put_int (w, "n", -42);
    pack_put_int (w, "big", INT64_MAX);
    pack_put_bool (w, "yes", true);
    pack_put_str (w, "none", NULL);
    const char *items[] = { "x", "yz" };
    pack_put_str_array (w, "list", items, 2);
    const char *names[] = { "remaining", "reset" };
    const int64_t values[] = { 9, -1 };
    pack_put_int_map (w, "limits", names, values, 2);
    assert (pack_writer_field_count (w) == 7);
    size_t size;
    const void *data = pack_writer_data (w, &size);

    pack_reader_t *r = pack_reader_new (data, size);
    assert (r);
    size_t len;
    const char *id = pack_get_str (r, "id", &len);
    assert (id && len == 3 && memcmp (id, "abc", 3) == 0);
    int64_t n;
    assert (pack_get_int (r, "n", &n) == 0 && n == -42);
    assert (pack_get_int (r, "big", &n) == 0 && n == INT64_MAX);
    bool yes;
    assert (pack_get_bool (r, "yes", &yes) == 0 && yes);
    assert (pack_get_str (r, "none", &len) == NULL);
    assert (pack_get_str (r, "missing", &len) == NULL);
    assert (pack_get_int (r, "id", &n) == -1);
    assert (pack_get_map_int (r, "limits", "remaining", &n) == 0 && n == 9);
    assert (pack_get_map_int (r, "limits", "reset", &n) == 0 && n == -1);
    assert (pack_get_map_int (r, "limits", "other", &n) == -1);
    assert (pack_get_map_int (r, "id", "remaining", &n) == -1);
    assert (pack_get_map_int (r, "missing", "remaining", &n) == -1);
    const msgpack_object_array *list = pack_get_array (r, "list");
    assert (list && list->size == 2);
    char *copy = pack_get_strdup (r, "id");
    assert (copy && strcmp (copy, "abc") == 0);
    free (copy);
    pack_reader_destroy (&r);
    assert (r == NULL);

    // Truncated, trailing and non-map input is refused.
    for (size_t cut = 0; cut < size; cut++)
        assert (pack_reader_new (data, cut) == NULL);
    char trailing[512];
    assert (size + 1 <= sizeof trailing);
    memcpy (trailing, data, size);
    trailing[size] = 0;
    assert (pack_reader_new (trailing, size + 1) == NULL);
    assert (pack_reader_new ("\x93\x01\x02\x03", 4) == NULL);
    // A map nested deeper than msgpack's stack is refused like other bad
    // input (msgpack calls that out of memory: it must not abort).
    unsigned char nested[64] = { 0x81, 0xa1, 'k' };    // {"k": [[[…[nil]…]]]}
    memset (nested + 3, 0x91, sizeof nested - 4);
    nested[sizeof nested - 1] = 0xc0;
    assert (pack_reader_new (nested, sizeof nested) == NULL);
    // A writer with many fields grows its buffer (through the policy).
    pack_writer_t *many = pack_writer_new ();
    for (int i = 0; i < 2000; i++)
        pack_put_str (many, "k", "0123456789abcdef0123456789abcdef");
    data = pack_writer_data (many, &size);
    r = pack_reader_new (data, size);
    assert (r && pack_writer_field_count (many) == 2000);
    pack_reader_destroy (&r);
    pack_writer_destroy (&many);

    pack_writer_destroy (&w);
    pack_writer_destroy (&w);
    if (verbose)
        printf ("OK\n");
}
