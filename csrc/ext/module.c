/* The _mapdeploy module: multi-phase initialisation (PEP 489), all state in
 * the module state, heap types only, so that sub-interpreters and reloading
 * never share mutable C globals. */
#include "ext.h"

#include <unistd.h>

#include <string.h>

md_module_state *md_state_of_module(PyObject *module)
{
    return (md_module_state *)PyModule_GetState(module);
}

static PyObject *exception_for(md_module_state *state, int code)
{
    switch (code) {
    case MD_ENOMEM:
        return PyExc_MemoryError;
    case MD_EMAC:
        return state->integrity_error;
    case MD_EFORMAT:
    case MD_EVERSION:
    case MD_ETRUNCATED:
    case MD_ETOOBIG:
        return state->format_error;
    case MD_EEXIST:
        return PyExc_FileExistsError;
    case MD_ENOENT:
        return PyExc_FileNotFoundError;
    case MD_EARG:
        return PyExc_ValueError;
    default:
        return state->storage_error;
    }
}

PyObject *md_raise(md_module_state *state, const md_error *err, const char *context)
{
    PyObject *type = exception_for(state, err->code);
    if (context != NULL && context[0] != '\0') {
        PyErr_Format(type, "%s: %s", context, err->message);
    } else {
        PyErr_SetString(type, err->message);
    }
    return NULL;
}

static PyObject *generate_key(PyObject *module, PyObject *Py_UNUSED(ignored))
{
    md_key key;
    md_error err;
    md_error_clear(&err);
    if (md_key_generate(&key, &err) != MD_OK) {
        return md_raise(md_state_of_module(module), &err, "generate_key");
    }
    return PyBytes_FromStringAndSize((const char *)key.bytes, MD_KEY_LEN);
}

static PyMethodDef module_methods[] = {
    {"create_job", (PyCFunction)(void (*)(void))md_create_job, METH_VARARGS | METH_KEYWORDS,
     PyDoc_STR("create_job(path, definition, kwargs, shard_size, spare=None) -> str\n\n"
               "Creates the job folder `path` (which must not exist): a fresh key, the\n"
               "authenticated job definition, the task shards and a Pending status.\n"
               "A shard holds at most shard_size tasks, fewer when their pickles\n"
               "would exceed 16 MiB. The folder is the spare folder `spare`, renamed,\n"
               "when that exists. Returns the job id.")},
    {"first_bad_kwargs", md_first_bad_kwargs, METH_O,
     PyDoc_STR("first_bad_kwargs(list) -> int\n\n"
               "The index of the first element that is not a dict with str keys, or -1.")},
    {"blob_collector", md_blob_collector, METH_O,
     PyDoc_STR("blob_collector(list) -> callable\n\n"
               "A buffer_callback for pickle.dumps that keeps buffers of BLOB_THRESHOLD bytes "
               "or more out of band, appending them to list.")},
    {"flat_pickles", md_flat_pickles, METH_O,
     PyDoc_STR("flat_pickles(list) -> (list[bytes | tuple[bytes, list[bytes]] | None], "
               "list[int])\n\n"
               "Protocol 5 pickles of the dicts whose keys are str and values None, bool, int\n"
               "(64-bit), float, str or bytes; None for any other element. Then the indices\n"
               "of those other elements.")},
    {"flat_unpickle", md_flat_unpickle_py, METH_O,
     PyDoc_STR("flat_unpickle(data) -> (True, object) | (False, None)\n\n"
               "Reads a pickle of the opcodes flat_pickles writes; (False, None) for any other.")},
    {"pool_digest", md_pool_digest, METH_O,
     PyDoc_STR("pool_digest(parts) -> str\n\n"
               "32 hex digits of SHA-256 over the str parts and the sorted entries of the\n"
               "process environment (the C one, which a spawned supervisor inherits).")},
    {"generate_key", generate_key, METH_NOARGS,
     PyDoc_STR("generate_key() -> bytes\n\n32 random bytes from OpenSSL.")},
    {NULL, NULL, 0, NULL}};

static int add_exception(PyObject *module, PyObject **slot, const char *name, PyObject *bases,
                         const char *doc)
{
    char qualified[128];
    int written = snprintf(qualified, sizeof qualified, "mapdeploy._mapdeploy.%s", name);
    if (written < 0 || (size_t)written >= sizeof qualified) {
        PyErr_SetString(PyExc_SystemError, "exception name too long");
        return -1;
    }
    *slot = PyErr_NewExceptionWithDoc(qualified, doc, bases, NULL);
    if (*slot == NULL) {
        return -1;
    }
    return PyModule_AddObjectRef(module, name, *slot);
}

static int module_exec(PyObject *module)
{
    md_module_state *state = md_state_of_module(module);
    PyObject *storage_bases = NULL;
    PyObject *pickle = NULL;
    int rc = -1;

    if (add_exception(module, &state->error, "MapDeployError", NULL,
                      "Base class of every error mapdeploy raises itself.") < 0) {
        goto cleanup;
    }
    if (add_exception(module, &state->integrity_error, "IntegrityError", state->error,
                      "Stored or received data failed its authentication check: it was "
                      "modified, or it belongs to another job.") < 0) {
        goto cleanup;
    }
    if (add_exception(module, &state->format_error, "FormatError", state->error,
                      "Data is not in a format this mapdeploy understands (damaged, or "
                      "written by a newer version).") < 0) {
        goto cleanup;
    }
    storage_bases = PyTuple_Pack(2, state->error, PyExc_OSError);
    if (storage_bases == NULL) {
        goto cleanup;
    }
    if (add_exception(module, &state->storage_error, "StorageError", storage_bases,
                      "Reading or writing a job folder failed (permissions, disk full...).") < 0) {
        goto cleanup;
    }
    if (md_job_store_add_type(module, state) < 0) {
        goto cleanup;
    }
    if (md_result_table_add_type(module, state) < 0) {
        goto cleanup;
    }
    if (PyModule_AddIntConstant(module, "FORMAT_VERSION", (long)MD_FORMAT_VERSION) < 0 ||
        PyModule_AddIntConstant(module, "BLOB_THRESHOLD", (long)MD_BLOB_THRESHOLD) < 0 ||
        PyModule_AddStringConstant(module, "SPARE_PREFIX", MD_STORE_SPARE_PREFIX) < 0) {
        goto cleanup;
    }
    pickle = PyImport_ImportModule("pickle");
    state->pickle_loads = pickle != NULL ? PyObject_GetAttrString(pickle, "loads") : NULL;
    if (state->pickle_loads == NULL) {
        goto cleanup;
    }
    rc = 0;
cleanup:
    Py_XDECREF(pickle);
    Py_XDECREF(storage_bases);
    return rc;
}

static int module_traverse(PyObject *module, visitproc visit, void *arg)
{
    md_module_state *state = md_state_of_module(module);
    Py_VISIT(state->error);
    Py_VISIT(state->integrity_error);
    Py_VISIT(state->format_error);
    Py_VISIT(state->storage_error);
    Py_VISIT(state->job_store_type);
    Py_VISIT(state->result_table_type);
    Py_VISIT(state->result_column_type);
    Py_VISIT(state->pickle_loads);
    return 0;
}

static int module_clear(PyObject *module)
{
    md_module_state *state = md_state_of_module(module);
    Py_CLEAR(state->error);
    Py_CLEAR(state->integrity_error);
    Py_CLEAR(state->format_error);
    Py_CLEAR(state->storage_error);
    Py_CLEAR(state->job_store_type);
    Py_CLEAR(state->result_table_type);
    Py_CLEAR(state->result_column_type);
    Py_CLEAR(state->pickle_loads);
    return 0;
}

static void module_free(void *module)
{
    md_module_state *state = md_state_of_module((PyObject *)module);
    for (int i = 0; i < state->spare_watch_count; i++) {
        (void)close(state->spare_watches[i]);
    }
    state->spare_watch_count = 0;
    (void)module_clear((PyObject *)module);
}

static PyModuleDef_Slot module_slots[] = {
    {Py_mod_exec, (void *)module_exec},
    {0, NULL}};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT,
    .m_name = "mapdeploy._mapdeploy",
    .m_doc = "The C engine of mapdeploy: authenticated job folders and the local supervisor.",
    .m_size = sizeof(md_module_state),
    .m_methods = module_methods,
    .m_slots = module_slots,
    .m_traverse = module_traverse,
    .m_clear = module_clear,
    .m_free = module_free,
};

PyMODINIT_FUNC PyInit__mapdeploy(void);

PyMODINIT_FUNC PyInit__mapdeploy(void)
{
    return PyModuleDef_Init(&module_def);
}

md_module_state *md_state_of_type(PyTypeObject *type)
{
    PyObject *module = PyType_GetModuleByDef(type, &module_def);
    if (module == NULL) {
        return NULL;
    }
    return md_state_of_module(module);
}
