/* mapdeploy-worker: hosts CPython and runs a job's pickled tasks for the
 * supervisor on the other end of a socketpair.  docs/protocol.md has the
 * frames and envelopes; worker.h lists what each file does. */
#include "worker.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define WORKER_ASAN 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__)
#define WORKER_ASAN 1
#endif
#ifdef WORKER_ASAN
#include <sanitizer/lsan_interface.h>
#endif

static int parse_args(int argc, char **argv, int *fd)
{
    for (int i = 1; i < argc; i++) {
        char *end = NULL;
        long value;

        if (strcmp(argv[i], "--fd") != 0 || i + 1 >= argc)
            return -1;
        errno = 0;
        value = strtol(argv[i + 1], &end, 10);
        if (errno != 0 || end == argv[i + 1] || *end != '\0' || value < 0 ||
            value > INT_MAX)
            return -1;
        *fd = (int)value;
        i++;
    }
    return 0;
}

static worker_status read_hello(worker_ctx *ctx)
{
    md_hello hello;
    md_error err;
    worker_status status;

    md_error_clear(&err);
    status = worker_read_frame(ctx);
    if (status != WORKER_OK)
        return status;
    if (md_hello_decode(ctx->frame.data, ctx->frame.len, &hello, &err) < 0) {
        fprintf(stderr, "mapdeploy-worker: bad hello from the supervisor: %s\n",
                err.message);
        return WORKER_REJECT;
    }
    if (hello.job_id.ptr == NULL || hello.job_id.len == 0 ||
        hello.job_id.len > MD_JOB_ID_MAX ||
        memchr(hello.job_id.ptr, '\0', hello.job_id.len) != NULL) {
        fprintf(stderr, "mapdeploy-worker: bad job id in the hello\n");
        return WORKER_REJECT;
    }
    ctx->key = hello.key;
    memcpy(ctx->job_id, hello.job_id.ptr, hello.job_id.len);
    ctx->job_id[hello.job_id.len] = '\0';
    ctx->job_id_len = hello.job_id.len;
    return WORKER_OK;
}

static worker_status read_job(worker_ctx *ctx)
{
    md_envelope env;
    md_error err;
    md_buf swap;
    worker_status status;
    int rc;

    md_error_clear(&err);
    status = worker_read_frame(ctx);
    if (status != WORKER_OK)
        return status;
    /* The job definition borrows its bytes for the whole run: keep them in
     * their own buffer, out of the way of later frames. */
    swap = ctx->job_frame;
    ctx->job_frame = ctx->frame;
    ctx->frame = swap;

    rc = md_envelope_decode(&ctx->key, ctx->job_frame.data, ctx->job_frame.len, &env, &err);
    if (rc == 0)
        rc = md_envelope_expect(&env, MD_KIND_JOB, ctx->job_id, &err);
    if (rc < 0) {
        fprintf(stderr, "mapdeploy-worker: refusing the job envelope: %s\n", err.message);
        return WORKER_REJECT;
    }
    if (md_jobdef_decode(env.payload, env.payload_len, &ctx->jobdef_view, &err) < 0) {
        fprintf(stderr, "mapdeploy-worker: bad job definition: %s\n", err.message);
        return WORKER_REJECT;
    }
    ctx->jobdef = md_jobdef_get(ctx->jobdef_view);
    return WORKER_OK;
}

/* Pickles do not survive a change of minor version, so a mismatch is
 * refused up front with advice rather than failing every task obscurely. */
static worker_status check_version(worker_ctx *ctx)
{
    char mine[32];
    char message[256];
    md_str theirs = ctx->jobdef->python_version;
    int n;

    n = snprintf(mine, sizeof mine, "%d.%d", PY_MAJOR_VERSION, PY_MINOR_VERSION);
    if (n < 0 || (size_t)n >= sizeof mine)
        return WORKER_FATAL;
    if (theirs.ptr != NULL && theirs.len == (size_t)n && memcmp(theirs.ptr, mine, theirs.len) == 0)
        return WORKER_OK;
    if (theirs.ptr == NULL)
        theirs.len = 0;
    if (theirs.len > 32)
        theirs.len = 32;
    n = snprintf(message, sizeof message,
                 "this worker was built for Python %s but the job was submitted from "
                 "Python %.*s; reinstall mapdeploy with the Python that submits jobs",
                 mine, (int)theirs.len, theirs.ptr != NULL ? theirs.ptr : "");
    if (n < 0)
        return WORKER_FATAL;
    fprintf(stderr, "mapdeploy-worker: %s\n", message);
    (void)worker_send_ready(ctx, message);
    return WORKER_FATAL;
}

static void enter_cwd(const md_jobdef *def)
{
    char path[MD_PATH_MAX];

    if (def->cwd.ptr == NULL || def->cwd.len == 0)
        return;
    if (def->cwd.len >= sizeof path || memchr(def->cwd.ptr, '\0', def->cwd.len) != NULL) {
        fprintf(stderr, "mapdeploy-worker: warning: unusable working directory in the job; "
                        "staying where we are\n");
        return;
    }
    memcpy(path, def->cwd.ptr, def->cwd.len);
    path[def->cwd.len] = '\0';
    /* The submitter's directory may be gone or unreadable here; tasks that
     * do not use relative paths can still run, so only warn. */
    if (chdir(path) != 0)
        fprintf(stderr, "mapdeploy-worker: warning: cannot change to %s: %s\n", path,
                strerror(errno));
}

/* The JOB envelope that follows a hello or a switch: read, checked, and
 * its working directory entered. */
static worker_status take_job(worker_ctx *ctx)
{
    worker_status status = read_job(ctx);
    if (status == WORKER_OK)
        status = check_version(ctx);
    if (status == WORKER_OK)
        enter_cwd(ctx->jobdef);
    return status;
}

static worker_status handshake(worker_ctx *ctx)
{
    char error[MD_ERROR_MESSAGE_LEN];
    worker_status status;

    status = read_hello(ctx);
    if (status == WORKER_OK)
        status = take_job(ctx);
    if (status != WORKER_OK)
        return status;
    error[0] = '\0';
    if (worker_python_start(ctx, error, sizeof error) != 0) {
        fprintf(stderr, "mapdeploy-worker: %s\n", error);
        (void)worker_send_ready(ctx, error);
        return WORKER_FATAL;
    }
    worker_load_function(ctx);
    return worker_send_ready(ctx, NULL);
}

/* The supervisor keeps a warm worker for its next job (docs/protocol.md,
 * "Warm workers"): the SWITCH payload is that job's hello, authenticated with
 * the key of the job just served, and the next frame is the new JOB envelope.
 * The interpreter and its imported modules stay; the previous job's function
 * and combiner are dropped, so nothing of one job's pickles reaches the next. */
static worker_status switch_job(worker_ctx *ctx, const md_envelope *env)
{
    char log_path[MD_PATH_MAX];
    md_hello hello;
    md_error err;
    worker_status status;
    int log_fd = -1;

    md_error_clear(&err);
    if (md_hello_decode(env->payload, env->payload_len, &hello, &err) < 0) {
        fprintf(stderr, "mapdeploy-worker: bad switch from the supervisor: %s\n", err.message);
        return WORKER_REJECT;
    }
    if (hello.job_id.ptr == NULL || hello.job_id.len == 0 ||
        hello.job_id.len > MD_JOB_ID_MAX ||
        memchr(hello.job_id.ptr, '\0', hello.job_id.len) != NULL || hello.log.ptr == NULL) {
        fprintf(stderr, "mapdeploy-worker: bad job id or log in a switch\n");
        return WORKER_REJECT;
    }
    memcpy(log_path, hello.log.ptr, hello.log.len);
    log_path[hello.log.len] = '\0';
    worker_flush_python_stdio();
    (void)fflush(NULL);
    log_fd = open(log_path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
    if (log_fd < 0) {
        fprintf(stderr, "mapdeploy-worker: cannot open the next job's log %s: %s\n", log_path,
                strerror(errno));
        return WORKER_FATAL;
    }
    if (dup2(log_fd, STDOUT_FILENO) < 0 || dup2(log_fd, STDERR_FILENO) < 0) {
        fprintf(stderr, "mapdeploy-worker: cannot write to %s: %s\n", log_path,
                strerror(errno));
        close(log_fd);
        return WORKER_FATAL;
    }
    close(log_fd);

    ctx->key = hello.key;
    memcpy(ctx->job_id, hello.job_id.ptr, hello.job_id.len);
    ctx->job_id[hello.job_id.len] = '\0';
    ctx->job_id_len = hello.job_id.len;
    worker_pending_free(ctx);
    worker_failure_clear(&ctx->fn_error);
    worker_failure_clear(&ctx->combiner_error);
    Py_CLEAR(ctx->fn);
    Py_CLEAR(ctx->combiner);
    ctx->combiner_tried = 0;
    md_jobdef_free(ctx->jobdef_view);
    ctx->jobdef_view = NULL;
    ctx->jobdef = NULL;

    status = take_job(ctx);
    if (status != WORKER_OK)
        return status;
    worker_load_function(ctx);
    return worker_send_ready(ctx, NULL);
}

static worker_status serve(worker_ctx *ctx)
{
    md_envelope env;
    md_error err;
    worker_status status;
    int rc;

    for (;;) {
        md_error_clear(&err);
        status = worker_read_frame(ctx);
        if (status != WORKER_OK)
            return status;
        /* Nothing from a frame reaches the unpickler unless its MAC holds. */
        rc = md_envelope_decode(&ctx->key, ctx->frame.data, ctx->frame.len, &env, &err);
        if (rc == MD_EMAC) {
            fprintf(stderr, "mapdeploy-worker: an envelope from the supervisor failed "
                            "authentication (tampered with, or signed with another key); "
                            "exiting without running it: %s\n", err.message);
            return WORKER_REJECT;
        }
        if (rc < 0) {
            fprintf(stderr, "mapdeploy-worker: bad envelope from the supervisor: %s\n",
                    err.message);
            return WORKER_REJECT;
        }
        if (env.kind != MD_KIND_TASKS && env.kind != MD_KIND_COMBINE &&
            env.kind != MD_KIND_SWITCH) {
            fprintf(stderr, "mapdeploy-worker: unexpected %s envelope from the supervisor\n",
                    md_kind_name(env.kind) ? md_kind_name(env.kind) : "unknown");
            return WORKER_REJECT;
        }
        if (md_envelope_expect(&env, env.kind, ctx->job_id, &err) < 0) {
            fprintf(stderr, "mapdeploy-worker: refusing an envelope: %s\n", err.message);
            return WORKER_REJECT;
        }
        if (env.kind == MD_KIND_TASKS)
            status = worker_run_tasks(ctx, &env);
        else if (env.kind == MD_KIND_COMBINE)
            status = worker_run_combine(ctx, &env);
        else
            status = switch_job(ctx, &env);
        if (status != WORKER_OK)
            return status;
    }
}

/* Ends the process without Py_FinalizeEx: finalizing joins every non-daemon
 * thread a task left running and runs user atexit hooks, either of which can
 * hang the worker forever while the supervisor waits for it to exit.  The
 * interpreter holds nothing that must outlive the process once the task
 * results are sent, so flushing the standard streams (the job's logs) is all
 * that is needed before _exit. */
static _Noreturn void finish(worker_ctx *ctx, int code)
{
    if (ctx->python_up) {
        worker_flush_python_stdio();
        worker_python_release(ctx);
    }
    md_jobdef_free(ctx->jobdef_view);
    ctx->jobdef_view = NULL;
    md_buf_free(&ctx->job_frame);
    md_buf_free(&ctx->frame);
    md_buf_free(&ctx->payload);
    md_buf_free(&ctx->out);
    md_buf_free(&ctx->pickle);
    (void)fflush(NULL);
#ifdef WORKER_ASAN
    /* _exit skips LeakSanitizer's exit-time check, so a sanitizer build runs
     * it here, after the worker has released what it owns.  The interpreter
     * is not finalized (see above), so what it still holds is reachable and
     * not reported; what is reported is memory the worker's own C lost.
     * It honours ASAN_OPTIONS=detect_leaks. */
    __lsan_do_leak_check();
#endif
    _exit(code);
}

int main(int argc, char **argv)
{
    worker_ctx ctx;
    worker_status status;
    int flags;
    int code;

    memset(&ctx, 0, sizeof ctx);
    md_buf_init(&ctx.job_frame);
    md_buf_init(&ctx.frame);
    md_buf_init(&ctx.payload);
    md_buf_init(&ctx.out);
    md_buf_init(&ctx.pickle);
    ctx.fd = 3;
    /* getpid is a real system call (glibc caches nothing): once here, not per task. */
    ctx.pid = (int64_t)getpid();

    if (parse_args(argc, argv, &ctx.fd) != 0) {
        fprintf(stderr, "usage: mapdeploy-worker [--fd N]\n");
        finish(&ctx, WORKER_EXIT_USAGE);
    }
    /* A worker outliving its supervisor would hold tasks nobody collects. */
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0)
        fprintf(stderr, "mapdeploy-worker: warning: PR_SET_PDEATHSIG: %s\n", strerror(errno));
    if (getppid() == 1) {
        fprintf(stderr, "mapdeploy-worker: the supervisor is already gone\n");
        finish(&ctx, WORKER_EXIT_FAIL);
    }
    /* As in a plain python3, a write to a closed pipe is an EPIPE error (in
     * a task: BrokenPipeError), not death; our own socket writes report it. */
    if (signal(SIGPIPE, SIG_IGN) == SIG_ERR)
        fprintf(stderr, "mapdeploy-worker: warning: cannot ignore SIGPIPE\n");
    /* Processes that tasks start must not inherit the protocol socket: they
     * could write into it, and would hide the worker's death from the
     * supervisor by keeping the socket open. */
    flags = fcntl(ctx.fd, F_GETFD);
    if (flags < 0 || fcntl(ctx.fd, F_SETFD, flags | FD_CLOEXEC) != 0) {
        fprintf(stderr, "mapdeploy-worker: fd %d is not usable: %s\n", ctx.fd,
                strerror(errno));
        finish(&ctx, WORKER_EXIT_FAIL);
    }

    status = handshake(&ctx);
    if (status == WORKER_OK)
        status = serve(&ctx);
    switch (status) {
    case WORKER_OK:
    case WORKER_EOF:
        code = WORKER_EXIT_EOF;
        break;
    case WORKER_REJECT:
        code = WORKER_EXIT_REJECT;
        break;
    case WORKER_FATAL:
    default:
        code = WORKER_EXIT_FAIL;
        break;
    }
    finish(&ctx, code);
}
