/*
 * Frames from workers: READY, then RESULTS for the head of the batches sent.
 *
 * A RESULTS envelope is checked completely (MAC, job, and that its results
 * are exactly the next unanswered tasks of this worker, in order) before it
 * is appended, and appended before any task is counted as done: a result is
 * durable before anyone is told it exists.
 */
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "supervisor.h"

typedef struct {
    sv_ctx *ctx;
    const sv_worker *w;
    size_t batch;
    uint64_t answered;
    size_t taken;
} order_check;

/* Checks that the results are the worker's next unanswered tasks, in order,
 * and keeps each one (its pointers into the frame) for apply_result: the
 * payload is decoded once. */
static int check_order(void *vctx, const md_task_result *r)
{
    order_check *c = vctx;
    if (c->batch >= c->w->nbatches) {
        return MD_EFORMAT;
    }
    const sv_batch *b = &c->w->batches[c->batch];
    if (r->task_index != b->first + c->answered) {
        return MD_EFORMAT;
    }
    if (++c->answered == b->count) {
        c->batch++;
        c->answered = 0;
    }
    /* the order check bounds them by the tasks in flight: SV_MAX_INFLIGHT
     * batches of at most SV_MAX_BATCH */
    if (c->taken >= (size_t)SV_MAX_INFLIGHT * SV_MAX_BATCH) {
        return MD_EFORMAT;
    }
    c->ctx->answers[c->taken++] = *r;
    return 0;
}

static void update_ewma(sv_worker *w, double run_time)
{
    if (run_time < 0) {
        run_time = 0;
    }
    w->ewma = w->have_ewma ? (1.0 - SV_EWMA_WEIGHT) * w->ewma + SV_EWMA_WEIGHT * run_time
                           : run_time;
    w->have_ewma = 1;
}

static void pop_batch(sv_worker *w)
{
    for (size_t i = 1; i < w->nbatches; i++) {
        w->batches[i - 1] = w->batches[i];
    }
    w->nbatches--;
}

static int apply_result(sv_ctx *ctx, sv_worker *w, const md_task_result *r, md_error *err)
{
    sv_batch *b = &w->batches[0];
    int rc = 0;
    if (r->max_rss > 0) {
        if (w->rss_first == 0) {
            w->rss_first = r->max_rss;
        }
        w->rss_last = r->max_rss;
    }
    if (b->is_combine) {
        ctx->combine_done = 1;
    } else {
        rc = sv_task_ended(ctx, r, err);
        update_ewma(w, r->run_time);
    }
    if (++b->answered == b->count) {
        pop_batch(w);
    }
    return rc;
}

/* A worker that sends what it should not cannot be trusted with the rest of
 * its batches: it is killed and its death handled like any other. */
static int protocol_violation(sv_worker *w, const char *why)
{
    fprintf(stderr,
            "mapdeploy-supervisor: worker pid %d (slot %u) broke the protocol: %s; "
            "killing it\n",
            (int)w->pid, w->slot, why);
    if (w->pid > 0) {
        (void)kill(w->pid, SIGKILL);
    }
    sv_worker_drop_socket(w);
    return 0;
}

static int handle_results(sv_ctx *ctx, sv_worker *w, const uint8_t *frame, size_t len,
                          md_error *err)
{
    md_envelope env;
    md_error inner;
    md_error_clear(&inner);
    if (md_envelope_decode(&ctx->key, frame, len, &env, &inner) != 0 ||
        md_envelope_expect(&env, MD_KIND_RESULTS, ctx->job_id, &inner) != 0) {
        return protocol_violation(w, inner.message);
    }
    if (w->nbatches == 0 || env.first != w->batches[0].first + w->batches[0].answered) {
        return protocol_violation(w, "results for tasks it was not running");
    }
    order_check check = {ctx, w, 0, w->batches[0].answered, 0};
    size_t count = 0;
    if (md_results_decode(env.payload, env.payload_len, check_order, &check, &count,
                          &inner) != 0 ||
        count != env.count || count == 0) {
        return protocol_violation(w, "results out of order or miscounted");
    }
    int rc = sv_log_append(ctx, frame, len, err);
    if (rc != 0) {
        return rc;
    }
    for (size_t i = 0; i < check.taken; i++) {
        rc = apply_result(ctx, w, &ctx->answers[i], err);
        if (rc != 0) {
            return rc;
        }
    }
    return 0;
}

static int handle_ready(sv_ctx *ctx, sv_worker *w, const uint8_t *frame, size_t len,
                        md_error *err)
{
    md_envelope env;
    md_error inner;
    char message[MD_ERROR_MESSAGE_LEN];
    int has_error = 0;
    md_error_clear(&inner);
    if (md_envelope_decode(&ctx->key, frame, len, &env, &inner) != 0 ||
        md_envelope_expect(&env, MD_KIND_READY, ctx->job_id, &inner) != 0 ||
        sv_ready_error(env.payload, env.payload_len, message, sizeof(message), &has_error,
                       &inner) != 0) {
        return md_fail(err, MD_EFORMAT, "worker pid %d sent an invalid READY: %s",
                       (int)w->pid, inner.message);
    }
    if (has_error) {
        /* systemic (e.g. the wrong Python): every worker would say the same */
        return md_fail(err, MD_EFORMAT, "%s", message);
    }
    w->state = SV_WORKER_READY;
    w->ready_due = 0;
    return 0;
}

int sv_handle_frame(sv_ctx *ctx, sv_worker *w, const uint8_t *frame, size_t len,
                    md_error *err)
{
    if (w->state == SV_WORKER_STARTING || w->ready_due) {
        return handle_ready(ctx, w, frame, len, err);
    }
    return handle_results(ctx, w, frame, len, err);
}

int sv_append_worker_died(sv_ctx *ctx, const sv_batch *batch, uint64_t index, pid_t pid,
                          int wstatus, md_error *err)
{
    char how[128];
    char message[256];
    sv_describe_exit(wstatus, how, sizeof(how));
    (void)snprintf(message, sizeof(message),
                   "the worker process (pid %d) %s%s while running this task", (int)pid,
                   WIFSIGNALED(wstatus) ? "was " : "", how);
    return sv_append_failure(ctx, batch, index, pid, "WorkerDied", message, err);
}
