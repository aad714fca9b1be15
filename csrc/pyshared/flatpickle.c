/* See flatpickle.h.  The opcodes are those of Lib/pickle.py. */
#include "flatpickle.h"

#include <string.h>

_Static_assert(sizeof(double) == 8, "BINFLOAT needs 64-bit IEEE 754 doubles");

/* Opcodes of the pickle protocol (Lib/pickle.py). */
enum {
    OP_PROTO = 0x80, OP_EMPTY_DICT = '}', OP_MARK = '(', OP_SETITEMS = 'u', OP_STOP = '.',
    OP_NONE = 'N', OP_NEWTRUE = 0x88, OP_NEWFALSE = 0x89, OP_BININT1 = 'K', OP_BININT2 = 'M',
    OP_BININT = 'J', OP_LONG1 = 0x8a, OP_BINFLOAT = 'G', OP_SHORT_BINUNICODE = 0x8c,
    OP_BINUNICODE = 'X', OP_SHORT_BINBYTES = 'C', OP_BINBYTES = 'B',
    OP_NEXT_BUFFER = 0x97, OP_READONLY_BUFFER = 0x98
};

/* pickle.Pickler writes SETITEMS every 1,000 items; readers take any count,
 * but keeping its batch size keeps the unpickler's stack as small as usual. */
#define SETITEMS_BATCH 1000

typedef struct {
    md_buf out;
    PyObject **oob;  /* where the list of out-of-band buffers goes (made on first use),
                        or NULL: everything in band */
} flat_writer;

/* The common case, room left in the buffer, without a call into the core:
 * a no-op task's kwargs and value are a dozen one- and two-byte writes. */
static inline int put(flat_writer *w, const void *data, size_t len)
{
    if (w->out.data != NULL && w->out.cap - w->out.len >= len) {
        memcpy(w->out.data + w->out.len, data, len);
        w->out.len += len;
        return 0;
    }
    return md_buf_append(&w->out, data, len) == MD_OK ? 0 : -1;
}

static inline int put_byte(flat_writer *w, uint8_t byte)
{
    if (w->out.len < w->out.cap) {
        w->out.data[w->out.len++] = byte;
        return 0;
    }
    return put(w, &byte, 1);
}

static int put_le(flat_writer *w, uint64_t value, size_t bytes)
{
    uint8_t le[8];
    for (size_t i = 0; i < bytes; i++) {
        le[i] = (uint8_t)(value >> (8 * i));
    }
    return put(w, le, bytes);
}

/* A str or bytes body: the short opcode (1-byte length) below 256 bytes, the
 * 4-byte one up to 4 GiB; 1 = too long for this writer (the caller falls back). */
static int put_sized(flat_writer *w, uint8_t short_op, uint8_t long_op, const char *data,
                     Py_ssize_t len)
{
    if ((size_t)len < 256) {
        if (put_byte(w, short_op) < 0 || put_byte(w, (uint8_t)len) < 0) {
            return -1;
        }
    } else if ((uint64_t)len <= UINT32_MAX) {
        if (put_byte(w, long_op) < 0 || put_le(w, (uint64_t)len, 4) < 0) {
            return -1;
        }
    } else {
        return 1;
    }
    return put(w, data, (size_t)len);
}

/* 0 written, 1 not a value this writer handles, -1 out of memory. */
static int put_value(flat_writer *w, PyObject *value)
{
    if (value == Py_None) {
        return put_byte(w, OP_NONE);
    }
    if (value == Py_True || value == Py_False) {
        return put_byte(w, value == Py_True ? OP_NEWTRUE : OP_NEWFALSE);
    }
    if (PyLong_CheckExact(value)) {
        int overflow = 0;
        long long v = PyLong_AsLongLongAndOverflow(value, &overflow);
        if (overflow != 0) {
            return 1;
        }
        if (v == -1 && PyErr_Occurred()) {
            PyErr_Clear();
            return 1;
        }
        if (v >= 0 && v < 256) {
            return put_byte(w, OP_BININT1) < 0 ? -1 : put_byte(w, (uint8_t)v);
        }
        if (v >= 0 && v < 65536) {
            return put_byte(w, OP_BININT2) < 0 ? -1 : put_le(w, (uint64_t)v, 2);
        }
        if (v >= INT32_MIN && v <= INT32_MAX) {
            return put_byte(w, OP_BININT) < 0 ? -1 : put_le(w, (uint64_t)(int64_t)v, 4);
        }
        /* LONG1: little-endian two's complement in as few bytes as keep the sign. */
        uint64_t bits = (uint64_t)v;
        size_t n = 8;
        while (n > 1) {
            uint8_t top = (uint8_t)(bits >> (8 * (n - 1)));
            uint8_t next_sign = (uint8_t)((bits >> (8 * (n - 1) - 1)) & 1u);
            if ((top == 0x00 && next_sign == 0) || (top == 0xff && next_sign == 1)) {
                n--;
            } else {
                break;
            }
        }
        if (put_byte(w, OP_LONG1) < 0 || put_byte(w, (uint8_t)n) < 0) {
            return -1;
        }
        return put_le(w, bits, n);
    }
    if (PyFloat_CheckExact(value)) {
        /* BINFLOAT is the IEEE 754 double, big-endian (PyFloat_Pack8 is
         * public only from Python 3.11; the bits are the same). */
        double d = PyFloat_AS_DOUBLE(value);
        uint64_t bits;
        memcpy(&bits, &d, sizeof bits);
        uint8_t be[8];
        for (size_t i = 0; i < 8; i++) {
            be[i] = (uint8_t)(bits >> (8 * (7 - i)));
        }
        return put_byte(w, OP_BINFLOAT) < 0 ? -1 : put(w, be, sizeof be);
    }
    if (PyUnicode_CheckExact(value)) {
        Py_ssize_t len = 0;
        const char *utf8 = PyUnicode_AsUTF8AndSize(value, &len);
        if (utf8 == NULL) {   /* lone surrogates: pickle escapes them, we do not */
            PyErr_Clear();
            return 1;
        }
        return put_sized(w, OP_SHORT_BINUNICODE, OP_BINUNICODE, utf8, len);
    }
    if (PyBytes_CheckExact(value)) {
        /* A large bytes goes out of band: pickle.loads(..., buffers=[b])
         * pushes b itself for NEXT_BUFFER, and READONLY_BUFFER leaves a
         * read-only object as it is, so the reader gets that bytes back. */
        if (w->oob != NULL && (size_t)PyBytes_GET_SIZE(value) >= MD_BLOB_THRESHOLD) {
            static const uint8_t ops[] = {OP_NEXT_BUFFER, OP_READONLY_BUFFER};
            if (*w->oob == NULL && (*w->oob = PyList_New(0)) == NULL) {
                PyErr_Clear();
                return -1;
            }
            if (PyList_Append(*w->oob, value) != 0) {
                PyErr_Clear();
                return -1;
            }
            return put(w, ops, sizeof ops);
        }
        return put_sized(w, OP_SHORT_BINBYTES, OP_BINBYTES, PyBytes_AS_STRING(value),
                         PyBytes_GET_SIZE(value));
    }
    return 1;
}

/* A dict's items after its EMPTY_DICT: 0, 1 not flat, -1 no memory. */
static int put_dict(flat_writer *w, PyObject *dict)
{
    Py_ssize_t pos = 0;
    Py_ssize_t in_batch = 0;
    PyObject *key = NULL;
    PyObject *value = NULL;
    int rc;

    while (PyDict_Next(dict, &pos, &key, &value)) {
        if (!PyUnicode_CheckExact(key)) {
            return 1;
        }
        if (in_batch == 0 && put_byte(w, OP_MARK) < 0) {
            return -1;
        }
        rc = put_value(w, key);
        if (rc == 0) {
            rc = put_value(w, value);
        }
        if (rc != 0) {
            return rc;
        }
        if (++in_batch == SETITEMS_BATCH) {
            if (put_byte(w, OP_SETITEMS) < 0) {
                return -1;
            }
            in_batch = 0;
        }
    }
    if (in_batch > 0 && put_byte(w, OP_SETITEMS) < 0) {
        return -1;
    }
    return 0;
}

int md_flat_pickle(PyObject *obj, int dicts, md_buf *out, PyObject **oob)
{
    static const uint8_t header[] = {OP_PROTO, 5};
    flat_writer w;
    int rc;
    w.oob = oob;
    /* The writer appends to the caller's buffer: moved in and out, so that
     * its capacity is reused from one pickle to the next. */
    w.out = *out;
    md_buf_clear(&w.out);
    rc = put(&w, header, sizeof header);
    if (rc == 0) {
        if (dicts && PyDict_CheckExact(obj)) {
            rc = put_byte(&w, OP_EMPTY_DICT);
            if (rc == 0) {
                rc = put_dict(&w, obj);
            }
        } else if (PyDict_Check(obj)) {
            rc = 1;
        } else {
            rc = put_value(&w, obj);
        }
    }
    if (rc == 0) {
        rc = put_byte(&w, OP_STOP);
    }
    *out = w.out;
    return rc;
}

/* ------------------------------------------------------------ reading */

typedef struct {
    const uint8_t *p;
    const uint8_t *end;
} flat_reader;

static int take(flat_reader *r, size_t n, const uint8_t **at)
{
    if ((size_t)(r->end - r->p) < n) {
        PyErr_SetString(PyExc_ValueError, "pickle data was truncated");
        return -1;
    }
    *at = r->p;
    r->p += n;
    return 0;
}

static uint64_t get_le(const uint8_t *at, size_t n)
{
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        v |= (uint64_t)at[i] << (8 * i);
    }
    return v;
}

/* One value opcode (already taken) and its argument: a new reference, NULL
 * with an exception, or NULL with *unknown set for an opcode not ours. */
static PyObject *read_value(flat_reader *r, uint8_t op, int *unknown)
{
    const uint8_t *at = NULL;
    size_t n = 0;
    switch (op) {
    case OP_NONE:
        Py_RETURN_NONE;
    case OP_NEWTRUE:
        Py_RETURN_TRUE;
    case OP_NEWFALSE:
        Py_RETURN_FALSE;
    case OP_BININT1:
        return take(r, 1, &at) < 0 ? NULL : PyLong_FromLong(at[0]);
    case OP_BININT2:
        return take(r, 2, &at) < 0 ? NULL : PyLong_FromLong((long)get_le(at, 2));
    case OP_BININT:
        return take(r, 4, &at) < 0 ? NULL
                                   : PyLong_FromLong((long)(int32_t)(uint32_t)get_le(at, 4));
    case OP_LONG1: {
        if (take(r, 1, &at) < 0) {
            return NULL;
        }
        n = at[0];
        if (n == 0 || n > 8) {   /* pickle.loads reads any length; we only write 1..8 */
            *unknown = 1;
            return NULL;
        }
        if (take(r, n, &at) < 0) {
            return NULL;
        }
        uint64_t bits = get_le(at, n);
        if (n < 8 && (at[n - 1] & 0x80u) != 0) {
            bits |= ~(uint64_t)0 << (8 * n);   /* sign-extend */
        }
        return PyLong_FromLongLong((long long)bits);
    }
    case OP_BINFLOAT: {
        if (take(r, 8, &at) < 0) {
            return NULL;
        }
        uint64_t bits = 0;
        for (size_t i = 0; i < 8; i++) {
            bits = (bits << 8) | at[i];
        }
        double d;
        memcpy(&d, &bits, sizeof d);
        return PyFloat_FromDouble(d);
    }
    case OP_SHORT_BINUNICODE:
    case OP_SHORT_BINBYTES:
    case OP_BINUNICODE:
    case OP_BINBYTES: {
        size_t width = (op == OP_SHORT_BINUNICODE || op == OP_SHORT_BINBYTES) ? 1 : 4;
        if (take(r, width, &at) < 0) {
            return NULL;
        }
        n = (size_t)get_le(at, width);
        if (take(r, n, &at) < 0) {
            return NULL;
        }
        if (op == OP_SHORT_BINBYTES || op == OP_BINBYTES) {
            return PyBytes_FromStringAndSize((const char *)at, (Py_ssize_t)n);
        }
        /* pickle.loads decodes with surrogatepass; we never write lone
         * surrogates, so strict UTF-8 failing means "not ours". */
        PyObject *text = PyUnicode_DecodeUTF8((const char *)at, (Py_ssize_t)n, NULL);
        if (text == NULL) {
            PyErr_Clear();
            *unknown = 1;
        }
        return text;
    }
    default:
        *unknown = 1;
        return NULL;
    }
}

/* Items of a dict up to its SETITEMS: MARK, then key/value pairs. */
static int read_items(flat_reader *r, PyObject *dict, int *unknown)
{
    for (;;) {
        const uint8_t *at = NULL;
        if (take(r, 1, &at) < 0) {
            return -1;
        }
        if (at[0] == OP_SETITEMS) {
            return 0;
        }
        if (at[0] != OP_SHORT_BINUNICODE &&
            at[0] != OP_BINUNICODE) {
            *unknown = 1;   /* a key that is not a str: pickle.loads decides */
            return -1;
        }
        PyObject *key = read_value(r, at[0], unknown);
        if (key == NULL) {
            return -1;
        }
        if (take(r, 1, &at) < 0) {
            Py_DECREF(key);
            return -1;
        }
        PyObject *value = read_value(r, at[0], unknown);
        if (value == NULL) {
            Py_DECREF(key);
            return -1;
        }
        int rc = PyDict_SetItem(dict, key, value);
        Py_DECREF(key);
        Py_DECREF(value);
        if (rc < 0) {
            return -1;
        }
    }
}

PyObject *md_flat_unpickle(const uint8_t *data, size_t len, int *unknown)
{
    flat_reader r = {data, data + len};
    const uint8_t *at = NULL;
    PyObject *obj = NULL;
    PyObject *result = NULL;
    *unknown = 0;
    /* PROTO 5 first, STOP last: anything else (other protocols, frames,
     * memo opcodes that pickle.dumps writes) is pickle.loads' to read. */
    if (len < 3 || data[0] != OP_PROTO || data[1] != 5 || data[len - 1] != OP_STOP) {
        *unknown = 1;
        return NULL;
    }
    r.p += 2;
    r.end -= 1;
    if (take(&r, 1, &at) < 0) {
        goto cleanup;
    }
    if (at[0] == OP_EMPTY_DICT) {
        obj = PyDict_New();
        if (obj == NULL) {
            goto cleanup;
        }
        while (r.p < r.end) {
            if (take(&r, 1, &at) < 0) {
                goto cleanup;
            }
            if (at[0] != OP_MARK) {
                *unknown = 1;
                goto cleanup;
            }
            if (read_items(&r, obj, unknown) < 0) {
                goto cleanup;
            }
        }
    } else {
        obj = read_value(&r, at[0], unknown);
        if (obj == NULL) {
            goto cleanup;
        }
        if (r.p != r.end) {
            *unknown = 1;
            goto cleanup;
        }
    }
    result = obj;
    obj = NULL;
cleanup:
    Py_XDECREF(obj);
    if (*unknown && PyErr_Occurred()) {
        PyErr_Clear();   /* pickle.loads reads it and reports its own errors */
    }
    return result;
}


