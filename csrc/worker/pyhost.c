/* Interpreter start-up and loading of the job's pickled callables. */
#include "worker.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Returns a NUL-terminated malloc'ed copy of s ("" for nil), or NULL. */
static char *str_dup(md_str s)
{
    char *copy = NULL;

    if (s.ptr == NULL)
        s.len = 0;
    if (s.ptr != NULL && memchr(s.ptr, '\0', s.len) != NULL)
        return NULL;   /* a NUL would silently cut a path short */
    copy = malloc(s.len + 1);
    if (copy == NULL)
        return NULL;
    if (s.len > 0)
        memcpy(copy, s.ptr, s.len);
    copy[s.len] = '\0';
    return copy;
}

static int status_failed(PyStatus status, const char *what, char *error,
                         size_t error_len)
{
    if (!PyStatus_Exception(status))
        return 0;
    (void)snprintf(error, error_len, "could not start Python (%s): %s", what,
                   status.err_msg != NULL ? status.err_msg : "unknown error");
    return -1;
}

/* Sets a config string from UTF-8 bytes of the job definition (empty: left
 * for Python to compute). */
static int config_set(PyConfig *config, wchar_t **field, md_str value,
                      const char *what, char *error, size_t error_len)
{
    char *copy = NULL;
    int rc = -1;

    if (value.ptr == NULL || value.len == 0)
        return 0;
    copy = str_dup(value);
    if (copy == NULL) {
        (void)snprintf(error, error_len, "could not start Python: bad %s in the job", what);
        goto cleanup;
    }
    if (status_failed(PyConfig_SetBytesString(config, field, copy), what, error,
                      error_len) != 0)
        goto cleanup;
    rc = 0;
cleanup:
    free(copy);
    return rc;
}

static int config_sys_path(PyConfig *config, const md_jobdef_view *view,
                           const md_jobdef *def, char *error, size_t error_len)
{
    char *copy = NULL;
    wchar_t *wide = NULL;
    int rc = -1;

    config->module_search_paths_set = 1;
    for (size_t i = 0; i < def->sys_path_count; i++) {
        copy = str_dup(md_jobdef_sys_path(view, i));
        if (copy == NULL) {
            (void)snprintf(error, error_len,
                           "could not start Python: bad sys.path entry %zu in the job", i);
            goto cleanup;
        }
        wide = Py_DecodeLocale(copy, NULL);
        if (wide == NULL) {
            (void)snprintf(error, error_len,
                           "could not start Python: cannot decode sys.path entry %s", copy);
            goto cleanup;
        }
        if (status_failed(PyWideStringList_Append(&config->module_search_paths, wide),
                          "sys.path", error, error_len) != 0)
            goto cleanup;
        PyMem_RawFree(wide);
        wide = NULL;
        free(copy);
        copy = NULL;
    }
    rc = 0;
cleanup:
    PyMem_RawFree(wide);
    free(copy);
    return rc;
}

/* Imports module and returns a new reference to its attribute name. */
static PyObject *import_attr(const char *module, const char *name)
{
    PyObject *mod = NULL;
    PyObject *attr = NULL;

    mod = PyImport_ImportModule(module);
    if (mod == NULL)
        goto cleanup;
    attr = PyObject_GetAttrString(mod, name);
cleanup:
    Py_XDECREF(mod);
    return attr;
}

/* "ExcType: message" of the exception being raised, into error. */
static void describe_error(worker_ctx *ctx, const char *what, char *error,
                           size_t error_len)
{
    worker_failure failure = {NULL, NULL, NULL};

    if (worker_failure_from_error(ctx, NULL, &failure) != 0) {
        (void)snprintf(error, error_len, "%s: out of memory", what);
        goto cleanup;
    }
    (void)snprintf(error, error_len, "%s: %s: %s", what,
                   PyBytes_AS_STRING(failure.exc_type),
                   PyBytes_AS_STRING(failure.exc_message));
cleanup:
    worker_failure_clear(&failure);
}

/* sys.<name> = value (UTF-8, file-name rules); an empty value is left alone. */
static int set_sys_str(const char *name, md_str value)
{
    PyObject *str = NULL;
    int rc = -1;

    if (value.ptr == NULL || value.len == 0)
        return 0;
    str = PyUnicode_DecodeFSDefaultAndSize(value.ptr, (Py_ssize_t)value.len);
    if (str == NULL)
        goto cleanup;
    rc = PySys_SetObject(name, str);
cleanup:
    Py_XDECREF(str);
    return rc;
}

int worker_python_start(worker_ctx *ctx, char *error, size_t error_len)
{
    PyPreConfig preconfig;
    PyConfig config;
    const md_jobdef *def = ctx->jobdef;
    char program[] = "mapdeploy-worker";
    char *argv[] = {program, NULL};
    int config_live = 0;
    int rc = -1;

    /* The job's strings are msgpack str, i.e. UTF-8 whatever the locale:
     * UTF-8 mode makes Py_DecodeLocale and the filesystem encoding agree
     * with them.  The locale itself is configured as a plain python3 would. */
    PyPreConfig_InitIsolatedConfig(&preconfig);
    preconfig.utf8_mode = 1;
    preconfig.configure_locale = 1;
    if (status_failed(Py_PreInitialize(&preconfig), "pre-initialization", error,
                      error_len) != 0)
        goto cleanup;

    PyConfig_InitIsolatedConfig(&config);
    config_live = 1;
    /* The submitter's sys.path already holds site-packages and .pth
     * additions; running site again would only cost start-up time. */
    config.site_import = 0;
    /* The supervisor owns signals; a worker dies by the default actions. */
    config.install_signal_handlers = 0;
    config.parse_argv = 0;
    if (status_failed(PyConfig_SetBytesArgv(&config, 1, argv), "argv", error,
                      error_len) != 0)
        goto cleanup;
    if (config_set(&config, &config.executable, def->executable, "executable",
                   error, error_len) != 0)
        goto cleanup;
    /* config.prefix is left for Python to find (from libpython's location,
     * or the executable's pyvenv.cfg): given here it would also become
     * sys.base_prefix, wrong in a venv.  The submitter's prefixes are set
     * after start-up instead, as site.py does for a venv. */
    if (config_sys_path(&config, ctx->jobdef_view, def, error, error_len) != 0)
        goto cleanup;
    if (status_failed(Py_InitializeFromConfig(&config), "initialization", error,
                      error_len) != 0)
        goto cleanup;
    ctx->python_up = 1;
    if (set_sys_str("prefix", def->prefix) != 0 ||
        set_sys_str("exec_prefix", def->exec_prefix) != 0) {
        describe_error(ctx, "could not set sys.prefix", error, error_len);
        goto cleanup;
    }

    /* _pickle's loads and dumps are the very functions pickle re-exports;
     * importing pickle.py as well (re, struct, _compat_pickle...) cost ~10 ms
     * of every worker's start.  traceback (~8 ms more) is imported by the
     * first failure that needs it (worker_format_exception). */
    ctx->pickle_loads = import_attr("_pickle", "loads");
    if (ctx->pickle_loads == NULL) {
        describe_error(ctx, "could not import _pickle", error, error_len);
        goto cleanup;
    }
    ctx->pickle_dumps = import_attr("_pickle", "dumps");
    if (ctx->pickle_dumps == NULL) {
        describe_error(ctx, "could not import _pickle", error, error_len);
        goto cleanup;
    }
    /* cloudpickle is imported on first use: it costs more than the rest of
     * start-up together (~50 ms here), and functions and values pickled by
     * reference never need it. */
    if (!worker_module_available("cloudpickle")) {
        describe_error(ctx, "could not find cloudpickle on the job's sys.path", error, error_len);
        goto cleanup;
    }
    if (worker_capture_install(ctx) != 0) {
        describe_error(ctx, "could not capture sys.stdout and sys.stderr", error, error_len);
        goto cleanup;
    }
    ctx->empty_tuple = PyTuple_New(0);
    ctx->protocol_kwargs = Py_BuildValue("{s:i}", "protocol", 5);
    if (ctx->empty_tuple == NULL || ctx->protocol_kwargs == NULL) {
        describe_error(ctx, "could not start Python", error, error_len);
        goto cleanup;
    }
    rc = 0;
cleanup:
    if (config_live)
        PyConfig_Clear(&config);
    return rc;
}

int worker_module_available(const char *module)
{
    PyObject *util = NULL;
    PyObject *spec = NULL;
    int found = 0;
    util = PyImport_ImportModule("importlib.util");
    if (util != NULL)
        spec = PyObject_CallMethod(util, "find_spec", "s", module);
    found = spec != NULL && spec != Py_None;
    if (spec == NULL)
        PyErr_Clear();
    Py_XDECREF(spec);
    Py_XDECREF(util);
    return found;
}

PyObject *worker_format_exception(worker_ctx *ctx)
{
    if (ctx->format_exception == NULL)
        ctx->format_exception = import_attr("traceback", "format_exception");
    return ctx->format_exception;
}

PyObject *worker_cloudpickle_dumps(worker_ctx *ctx)
{
    if (ctx->cloudpickle_dumps == NULL)
        ctx->cloudpickle_dumps = import_attr("cloudpickle", "dumps");
    return ctx->cloudpickle_dumps;
}

/* Unpickles bytes into *out, or fills *failure (message after prefix). */
static void load_callable(worker_ctx *ctx, const uint8_t *data, size_t len,
                          const char *prefix, PyObject **out, worker_failure *failure)
{
    PyObject *bytes = NULL;
    PyObject *obj = NULL;

    bytes = PyBytes_FromStringAndSize((const char *)data, (Py_ssize_t)len);
    if (bytes == NULL)
        goto failed;
    obj = PyObject_CallOneArg(ctx->pickle_loads, bytes);
    if (obj == NULL)
        goto failed;
    if (!PyCallable_Check(obj)) {
        PyErr_Format(PyExc_TypeError, "the unpickled object is not callable (a %s)",
                     Py_TYPE(obj)->tp_name);
        goto failed;
    }
    *out = obj;
    obj = NULL;
    goto cleanup;
failed:
    if (worker_failure_from_error(ctx, prefix, failure) != 0)
        PyErr_Clear();
cleanup:
    Py_XDECREF(obj);
    Py_XDECREF(bytes);
}

void worker_load_function(worker_ctx *ctx)
{
    const md_jobdef *def = ctx->jobdef;

    if (def->function == NULL) {
        PyErr_SetString(PyExc_ValueError, "the job has no function");
        if (worker_failure_from_error(ctx, "could not load the function: ",
                                      &ctx->fn_error) != 0)
            PyErr_Clear();
        return;
    }
    load_callable(ctx, def->function, def->function_len,
                  "could not load the function: ", &ctx->fn, &ctx->fn_error);
}

void worker_load_combiner(worker_ctx *ctx)
{
    const md_jobdef *def = ctx->jobdef;

    if (ctx->combiner_tried)
        return;
    ctx->combiner_tried = 1;
    if (def->combiner == NULL) {
        PyErr_SetString(PyExc_ValueError, "the job has no combiner");
        if (worker_failure_from_error(ctx, "could not load the combiner: ",
                                      &ctx->combiner_error) != 0)
            PyErr_Clear();
        return;
    }
    load_callable(ctx, def->combiner, def->combiner_len,
                  "could not load the combiner: ", &ctx->combiner, &ctx->combiner_error);
}

void worker_python_release(worker_ctx *ctx)
{
    if (!ctx->python_up)
        return;
    worker_pending_free(ctx);
    worker_failure_clear(&ctx->fn_error);
    worker_failure_clear(&ctx->combiner_error);
    Py_CLEAR(ctx->fn);
    Py_CLEAR(ctx->combiner);
    Py_CLEAR(ctx->pickle_loads);
    Py_CLEAR(ctx->pickle_dumps);
    Py_CLEAR(ctx->cloudpickle_dumps);
    Py_CLEAR(ctx->format_exception);
    Py_CLEAR(ctx->empty_tuple);
    Py_CLEAR(ctx->protocol_kwargs);
    worker_capture_free(ctx);
}

static void flush_stream(const char *name)
{
    PyObject *stream = PySys_GetObject(name);   /* borrowed */
    PyObject *res = NULL;

    if (stream == NULL || stream == Py_None)
        return;
    res = PyObject_CallMethod(stream, "flush", NULL);
    if (res == NULL)
        PyErr_Clear();   /* a task that broke its stdout must not stop the worker */
    Py_XDECREF(res);
}

void worker_flush_python_stdio(void)
{
    flush_stream("stdout");
    flush_stream("stderr");
}
