/*
 * mapdeploy-worker: private header shared by the worker's files.
 *
 *   main.c    arguments, handshake (hello, job, ready), the frame loop, exit
 *   io.c      frames and envelopes on the protocol socket, the READY payload
 *   pyhost.c  interpreter start-up, imports, loading pickled callables
 *   run.c     running tasks and the combiner, turning exceptions into results
 *   capture.c sys.stdout/sys.stderr writers that keep what each task prints
 *
 * Exit codes: 0 the supervisor closed the socket; 1 the worker cannot serve
 * the job (version mismatch, Python failed to start, socket error); 2 the
 * supervisor sent something unauthenticated or malformed; 64 bad arguments.
 */
#ifndef MAPDEPLOY_WORKER_H
#define MAPDEPLOY_WORKER_H

/* Python.h must come before any system header (it sets feature macros). */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stddef.h>
#include <stdint.h>

#include "mdcore.h"

#define WORKER_EXIT_EOF 0
#define WORKER_EXIT_FAIL 1
#define WORKER_EXIT_REJECT 2
#define WORKER_EXIT_USAGE 64

/* At most this much of what one task prints is kept in its result (the
 * worker log keeps everything). */
#define WORKER_OUTPUT_CAP ((size_t)64 * 1024)

/* Results are sent at least this often while a batch runs. */
#define WORKER_FLUSH_INTERVAL 0.1

/* Outcome of a step of the worker; anything but WORKER_OK ends the process. */
typedef enum {
    WORKER_OK = 0,
    WORKER_EOF,     /* the supervisor closed the socket: exit 0 */
    WORKER_FATAL,   /* I/O or internal failure: exit 1 */
    WORKER_REJECT   /* unauthenticated or malformed input: exit 2 */
} worker_status;

/* Why a task failed, as UTF-8 bytes objects (exc_traceback may be NULL). */
typedef struct {
    PyObject *exc_type;
    PyObject *exc_message;
    PyObject *exc_traceback;
} worker_failure;

/* What a result waiting to be sent owns.  The matching md_task_result's
 * pointers are filled only when the results are encoded, from these. */
typedef struct {
    PyObject *value;          /* bytes: the pickled return value, or NULL */
    worker_failure failure;   /* all NULL on success */
    PyObject *output;         /* bytes: what the task printed (UTF-8), or NULL */
} worker_result_refs;

/* What the running task printed so far, at most WORKER_OUTPUT_CAP bytes. */
typedef struct {
    char *data;
    size_t len;
    size_t cap;
    size_t written;           /* bytes printed, kept or not */
} worker_capture;

typedef struct {
    int fd;                           /* the protocol socket */
    int64_t pid;                      /* this process: the worker never forks */
    md_key key;
    char job_id[MD_JOB_ID_MAX + 1];   /* NUL-terminated copy from the hello */
    size_t job_id_len;

    md_buf job_frame;                 /* JOB envelope: the jobdef view borrows it */
    md_jobdef_view *jobdef_view;
    const md_jobdef *jobdef;

    md_buf frame;                     /* the frame being handled */
    md_buf payload;                   /* scratch for payload encoding */
    md_buf out;                       /* scratch for envelope encoding */
    md_buf pickle;                    /* scratch for flat pickles of return values */

    int python_up;                    /* the interpreter runs and we hold the GIL */
    PyObject *pickle_loads;
    PyObject *pickle_dumps;
    PyObject *cloudpickle_dumps;
    PyObject *format_exception;
    PyObject *empty_tuple;
    PyObject *protocol_kwargs;        /* {"protocol": 5} for pickle.dumps */

    PyObject *fn;                     /* the job's function, NULL if it did not load */
    worker_failure fn_error;          /* why it did not load */
    int combiner_tried;
    PyObject *combiner;
    worker_failure combiner_error;

    /* Results of the running batch not yet sent: two parallel arrays, so
     * that the md_task_result one can be handed to md_results_encode. */
    md_task_result *pending;
    worker_result_refs *pending_refs;
    size_t pending_len;
    size_t pending_cap;
    worker_capture capture;           /* the running task's output */
    PyObject *capture_stdout;         /* the writers installed as sys.stdout/stderr */
    PyObject *capture_stderr;
    PyObject *sys_dict;               /* sys.__dict__, and the interned names looked up */
    PyObject *name_stdout;            /* in it for every task: PySys_GetObject made and */
    PyObject *name_stderr;            /* hashed a new str per call */
    uint32_t attempt;                 /* of the envelope being answered */
    double last_send;                 /* monotonic time of the last RESULTS */
    double wall_minus_mono;           /* wall clock - monotonic clock, sampled per batch:
                                         a task's start_time without a second clock read */
    double last_task_end;             /* monotonic time the last task returned */
} worker_ctx;

/* io.c */
worker_status worker_read_frame(worker_ctx *ctx);
worker_status worker_send_envelope(worker_ctx *ctx, md_kind kind, uint64_t first,
                                   uint64_t count, uint32_t attempt,
                                   const uint8_t *payload, size_t payload_len);
worker_status worker_send_ready(worker_ctx *ctx, const char *error);

/* pyhost.c */
/* Starts the interpreter for the job; on failure writes why into error. */
int worker_python_start(worker_ctx *ctx, char *error, size_t error_len);
/* Unpickles the job's function (or remembers why it could not). */
void worker_load_function(worker_ctx *ctx);
/* Unpickles the combiner the first time it is asked for. */
void worker_load_combiner(worker_ctx *ctx);
/* Releases every Python object held by ctx (keeps the interpreter). */
void worker_python_release(worker_ctx *ctx);
/* 1 when `module` can be imported from the job's sys.path (without importing it). */
int worker_module_available(const char *module);
/* Peak resident memory of this process so far, in bytes (0 if unknown). */
int64_t worker_max_rss_bytes(void);
/* cloudpickle.dumps, imported on first call; NULL with a Python error set. */
/* traceback.format_exception, imported on first use (borrowed; NULL with an
 * exception set when it cannot be imported). */
PyObject *worker_format_exception(worker_ctx *ctx);
PyObject *worker_cloudpickle_dumps(worker_ctx *ctx);
/* Flushes sys.stdout and sys.stderr, ignoring errors. */
void worker_flush_python_stdio(void);

/* capture.c */
/* Replaces sys.stdout and sys.stderr by capturing writers; -1 with a Python error. */
int worker_capture_install(worker_ctx *ctx);
/* Starts a task's capture (and puts the writers back if a task replaced them). */
void worker_capture_begin(worker_ctx *ctx);
/* The task's output as new UTF-8 bytes (with a note when cut), or NULL when it printed nothing. */
PyObject *worker_capture_take(worker_ctx *ctx);
void worker_capture_free(worker_ctx *ctx);

/* run.c */
/* Fills out from exc; prefix (may be NULL) is put before the message.
 * Returns 0, or -1 when out of memory.  Leaves no exception set. */
int worker_failure_from_exception(worker_ctx *ctx, PyObject *exc, const char *prefix,
                                  worker_failure *out);
/* The same for the exception being raised (which it clears). */
int worker_failure_from_error(worker_ctx *ctx, const char *prefix,
                              worker_failure *out);
int worker_failure_copy(const worker_failure *from, worker_failure *to);
void worker_failure_clear(worker_failure *failure);
worker_status worker_run_tasks(worker_ctx *ctx, const md_envelope *env);
worker_status worker_run_combine(worker_ctx *ctx, const md_envelope *env);
void worker_pending_free(worker_ctx *ctx);

#endif
