/*
 * The warm pool: a supervisor that keeps its workers after a job and takes
 * the next job of the same Python environment (docs/architecture.md, "Warm
 * workers").
 *
 * A client names the environment's pool (a hash of everything the workers'
 * interpreter depends on, computed by the Python side) and connects to the
 * abstract Unix socket "mapdeploy-pool-<name>" before it would spawn a
 * supervisor.  An idle pool accepts one request at a time:
 *
 *   'J' u32be len, path   run the job in that folder; the answer is the
 *                         --daemonize protocol on the same socket: 'R' once
 *                         the job is Running, 'E' message if it failed
 *                         first, 'N' if the pool declines (the client then
 *                         spawns a supervisor as without a pool)
 *   'S'                   stop: the pool ends its workers and answers 'S'; the
 *                         socket then closes when the pool process exits
 *
 * Only processes of our own user are served (SO_PEERCRED); abstract sockets
 * have no file permissions.  While a job runs the socket is closed, so a
 * second client finds no pool and spawns its own supervisor.  <pools>/<name>
 * holds the pool's pid under flock for as long as it lingers, which is how
 * `mapdeploy pools` lists them and how one pool per name is kept.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "supervisor.h"

#define POOL_SOCKET_PREFIX "mapdeploy-pool-"
#define POOL_REQUEST_SECONDS 1.0   /* a connected client sends its request at once */
#define POOL_TICK_MS 100

int sv_pool_name_ok(const char *name)
{
    size_t len = strnlen(name, SV_POOL_NAME_MAX + 1);
    if (len == 0 || len > SV_POOL_NAME_MAX) {
        return 0;
    }
    for (size_t i = 0; i < len; i++) {
        char ch = name[i];
        if (!((ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f'))) {
            return 0;
        }
    }
    return 1;
}

static int pool_address(const sv_ctx *ctx, struct sockaddr_un *addr, socklen_t *addr_len)
{
    memset(addr, 0, sizeof(*addr));
    addr->sun_family = AF_UNIX;
    /* sun_path[0] stays NUL: the abstract namespace */
    int n = snprintf(addr->sun_path + 1, sizeof(addr->sun_path) - 1, POOL_SOCKET_PREFIX "%s",
                     ctx->pool_name);
    if (n < 0 || (size_t)n >= sizeof(addr->sun_path) - 1) {
        return -1;
    }
    *addr_len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + (size_t)n);
    return 0;
}

/* Takes <pools>/<name> and writes our pid into it; 0 when another pool of
 * the same name holds it (we then do not linger). */
static int take_pool_file(sv_ctx *ctx, md_error *err)
{
    if (ctx->pool_file_fd >= 0) {
        return 1;
    }
    if (mkdir(ctx->pool_dir, 0700) != 0 && errno != EEXIST) {
        return md_fail_errno(err, errno, "cannot create the pools folder %s", ctx->pool_dir);
    }
    char path[MD_PATH_MAX];
    int rc = md_path_join(path, sizeof(path), ctx->pool_dir, ctx->pool_name, err);
    if (rc != 0) {
        return rc;
    }
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) {
        return md_fail_errno(err, errno, "cannot open %s", path);
    }
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        int saved = errno;
        close(fd);
        if (saved == EWOULDBLOCK) {
            return 0;
        }
        return md_fail_errno(err, saved, "cannot lock %s", path);
    }
    char line[32];
    int n = snprintf(line, sizeof(line), "%d\n", (int)getpid());
    if (n < 0 || ftruncate(fd, 0) != 0 || pwrite(fd, line, (size_t)n, 0) != (ssize_t)n) {
        int saved = errno;
        close(fd);
        return md_fail_errno(err, saved, "cannot write %s", path);
    }
    ctx->pool_file_fd = fd;
    return 1;
}

/* 1: listening; 0: another process has the name (it serves the environment). */
static int pool_listen(sv_ctx *ctx, md_error *err)
{
    if (ctx->listen_fd >= 0) {
        return 1;
    }
    struct sockaddr_un addr;
    socklen_t addr_len = 0;
    if (pool_address(ctx, &addr, &addr_len) != 0) {
        return md_fail(err, MD_ETOOBIG, "pool name too long");
    }
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) {
        return md_fail_errno(err, errno, "socket");
    }
    if (bind(fd, (const struct sockaddr *)&addr, addr_len) != 0) {
        int saved = errno;
        close(fd);
        if (saved == EADDRINUSE) {
            return 0;
        }
        return md_fail_errno(err, saved, "cannot listen as pool %s", ctx->pool_name);
    }
    if (listen(fd, 16) != 0) {
        int saved = errno;
        close(fd);
        return md_fail_errno(err, saved, "listen");
    }
    ctx->listen_fd = fd;
    return 1;
}

static void pool_unlisten(sv_ctx *ctx)
{
    if (ctx->listen_fd >= 0) {
        close(ctx->listen_fd);
        ctx->listen_fd = -1;
    }
}

static void reply(int fd, const char *bytes, size_t len)
{
    size_t off = 0;
    while (off < len) {
        ssize_t n = send(fd, bytes + off, len - off, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            return;  /* the client is gone: nothing to tell */
        }
        off += (size_t)n;
    }
}

/* Reads a whole request (md_pool_request_parse) into buf before the
 * deadline; -1 on EOF, error, time out or a malformed request. */
static int read_request(int fd, md_buf *buf, md_pool_request *request, double deadline)
{
    for (;;) {
        md_error err;
        md_error_clear(&err);
        int parsed = md_pool_request_parse(buf->data, buf->len, request, &err);
        if (parsed != 0) {
            return parsed == 1 ? 0 : -1;
        }
        double left = deadline - md_monotonic_time();
        if (left <= 0) {
            return -1;
        }
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        int ready = poll(&pfd, 1, (int)(left * 1000) + 1);
        if (ready < 0 && errno == EINTR) {
            continue;
        }
        if (ready <= 0) {
            return -1;
        }
        uint8_t chunk[512];
        ssize_t n = recv(fd, chunk, sizeof(chunk), MSG_DONTWAIT);
        if (n < 0 && (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK)) {
            continue;
        }
        if (n <= 0 || buf->len + (size_t)n > 5 + MD_PATH_MAX ||
            md_buf_append(buf, chunk, (size_t)n) != MD_OK) {
            return -1;
        }
    }
}

static int same_user(int fd)
{
    struct ucred cred;
    socklen_t len = sizeof(cred);
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0 || len != sizeof(cred)) {
        return 0;
    }
    return cred.uid == getuid();
}

unsigned sv_pool_live_workers(const sv_ctx *ctx)
{
    return ctx->workers == NULL ? 0u : sv_live_workers(ctx);
}

/* At the end of a job that completed: the idle workers stay for the next
 * job, every other one (starting, retiring, or with its socket gone) is
 * stopped now, and so is one whose peak memory grew by SV_RECYCLE_GROWTH
 * since its first task (what a leak in user code looks like; the next job
 * starts a fresh worker instead).  Returns how many stay. */
unsigned sv_pool_keep_workers(sv_ctx *ctx)
{
    unsigned kept = 0;
    for (unsigned i = 0; i < ctx->num_workers; i++) {
        sv_worker *w = &ctx->workers[i];
        if (w->state == SV_WORKER_FREE) {
            continue;
        }
        if (w->state == SV_WORKER_READY && w->fd >= 0 && w->nbatches == 0 && !w->retiring &&
            !w->ready_due && w->in.len == 0 && w->out.len == w->out_sent &&
            w->rss_last - w->rss_first <= SV_RECYCLE_GROWTH) {
            kept++;
            continue;
        }
        if (w->pid > 0) {
            (void)kill(w->pid, SIGKILL);
            while (waitpid(w->pid, NULL, 0) < 0 && errno == EINTR) {
            }
        }
        sv_worker_release(w);
    }
    if (kept > 0) {
        ctx->warm_key = ctx->key;
        memcpy(ctx->warm_job_id, ctx->job_id, sizeof(ctx->warm_job_id));
    }
    return kept;
}

/* Everything of the finished job goes; the workers, signals and pool stay. */
static void forget_job(sv_ctx *ctx)
{
    sv_unload_job(ctx);
    if (ctx->log_fd >= 0) {
        close(ctx->log_fd);
        ctx->log_fd = -1;
    }
    if (ctx->lock_fd >= 0) {
        close(ctx->lock_fd);
        ctx->lock_fd = -1;
    }
    if (ctx->notify_fd >= 0) {
        close(ctx->notify_fd);
        ctx->notify_fd = -1;
    }
    ctx->log_size = 0;
    memset(ctx->job_id, 0, sizeof(ctx->job_id));
    ctx->is_single = 0;
    ctx->task_timeout = 0;
    ctx->max_retries = 0;
    ctx->retry_mask = 0;
    ctx->task_count = 0;
    ctx->tasks_done = 0;
    ctx->cursor = 0;
    ctx->undispatched = 0;
    ctx->suspect_head = 0;
    ctx->suspect_len = 0;
    ctx->suspect_cap = 0;
    ctx->needs_combine = 0;
    ctx->combine_sent = 0;
    ctx->combine_done = 0;
    ctx->spawned = 0;
    ctx->spawn_limit = 0;
    ctx->share = 0;
    ctx->demand_published = 0;
    ctx->slots_exhausted = 0;
    ctx->start_time = 0;
    ctx->last_sync_mono = 0;
    ctx->unsynced = 0;
    ctx->folder_durable = 0;
    ctx->last_cancel_check = 0;
}

/* Idle workers that died or wrote to us (they have nothing to say between
 * jobs) are let go. */
static void reap_idle(sv_ctx *ctx)
{
    for (;;) {
        pid_t pid = waitpid(-1, NULL, WNOHANG);
        if (pid < 0 && errno == EINTR) {
            continue;
        }
        if (pid <= 0) {
            return;
        }
        for (unsigned i = 0; i < ctx->num_workers; i++) {
            if (ctx->workers[i].state != SV_WORKER_FREE && ctx->workers[i].pid == pid) {
                sv_worker_release(&ctx->workers[i]);
                break;
            }
        }
    }
}

/* A request on an accepted connection.  Returns 1 when a job was taken
 * (ctx now names it, its lock is held and the connection is the notify fd),
 * 0 to go on waiting, SV_POOL_STOP to stop. */
static int serve_request(sv_ctx *ctx, int conn)
{
    md_buf buf;
    md_pool_request request;
    int rc = 0;
    md_buf_init(&buf);
    if (!same_user(conn) ||
        read_request(conn, &buf, &request, md_monotonic_time() + POOL_REQUEST_SECONDS) != 0) {
        goto cleanup;
    }
    if (request.op == MD_POOL_STOP) {
        ctx->stop_fd = conn;
        rc = SV_POOL_STOP;
        goto cleanup;
    }
    memcpy(ctx->job_dir_buf, request.path.ptr, request.path.len);
    ctx->job_dir_buf[request.path.len] = '\0';
    ctx->job_dir = ctx->job_dir_buf;
    md_error why;  /* not reported: the client spawns a supervisor that reports it */
    md_error_clear(&why);
    if (sv_lock(ctx, &why) != 0) {
        /* most likely another supervisor has it; the client's own spawn
         * reports that as it always did */
        if (ctx->lock_fd >= 0) {
            close(ctx->lock_fd);
            ctx->lock_fd = -1;
        }
        reply(conn, "N", 1);
        goto cleanup;
    }
    if (sv_redirect_logs(ctx, &why) != 0) {
        /* the job's logs folder is unusable: a supervisor of its own reports that */
        close(ctx->lock_fd);
        ctx->lock_fd = -1;
        reply(conn, "N", 1);
        goto cleanup;
    }
    ctx->notify_fd = conn;
    rc = 1;

cleanup:
    md_buf_free(&buf);
    return rc;
}

/* Called before the final status of a completed job is written, so that a
 * client that reads it and submits its next job at once, or asks the pools
 * to stop, finds this pool listening (its request waits in the backlog
 * while the job's files are synced).  Returns how many workers stay: none
 * when another pool serves the environment already. */
unsigned sv_pool_prepare(sv_ctx *ctx)
{
    md_error err;
    md_error_clear(&err);
    unsigned kept = sv_pool_keep_workers(ctx);
    int rc = kept > 0 ? take_pool_file(ctx, &err) : 0;
    if (rc > 0) {
        rc = pool_listen(ctx, &err);
    }
    if (rc > 0) {
        return kept;
    }
    if (rc < 0) {
        fprintf(stderr, "mapdeploy-supervisor: not keeping the workers: %s\n", err.message);
    }
    sv_shutdown_workers(ctx);
    return 0;
}

int sv_pool_wait(sv_ctx *ctx, md_error *err)
{
    forget_job(ctx);
    int rc = take_pool_file(ctx, err);
    if (rc <= 0) {
        return rc;
    }
    double deadline = md_monotonic_time() + ctx->linger;
    double next_budget_check = 0;
    struct pollfd *pfds = calloc((size_t)ctx->num_workers + 2, sizeof(*pfds));
    sv_worker **owners = calloc((size_t)ctx->num_workers + 2, sizeof(*owners));
    if (pfds == NULL || owners == NULL) {
        rc = md_fail(err, MD_ENOMEM, "out of memory");
        goto cleanup;
    }
    rc = pool_listen(ctx, err);
    if (rc <= 0) {
        goto cleanup;
    }
    for (;;) {
        reap_idle(ctx);
        double now = md_monotonic_time();
        if (sv_pool_live_workers(ctx) == 0 || now >= deadline) {
            rc = 0;
            goto cleanup;
        }
        if (now >= next_budget_check) {
            /* idle workers hold session slots: a job of another environment
             * that wants them gets them at once, we just go */
            next_budget_check = now + SV_BUDGET_CHECK_SECONDS;
            int others = sv_budget_others_running(ctx, err);
            if (others != 0) {
                rc = others < 0 ? others : 0;
                goto cleanup;
            }
        }
        size_t n = 0;
        pfds[n].fd = ctx->sig_fd;
        pfds[n].events = POLLIN;
        owners[n++] = NULL;
        pfds[n].fd = ctx->listen_fd;
        pfds[n].events = POLLIN;
        owners[n++] = NULL;
        for (unsigned i = 0; i < ctx->num_workers; i++) {
            sv_worker *w = &ctx->workers[i];
            if (w->state != SV_WORKER_FREE && w->fd >= 0) {
                pfds[n].fd = w->fd;
                pfds[n].events = POLLIN;
                owners[n++] = w;
            }
        }
        double left_ms = (deadline - now) * 1000.0;
        int timeout = left_ms < POOL_TICK_MS ? (int)left_ms + 1 : POOL_TICK_MS;
        int ready = poll(pfds, (nfds_t)n, timeout);
        if (ready < 0 && errno != EINTR) {
            rc = md_fail_errno(err, errno, "poll");
            goto cleanup;
        }
        if (ready <= 0) {
            continue;
        }
        if ((pfds[0].revents & POLLIN) && sv_read_signals(ctx)) {
            rc = 0;
            goto cleanup;
        }
        for (size_t i = 2; i < n; i++) {
            if (pfds[i].revents != 0 && owners[i]->pid > 0) {
                (void)kill(owners[i]->pid, SIGKILL);
                sv_worker_drop_socket(owners[i]);
            }
        }
        if (pfds[1].revents & POLLIN) {
            int conn = accept4(ctx->listen_fd, NULL, NULL, SOCK_CLOEXEC);
            if (conn < 0) {
                continue;
            }
            int taken = serve_request(ctx, conn);
            if (taken == 1 || taken == SV_POOL_STOP) {
                /* conn now belongs to ctx (notify_fd or stop_fd) */
                rc = taken == 1 ? 1 : 0;
                goto cleanup;
            }
            close(conn);
        }
    }

cleanup:
    /* while a job runs nobody must wait on a socket that is not served */
    pool_unlisten(ctx);
    free(pfds);
    free(owners);
    return rc;
}

/* Makes the workers array fit the next job: kept workers first, none over
 * the job's count, each with the slot number (log name) of its index. */
int sv_pool_fit_workers(sv_ctx *ctx, unsigned wanted, md_error *err)
{
    unsigned live = 0;
    for (unsigned i = 0; i < ctx->num_workers; i++) {
        sv_worker *w = &ctx->workers[i];
        if (w->state == SV_WORKER_FREE) {
            md_buf_free(&w->in);
            md_buf_free(&w->out);
            continue;
        }
        if (live >= wanted) {
            (void)kill(w->pid, SIGKILL);
            while (waitpid(w->pid, NULL, 0) < 0 && errno == EINTR) {
            }
            sv_worker_release(w);
            continue;
        }
        if (live != i) {
            ctx->workers[live] = *w;
            memset(w, 0, sizeof(*w));
        }
        ctx->workers[live].slot = live;
        live++;
    }
    size_t count = wanted > 0 ? wanted : 1;
    sv_worker *grown = realloc(ctx->workers, count * sizeof(*grown));
    if (grown == NULL) {
        return md_fail(err, MD_ENOMEM, "out of memory for %u workers", wanted);
    }
    ctx->workers = grown;
    for (unsigned i = live; i < count; i++) {
        memset(&ctx->workers[i], 0, sizeof(ctx->workers[i]));
        ctx->workers[i].fd = -1;
        ctx->workers[i].slot = i;
        ctx->workers[i].slot_fd = -1;
        md_buf_init(&ctx->workers[i].in);
        md_buf_init(&ctx->workers[i].out);
    }
    ctx->num_workers = wanted;
    return 0;
}

/* Tells each kept worker about the job just loaded: a SWITCH under the key
 * it knows, then the job itself, as a new worker gets them after its hello.
 * The worker stays dispatchable: its first batch goes out right behind. */
int sv_pool_switch_workers(sv_ctx *ctx, md_error *err)
{
    for (unsigned i = 0; i < ctx->num_workers; i++) {
        sv_worker *w = &ctx->workers[i];
        if (w->state != SV_WORKER_READY || w->fd < 0) {
            continue;
        }
        char name[64];
        char log_path[MD_PATH_MAX];
        if (sv_worker_log_name(name, sizeof(name), w->slot) != 0) {
            return md_fail(err, MD_ETOOBIG, "worker log name too long");
        }
        int rc = md_path_join(log_path, sizeof(log_path), ctx->job_dir, name, err);
        if (rc != 0) {
            return rc;
        }
        md_hello hello;
        memset(&hello, 0, sizeof(hello));
        hello.key = ctx->key;
        hello.job_id.ptr = ctx->job_id;
        hello.job_id.len = strlen(ctx->job_id);
        hello.log.ptr = log_path;
        hello.log.len = strlen(log_path);
        md_buf_clear(&ctx->scratch);
        rc = md_hello_encode(&hello, &ctx->scratch, err);
        if (rc != 0) {
            return rc;
        }
        md_envelope env;
        memset(&env, 0, sizeof(env));
        env.kind = MD_KIND_SWITCH;
        env.job_id = ctx->warm_job_id;
        env.job_id_len = strlen(ctx->warm_job_id);
        env.payload = ctx->scratch.data;
        env.payload_len = ctx->scratch.len;
        md_buf_clear(&ctx->scratch2);
        rc = md_envelope_encode(&ctx->warm_key, &env, &ctx->scratch2, err);
        if (rc == 0) {
            rc = sv_worker_queue_frame(w, ctx->scratch2.data, ctx->scratch2.len, err);
        }
        if (rc == 0) {
            rc = sv_worker_queue_frame(w, ctx->job_bytes.data, ctx->job_bytes.len, err);
        }
        if (rc != 0) {
            return rc;
        }
        sv_record_worker(ctx, w->pid, w->slot);
        /* tasks may follow at once: the worker answers READY before it reads
         * them, and the supervisor checks that READY first (ready_due) */
        w->ready_due = 1;
        w->have_ewma = 0;
        w->ewma = 0;
        w->retiring = 0;
    }
    return 0;
}

/* The end of the pool: workers stopped and reaped, then a stopper (if one
 * asked) is told, so that it can count on no process of ours being left. */
void sv_pool_close(sv_ctx *ctx)
{
    pool_unlisten(ctx);
    if (ctx->workers != NULL) {
        sv_shutdown_workers(ctx);
    }
    sv_syncer_stop(&ctx->syncer);  /* every finished job is on disk before we exit */
    if (ctx->pool_file_fd >= 0) {
        /* the name is removed while we still hold it, as budget.c does with
         * its registrations; a failure leaves a file whose lock is free,
         * which the listing skips */
        char path[MD_PATH_MAX];
        if (md_path_join(path, sizeof(path), ctx->pool_dir, ctx->pool_name, NULL) == 0) {
            (void)unlink(path);
        }
        close(ctx->pool_file_fd);
        ctx->pool_file_fd = -1;
    }
    if (ctx->stop_fd >= 0) {
        /* left open: the stopper reads on to EOF, which comes when this
         * process has exited */
        reply(ctx->stop_fd, "S", 1);
    }
}
