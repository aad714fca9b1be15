/* ResultTable: a job's results held column by column, for the client.
 *
 * A job of N tasks has N + 1 rows (the map tasks, then the combiner).  Each
 * column is one C array, the value pickles share one byte buffer, and the
 * strings that only failed or printing tasks have (exception type, message,
 * traceback, output) live in a dict keyed by row.  That is ~60 bytes a task
 * and no Python object per task until one is asked for: the per-row tuples
 * this replaces cost ~700 bytes and ~1.2 us a task to build.
 *
 * The rule for a task with several records (retries, a resumed job) is
 * applied as records arrive: the first Completed one wins, otherwise the
 * last one.  The combiner's row takes the last record. */
#include "ext.h"
#include "flatpickle.h"

#include <string.h>
#include <time.h>

enum { ROW_NONE = 0, ROW_COMPLETED = 1, ROW_FAILED = 2 };

#define NO_VALUE UINT64_MAX

typedef struct {
    PyObject_HEAD
    uint64_t task_count;     /* map tasks; the combiner's row is task_count */
    uint64_t rows;           /* task_count + 1 */
    uint8_t *status;         /* ROW_*; PyMem, all arrays rows long */
    uint32_t *attempt;       /* attempt of the record shown */
    uint32_t *attempts;      /* records seen for the row */
    double *start;
    double *run_time;
    int64_t *pid;
    int64_t *max_rss;
    uint64_t *value_off;     /* into values; NO_VALUE when the record has none */
    uint64_t *value_len;
    md_buf values;           /* every kept value pickle, back to back */
    PyObject *text;          /* {row: (exc_type, exc_message, exc_traceback, output)} */
    uint64_t completed;      /* map rows Completed */
    uint64_t failed;         /* map rows Failed */
    PyObject *completed_name;
    PyObject *failed_name;
} ResultTableObject;

static void result_table_free_arrays(ResultTableObject *self)
{
    PyMem_Free(self->status);
    PyMem_Free(self->attempt);
    PyMem_Free(self->attempts);
    PyMem_Free(self->start);
    PyMem_Free(self->run_time);
    PyMem_Free(self->pid);
    PyMem_Free(self->max_rss);
    PyMem_Free(self->value_off);
    PyMem_Free(self->value_len);
    self->status = NULL;
    self->attempt = NULL;
    self->attempts = NULL;
    self->start = NULL;
    self->run_time = NULL;
    self->pid = NULL;
    self->max_rss = NULL;
    self->value_off = NULL;
    self->value_len = NULL;
    md_buf_free(&self->values);
}

static PyObject *result_table_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    unsigned long long task_count = 0;
    static char *kwlist[] = {"task_count", NULL};
    ResultTableObject *self = NULL;
    PyObject *result = NULL;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "K:ResultTable", kwlist, &task_count)) {
        return NULL;
    }
    /* Nine arrays of at most 8 bytes a row: refuse counts whose size would overflow. */
    if (task_count >= (unsigned long long)(PY_SSIZE_T_MAX / 16)) {
        PyErr_Format(PyExc_ValueError, "task_count %llu is too large", task_count);
        return NULL;
    }
    self = (ResultTableObject *)type->tp_alloc(type, 0);
    if (self == NULL) {
        return NULL;
    }
    md_buf_init(&self->values);
    self->task_count = task_count;
    self->rows = task_count + 1;
    size_t n = (size_t)self->rows;
    self->status = PyMem_Calloc(n, sizeof *self->status);
    self->attempt = PyMem_Calloc(n, sizeof *self->attempt);
    self->attempts = PyMem_Calloc(n, sizeof *self->attempts);
    self->start = PyMem_Calloc(n, sizeof *self->start);
    self->run_time = PyMem_Calloc(n, sizeof *self->run_time);
    self->pid = PyMem_Calloc(n, sizeof *self->pid);
    self->max_rss = PyMem_Calloc(n, sizeof *self->max_rss);
    self->value_off = PyMem_Calloc(n, sizeof *self->value_off);
    self->value_len = PyMem_Calloc(n, sizeof *self->value_len);
    self->text = PyDict_New();
    self->completed_name = PyUnicode_InternFromString("Completed");
    self->failed_name = PyUnicode_InternFromString("Failed");
    if (self->status == NULL || self->attempt == NULL || self->attempts == NULL ||
        self->start == NULL || self->run_time == NULL || self->pid == NULL ||
        self->max_rss == NULL || self->value_off == NULL || self->value_len == NULL) {
        PyErr_NoMemory();
        goto cleanup;
    }
    if (self->text == NULL || self->completed_name == NULL || self->failed_name == NULL) {
        goto cleanup;
    }
    result = (PyObject *)self;
    self = NULL;
cleanup:
    Py_XDECREF(self);
    return result;
}

static int result_table_traverse(PyObject *op, visitproc visit, void *arg)
{
    ResultTableObject *self = (ResultTableObject *)op;
    Py_VISIT(Py_TYPE(op));
    Py_VISIT(self->text);
    return 0;
}

static int result_table_clear(PyObject *op)
{
    ResultTableObject *self = (ResultTableObject *)op;
    Py_CLEAR(self->text);
    return 0;
}

static void result_table_dealloc(PyObject *op)
{
    ResultTableObject *self = (ResultTableObject *)op;
    PyTypeObject *type = Py_TYPE(op);
    PyObject_GC_UnTrack(op);
    (void)result_table_clear(op);
    Py_CLEAR(self->completed_name);
    Py_CLEAR(self->failed_name);
    result_table_free_arrays(self);
    type->tp_free(op);
    Py_DECREF(type);
}

static PyObject *text_or_none(md_str text)
{
    if (text.ptr == NULL) {
        Py_RETURN_NONE;
    }
    return PyUnicode_DecodeUTF8(text.ptr, (Py_ssize_t)text.len, "replace");
}

int md_result_table_add(PyObject *op, const md_task_result *r)
{
    ResultTableObject *self = (ResultTableObject *)op;
    PyObject *key = NULL;
    PyObject *strings = NULL;
    int rc = -1;
    /* Rows past the combiner cannot come from this job's supervisor; the
     * record is authentic, so it is skipped rather than failing the read. */
    if (r->task_index > self->task_count) {
        return 0;
    }
    size_t row = (size_t)r->task_index;
    int is_map = r->task_index < self->task_count;
    if (self->attempts[row] < UINT32_MAX) {
        self->attempts[row]++;
    }
    if (is_map && self->status[row] == ROW_COMPLETED) {
        return 0;   /* the first Completed result of a task wins */
    }
    uint8_t status = r->status == MD_TASK_COMPLETED ? ROW_COMPLETED : ROW_FAILED;
    int has_text = r->exc_type.ptr != NULL || r->exc_message.ptr != NULL ||
                   r->exc_traceback.ptr != NULL || r->output.ptr != NULL;
    /* Most results (a first Completed record, nothing printed) touch no
     * Python object at all: the key is made only when the dict changes. */
    if (has_text || (self->status[row] != ROW_NONE && PyDict_GET_SIZE(self->text) > 0)) {
        key = PyLong_FromSize_t(row);
        if (key == NULL) {
            goto cleanup;
        }
    }
    if (has_text) {
        strings = Py_BuildValue("(NNNN)", text_or_none(r->exc_type), text_or_none(r->exc_message),
                                text_or_none(r->exc_traceback), text_or_none(r->output));
        if (strings == NULL || PyDict_SetItem(self->text, key, strings) < 0) {
            goto cleanup;
        }
    } else if (key != NULL && PyDict_DelItem(self->text, key) < 0) {
        if (!PyErr_ExceptionMatches(PyExc_KeyError)) {
            goto cleanup;
        }
        PyErr_Clear();
    }
    if (r->value != NULL) {
        self->value_off[row] = (uint64_t)self->values.len;
        self->value_len[row] = (uint64_t)r->value_len;
        if (md_buf_append(&self->values, r->value, r->value_len) != MD_OK) {
            PyErr_NoMemory();
            goto cleanup;
        }
    } else {
        self->value_off[row] = NO_VALUE;
        self->value_len[row] = 0;
    }
    if (is_map) {
        if (self->status[row] == ROW_FAILED) {
            self->failed--;
        }
        if (status == ROW_COMPLETED) {
            self->completed++;
        } else {
            self->failed++;
        }
    }
    self->status[row] = status;
    self->attempt[row] = r->attempt;
    self->start[row] = r->start_time;
    self->run_time[row] = r->run_time;
    self->pid[row] = r->worker_pid;
    self->max_rss[row] = r->max_rss;
    rc = 0;
cleanup:
    Py_XDECREF(key);
    Py_XDECREF(strings);
    return rc;
}

/* ------------------------------------------------------------ methods */

static int row_arg(ResultTableObject *self, PyObject *arg, size_t *row)
{
    unsigned long long index = PyLong_AsUnsignedLongLong(arg);
    if (index == (unsigned long long)-1 && PyErr_Occurred()) {
        return -1;
    }
    if (index >= self->rows) {
        PyErr_Format(PyExc_IndexError, "row %llu of a table of %llu rows", index,
                     (unsigned long long)self->rows);
        return -1;
    }
    *row = (size_t)index;
    return 0;
}

static PyObject *status_name(ResultTableObject *self, size_t row)
{
    switch (self->status[row]) {
    case ROW_COMPLETED:
        return Py_NewRef(self->completed_name);
    case ROW_FAILED:
        return Py_NewRef(self->failed_name);
    default:
        Py_RETURN_NONE;
    }
}

static PyObject *value_bytes(ResultTableObject *self, size_t row)
{
    if (self->status[row] == ROW_NONE || self->value_off[row] == NO_VALUE) {
        Py_RETURN_NONE;
    }
    return PyBytes_FromStringAndSize((const char *)self->values.data + self->value_off[row],
                                     (Py_ssize_t)self->value_len[row]);
}

/* Item i (0..3) of the row's strings, or None; a new reference. */
static PyObject *text_item(ResultTableObject *self, size_t row, Py_ssize_t item)
{
    PyObject *key = NULL;
    PyObject *strings = NULL;
    PyObject *result = NULL;
    if (PyDict_GET_SIZE(self->text) == 0) {
        Py_RETURN_NONE;
    }
    key = PyLong_FromSize_t(row);
    if (key == NULL) {
        goto cleanup;
    }
    strings = PyDict_GetItemWithError(self->text, key);   /* borrowed */
    if (strings == NULL) {
        if (!PyErr_Occurred()) {
            result = Py_NewRef(Py_None);
        }
        goto cleanup;
    }
    result = Py_NewRef(PyTuple_GET_ITEM(strings, item));
cleanup:
    Py_XDECREF(key);
    return result;
}

static PyObject *result_table_status(PyObject *op, PyObject *arg)
{
    ResultTableObject *self = (ResultTableObject *)op;
    size_t row = 0;
    if (row_arg(self, arg, &row) < 0) {
        return NULL;
    }
    return status_name(self, row);
}

static PyObject *result_table_value(PyObject *op, PyObject *arg)
{
    ResultTableObject *self = (ResultTableObject *)op;
    size_t row = 0;
    if (row_arg(self, arg, &row) < 0) {
        return NULL;
    }
    return value_bytes(self, row);
}

static PyObject *result_table_row(PyObject *op, PyObject *arg)
{
    ResultTableObject *self = (ResultTableObject *)op;
    size_t row = 0;
    PyObject *strings = NULL;
    PyObject *key = NULL;
    PyObject *result = NULL;
    if (row_arg(self, arg, &row) < 0) {
        return NULL;
    }
    if (self->status[row] == ROW_NONE) {
        Py_RETURN_NONE;
    }
    key = PyLong_FromSize_t(row);
    if (key == NULL) {
        goto cleanup;
    }
    strings = PyDict_GetItemWithError(self->text, key);   /* borrowed */
    if (strings == NULL && PyErr_Occurred()) {
        goto cleanup;
    }
    PyObject *none = Py_None;
    result = Py_BuildValue("(KNIddLOOONLO)", (unsigned long long)row, status_name(self, row),
                           (unsigned int)self->attempt[row], self->start[row],
                           self->run_time[row], (long long)self->pid[row],
                           strings ? PyTuple_GET_ITEM(strings, 0) : none,
                           strings ? PyTuple_GET_ITEM(strings, 1) : none,
                           strings ? PyTuple_GET_ITEM(strings, 2) : none, value_bytes(self, row),
                           (long long)self->max_rss[row],
                           strings ? PyTuple_GET_ITEM(strings, 3) : none);
cleanup:
    Py_XDECREF(key);
    return result;
}

static PyObject *result_table_counts(PyObject *op, PyObject *Py_UNUSED(ignored))
{
    ResultTableObject *self = (ResultTableObject *)op;
    return Py_BuildValue("(KK)", (unsigned long long)self->completed,
                         (unsigned long long)self->failed);
}

static PyObject *result_table_unfinished(PyObject *op, PyObject *arg)
{
    ResultTableObject *self = (ResultTableObject *)op;
    Py_ssize_t limit = PyLong_AsSsize_t(arg);
    PyObject *list = NULL;
    PyObject *result = NULL;
    if (limit == -1 && PyErr_Occurred()) {
        return NULL;
    }
    list = PyList_New(0);
    if (list == NULL) {
        goto cleanup;
    }
    for (uint64_t row = 0; row < self->task_count && PyList_GET_SIZE(list) < limit; row++) {
        if (self->status[row] != ROW_COMPLETED) {
            PyObject *index = PyLong_FromUnsignedLongLong((unsigned long long)row);
            if (index == NULL || PyList_Append(list, index) < 0) {
                Py_XDECREF(index);
                goto cleanup;
            }
            Py_DECREF(index);
        }
    }
    result = list;
    list = NULL;
cleanup:
    Py_XDECREF(list);
    return result;
}

/* values(loads) -> list: loads(pickle) of every Completed map task, None for the others. */
static PyObject *result_table_values(PyObject *op, PyObject *loads)
{
    ResultTableObject *self = (ResultTableObject *)op;
    PyObject *list = NULL;
    PyObject *result = NULL;
    if (!PyCallable_Check(loads)) {
        PyErr_SetString(PyExc_TypeError, "values() takes the function that unpickles a value");
        return NULL;
    }
    if (self->task_count > (uint64_t)PY_SSIZE_T_MAX) {
        return PyErr_NoMemory();
    }
    list = PyList_New((Py_ssize_t)self->task_count);
    if (list == NULL) {
        goto cleanup;
    }
    for (uint64_t row = 0; row < self->task_count; row++) {
        PyObject *item = NULL;
        if (self->status[row] == ROW_COMPLETED && self->value_off[row] != NO_VALUE) {
            /* Plain values are read without an Unpickler (flatpickle.h). */
            int unknown = 0;
            item = md_flat_unpickle(self->values.data + self->value_off[row],
                                    (size_t)self->value_len[row], &unknown);
            if (item == NULL && unknown) {
                PyObject *data = value_bytes(self, (size_t)row);
                if (data == NULL) {
                    goto cleanup;
                }
                item = PyObject_CallOneArg(loads, data);
                Py_DECREF(data);
            }
            if (item == NULL) {
                goto cleanup;
            }
        } else {
            item = Py_NewRef(Py_None);
        }
        PyList_SET_ITEM(list, (Py_ssize_t)row, item);
    }
    result = list;
    list = NULL;
cleanup:
    Py_XDECREF(list);
    return result;
}

/* Local time text of a start time; consecutive tasks mostly start in the same
 * second, so the text of the previous second is reused (one str shared by
 * thousands of rows instead of one each). */
typedef struct {
    long long second;
    PyObject *text;
} time_cache;

static PyObject *local_time(time_cache *cache, double seconds)
{
    char text[64];
    struct tm parts;
    long long second = (long long)seconds;
    if (cache->text != NULL && cache->second == second) {
        return Py_NewRef(cache->text);
    }
    time_t t = (time_t)second;
    if (localtime_r(&t, &parts) == NULL) {
        PyErr_SetString(PyExc_OverflowError, "start time out of range");
        return NULL;
    }
    size_t len = strftime(text, sizeof text, "%Y-%m-%d %H:%M:%S", &parts);
    if (len == 0) {
        PyErr_SetString(PyExc_ValueError, "start time cannot be formatted");
        return NULL;
    }
    PyObject *fresh = PyUnicode_DecodeLocaleAndSize(text, (Py_ssize_t)len, "surrogateescape");
    if (fresh == NULL) {
        return NULL;
    }
    Py_XSETREF(cache->text, fresh);
    cache->second = second;
    return Py_NewRef(fresh);
}

enum {
    COL_STATUS, COL_START, COL_RUN_TIME, COL_EXC_TYPE, COL_EXC_MESSAGE, COL_EXC_TB,
    COL_ATTEMPT, COL_ATTEMPTS, COL_PID, COL_MAX_RSS, COL_COUNT
};

static const char *const column_names[COL_COUNT] = {
    "status", "start_time", "run_time", "exception", "exception_message",
    "exception_traceback", "attempt", "attempts", "worker_pid", "peak_memory"};

/* One cell; a new reference. */
static PyObject *cell(ResultTableObject *self, size_t row, int column, PyObject *unfinished,
                      time_cache *cache)
{
    int none = self->status[row] == ROW_NONE;
    switch (column) {
    case COL_STATUS:
        return none ? Py_NewRef(unfinished) : status_name(self, row);
    case COL_START:
        return none ? Py_NewRef(Py_None) : local_time(cache, self->start[row]);
    case COL_RUN_TIME:
        return self->status[row] == ROW_COMPLETED ? PyFloat_FromDouble(self->run_time[row])
                                                  : Py_NewRef(Py_None);
    case COL_EXC_TYPE:
    case COL_EXC_MESSAGE:
    case COL_EXC_TB:
        return none ? Py_NewRef(Py_None) : text_item(self, row, column - COL_EXC_TYPE);
    case COL_ATTEMPT:
        return none ? Py_NewRef(Py_None) : PyLong_FromUnsignedLong(self->attempt[row]);
    case COL_ATTEMPTS:
        return PyLong_FromUnsignedLong(self->attempts[row]);
    case COL_PID:
        return none || self->pid[row] == 0 ? Py_NewRef(Py_None)
                                           : PyLong_FromLongLong((long long)self->pid[row]);
    default:
        return none || self->max_rss[row] == 0
                   ? Py_NewRef(Py_None)
                   : PyLong_FromLongLong((long long)self->max_rss[row]);
    }
}

/* metrics(unfinished, detailed, combiner) -> dict of lists, one per metrics
 * column except task_name and output_log (the Job knows names and logs). */
static PyObject *result_table_metrics(PyObject *op, PyObject *args)
{
    ResultTableObject *self = (ResultTableObject *)op;
    PyObject *unfinished = NULL;
    int detailed = 0;
    int combiner = 0;
    PyObject *columns = NULL;
    PyObject *result = NULL;
    time_cache cache = {0, NULL};
    if (!PyArg_ParseTuple(args, "Upp:metrics", &unfinished, &detailed, &combiner)) {
        return NULL;
    }
    size_t rows = (size_t)self->task_count + (combiner ? 1 : 0);
    int count = detailed ? COL_COUNT : COL_ATTEMPT;
    columns = PyDict_New();
    if (columns == NULL) {
        goto cleanup;
    }
    for (int column = 0; column < count; column++) {
        PyObject *list = PyList_New((Py_ssize_t)rows);
        if (list == NULL) {
            goto cleanup;
        }
        if (PyDict_SetItemString(columns, column_names[column], list) < 0) {
            Py_DECREF(list);
            goto cleanup;
        }
        Py_DECREF(list);   /* the dict holds it */
        for (size_t row = 0; row < rows; row++) {
            /* the combiner's row is the table's last, after the map rows */
            size_t source = row < self->task_count ? row : (size_t)self->task_count;
            PyObject *item = cell(self, source, column, unfinished, &cache);
            if (item == NULL) {
                goto cleanup;
            }
            PyList_SET_ITEM(list, (Py_ssize_t)row, item);
        }
    }
    result = columns;
    columns = NULL;
cleanup:
    Py_XDECREF(cache.text);
    Py_XDECREF(columns);
    return result;
}

static PyObject *result_table_get_task_count(PyObject *op, void *Py_UNUSED(closure))
{
    return PyLong_FromUnsignedLongLong((unsigned long long)((ResultTableObject *)op)->task_count);
}

static PyGetSetDef result_table_getset[] = {
    {"task_count", result_table_get_task_count, NULL, PyDoc_STR("Map tasks (rows - 1)."), NULL},
    {NULL, NULL, NULL, NULL, NULL}};

static PyMethodDef result_table_methods[] = {
    {"status", result_table_status, METH_O,
     PyDoc_STR("status(row) -> 'Completed' | 'Failed' | None")},
    {"value", result_table_value, METH_O,
     PyDoc_STR("value(row) -> bytes | None\n\nThe value pickle of the row's result.")},
    {"row", result_table_row, METH_O,
     PyDoc_STR("row(row) -> tuple | None\n\n(task_index, status, attempt, start_time, run_time, "
               "worker_pid, exc_type, exc_message, exc_traceback, value_pickle, max_rss, "
               "output), as JobStore.read_results() returns records.")},
    {"counts", result_table_counts, METH_NOARGS,
     PyDoc_STR("counts() -> (completed, failed)\n\nOf the map tasks.")},
    {"unfinished", result_table_unfinished, METH_O,
     PyDoc_STR("unfinished(limit) -> list[int]\n\nThe first map tasks that are not Completed.")},
    {"values", result_table_values, METH_O,
     PyDoc_STR("values(loads) -> list\n\nloads(pickle) of every Completed map task, else None.")},
    {"metrics", result_table_metrics, METH_VARARGS,
     PyDoc_STR("metrics(unfinished, detailed, combiner) -> dict[str, list]\n\nThe metrics "
               "columns but task_name and output_log; rows without a result have status "
               "`unfinished`.")},
    {NULL, NULL, 0, NULL}};

static PyType_Slot result_table_slots[] = {
    {Py_tp_doc, (void *)"ResultTable(task_count)\n\nA job's results, column by column; "
                        "filled by JobStore.read_results_into()."},
    {Py_tp_new, (void *)result_table_new},
    {Py_tp_dealloc, (void *)result_table_dealloc},
    {Py_tp_traverse, (void *)result_table_traverse},
    {Py_tp_clear, (void *)result_table_clear},
    {Py_tp_methods, result_table_methods},
    {Py_tp_getset, result_table_getset},
    {0, NULL}};

static PyType_Spec result_table_spec = {
    .name = "mapdeploy._mapdeploy.ResultTable",
    .basicsize = sizeof(ResultTableObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_IMMUTABLETYPE | Py_TPFLAGS_HAVE_GC,
    .slots = result_table_slots,
};

int md_result_table_add_type(PyObject *module, md_module_state *state)
{
    state->result_table_type =
        (PyTypeObject *)PyType_FromModuleAndSpec(module, &result_table_spec, NULL);
    if (state->result_table_type == NULL) {
        return -1;
    }
    return PyModule_AddType(module, state->result_table_type);
}
