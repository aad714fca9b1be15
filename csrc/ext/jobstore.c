/* JobStore: one job folder, opened with its key.  Every read is
 * authenticated before anything is handed to Python; file I/O runs without
 * the GIL, under a per-object lock so that threads sharing a JobStore never
 * race on its read offset. */
#include "ext.h"
#include "oob.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

typedef struct {
    PyObject_HEAD
    PyThread_type_lock lock;
    char *dir;                     /* PyMem_Raw: used without the GIL */
    char job_id[MD_JOB_ID_MAX + 1];
    md_key key;
    md_buf job_bytes;              /* the JOB envelope as stored */
    const uint8_t *definition;     /* its payload, inside job_bytes */
    size_t definition_len;
    uint64_t results_offset;       /* bytes of results/log already returned */
    int inotify_fd;                /* -1 until the first wait() */
    int watch_dir;                 /* its watches: the folder, results/ (-1: none) */
    int watch_results;
} JobStoreObject;

static void store_lock(JobStoreObject *self)
{
    if (!PyThread_acquire_lock(self->lock, NOWAIT_LOCK)) {
        Py_BEGIN_ALLOW_THREADS
        (void)PyThread_acquire_lock(self->lock, WAIT_LOCK);
        Py_END_ALLOW_THREADS
    }
}

static void store_unlock(JobStoreObject *self)
{
    PyThread_release_lock(self->lock);
}

static md_module_state *state_of(JobStoreObject *self)
{
    return md_state_of_type(Py_TYPE(self));
}

static PyObject *raise_for(JobStoreObject *self, const md_error *err)
{
    char context[MD_PATH_MAX + 32];
    md_module_state *state = state_of(self);
    if (state == NULL) {
        return NULL;
    }
    (void)snprintf(context, sizeof context, "job folder %s", self->dir);
    return md_raise(state, err, context);
}

static PyObject *str_or_none(md_str text)
{
    if (text.ptr == NULL) {
        Py_RETURN_NONE;
    }
    return PyUnicode_DecodeUTF8(text.ptr, (Py_ssize_t)text.len, "replace");
}

/* ------------------------------------------------------------ open/close */

static int open_folder(JobStoreObject *self, md_error *err)
{
    md_envelope env;
    int rc = md_store_read_key(self->dir, &self->key, err);
    if (rc != MD_OK) {
        return rc;
    }
    rc = md_store_read(self->dir, MD_STORE_JOB, &self->job_bytes, err);
    if (rc != MD_OK) {
        return rc;
    }
    rc = md_envelope_decode(&self->key, self->job_bytes.data, self->job_bytes.len, &env, err);
    if (rc != MD_OK) {
        return md_error_prefix(err, rc, "file '" MD_STORE_JOB "' (the job definition)");
    }
    if (env.kind != MD_KIND_JOB || env.job_id_len > MD_JOB_ID_MAX) {
        return md_fail(err, MD_EFORMAT, "the file 'job' does not hold a job definition");
    }
    memcpy(self->job_id, env.job_id, env.job_id_len);
    self->job_id[env.job_id_len] = '\0';
    self->definition = env.payload;
    self->definition_len = env.payload_len;
    return MD_OK;
}

static int job_store_init(PyObject *op, PyObject *args, PyObject *kwds)
{
    static char *keywords[] = {"path", NULL};
    JobStoreObject *self = (JobStoreObject *)op;
    PyObject *path_bytes = NULL;
    md_error err;
    int rc = -1;

    md_error_clear(&err);
    if (self->dir != NULL) {
        PyErr_SetString(PyExc_RuntimeError, "JobStore.__init__ called twice");
        return -1;
    }
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O&:JobStore", keywords, PyUnicode_FSConverter,
                                     &path_bytes)) {
        return -1;
    }
    Py_ssize_t len = PyBytes_GET_SIZE(path_bytes);
    self->dir = PyMem_RawMalloc((size_t)len + 1);
    if (self->dir == NULL) {
        PyErr_NoMemory();
        goto cleanup;
    }
    memcpy(self->dir, PyBytes_AS_STRING(path_bytes), (size_t)len + 1);
    int status;
    Py_BEGIN_ALLOW_THREADS
    status = open_folder(self, &err);
    Py_END_ALLOW_THREADS
    if (status != MD_OK) {
        (void)raise_for(self, &err);
        goto cleanup;
    }
    rc = 0;
cleanup:
    Py_XDECREF(path_bytes);
    return rc;
}

static PyObject *job_store_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    (void)args;
    (void)kwds;
    JobStoreObject *self = (JobStoreObject *)type->tp_alloc(type, 0);
    if (self == NULL) {
        return NULL;
    }
    self->inotify_fd = -1;
    self->watch_dir = -1;
    self->watch_results = -1;
    md_buf_init(&self->job_bytes);
    self->lock = PyThread_allocate_lock();
    if (self->lock == NULL) {
        Py_DECREF(self);
        PyErr_SetString(PyExc_MemoryError, "cannot allocate a lock");
        return NULL;
    }
    return (PyObject *)self;
}

/* The inotify instance goes back to the module's spares without its
 * watches (the IN_IGNORED events that leaves are drained on reuse). */
static void release_watch(JobStoreObject *self, PyTypeObject *type)
{
    PyObject *exc_type = NULL, *exc_value = NULL, *exc_tb = NULL;
    PyErr_Fetch(&exc_type, &exc_value, &exc_tb);  /* a dealloc keeps the error being raised */
    md_module_state *state = md_state_of_type(type);
    if (state == NULL) {
        PyErr_Clear();
    }
    int ok = state != NULL && state->spare_watch_count < MD_SPARE_WATCHES;
    if (ok && self->watch_dir >= 0) {
        ok = inotify_rm_watch(self->inotify_fd, self->watch_dir) == 0;
    }
    if (ok && self->watch_results >= 0) {
        ok = inotify_rm_watch(self->inotify_fd, self->watch_results) == 0;
    }
    if (ok) {
        state->spare_watches[state->spare_watch_count++] = self->inotify_fd;
    } else {
        (void)close(self->inotify_fd);
    }
    self->inotify_fd = -1;
    PyErr_Restore(exc_type, exc_value, exc_tb);
}

static void job_store_dealloc(PyObject *op)
{
    JobStoreObject *self = (JobStoreObject *)op;
    PyTypeObject *type = Py_TYPE(op);
    if (self->inotify_fd >= 0) {
        release_watch(self, type);
    }
    if (self->lock != NULL) {
        PyThread_free_lock(self->lock);
    }
    PyMem_RawFree(self->dir);
    md_buf_free(&self->job_bytes);
    type->tp_free(op);
    Py_DECREF(type);
}

/* ------------------------------------------------------------ definition */

static PyObject *job_store_definition(PyObject *op, PyObject *Py_UNUSED(ignored))
{
    JobStoreObject *self = (JobStoreObject *)op;
    md_module_state *state = state_of(self);
    if (state == NULL) {
        return NULL;
    }
    return md_unpack_bytes(state, self->definition, self->definition_len);
}

typedef struct {
    PyObject *list;
    Py_ssize_t next;
} kwargs_collector;

static int collect_kwargs(void *ctx, size_t index, const uint8_t *item, size_t len)
{
    (void)index;
    kwargs_collector *collector = ctx;
    PyObject *bytes = PyBytes_FromStringAndSize((const char *)item, (Py_ssize_t)len);
    if (bytes == NULL) {
        return -1;
    }
    int rc = PyList_Append(collector->list, bytes);
    Py_DECREF(bytes);
    return rc < 0 ? -1 : 0;
}

static PyObject *job_store_kwargs(PyObject *op, PyObject *Py_UNUSED(ignored))
{
    JobStoreObject *self = (JobStoreObject *)op;
    md_jobdef_view *view = NULL;
    PyObject *list = NULL;
    PyObject *result = NULL;
    md_buf shard;
    md_error err;
    char name[64];
    int rc;

    md_buf_init(&shard);
    md_error_clear(&err);
    if (md_jobdef_decode(self->definition, self->definition_len, &view, &err) != MD_OK) {
        (void)raise_for(self, &err);
        goto cleanup;
    }
    const md_jobdef *def = md_jobdef_get(view);
    if (def->shard_size == 0) {
        PyErr_SetString(state_of(self)->format_error, "the job definition has a shard size of 0");
        goto cleanup;
    }
    list = PyList_New(0);
    if (list == NULL) {
        goto cleanup;
    }
    uint64_t shards = (def->task_count + def->shard_size - 1) / def->shard_size;
    for (uint64_t shard_index = 0; shard_index < shards; shard_index++) {
        md_envelope env;
        kwargs_collector collector = {list, 0};
        size_t count = 0;
        if (md_shard_name(name, sizeof name, shard_index, &err) != MD_OK) {
            (void)raise_for(self, &err);
            goto cleanup;
        }
        Py_BEGIN_ALLOW_THREADS
        rc = md_store_read(self->dir, name, &shard, &err);
        if (rc == MD_OK) {
            rc = md_envelope_decode(&self->key, shard.data, shard.len, &env, &err);
        }
        if (rc == MD_OK) {
            rc = md_envelope_expect(&env, MD_KIND_TASKS, self->job_id, &err);
        }
        if (rc == MD_OK && env.first != shard_index * def->shard_size) {
            rc = md_fail(&err, MD_EFORMAT, "holds tasks from %llu, expected %llu",
                         (unsigned long long)env.first,
                         (unsigned long long)(shard_index * def->shard_size));
        }
        Py_END_ALLOW_THREADS
        if (rc != MD_OK) {
            (void)md_error_prefix(&err, rc, name);
            (void)raise_for(self, &err);
            goto cleanup;
        }
        rc = md_bins_decode(env.payload, env.payload_len, collect_kwargs, &collector, &count, &err);
        if (rc != MD_OK) {
            if (!PyErr_Occurred()) {
                (void)raise_for(self, &err);
            }
            goto cleanup;
        }
    }
    if ((uint64_t)PyList_GET_SIZE(list) != def->task_count) {
        PyErr_Format(state_of(self)->format_error, "job folder %s: found %zd tasks, expected %llu",
                     self->dir, PyList_GET_SIZE(list), (unsigned long long)def->task_count);
        goto cleanup;
    }
    result = list;
    list = NULL;
cleanup:
    Py_XDECREF(list);
    md_jobdef_free(view);
    md_buf_free(&shard);
    return result;
}

/* ------------------------------------------------------------ status */

static int state_from_name(PyObject *name, md_state *out)
{
    static const md_state states[] = {MD_STATE_PENDING, MD_STATE_RUNNING, MD_STATE_COMPLETED,
                                      MD_STATE_FAILED, MD_STATE_CANCELED};
    for (size_t i = 0; i < sizeof states / sizeof states[0]; i++) {
        if (PyUnicode_CompareWithASCIIString(name, md_state_name(states[i])) == 0) {
            *out = states[i];
            return 0;
        }
    }
    PyErr_Format(PyExc_ValueError, "unknown job state %R", name);
    return -1;
}

static PyObject *time_or_none(double seconds)
{
    if (seconds <= 0.0) {
        Py_RETURN_NONE;
    }
    return PyFloat_FromDouble(seconds);
}

static PyObject *job_store_status(PyObject *op, PyObject *Py_UNUSED(ignored))
{
    JobStoreObject *self = (JobStoreObject *)op;
    md_buf scratch;
    md_status status;
    md_error err;
    PyObject *result = NULL;
    int rc;

    md_buf_init(&scratch);
    md_error_clear(&err);
    memset(&status, 0, sizeof status);
    Py_BEGIN_ALLOW_THREADS
    rc = md_store_read_status(self->dir, &self->key, self->job_id, &scratch, &status, &err);
    Py_END_ALLOW_THREADS
    if (rc != MD_OK) {
        (void)raise_for(self, &err);
        goto cleanup;
    }
    PyObject *error = str_or_none(status.error);
    if (error == NULL) {
        goto cleanup;
    }
    PyObject *start = time_or_none(status.start_time);
    PyObject *end = time_or_none(status.end_time);
    if (start != NULL && end != NULL) {
        result = Py_BuildValue("{s:s,s:N,s:N,s:N,s:L,s:I}", "state", md_state_name(status.state),
                               "start_time", start, "end_time", end, "error", error,
                               "supervisor_pid", (long long)status.supervisor_pid,
                               "num_workers", (unsigned int)status.num_workers);
    } else {
        Py_XDECREF(start);
        Py_XDECREF(end);
        Py_DECREF(error);
    }
cleanup:
    md_buf_free(&scratch);
    return result;
}

static PyObject *job_store_write_status(PyObject *op, PyObject *args, PyObject *kwds)
{
    static char *keywords[] = {"state", "error", NULL};
    JobStoreObject *self = (JobStoreObject *)op;
    PyObject *state_name = NULL;
    const char *error_text = NULL;
    Py_ssize_t error_len = 0;
    md_buf scratch;
    md_status status;
    md_error err;
    md_state state;
    PyObject *result = NULL;
    int rc;

    if (!PyArg_ParseTupleAndKeywords(args, kwds, "U|z#:write_status", keywords, &state_name,
                                     &error_text, &error_len)) {
        return NULL;
    }
    if (state_from_name(state_name, &state) < 0) {
        return NULL;
    }
    md_buf_init(&scratch);
    md_error_clear(&err);
    memset(&status, 0, sizeof status);
    store_lock(self);
    Py_BEGIN_ALLOW_THREADS
    rc = md_store_read_status(self->dir, &self->key, self->job_id, &scratch, &status, &err);
    if (rc == MD_OK) {
        status.state = state;
        status.error.ptr = error_text;
        status.error.len = (size_t)error_len;
        if (state == MD_STATE_COMPLETED || state == MD_STATE_FAILED || state == MD_STATE_CANCELED) {
            status.end_time = md_wall_time();
        }
        rc = md_store_write_status(self->dir, &self->key, self->job_id, &status, &err);
    }
    Py_END_ALLOW_THREADS
    store_unlock(self);
    if (rc != MD_OK) {
        (void)raise_for(self, &err);
        goto cleanup;
    }
    result = Py_NewRef(Py_None);
cleanup:
    md_buf_free(&scratch);
    return result;
}

/* ------------------------------------------------------------ results */

typedef struct {
    PyObject *list;
    PyObject *completed;
    PyObject *failed;
} results_collector;

static int collect_result(void *ctx, const md_task_result *r)
{
    results_collector *collector = ctx;
    PyObject *value = NULL;
    PyObject *row = NULL;
    int rc = -1;
    if (r->value != NULL) {
        value = PyBytes_FromStringAndSize((const char *)r->value, (Py_ssize_t)r->value_len);
    } else {
        value = Py_NewRef(Py_None);
    }
    if (value == NULL) {
        goto cleanup;
    }
    PyObject *status = r->status == MD_TASK_COMPLETED ? collector->completed : collector->failed;
    row = Py_BuildValue("(KOIddLNNNOLN)", (unsigned long long)r->task_index, status,
                        (unsigned int)r->attempt, r->start_time, r->run_time,
                        (long long)r->worker_pid, str_or_none(r->exc_type),
                        str_or_none(r->exc_message), str_or_none(r->exc_traceback), value,
                        (long long)r->max_rss, str_or_none(r->output));
    if (row == NULL) {
        goto cleanup;
    }
    rc = PyList_Append(collector->list, row);
cleanup:
    Py_XDECREF(value);
    Py_XDECREF(row);
    return rc;
}

static int add_to_table(void *ctx, const md_task_result *r)
{
    return md_result_table_add(ctx, r);
}

/* Authenticates the records appended to the results log since the last read
 * and hands each task result to visit.  0, or -1 with an exception set.  On
 * an error the read offset moves past the records already taken when
 * keep_taken is set (a ResultTable keeps them, so reading them again would
 * count their attempts twice), else it stays (a list of rows is dropped). */
/* The log is read this much at a time: a client reading a finished job of a
 * million tasks holds one piece of its ~50 MB log, not all of it, next to
 * the results it builds. */
#define RESULTS_READ_CHUNK ((size_t)4 << 20)

static int read_new_results(JobStoreObject *self, md_result_visitor visit, void *ctx,
                            int keep_taken)
{
    char log_path[MD_PATH_MAX];
    md_buf data;             /* the log from results_offset + taken on */
    md_error err;
    uint64_t taken = 0;      /* bytes of whole records visited, before data */
    size_t position = 0;     /* bytes of whole records visited in data */
    int eof = 0;
    int result = -1;
    int rc;

    md_buf_init(&data);
    md_error_clear(&err);
    store_lock(self);
    if (md_path_join(log_path, sizeof log_path, self->dir, MD_STORE_RESULTS_LOG, &err) != MD_OK) {
        (void)raise_for(self, &err);
        goto cleanup;
    }
    while (!eof) {
        uint64_t next = self->results_offset + taken + data.len;
        Py_BEGIN_ALLOW_THREADS
        rc = md_store_read_range(log_path, next, RESULTS_READ_CHUNK, &data, &eof, &err);
        Py_END_ALLOW_THREADS
        if (rc == MD_ENOENT) {
            break;
        }
        if (rc != MD_OK) {
            (void)raise_for(self, &err);
            goto cleanup;
        }
        for (;;) {
            const uint8_t *record = NULL;
            size_t record_len = 0;
            size_t consumed = 0;
            md_envelope env;
            rc = md_log_parse(data.data + position, data.len - position, &record, &record_len,
                              &consumed, &err);
            if (rc == 0) {
                break;   /* the rest is in the next piece, or a torn tail */
            }
            uint64_t at = self->results_offset + taken + position;
            if (rc < 0) {
                PyErr_Format(state_of(self)->format_error,
                             "job folder %s: the results log is damaged at byte %llu: %s",
                             self->dir, (unsigned long long)at, err.message);
                goto cleanup;
            }
            rc = md_envelope_decode(&self->key, record, record_len, &env, &err);
            if (rc == MD_OK) {
                rc = md_envelope_expect(&env, MD_KIND_RESULTS, self->job_id, &err);
            }
            if (rc != MD_OK) {
                char context[MD_PATH_MAX + 64];
                (void)snprintf(context, sizeof context,
                               "job folder %s: results log record at byte %llu", self->dir,
                               (unsigned long long)at);
                (void)md_raise(state_of(self), &err, context);
                goto cleanup;
            }
            rc = md_results_decode(env.payload, env.payload_len, visit, ctx, NULL, &err);
            if (rc != MD_OK) {
                if (!PyErr_Occurred()) {
                    (void)raise_for(self, &err);
                }
                goto cleanup;
            }
            position += consumed;
        }
        md_buf_consume(&data, position);
        taken += position;
        position = 0;
    }
    result = 0;
cleanup:
    if (result == 0 || keep_taken) {
        self->results_offset += taken + position;
    }
    store_unlock(self);
    md_buf_free(&data);
    return result;
}

static PyObject *job_store_read_results(PyObject *op, PyObject *Py_UNUSED(ignored))
{
    results_collector collector = {NULL, NULL, NULL};
    PyObject *result = NULL;
    collector.list = PyList_New(0);
    collector.completed = PyUnicode_InternFromString("Completed");
    collector.failed = PyUnicode_InternFromString("Failed");
    if (collector.list == NULL || collector.completed == NULL || collector.failed == NULL) {
        goto cleanup;
    }
    if (read_new_results((JobStoreObject *)op, collect_result, &collector, 0) < 0) {
        goto cleanup;
    }
    result = collector.list;
    collector.list = NULL;
cleanup:
    Py_XDECREF(collector.list);
    Py_XDECREF(collector.completed);
    Py_XDECREF(collector.failed);
    return result;
}

/* read_results_into(table): the same records, taken into a ResultTable
 * column by column, with no Python object per task. */
static PyObject *job_store_read_results_into(PyObject *op, PyObject *table)
{
    JobStoreObject *self = (JobStoreObject *)op;
    md_module_state *state = state_of(self);
    if (state == NULL) {
        return NULL;
    }
    if (!Py_IS_TYPE(table, state->result_table_type)) {
        PyErr_Format(PyExc_TypeError, "read_results_into() takes a ResultTable, not %s",
                     Py_TYPE(table)->tp_name);
        return NULL;
    }
    if (read_new_results(self, add_to_table, table, 1) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *job_store_rewind_results(PyObject *op, PyObject *Py_UNUSED(ignored))
{
    JobStoreObject *self = (JobStoreObject *)op;
    store_lock(self);
    self->results_offset = 0;
    store_unlock(self);
    Py_RETURN_NONE;
}

/* ------------------------------------------------------------ processes */

static PyObject *job_store_launch(PyObject *op, PyObject *args, PyObject *kwds)
{
    static char *keywords[] = {"supervisor", "worker", "pool", "pool_dir", "linger", NULL};
    JobStoreObject *self = (JobStoreObject *)op;
    PyObject *supervisor = NULL;
    PyObject *worker = NULL;
    PyObject *pool_dir = NULL;
    const char *pool = NULL;
    double linger = 0.0;
    PyObject *result = NULL;
    md_error err;
    int rc;

    md_error_clear(&err);
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O&O&|zO&d:launch", keywords,
                                     PyUnicode_FSConverter, &supervisor, PyUnicode_FSConverter,
                                     &worker, &pool, PyUnicode_FSConverter, &pool_dir, &linger)) {
        goto cleanup;
    }
    if ((pool == NULL) != (pool_dir == NULL) || !(linger >= 0.0 && linger <= 86400.0)) {
        PyErr_SetString(PyExc_ValueError,
                        "launch: pool and pool_dir go together, and linger is 0 to 86400 "
                        "seconds");
        goto cleanup;
    }
    const char *supervisor_path = PyBytes_AS_STRING(supervisor);
    const char *worker_path = PyBytes_AS_STRING(worker);
    const char *pool_dir_path = pool_dir != NULL ? PyBytes_AS_STRING(pool_dir) : NULL;
    Py_BEGIN_ALLOW_THREADS
    rc = md_launch_supervisor(supervisor_path, worker_path, self->dir, pool, pool_dir_path,
                              linger, &err);
    Py_END_ALLOW_THREADS
    if (rc != MD_OK) {
        (void)raise_for(self, &err);
        goto cleanup;
    }
    result = Py_NewRef(Py_None);
cleanup:
    Py_XDECREF(supervisor);
    Py_XDECREF(worker);
    Py_XDECREF(pool_dir);
    return result;
}

static PyObject *job_store_supervisor_alive(PyObject *op, PyObject *Py_UNUSED(ignored))
{
    JobStoreObject *self = (JobStoreObject *)op;
    md_error err;
    int alive;
    md_error_clear(&err);
    Py_BEGIN_ALLOW_THREADS
    alive = md_supervisor_alive(self->dir, &err);
    Py_END_ALLOW_THREADS
    if (alive < 0) {
        return raise_for(self, &err);
    }
    return PyBool_FromLong(alive);
}

static PyObject *job_store_request_cancel(PyObject *op, PyObject *Py_UNUSED(ignored))
{
    JobStoreObject *self = (JobStoreObject *)op;
    md_buf scratch;
    md_status status;
    md_error err;
    PyObject *result = NULL;
    int rc;
    int alive = 0;

    md_buf_init(&scratch);
    md_error_clear(&err);
    memset(&status, 0, sizeof status);
    Py_BEGIN_ALLOW_THREADS
    rc = md_store_create_exclusive(self->dir, MD_STORE_CANCEL, (const uint8_t *)"", 0, 0600, &err);
    if (rc == MD_EEXIST) {
        rc = MD_OK;
    }
    if (rc == MD_OK) {
        rc = md_store_read_status(self->dir, &self->key, self->job_id, &scratch, &status, &err);
    }
    if (rc == MD_OK) {
        alive = md_supervisor_alive(self->dir, &err);
        rc = alive < 0 ? alive : MD_OK;
    }
    /* The lock is held only by a live supervisor, so its pid cannot have been reused. */
    if (rc == MD_OK && alive == 1 && status.supervisor_pid > 0) {
        if (kill((pid_t)status.supervisor_pid, SIGTERM) != 0 && errno != ESRCH) {
            rc = md_fail_errno(&err, errno, "signalling the supervisor (pid %lld)",
                               (long long)status.supervisor_pid);
        }
    }
    Py_END_ALLOW_THREADS
    if (rc != MD_OK) {
        (void)raise_for(self, &err);
        goto cleanup;
    }
    result = PyBool_FromLong(alive);
cleanup:
    md_buf_free(&scratch);
    return result;
}

/* Reads every pending event.  Returns 1 when one is about the folder itself
 * (a status replaced, a cancel request), or about anything when
 * results_too, or the queue overflowed (then nothing can be told apart). */
static int drain_events(int fd, int watch_dir, int results_too)
{
    char events[4096] __attribute__((aligned(__alignof__(struct inotify_event))));
    int relevant = 0;
    for (;;) {
        ssize_t got = read(fd, events, sizeof events);
        if (got <= 0) {
            return relevant;
        }
        size_t offset = 0;
        while (offset + sizeof(struct inotify_event) <= (size_t)got) {
            struct inotify_event event;
            memcpy(&event, events + offset, sizeof event);
            if (results_too || event.wd == watch_dir || (event.mask & IN_Q_OVERFLOW) != 0) {
                relevant = 1;
            }
            offset += sizeof event + event.len;
        }
    }
}

/* Watches the folder (status replaced, results appended) so that waiting
 * clients wake on change instead of polling. */
static int start_watch(JobStoreObject *self, md_error *err)
{
    char results_dir[MD_PATH_MAX];
    md_module_state *state = state_of(self);
    if (state == NULL) {
        PyErr_Clear();  /* no spares then: a new instance */
    }
    int fd = -1;
    if (state != NULL && state->spare_watch_count > 0) {
        fd = state->spare_watches[--state->spare_watch_count];
        (void)drain_events(fd, -1, 1);  /* what the watches of its last JobStore left */
    } else {
        fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    }
    if (fd < 0) {
        return md_fail_errno(err, errno, "inotify_init1");
    }
    self->watch_dir = inotify_add_watch(fd, self->dir, IN_MOVED_TO | IN_CREATE | IN_CLOSE_WRITE);
    if (self->watch_dir < 0) {
        int saved = errno;
        (void)close(fd);
        return md_fail_errno(err, saved, "watching %s", self->dir);
    }
    if (md_path_join(results_dir, sizeof results_dir, self->dir, MD_STORE_RESULTS_DIR, err) == MD_OK) {
        self->watch_results = inotify_add_watch(fd, results_dir, IN_MODIFY | IN_CREATE);
    }
    self->inotify_fd = fd;
    return MD_OK;
}

static PyObject *job_store_wait(PyObject *op, PyObject *args, PyObject *kwargs)
{
    static char *keywords[] = {"timeout", "results", NULL};
    JobStoreObject *self = (JobStoreObject *)op;
    double timeout = 0.0;
    int results_too = 1;
    md_error err;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "d|p:wait", keywords, &timeout, &results_too)) {
        return NULL;
    }
    md_error_clear(&err);
    if (self->inotify_fd < 0) {
        if (start_watch(self, &err) != MD_OK) {
            return raise_for(self, &err);
        }
        /* Changes before the watch existed are unseen: the caller must look again. */
        Py_RETURN_TRUE;
    }
    double deadline = md_monotonic_time() + (timeout > 0.0 ? timeout : 0.0);
    for (;;) {
        double remaining = deadline - md_monotonic_time();
        int slice_ms = remaining <= 0.0 ? 0 : (remaining > 0.1 ? 100 : (int)(remaining * 1000.0) + 1);
        struct pollfd pfd = {self->inotify_fd, POLLIN, 0};
        int ready;
        int relevant = 0;
        Py_BEGIN_ALLOW_THREADS
        ready = poll(&pfd, 1, slice_ms);
        if (ready > 0) {
            relevant = drain_events(self->inotify_fd, self->watch_dir, results_too);
        }
        Py_END_ALLOW_THREADS
        if (relevant) {
            Py_RETURN_TRUE;
        }
        if (ready < 0 && errno != EINTR) {
            PyErr_SetFromErrno(PyExc_OSError);
            return NULL;
        }
        if (PyErr_CheckSignals() < 0) {
            return NULL;
        }
        if (remaining <= 0.0) {
            Py_RETURN_FALSE;
        }
    }
}

/* loads(data) -> object: unpickles an authenticated pickle of this job; one
 * whose large buffers are blobs has them read from the job folder and
 * checked first (IntegrityError naming the blob when one was changed). */
static PyObject *job_store_loads(PyObject *op, PyObject *arg)
{
    JobStoreObject *self = (JobStoreObject *)op;
    md_module_state *state = state_of(self);
    Py_buffer view;
    md_error err;
    if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) != 0) {
        return NULL;
    }
    if (!md_oob_is(view.buf, (size_t)view.len)) {
        /* a plain pickle: handed on as it is, no copy */
        PyBuffer_Release(&view);
        return PyObject_CallOneArg(state->pickle_loads, arg);
    }
    PyObject *result = md_oob_loads(view.buf, (size_t)view.len, self->dir, &self->key,
                                    state->pickle_loads, &err);
    PyBuffer_Release(&view);
    if (result == NULL && err.code != MD_OK) {
        return md_raise(state, &err, "reading a value");
    }
    return result;
}

/* ------------------------------------------------------------ attributes */

static PyObject *job_store_get_path(PyObject *op, void *closure)
{
    (void)closure;
    return PyUnicode_DecodeFSDefault(((JobStoreObject *)op)->dir);
}

static PyObject *job_store_get_job_id(PyObject *op, void *closure)
{
    (void)closure;
    return PyUnicode_FromString(((JobStoreObject *)op)->job_id);
}

static PyGetSetDef job_store_getset[] = {
    {"path", job_store_get_path, NULL, PyDoc_STR("The job folder."), NULL},
    {"job_id", job_store_get_job_id, NULL, PyDoc_STR("The job's random id."), NULL},
    {NULL, NULL, NULL, NULL, NULL}};

static PyMethodDef job_store_methods[] = {
    {"definition", job_store_definition, METH_NOARGS,
     PyDoc_STR("definition() -> dict\n\nThe authenticated job definition.")},
    {"loads", job_store_loads, METH_O,
     PyDoc_STR("loads(data) -> object\n\nUnpickles a value or kwargs pickle of this job, "
               "reading and checking the blobs it names.")},
    {"kwargs", job_store_kwargs, METH_NOARGS,
     PyDoc_STR("kwargs() -> list[bytes]\n\nThe pickled kwargs of every task, in task order.")},
    {"status", job_store_status, METH_NOARGS,
     PyDoc_STR("status() -> dict\n\nstate, start_time, end_time, error, supervisor_pid, num_workers.")},
    {"write_status", (PyCFunction)(void (*)(void))job_store_write_status,
     METH_VARARGS | METH_KEYWORDS,
     PyDoc_STR("write_status(state, error=None)\n\nReplaces the status (end_time set for final states).")},
    {"read_results", job_store_read_results, METH_NOARGS,
     PyDoc_STR("read_results() -> list[tuple]\n\nResults appended since the last call: (task_index, "
               "status, attempt, start_time, run_time, worker_pid, exc_type, exc_message, "
               "exc_traceback, value_pickle, max_rss, output).")},
    {"read_results_into", job_store_read_results_into, METH_O,
     PyDoc_STR("read_results_into(table)\n\nTakes the results appended since the last read "
               "into a ResultTable.")},
    {"rewind_results", job_store_rewind_results, METH_NOARGS,
     PyDoc_STR("rewind_results()\n\nThe next read_results() starts from the beginning.")},
    {"launch", (PyCFunction)(void (*)(void))job_store_launch, METH_VARARGS | METH_KEYWORDS,
     PyDoc_STR("launch(supervisor, worker, pool=None, pool_dir=None, linger=0.0)\n\n"
               "Starts this job: on the idle warm pool `pool` if there is one, else in a new "
               "detached supervisor (which lingers `linger` seconds as that pool afterwards).")},
    {"supervisor_alive", job_store_supervisor_alive, METH_NOARGS,
     PyDoc_STR("supervisor_alive() -> bool")},
    {"request_cancel", job_store_request_cancel, METH_NOARGS,
     PyDoc_STR("request_cancel() -> bool\n\nMarks the job canceled and signals its supervisor; "
               "returns whether a supervisor was running.")},
    {"wait", (PyCFunction)(void (*)(void))job_store_wait, METH_VARARGS | METH_KEYWORDS,
     PyDoc_STR("wait(timeout, results=True) -> bool\n\n"
               "Blocks until the folder changes or timeout seconds pass; with results=False,\n"
               "appended results do not count as a change (only the status, a cancel request).")},
    {NULL, NULL, 0, NULL}};

static PyType_Slot job_store_slots[] = {
    {Py_tp_doc, (void *)"JobStore(path)\n\nAn existing job folder, opened with its key."},
    {Py_tp_new, (void *)job_store_new},
    {Py_tp_init, (void *)job_store_init},
    {Py_tp_dealloc, (void *)job_store_dealloc},
    {Py_tp_methods, job_store_methods},
    {Py_tp_getset, job_store_getset},
    {0, NULL}};

static PyType_Spec job_store_spec = {
    .name = "mapdeploy._mapdeploy.JobStore",
    .basicsize = sizeof(JobStoreObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_IMMUTABLETYPE,
    .slots = job_store_slots,
};

int md_job_store_add_type(PyObject *module, md_module_state *state)
{
    state->job_store_type =
        (PyTypeObject *)PyType_FromModuleAndSpec(module, &job_store_spec, NULL);
    if (state->job_store_type == NULL) {
        return -1;
    }
    return PyModule_AddType(module, state->job_store_type);
}

/* ------------------------------------------------------------ create_job */

typedef struct {
    const char *dir;
    const md_key *key;
    const char *job_id;
    const uint8_t *definition;
    size_t definition_len;
    uint64_t task_count;
    uint64_t shard_size;
    const uint8_t **items;       /* pickles; those with blobs are replaced by their wrappers */
    size_t *item_lens;
    /* Tasks whose pickle has out-of-band buffers: task oob_tasks[k] owns
     * views[oob_first[k] .. oob_first[k] + oob_counts[k]). */
    size_t oob_task_count;
    const size_t *oob_tasks;
    const size_t *oob_first;
    const size_t *oob_counts;
    const Py_buffer *views;
    size_t view_count;
    int from_spare;              /* the folder was a pool's spare: its sub-folders exist */
} job_layout;

/* Writes every out-of-band buffer once, as <job>/blobs/<nonce>, and points
 * each task that has some at its wrapper (pickle + blob references) in
 * wrapped, which must outlive the shards' writing. */
static int write_blobs(const job_layout *layout, md_buf *wrapped, md_error *err)
{
    int rc = MD_OK;
    md_blob_ref *refs = NULL;
    size_t *offsets = NULL;

    if (layout->oob_task_count == 0) {
        return MD_OK;
    }
    refs = calloc(layout->view_count, sizeof *refs);
    offsets = calloc(layout->oob_task_count + 1, sizeof *offsets);
    if (refs == NULL || offsets == NULL) {
        rc = md_fail(err, MD_ENOMEM, "out of memory for %zu blob references", layout->view_count);
        goto cleanup;
    }
    rc = md_store_mkdir(layout->dir, MD_STORE_BLOBS_DIR, 0700, 0, err);
    for (size_t j = 0; rc == MD_OK && j < layout->view_count; j++) {
        const Py_buffer *view = &layout->views[j];
        rc = md_blob_write(layout->dir, layout->key, view->buf, (size_t)view->len, &refs[j], err);
        refs[j].readonly = view->readonly ? 1 : 0;
    }
    for (size_t k = 0; rc == MD_OK && k < layout->oob_task_count; k++) {
        size_t task = layout->oob_tasks[k];
        offsets[k] = wrapped->len;
        rc = md_oob_encode(layout->items[task], layout->item_lens[task],
                           refs + layout->oob_first[k], layout->oob_counts[k], wrapped, err);
    }
    if (rc != MD_OK) {
        goto cleanup;
    }
    offsets[layout->oob_task_count] = wrapped->len;
    for (size_t k = 0; k < layout->oob_task_count; k++) {
        size_t task = layout->oob_tasks[k];
        layout->items[task] = wrapped->data + offsets[k];
        layout->item_lens[task] = offsets[k + 1] - offsets[k];
    }
cleanup:
    free(refs);
    free(offsets);
    return rc;
}

/* A new file of the folder: in a spare folder the empty file the pool made
 * for it is filled, which costs no inode allocation (spare.c says why). */
static int write_new_file(const job_layout *layout, const char *name, const uint8_t *data,
                          size_t len, md_error *err)
{
    if (layout->from_spare) {
        return md_store_fill_unsynced(layout->dir, name, data, len, 0600, err);
    }
    return md_store_create_unsynced(layout->dir, name, data, len, 0600, err);
}

/* whole: written to a temporary name and renamed, so that other processes
 * never see it partly written: the definition, whose presence tells a
 * process listing the jobs that the folder is complete.  Otherwise created
 * in place.  Nothing is fsynced here (see write_layout). */
static int write_envelope(const job_layout *layout, const char *name, md_kind kind, uint64_t first,
                          uint64_t count, const uint8_t *payload, size_t payload_len,
                          int whole, md_buf *scratch, md_error *err)
{
    md_envelope env = {kind, layout->job_id, strlen(layout->job_id), first, count, 0,
                       payload, payload_len};
    md_buf_clear(scratch);
    int rc = md_envelope_encode(layout->key, &env, scratch, err);
    if (rc != MD_OK) {
        return rc;
    }
    if (whole && layout->from_spare) {
        return md_store_replace_via(layout->dir, name, MD_STORE_SPARE_JOB_TMP, scratch->data,
                                    scratch->len, 0600, err);
    }
    if (whole) {
        return md_store_replace(layout->dir, name, scratch->data, scratch->len, 0600, 0, err);
    }
    return write_new_file(layout, name, scratch->data, scratch->len, err);
}

/* Durability of a new job folder.  Each fsync costs about a millisecond
 * here (4-5 ms on slower disks), more than a whole job on warm workers, so
 * none is done on the client's path: the supervisor makes the folder durable
 * (key, definition, folder, with its results log and status) once a second
 * while the job runs and right after it ends (docs/architecture.md,
 * "Durability").  A crash of this process loses nothing: the page cache
 * holds every file once write(2) returned.  After a host crash a file that
 * was lost or torn fails its MAC or is missing, so the job is reported
 * damaged rather than run with wrong arguments; it has to be submitted
 * again. */

static int write_layout(const job_layout *layout, md_error *err)
{
    md_buf payload;
    md_buf scratch;
    md_buf wrapped;
    char name[64];
    int rc;
    md_status status;

    md_buf_init(&payload);
    md_buf_init(&scratch);
    md_buf_init(&wrapped);
    rc = write_new_file(layout, MD_STORE_KEY, layout->key->bytes, MD_KEY_LEN, err);
    if (rc != MD_OK) {
        goto cleanup;
    }
    const char *dirs[] = {MD_STORE_TASKS_DIR, MD_STORE_RESULTS_DIR, MD_STORE_LOGS_DIR};
    for (size_t i = 0; i < sizeof dirs / sizeof dirs[0]; i++) {
        rc = md_store_mkdir(layout->dir, dirs[i], 0700, layout->from_spare, err);
        if (rc != MD_OK) {
            goto cleanup;
        }
    }
    rc = write_blobs(layout, &wrapped, err);
    if (rc != MD_OK) {
        goto cleanup;
    }
    for (uint64_t first = 0; first < layout->task_count; first += layout->shard_size) {
        uint64_t count = layout->task_count - first;
        if (count > layout->shard_size) {
            count = layout->shard_size;
        }
        md_buf_clear(&payload);
        rc = md_bins_encode((const uint8_t *const *)(layout->items + first),
                            layout->item_lens + first, (size_t)count,
                            &payload, err);
        if (rc == MD_OK) {
            rc = md_shard_name(name, sizeof name, first / layout->shard_size, err);
        }
        if (rc == MD_OK) {
            rc = write_envelope(layout, name, MD_KIND_TASKS, first, count, payload.data, payload.len,
                                0, &scratch, err);
        }
        if (rc != MD_OK) {
            goto cleanup;
        }
    }
    memset(&status, 0, sizeof status);
    status.state = MD_STATE_PENDING;
    md_buf_clear(&payload);
    rc = md_status_encode(&status, &payload, err);
    if (rc == MD_OK) {
        /* a fresh folder: created in place, nobody reads it before 'job' exists */
        rc = write_envelope(layout, MD_STORE_STATUS, MD_KIND_STATUS, 0, 0, payload.data,
                            payload.len, 0, &scratch, err);
    }
    if (rc != MD_OK) {
        goto cleanup;
    }
    /* The definition goes last, whole or not at all: a folder with a 'job'
     * file is complete, also to a process listing the jobs right now. */
    rc = write_envelope(layout, MD_STORE_JOB, MD_KIND_JOB, 0, layout->task_count,
                        layout->definition, layout->definition_len, 1, &scratch, err);
cleanup:
    md_buf_free(&payload);
    md_buf_free(&scratch);
    md_buf_free(&wrapped);
    return rc;
}

static int set_count(PyObject *dict, const char *name, uint64_t value)
{
    PyObject *number = PyLong_FromUnsignedLongLong(value);
    if (number == NULL) {
        return -1;
    }
    int rc = PyDict_SetItemString(dict, name, number);
    Py_DECREF(number);
    return rc;
}

/* Tasks per shard: at most the caller's shard_size, halved while the shard
 * would hold more than SHARD_TARGET_BYTES of pickles.  Every shard is a file
 * (on ext4 next to recently deleted job folders each costs ~0.3 ms: 1M tasks
 * took 190-240 ms in 245 shards of 4,096, 80-150 ms in 16), and every shard is
 * one envelope, read and authenticated whole, so neither many tiny shards nor
 * a few huge ones (an envelope's payload stops at 4 GiB). */
#define SHARD_TARGET_BYTES ((size_t)16 << 20)
static Py_ssize_t shard_tasks(Py_ssize_t shard_size, const size_t *lens, size_t count)
{
    size_t total = 0;
    for (size_t i = 0; i < count; i++) {
        total += lens[i];
    }
    size_t per_task = count > 0 ? total / count + 1 : 1;
    while (shard_size > 1 && (size_t)shard_size > SHARD_TARGET_BYTES / per_task) {
        shard_size /= 2;
    }
    return shard_size;
}

/* The job's folder: the spare a warm pool made (csrc/supervisor/spare.c),
 * renamed, when there is one; otherwise a new folder.  EEXIST either way
 * when the name is taken. */
static int make_job_folder(const char *dir, const char *spare, int *from_spare, md_error *err)
{
    *from_spare = 0;
    if (spare != NULL) {
        if (renameat2(AT_FDCWD, spare, AT_FDCWD, dir, RENAME_NOREPLACE) == 0) {
            struct stat taken;
            if (lstat(dir, &taken) == 0 && S_ISDIR(taken.st_mode)) {
                *from_spare = 1;
                return MD_OK;
            }
            /* not a folder, so no spare a pool made: out of the way */
            if (unlink(dir) != 0) {
                return md_fail_errno(err, errno, "cannot remove %s", dir);
            }
        } else if (errno == EEXIST) {
            return md_fail_errno(err, EEXIST, "mkdir");
        }
        /* no spare now (ENOENT), or a filesystem without RENAME_NOREPLACE */
    }
    return mkdir(dir, 0700) == 0 ? MD_OK : md_fail_errno(err, errno, "mkdir");
}

static int optional_fs_path(PyObject *arg, void *address)
{
    if (arg == Py_None) {
        *(PyObject **)address = NULL;
        return 1;
    }
    return PyUnicode_FSConverter(arg, address);
}

PyObject *md_create_job(PyObject *module, PyObject *args, PyObject *kwargs)
{
    static char *keywords[] = {"path", "definition", "kwargs", "shard_size", "spare", NULL};
    md_module_state *state = md_state_of_module(module);
    PyObject *path = NULL;
    PyObject *spare = NULL;
    PyObject *definition = NULL;
    PyObject *definition_copy = NULL;
    PyObject *items_arg = NULL;
    PyObject *items = NULL;
    PyObject *job_dir = NULL;
    const uint8_t **pointers = NULL;
    size_t *lens = NULL;
    size_t *oob_tasks = NULL;
    size_t *oob_first = NULL;
    size_t *oob_counts = NULL;
    Py_buffer *views = NULL;
    size_t view_count = 0;
    size_t view_cap = 0;
    size_t oob_task_count = 0;
    PyObject *result = NULL;
    Py_ssize_t shard_size = 0;
    md_buf definition_bytes;
    md_key key;
    md_key id_bytes;
    md_error err;
    char job_id[33];
    int rc;

    md_buf_init(&definition_bytes);
    md_error_clear(&err);
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O&O!On|O&:create_job", keywords,
                                     PyUnicode_FSConverter, &path, &PyDict_Type, &definition,
                                     &items_arg, &shard_size, optional_fs_path, &spare)) {
        goto cleanup;
    }
    if (shard_size <= 0) {
        PyErr_SetString(PyExc_ValueError, "shard_size must be positive");
        goto cleanup;
    }
    items = PySequence_Fast(items_arg, "kwargs must be a sequence of bytes");
    if (items == NULL) {
        goto cleanup;
    }
    Py_ssize_t count = PySequence_Fast_GET_SIZE(items);
    pointers = PyMem_Calloc((size_t)count + 1, sizeof *pointers);
    lens = PyMem_Calloc((size_t)count + 1, sizeof *lens);
    if (pointers == NULL || lens == NULL) {
        PyErr_NoMemory();
        goto cleanup;
    }
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *item = PySequence_Fast_GET_ITEM(items, i);
        PyObject *buffers = NULL;
        /* (pickle, [buffers]): a pickle whose buffers travel out of band */
        if (PyTuple_CheckExact(item) && PyTuple_GET_SIZE(item) == 2 &&
            PyList_CheckExact(PyTuple_GET_ITEM(item, 1))) {
            buffers = PyTuple_GET_ITEM(item, 1);
            item = PyTuple_GET_ITEM(item, 0);
        }
        if (!PyBytes_Check(item)) {
            PyErr_Format(PyExc_TypeError, "kwargs[%zd] must be bytes or (bytes, list), not %.100s",
                         i, Py_TYPE(item)->tp_name);
            goto cleanup;
        }
        pointers[i] = (const uint8_t *)PyBytes_AS_STRING(item);
        lens[i] = (size_t)PyBytes_GET_SIZE(item);
        if (buffers == NULL || PyList_GET_SIZE(buffers) == 0) {
            continue;
        }
        Py_ssize_t n = PyList_GET_SIZE(buffers);
        if ((size_t)n > MD_OOB_MAX_BLOBS) {
            PyErr_Format(PyExc_ValueError, "kwargs[%zd] has %zd large buffers, at most %u", i, n,
                         MD_OOB_MAX_BLOBS);
            goto cleanup;
        }
        if (oob_tasks == NULL) {
            oob_tasks = PyMem_Calloc((size_t)count, sizeof *oob_tasks);
            oob_first = PyMem_Calloc((size_t)count, sizeof *oob_first);
            oob_counts = PyMem_Calloc((size_t)count, sizeof *oob_counts);
            if (oob_tasks == NULL || oob_first == NULL || oob_counts == NULL) {
                PyErr_NoMemory();
                goto cleanup;
            }
        }
        if (view_count + (size_t)n > view_cap) {
            size_t cap = (view_cap == 0 ? 8 : view_cap * 2) + (size_t)n;
            Py_buffer *grown = PyMem_Realloc(views, cap * sizeof *views);
            if (grown == NULL) {
                PyErr_NoMemory();
                goto cleanup;
            }
            views = grown;
            view_cap = cap;
        }
        oob_tasks[oob_task_count] = (size_t)i;
        oob_first[oob_task_count] = view_count;
        oob_counts[oob_task_count] = (size_t)n;
        oob_task_count++;
        for (Py_ssize_t j = 0; j < n; j++) {
            if (PyObject_GetBuffer(PyList_GET_ITEM(buffers, j), &views[view_count],
                                   PyBUF_CONTIG_RO) != 0) {
                goto cleanup;
            }
            view_count++;
        }
    }
    shard_size = shard_tasks(shard_size, lens, (size_t)count);
    definition_copy = PyDict_Copy(definition);
    if (definition_copy == NULL || set_count(definition_copy, "task_count", (uint64_t)count) < 0 ||
        set_count(definition_copy, "shard_size", (uint64_t)shard_size) < 0) {
        goto cleanup;
    }
    /* Workers find the blobs by the folder's absolute path: they run in the
     * submitter's working folder, not in the job's. */
    if (PyBytes_AS_STRING(path)[0] == '/') {
        job_dir = PyUnicode_DecodeFSDefault(PyBytes_AS_STRING(path));
        if (job_dir == NULL || PyDict_SetItemString(definition_copy, "job_dir", job_dir) < 0) {
            goto cleanup;
        }
    } else if (oob_task_count > 0) {
        PyErr_SetString(PyExc_ValueError, "a job with large buffers needs an absolute path");
        goto cleanup;
    }
    if (md_pack_object(definition_copy, &definition_bytes) < 0) {
        goto cleanup;
    }
    if (md_key_generate(&key, &err) != MD_OK || md_key_generate(&id_bytes, &err) != MD_OK) {
        (void)md_raise(state, &err, "create_job");
        goto cleanup;
    }
    for (size_t i = 0; i < 16; i++) {
        static const char hex[] = "0123456789abcdef";
        job_id[2 * i] = hex[id_bytes.bytes[i] >> 4];
        job_id[2 * i + 1] = hex[id_bytes.bytes[i] & 0x0f];
    }
    job_id[32] = '\0';
    job_layout layout = {PyBytes_AS_STRING(path), &key, job_id, definition_bytes.data,
                         definition_bytes.len, (uint64_t)count, (uint64_t)shard_size,
                         pointers, lens, oob_task_count, oob_tasks, oob_first, oob_counts,
                         views, view_count, 0};
    const char *spare_path = spare != NULL ? PyBytes_AS_STRING(spare) : NULL;
    Py_BEGIN_ALLOW_THREADS
    rc = make_job_folder(layout.dir, spare_path, &layout.from_spare, &err);
    if (rc == MD_OK) {
        rc = write_layout(&layout, &err);
    }
    Py_END_ALLOW_THREADS
    if (rc != MD_OK) {
        char context[MD_PATH_MAX + 32];
        (void)snprintf(context, sizeof context, "creating job folder %s", layout.dir);
        (void)md_raise(state, &err, context);
        goto cleanup;
    }
    result = PyUnicode_FromString(job_id);
cleanup:
    for (size_t j = 0; j < view_count; j++) {
        PyBuffer_Release(&views[j]);
    }
    PyMem_Free(views);
    PyMem_Free(oob_tasks);
    PyMem_Free(oob_first);
    PyMem_Free(oob_counts);
    Py_XDECREF(job_dir);
    Py_XDECREF(path);
    Py_XDECREF(spare);
    Py_XDECREF(items);
    Py_XDECREF(definition_copy);
    PyMem_Free(pointers);
    PyMem_Free(lens);
    md_buf_free(&definition_bytes);
    return result;
}
