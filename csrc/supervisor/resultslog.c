/*
 * The job's append-only results log (docs/protocol.md, "Results log").
 *
 * Only the supervisor appends.  A result is written with write(2) before the
 * scheduler counts it, which is enough to survive our own crash; fdatasync
 * runs at most once a second (and at the end) because syncing every small
 * batch would make short tasks disk-bound.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "supervisor.h"

typedef int (*record_visitor)(sv_ctx *ctx, void *vctx, const md_task_result *r);

typedef struct {
    sv_ctx *ctx;
    void *vctx;
    record_visitor visit;
} result_visit;

static int visit_result(void *vctx, const md_task_result *r)
{
    result_visit *v = vctx;
    if (r->task_index > v->ctx->task_count) {
        return MD_EFORMAT;
    }
    return v->visit(v->ctx, v->vctx, r);
}

/* Walks every whole record of bytes; *whole_len receives where the last whole
 * record ends (the rest is a torn tail). */
static int walk_log(sv_ctx *ctx, const md_buf *bytes, record_visitor visit, void *vctx,
                    size_t *whole_len, md_error *err)
{
    size_t off = 0;
    md_error inner;
    md_error_clear(&inner);
    for (;;) {
        const uint8_t *record = NULL;
        size_t record_len = 0;
        size_t consumed = 0;
        int rc = md_log_parse(bytes->data + off, bytes->len - off, &record, &record_len,
                              &consumed, &inner);
        if (rc == 0) {
            break;
        }
        if (rc < 0) {
            return md_fail(err, rc, "the results log is corrupt at byte %zu: %s", off,
                           inner.message);
        }
        md_envelope env;
        rc = md_envelope_decode(&ctx->key, record, record_len, &env, &inner);
        if (rc == 0) {
            rc = md_envelope_expect(&env, MD_KIND_RESULTS, ctx->job_id, &inner);
        }
        result_visit rv = {ctx, vctx, visit};
        if (rc == 0) {
            rc = md_results_decode(env.payload, env.payload_len, visit_result, &rv, NULL,
                                   &inner);
        }
        if (rc != 0) {
            return md_fail(err, rc,
                           "the results log record at byte %zu failed its integrity check: %s",
                           off, rc == MD_EFORMAT && inner.message[0] == '\0'
                                    ? "task index out of range" : inner.message);
        }
        off += consumed;
    }
    *whole_len = off;
    return 0;
}

/* A task with a Completed result, or a failure with no retry left, is done
 * and does not run again: a resumed job runs only the tasks that have no
 * final result (docs/architecture.md, "Resume").  A failure with a retry
 * left is queued at its next attempt once the whole log is read. */
static int mark_resumed(sv_ctx *ctx, void *vctx, const md_task_result *r)
{
    (void)vctx;
    if (r->task_index == ctx->task_count) {
        if (r->status == MD_TASK_COMPLETED) {
            ctx->needs_combine = 0;
        }
        return 0;
    }
    uint8_t *state = &ctx->task_state[r->task_index];
    if (*state == SV_TASK_DONE) {
        return 0;
    }
    if (*state == SV_TASK_PENDING) {
        ctx->undispatched--;
    }
    if (r->status == MD_TASK_COMPLETED || !sv_should_retry(ctx, r)) {
        *state = SV_TASK_DONE;
        ctx->tasks_done++;
    } else {
        *state = SV_TASK_QUEUED;
        if (ctx->next_attempt[r->task_index] < r->attempt + 1) {
            ctx->next_attempt[r->task_index] = r->attempt + 1;
        }
    }
    return 0;
}

static int queue_resumed_retries(sv_ctx *ctx, md_error *err)
{
    for (uint64_t i = 0; i < ctx->task_count; i++) {
        if (ctx->task_state[i] == SV_TASK_QUEUED) {
            int rc = sv_suspect_push(ctx, i, ctx->next_attempt[i], err);
            if (rc != 0) {
                return rc;
            }
        }
    }
    return 0;
}

static int log_path(const sv_ctx *ctx, char *path, size_t path_len, md_error *err)
{
    return md_path_join(path, path_len, ctx->job_dir, MD_STORE_RESULTS_LOG, err);
}

static int truncate_tail(const char *path, size_t whole_len, md_error *err)
{
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0) {
        return md_fail_errno(err, errno, "cannot open %s", path);
    }
    int rc = 0;
    if (ftruncate(fd, (off_t)whole_len) != 0) {
        rc = md_fail_errno(err, errno, "cannot cut the torn tail of %s", path);
    } else if (fsync(fd) != 0) {
        rc = md_fail_errno(err, errno, "fsync %s", path);
    }
    close(fd);
    return rc;
}

int sv_log_resume(sv_ctx *ctx, md_error *err)
{
    char path[MD_PATH_MAX];
    md_buf bytes;
    size_t whole_len = 0;
    md_buf_init(&bytes);
    int rc = md_store_mkdir(ctx->job_dir, MD_STORE_RESULTS_DIR, 0700, 1, err);
    if (rc == 0) {
        rc = md_store_mkdir(ctx->job_dir, MD_STORE_LOGS_DIR, 0700, 1, err);
    }
    if (rc == 0) {
        rc = log_path(ctx, path, sizeof(path), err);
    }
    if (rc != 0) {
        goto cleanup;
    }
    rc = md_store_read_from(path, 0, &bytes, err);
    if (rc == MD_ENOENT) {
        rc = 0;
        md_error_clear(err);
    } else if (rc == 0) {
        rc = walk_log(ctx, &bytes, mark_resumed, NULL, &whole_len, err);
        if (rc == 0) {
            rc = queue_resumed_retries(ctx, err);
        }
        if (rc == 0 && whole_len < bytes.len) {
            rc = truncate_tail(path, whole_len, err);
        }
    }
    if (rc != 0) {
        goto cleanup;
    }
    ctx->log_fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
    if (ctx->log_fd < 0) {
        rc = md_fail_errno(err, errno, "cannot open the results log %s", path);
        goto cleanup;
    }
    ctx->log_size = whole_len;
    ctx->last_sync_mono = md_monotonic_time();

cleanup:
    md_buf_free(&bytes);
    return rc;
}

int sv_log_sync(sv_ctx *ctx, int force, md_error *err)
{
    if (!ctx->unsynced || ctx->log_fd < 0) {
        return 0;
    }
    double now = md_monotonic_time();
    if (!force && now - ctx->last_sync_mono < SV_SYNC_SECONDS) {
        return 0;
    }
    if (fdatasync(ctx->log_fd) != 0) {
        return md_fail_errno(err, errno, "cannot sync the results log");
    }
    ctx->unsynced = 0;
    ctx->last_sync_mono = now;
    return 0;
}

int sv_log_append(sv_ctx *ctx, const uint8_t *envelope, size_t len, md_error *err)
{
    md_error inner;
    md_error_clear(&inner);
    int rc = md_log_append(ctx->log_fd, envelope, len, &inner);
    if (rc != 0) {
        /* a partial record is a torn tail readers skip, but cutting it off
         * gives back the space the Failed status needs on a full disk */
        (void)ftruncate(ctx->log_fd, (off_t)ctx->log_size);
        return md_fail(err, rc, "cannot append to the results log: %s", inner.message);
    }
    ctx->log_size += 8u + len;
    ctx->unsynced = 1;
    return sv_log_sync(ctx, 0, err);
}

static int choose_result(sv_ctx *ctx, void *vctx, const md_task_result *r)
{
    (void)ctx;
    md_task_result *chosen = vctx;
    md_task_result *slot = &chosen[r->task_index];
    /* the first Completed result wins, failing that the last one */
    if (slot->status != MD_TASK_COMPLETED) {
        *slot = *r;
    }
    return 0;
}

int sv_log_readback(sv_ctx *ctx, md_buf *bytes, md_task_result *chosen, md_error *err)
{
    char path[MD_PATH_MAX];
    size_t whole_len = 0;
    memset(chosen, 0, (size_t)(ctx->task_count + 1) * sizeof(*chosen));
    md_buf_clear(bytes);
    int rc = log_path(ctx, path, sizeof(path), err);
    if (rc == 0) {
        rc = md_store_read_from(path, 0, bytes, err);
    }
    if (rc == 0) {
        rc = walk_log(ctx, bytes, choose_result, chosen, &whole_len, err);
    }
    return rc;
}
