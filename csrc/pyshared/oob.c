/* See oob.h. */
#include "oob.h"

#include <string.h>

typedef struct {
    md_blob_ref *refs;
} ref_collect;

static int collect_ref(void *opaque, size_t index, const md_blob_ref *ref)
{
    ref_collect *c = opaque;
    c->refs[index] = *ref;
    return 0;
}

PyObject *md_oob_loads(const uint8_t *data, size_t len, const char *job_dir, const md_key *key,
                       PyObject *pickle_loads, md_error *err)
{
    PyObject *pickle = NULL;
    PyObject *buffers = NULL;
    PyObject *args = NULL;
    PyObject *kwargs = NULL;
    PyObject *result = NULL;
    md_blob_ref *refs = NULL;
    const uint8_t *inner = NULL;
    size_t inner_len = 0;
    size_t count = 0;

    md_error_clear(err);
    if (!md_oob_is(data, len)) {
        pickle = PyBytes_FromStringAndSize((const char *)data, (Py_ssize_t)len);
        if (pickle != NULL) {
            result = PyObject_CallOneArg(pickle_loads, pickle);
        }
        goto cleanup;
    }
    if (job_dir == NULL) {
        (void)md_fail(err, MD_EFORMAT, "a value names blobs, but the job definition has no "
                      "job_dir");
        goto cleanup;
    }
    if (md_oob_decode(data, len, &inner, &inner_len, NULL, NULL, &count, err) != MD_OK) {
        goto cleanup;
    }
    refs = PyMem_Calloc(count + 1, sizeof *refs);
    if (refs == NULL) {
        PyErr_NoMemory();
        goto cleanup;
    }
    ref_collect collect = {refs};
    if (md_oob_decode(data, len, &inner, &inner_len, collect_ref, &collect, NULL, err) != MD_OK) {
        goto cleanup;
    }
    buffers = PyList_New((Py_ssize_t)count);
    if (buffers == NULL) {
        goto cleanup;
    }
    for (size_t i = 0; i < count; i++) {
        if (refs[i].length > (uint64_t)PY_SSIZE_T_MAX) {
            PyErr_NoMemory();
            goto cleanup;
        }
        Py_ssize_t n = (Py_ssize_t)refs[i].length;
        /* read straight into the object handed on: no copy after the read */
        PyObject *buffer = refs[i].readonly ? PyBytes_FromStringAndSize(NULL, n)
                                            : PyByteArray_FromStringAndSize(NULL, n);
        if (buffer == NULL) {
            goto cleanup;
        }
        PyList_SET_ITEM(buffers, (Py_ssize_t)i, buffer);
        uint8_t *dst = refs[i].readonly ? (uint8_t *)PyBytes_AS_STRING(buffer)
                                        : (uint8_t *)PyByteArray_AS_STRING(buffer);
        int rc;
        Py_BEGIN_ALLOW_THREADS
        rc = md_blob_read(job_dir, key, &refs[i], dst, err);
        Py_END_ALLOW_THREADS
        if (rc != MD_OK) {
            goto cleanup;
        }
    }
    pickle = PyBytes_FromStringAndSize((const char *)inner, (Py_ssize_t)inner_len);
    args = pickle != NULL ? PyTuple_Pack(1, pickle) : NULL;
    kwargs = args != NULL ? Py_BuildValue("{sO}", "buffers", buffers) : NULL;
    if (kwargs != NULL) {
        result = PyObject_Call(pickle_loads, args, kwargs);
    }
cleanup:
    PyMem_Free(refs);
    Py_XDECREF(kwargs);
    Py_XDECREF(args);
    Py_XDECREF(buffers);
    Py_XDECREF(pickle);
    return result;
}

PyObject *md_oob_dumps(const uint8_t *pickle, size_t pickle_len, PyObject *buffers,
                       const char *job_dir, const md_key *key, md_error *err)
{
    PyObject *seq = NULL;
    PyObject *result = NULL;
    md_blob_ref *refs = NULL;
    md_buf wrapped;
    Py_ssize_t count = 0;
    int rc = MD_OK;

    md_buf_init(&wrapped);
    md_error_clear(err);
    seq = PySequence_Fast(buffers, "buffers must be a sequence");
    if (seq == NULL) {
        goto cleanup;
    }
    count = PySequence_Fast_GET_SIZE(seq);
    if ((size_t)count > MD_OOB_MAX_BLOBS) {
        (void)md_fail(err, MD_ETOOBIG, "%zd large buffers in one value, at most %u", count,
                      MD_OOB_MAX_BLOBS);
        goto cleanup;
    }
    refs = PyMem_Calloc((size_t)count + 1, sizeof *refs);
    if (refs == NULL) {
        PyErr_NoMemory();
        goto cleanup;
    }
    for (Py_ssize_t i = 0; i < count; i++) {
        Py_buffer view;
        if (PyObject_GetBuffer(PySequence_Fast_GET_ITEM(seq, i), &view, PyBUF_CONTIG_RO) != 0) {
            goto cleanup;
        }
        Py_BEGIN_ALLOW_THREADS
        rc = md_blob_write(job_dir, key, view.buf, (size_t)view.len, &refs[i], err);
        Py_END_ALLOW_THREADS
        refs[i].readonly = view.readonly ? 1 : 0;
        PyBuffer_Release(&view);
        if (rc != MD_OK) {
            goto cleanup;
        }
    }
    if (md_oob_encode(pickle, pickle_len, refs, (size_t)count, &wrapped, err) != MD_OK) {
        goto cleanup;
    }
    result = PyBytes_FromStringAndSize((const char *)wrapped.data, (Py_ssize_t)wrapped.len);
cleanup:
    PyMem_Free(refs);
    Py_XDECREF(seq);
    md_buf_free(&wrapped);
    return result;
}

/* ------------------------------------------------------------ collector */

static PyObject *collect_buffer(PyObject *list, PyObject *buffer)
{
    Py_buffer view;
    /* a buffer that is not contiguous cannot be written as it is: in band */
    if (PyObject_GetBuffer(buffer, &view, PyBUF_CONTIG_RO) != 0) {
        PyErr_Clear();
        Py_RETURN_TRUE;
    }
    Py_ssize_t len = view.len;
    PyBuffer_Release(&view);
    if ((size_t)len < MD_BLOB_THRESHOLD) {
        Py_RETURN_TRUE;
    }
    if (PyList_Append(list, buffer) != 0) {
        return NULL;
    }
    Py_RETURN_FALSE;
}

static PyMethodDef collector_def = {
    "mapdeploy_blob_collector", collect_buffer, METH_O,
    PyDoc_STR("buffer_callback: keeps large contiguous buffers out of band")};

PyObject *md_oob_collector(PyObject *list)
{
    return PyCFunction_New(&collector_def, list);
}
