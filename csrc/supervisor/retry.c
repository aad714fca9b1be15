/*
 * Retries and per-task timeouts.
 *
 * Every attempt of a task is a record in the results log (a failed attempt
 * too), so a retry is decided from the record alone: its attempt number, its
 * exception type and the job's retry_on.  That is also what lets a resumed
 * supervisor tell a failure that is final from one that still has retries
 * left (resultslog.c).
 *
 * Timeouts need to know which task a worker is running and since when.  With
 * a task_timeout a worker is sent one task at a time (schedule.c), so the
 * batch in flight is the task and its send time is its start, give or take
 * one round trip (tens of microseconds, nothing next to a timeout).
 */
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "supervisor.h"

static int str_is(md_str s, const char *lit)
{
    size_t n = strlen(lit);
    return s.ptr != NULL && s.len == n && memcmp(s.ptr, lit, n) == 0;
}

static int str_eq(md_str a, md_str b)
{
    return a.ptr != NULL && b.ptr != NULL && a.len == b.len && memcmp(a.ptr, b.ptr, a.len) == 0;
}

int sv_retry_setup(sv_ctx *ctx, md_error *err)
{
    const md_jobdef *jd = ctx->jobdef;
    (void)err;
    ctx->task_timeout = jd->task_timeout;
    ctx->max_retries = jd->max_retries;
    if (!jd->retry_on_given) {
        /* the default: what is not the task's own doing */
        ctx->retry_mask = SV_RETRY_WORKER_DIED | SV_RETRY_TIMEOUT;
        return 0;
    }
    ctx->retry_mask = 0;
    for (size_t i = 0; i < jd->retry_on_count; i++) {
        md_str name = md_jobdef_retry_on(ctx->jobdef_view, i);
        if (str_is(name, "WorkerDied")) {
            ctx->retry_mask |= SV_RETRY_WORKER_DIED;
        } else if (str_is(name, "TaskTimeout")) {
            ctx->retry_mask |= SV_RETRY_TIMEOUT;
        } else if (str_is(name, "Exception")) {
            ctx->retry_mask |= SV_RETRY_EXCEPTION;
        } else {
            ctx->retry_mask |= SV_RETRY_NAMED;
        }
    }
    return 0;
}

int sv_should_retry(const sv_ctx *ctx, const md_task_result *r)
{
    if (r->status == MD_TASK_COMPLETED || r->task_index >= ctx->task_count ||
        r->attempt >= ctx->max_retries) {
        return 0;
    }
    if (str_is(r->exc_type, "WorkerDied")) {
        return (ctx->retry_mask & SV_RETRY_WORKER_DIED) != 0;
    }
    if (str_is(r->exc_type, "TaskTimeout")) {
        return (ctx->retry_mask & SV_RETRY_TIMEOUT) != 0;
    }
    if (ctx->retry_mask & SV_RETRY_EXCEPTION) {
        return 1;
    }
    if (ctx->retry_mask & SV_RETRY_NAMED) {
        for (size_t i = 0; i < ctx->jobdef->retry_on_count; i++) {
            if (str_eq(md_jobdef_retry_on(ctx->jobdef_view, i), r->exc_type)) {
                return 1;
            }
        }
    }
    return 0;
}

/* Called once a result of a map task is in the log: the task is done unless
 * the result is a failure with a retry left, which is queued to run alone. */
int sv_task_ended(sv_ctx *ctx, const md_task_result *r, md_error *err)
{
    uint64_t index = r->task_index;
    if (index >= ctx->task_count || ctx->task_state[index] == SV_TASK_DONE) {
        return 0;
    }
    if (sv_should_retry(ctx, r)) {
        ctx->next_attempt[index] = r->attempt + 1;
        ctx->task_state[index] = SV_TASK_QUEUED;
        return sv_suspect_push(ctx, index, r->attempt + 1, err);
    }
    ctx->task_state[index] = SV_TASK_DONE;
    ctx->tasks_done++;
    return 0;
}

int sv_append_failure(sv_ctx *ctx, const sv_batch *batch, uint64_t index, pid_t pid,
                      const char *exc_type, const char *message, md_error *err)
{
    md_task_result r;
    md_envelope env;
    memset(&r, 0, sizeof(r));
    r.task_index = index;
    r.status = MD_TASK_FAILED;
    r.attempt = batch->attempt;
    r.start_time = batch->sent_wall;
    r.run_time = md_monotonic_time() - batch->sent_mono;
    r.worker_pid = (int64_t)pid;
    r.exc_type.ptr = exc_type;
    r.exc_type.len = strlen(exc_type);
    r.exc_message.ptr = message;
    r.exc_message.len = strlen(message);
    md_buf_clear(&ctx->scratch);
    int rc = md_results_encode(&r, 1, &ctx->scratch, err);
    if (rc != 0) {
        return rc;
    }
    memset(&env, 0, sizeof(env));
    env.kind = MD_KIND_RESULTS;
    env.job_id = ctx->job_id;
    env.job_id_len = strlen(ctx->job_id);
    env.first = index;
    env.count = 1;
    env.attempt = batch->attempt;
    env.payload = ctx->scratch.data;
    env.payload_len = ctx->scratch.len;
    md_buf_clear(&ctx->scratch2);
    rc = md_envelope_encode(&ctx->key, &env, &ctx->scratch2, err);
    if (rc == 0) {
        rc = sv_log_append(ctx, ctx->scratch2.data, ctx->scratch2.len, err);
    }
    if (rc != 0) {
        return rc;
    }
    if (batch->is_combine) {
        ctx->combine_done = 1;
        return 0;
    }
    return sv_task_ended(ctx, &r, err);
}

/* The task is failed before its worker is killed: once the batch is gone
 * from the worker, its death has nothing unanswered to judge, so it is not
 * also reported as WorkerDied.  The whole process group is killed (the
 * worker leads its own group) so that processes the task started go too. */
static int time_out(sv_ctx *ctx, sv_worker *w, double elapsed, md_error *err)
{
    char message[320];
    sv_batch batch = w->batches[0];
    pid_t pid = w->pid;
    w->nbatches = 0;
    sv_worker_drop_socket(w);
    if (pid > 0) {
        (void)kill(-pid, SIGKILL);
        (void)kill(pid, SIGKILL);
    }
    (void)snprintf(message, sizeof(message),
                   "the task was still running after %.3g seconds, over its task_timeout of "
                   "%.3g seconds; its worker (pid %d) was killed and replaced",
                   elapsed, ctx->task_timeout, (int)pid);
    fprintf(stderr, "mapdeploy-supervisor: task %llu timed out (attempt %u); %s\n",
            (unsigned long long)(batch.first + batch.answered), (unsigned)batch.attempt,
            message);
    return sv_append_failure(ctx, &batch, batch.first + batch.answered, pid, "TaskTimeout",
                             message, err);
}

int sv_check_timeouts(sv_ctx *ctx, md_error *err)
{
    if (ctx->task_timeout <= 0) {
        return 0;
    }
    double now = md_monotonic_time();
    for (unsigned i = 0; i < ctx->num_workers; i++) {
        sv_worker *w = &ctx->workers[i];
        if (w->state != SV_WORKER_READY || w->fd < 0 || w->nbatches == 0 ||
            w->batches[0].is_combine) {
            continue;
        }
        double elapsed = now - w->batches[0].sent_mono;
        if (elapsed >= ctx->task_timeout) {
            int rc = time_out(ctx, w, elapsed, err);
            if (rc != 0) {
                return rc;
            }
        }
    }
    return 0;
}
