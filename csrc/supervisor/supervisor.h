/*
 * mapdeploy-supervisor: private declarations shared by the files of csrc/supervisor.
 *
 * One process owns one job while it runs (docs/protocol.md, "Supervisor and
 * worker").  All state lives in one sv_ctx; there is no global mutable state
 * because signals arrive through a signalfd instead of handlers.
 */
#ifndef MAPDEPLOY_SUPERVISOR_H
#define MAPDEPLOY_SUPERVISOR_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

#include "mdcore.h"

/* Exit codes of the executable. */
#define SV_EXIT_OK 0
#define SV_EXIT_FAILED 1
#define SV_EXIT_USAGE 2
#define SV_EXIT_LOCKED 3
#define SV_LOCK_WAIT_SECONDS 0.2   /* a job's lock held longer is another supervisor's */

#define SV_MAX_INFLIGHT 2          /* batches in flight per worker */
#define SV_PIPELINE_SECONDS 0.05   /* a second batch goes only behind a shorter one */
#define SV_MAX_BATCH 4096u         /* tasks per batch */
#define SV_BATCH_TARGET_SECONDS 0.005
#define SV_MIN_TASK_SECONDS 1e-7   /* floor of the EWMA: no division by zero */
#define SV_EWMA_WEIGHT 0.3         /* weight of the newest run_time */
#define SV_POLL_MS 100
#define SV_CANCEL_CHECK_SECONDS 0.1
#define SV_SYNC_SECONDS 1.0
#define SV_EOF_GRACE_SECONDS 2.0   /* socket closed but process not gone yet */
#define SV_REAP_SECONDS 1.0        /* at shutdown, before SIGKILL */
#define SV_MAX_READ_FRAME ((size_t)1 << 30)
#define SV_BUDGET_CHECK_SECONDS 0.1 /* how often the fair shares are recomputed */
#define SV_MAX_BUDGET 4096u        /* slot files tried; far above any core count */
#define SV_POOL_NAME_MAX 64u       /* hex digits of a pool name */
#define SV_POOL_STOP 2             /* sv_pool_wait's request: stop */
#define SV_RECYCLE_GROWTH ((int64_t)256 << 20)  /* a worker whose peak memory grew by more
                                                   is not kept warm: a fresh one replaces it */

/* Outcome of the phases run after the job is loaded. */
typedef enum {
    SV_RUN_DONE = 0,      /* every map task (and the combiner) has a result */
    SV_RUN_CANCELED = 1,  /* a signal or <job>/cancel */
    SV_RUN_FAILED = 2     /* the job as a whole failed; message in md_error */
} sv_run_outcome;

typedef enum {
    SV_TASK_PENDING = 0,  /* no final result yet; dispatched from the cursor */
    SV_TASK_DONE = 1,     /* has a final result: the map phase need not run it again */
    SV_TASK_QUEUED = 2    /* no final result; waits in the suspect queue (a retry
                             found in the log on resume), not at the cursor */
} sv_task_state;

typedef struct {
    const uint8_t *ptr;   /* the task's pickle, borrowed from its shard buffer */
    size_t len;
} sv_task;

typedef struct {
    uint64_t first;
    uint64_t count;
    uint64_t answered;    /* results received so far, from first on */
    uint32_t attempt;
    int alone;            /* a probe: nothing else is sent while it runs */
    int is_combine;
    double sent_wall;
    double sent_mono;
} sv_batch;

typedef enum {
    SV_WORKER_FREE = 0,   /* slot unused */
    SV_WORKER_STARTING,   /* hello sent, waiting for READY */
    SV_WORKER_READY
} sv_worker_state;

typedef struct {
    sv_worker_state state;
    unsigned slot;        /* names logs/worker-<slot>.log */
    pid_t pid;
    int fd;               /* -1 once the socket hit EOF or was dropped */
    double eof_mono;      /* when fd was dropped, to bound the wait for exit */
    md_buf in;            /* bytes read, not yet parsed into frames */
    md_buf out;           /* framed bytes queued for the worker */
    size_t out_sent;      /* of which already written: out is compacted only once this
                           * reaches half of it, so a large frame that goes out in many
                           * partial sends is not moved again after each one */
    sv_batch batches[SV_MAX_INFLIGHT];  /* [0] is the oldest */
    size_t nbatches;
    double ewma;          /* seconds per task */
    int have_ewma;
    int slot_fd;          /* the budget slot this worker runs on, locked; -1: none */
    int retiring;         /* over the job's share: sent nothing more, its socket is
                             closed once its batches are answered */
    int ready_due;        /* a warm worker switched to this job: its READY is still to
                             come, though tasks may already have been sent behind the
                             switch (the worker reads them after it answers) */
    int64_t rss_first;    /* peak memory its first result reported, bytes; 0: none yet */
    int64_t rss_last;     /* and its latest result */
} sv_worker;

typedef struct {
    uint64_t index;
    uint32_t attempt;
} sv_suspect;

/* syncer.c: a pool's thread that syncs finished jobs to disk as a group
 * and makes the spare folder of its next job (spare.c).  pending,
 * pending_since, spare_wanted and stop are shared, under lock. */
typedef struct {
    pthread_mutex_t lock;
    pthread_cond_t changed;        /* any shared field changed (CLOCK_MONOTONIC) */
    pthread_t thread;
    int folder_fd;                 /* a folder on the jobs' filesystem */
    int jobs_fd;                   /* the jobs folder, where spares go (-1: none) */
    const char *pool_name;         /* names the spare */
    int pending;                   /* a job ended since the last sync */
    struct timespec pending_since;
    int spare_wanted;
    unsigned spare_workers;        /* worker logs the spare holds (logs/worker-<i>.log) */
    int stop;
    int started;                   /* main thread only */
} sv_syncer;

typedef struct {
    /* command line */
    const char *job_dir;
    const char *worker_path;
    int daemonize;
    const char *pool_name;  /* --pool: keep warm workers for the next job (pool.c) */
    const char *pool_dir;   /* --pool-dir: where <name> holds a lingering pool's pid */
    double linger;          /* --linger: seconds a pool waits for its next job */

    /* the warm pool (pool.c); all unused without --pool */
    int listen_fd;
    int pool_file_fd;
    int stop_fd;            /* a client that asked the pool to stop, answered at exit */
    char job_dir_buf[MD_PATH_MAX];  /* job_dir of the jobs after the first */
    md_key warm_key;        /* what the kept workers know: the last job's key */
    char warm_job_id[MD_JOB_ID_MAX + 1];
    sv_syncer syncer;       /* syncs finished job folders off the main thread */

    int lock_fd;
    int notify_fd;        /* --daemonize pipe to the waiting parent; -1 after */
    int sig_fd;
    int log_fd;           /* results/log, O_APPEND */
    uint64_t log_size;    /* bytes of whole records in the log */

    md_key key;
    char job_id[MD_JOB_ID_MAX + 1];
    md_buf job_bytes;     /* <job>/job, sent to workers verbatim */
    md_jobdef_view *jobdef_view;
    const md_jobdef *jobdef;
    int is_single;

    md_buf *shards;       /* raw shard files; tasks[] points into them */
    size_t shard_count;
    sv_task *tasks;
    uint8_t *task_state;  /* sv_task_state per task */
    uint32_t *next_attempt;  /* per task: attempt number of its next run (failed
                                attempts recorded so far) */
    double task_timeout;  /* seconds; 0: none.  When set, a worker runs one task
                             at a time, so the supervisor knows which task runs
                             and since when */
    uint32_t max_retries;
    unsigned retry_mask;  /* SV_RETRY_* */
    uint64_t task_count;
    uint64_t tasks_done;
    uint64_t cursor;      /* next task index the in-order dispatch looks at */
    uint64_t undispatched;/* pending tasks at or after cursor */

    sv_suspect *suspects; /* FIFO: re-run one per batch */
    size_t suspect_head;
    size_t suspect_len;   /* entries from suspect_head on */
    size_t suspect_cap;

    int needs_combine;    /* a combiner exists and has no Completed result */
    int combine_sent;
    int combine_done;

    sv_worker *workers;
    unsigned num_workers; /* slots */
    unsigned spawned;
    unsigned spawn_limit;

    /* the session-wide worker budget (budget.c); off for definitions without
     * slots_dir, which run num_workers workers as they always did */
    int budget_on;
    char slots_dir[MD_PATH_MAX];
    int slots_fd;         /* the slots folder, O_DIRECTORY */
    char reg_name[sizeof("job-") + MD_JOB_ID_MAX];
    int reg_fd;           /* our registration, locked for our whole life */
    ino_t reg_ino;
    unsigned budget;      /* slots in the session */
    unsigned share;       /* the most workers we may run now (from the last scan) */
    uint64_t demand_published;  /* length of our registration file */
    double last_budget_check;
    int slots_exhausted;  /* no slot was free since the last check */

    double start_time;
    double last_sync_mono;
    int unsynced;
    int folder_durable;   /* sv_make_durable ran for this job */
    double last_cancel_check;

    md_buf scratch;       /* payload encoding */
    md_buf scratch2;      /* envelope encoding */
    const uint8_t **batch_items;  /* SV_MAX_BATCH entries */
    size_t *batch_lens;
    md_task_result *answers;  /* SV_MAX_INFLIGHT * SV_MAX_BATCH entries: the results of
                                 one RESULTS envelope, decoded once, pointing into it */
} sv_ctx;

/* What a failed attempt may be retried for (job definition key retry_on). */
#define SV_RETRY_WORKER_DIED 1u
#define SV_RETRY_TIMEOUT 2u
#define SV_RETRY_EXCEPTION 4u  /* any exception the function raised */
#define SV_RETRY_NAMED 8u      /* exceptions whose class name is listed */

/* main.c */
void sv_report(sv_ctx *ctx, const char *message);

/* daemon.c */
int sv_lock(sv_ctx *ctx, md_error *err);
int sv_redirect_logs(const sv_ctx *ctx, md_error *err);
int sv_daemonize(sv_ctx *ctx, md_error *err);
void sv_notify_started(sv_ctx *ctx);
void sv_notify_failed(sv_ctx *ctx, const char *message);

/* jobload.c */
int sv_load_job(sv_ctx *ctx, md_error *err);
void sv_unload_job(sv_ctx *ctx);

/* resultslog.c */
int sv_log_resume(sv_ctx *ctx, md_error *err);
int sv_log_append(sv_ctx *ctx, const uint8_t *envelope, size_t len, md_error *err);
int sv_log_sync(sv_ctx *ctx, int force, md_error *err);
int sv_log_readback(sv_ctx *ctx, md_buf *bytes, md_task_result *chosen,
                    md_error *err);

/* status.c */
int sv_write_status(sv_ctx *ctx, md_state state, const char *error, md_error *err);
int sv_make_durable(sv_ctx *ctx, md_error *err);
int sv_sync_job_folder(const char *job_dir, md_error *err);
int sv_sync_later(sv_ctx *ctx, md_error *err);

/* syncer.c */
int sv_syncer_start(sv_syncer *s, const char *job_dir, const char *pool_name, md_error *err);
void sv_syncer_mark(sv_syncer *s);
void sv_syncer_want_spare(sv_syncer *s, unsigned workers);
void sv_syncer_stop(sv_syncer *s);

/* workers.c: logs/worker-<slot>.log, what the worker on that slot prints;
 * 0, or -1 when cap is too small. */
int sv_worker_log_name(char *out, size_t cap, unsigned slot);

/* status.c: the temporary file name of this process's Running (running)
 * or final status writes; 0, or -1 when cap is too small. */
int sv_status_tmp_name(char *out, size_t cap, int running);
/* Removes every status temporary in job_dir: the empty ones of the busy pool
 * whose spare folder the job took, or one a crashed supervisor left.  Only
 * with the folder's lock held and before this process writes a status. */
int sv_remove_status_tmp_files(const char *job_dir, md_error *err);

/* spare.c */
void sv_spare_make(int jobs_fd, const char *pool_name, unsigned workers);
void sv_spare_remove(int jobs_fd, const char *pool_name, unsigned workers);

/* workers.c */
int sv_worker_spawn(sv_ctx *ctx, sv_worker *w, md_error *err);
int sv_worker_queue_frame(sv_worker *w, const uint8_t *data, size_t len,
                          md_error *err);
int sv_worker_flush(sv_worker *w);
void sv_worker_drop_socket(sv_worker *w);
void sv_worker_release(sv_worker *w);
unsigned sv_live_workers(const sv_ctx *ctx);
void sv_kill_all_workers(sv_ctx *ctx);
void sv_shutdown_workers(sv_ctx *ctx);
void sv_describe_exit(int wstatus, char *out, size_t out_len);
void sv_record_worker(const sv_ctx *ctx, pid_t pid, unsigned slot);

/* budget.c */
int sv_budget_open(sv_ctx *ctx, md_error *err);
void sv_budget_close(sv_ctx *ctx);
int sv_budget_update(sv_ctx *ctx, uint64_t demand, md_error *err);
int sv_slot_take(sv_ctx *ctx, sv_worker *w, md_error *err);
int sv_budget_others_running(sv_ctx *ctx, md_error *err);

/* pool.c */
int sv_pool_name_ok(const char *name);
unsigned sv_pool_live_workers(const sv_ctx *ctx);
unsigned sv_pool_keep_workers(sv_ctx *ctx);
unsigned sv_pool_prepare(sv_ctx *ctx);
int sv_pool_wait(sv_ctx *ctx, md_error *err);
int sv_pool_fit_workers(sv_ctx *ctx, unsigned wanted, md_error *err);
int sv_pool_switch_workers(sv_ctx *ctx, md_error *err);
void sv_pool_close(sv_ctx *ctx);

/* ready.c */
int sv_ready_error(const uint8_t *payload, size_t len, char *error_out,
                   size_t error_len, int *has_error, md_error *err);

/* schedule.c */
int sv_suspect_push(sv_ctx *ctx, uint64_t index, uint32_t attempt, md_error *err);
uint64_t sv_inflight_tasks(const sv_ctx *ctx);
int sv_dispatch(sv_ctx *ctx, sv_worker *w, md_error *err);
int sv_send_batch(sv_ctx *ctx, sv_worker *w, const sv_batch *batch,
                  const uint8_t *payload, size_t payload_len, md_kind kind,
                  md_error *err);

/* results.c */
int sv_handle_frame(sv_ctx *ctx, sv_worker *w, const uint8_t *frame, size_t len,
                    md_error *err);
int sv_append_worker_died(sv_ctx *ctx, const sv_batch *batch, uint64_t index,
                          pid_t pid, int wstatus, md_error *err);

/* retry.c */
int sv_retry_setup(sv_ctx *ctx, md_error *err);
int sv_should_retry(const sv_ctx *ctx, const md_task_result *r);
int sv_task_ended(sv_ctx *ctx, const md_task_result *r, md_error *err);
int sv_append_failure(sv_ctx *ctx, const sv_batch *batch, uint64_t index, pid_t pid,
                      const char *exc_type, const char *message, md_error *err);
int sv_check_timeouts(sv_ctx *ctx, md_error *err);

/* deaths.c */
int sv_read_worker(sv_ctx *ctx, sv_worker *w, md_error *err);
int sv_reap_workers(sv_ctx *ctx, md_error *err);

/* loop.c */
sv_run_outcome sv_run(sv_ctx *ctx, md_error *err);
int sv_dispatch_all(sv_ctx *ctx, md_error *err);
int sv_read_signals(sv_ctx *ctx);

/* combine.c */
int sv_start_combine(sv_ctx *ctx, sv_worker *w, md_error *err);
int sv_final_outcome(sv_ctx *ctx, md_state *state, char *error, size_t error_len,
                     md_error *err);

#endif
