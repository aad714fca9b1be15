/* libFuzzer target: the cursor readers (md_mp_read_*, md_mp_skip) against
 * msgpack-c.  The first byte picks the reader, the rest is one msgpack value;
 * whenever msgpack-c unpacks it, the cursor must accept exactly what the
 * md_mp_get_* reader of the same name accepts on msgpack-c's object, read the
 * same value, and consume exactly the bytes msgpack-c consumed. */
#include <string.h>

#include "msgpack_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void require(int cond)
{
    if (!cond) {
        __builtin_trap();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0) {
        return 0;
    }
    const uint8_t *input = data + 1;
    size_t len = size - 1;
    md_mp_cursor c;
    md_mp_cursor_init(&c, input, len);
    msgpack_unpacked unpacked;
    md_error err;
    /* md_mp_unpack: exactly one value, bounded; a prefix of the input when the
     * cursor is given the whole input is the cursor's business, so compare on
     * what md_mp_unpack accepts and check only safety otherwise */
    int whole = md_mp_unpack(input, len, &unpacked, "fuzz", &err) == MD_OK;
    const msgpack_object *o = whole ? &unpacked.data : NULL;
    int got = 0;
    int want = 0;
    switch (data[0] % 7u) {
    case 0: {
        uint64_t a = 0, b = 0;
        got = md_mp_read_uint(&c, UINT32_MAX, &a);
        if (o != NULL) {
            want = md_mp_get_uint(o, UINT32_MAX, &b);
            require(got == want && (!got || a == b));
        }
        break;
    }
    case 1: {
        int64_t a = 0, b = 0;
        got = md_mp_read_int64(&c, &a);
        if (o != NULL) {
            want = md_mp_get_int64(o, &b);
            require(got == want && (!got || a == b));
        }
        break;
    }
    case 2: {
        double a = 0, b = 0;
        got = md_mp_read_double(&c, &a);
        if (o != NULL) {
            want = md_mp_get_double(o, &b);
            require(got == want && (!got || memcmp(&a, &b, sizeof a) == 0 || (a != a && b != b)));
        }
        break;
    }
    case 3: {
        md_str a = {NULL, 0}, b = {NULL, 0};
        got = md_mp_read_str_or_nil(&c, &a);
        if (o != NULL) {
            want = md_mp_get_str_or_nil(o, &b);
            require(got == want);
            require(!got || ((a.ptr == NULL) == (b.ptr == NULL) && a.len == b.len &&
                             (a.len == 0 || memcmp(a.ptr, b.ptr, a.len) == 0)));
        }
        break;
    }
    case 4: {
        const uint8_t *a = NULL, *b = NULL;
        size_t al = 0, bl = 0;
        got = md_mp_read_bin_or_nil(&c, &a, &al);
        if (o != NULL) {
            want = md_mp_get_bin_or_nil(o, &b, &bl);
            require(got == want);
            require(!got || ((a == NULL) == (b == NULL) && al == bl &&
                             (al == 0 || memcmp(a, b, al) == 0)));
        }
        break;
    }
    case 5: {
        uint32_t n = 0;
        got = md_mp_read_array(&c, &n);
        if (o != NULL) {
            want = o->type == MSGPACK_OBJECT_ARRAY;
            require(got == want && (!got || n == o->via.array.size));
        }
        /* the header alone is consumed, not the elements */
        got = 0;
        break;
    }
    default:
        got = md_mp_skip(&c);
        if (o != NULL) {
            require(got);
        }
        break;
    }
    require(c.pos >= input && c.pos <= input + len);
    if (o != NULL && got) {
        require(c.pos == input + len);   /* the whole (and only) value was read */
    }
    if (!got && data[0] % 7u != 5u) {
        require(c.pos == input);         /* a failed read moves nothing */
    }
    if (whole) {
        msgpack_unpacked_destroy(&unpacked);
    }
    return 0;
}
