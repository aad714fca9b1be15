/* What a task prints: sys.stdout and sys.stderr are writers that keep a
 * task's output (capped) for its result and pass every write on to the
 * streams they replaced, so the job's worker-<n>.log files keep everything.
 *
 * The cost when a task prints nothing is two pointer comparisons and two
 * stores per task: no Python call, no allocation, no syscall. */
#include "worker.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    PyObject_HEAD
    worker_capture *capture;   /* owned by the worker_ctx, which outlives the interpreter's use */
    PyObject *target;          /* the stream written through to (the log file), or None */
    int dirty;                 /* written to since the last flush */
} capture_writer;

/* Appends up to the cap; counts what does not fit. */
static int capture_append(worker_capture *capture, const char *data, size_t len)
{
    size_t room;
    size_t keep;
    char *grown = NULL;

    capture->written += len;
    room = WORKER_OUTPUT_CAP - capture->len;
    keep = len < room ? len : room;
    if (keep == 0)
        return 0;
    if (capture->len + keep > capture->cap) {
        size_t cap = capture->cap == 0 ? 1024 : capture->cap;
        while (cap < capture->len + keep)
            cap *= 2;
        if (cap > WORKER_OUTPUT_CAP)
            cap = WORKER_OUTPUT_CAP;
        grown = realloc(capture->data, cap);
        if (grown == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        capture->data = grown;
        capture->cap = cap;
    }
    memcpy(capture->data + capture->len, data, keep);
    capture->len += keep;
    return 0;
}

static int writer_keep(capture_writer *self, PyObject *text)
{
    const char *utf8;
    Py_ssize_t len = 0;

    if (!PyUnicode_Check(text)) {
        PyErr_Format(PyExc_TypeError, "write() argument must be str, not %.100s",
                     Py_TYPE(text)->tp_name);
        return -1;
    }
    utf8 = PyUnicode_AsUTF8AndSize(text, &len);
    if (utf8 == NULL) {
        /* lone surrogates: keep them escaped rather than fail the print */
        PyObject *bytes = PyUnicode_AsEncodedString(text, "utf-8", "backslashreplace");
        int rc;
        PyErr_Clear();
        if (bytes == NULL)
            return -1;
        rc = capture_append(self->capture, PyBytes_AS_STRING(bytes),
                            (size_t)PyBytes_GET_SIZE(bytes));
        Py_DECREF(bytes);
        return rc;
    }
    return capture_append(self->capture, utf8, (size_t)len);
}

static PyObject *writer_write(PyObject *op, PyObject *text)
{
    capture_writer *self = (capture_writer *)op;
    PyObject *res = NULL;

    if (writer_keep(self, text) != 0)
        return NULL;
    self->dirty = 1;
    if (self->target != Py_None) {
        res = PyObject_CallMethod(self->target, "write", "O", text);
        if (res == NULL) {
            /* The log is gone or full: the task's own output is still kept. */
            PyErr_Clear();
        }
        Py_XDECREF(res);
    }
    return PyLong_FromSsize_t(PyUnicode_GET_LENGTH(text));
}

static PyObject *writer_writelines(PyObject *op, PyObject *lines)
{
    PyObject *iter = NULL;
    PyObject *line = NULL;
    PyObject *res = NULL;

    iter = PyObject_GetIter(lines);
    if (iter == NULL)
        goto cleanup;
    while ((line = PyIter_Next(iter)) != NULL) {
        PyObject *n = writer_write(op, line);
        Py_CLEAR(line);
        if (n == NULL)
            goto cleanup;
        Py_DECREF(n);
    }
    if (PyErr_Occurred())
        goto cleanup;
    res = Py_NewRef(Py_None);
cleanup:
    Py_XDECREF(iter);
    return res;
}

static PyObject *writer_flush(PyObject *op, PyObject *unused)
{
    capture_writer *self = (capture_writer *)op;
    PyObject *res = NULL;

    (void)unused;
    /* Nothing written since the last flush: nothing to do, no syscall. */
    if (!self->dirty || self->target == Py_None)
        Py_RETURN_NONE;
    self->dirty = 0;
    res = PyObject_CallMethod(self->target, "flush", NULL);
    if (res == NULL)
        PyErr_Clear();
    Py_XDECREF(res);
    Py_RETURN_NONE;
}

static PyObject *writer_true(PyObject *op, PyObject *unused)
{
    (void)op;
    (void)unused;
    Py_RETURN_TRUE;
}

/* Everything else (encoding, errors, fileno, isatty, buffer, ...) is the
 * replaced stream's, so code that inspects sys.stdout sees a real stream. */
static PyObject *writer_getattro(PyObject *op, PyObject *name)
{
    capture_writer *self = (capture_writer *)op;
    PyObject *attr = PyObject_GenericGetAttr(op, name);

    if (attr != NULL || self->target == Py_None || !PyErr_ExceptionMatches(PyExc_AttributeError))
        return attr;
    PyErr_Clear();
    return PyObject_GetAttr(self->target, name);
}

static int writer_traverse(PyObject *op, visitproc visit, void *arg)
{
    capture_writer *self = (capture_writer *)op;
    Py_VISIT(self->target);
    Py_VISIT(Py_TYPE(op));
    return 0;
}

static int writer_clear(PyObject *op)
{
    capture_writer *self = (capture_writer *)op;
    Py_CLEAR(self->target);
    return 0;
}

static void writer_dealloc(PyObject *op)
{
    PyTypeObject *type = Py_TYPE(op);
    PyObject_GC_UnTrack(op);
    (void)writer_clear(op);
    type->tp_free(op);
    Py_DECREF(type);
}

static PyMethodDef writer_methods[] = {
    {"write", writer_write, METH_O, "Keeps text for the task's output and writes it to the log."},
    {"writelines", writer_writelines, METH_O, "write() for each line."},
    {"flush", writer_flush, METH_NOARGS, "Flushes the log stream."},
    {"writable", writer_true, METH_NOARGS, "True."},
    {NULL, NULL, 0, NULL},
};

static PyType_Slot writer_slots[] = {
    {Py_tp_doc, (void *)"mapdeploy-worker's sys.stdout/sys.stderr: keeps what a task prints."},
    {Py_tp_methods, writer_methods},
    {Py_tp_getattro, (void *)writer_getattro},
    {Py_tp_traverse, (void *)writer_traverse},
    {Py_tp_clear, (void *)writer_clear},
    {Py_tp_dealloc, (void *)writer_dealloc},
    {0, NULL},
};

static PyType_Spec writer_spec = {
    .name = "mapdeploy_worker.TaskOutput",
    .basicsize = sizeof(capture_writer),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .slots = writer_slots,
};

static PyObject *writer_new(PyObject *type, worker_capture *capture, const char *stream)
{
    capture_writer *self = NULL;
    PyObject *target = PySys_GetObject(stream);   /* borrowed; NULL when missing */

    self = PyObject_GC_New(capture_writer, (PyTypeObject *)type);
    if (self == NULL)
        return NULL;
    self->capture = capture;
    self->target = Py_NewRef(target != NULL ? target : Py_None);
    self->dirty = 0;
    PyObject_GC_Track((PyObject *)self);
    return (PyObject *)self;
}

int worker_capture_install(worker_ctx *ctx)
{
    PyObject *type = NULL;
    PyObject *out = NULL;
    PyObject *err = NULL;
    PyObject *sys_module = NULL;
    int rc = -1;

    type = PyType_FromSpec(&writer_spec);
    if (type == NULL)
        goto cleanup;
    out = writer_new(type, &ctx->capture, "stdout");
    if (out == NULL)
        goto cleanup;
    err = writer_new(type, &ctx->capture, "stderr");
    if (err == NULL)
        goto cleanup;
    if (PySys_SetObject("stdout", out) != 0 || PySys_SetObject("stderr", err) != 0)
        goto cleanup;
    sys_module = PyImport_AddModule("sys");   /* borrowed */
    if (sys_module == NULL)
        goto cleanup;
    ctx->sys_dict = Py_NewRef(PyModule_GetDict(sys_module));
    ctx->name_stdout = PyUnicode_InternFromString("stdout");
    ctx->name_stderr = PyUnicode_InternFromString("stderr");
    if (ctx->name_stdout == NULL || ctx->name_stderr == NULL)
        goto cleanup;
    ctx->capture_stdout = out;
    ctx->capture_stderr = err;
    out = NULL;
    err = NULL;
    rc = 0;
cleanup:
    Py_XDECREF(err);
    Py_XDECREF(out);
    Py_XDECREF(type);
    return rc;
}

void worker_capture_begin(worker_ctx *ctx)
{
    ctx->capture.len = 0;
    ctx->capture.written = 0;
    /* A task may have replaced sys.stdout for good; the next one is captured again.
     * (Borrowed references compared by identity, looked up by interned names
     * whose hash is cached: no allocation.) */
    if (ctx->capture_stdout != NULL &&
        PyDict_GetItemWithError(ctx->sys_dict, ctx->name_stdout) != ctx->capture_stdout &&
        PyDict_SetItem(ctx->sys_dict, ctx->name_stdout, ctx->capture_stdout) != 0)
        PyErr_Clear();
    if (ctx->capture_stderr != NULL &&
        PyDict_GetItemWithError(ctx->sys_dict, ctx->name_stderr) != ctx->capture_stderr &&
        PyDict_SetItem(ctx->sys_dict, ctx->name_stderr, ctx->capture_stderr) != 0)
        PyErr_Clear();
}

/* Length of the longest prefix of data[0..len) that does not end inside a
 * UTF-8 sequence, so the cut never leaves half a character. */
static size_t utf8_boundary(const char *data, size_t len)
{
    size_t back = 0;

    while (back < 4 && back < len && ((unsigned char)data[len - 1 - back] & 0xC0) == 0x80)
        back++;
    if (back < len) {
        unsigned char lead = (unsigned char)data[len - 1 - back];
        size_t need = lead >= 0xF0 ? 4 : lead >= 0xE0 ? 3 : lead >= 0xC0 ? 2 : 1;
        if (need > back + 1)
            return len - 1 - back;
    }
    return len;
}

PyObject *worker_capture_take(worker_ctx *ctx)
{
    worker_capture *capture = &ctx->capture;
    PyObject *bytes = NULL;
    char note[200];
    size_t kept;
    int n = 0;

    if (capture->written == 0)
        return NULL;
    kept = capture->len;
    if (capture->written > capture->len) {
        kept = utf8_boundary(capture->data, capture->len);
        n = snprintf(note, sizeof note,
                     "\n[mapdeploy: output cut at %zu bytes; %zu more bytes are in the job's "
                     "worker log (job.get_log_file_path())]\n",
                     kept, capture->written - kept);
        if (n < 0 || (size_t)n >= sizeof note)
            n = 0;
    }
    bytes = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)(kept + (size_t)n));
    if (bytes == NULL) {
        PyErr_Clear();   /* the output is lost, the task's result is not */
        goto cleanup;
    }
    memcpy(PyBytes_AS_STRING(bytes), capture->data, kept);
    if (n > 0)
        memcpy(PyBytes_AS_STRING(bytes) + kept, note, (size_t)n);
cleanup:
    capture->len = 0;
    capture->written = 0;
    return bytes;
}

void worker_capture_free(worker_ctx *ctx)
{
    Py_CLEAR(ctx->capture_stdout);
    Py_CLEAR(ctx->capture_stderr);
    Py_CLEAR(ctx->sys_dict);
    Py_CLEAR(ctx->name_stdout);
    Py_CLEAR(ctx->name_stderr);
    free(ctx->capture.data);
    memset(&ctx->capture, 0, sizeof ctx->capture);
}
