/* Python objects <-> msgpack, for the parts of a job folder that are plain
 * data (job definitions, statuses).  Pickles only ever travel as bin. */
#include "ext.h"
#include "msgpack_util.h"

#include <string.h>

#define MAX_NESTING 64

static int buf_writer(void *data, const char *bytes, size_t len)
{
    return md_buf_append((md_buf *)data, bytes, len) == MD_OK ? 0 : -1;
}

static int pack_failed(void)
{
    if (!PyErr_Occurred()) {
        PyErr_NoMemory();
    }
    return -1;
}

static int pack_str(msgpack_packer *packer, PyObject *obj)
{
    Py_ssize_t len = 0;
    const char *utf8 = PyUnicode_AsUTF8AndSize(obj, &len);
    if (utf8 == NULL) {
        return -1;
    }
    if (msgpack_pack_str(packer, (size_t)len) != 0 ||
        msgpack_pack_str_body(packer, utf8, (size_t)len) != 0) {
        return pack_failed();
    }
    return 0;
}

static int pack_value(msgpack_packer *packer, PyObject *obj, int depth);

static int pack_int(msgpack_packer *packer, PyObject *obj)
{
    int overflow = 0;
    long long value = PyLong_AsLongLongAndOverflow(obj, &overflow);
    if (value == -1 && PyErr_Occurred()) {
        return -1;
    }
    if (overflow == 0) {
        return msgpack_pack_int64(packer, value) == 0 ? 0 : pack_failed();
    }
    if (overflow > 0) {
        unsigned long long unsigned_value = PyLong_AsUnsignedLongLong(obj);
        if (PyErr_Occurred()) {
            return -1;
        }
        return msgpack_pack_uint64(packer, unsigned_value) == 0 ? 0 : pack_failed();
    }
    PyErr_SetString(PyExc_OverflowError, "integer too small for msgpack");
    return -1;
}

static int pack_sequence(msgpack_packer *packer, PyObject *obj, int depth)
{
    PyObject *fast = PySequence_Fast(obj, "expected a sequence");
    int rc = -1;
    if (fast == NULL) {
        return -1;
    }
    Py_ssize_t count = PySequence_Fast_GET_SIZE(fast);
    if (msgpack_pack_array(packer, (size_t)count) != 0) {
        rc = pack_failed();
        goto cleanup;
    }
    for (Py_ssize_t i = 0; i < count; i++) {
        if (pack_value(packer, PySequence_Fast_GET_ITEM(fast, i), depth + 1) < 0) {
            goto cleanup;
        }
    }
    rc = 0;
cleanup:
    Py_DECREF(fast);
    return rc;
}

static int pack_dict(msgpack_packer *packer, PyObject *obj, int depth)
{
    Py_ssize_t pos = 0;
    PyObject *key = NULL;
    PyObject *value = NULL;
    if (msgpack_pack_map(packer, (size_t)PyDict_GET_SIZE(obj)) != 0) {
        return pack_failed();
    }
    while (PyDict_Next(obj, &pos, &key, &value)) {
        if (!PyUnicode_Check(key)) {
            PyErr_Format(PyExc_TypeError, "msgpack map keys must be str, not %.100s",
                         Py_TYPE(key)->tp_name);
            return -1;
        }
        if (pack_str(packer, key) < 0 || pack_value(packer, value, depth + 1) < 0) {
            return -1;
        }
    }
    return 0;
}

static int pack_value(msgpack_packer *packer, PyObject *obj, int depth)
{
    if (depth > MAX_NESTING) {
        PyErr_SetString(PyExc_ValueError, "data nested too deeply to store");
        return -1;
    }
    if (obj == Py_None) {
        return msgpack_pack_nil(packer) == 0 ? 0 : pack_failed();
    }
    if (PyBool_Check(obj)) {
        int rc = obj == Py_True ? msgpack_pack_true(packer) : msgpack_pack_false(packer);
        return rc == 0 ? 0 : pack_failed();
    }
    if (PyLong_Check(obj)) {
        return pack_int(packer, obj);
    }
    if (PyFloat_Check(obj)) {
        return msgpack_pack_double(packer, PyFloat_AS_DOUBLE(obj)) == 0 ? 0 : pack_failed();
    }
    if (PyUnicode_Check(obj)) {
        return pack_str(packer, obj);
    }
    if (PyBytes_Check(obj)) {
        size_t len = (size_t)PyBytes_GET_SIZE(obj);
        if (msgpack_pack_bin(packer, len) != 0 ||
            msgpack_pack_bin_body(packer, PyBytes_AS_STRING(obj), len) != 0) {
            return pack_failed();
        }
        return 0;
    }
    if (PyList_Check(obj) || PyTuple_Check(obj)) {
        return pack_sequence(packer, obj, depth);
    }
    if (PyDict_Check(obj)) {
        return pack_dict(packer, obj, depth);
    }
    PyErr_Format(PyExc_TypeError, "cannot store a %.100s in a job folder record",
                 Py_TYPE(obj)->tp_name);
    return -1;
}

int md_pack_object(PyObject *obj, md_buf *out)
{
    msgpack_packer packer;
    msgpack_packer_init(&packer, out, buf_writer);
    return pack_value(&packer, obj, 0);
}

static PyObject *unpack_value(const msgpack_object *obj, int depth);

static PyObject *unpack_map(const msgpack_object *obj, int depth)
{
    PyObject *dict = PyDict_New();
    PyObject *key = NULL;
    PyObject *value = NULL;
    if (dict == NULL) {
        return NULL;
    }
    for (uint32_t i = 0; i < obj->via.map.size; i++) {
        key = unpack_value(&obj->via.map.ptr[i].key, depth + 1);
        if (key == NULL) {
            goto fail;
        }
        value = unpack_value(&obj->via.map.ptr[i].val, depth + 1);
        if (value == NULL) {
            goto fail;
        }
        if (PyDict_SetItem(dict, key, value) < 0) {
            goto fail;
        }
        Py_CLEAR(key);
        Py_CLEAR(value);
    }
    return dict;
fail:
    Py_XDECREF(key);
    Py_XDECREF(value);
    Py_DECREF(dict);
    return NULL;
}

static PyObject *unpack_value(const msgpack_object *obj, int depth)
{
    if (depth > MAX_NESTING) {
        PyErr_SetString(PyExc_ValueError, "stored data nested too deeply");
        return NULL;
    }
    switch (obj->type) {
    case MSGPACK_OBJECT_NIL:
        Py_RETURN_NONE;
    case MSGPACK_OBJECT_BOOLEAN:
        return PyBool_FromLong(obj->via.boolean ? 1 : 0);
    case MSGPACK_OBJECT_POSITIVE_INTEGER:
        return PyLong_FromUnsignedLongLong(obj->via.u64);
    case MSGPACK_OBJECT_NEGATIVE_INTEGER:
        return PyLong_FromLongLong(obj->via.i64);
    case MSGPACK_OBJECT_FLOAT32:
    case MSGPACK_OBJECT_FLOAT64:
        return PyFloat_FromDouble(obj->via.f64);
    case MSGPACK_OBJECT_STR:
        return PyUnicode_DecodeUTF8(obj->via.str.ptr, (Py_ssize_t)obj->via.str.size, "replace");
    case MSGPACK_OBJECT_BIN:
        return PyBytes_FromStringAndSize(obj->via.bin.ptr, (Py_ssize_t)obj->via.bin.size);
    case MSGPACK_OBJECT_ARRAY: {
        PyObject *list = PyList_New((Py_ssize_t)obj->via.array.size);
        if (list == NULL) {
            return NULL;
        }
        for (uint32_t i = 0; i < obj->via.array.size; i++) {
            PyObject *item = unpack_value(&obj->via.array.ptr[i], depth + 1);
            if (item == NULL) {
                Py_DECREF(list);
                return NULL;
            }
            PyList_SET_ITEM(list, (Py_ssize_t)i, item);
        }
        return list;
    }
    case MSGPACK_OBJECT_MAP:
        return unpack_map(obj, depth);
    default:
        PyErr_SetString(PyExc_ValueError, "stored data holds a msgpack type mapdeploy does not use");
        return NULL;
    }
}

PyObject *md_unpack_object(const msgpack_object *obj)
{
    return unpack_value(obj, 0);
}

PyObject *md_unpack_bytes(md_module_state *state, const uint8_t *data, size_t len)
{
    msgpack_unpacked unpacked;
    md_error err;
    PyObject *result = NULL;
    /* The core's unpacker walks the bytes before msgpack-c allocates for
     * them, so a container header announcing billions of elements is refused
     * instead of allocated; it also refuses trailing bytes. */
    int rc = md_mp_unpack(data, len, &unpacked, "a stored record", &err);
    if (rc == MD_ENOMEM) {
        return PyErr_NoMemory();
    }
    if (rc != MD_OK) {
        PyErr_Format(state->format_error, "%s", err.message);
        return NULL;
    }
    result = md_unpack_object(&unpacked.data);
    msgpack_unpacked_destroy(&unpacked);
    return result;
}
