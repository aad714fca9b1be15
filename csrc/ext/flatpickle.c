/* flat_pickles(list) -> list[bytes | None]: pickles of kwargs dicts whose
 * values are all plain scalars, written without the pickle module.
 *
 * Most parameter sets are dicts of ints, floats, strings and bytes.  A
 * pickle.dumps per dict costs ~1 us (a Pickler made and torn down, its memo,
 * a frame) and the __main__ check scans each result again; for such dicts
 * the pickle is a fixed sequence of opcodes that takes ~60 ns to write.  The
 * bytes are an ordinary protocol 5 pickle that pickle.loads reads (the
 * worker does not know which way they were made), so the job format is
 * unchanged.  A dict with anything else (a subclass, a list, an object,
 * a big int, a str with lone surrogates) gets None and is pickled by the
 * caller as before. */
#include "ext.h"

#include <string.h>

_Static_assert(sizeof(double) == 8, "BINFLOAT needs 64-bit IEEE 754 doubles");

/* Opcodes of the pickle protocol (Lib/pickle.py). */
enum {
    OP_PROTO = 0x80, OP_EMPTY_DICT = '}', OP_MARK = '(', OP_SETITEMS = 'u', OP_STOP = '.',
    OP_NONE = 'N', OP_NEWTRUE = 0x88, OP_NEWFALSE = 0x89, OP_BININT1 = 'K', OP_BININT2 = 'M',
    OP_BININT = 'J', OP_LONG1 = 0x8a, OP_BINFLOAT = 'G', OP_SHORT_BINUNICODE = 0x8c,
    OP_BINUNICODE = 'X', OP_SHORT_BINBYTES = 'C', OP_BINBYTES = 'B'
};

/* pickle.Pickler writes SETITEMS every 1,000 items; readers take any count,
 * but keeping its batch size keeps the unpickler's stack as small as usual. */
#define SETITEMS_BATCH 1000

typedef struct {
    md_buf out;
} flat_writer;

static int put(flat_writer *w, const void *data, size_t len)
{
    return md_buf_append(&w->out, data, len) == MD_OK ? 0 : -1;
}

static int put_byte(flat_writer *w, uint8_t byte)
{
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
        return put_sized(w, OP_SHORT_BINBYTES, OP_BINBYTES, PyBytes_AS_STRING(value),
                         PyBytes_GET_SIZE(value));
    }
    return 1;
}

/* The pickle of one dict into w->out (cleared first): 0, 1 not flat, -1 no memory. */
static int put_dict(flat_writer *w, PyObject *dict)
{
    static const uint8_t header[] = {OP_PROTO, 5, OP_EMPTY_DICT};
    Py_ssize_t pos = 0;
    Py_ssize_t in_batch = 0;
    PyObject *key = NULL;
    PyObject *value = NULL;
    int rc;

    md_buf_clear(&w->out);
    if (!PyDict_CheckExact(dict)) {
        return 1;
    }
    if (put(w, header, sizeof header) < 0) {
        return -1;
    }
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
    return put_byte(w, OP_STOP);
}

PyObject *md_flat_pickles(PyObject *module, PyObject *list)
{
    flat_writer w;
    PyObject *pickles = NULL;
    PyObject *result = NULL;
    (void)module;
    md_buf_init(&w.out);
    if (!PyList_Check(list)) {
        PyErr_Format(PyExc_TypeError, "flat_pickles() takes a list, not %s",
                     Py_TYPE(list)->tp_name);
        goto cleanup;
    }
    pickles = PyList_New(PyList_GET_SIZE(list));
    if (pickles == NULL) {
        goto cleanup;
    }
    /* No Python code runs in the loop (exact types only, PyDict_Next), so
     * neither the list nor its dicts can change under it. */
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(list); i++) {
        PyObject *item = NULL;
        int rc = put_dict(&w, PyList_GET_ITEM(list, i));
        if (rc < 0) {
            PyErr_NoMemory();
            goto cleanup;
        }
        if (rc == 0) {
            item = PyBytes_FromStringAndSize((const char *)w.out.data, (Py_ssize_t)w.out.len);
            if (item == NULL) {
                goto cleanup;
            }
        } else {
            item = Py_NewRef(Py_None);
        }
        PyList_SET_ITEM(pickles, i, item);
    }
    result = pickles;
    pickles = NULL;
cleanup:
    Py_XDECREF(pickles);
    md_buf_free(&w.out);
    return result;
}
