/* msgpack helpers shared by the codecs: a packer into md_buf, a bounded
 * pre-parse walk, and strict typed field readers. */
#include <string.h>

#include "msgpack_util.h"

/* Target for empty strings/bins so that "present but empty" stays non-NULL. */
static const char empty_bytes[1] = {0};

static int buf_write(void *data, const char *bytes, size_t len)
{
    return md_buf_append((md_buf *)data, bytes, len) == MD_OK ? 0 : -1;
}

void md_mp_packer_init(msgpack_packer *pk, md_buf *buf)
{
    msgpack_packer_init(pk, buf, buf_write);
}

int md_mp_pack_key(msgpack_packer *pk, const char *name)
{
    return md_mp_pack_str(pk, name, strlen(name));
}

int md_mp_pack_str(msgpack_packer *pk, const char *ptr, size_t len)
{
    /* msgpack-c silently truncates lengths over 32 bits. */
    if (len > UINT32_MAX || (ptr == NULL && len != 0)) {
        return -1;
    }
    if (msgpack_pack_str(pk, len) != 0) {
        return -1;
    }
    return len == 0 ? 0 : msgpack_pack_str_body(pk, ptr, len);
}

int md_mp_pack_str_or_nil(msgpack_packer *pk, md_str s)
{
    if (s.ptr == NULL) {
        return msgpack_pack_nil(pk);
    }
    return md_mp_pack_str(pk, s.ptr, s.len);
}

int md_mp_pack_bin(msgpack_packer *pk, const uint8_t *ptr, size_t len)
{
    if (len > UINT32_MAX || (ptr == NULL && len != 0)) {
        return -1;
    }
    if (msgpack_pack_bin(pk, len) != 0) {
        return -1;
    }
    return len == 0 ? 0 : msgpack_pack_bin_body(pk, ptr, len);
}

int md_mp_pack_bin_or_nil(msgpack_packer *pk, const uint8_t *ptr, size_t len)
{
    if (ptr == NULL) {
        return msgpack_pack_nil(pk);
    }
    return md_mp_pack_bin(pk, ptr, len);
}

int md_mp_pack_array(msgpack_packer *pk, size_t count)
{
    if (count > UINT32_MAX) {
        return -1;
    }
    return msgpack_pack_array(pk, count);
}

int md_mp_pack_map(msgpack_packer *pk, size_t count)
{
    if (count > UINT32_MAX) {
        return -1;
    }
    return msgpack_pack_map(pk, count);
}

/* ------------------------------------------------------------ bounded walk */

static uint64_t read_be(const uint8_t *p, size_t n)
{
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        v = (v << 8) | p[i];
    }
    return v;
}

/* What one msgpack header byte announces. */
typedef struct {
    size_t length_bytes;   /* big-endian length field after the type byte */
    size_t fixed_payload;  /* payload bytes that follow regardless of length */
    uint64_t count;        /* for fix containers: elements announced */
    int kind;              /* 0 scalar/raw, 1 array, 2 map, -1 invalid */
    int raw;               /* the length field counts payload bytes */
} header_info;

static header_info classify(uint8_t b)
{
    header_info h = {0, 0, 0, 0, 0};
    if (b <= 0x7f || b >= 0xe0 || b == 0xc0 || b == 0xc2 || b == 0xc3) {
        return h;
    }
    if ((b & 0xf0) == 0x80) {
        h.kind = 2;
        h.count = b & 0x0fu;
        return h;
    }
    if ((b & 0xf0) == 0x90) {
        h.kind = 1;
        h.count = b & 0x0fu;
        return h;
    }
    if ((b & 0xe0) == 0xa0) {
        h.fixed_payload = b & 0x1fu;
        return h;
    }
    switch (b) {
    case 0xc4: case 0xd9: h.length_bytes = 1; h.raw = 1; break;  /* bin8, str8 */
    case 0xc5: case 0xda: h.length_bytes = 2; h.raw = 1; break;  /* bin16, str16 */
    case 0xc6: case 0xdb: h.length_bytes = 4; h.raw = 1; break;  /* bin32, str32 */
    case 0xc7: h.length_bytes = 1; h.raw = 1; h.fixed_payload = 1; break;  /* ext8 */
    case 0xc8: h.length_bytes = 2; h.raw = 1; h.fixed_payload = 1; break;  /* ext16 */
    case 0xc9: h.length_bytes = 4; h.raw = 1; h.fixed_payload = 1; break;  /* ext32 */
    case 0xca: h.fixed_payload = 4; break;
    case 0xcb: h.fixed_payload = 8; break;
    case 0xcc: case 0xd0: h.fixed_payload = 1; break;
    case 0xcd: case 0xd1: h.fixed_payload = 2; break;
    case 0xce: case 0xd2: h.fixed_payload = 4; break;
    case 0xcf: case 0xd3: h.fixed_payload = 8; break;
    case 0xd4: h.fixed_payload = 2; break;   /* fixext1: type + 1 */
    case 0xd5: h.fixed_payload = 3; break;
    case 0xd6: h.fixed_payload = 5; break;
    case 0xd7: h.fixed_payload = 9; break;
    case 0xd8: h.fixed_payload = 17; break;
    case 0xdc: h.kind = 1; h.length_bytes = 2; break;
    case 0xdd: h.kind = 1; h.length_bytes = 4; break;
    case 0xde: h.kind = 2; h.length_bytes = 2; break;
    case 0xdf: h.kind = 2; h.length_bytes = 4; break;
    default: h.kind = -1; break;  /* 0xc1 is never used */
    }
    return h;
}

/* msgpack-c refuses more nested non-empty containers than this (and says
 * "out of memory" when it does); refusing them here gives a clear error. */
#define MAX_DEPTH 32u

/* Every element still owed needs at least one byte, so the sum of announced
 * elements can never legitimately exceed the bytes left. */
static int walk(const uint8_t *data, size_t len, const char *what, md_error *err)
{
    uint64_t remaining[MAX_DEPTH + 1];   /* elements still owed per open container */
    size_t depth = 0;
    uint64_t pending = 1;                /* sum of remaining[] */
    size_t pos = 0;
    remaining[0] = 1;
    for (;;) {
        while (depth > 0 && remaining[depth] == 0) {
            depth--;
        }
        if (remaining[depth] == 0) {
            break;
        }
        if (pos >= len) {
            return md_fail(err, MD_EFORMAT, "%s: msgpack data ends early", what);
        }
        header_info h = classify(data[pos]);
        pos++;
        remaining[depth]--;
        pending--;
        if (h.kind < 0) {
            return md_fail(err, MD_EFORMAT, "%s: invalid msgpack type byte 0x%02x", what,
                           (unsigned)data[pos - 1]);
        }
        if (h.length_bytes > len - pos) {
            return md_fail(err, MD_EFORMAT, "%s: msgpack data ends early", what);
        }
        uint64_t length = read_be(data + pos, h.length_bytes);
        pos += h.length_bytes;
        if (h.kind == 0) {
            uint64_t skip = h.fixed_payload + (h.raw ? length : 0);
            if (skip > len - pos) {
                return md_fail(err, MD_EFORMAT, "%s: msgpack data ends early", what);
            }
            pos += (size_t)skip;
            continue;
        }
        uint64_t elements = h.length_bytes > 0 ? length : h.count;
        if (h.kind == 2) {
            elements *= 2;   /* at most 2 * (2^32 - 1): no overflow */
        }
        if (elements == 0) {
            continue;
        }
        if (elements > len - pos || pending + elements > len - pos) {
            return md_fail(err, MD_EFORMAT,
                           "%s: msgpack container announces more elements than there are bytes",
                           what);
        }
        if (depth + 1 > MAX_DEPTH) {
            return md_fail(err, MD_EFORMAT, "%s: msgpack nested deeper than %u levels", what,
                           MAX_DEPTH);
        }
        depth++;
        remaining[depth] = elements;
        pending += elements;
    }
    if (pos != len) {
        return md_fail(err, MD_EFORMAT, "%s: %zu unexpected bytes after the msgpack value",
                       what, len - pos);
    }
    return MD_OK;
}

int md_mp_unpack(const uint8_t *data, size_t len, msgpack_unpacked *out,
                 const char *what, md_error *err)
{
    msgpack_unpacked_init(out);
    if (data == NULL && len != 0) {
        return md_fail(err, MD_EARG, "%s: NULL data", what);
    }
    int rc = walk(data, len, what, err);
    if (rc != MD_OK) {
        return rc;
    }
    size_t off = 0;
    msgpack_unpack_return ur = msgpack_unpack_next(out, (const char *)data, len, &off);
    if (ur == MSGPACK_UNPACK_SUCCESS && off == len) {
        return MD_OK;
    }
    msgpack_unpacked_destroy(out);
    if (ur == MSGPACK_UNPACK_NOMEM_ERROR) {
        return md_fail(err, MD_ENOMEM, "%s: out of memory decoding msgpack", what);
    }
    /* The walk accepted it, so this is e.g. nesting deeper than msgpack-c allows. */
    return md_fail(err, MD_EFORMAT, "%s: msgpack-c rejected the data (too deeply nested?)", what);
}

/* ------------------------------------------------------------ field readers */

int md_mp_key_is(const msgpack_object *key, const char *name)
{
    size_t n = strlen(name);
    return key->type == MSGPACK_OBJECT_STR && key->via.str.size == n &&
           (n == 0 || memcmp(key->via.str.ptr, name, n) == 0);
}

int md_mp_get_uint(const msgpack_object *o, uint64_t max, uint64_t *out)
{
    if (o->type != MSGPACK_OBJECT_POSITIVE_INTEGER || o->via.u64 > max) {
        return 0;
    }
    *out = o->via.u64;
    return 1;
}

int md_mp_get_int64(const msgpack_object *o, int64_t *out)
{
    if (o->type == MSGPACK_OBJECT_POSITIVE_INTEGER && o->via.u64 <= (uint64_t)INT64_MAX) {
        *out = (int64_t)o->via.u64;
        return 1;
    }
    if (o->type == MSGPACK_OBJECT_NEGATIVE_INTEGER) {
        *out = o->via.i64;
        return 1;
    }
    return 0;
}

int md_mp_get_double(const msgpack_object *o, double *out)
{
    switch (o->type) {
    case MSGPACK_OBJECT_FLOAT32:
    case MSGPACK_OBJECT_FLOAT64:
        *out = o->via.f64;
        return 1;
    case MSGPACK_OBJECT_POSITIVE_INTEGER:
        *out = (double)o->via.u64;
        return 1;
    case MSGPACK_OBJECT_NEGATIVE_INTEGER:
        *out = (double)o->via.i64;
        return 1;
    default:
        return 0;
    }
}

int md_mp_get_str(const msgpack_object *o, md_str *out)
{
    if (o->type != MSGPACK_OBJECT_STR) {
        return 0;
    }
    out->len = o->via.str.size;
    out->ptr = out->len == 0 || o->via.str.ptr == NULL ? empty_bytes : o->via.str.ptr;
    return 1;
}

int md_mp_get_str_or_nil(const msgpack_object *o, md_str *out)
{
    if (o->type == MSGPACK_OBJECT_NIL) {
        out->ptr = NULL;
        out->len = 0;
        return 1;
    }
    return md_mp_get_str(o, out);
}

int md_mp_get_bin(const msgpack_object *o, const uint8_t **ptr, size_t *len)
{
    if (o->type != MSGPACK_OBJECT_BIN) {
        return 0;
    }
    *len = o->via.bin.size;
    *ptr = (const uint8_t *)(*len == 0 || o->via.bin.ptr == NULL ? empty_bytes
                                                                 : o->via.bin.ptr);
    return 1;
}

int md_mp_get_bin_or_nil(const msgpack_object *o, const uint8_t **ptr, size_t *len)
{
    if (o->type == MSGPACK_OBJECT_NIL) {
        *ptr = NULL;
        *len = 0;
        return 1;
    }
    return md_mp_get_bin(o, ptr, len);
}

/* ------------------------------------------------------------ cursor skip */

int md_mp_skip(md_mp_cursor *c)
{
    uint64_t remaining[MAX_DEPTH + 1];   /* elements still owed per open container */
    size_t depth = 0;
    const uint8_t *pos = c->pos;
    remaining[0] = 1;
    for (;;) {
        while (depth > 0 && remaining[depth] == 0) {
            depth--;
        }
        if (remaining[depth] == 0) {
            break;
        }
        if (pos >= c->end) {
            return 0;
        }
        header_info h = classify(*pos);
        pos++;
        remaining[depth]--;
        size_t left = (size_t)(c->end - pos);
        if (h.kind < 0 || h.length_bytes > left) {
            return 0;
        }
        uint64_t length = read_be(pos, h.length_bytes);
        pos += h.length_bytes;
        left -= h.length_bytes;
        if (h.kind == 0) {
            uint64_t skip = h.fixed_payload + (h.raw ? length : 0);
            if (skip > left) {
                return 0;
            }
            pos += (size_t)skip;
            continue;
        }
        uint64_t elements = h.length_bytes > 0 ? length : h.count;
        if (h.kind == 2) {
            elements *= 2;
        }
        if (elements == 0) {
            continue;
        }
        /* each element owed needs at least one byte */
        if (elements > left || depth + 1 > MAX_DEPTH) {
            return 0;
        }
        depth++;
        remaining[depth] = elements;
    }
    c->pos = pos;
    return 1;
}
