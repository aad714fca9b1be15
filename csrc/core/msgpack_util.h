/* Internal to the core (not part of the mdcore.h API): msgpack helpers shared
 * by envelope.c, records.c and store.c. */
#ifndef MAPDEPLOY_MSGPACK_UTIL_H
#define MAPDEPLOY_MSGPACK_UTIL_H

#include <msgpack.h>
#include <string.h>

#include "mdcore.h"

/* A packer whose output is appended to buf. */
void md_mp_packer_init(msgpack_packer *pk, md_buf *buf);

/* Each returns 0 on success, non-zero on failure (allocation, or a length
 * over msgpack's 32-bit limit). */
int md_mp_pack_key(msgpack_packer *pk, const char *name);
int md_mp_pack_str(msgpack_packer *pk, const char *ptr, size_t len);
int md_mp_pack_str_or_nil(msgpack_packer *pk, md_str s);
int md_mp_pack_bin(msgpack_packer *pk, const uint8_t *ptr, size_t len);
int md_mp_pack_bin_or_nil(msgpack_packer *pk, const uint8_t *ptr, size_t len);
int md_mp_pack_array(msgpack_packer *pk, size_t count);
int md_mp_pack_map(msgpack_packer *pk, size_t count);

/* Parses data as exactly one msgpack object (no trailing bytes).  Before
 * handing the bytes to msgpack-c it walks them without allocating, so that a
 * container header announcing more elements than there are bytes left is
 * refused instead of making msgpack-c allocate for it: the memory used is
 * then bounded by a small multiple of len.  Strings and bins in the result
 * point into data.  `what` names the input in error messages.  On failure
 * *out holds nothing that needs freeing; on success the caller must call
 * msgpack_unpacked_destroy. */
int md_mp_unpack(const uint8_t *data, size_t len, msgpack_unpacked *out,
                 const char *what, md_error *err);

/* Field readers: return 1 when the object has the wanted type (and fits),
 * 0 otherwise.  Empty strings/bins get a non-NULL pointer, since NULL means
 * "nil" in md_str and the value fields. */
int md_mp_key_is(const msgpack_object *key, const char *name);
int md_mp_get_uint(const msgpack_object *o, uint64_t max, uint64_t *out);
int md_mp_get_int64(const msgpack_object *o, int64_t *out);
int md_mp_get_double(const msgpack_object *o, double *out);
int md_mp_get_str(const msgpack_object *o, md_str *out);
int md_mp_get_str_or_nil(const msgpack_object *o, md_str *out);
int md_mp_get_bin(const msgpack_object *o, const uint8_t **ptr, size_t *len);
int md_mp_get_bin_or_nil(const msgpack_object *o, const uint8_t **ptr, size_t *len);

/* A cursor over msgpack bytes for the hot decoders (task arrays and results,
 * thousands of elements per envelope): typed reads straight from the bytes,
 * no msgpack-c object tree, no allocation.  Every read checks the bounds and
 * the type byte first and leaves the cursor where it was when it fails, so a
 * decoder can report which field was wrong.  The types each reader accepts
 * are exactly those of the md_mp_get_* reader of the same name on the object
 * msgpack-c would have built (e.g. a signed int8..int64 that is >= 0 reads as
 * an unsigned integer, float32 and integers read as doubles). */
typedef struct {
    const uint8_t *pos;
    const uint8_t *end;
} md_mp_cursor;

static inline void md_mp_cursor_init(md_mp_cursor *c, const uint8_t *data, size_t len)
{
    c->pos = data;
    c->end = data + len;
}

static inline size_t md_mp_cursor_left(const md_mp_cursor *c)
{
    return (size_t)(c->end - c->pos);
}

static inline uint64_t md_mp_be_(const uint8_t *p, size_t n)
{
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    /* the widths msgpack uses, as single loads: a loop over the bytes was a
     * third of decoding a result */
    switch (n) {
    case 1:
        return p[0];
    case 2: {
        uint16_t v16;
        memcpy(&v16, p, sizeof v16);
        return __builtin_bswap16(v16);
    }
    case 4: {
        uint32_t v32;
        memcpy(&v32, p, sizeof v32);
        return __builtin_bswap32(v32);
    }
    case 8: {
        uint64_t v64;
        memcpy(&v64, p, sizeof v64);
        return __builtin_bswap64(v64);
    }
    default:
        break;
    }
#endif
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        v = (v << 8) | p[i];
    }
    return v;
}

/* Reads an unsigned or signed integer of any width; *negative tells which
 * field of the union is meaningful (msgpack-c's POSITIVE/NEGATIVE_INTEGER). */
static inline int md_mp_read_integer_(md_mp_cursor *c, uint64_t *u, int64_t *i, int *negative)
{
    size_t left = md_mp_cursor_left(c);
    if (left == 0) {
        return 0;
    }
    uint8_t b = c->pos[0];
    if (b <= 0x7f) {
        *u = b;
        *negative = 0;
        c->pos++;
        return 1;
    }
    if (b >= 0xe0) {
        *i = (int8_t)b;
        *negative = 1;
        c->pos++;
        return 1;
    }
    size_t width;
    int is_signed;
    switch (b) {
    case 0xcc: width = 1; is_signed = 0; break;
    case 0xcd: width = 2; is_signed = 0; break;
    case 0xce: width = 4; is_signed = 0; break;
    case 0xcf: width = 8; is_signed = 0; break;
    case 0xd0: width = 1; is_signed = 1; break;
    case 0xd1: width = 2; is_signed = 1; break;
    case 0xd2: width = 4; is_signed = 1; break;
    case 0xd3: width = 8; is_signed = 1; break;
    default: return 0;
    }
    if (left < 1 + width) {
        return 0;
    }
    uint64_t raw = md_mp_be_(c->pos + 1, width);
    if (is_signed) {
        /* sign-extend the width-byte two's complement value */
        unsigned shift = (unsigned)(64u - 8u * width);
        int64_t value = (int64_t)(raw << shift) >> shift;
        if (value < 0) {
            *i = value;
            *negative = 1;
        } else {
            *u = (uint64_t)value;
            *negative = 0;
        }
    } else {
        *u = raw;
        *negative = 0;
    }
    c->pos += 1 + width;
    return 1;
}

static inline int md_mp_read_uint(md_mp_cursor *c, uint64_t max, uint64_t *out)
{
    const uint8_t *start = c->pos;
    uint64_t u = 0;
    int64_t i = 0;
    int negative = 0;
    if (!md_mp_read_integer_(c, &u, &i, &negative) || negative || u > max) {
        c->pos = start;
        return 0;
    }
    *out = u;
    return 1;
}

static inline int md_mp_read_int64(md_mp_cursor *c, int64_t *out)
{
    const uint8_t *start = c->pos;
    uint64_t u = 0;
    int64_t i = 0;
    int negative = 0;
    if (!md_mp_read_integer_(c, &u, &i, &negative) || (!negative && u > (uint64_t)INT64_MAX)) {
        c->pos = start;
        return 0;
    }
    *out = negative ? i : (int64_t)u;
    return 1;
}

static inline int md_mp_read_double(md_mp_cursor *c, double *out)
{
    size_t left = md_mp_cursor_left(c);
    if (left >= 5 && c->pos[0] == 0xca) {
        uint32_t bits = (uint32_t)md_mp_be_(c->pos + 1, 4);
        float f;
        memcpy(&f, &bits, sizeof f);
        *out = (double)f;
        c->pos += 5;
        return 1;
    }
    if (left >= 9 && c->pos[0] == 0xcb) {
        uint64_t bits = md_mp_be_(c->pos + 1, 8);
        memcpy(out, &bits, sizeof *out);
        c->pos += 9;
        return 1;
    }
    uint64_t u = 0;
    int64_t i = 0;
    int negative = 0;
    if (!md_mp_read_integer_(c, &u, &i, &negative)) {
        return 0;
    }
    *out = negative ? (double)i : (double)u;
    return 1;
}

static inline int md_mp_read_array(md_mp_cursor *c, uint32_t *count)
{
    size_t left = md_mp_cursor_left(c);
    if (left == 0) {
        return 0;
    }
    uint8_t b = c->pos[0];
    if ((b & 0xf0) == 0x90) {
        *count = b & 0x0fu;
        c->pos++;
        return 1;
    }
    size_t width = b == 0xdc ? 2 : b == 0xdd ? 4 : 0;
    if (width == 0 || left < 1 + width) {
        return 0;
    }
    *count = (uint32_t)md_mp_be_(c->pos + 1, width);
    c->pos += 1 + width;
    return 1;
}

/* str (want_str) or bin: the payload's position and length. */
static inline int md_mp_read_raw_(md_mp_cursor *c, int want_str, const uint8_t **ptr, size_t *len)
{
    size_t left = md_mp_cursor_left(c);
    if (left == 0) {
        return 0;
    }
    uint8_t b = c->pos[0];
    size_t width;
    uint64_t n;
    if (want_str && (b & 0xe0) == 0xa0) {
        width = 0;
        n = b & 0x1fu;
    } else {
        switch (b) {
        case 0xd9: case 0xc4: width = 1; break;
        case 0xda: case 0xc5: width = 2; break;
        case 0xdb: case 0xc6: width = 4; break;
        default: return 0;
        }
        if ((b >= 0xd9) != (want_str != 0) || left < 1 + width) {
            return 0;
        }
        n = md_mp_be_(c->pos + 1, width);
    }
    if (n > left - 1 - width) {
        return 0;
    }
    /* never NULL, even when empty: NULL means nil to the callers */
    *ptr = c->pos + 1 + width;
    *len = (size_t)n;
    c->pos += 1 + width + (size_t)n;
    return 1;
}

static inline int md_mp_read_str_or_nil(md_mp_cursor *c, md_str *out)
{
    if (c->pos < c->end && c->pos[0] == 0xc0) {
        out->ptr = NULL;
        out->len = 0;
        c->pos++;
        return 1;
    }
    const uint8_t *ptr = NULL;
    if (!md_mp_read_raw_(c, 1, &ptr, &out->len)) {
        return 0;
    }
    out->ptr = (const char *)ptr;
    return 1;
}

static inline int md_mp_read_bin(md_mp_cursor *c, const uint8_t **ptr, size_t *len)
{
    return md_mp_read_raw_(c, 0, ptr, len);
}

static inline int md_mp_read_bin_or_nil(md_mp_cursor *c, const uint8_t **ptr, size_t *len)
{
    if (c->pos < c->end && c->pos[0] == 0xc0) {
        *ptr = NULL;
        *len = 0;
        c->pos++;
        return 1;
    }
    return md_mp_read_raw_(c, 0, ptr, len);
}


/* Skips one whole value of any type (containers with what they hold, at most
 * as deep as md_mp_unpack allows).  0 when the bytes are not one valid value. */
int md_mp_skip(md_mp_cursor *c);

#endif
