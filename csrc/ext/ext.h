/* Private header of the _mapdeploy extension: one .c file per concern.
 *   module.c    PEP 489 module definition, module state, exceptions
 *   convert.c   Python objects <-> msgpack (job definitions, statuses)
 *   jobstore.c  the JobStore type and create_job
 *   process.c   starting the supervisor, probing it, waiting for changes
 *   results.c   the ResultTable type: a job's results held column by column, and
 *               ResultColumn, the lazy metrics columns that share them
 *   flatpickle.c pickles of kwargs dicts of plain scalars, without the pickle module
 */
#ifndef MAPDEPLOY_EXT_H
#define MAPDEPLOY_EXT_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <msgpack.h>

#include "mdcore.h"

#define MD_SPARE_WATCHES 8

typedef struct {
    PyObject *error;            /* MapDeployError(Exception) */
    PyObject *integrity_error;  /* IntegrityError(MapDeployError): MAC check failed */
    PyObject *format_error;     /* FormatError(MapDeployError): malformed or future data */
    PyObject *storage_error;    /* StorageError(MapDeployError, OSError) */
    PyTypeObject *job_store_type;
    PyTypeObject *result_table_type;
    PyTypeObject *result_column_type;
    PyObject *pickle_loads;     /* pickle.loads */
    /* inotify instances of JobStores that are gone, their watches removed,
     * kept for the next JobStore: closing one waits for an RCU grace period
     * in the kernel (10-20 ms), which would otherwise be paid by whatever
     * drops the last reference to a Job (jobstore.c) */
    int spare_watches[MD_SPARE_WATCHES];
    int spare_watch_count;
} md_module_state;

md_module_state *md_state_of_module(PyObject *module);
md_module_state *md_state_of_type(PyTypeObject *type);

/* Raises the exception that fits err->code, its message prefixed by context
 * (may be NULL); returns NULL. */
PyObject *md_raise(md_module_state *state, const md_error *err, const char *context);

/* Appends the msgpack encoding of obj (None, bool, int, float, str, bytes,
 * list, tuple, dict with str keys) to out; -1 with an exception set. */
int md_pack_object(PyObject *obj, md_buf *out);
/* Converts a decoded msgpack object; NULL with an exception set. */
PyObject *md_unpack_object(const msgpack_object *obj);
/* flat_pickles(list): see flatpickle.c. */
PyObject *md_flat_pickles(PyObject *module, PyObject *list);
PyObject *md_flat_unpickle_py(PyObject *module, PyObject *arg);
PyObject *md_blob_collector(PyObject *module, PyObject *list);
/* first_bad_kwargs(list): see convert.c. */
PyObject *md_first_bad_kwargs(PyObject *module, PyObject *list);
/* Decodes one msgpack value that must fill bytes exactly. */
PyObject *md_unpack_bytes(md_module_state *state, const uint8_t *data, size_t len);

int md_job_store_add_type(PyObject *module, md_module_state *state);
/* results.c */
int md_result_table_add_type(PyObject *module, md_module_state *state);
/* Takes one authenticated result record into a ResultTable (its type checked
 * by the caller); -1 with an exception set. */
int md_result_table_add(PyObject *table, const md_task_result *r);

PyObject *md_create_job(PyObject *module, PyObject *args, PyObject *kwargs);

/* process.c */
/* Starts `supervisor --job-dir dir --worker worker --daemonize` (with
 * `--pool pool --pool-dir pool_dir --linger linger` when pool is not NULL)
 * and waits for the short-lived parent; 0, or -1 with *err filled (message
 * holds what the supervisor printed).  Call without the GIL. */
int md_spawn_supervisor(const char *supervisor, const char *worker, const char *dir,
                        const char *pool, const char *pool_dir, double linger,
                        md_error *err);
/* Hands the job to the idle warm pool named pool if there is one, else
 * spawns a supervisor that becomes that pool after the job (pool NULL: no
 * pool at all).  Call without the GIL. */
int md_launch_supervisor(const char *supervisor, const char *worker, const char *dir,
                         const char *pool, const char *pool_dir, double linger,
                         md_error *err);
/* pool_digest(parts): hex of the first 16 bytes of SHA-256 over parts and
 * the sorted entries of the C environment, each followed by a NUL. */
PyObject *md_pool_digest(PyObject *module, PyObject *parts);
/* 1 when a process holds dir/supervisor.lock, 0 when none does. */
int md_supervisor_alive(const char *dir, md_error *err);
#endif
