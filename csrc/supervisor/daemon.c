/*
 * The supervisor lock and --daemonize.
 *
 * Clients tell whether a job's supervisor lives by probing supervisor.lock
 * with flock(LOCK_SH|LOCK_NB), so the exclusive lock is held on an O_CLOEXEC
 * descriptor (workers must not keep it alive after we die) for the whole life
 * of the process, across the daemonizing fork.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "supervisor.h"

#define NOTIFY_STARTED 'R'
#define NOTIFY_FAILED 'E'

int sv_lock(sv_ctx *ctx, md_error *err)
{
    char path[MD_PATH_MAX];
    struct stat st;
    if (stat(ctx->job_dir, &st) != 0) {
        return md_fail_errno(err, errno, "cannot use job folder %s", ctx->job_dir);
    }
    if (!S_ISDIR(st.st_mode)) {
        return md_fail(err, MD_EARG, "job folder %s is not a directory", ctx->job_dir);
    }
    int rc = md_path_join(path, sizeof(path), ctx->job_dir, MD_STORE_LOCK, err);
    if (rc != 0) {
        return rc;
    }
    ctx->lock_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (ctx->lock_fd < 0) {
        return md_fail_errno(err, errno, "cannot open %s", path);
    }
    /* A client asking whether a supervisor runs (md_supervisor_alive) holds
     * a shared lock on the file for microseconds, and a spare job folder has
     * the file before the job starts; only a lock held for longer than
     * SV_LOCK_WAIT_SECONDS is another supervisor. */
    double give_up = md_monotonic_time() + SV_LOCK_WAIT_SECONDS;
    while (flock(ctx->lock_fd, LOCK_EX | LOCK_NB) != 0) {
        if (errno == EINTR) {
            continue;
        }
        if (errno != EWOULDBLOCK) {
            return md_fail_errno(err, errno, "cannot lock %s", path);
        }
        if (md_monotonic_time() >= give_up) {
            /* MD_EEXIST tells main to exit 3: the documented "already running" */
            return md_fail(err, MD_EEXIST,
                           "another supervisor is already running job %s", ctx->job_dir);
        }
        struct timespec pause = {0, 1000 * 1000};
        (void)nanosleep(&pause, NULL);
    }
    return 0;
}

static int redirect_fd(int fd, const char *path, int flags, md_error *err)
{
    int src = open(path, flags | O_CLOEXEC, 0600);
    if (src < 0) {
        return md_fail_errno(err, errno, "cannot open %s", path);
    }
    int rc = 0;
    if (dup2(src, fd) < 0) {
        rc = md_fail_errno(err, errno, "cannot redirect to %s", path);
    }
    close(src);
    return rc;
}

/* stdout and stderr go to the job's logs/supervisor.log (again for each job
 * a pool takes). */
int sv_redirect_logs(const sv_ctx *ctx, md_error *err)
{
    char path[MD_PATH_MAX];
    int rc = md_store_mkdir(ctx->job_dir, MD_STORE_LOGS_DIR, 0700, 1, err);
    if (rc != 0) {
        return rc;
    }
    rc = md_path_join(path, sizeof(path), ctx->job_dir, MD_STORE_SUPERVISOR_LOG, err);
    if (rc != 0) {
        return rc;
    }
    rc = redirect_fd(STDIN_FILENO, "/dev/null", O_RDONLY, err);
    if (rc == 0) {
        rc = redirect_fd(STDOUT_FILENO, path, O_WRONLY | O_APPEND | O_CREAT, err);
    }
    if (rc == 0 && dup2(STDOUT_FILENO, STDERR_FILENO) < 0) {
        rc = md_fail_errno(err, errno, "cannot redirect stderr");
    }
    return rc;
}

/* The parent: exits 0 once the child says the job is Running, 1 with the
 * child's message if it failed before that. */
static void wait_for_child(int read_fd, const char *job_dir) __attribute__((noreturn));
static void wait_for_child(int read_fd, const char *job_dir)
{
    char msg[MD_ERROR_MESSAGE_LEN + 2];
    size_t len = 0;
    while (len < sizeof(msg) - 1) {
        ssize_t n = read(read_fd, msg + len, sizeof(msg) - 1 - len);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            break;
        }
        len += (size_t)n;
        if (msg[0] == NOTIFY_STARTED) {
            _exit(SV_EXIT_OK);
        }
    }
    msg[len] = '\0';
    if (len > 1 && msg[0] == NOTIFY_FAILED) {
        fprintf(stderr, "mapdeploy-supervisor: %s\n", msg + 1);
    } else {
        fprintf(stderr,
                "mapdeploy-supervisor: the supervisor exited before it started job %s; "
                "see %s/logs/supervisor.log\n",
                job_dir, job_dir);
    }
    fflush(stderr);
    _exit(SV_EXIT_FAILED);
}

int sv_daemonize(sv_ctx *ctx, md_error *err)
{
    int fds[2] = {-1, -1};
    if (pipe2(fds, O_CLOEXEC) != 0) {
        return md_fail_errno(err, errno, "pipe");
    }
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        int saved = errno;
        close(fds[0]);
        close(fds[1]);
        return md_fail_errno(err, saved, "fork");
    }
    if (pid > 0) {
        close(fds[1]);
        wait_for_child(fds[0], ctx->job_dir);
    }
    close(fds[0]);
    ctx->notify_fd = fds[1];
    if (setsid() < 0) {
        return md_fail_errno(err, errno, "setsid");
    }
    return sv_redirect_logs(ctx, err);
}

void sv_notify_started(sv_ctx *ctx)
{
    if (ctx->notify_fd < 0) {
        return;
    }
    char byte = NOTIFY_STARTED;
    /* the parent only needs the byte or EOF: a failed write means it is gone */
    while (write(ctx->notify_fd, &byte, 1) < 0 && errno == EINTR) {
    }
    close(ctx->notify_fd);
    ctx->notify_fd = -1;
}

void sv_notify_failed(sv_ctx *ctx, const char *message)
{
    if (ctx->notify_fd < 0) {
        return;
    }
    char msg[MD_ERROR_MESSAGE_LEN + 2];
    int n = snprintf(msg, sizeof(msg), "%c%s", NOTIFY_FAILED, message);
    size_t len = n < 0 ? 0 : ((size_t)n < sizeof(msg) ? (size_t)n : sizeof(msg) - 1);
    size_t off = 0;
    while (off < len) {
        ssize_t w = write(ctx->notify_fd, msg + off, len - off);
        if (w < 0 && errno == EINTR) {
            continue;
        }
        if (w <= 0) {
            break;
        }
        off += (size_t)w;
    }
    close(ctx->notify_fd);
    ctx->notify_fd = -1;
}
