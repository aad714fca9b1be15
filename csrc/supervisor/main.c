/*
 * mapdeploy-supervisor --job-dir DIR --worker PATH [--daemonize]
 *                      [--pool NAME --pool-dir DIR --linger SECONDS]
 *
 * Owns one job while it runs: loads it, runs the workers, writes the final
 * status.  The order of the steps is the contract with clients: the lock is
 * taken before anything else (it is how they tell the supervisor lives) and
 * the daemonizing parent returns only once the status says Running.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <unistd.h>

#include "supervisor.h"

static void usage(void)
{
    fprintf(stderr,
            "usage: mapdeploy-supervisor --job-dir DIR --worker PATH [--daemonize]\n"
            "                            [--pool NAME --pool-dir DIR --linger SECONDS]\n");
}

static int parse_args(sv_ctx *ctx, int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--job-dir") == 0 && i + 1 < argc) {
            ctx->job_dir = argv[++i];
        } else if (strcmp(argv[i], "--worker") == 0 && i + 1 < argc) {
            ctx->worker_path = argv[++i];
        } else if (strcmp(argv[i], "--daemonize") == 0) {
            ctx->daemonize = 1;
        } else if (strcmp(argv[i], "--pool") == 0 && i + 1 < argc) {
            ctx->pool_name = argv[++i];
        } else if (strcmp(argv[i], "--pool-dir") == 0 && i + 1 < argc) {
            ctx->pool_dir = argv[++i];
        } else if (strcmp(argv[i], "--linger") == 0 && i + 1 < argc) {
            char *end = NULL;
            const char *text = argv[++i];
            errno = 0;
            ctx->linger = strtod(text, &end);
            if (errno != 0 || end == text || *end != '\0' || !(ctx->linger >= 0) ||
                ctx->linger > 86400.0) {
                fprintf(stderr, "mapdeploy-supervisor: --linger takes 0 to 86400 seconds, "
                                "not '%s'\n", text);
                return -1;
            }
        } else {
            fprintf(stderr, "mapdeploy-supervisor: unexpected argument '%s'\n", argv[i]);
            return -1;
        }
    }
    if (ctx->job_dir == NULL || ctx->worker_path == NULL || ctx->job_dir[0] == '\0') {
        return -1;
    }
    if ((ctx->pool_name == NULL) != (ctx->pool_dir == NULL) ||
        (ctx->pool_name != NULL && !sv_pool_name_ok(ctx->pool_name))) {
        fprintf(stderr, "mapdeploy-supervisor: --pool takes 1 to %u hex digits and needs "
                        "--pool-dir\n", SV_POOL_NAME_MAX);
        return -1;
    }
    return 0;
}

/* Descriptors 0-2 must be taken before any socket is made: a worker's socket
 * landing on 0, 1 or 2 would be clobbered by the child's dup2 calls. */
static int ensure_std_fds(void)
{
    for (int fd = 0; fd < 3; fd++) {
        if (fcntl(fd, F_GETFD) >= 0) {
            continue;
        }
        int null_fd = open("/dev/null", O_RDWR);
        if (null_fd < 0) {
            return -1;
        }
        if (null_fd != fd) {
            close(null_fd);
            return -1;
        }
    }
    return 0;
}

/* Signals are taken through a signalfd so that the poll loop sees them in
 * order with everything else and no handler touches shared state.  SIGPIPE
 * is ignored because a worker may die while we write to it; the error shows
 * up as EPIPE and the death through SIGCHLD. */
static int setup_signals(sv_ctx *ctx, md_error *err)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGCHLD);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    if (sigprocmask(SIG_BLOCK, &set, NULL) != 0) {
        return md_fail_errno(err, errno, "sigprocmask");
    }
    if (signal(SIGPIPE, SIG_IGN) == SIG_ERR) {
        return md_fail_errno(err, errno, "ignoring SIGPIPE");
    }
    ctx->sig_fd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
    if (ctx->sig_fd < 0) {
        return md_fail_errno(err, errno, "signalfd");
    }
    return 0;
}

static void ctx_init(sv_ctx *ctx)
{
    memset(ctx, 0, sizeof(*ctx));
    ctx->lock_fd = -1;
    ctx->notify_fd = -1;
    ctx->sig_fd = -1;
    ctx->log_fd = -1;
    ctx->slots_fd = -1;
    ctx->reg_fd = -1;
    ctx->listen_fd = -1;
    ctx->pool_file_fd = -1;
    ctx->stop_fd = -1;
    md_buf_init(&ctx->job_bytes);
    md_buf_init(&ctx->scratch);
    md_buf_init(&ctx->scratch2);
}

static void ctx_free(sv_ctx *ctx)
{
    sv_pool_close(ctx);
    if (ctx->workers != NULL) {
        for (unsigned i = 0; i < ctx->num_workers; i++) {
            sv_worker_release(&ctx->workers[i]);
        }
    }
    free(ctx->workers);
    ctx->workers = NULL;
    sv_budget_close(ctx);
    sv_unload_job(ctx);
    md_buf_free(&ctx->scratch);
    md_buf_free(&ctx->scratch2);
    if (ctx->log_fd >= 0) {
        close(ctx->log_fd);
    }
    if (ctx->sig_fd >= 0) {
        close(ctx->sig_fd);
    }
    if (ctx->notify_fd >= 0) {
        close(ctx->notify_fd);
    }
    /* the lock fd stays open until the process exits: closing it early would
     * tell clients the job is orphaned while we still write its status */
}

void sv_report(sv_ctx *ctx, const char *message)
{
    fprintf(stderr, "mapdeploy-supervisor: %s\n", message);
    fflush(stderr);
    sv_notify_failed(ctx, message);
}

/* Ends the job as Failed with message; the status write may fail too (the
 * disk that filled up the log), in which case stderr is all that is left.
 * The status is written before a daemonizing parent is told, so that its
 * caller finds the job Failed once the parent has exited. */
static int fail_job(sv_ctx *ctx, const char *message)
{
    md_error werr;
    md_error_clear(&werr);
    sv_kill_all_workers(ctx);
    if (ctx->job_id[0] != '\0') {
        if (sv_write_status(ctx, MD_STATE_FAILED, message, &werr) != 0) {
            fprintf(stderr, "mapdeploy-supervisor: could not write the Failed status: %s\n",
                    werr.message);
        } else if (sv_make_durable(ctx, &werr) != 0) {
            /* best effort: the folder may be what failed */
            fprintf(stderr, "mapdeploy-supervisor: could not sync the job folder: %s\n",
                    werr.message);
        }
    }
    sv_report(ctx, message);
    return SV_EXIT_FAILED;
}

static unsigned choose_num_workers(const sv_ctx *ctx)
{
    uint64_t to_run = ctx->task_count - ctx->tasks_done;
    uint64_t n = ctx->jobdef->num_workers;
    if (n == 0) {
        long cpus = sysconf(_SC_NPROCESSORS_ONLN);
        n = cpus > 0 ? (uint64_t)cpus : 1;
    }
    if (n > to_run) {
        n = to_run;
    }
    if (n == 0 && ctx->needs_combine) {
        n = 1;
    }
    return (unsigned)n;
}

static int allocate_workers(sv_ctx *ctx, md_error *err)
{
    unsigned wanted = choose_num_workers(ctx);
    /* bounds a fork loop when every worker dies at once: each death of a
     * probe fails one task, so tasks + a margin per slot always suffices */
    uint64_t limit = 4ull * wanted + ctx->task_count + 1;
    ctx->spawn_limit = limit > 1000000u ? 1000000u : (unsigned)limit;
    if (ctx->workers != NULL) {
        /* a pool's next job: its warm workers come first */
        int rc = sv_pool_fit_workers(ctx, wanted, err);
        if (rc == 0) {
            rc = sv_pool_switch_workers(ctx, err);
        }
        return rc;
    }
    ctx->num_workers = wanted;
    if (ctx->num_workers == 0) {
        return 0;
    }
    ctx->workers = calloc(ctx->num_workers, sizeof(*ctx->workers));
    if (ctx->workers == NULL) {
        return md_fail(err, MD_ENOMEM, "out of memory for %u workers", ctx->num_workers);
    }
    for (unsigned i = 0; i < ctx->num_workers; i++) {
        ctx->workers[i].fd = -1;
        ctx->workers[i].slot = i;
        ctx->workers[i].slot_fd = -1;
        md_buf_init(&ctx->workers[i].in);
        md_buf_init(&ctx->workers[i].out);
    }
    return 0;
}

static int cancel_requested(const sv_ctx *ctx)
{
    char path[MD_PATH_MAX];
    if (md_path_join(path, sizeof(path), ctx->job_dir, MD_STORE_CANCEL, NULL) != 0) {
        return 0;
    }
    return access(path, F_OK) == 0;
}

/* A missing or non-executable worker would otherwise show up as "exited
 * with code 127" from the child; checked before Running so that a
 * --daemonize caller gets the reason. */
static int check_worker(const sv_ctx *ctx, md_error *err)
{
    if (access(ctx->worker_path, X_OK) != 0) {
        return md_fail_errno(err, errno, "cannot run the worker %s", ctx->worker_path);
    }
    return 0;
}

static int finish(sv_ctx *ctx, sv_run_outcome outcome, md_error *err)
{
    md_error werr;
    md_error_clear(&werr);
    /* the job needs no more workers: other jobs may count without it at once */
    sv_budget_close(ctx);
    if (outcome == SV_RUN_FAILED) {
        return fail_job(ctx, err->message);
    }
    if (outcome == SV_RUN_CANCELED) {
        sv_kill_all_workers(ctx);
        if (sv_write_status(ctx, MD_STATE_CANCELED, NULL, &werr) != 0 ||
            sv_make_durable(ctx, &werr) != 0) {
            return fail_job(ctx, werr.message);
        }
        return SV_EXIT_OK;
    }
    md_state state = MD_STATE_COMPLETED;
    char error[MD_ERROR_MESSAGE_LEN] = "";
    if (ctx->pool_name != NULL && ctx->linger > 0) {
        (void)sv_pool_prepare(ctx);
    } else {
        sv_shutdown_workers(ctx);
    }
    if (sv_final_outcome(ctx, &state, error, sizeof(error), &werr) != 0) {
        return fail_job(ctx, werr.message);
    }
    /* the client learns the end from the status; the syncs come after it,
     * in a pool with those of the jobs around it */
    if (sv_write_status(ctx, state, error[0] != '\0' ? error : NULL, &werr) != 0 ||
        (sv_pool_live_workers(ctx) > 0 ? sv_sync_later(ctx, &werr)
                                       : sv_make_durable(ctx, &werr)) != 0) {
        return fail_job(ctx, werr.message);
    }
    return SV_EXIT_OK;
}

static int run_job(sv_ctx *ctx)
{
    md_error err;
    md_error_clear(&err);
    if (sv_load_job(ctx, &err) != 0 || check_worker(ctx, &err) != 0) {
        return fail_job(ctx, err.message);
    }
    if (cancel_requested(ctx)) {
        if (sv_write_status(ctx, MD_STATE_CANCELED, NULL, &err) != 0) {
            return fail_job(ctx, err.message);
        }
        sv_notify_started(ctx);
        return SV_EXIT_OK;
    }
    /* the log is read before Running is written so that num_workers in the
     * status already accounts for the tasks a previous run finished */
    if (sv_log_resume(ctx, &err) != 0 || allocate_workers(ctx, &err) != 0) {
        return fail_job(ctx, err.message);
    }
    ctx->start_time = md_wall_time();
    /* A pool's warm workers hold their slots already: their first tasks go
     * out now and run while the job registers and is marked Running, which
     * are file-system operations that cost more than a short task. */
    if (sv_dispatch_all(ctx, &err) != 0 || sv_budget_open(ctx, &err) != 0) {
        return fail_job(ctx, err.message);
    }
    if (sv_write_status(ctx, MD_STATE_RUNNING, NULL, &err) != 0) {
        return fail_job(ctx, err.message);
    }
    sv_notify_started(ctx);
    /* the client that started this job took the spare, if there was one:
     * the next job's is made while this one runs */
    sv_syncer_want_spare(&ctx->syncer, ctx->num_workers);
    sv_run_outcome outcome = sv_run(ctx, &err);
    return finish(ctx, outcome, &err);
}

int main(int argc, char **argv)
{
    sv_ctx ctx;
    md_error err;
    int code = SV_EXIT_FAILED;
    ctx_init(&ctx);
    md_error_clear(&err);

    if (parse_args(&ctx, argc, argv) != 0) {
        usage();
        return SV_EXIT_USAGE;
    }
    if (ensure_std_fds() != 0) {
        return SV_EXIT_FAILED;
    }
    int rc = sv_lock(&ctx, &err);
    if (rc != 0) {
        fprintf(stderr, "mapdeploy-supervisor: %s\n", err.message);
        code = rc == MD_EEXIST ? SV_EXIT_LOCKED : SV_EXIT_USAGE;
        goto cleanup;
    }
    if (ctx.daemonize && sv_daemonize(&ctx, &err) != 0) {
        sv_report(&ctx, err.message);
        code = SV_EXIT_FAILED;
        goto cleanup;
    }
    if (setup_signals(&ctx, &err) != 0) {
        sv_report(&ctx, err.message);
        code = SV_EXIT_FAILED;
        goto cleanup;
    }
    /* Before the first job only: a pool's later jobs run in the spare
     * folders it made, whose status temporaries it made to fill. */
    if (sv_remove_status_tmp_files(ctx.job_dir, &err) != 0) {
        /* empty files in the job folder: worth a line in the log, not the job */
        fprintf(stderr, "mapdeploy-supervisor: %s\n", err.message);
        md_error_clear(&err);
    }
    code = run_job(&ctx);
    while (code == SV_EXIT_OK && ctx.pool_name != NULL && ctx.linger > 0 &&
           sv_pool_live_workers(&ctx) > 0) {
        md_error_clear(&err);
        int taken = sv_pool_wait(&ctx, &err);
        if (taken < 0) {
            fprintf(stderr, "mapdeploy-supervisor: the pool stops: %s\n", err.message);
        }
        if (taken != 1) {
            break;
        }
        code = run_job(&ctx);
    }

cleanup:
    ctx_free(&ctx);
    return code;
}
