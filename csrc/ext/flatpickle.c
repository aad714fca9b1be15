/* flat_pickles(list) -> (list[bytes | tuple | None], list[int]): pickles of
 * the kwargs dicts of plain scalars, written without the pickle module (see
 * flatpickle.h); None for every other element, which the caller pickles as
 * before, and the indices of those elements (finding the None entries of a
 * million-element list in Python took ~30 ms).  Nothing in such a dict can
 * refer to __main__, so no scan for it is needed either.  A dict with bytes
 * values of MD_BLOB_THRESHOLD or more gives (pickle, [those bytes]):
 * create_job writes them as blobs. */
#include "ext.h"
#include "flatpickle.h"
#include "oob.h"

PyObject *md_flat_pickles(PyObject *module, PyObject *list)
{
    md_buf out;
    PyObject *pickles = NULL;
    PyObject *left = NULL;
    PyObject *oob = NULL;
    PyObject *result = NULL;
    (void)module;
    md_buf_init(&out);
    if (!PyList_Check(list)) {
        PyErr_Format(PyExc_TypeError, "flat_pickles() takes a list, not %s",
                     Py_TYPE(list)->tp_name);
        goto cleanup;
    }
    pickles = PyList_New(PyList_GET_SIZE(list));
    left = PyList_New(0);
    if (pickles == NULL || left == NULL) {
        goto cleanup;
    }
    /* No Python code runs in the loop (exact types only, PyDict_Next), so
     * neither the list nor its dicts can change under it. */
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(list); i++) {
        PyObject *item = NULL;
        PyObject *kwargs = PyList_GET_ITEM(list, i);
        int rc = PyDict_CheckExact(kwargs) ? md_flat_pickle(kwargs, 1, &out, &oob) : 1;
        if (rc < 0) {
            PyErr_NoMemory();
            goto cleanup;
        }
        if (rc == 0) {
            item = PyBytes_FromStringAndSize((const char *)out.data, (Py_ssize_t)out.len);
            if (item == NULL) {
                goto cleanup;
            }
            if (oob != NULL) {
                PyObject *pair = PyTuple_Pack(2, item, oob);
                Py_DECREF(item);
                Py_CLEAR(oob);   /* the pair owns it; the next dict starts without one */
                if (pair == NULL) {
                    goto cleanup;
                }
                item = pair;
            }
        } else {
            Py_CLEAR(oob);
            PyObject *index = PyLong_FromSsize_t(i);
            if (index == NULL || PyList_Append(left, index) < 0) {
                Py_XDECREF(index);
                goto cleanup;
            }
            Py_DECREF(index);
            item = Py_NewRef(Py_None);
        }
        PyList_SET_ITEM(pickles, i, item);
    }
    result = PyTuple_Pack(2, pickles, left);
cleanup:
    Py_XDECREF(pickles);
    Py_XDECREF(left);
    Py_XDECREF(oob);
    md_buf_free(&out);
    return result;
}

/* flat_unpickle(data) -> (True, object) | (False, None): what the worker and
 * ResultTable.values() read without pickle.loads; (False, None) when the
 * pickle holds anything else (tests compare it with pickle.loads). */
PyObject *md_flat_unpickle_py(PyObject *module, PyObject *arg)
{
    Py_buffer view;
    PyObject *obj = NULL;
    PyObject *result = NULL;
    int unknown = 0;
    (void)module;
    if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) < 0) {
        return NULL;
    }
    obj = md_flat_unpickle(view.buf, (size_t)view.len, &unknown);
    if (obj != NULL) {
        result = Py_BuildValue("(OO)", Py_True, obj);
    } else if (unknown) {
        result = Py_BuildValue("(OO)", Py_False, Py_None);
    }
    Py_XDECREF(obj);
    PyBuffer_Release(&view);
    return result;
}

/* blob_collector(list) -> callable: see oob.h, md_oob_collector. */
PyObject *md_blob_collector(PyObject *module, PyObject *list)
{
    (void)module;
    if (!PyList_Check(list)) {
        PyErr_Format(PyExc_TypeError, "blob_collector() takes a list, not %s",
                     Py_TYPE(list)->tp_name);
        return NULL;
    }
    return md_oob_collector(list);
}
