/* Running tasks and the combiner; turning exceptions into task results. */
#include "worker.h"
#include "flatpickle.h"
#include "oob.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

/* ---------------------------------------------------------------- blobs */

/* The job folder as a C string in buf, or NULL when the definition has none
 * (written before blobs existed): values then stay in band. */
static const char *job_dir_of(const worker_ctx *ctx, char *buf, size_t buf_len)
{
    md_str dir = ctx->jobdef->job_dir;
    if (dir.ptr == NULL || dir.len >= buf_len) {
        return NULL;
    }
    memcpy(buf, dir.ptr, dir.len);
    buf[dir.len] = '\0';
    return buf;
}

/* A blob that fails its check fails the task that needed it, with the
 * blob's path in the message (the supervisor never reads blobs). */
static void raise_blob_error(const md_error *err)
{
    PyErr_Format(PyExc_RuntimeError, "mapdeploy: %s", err->message);
}

/* pickle.loads of item, which may be a wrapper naming blobs (oob.h);
 * NULL with a Python exception on failure. */
static PyObject *load_pickle(worker_ctx *ctx, const uint8_t *item, size_t len)
{
    char dir_buf[MD_PATH_MAX];
    md_error err;
    PyObject *obj = md_oob_loads(item, len, job_dir_of(ctx, dir_buf, sizeof dir_buf), &ctx->key,
                                 ctx->pickle_loads, &err);
    if (obj == NULL && err.code != MD_OK) {
        raise_blob_error(&err);
    }
    return obj;
}

/* The pickle of a value whose large buffers went to oob: written as blobs,
 * and the wrapper that names them returned.  NULL with an exception, or
 * NULL with *not_written set and no exception when a blob could not be
 * written (a full disk): the caller then sends the value in band. */
static PyObject *wrap_value(worker_ctx *ctx, const uint8_t *pickle, size_t len, PyObject *oob,
                            int *not_written)
{
    char dir_buf[MD_PATH_MAX];
    md_error err;
    PyObject *wrapped = md_oob_dumps(pickle, len, oob, job_dir_of(ctx, dir_buf, sizeof dir_buf),
                                     &ctx->key, &err);
    if (wrapped == NULL && err.code != MD_OK) {
        fprintf(stderr, "mapdeploy-worker: %s; the value is sent in band\n", err.message);
        *not_written = 1;
    }
    return wrapped;
}

/* ---------------------------------------------------------------- failures */

/* UTF-8 bytes of a str; lone surrogates (from surrogateescape'd file names,
 * say) must not turn a failure report into a second failure. */
static PyObject *utf8_bytes(PyObject *str)
{
    return PyUnicode_AsEncodedString(str, "utf-8", "backslashreplace");
}

#if PY_VERSION_HEX >= 0x030C0000
static PyObject *fetch_exception(void)
{
    return PyErr_GetRaisedException();
}
#else
static PyObject *fetch_exception(void)
{
    PyObject *type = NULL;
    PyObject *value = NULL;
    PyObject *tb = NULL;

    PyErr_Fetch(&type, &value, &tb);
    if (type == NULL)
        goto cleanup;
    PyErr_NormalizeException(&type, &value, &tb);
    if (value != NULL && tb != NULL && PyException_SetTraceback(value, tb) != 0)
        PyErr_Clear();
cleanup:
    Py_XDECREF(type);
    Py_XDECREF(tb);
    return value;
}
#endif

/* type(obj).__name__ as a str (never fails but for memory: falls back to
 * the C-level tp_name). */
static PyObject *type_name(PyObject *obj)
{
    PyObject *name = PyObject_GetAttrString((PyObject *)Py_TYPE(obj), "__name__");

    if (name != NULL && PyUnicode_Check(name))
        return name;
    Py_XDECREF(name);
    PyErr_Clear();
    return PyUnicode_FromString(Py_TYPE(obj)->tp_name);
}

static PyObject *format_traceback(worker_ctx *ctx, PyObject *exc)
{
    PyObject *tb = NULL;
    PyObject *lines = NULL;
    PyObject *sep = NULL;
    PyObject *text = NULL;
    PyObject *bytes = NULL;

    PyObject *format_exception = worker_format_exception(ctx);   /* borrowed */
    if (format_exception == NULL)
        goto cleanup;
    tb = PyException_GetTraceback(exc);
    lines = PyObject_CallFunctionObjArgs(format_exception, (PyObject *)Py_TYPE(exc),
                                         exc, tb != NULL ? tb : Py_None, NULL);
    if (lines == NULL)
        goto cleanup;
    sep = PyUnicode_FromStringAndSize("", 0);
    if (sep == NULL)
        goto cleanup;
    text = PyUnicode_Join(sep, lines);
    if (text == NULL)
        goto cleanup;
    bytes = utf8_bytes(text);
cleanup:
    /* A traceback that cannot be formatted is left out (nil), not fatal. */
    if (bytes == NULL)
        PyErr_Clear();
    Py_XDECREF(text);
    Py_XDECREF(sep);
    Py_XDECREF(lines);
    Py_XDECREF(tb);
    return bytes;
}

int worker_failure_from_exception(worker_ctx *ctx, PyObject *exc, const char *prefix,
                                  worker_failure *out)
{
    PyObject *name = NULL;
    PyObject *message = NULL;
    PyObject *full = NULL;
    worker_failure made = {NULL, NULL, NULL};
    int rc = -1;

    name = type_name(exc);
    if (name == NULL)
        goto cleanup;
    message = PyObject_Str(exc);
    if (message == NULL) {
        /* str(e) ran user code that raised: report the class, as Python's
         * own traceback printer does. */
        PyErr_Clear();
        message = PyUnicode_FromFormat("<unprintable %U>", name);
        if (message == NULL)
            goto cleanup;
    }
    /* str(MemoryError()) is empty: say what happened, and which limit hit. */
    if (PyErr_GivenExceptionMatches(exc, PyExc_MemoryError) && PyUnicode_GET_LENGTH(message) == 0) {
        unsigned long long limit = ctx->jobdef != NULL ? ctx->jobdef->worker_memory_limit : 0;
        Py_DECREF(message);
        message = limit > 0
            ? PyUnicode_FromFormat("the task ran out of memory (the environment's "
                                   "worker_memory_limit is %llu bytes)", limit)
            : PyUnicode_FromString("the task ran out of memory");
        if (message == NULL)
            goto cleanup;
    }
    full = PyUnicode_FromFormat("%s%U", prefix != NULL ? prefix : "", message);
    if (full == NULL)
        goto cleanup;
    made.exc_type = utf8_bytes(name);
    made.exc_message = utf8_bytes(full);
    if (made.exc_type == NULL || made.exc_message == NULL)
        goto cleanup;
    made.exc_traceback = format_traceback(ctx, exc);
    *out = made;
    memset(&made, 0, sizeof made);
    rc = 0;
cleanup:
    if (rc != 0)
        PyErr_Clear();
    worker_failure_clear(&made);
    Py_XDECREF(full);
    Py_XDECREF(message);
    Py_XDECREF(name);
    return rc;
}

int worker_failure_from_error(worker_ctx *ctx, const char *prefix, worker_failure *out)
{
    PyObject *exc = NULL;
    int rc = -1;

    exc = fetch_exception();
    if (exc == NULL) {
        /* Called without an exception: a bug here, reported rather than lost. */
        PyErr_SetString(PyExc_SystemError, "mapdeploy-worker: failure without an exception");
        exc = fetch_exception();
        if (exc == NULL)
            goto cleanup;
    }
    rc = worker_failure_from_exception(ctx, exc, prefix, out);
cleanup:
    Py_XDECREF(exc);
    return rc;
}

int worker_failure_copy(const worker_failure *from, worker_failure *to)
{
    Py_XINCREF(from->exc_type);
    Py_XINCREF(from->exc_message);
    Py_XINCREF(from->exc_traceback);
    to->exc_type = from->exc_type;
    to->exc_message = from->exc_message;
    to->exc_traceback = from->exc_traceback;
    return 0;
}

void worker_failure_clear(worker_failure *failure)
{
    Py_CLEAR(failure->exc_type);
    Py_CLEAR(failure->exc_message);
    Py_CLEAR(failure->exc_traceback);
}

/* ---------------------------------------------------------------- pending */

static void refs_clear(worker_result_refs *refs)
{
    Py_CLEAR(refs->value);
    Py_CLEAR(refs->output);
    worker_failure_clear(&refs->failure);
}

void worker_pending_free(worker_ctx *ctx)
{
    for (size_t i = 0; i < ctx->pending_len; i++)
        refs_clear(&ctx->pending_refs[i]);
    free(ctx->pending);
    free(ctx->pending_refs);
    ctx->pending = NULL;
    ctx->pending_refs = NULL;
    ctx->pending_len = 0;
    ctx->pending_cap = 0;
}

/* Makes room for one more pending result; returns its slot or -1. */
static int pending_reserve(worker_ctx *ctx, size_t *slot)
{
    md_task_result *results = NULL;
    worker_result_refs *refs = NULL;
    size_t cap;

    if (ctx->pending_len < ctx->pending_cap) {
        *slot = ctx->pending_len;
        return 0;
    }
    cap = ctx->pending_cap == 0 ? 16 : ctx->pending_cap * 2;
    if (cap > SIZE_MAX / sizeof *refs)
        return -1;
    results = realloc(ctx->pending, cap * sizeof *results);
    if (results == NULL)
        return -1;
    ctx->pending = results;
    refs = realloc(ctx->pending_refs, cap * sizeof *refs);
    if (refs == NULL)
        return -1;
    ctx->pending_refs = refs;
    ctx->pending_cap = cap;
    *slot = ctx->pending_len;
    return 0;
}

static md_str bytes_str(PyObject *bytes)
{
    md_str s = {NULL, 0};

    if (bytes != NULL) {
        s.ptr = PyBytes_AS_STRING(bytes);
        s.len = (size_t)PyBytes_GET_SIZE(bytes);
    }
    return s;
}

int64_t worker_max_rss_bytes(void)
{
    struct rusage usage;
    if (getrusage(RUSAGE_SELF, &usage) != 0)
        return 0;
    return (int64_t)usage.ru_maxrss * 1024;  /* Linux reports kilobytes */
}

/* Sends the pending results (consecutive tasks) as one RESULTS envelope. */
static worker_status flush_pending(worker_ctx *ctx)
{
    md_error err;
    worker_status status = WORKER_FATAL;

    md_error_clear(&err);
    if (ctx->pending_len == 0)
        return WORKER_OK;
    /* fd 1 and 2 are the job's log files: what the tasks printed goes there
     * with their results (at least every WORKER_FLUSH_INTERVAL), not when
     * some buffer fills.  Once per envelope, not per task: two Python method
     * calls per no-op task were a third of its cost.  A crash loses only the
     * output of tasks that are re-run anyway (their results were not sent). */
    worker_flush_python_stdio();
    /* Sampled once per envelope, not per task: no extra syscall on the hot path. */
    int64_t max_rss = worker_max_rss_bytes();
    for (size_t i = 0; i < ctx->pending_len; i++) {
        md_task_result *r = &ctx->pending[i];
        const worker_result_refs *refs = &ctx->pending_refs[i];

        r->max_rss = max_rss;

        r->exc_type = bytes_str(refs->failure.exc_type);
        r->exc_message = bytes_str(refs->failure.exc_message);
        r->exc_traceback = bytes_str(refs->failure.exc_traceback);
        r->output = bytes_str(refs->output);
        r->value = refs->value != NULL ? (const uint8_t *)PyBytes_AS_STRING(refs->value)
                                       : NULL;
        r->value_len = refs->value != NULL ? (size_t)PyBytes_GET_SIZE(refs->value) : 0;
    }
    md_buf_clear(&ctx->payload);
    if (md_results_encode(ctx->pending, ctx->pending_len, &ctx->payload, &err) < 0) {
        fprintf(stderr, "mapdeploy-worker: could not encode results: %s\n", err.message);
        goto cleanup;
    }
    status = worker_send_envelope(ctx, MD_KIND_RESULTS, ctx->pending[0].task_index,
                                  ctx->pending_len, ctx->attempt, ctx->payload.data,
                                  ctx->payload.len);
cleanup:
    for (size_t i = 0; i < ctx->pending_len; i++)
        refs_clear(&ctx->pending_refs[i]);
    ctx->pending_len = 0;
    ctx->last_send = md_monotonic_time();
    return status;
}

/* ---------------------------------------------------------------- calls */

/* Pickles a return value: plain pickle first (fast, and what the reader will
 * use), cloudpickle for what only it can pickle (lambdas, local classes). */
static void store_value_as(worker_ctx *ctx, PyObject *value, md_task_result *r,
                           worker_result_refs *refs, int blobs_allowed);

/* Pickles a return value, its large buffers as blobs when the job has a
 * folder for them.  A blob that cannot be written (disk full) sends the
 * value in band instead: the supervisor then meets the full disk where it
 * appends the result and fails the job as a whole, which resume completes,
 * as for any value, rather than this task failing for good. */
static void store_value(worker_ctx *ctx, PyObject *value, md_task_result *r,
                        worker_result_refs *refs)
{
    store_value_as(ctx, value, r, refs, 1);
}

static void store_value_as(worker_ctx *ctx, PyObject *value, md_task_result *r,
                           worker_result_refs *refs, int blobs_allowed)
{
    PyObject *args = NULL;
    PyObject *pickled = NULL;
    PyObject *oob = NULL;
    PyObject *dumps_kwargs = NULL;
    PyObject *collector = NULL;
    PyObject *exc = NULL;
    PyObject *name = NULL;
    PyObject *prefix = NULL;
    const char *prefix_utf8 = NULL;
    char dir_buf[MD_PATH_MAX];
    /* Large buffers go out of band only when the job has a folder to put
     * them in (a definition written before blobs has none). */
    int blobs = blobs_allowed && job_dir_of(ctx, dir_buf, sizeof dir_buf) != NULL;
    int not_written = 0;

    /* A plain value (None, bool, int, float, str, bytes, or a dict of those
     * by str keys) is written without a Pickler (flatpickle.h). */
    int flat = md_flat_pickle(value, 1, &ctx->pickle, blobs ? &oob : NULL);
    if (flat < 0) {
        PyErr_NoMemory();
        goto failed;
    }
    if (flat == 0) {
        if (oob != NULL)
            pickled = wrap_value(ctx, ctx->pickle.data, ctx->pickle.len, oob, &not_written);
        else
            pickled = PyBytes_FromStringAndSize((const char *)ctx->pickle.data,
                                                (Py_ssize_t)ctx->pickle.len);
        if (pickled == NULL)
            goto not_stored;
        r->status = MD_TASK_COMPLETED;
        refs->value = pickled;
        pickled = NULL;
        goto cleanup;
    }
    args = PyTuple_Pack(1, value);
    if (args == NULL)
        goto failed;
    if (blobs) {
        Py_XSETREF(oob, PyList_New(0));
        if (oob == NULL)
            goto failed;
        /* numpy arrays and the like hand their data to buffer_callback */
        collector = md_oob_collector(oob);
        dumps_kwargs = collector != NULL ? PyDict_Copy(ctx->protocol_kwargs) : NULL;
        if (dumps_kwargs == NULL ||
            PyDict_SetItemString(dumps_kwargs, "buffer_callback", collector) != 0)
            goto failed;
    } else {
        dumps_kwargs = Py_NewRef(ctx->protocol_kwargs);
    }
    pickled = PyObject_Call(ctx->pickle_dumps, args, dumps_kwargs);
    if (pickled == NULL) {
        PyErr_Clear();
        if (oob != NULL && PyList_SetSlice(oob, 0, PY_SSIZE_T_MAX, NULL) != 0)
            goto failed;
        PyObject *cloudpickle_dumps = worker_cloudpickle_dumps(ctx);
        if (cloudpickle_dumps != NULL)
            pickled = PyObject_Call(cloudpickle_dumps, args, dumps_kwargs);
    }
    if (pickled == NULL)
        goto unpicklable;
    if (!PyBytes_Check(pickled)) {
        PyErr_SetString(PyExc_TypeError, "pickle.dumps did not return bytes");
        goto failed;
    }
    if (oob != NULL && PyList_GET_SIZE(oob) > 0) {
        PyObject *wrapped = wrap_value(ctx, (const uint8_t *)PyBytes_AS_STRING(pickled),
                                       (size_t)PyBytes_GET_SIZE(pickled), oob, &not_written);
        Py_SETREF(pickled, wrapped);
        if (pickled == NULL)
            goto not_stored;
    }
    r->status = MD_TASK_COMPLETED;
    refs->value = pickled;
    pickled = NULL;
    goto cleanup;

unpicklable:
    exc = fetch_exception();
    if (exc == NULL)
        goto failed;
    name = type_name(value);
    if (name != NULL)
        prefix = PyUnicode_FromFormat("could not pickle the return value (a %U): ", name);
    if (prefix != NULL)
        prefix_utf8 = PyUnicode_AsUTF8(prefix);
    if (prefix_utf8 == NULL) {
        PyErr_Clear();
        prefix_utf8 = "could not pickle the return value: ";
    }
    r->status = MD_TASK_FAILED;
    if (worker_failure_from_exception(ctx, exc, prefix_utf8, &refs->failure) != 0)
        fprintf(stderr, "mapdeploy-worker: out of memory reporting a failure\n");
    goto cleanup;

not_stored:
    if (not_written)
        goto cleanup;   /* sent in band below */
failed:
    r->status = MD_TASK_FAILED;
    if (worker_failure_from_error(ctx, NULL, &refs->failure) != 0)
        fprintf(stderr, "mapdeploy-worker: out of memory reporting a failure\n");
cleanup:
    Py_XDECREF(prefix);
    Py_XDECREF(name);
    Py_XDECREF(exc);
    Py_XDECREF(pickled);
    Py_XDECREF(args);
    Py_XDECREF(dumps_kwargs);
    Py_XDECREF(collector);
    Py_XDECREF(oob);
    if (not_written)
        store_value_as(ctx, value, r, refs, 0);
}

/* Calls callable(**kwargs) (kwargs NULL: a Python error is already set by
 * whatever tried to build them) and records the outcome. */
static void call_and_record(worker_ctx *ctx, PyObject *callable, PyObject *kwargs,
                            double t0, md_task_result *r, worker_result_refs *refs)
{
    PyObject *value = NULL;

    worker_capture_begin(ctx);
    if (kwargs != NULL)
        value = PyObject_Call(callable, ctx->empty_tuple, kwargs);
    ctx->last_task_end = md_monotonic_time();
    r->run_time = ctx->last_task_end - t0;
    refs->output = worker_capture_take(ctx);
    if (value == NULL) {
        /* Everything, SystemExit and KeyboardInterrupt included, fails only
         * this task: the exception is taken, never printed or acted on. */
        r->status = MD_TASK_FAILED;
        if (worker_failure_from_error(ctx, NULL, &refs->failure) != 0)
            fprintf(stderr, "mapdeploy-worker: out of memory reporting a failure\n");
        goto cleanup;
    }
    store_value(ctx, value, r, refs);
cleanup:
    Py_XDECREF(value);
}

static void result_init(worker_ctx *ctx, uint64_t index, md_task_result *r,
                        worker_result_refs *refs)
{
    memset(r, 0, sizeof *r);
    memset(refs, 0, sizeof *refs);
    r->task_index = index;
    r->status = MD_TASK_FAILED;
    r->attempt = ctx->attempt;
    r->worker_pid = ctx->pid;
}

static void run_task(worker_ctx *ctx, uint64_t index, const uint8_t *item, size_t len,
                     md_task_result *r, worker_result_refs *refs)
{
    PyObject *kwargs = NULL;
    double t0;

    result_init(ctx, index, r, refs);
    /* two clock reads per task, not four: the wall clock is the monotonic one
     * plus the offset sampled when the batch arrived */
    t0 = md_monotonic_time();
    r->start_time = t0 + ctx->wall_minus_mono;
    if (ctx->fn == NULL) {
        (void)worker_failure_copy(&ctx->fn_error, &refs->failure);
        goto cleanup;
    }
    /* The kwargs of a plain dict are read without an Unpickler (flatpickle.h);
     * anything else by pickle.loads, as before. */
    int unknown = 0;
    kwargs = md_flat_unpickle(item, len, &unknown);
    if (kwargs == NULL && unknown)
        kwargs = load_pickle(ctx, item, len);
    if (kwargs != NULL && !PyDict_Check(kwargs)) {
        Py_CLEAR(kwargs);
        PyErr_SetString(PyExc_TypeError, "parameter set entry is not a dict");
    }
    call_and_record(ctx, ctx->fn, kwargs, t0, r, refs);
cleanup:
    Py_XDECREF(kwargs);
}

/* ---------------------------------------------------------------- batches */

typedef struct {
    worker_ctx *ctx;
    uint64_t first;
    worker_status status;
} batch_visit;

static int count_item(void *unused, size_t index, const uint8_t *item, size_t len)
{
    (void)unused;
    (void)index;
    (void)item;
    (void)len;
    return 0;
}

/* Returns non-zero to stop md_bins_decode when the socket failed. */
static int run_item(void *opaque, size_t index, const uint8_t *item, size_t len)
{
    batch_visit *visit = opaque;
    worker_ctx *ctx = visit->ctx;
    size_t slot;

    if (pending_reserve(ctx, &slot) != 0) {
        fprintf(stderr, "mapdeploy-worker: out of memory\n");
        visit->status = WORKER_FATAL;
        return 1;
    }
    run_task(ctx, visit->first + index, item, len, &ctx->pending[slot],
             &ctx->pending_refs[slot]);
    ctx->pending_len++;
    if (ctx->last_task_end - ctx->last_send >= WORKER_FLUSH_INTERVAL) {
        visit->status = flush_pending(ctx);
        if (visit->status != WORKER_OK)
            return 1;
    }
    return 0;
}

worker_status worker_run_tasks(worker_ctx *ctx, const md_envelope *env)
{
    batch_visit visit;
    md_error err;
    size_t count = 0;
    int rc;

    md_error_clear(&err);
    /* Check the whole payload before running any task, so a malformed batch
     * is refused as a whole rather than half run. */
    rc = md_bins_decode(env->payload, env->payload_len, count_item, NULL, &count, &err);
    if (rc < 0 || count != env->count) {
        fprintf(stderr, "mapdeploy-worker: malformed TASKS envelope (%s)\n",
                rc < 0 ? err.message : "count does not match its payload");
        return WORKER_REJECT;
    }
    ctx->attempt = env->attempt;
    /* The 100 ms clock starts with the batch: time spent idle before it
     * must not make the first result go out alone. */
    ctx->last_send = md_monotonic_time();
    ctx->last_task_end = ctx->last_send;
    ctx->wall_minus_mono = md_wall_time() - ctx->last_send;
    visit.ctx = ctx;
    visit.first = env->first;
    visit.status = WORKER_OK;
    rc = md_bins_decode(env->payload, env->payload_len, run_item, &visit, NULL, &err);
    if (visit.status != WORKER_OK)
        return visit.status;
    if (rc < 0) {
        fprintf(stderr, "mapdeploy-worker: malformed TASKS envelope (%s)\n", err.message);
        return WORKER_REJECT;
    }
    return flush_pending(ctx);
}

/* ---------------------------------------------------------------- combine */

typedef struct {
    worker_ctx *ctx;
    PyObject *kwargs;
} combine_visit;

static int count_entry(void *unused, const md_combine_entry *entry)
{
    (void)unused;
    (void)entry;
    return 0;
}

/* Returns 1, with a Python exception set, when a value cannot be loaded. */
static int add_entry(void *opaque, const md_combine_entry *entry)
{
    combine_visit *visit = opaque;
    PyObject *name = NULL;
    PyObject *value = NULL;
    int rc = 1;

    name = PyUnicode_DecodeUTF8(entry->name.ptr != NULL ? entry->name.ptr : "",
                                (Py_ssize_t)entry->name.len, "surrogateescape");
    if (name == NULL)
        goto cleanup;
    if (entry->value == NULL) {
        value = Py_NewRef(Py_None);
    } else {
        value = load_pickle(visit->ctx, entry->value, entry->value_len);
        if (value == NULL)
            goto cleanup;
    }
    if (PyDict_SetItem(visit->kwargs, name, value) != 0)
        goto cleanup;
    rc = 0;
cleanup:
    Py_XDECREF(value);
    Py_XDECREF(name);
    return rc;
}

worker_status worker_run_combine(worker_ctx *ctx, const md_envelope *env)
{
    combine_visit visit = {ctx, NULL};
    md_error err;
    md_task_result *r;
    worker_result_refs *refs;
    size_t slot;
    size_t count = 0;
    double t0;
    int rc;
    worker_status status = WORKER_FATAL;

    md_error_clear(&err);
    rc = md_combine_decode(env->payload, env->payload_len, count_entry, NULL, &count, &err);
    if (rc < 0) {
        fprintf(stderr, "mapdeploy-worker: malformed COMBINE envelope (%s)\n", err.message);
        status = WORKER_REJECT;
        goto cleanup;
    }
    if (pending_reserve(ctx, &slot) != 0) {
        fprintf(stderr, "mapdeploy-worker: out of memory\n");
        goto cleanup;
    }
    r = &ctx->pending[slot];
    refs = &ctx->pending_refs[slot];
    ctx->attempt = env->attempt;
    worker_load_combiner(ctx);
    result_init(ctx, ctx->jobdef->task_count, r, refs);
    t0 = md_monotonic_time();
    r->start_time = md_wall_time();
    ctx->pending_len++;
    if (ctx->combiner == NULL) {
        (void)worker_failure_copy(&ctx->combiner_error, &refs->failure);
    } else {
        visit.kwargs = PyDict_New();
        if (visit.kwargs != NULL &&
            md_combine_decode(env->payload, env->payload_len, add_entry, &visit, NULL,
                              &err) != 0)
            Py_CLEAR(visit.kwargs);   /* add_entry left the exception set */
        call_and_record(ctx, ctx->combiner, visit.kwargs, t0, r, refs);
    }
    status = flush_pending(ctx);
cleanup:
    Py_XDECREF(visit.kwargs);
    return status;
}
