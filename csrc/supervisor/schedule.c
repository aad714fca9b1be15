/*
 * Scheduling: which tasks go to which worker, in batches of what size.
 *
 * Tasks go out in index order from a cursor, except "suspects": tasks that
 * were in flight on a worker that died with more than one task unanswered.
 * Suspects run one per batch, alone on their worker (nothing else is in
 * flight beside them), so that a task that kills its worker is identified and
 * failed by itself.  A worker's first batch is likewise a lone single task,
 * so that the first results and errors come back at once and its task time is
 * measured before batches are sized.
 */
#include <stdlib.h>
#include <string.h>

#include "supervisor.h"

int sv_suspect_push(sv_ctx *ctx, uint64_t index, uint32_t attempt, md_error *err)
{
    if (ctx->suspect_head + ctx->suspect_len == ctx->suspect_cap) {
        if (ctx->suspect_head > 0) {
            memmove(ctx->suspects, ctx->suspects + ctx->suspect_head,
                    ctx->suspect_len * sizeof(*ctx->suspects));
            ctx->suspect_head = 0;
        } else {
            size_t cap = ctx->suspect_cap < 16 ? 16 : ctx->suspect_cap * 2;
            sv_suspect *grown = realloc(ctx->suspects, cap * sizeof(*grown));
            if (grown == NULL) {
                return md_fail(err, MD_ENOMEM, "out of memory re-queueing tasks");
            }
            ctx->suspects = grown;
            ctx->suspect_cap = cap;
        }
    }
    ctx->suspects[ctx->suspect_head + ctx->suspect_len].index = index;
    ctx->suspects[ctx->suspect_head + ctx->suspect_len].attempt = attempt;
    ctx->suspect_len++;
    return 0;
}

uint64_t sv_inflight_tasks(const sv_ctx *ctx)
{
    uint64_t n = 0;
    for (unsigned i = 0; i < ctx->num_workers; i++) {
        const sv_worker *w = &ctx->workers[i];
        for (size_t b = 0; b < w->nbatches; b++) {
            if (!w->batches[b].is_combine) {
                n += w->batches[b].count - w->batches[b].answered;
            }
        }
    }
    return n;
}

/* About SV_BATCH_TARGET_SECONDS of work by this worker's measured task time,
 * and at most a fair share of what is left so that the last batches do not
 * leave other workers idle. */
static uint64_t batch_size(const sv_ctx *ctx, const sv_worker *w)
{
    if (ctx->task_timeout > 0) {
        return 1;  /* see retry.c: the supervisor must know which task runs */
    }
    double per_task = w->ewma < SV_MIN_TASK_SECONDS ? SV_MIN_TASK_SECONDS : w->ewma;
    double want = SV_BATCH_TARGET_SECONDS / per_task;
    uint64_t n = want >= (double)SV_MAX_BATCH ? SV_MAX_BATCH : (want < 1.0 ? 1 : (uint64_t)want);
    uint64_t fair = ctx->undispatched / (2u * (uint64_t)ctx->num_workers);
    if (fair < 1) {
        fair = 1;
    }
    return n < fair ? n : fair;
}

static int can_send(const sv_ctx *ctx, const sv_worker *w)
{
    if (w->state != SV_WORKER_READY || w->fd < 0 || w->retiring) {
        return 0;
    }
    if (w->nbatches == 0) {
        return ctx->suspect_len > 0 || ctx->undispatched > 0;
    }
    if (w->nbatches == 1) {
        /* a second batch only hides the round trip (tens of microseconds);
         * behind a batch expected to run longer than SV_PIPELINE_SECONDS it
         * gains nothing and would hold a task on a busy worker while another
         * may be free, and keep a worker over its share (budget.c) that much
         * longer */
        return ctx->task_timeout <= 0 && !w->batches[0].alone && w->have_ewma && ctx->suspect_len == 0 &&
               ctx->undispatched > 0 &&
               w->ewma * (double)w->batches[0].count <= SV_PIPELINE_SECONDS;
    }
    return 0;
}

int sv_send_batch(sv_ctx *ctx, sv_worker *w, const sv_batch *batch, const uint8_t *payload,
                  size_t payload_len, md_kind kind, md_error *err)
{
    md_envelope env;
    memset(&env, 0, sizeof(env));
    env.kind = kind;
    env.job_id = ctx->job_id;
    env.job_id_len = strlen(ctx->job_id);
    env.first = batch->first;
    env.count = batch->count;
    env.attempt = batch->attempt;
    env.payload = payload;
    env.payload_len = payload_len;
    md_buf_clear(&ctx->scratch2);
    int rc = md_envelope_encode(&ctx->key, &env, &ctx->scratch2, err);
    if (rc != 0) {
        return rc;
    }
    sv_batch *slot = &w->batches[w->nbatches];
    *slot = *batch;
    slot->answered = 0;
    slot->sent_wall = md_wall_time();
    slot->sent_mono = md_monotonic_time();
    w->nbatches++;
    return sv_worker_queue_frame(w, ctx->scratch2.data, ctx->scratch2.len, err);
}

static int send_tasks(sv_ctx *ctx, sv_worker *w, sv_batch *batch, md_error *err)
{
    md_buf_clear(&ctx->scratch);
    int rc = md_bins_encode(ctx->batch_items, ctx->batch_lens, (size_t)batch->count,
                            &ctx->scratch, err);
    if (rc != 0) {
        return rc;
    }
    return sv_send_batch(ctx, w, batch, ctx->scratch.data, ctx->scratch.len, MD_KIND_TASKS,
                         err);
}

static int send_suspect(sv_ctx *ctx, sv_worker *w, md_error *err)
{
    sv_suspect s = ctx->suspects[ctx->suspect_head];
    ctx->suspect_head++;
    ctx->suspect_len--;
    if (ctx->suspect_len == 0) {
        ctx->suspect_head = 0;
    }
    sv_batch batch = {.first = s.index, .count = 1, .attempt = s.attempt, .alone = 1};
    ctx->batch_items[0] = ctx->tasks[s.index].ptr;
    ctx->batch_lens[0] = ctx->tasks[s.index].len;
    return send_tasks(ctx, w, &batch, err);
}

static int send_from_cursor(sv_ctx *ctx, sv_worker *w, md_error *err)
{
    uint64_t limit = w->have_ewma ? batch_size(ctx, w) : 1;
    /* tasks a previous run completed are skipped; a batch is contiguous */
    while (ctx->cursor < ctx->task_count && ctx->task_state[ctx->cursor] != SV_TASK_PENDING) {
        ctx->cursor++;
    }
    sv_batch batch = {.first = ctx->cursor, .alone = !w->have_ewma};
    while (ctx->cursor < ctx->task_count && batch.count < limit &&
           ctx->task_state[ctx->cursor] == SV_TASK_PENDING) {
        ctx->batch_items[batch.count] = ctx->tasks[ctx->cursor].ptr;
        ctx->batch_lens[batch.count] = ctx->tasks[ctx->cursor].len;
        batch.count++;
        ctx->cursor++;
    }
    if (batch.count == 0) {
        return md_fail(err, MD_EARG, "internal error: no task to send at %llu",
                       (unsigned long long)ctx->cursor);
    }
    ctx->undispatched -= batch.count;
    return send_tasks(ctx, w, &batch, err);
}

int sv_dispatch(sv_ctx *ctx, sv_worker *w, md_error *err)
{
    while (can_send(ctx, w)) {
        int rc = w->nbatches == 0 && ctx->suspect_len > 0 ? send_suspect(ctx, w, err)
                                                          : send_from_cursor(ctx, w, err);
        if (rc != 0) {
            return rc;
        }
    }
    return 0;
}
