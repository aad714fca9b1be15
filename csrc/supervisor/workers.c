/*
 * Worker processes: starting one, writing frames to it, stopping them all.
 *
 * Writes go through a per-worker output buffer flushed with non-blocking
 * send(): a blocking write of a large batch while the worker is blocked
 * writing a large batch of results to us would deadlock both processes.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "supervisor.h"

#define CHILD_FAILED 127

/* Runs in the forked child: only async-signal-safe calls until execv. */
static void exec_worker(const char *worker, int sock, int null_fd, int log_fd,
                        pid_t parent, uint64_t memory_limit) __attribute__((noreturn));
static void exec_worker(const char *worker, int sock, int null_fd, int log_fd,
                        pid_t parent, uint64_t memory_limit)
{
    char arg0[] = "mapdeploy-worker";
    char arg1[] = "--fd";
    char arg2[] = "3";
    char *argv[] = {arg0, arg1, arg2, NULL};
    sigset_t none;
    sigemptyset(&none);
    /* the blocked mask and ignored SIGPIPE would survive exec */
    if (sigprocmask(SIG_SETMASK, &none, NULL) != 0 || signal(SIGPIPE, SIG_DFL) == SIG_ERR) {
        _exit(CHILD_FAILED);
    }
    /* out of the terminal's process group: Ctrl-C is the supervisor's to act
     * on (cancel), not something each worker should see as KeyboardInterrupt */
    if (setpgid(0, 0) != 0 || prctl(PR_SET_PDEATHSIG, SIGKILL) != 0) {
        _exit(CHILD_FAILED);
    }
    /* the parent may have died before PR_SET_PDEATHSIG took effect */
    if (getppid() != parent) {
        _exit(CHILD_FAILED);
    }
    if (dup2(null_fd, STDIN_FILENO) < 0 || dup2(log_fd, STDOUT_FILENO) < 0 ||
        dup2(log_fd, STDERR_FILENO) < 0) {
        _exit(CHILD_FAILED);
    }
    /* dup2 onto itself would leave FD_CLOEXEC set */
    if (sock == 3 ? fcntl(3, F_SETFD, 0) != 0 : dup2(sock, 3) < 0) {
        _exit(CHILD_FAILED);
    }
    /* The job's worker_memory_limit: a task that allocates without end gets
     * MemoryError (or, failing that, kills only its worker) instead of
     * pushing the machine into swap or the OOM killer onto another process. */
    if (memory_limit > 0) {
        struct rlimit limit;
        limit.rlim_cur = memory_limit >= (uint64_t)RLIM_INFINITY ? RLIM_INFINITY : (rlim_t)memory_limit;
        limit.rlim_max = limit.rlim_cur;
        if (setrlimit(RLIMIT_AS, &limit) != 0) {
            _exit(CHILD_FAILED);
        }
    }
    execv(worker, argv);
    _exit(CHILD_FAILED);
}

int sv_worker_log_name(char *out, size_t cap, unsigned slot)
{
    int n = snprintf(out, cap, "%s/worker-%u.log", MD_STORE_LOGS_DIR, slot);
    return n > 0 && (size_t)n < cap ? 0 : -1;
}

static int open_worker_log(const sv_ctx *ctx, unsigned slot, md_error *err)
{
    char name[64];
    char path[MD_PATH_MAX];
    if (sv_worker_log_name(name, sizeof(name), slot) != 0) {
        return md_fail(err, MD_ETOOBIG, "worker log name too long");
    }
    int rc = md_path_join(path, sizeof(path), ctx->job_dir, name, err);
    if (rc != 0) {
        return rc;
    }
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) {
        return md_fail_errno(err, errno, "cannot open %s", path);
    }
    return fd;
}

static int send_hello(sv_ctx *ctx, sv_worker *w, md_error *err)
{
    md_hello hello;
    memset(&hello, 0, sizeof(hello));
    hello.key = ctx->key;
    hello.job_id.ptr = ctx->job_id;
    hello.job_id.len = strlen(ctx->job_id);
    md_buf_clear(&ctx->scratch);
    int rc = md_hello_encode(&hello, &ctx->scratch, err);
    if (rc == 0) {
        rc = sv_worker_queue_frame(w, ctx->scratch.data, ctx->scratch.len, err);
    }
    if (rc == 0) {
        rc = sv_worker_queue_frame(w, ctx->job_bytes.data, ctx->job_bytes.len, err);
    }
    return rc;
}

/* logs/workers: one line "<pid> <slot>" per worker started, so that a
 * result's worker_pid tells which logs/worker-<slot>.log holds what its task
 * printed (get_metrics(detailed=True)).  Best effort: it only helps to find
 * a log, so a failed write is reported and the job goes on. */
void sv_record_worker(const sv_ctx *ctx, pid_t pid, unsigned slot)
{
    char path[MD_PATH_MAX];
    char line[64];
    if (md_path_join(path, sizeof(path), ctx->job_dir, MD_STORE_WORKER_TABLE, NULL) != 0) {
        return;
    }
    int n = snprintf(line, sizeof(line), "%d %u\n", (int)pid, slot);
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0 || n <= 0 || write(fd, line, (size_t)n) != (ssize_t)n) {
        fprintf(stderr, "mapdeploy-supervisor: could not record worker pid %d in %s\n",
                (int)pid, path);
    }
    if (fd >= 0) {
        close(fd);
    }
}

int sv_worker_spawn(sv_ctx *ctx, sv_worker *w, md_error *err)
{
    int log_fd = -1;
    int null_fd = -1;
    int sv[2] = {-1, -1};
    int rc = 0;

    log_fd = open_worker_log(ctx, w->slot, err);
    if (log_fd < 0) {
        rc = log_fd;
        goto cleanup;
    }
    null_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (null_fd < 0) {
        rc = md_fail_errno(err, errno, "cannot open /dev/null");
        goto cleanup;
    }
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
        rc = md_fail_errno(err, errno, "socketpair");
        goto cleanup;
    }
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0) {
        rc = md_fail_errno(err, errno, "cannot start a worker: fork");
        goto cleanup;
    }
    if (pid == 0) {
        exec_worker(ctx->worker_path, sv[1], null_fd, log_fd, parent,
                    ctx->jobdef->worker_memory_limit);
    }
    ctx->spawned++;
    sv_record_worker(ctx, pid, w->slot);
    w->state = SV_WORKER_STARTING;
    w->pid = pid;
    w->fd = sv[0];
    sv[0] = -1;
    w->eof_mono = 0;
    w->nbatches = 0;
    w->have_ewma = 0;
    w->ewma = 0;
    w->retiring = 0;
    w->rss_first = 0;
    w->rss_last = 0;
    w->ready_due = 0;
    md_buf_clear(&w->in);
    md_buf_clear(&w->out);
    w->out_sent = 0;
    rc = send_hello(ctx, w, err);

cleanup:
    if (sv[0] >= 0) {
        close(sv[0]);
    }
    if (sv[1] >= 0) {
        close(sv[1]);
    }
    if (null_fd >= 0) {
        close(null_fd);
    }
    if (log_fd >= 0) {
        close(log_fd);
    }
    return rc;
}

int sv_worker_queue_frame(sv_worker *w, const uint8_t *data, size_t len, md_error *err)
{
    if (len > MD_FRAME_MAX - 1) {
        return md_fail(err, MD_ETOOBIG, "a frame of %zu bytes is over the limit", len);
    }
    uint8_t header[4];
    md_put_be32(header, (uint32_t)len);
    if (md_buf_append(&w->out, header, sizeof(header)) != 0 ||
        md_buf_append(&w->out, data, len) != 0) {
        return md_fail(err, MD_ENOMEM, "out of memory queueing %zu bytes for a worker", len);
    }
    return sv_worker_flush(w);
}

int sv_worker_flush(sv_worker *w)
{
    while (w->fd >= 0 && w->out_sent < w->out.len) {
        ssize_t n = send(w->fd, w->out.data + w->out_sent, w->out.len - w->out_sent,
                         MSG_DONTWAIT | MSG_NOSIGNAL);
        if (n > 0) {
            w->out_sent += (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            break;
        }
        /* the worker is gone; keep the socket open so that the results it
         * sent before dying are still read, and let SIGCHLD report the death */
        md_buf_clear(&w->out);
        w->out_sent = 0;
    }
    if (w->out_sent == w->out.len) {
        md_buf_clear(&w->out);
        w->out_sent = 0;
    } else if (w->out_sent >= w->out.len / 2) {
        /* moves fewer bytes than were sent since the last move: linear overall */
        md_buf_consume(&w->out, w->out_sent);
        w->out_sent = 0;
    }
    return 0;
}

void sv_worker_drop_socket(sv_worker *w)
{
    if (w->fd >= 0) {
        close(w->fd);
        w->fd = -1;
        w->eof_mono = md_monotonic_time();
    }
    md_buf_clear(&w->out);
    w->out_sent = 0;
}

/* Only called once the worker's process is reaped (or never started), so
 * giving its slot back here never lets the session run more processes than
 * slots. */
void sv_worker_release(sv_worker *w)
{
    sv_worker_drop_socket(w);
    if (w->slot_fd >= 0) {
        close(w->slot_fd);
        w->slot_fd = -1;
    }
    w->retiring = 0;
    md_buf_free(&w->in);
    md_buf_free(&w->out);
    w->out_sent = 0;
    w->state = SV_WORKER_FREE;
    w->pid = 0;
    w->nbatches = 0;
}

unsigned sv_live_workers(const sv_ctx *ctx)
{
    unsigned n = 0;
    for (unsigned i = 0; i < ctx->num_workers; i++) {
        n += ctx->workers[i].state != SV_WORKER_FREE;
    }
    return n;
}

static void reap_blocking(pid_t pid)
{
    while (waitpid(pid, NULL, 0) < 0 && errno == EINTR) {
    }
}

void sv_kill_all_workers(sv_ctx *ctx)
{
    for (unsigned i = 0; i < ctx->num_workers; i++) {
        sv_worker *w = &ctx->workers[i];
        if (w->pid > 0) {
            (void)kill(w->pid, SIGKILL);
            reap_blocking(w->pid);
        }
        sv_worker_release(w);
    }
}

/* Workers exit when their socket reaches EOF; one that does not within
 * SV_REAP_SECONDS is killed, so that no worker outlives the supervisor. */
void sv_shutdown_workers(sv_ctx *ctx)
{
    for (unsigned i = 0; i < ctx->num_workers; i++) {
        sv_worker *w = &ctx->workers[i];
        /* A worker still starting its interpreter has run nothing; waiting
         * for it to notice EOF would delay the end of short jobs by its
         * whole start-up. */
        if (w->state == SV_WORKER_STARTING && w->pid > 0) {
            (void)kill(w->pid, SIGKILL);
        }
        sv_worker_drop_socket(w);
    }
    double deadline = md_monotonic_time() + SV_REAP_SECONDS;
    for (;;) {
        unsigned left = 0;
        for (unsigned i = 0; i < ctx->num_workers; i++) {
            sv_worker *w = &ctx->workers[i];
            if (w->pid > 0 && waitpid(w->pid, NULL, WNOHANG) == 0) {
                left++;
            } else {
                sv_worker_release(w);
            }
        }
        if (left == 0 || md_monotonic_time() >= deadline) {
            break;
        }
        struct timespec ts = {0, 1000 * 1000};
        (void)nanosleep(&ts, NULL);
    }
    sv_kill_all_workers(ctx);
}

void sv_describe_exit(int wstatus, char *out, size_t out_len)
{
    if (WIFSIGNALED(wstatus)) {
        int sig = WTERMSIG(wstatus);
        const char *abbrev = sigabbrev_np(sig);
        (void)snprintf(out, out_len, "killed by signal %d (SIG%s)", sig,
                       abbrev != NULL ? abbrev : "?");
    } else if (WIFEXITED(wstatus)) {
        (void)snprintf(out, out_len, "exited with code %d", WEXITSTATUS(wstatus));
    } else {
        (void)snprintf(out, out_len, "stopped (wait status %d)", wstatus);
    }
}
