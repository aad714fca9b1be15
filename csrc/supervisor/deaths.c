/*
 * Reading from workers and handling their deaths.
 *
 * A death is handled when the process is reaped, not at EOF, because the
 * WorkerDied message names the signal or exit code.  Before that the socket
 * is drained: everything a dead worker wrote is still buffered in it, and
 * those results must count before its unanswered tasks are judged.
 */
#include <errno.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/wait.h>

#include "supervisor.h"

#define READ_CHUNK 65536u

static int parse_frames(sv_ctx *ctx, sv_worker *w, md_error *err)
{
    size_t off = 0;
    int rc = 0;
    md_error inner;
    md_error_clear(&inner);
    while (w->fd >= 0) {
        const uint8_t *frame = NULL;
        size_t frame_len = 0;
        size_t consumed = 0;
        int got = md_frame_parse(w->in.data + off, w->in.len - off, SV_MAX_READ_FRAME, &frame,
                                 &frame_len, &consumed, &inner);
        if (got == 0) {
            break;
        }
        if (got < 0) {
            fprintf(stderr, "mapdeploy-supervisor: worker pid %d sent a bad frame: %s\n",
                    (int)w->pid, inner.message);
            sv_worker_drop_socket(w);
            break;
        }
        rc = sv_handle_frame(ctx, w, frame, frame_len, err);
        if (rc != 0) {
            break;
        }
        off += consumed;
    }
    md_buf_consume(&w->in, off < w->in.len ? off : w->in.len);
    return rc;
}

int sv_read_worker(sv_ctx *ctx, sv_worker *w, md_error *err)
{
    while (w->fd >= 0) {
        if (md_buf_reserve(&w->in, READ_CHUNK) != 0) {
            return md_fail(err, MD_ENOMEM, "out of memory reading from a worker");
        }
        ssize_t n = recv(w->fd, w->in.data + w->in.len, w->in.cap - w->in.len, MSG_DONTWAIT);
        if (n > 0) {
            w->in.len += (size_t)n;
            int rc = parse_frames(ctx, w, err);
            if (rc != 0) {
                return rc;
            }
            continue;
        }
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            break;
        }
        /* EOF or a reset: the worker is exiting; SIGCHLD will say how */
        sv_worker_drop_socket(w);
    }
    return 0;
}

static int requeue_unanswered(sv_ctx *ctx, sv_worker *w, md_error *err)
{
    for (size_t b = 0; b < w->nbatches; b++) {
        const sv_batch *batch = &w->batches[b];
        for (uint64_t i = batch->answered; i < batch->count; i++) {
            /* not a recorded attempt: the task may never have started */
            int rc = sv_suspect_push(ctx, batch->first + i, batch->attempt, err);
            if (rc != 0) {
                return rc;
            }
        }
    }
    return 0;
}

/* One unanswered task in a batch of one was run alone: it is what killed the
 * worker (or was running when it died), so it fails.  Anything else is
 * ambiguous and is re-run one task at a time. */
static int judge_unanswered(sv_ctx *ctx, sv_worker *w, pid_t pid, int wstatus,
                            md_error *err)
{
    uint64_t unanswered = 0;
    const sv_batch *last = NULL;
    for (size_t b = 0; b < w->nbatches; b++) {
        uint64_t left = w->batches[b].count - w->batches[b].answered;
        unanswered += left;
        if (left > 0) {
            last = &w->batches[b];
        }
    }
    if (unanswered == 0) {
        return 0;
    }
    if (unanswered == 1 && last->count == 1) {
        return sv_append_worker_died(ctx, last, last->first, pid, wstatus, err);
    }
    return requeue_unanswered(ctx, w, err);
}

static int handle_death(sv_ctx *ctx, sv_worker *w, int wstatus, md_error *err)
{
    char how[128];
    pid_t pid = w->pid;
    /* reaped: the pid may be reused from now on, so nothing may signal it */
    w->pid = 0;
    int rc = sv_read_worker(ctx, w, err);
    sv_worker_drop_socket(w);
    if (rc == 0 && w->state == SV_WORKER_STARTING) {
        sv_describe_exit(wstatus, how, sizeof(how));
        rc = md_fail(err, MD_EIO, "worker could not start: %s; see %s/logs/worker-%u.log",
                     how, ctx->job_dir, w->slot);
    } else if (rc == 0) {
        rc = judge_unanswered(ctx, w, pid, wstatus, err);
    }
    sv_worker_release(w);
    return rc;
}

int sv_reap_workers(sv_ctx *ctx, md_error *err)
{
    for (;;) {
        int wstatus = 0;
        pid_t pid = waitpid(-1, &wstatus, WNOHANG);
        if (pid < 0 && errno == EINTR) {
            continue;
        }
        if (pid <= 0) {
            return 0;
        }
        for (unsigned i = 0; i < ctx->num_workers; i++) {
            sv_worker *w = &ctx->workers[i];
            if (w->state != SV_WORKER_FREE && w->pid == pid) {
                int rc = handle_death(ctx, w, wstatus, err);
                if (rc != 0) {
                    return rc;
                }
                break;
            }
        }
    }
}
