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

/* The per-row columns that get_metrics() shows.  A ResultTable and the
 * ResultColumn views its metrics() hands out share one block, so a metrics
 * table costs no memory per task.  The block is copied on write: a
 * ResultTable about to take a record while views share its block leaves the
 * block to them and goes on with a copy, so a table already handed out never
 * changes.  Touched only with the GIL held. */
typedef struct {
    Py_ssize_t owners;       /* the ResultTable (while it uses it) and each view */
    size_t rows;
    uint8_t *status;         /* ROW_*; PyMem, all arrays rows long */
    uint32_t *attempt;       /* attempt of the record shown */
    uint32_t *attempts;      /* records seen for the row */
    double *start;
    double *run_time;
    int64_t *pid;
    int64_t *max_rss;
    /* {row: (exc_type, exc_message, exc_traceback, output)}: only str and
     * None inside, so no reference cycle can pass through it and the owners
     * need not report it to the garbage collector. */
    PyObject *text;
} row_block;

typedef struct {
    PyObject_HEAD
    uint64_t task_count;     /* map tasks; the combiner's row is task_count */
    uint64_t rows;           /* task_count + 1 */
    row_block *block;
    uint64_t *value_off;     /* into values; NO_VALUE when the record has none */
    uint64_t *value_len;
    md_buf values;           /* every kept value pickle, back to back */
    uint64_t completed;      /* map rows Completed */
    uint64_t failed;         /* map rows Failed */
    PyObject *completed_name;
    PyObject *failed_name;
} ResultTableObject;

static void row_block_release(row_block *block)
{
    if (block == NULL || --block->owners > 0) {
        return;
    }
    PyMem_Free(block->status);
    PyMem_Free(block->attempt);
    PyMem_Free(block->attempts);
    PyMem_Free(block->start);
    PyMem_Free(block->run_time);
    PyMem_Free(block->pid);
    PyMem_Free(block->max_rss);
    Py_XDECREF(block->text);
    PyMem_Free(block);
}

/* A block of rows rows: zeroed with an empty dict when source is NULL (calloc:
 * pages of rows never written are never touched), else a copy of source. */
static row_block *row_block_new(size_t rows, const row_block *source)
{
    row_block *block = PyMem_Calloc(1, sizeof *block);
    row_block *result = NULL;
    if (block == NULL) {
        return (row_block *)PyErr_NoMemory();
    }
    block->owners = 1;
    block->rows = rows;
    block->status = PyMem_Calloc(rows, sizeof *block->status);
    block->attempt = PyMem_Calloc(rows, sizeof *block->attempt);
    block->attempts = PyMem_Calloc(rows, sizeof *block->attempts);
    block->start = PyMem_Calloc(rows, sizeof *block->start);
    block->run_time = PyMem_Calloc(rows, sizeof *block->run_time);
    block->pid = PyMem_Calloc(rows, sizeof *block->pid);
    block->max_rss = PyMem_Calloc(rows, sizeof *block->max_rss);
    if (block->status == NULL || block->attempt == NULL || block->attempts == NULL ||
        block->start == NULL || block->run_time == NULL || block->pid == NULL ||
        block->max_rss == NULL) {
        PyErr_NoMemory();
        goto cleanup;
    }
    block->text = source == NULL ? PyDict_New() : PyDict_Copy(source->text);
    if (block->text == NULL) {
        goto cleanup;
    }
    if (source != NULL) {
        memcpy(block->status, source->status, rows * sizeof *block->status);
        memcpy(block->attempt, source->attempt, rows * sizeof *block->attempt);
        memcpy(block->attempts, source->attempts, rows * sizeof *block->attempts);
        memcpy(block->start, source->start, rows * sizeof *block->start);
        memcpy(block->run_time, source->run_time, rows * sizeof *block->run_time);
        memcpy(block->pid, source->pid, rows * sizeof *block->pid);
        memcpy(block->max_rss, source->max_rss, rows * sizeof *block->max_rss);
    }
    result = block;
    block = NULL;
cleanup:
    row_block_release(block);
    return result;
}

/* Makes the table's block its own before it changes it (copy on write). */
static int own_block(ResultTableObject *self)
{
    if (self->block->owners == 1) {
        return 0;
    }
    row_block *copy = row_block_new(self->block->rows, self->block);
    if (copy == NULL) {
        return -1;
    }
    row_block_release(self->block);
    self->block = copy;
    return 0;
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
    self->block = row_block_new(n, NULL);
    if (self->block == NULL) {
        goto cleanup;
    }
    self->value_off = PyMem_Calloc(n, sizeof *self->value_off);
    self->value_len = PyMem_Calloc(n, sizeof *self->value_len);
    if (self->value_off == NULL || self->value_len == NULL) {
        PyErr_NoMemory();
        goto cleanup;
    }
    self->completed_name = PyUnicode_InternFromString("Completed");
    self->failed_name = PyUnicode_InternFromString("Failed");
    if (self->completed_name == NULL || self->failed_name == NULL) {
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
    (void)arg;
    Py_VISIT(Py_TYPE(op));
    return 0;
}

static void result_table_dealloc(PyObject *op)
{
    ResultTableObject *self = (ResultTableObject *)op;
    PyTypeObject *type = Py_TYPE(op);
    PyObject_GC_UnTrack(op);
    Py_CLEAR(self->completed_name);
    Py_CLEAR(self->failed_name);
    row_block_release(self->block);
    self->block = NULL;
    PyMem_Free(self->value_off);
    PyMem_Free(self->value_len);
    md_buf_free(&self->values);
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
    if (own_block(self) < 0) {
        return -1;
    }
    row_block *block = self->block;
    size_t row = (size_t)r->task_index;
    int is_map = r->task_index < self->task_count;
    if (block->attempts[row] < UINT32_MAX) {
        block->attempts[row]++;
    }
    if (is_map && block->status[row] == ROW_COMPLETED) {
        return 0;   /* the first Completed result of a task wins */
    }
    uint8_t status = r->status == MD_TASK_COMPLETED ? ROW_COMPLETED : ROW_FAILED;
    int has_text = r->exc_type.ptr != NULL || r->exc_message.ptr != NULL ||
                   r->exc_traceback.ptr != NULL || r->output.ptr != NULL;
    /* Most results (a first Completed record, nothing printed) touch no
     * Python object at all: the key is made only when the dict changes. */
    if (has_text || (block->status[row] != ROW_NONE && PyDict_GET_SIZE(block->text) > 0)) {
        key = PyLong_FromSize_t(row);
        if (key == NULL) {
            goto cleanup;
        }
    }
    if (has_text) {
        strings = Py_BuildValue("(NNNN)", text_or_none(r->exc_type), text_or_none(r->exc_message),
                                text_or_none(r->exc_traceback), text_or_none(r->output));
        if (strings == NULL || PyDict_SetItem(block->text, key, strings) < 0) {
            goto cleanup;
        }
    } else if (key != NULL && PyDict_DelItem(block->text, key) < 0) {
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
        if (block->status[row] == ROW_FAILED) {
            self->failed--;
        }
        if (status == ROW_COMPLETED) {
            self->completed++;
        } else {
            self->failed++;
        }
    }
    block->status[row] = status;
    block->attempt[row] = r->attempt;
    block->start[row] = r->start_time;
    block->run_time[row] = r->run_time;
    block->pid[row] = r->worker_pid;
    block->max_rss[row] = r->max_rss;
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

static PyObject *status_name(const row_block *block, size_t row, PyObject *completed_name,
                             PyObject *failed_name)
{
    switch (block->status[row]) {
    case ROW_COMPLETED:
        return Py_NewRef(completed_name);
    case ROW_FAILED:
        return Py_NewRef(failed_name);
    default:
        Py_RETURN_NONE;
    }
}

static PyObject *value_bytes(ResultTableObject *self, size_t row)
{
    if (self->block->status[row] == ROW_NONE || self->value_off[row] == NO_VALUE) {
        Py_RETURN_NONE;
    }
    return PyBytes_FromStringAndSize((const char *)self->values.data + self->value_off[row],
                                     (Py_ssize_t)self->value_len[row]);
}

/* The row's strings (a borrowed tuple), or NULL: with an exception set when
 * the lookup failed, without one when the row has none. */
static PyObject *row_strings(const row_block *block, size_t row)
{
    if (PyDict_GET_SIZE(block->text) == 0) {
        return NULL;
    }
    PyObject *key = PyLong_FromSize_t(row);
    if (key == NULL) {
        return NULL;
    }
    PyObject *strings = PyDict_GetItemWithError(block->text, key);   /* borrowed */
    Py_DECREF(key);
    return strings;
}

/* Item i (0..3) of the row's strings, or None; a new reference. */
static PyObject *text_item(const row_block *block, size_t row, Py_ssize_t item)
{
    PyObject *strings = row_strings(block, row);
    if (strings == NULL) {
        return PyErr_Occurred() ? NULL : Py_NewRef(Py_None);
    }
    return Py_NewRef(PyTuple_GET_ITEM(strings, item));
}

static PyObject *result_table_status(PyObject *op, PyObject *arg)
{
    ResultTableObject *self = (ResultTableObject *)op;
    size_t row = 0;
    if (row_arg(self, arg, &row) < 0) {
        return NULL;
    }
    return status_name(self->block, row, self->completed_name, self->failed_name);
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
    const row_block *block = self->block;
    size_t row = 0;
    if (row_arg(self, arg, &row) < 0) {
        return NULL;
    }
    if (block->status[row] == ROW_NONE) {
        Py_RETURN_NONE;
    }
    PyObject *strings = row_strings(block, row);   /* borrowed */
    if (strings == NULL && PyErr_Occurred()) {
        return NULL;
    }
    PyObject *none = Py_None;
    return Py_BuildValue("(KNIddLOOONLO)", (unsigned long long)row,
                         status_name(block, row, self->completed_name, self->failed_name),
                         (unsigned int)block->attempt[row], block->start[row],
                         block->run_time[row], (long long)block->pid[row],
                         strings ? PyTuple_GET_ITEM(strings, 0) : none,
                         strings ? PyTuple_GET_ITEM(strings, 1) : none,
                         strings ? PyTuple_GET_ITEM(strings, 2) : none, value_bytes(self, row),
                         (long long)block->max_rss[row],
                         strings ? PyTuple_GET_ITEM(strings, 3) : none);
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
        if (self->block->status[row] != ROW_COMPLETED) {
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
        if (self->block->status[row] == ROW_COMPLETED && self->value_off[row] != NO_VALUE) {
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

/* ------------------------------------------------------------ ResultColumn */

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
    COL_ATTEMPT, COL_ATTEMPTS, COL_PID, COL_MAX_RSS, COL_COUNT,
    COL_TASK_NAME = COL_COUNT   /* no block: prefix + row, the combiner's name last */
};

static const char *const column_names[COL_COUNT + 1] = {
    "status", "start_time", "run_time", "exception", "exception_message",
    "exception_traceback", "attempt", "attempts", "worker_pid", "peak_memory", "task_name"};

/* A read-only sequence over one metrics column: each cell is made when it is
 * asked for, from the shared row block (or, for task names, from the row
 * number), so that holding a table of a million rows costs no object per
 * row. */
typedef struct {
    PyObject_HEAD
    row_block *block;        /* NULL for COL_TASK_NAME */
    int column;              /* COL_* */
    Py_ssize_t length;
    size_t task_count;       /* rows below it are map tasks */
    PyObject *completed_name;
    PyObject *failed_name;
    PyObject *unfinished;    /* COL_STATUS of a row without a result */
    PyObject *prefix;        /* COL_TASK_NAME: map task i is named prefix + str(i) */
    PyObject *last;          /* COL_TASK_NAME: the row after the map tasks (combiner) */
    time_cache cache;        /* COL_START */
} ResultColumnObject;

/* One cell; a new reference. */
static PyObject *column_cell(ResultColumnObject *self, size_t row)
{
    if (self->column == COL_TASK_NAME) {
        if (row >= self->task_count) {
            return Py_NewRef(self->last);
        }
        return PyUnicode_FromFormat("%U%zu", self->prefix, row);
    }
    const row_block *block = self->block;
    int none = block->status[row] == ROW_NONE;
    switch (self->column) {
    case COL_STATUS:
        return none ? Py_NewRef(self->unfinished)
                    : status_name(block, row, self->completed_name, self->failed_name);
    case COL_START:
        return none ? Py_NewRef(Py_None) : local_time(&self->cache, block->start[row]);
    case COL_RUN_TIME:
        return block->status[row] == ROW_COMPLETED ? PyFloat_FromDouble(block->run_time[row])
                                                   : Py_NewRef(Py_None);
    case COL_EXC_TYPE:
    case COL_EXC_MESSAGE:
    case COL_EXC_TB:
        return none ? Py_NewRef(Py_None) : text_item(block, row, self->column - COL_EXC_TYPE);
    case COL_ATTEMPT:
        return none ? Py_NewRef(Py_None) : PyLong_FromUnsignedLong(block->attempt[row]);
    case COL_ATTEMPTS:
        return PyLong_FromUnsignedLong(block->attempts[row]);
    case COL_PID:
        return none || block->pid[row] == 0 ? Py_NewRef(Py_None)
                                            : PyLong_FromLongLong((long long)block->pid[row]);
    default:
        return none || block->max_rss[row] == 0
                   ? Py_NewRef(Py_None)
                   : PyLong_FromLongLong((long long)block->max_rss[row]);
    }
}

static Py_ssize_t result_column_length(PyObject *op)
{
    return ((ResultColumnObject *)op)->length;
}

static PyObject *result_column_item(PyObject *op, Py_ssize_t index)
{
    ResultColumnObject *self = (ResultColumnObject *)op;
    if (index < 0 || index >= self->length) {
        PyErr_SetString(PyExc_IndexError, "ResultColumn index out of range");
        return NULL;
    }
    return column_cell(self, (size_t)index);
}

/* col[i] (negative counts from the end) or col[a:b:c], which is a new list. */
static PyObject *result_column_subscript(PyObject *op, PyObject *key)
{
    ResultColumnObject *self = (ResultColumnObject *)op;
    if (PyIndex_Check(key)) {
        Py_ssize_t index = PyNumber_AsSsize_t(key, PyExc_IndexError);
        if (index == -1 && PyErr_Occurred()) {
            return NULL;
        }
        if (index < 0) {
            index += self->length;
        }
        return result_column_item(op, index);
    }
    if (!PySlice_Check(key)) {
        PyErr_Format(PyExc_TypeError, "ResultColumn indices must be integers or slices, not %.200s",
                     Py_TYPE(key)->tp_name);
        return NULL;
    }
    Py_ssize_t start = 0;
    Py_ssize_t stop = 0;
    Py_ssize_t step = 0;
    if (PySlice_Unpack(key, &start, &stop, &step) < 0) {
        return NULL;
    }
    Py_ssize_t count = PySlice_AdjustIndices(self->length, &start, &stop, step);
    PyObject *list = PyList_New(count);
    if (list == NULL) {
        return NULL;
    }
    for (Py_ssize_t i = 0, row = start; i < count; i++, row += step) {
        PyObject *item = column_cell(self, (size_t)row);
        if (item == NULL) {
            Py_DECREF(list);
            return NULL;
        }
        PyList_SET_ITEM(list, i, item);
    }
    return list;
}

/* Pickled (and copied) as the list of its values. */
static PyObject *result_column_reduce(PyObject *op, PyObject *Py_UNUSED(ignored))
{
    PyObject *values = PySequence_List(op);
    if (values == NULL) {
        return NULL;
    }
    return Py_BuildValue("(O(N))", (PyObject *)&PyList_Type, values);
}

static PyObject *result_column_repr(PyObject *op)
{
    ResultColumnObject *self = (ResultColumnObject *)op;
    return PyUnicode_FromFormat("<ResultColumn %s of %zd rows>", column_names[self->column],
                                self->length);
}

static void result_column_dealloc(PyObject *op)
{
    ResultColumnObject *self = (ResultColumnObject *)op;
    PyTypeObject *type = Py_TYPE(op);
    row_block_release(self->block);
    self->block = NULL;
    Py_CLEAR(self->completed_name);
    Py_CLEAR(self->failed_name);
    Py_CLEAR(self->unfinished);
    Py_CLEAR(self->prefix);
    Py_CLEAR(self->last);
    Py_CLEAR(self->cache.text);
    type->tp_free(op);
    Py_DECREF(type);
}

static PyMethodDef result_column_methods[] = {
    {"__reduce__", result_column_reduce, METH_NOARGS,
     PyDoc_STR("Pickles the column as the list of its values.")},
    {NULL, NULL, 0, NULL}};

static PyType_Slot result_column_slots[] = {
    {Py_tp_doc, (void *)"A read-only sequence over one column of a job's metrics; each value "
                        "is made when it is read.  Made by ResultTable.metrics() and "
                        "ResultTable.task_names()."},
    {Py_tp_dealloc, (void *)result_column_dealloc},
    {Py_tp_repr, (void *)result_column_repr},
    {Py_tp_methods, result_column_methods},
    {Py_sq_length, (void *)result_column_length},
    {Py_sq_item, (void *)result_column_item},
    {Py_mp_length, (void *)result_column_length},
    {Py_mp_subscript, (void *)result_column_subscript},
    {0, NULL}};

static PyType_Spec result_column_spec = {
    .name = "mapdeploy._mapdeploy.ResultColumn",
    .basicsize = sizeof(ResultColumnObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_IMMUTABLETYPE | Py_TPFLAGS_DISALLOW_INSTANTIATION,
    .slots = result_column_slots,
};

/* A new column of rows rows; block may be NULL (task names).  Steals nothing. */
static PyObject *new_column(ResultTableObject *table, int column, size_t rows, PyObject *unfinished,
                            PyObject *prefix, PyObject *last)
{
    md_module_state *state = md_state_of_type(Py_TYPE(table));
    if (state == NULL) {
        return NULL;
    }
    ResultColumnObject *self =
        (ResultColumnObject *)state->result_column_type->tp_alloc(state->result_column_type, 0);
    if (self == NULL) {
        return NULL;
    }
    self->column = column;
    self->length = (Py_ssize_t)rows;
    self->task_count = (size_t)table->task_count;
    if (column != COL_TASK_NAME) {
        self->block = table->block;
        self->block->owners++;
    }
    self->completed_name = Py_NewRef(table->completed_name);
    self->failed_name = Py_NewRef(table->failed_name);
    self->unfinished = Py_XNewRef(unfinished);
    self->prefix = Py_XNewRef(prefix);
    self->last = Py_XNewRef(last);
    return (PyObject *)self;
}

/* metrics(unfinished, detailed, combiner) -> dict of ResultColumns, one per
 * metrics column except task_name and output_log (the Job knows names and
 * logs).  The columns share the table's rows until the table takes another
 * record, so they show the results read so far and never change. */
static PyObject *result_table_metrics(PyObject *op, PyObject *args)
{
    ResultTableObject *self = (ResultTableObject *)op;
    PyObject *unfinished = NULL;
    int detailed = 0;
    int combiner = 0;
    PyObject *columns = NULL;
    PyObject *result = NULL;
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
        PyObject *view = new_column(self, column, rows, unfinished, NULL, NULL);
        if (view == NULL) {
            goto cleanup;
        }
        int rc = PyDict_SetItemString(columns, column_names[column], view);
        Py_DECREF(view);
        if (rc < 0) {
            goto cleanup;
        }
    }
    result = columns;
    columns = NULL;
cleanup:
    Py_XDECREF(columns);
    return result;
}

/* task_names(prefix, combiner=None) -> ResultColumn: prefix + str(i) for each
 * map task, then the combiner's name when there is one. */
static PyObject *result_table_task_names(PyObject *op, PyObject *args, PyObject *kwds)
{
    ResultTableObject *self = (ResultTableObject *)op;
    static char *kwlist[] = {"prefix", "combiner", NULL};
    PyObject *prefix = NULL;
    PyObject *combiner = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "U|O:task_names", kwlist, &prefix, &combiner)) {
        return NULL;
    }
    if (combiner != Py_None && !PyUnicode_Check(combiner)) {
        PyErr_Format(PyExc_TypeError, "task_names() combiner must be str or None, not %.200s",
                     Py_TYPE(combiner)->tp_name);
        return NULL;
    }
    int has_combiner = combiner != Py_None;
    size_t rows = (size_t)self->task_count + (has_combiner ? 1 : 0);
    return new_column(self, COL_TASK_NAME, rows, NULL, prefix, has_combiner ? combiner : NULL);
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
     PyDoc_STR("metrics(unfinished, detailed, combiner) -> dict[str, ResultColumn]\n\nThe "
               "metrics columns but task_name and output_log, as of the results read so far "
               "(later reads do not change them); rows without a result have status "
               "`unfinished`.")},
    {"task_names", (PyCFunction)(void (*)(void))result_table_task_names,
     METH_VARARGS | METH_KEYWORDS,
     PyDoc_STR("task_names(prefix, combiner=None) -> ResultColumn\n\nprefix + str(i) for each "
               "map task i, then the combiner's name when one is given.")},
    {NULL, NULL, 0, NULL}};

static PyType_Slot result_table_slots[] = {
    {Py_tp_doc, (void *)"ResultTable(task_count)\n\nA job's results, column by column; "
                        "filled by JobStore.read_results_into()."},
    {Py_tp_new, (void *)result_table_new},
    {Py_tp_dealloc, (void *)result_table_dealloc},
    {Py_tp_traverse, (void *)result_table_traverse},
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
    if (PyModule_AddType(module, state->result_table_type) < 0) {
        return -1;
    }
    state->result_column_type =
        (PyTypeObject *)PyType_FromModuleAndSpec(module, &result_column_spec, NULL);
    if (state->result_column_type == NULL) {
        return -1;
    }
    return PyModule_AddType(module, state->result_column_type);
}
