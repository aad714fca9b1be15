/*
 * Loading a job: key, job definition and every task shard, into memory.
 *
 * Shards are kept as read (one buffer per file) and tasks[] points into them,
 * so a batch is encoded straight from the authenticated bytes and nothing is
 * copied per task.  Every envelope is checked (MAC, kind, job id, range)
 * before the job starts, so a tampered or mixed-up folder fails up front
 * rather than half way through.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "supervisor.h"

typedef struct {
    sv_task *tasks;
    uint64_t first;
    uint64_t count;
} shard_visit;

static int visit_task(void *vctx, size_t index, const uint8_t *item, size_t len)
{
    shard_visit *v = vctx;
    if (index >= v->count) {
        return MD_EFORMAT;
    }
    v->tasks[v->first + index].ptr = item;
    v->tasks[v->first + index].len = len;
    return 0;
}

static int load_job_envelope(sv_ctx *ctx, md_error *err)
{
    md_error inner;
    md_envelope env;
    md_error_clear(&inner);
    int rc = md_store_read(ctx->job_dir, MD_STORE_JOB, &ctx->job_bytes, &inner);
    if (rc != 0) {
        return md_fail(err, rc, "cannot read the job definition: %s", inner.message);
    }
    rc = md_envelope_decode(&ctx->key, ctx->job_bytes.data, ctx->job_bytes.len, &env, &inner);
    if (rc != 0) {
        return md_fail(err, rc, "the job definition failed its integrity check: %s",
                       inner.message);
    }
    if (env.kind != MD_KIND_JOB || env.job_id_len == 0 || env.job_id_len > MD_JOB_ID_MAX ||
        memchr(env.job_id, '\0', env.job_id_len) != NULL) {
        return md_fail(err, MD_EFORMAT, "the file 'job' does not hold a job definition");
    }
    memcpy(ctx->job_id, env.job_id, env.job_id_len);
    ctx->job_id[env.job_id_len] = '\0';
    rc = md_jobdef_decode(env.payload, env.payload_len, &ctx->jobdef_view, &inner);
    if (rc != 0) {
        return md_fail(err, rc, "the job definition cannot be read: %s", inner.message);
    }
    ctx->jobdef = md_jobdef_get(ctx->jobdef_view);
    if (env.first != 0 || env.count != ctx->jobdef->task_count) {
        return md_fail(err, MD_EFORMAT,
                       "the job envelope covers tasks %llu+%llu but the job has %llu tasks",
                       (unsigned long long)env.first, (unsigned long long)env.count,
                       (unsigned long long)ctx->jobdef->task_count);
    }
    return 0;
}

static int md_str_is(md_str s, const char *lit)
{
    size_t n = strlen(lit);
    return s.ptr != NULL && s.len == n && memcmp(s.ptr, lit, n) == 0;
}

static int check_jobdef(sv_ctx *ctx, md_error *err)
{
    const md_jobdef *jd = ctx->jobdef;
    if (md_str_is(jd->job_kind, "single")) {
        ctx->is_single = 1;
        if (jd->task_count != 1) {
            return md_fail(err, MD_EFORMAT, "a single job must have exactly one task, not %llu",
                           (unsigned long long)jd->task_count);
        }
    } else if (!md_str_is(jd->job_kind, "map")) {
        return md_fail(err, MD_EFORMAT, "unknown job kind '%.*s'",
                       jd->job_kind.ptr ? (int)jd->job_kind.len : 0,
                       jd->job_kind.ptr ? jd->job_kind.ptr : "");
    }
    if (jd->task_count > 0 && jd->shard_size == 0) {
        return md_fail(err, MD_EFORMAT, "the job definition has a shard size of 0");
    }
    if (jd->task_count > (uint64_t)SIZE_MAX / sizeof(sv_task)) {
        return md_fail(err, MD_ETOOBIG, "too many tasks: %llu",
                       (unsigned long long)jd->task_count);
    }
    ctx->needs_combine = !ctx->is_single && jd->combiner != NULL;
    return 0;
}

static int load_shard(sv_ctx *ctx, uint64_t shard, md_error *err)
{
    char name[64];
    md_error inner;
    md_envelope env;
    md_error_clear(&inner);
    int rc = md_shard_name(name, sizeof(name), shard, err);
    if (rc != 0) {
        return rc;
    }
    uint64_t first = shard * ctx->jobdef->shard_size;
    uint64_t count = ctx->task_count - first;
    if (count > ctx->jobdef->shard_size) {
        count = ctx->jobdef->shard_size;
    }
    md_buf *bytes = &ctx->shards[shard];
    rc = md_store_read(ctx->job_dir, name, bytes, &inner);
    if (rc != 0) {
        return md_fail(err, rc, "cannot read task shard %s: %s", name, inner.message);
    }
    rc = md_envelope_decode(&ctx->key, bytes->data, bytes->len, &env, &inner);
    if (rc == 0) {
        rc = md_envelope_expect(&env, MD_KIND_TASKS, ctx->job_id, &inner);
    }
    if (rc != 0) {
        return md_fail(err, rc, "task shard %s failed its integrity check: %s", name,
                       inner.message);
    }
    if (env.first != first || env.count != count) {
        return md_fail(err, MD_EFORMAT,
                       "task shard %s holds tasks %llu+%llu, expected %llu+%llu", name,
                       (unsigned long long)env.first, (unsigned long long)env.count,
                       (unsigned long long)first, (unsigned long long)count);
    }
    shard_visit v = {ctx->tasks, first, count};
    size_t items = 0;
    rc = md_bins_decode(env.payload, env.payload_len, visit_task, &v, &items, &inner);
    if (rc != 0 || items != count) {
        return md_fail(err, rc != 0 ? rc : MD_EFORMAT,
                       "task shard %s failed its integrity check: %s", name,
                       rc != 0 ? inner.message : "wrong number of tasks");
    }
    return 0;
}

static int load_shards(sv_ctx *ctx, md_error *err)
{
    ctx->task_count = ctx->jobdef->task_count;
    if (ctx->task_count == 0) {
        return 0;
    }
    uint64_t shards = (ctx->task_count + ctx->jobdef->shard_size - 1) / ctx->jobdef->shard_size;
    ctx->shards = calloc((size_t)shards, sizeof(*ctx->shards));
    ctx->tasks = calloc((size_t)ctx->task_count, sizeof(*ctx->tasks));
    ctx->task_state = calloc((size_t)ctx->task_count, 1);
    ctx->next_attempt = calloc((size_t)ctx->task_count, sizeof(*ctx->next_attempt));
    if (ctx->shards == NULL || ctx->tasks == NULL || ctx->task_state == NULL ||
        ctx->next_attempt == NULL) {
        return md_fail(err, MD_ENOMEM, "out of memory for %llu tasks",
                       (unsigned long long)ctx->task_count);
    }
    ctx->shard_count = (size_t)shards;
    for (size_t s = 0; s < ctx->shard_count; s++) {
        md_buf_init(&ctx->shards[s]);
    }
    for (uint64_t s = 0; s < shards; s++) {
        int rc = load_shard(ctx, s, err);
        if (rc != 0) {
            return rc;
        }
    }
    return 0;
}

int sv_load_job(sv_ctx *ctx, md_error *err)
{
    md_error inner;
    md_error_clear(&inner);
    int rc = md_store_read_key(ctx->job_dir, &ctx->key, &inner);
    if (rc != 0) {
        return md_fail(err, rc, "cannot read the job key: %s", inner.message);
    }
    rc = load_job_envelope(ctx, err);
    if (rc == 0) {
        rc = check_jobdef(ctx, err);
    }
    if (rc == 0) {
        rc = load_shards(ctx, err);
    }
    if (rc != 0) {
        return rc;
    }
    ctx->batch_items = calloc(SV_MAX_BATCH, sizeof(*ctx->batch_items));
    ctx->batch_lens = calloc(SV_MAX_BATCH, sizeof(*ctx->batch_lens));
    ctx->answers = calloc((size_t)SV_MAX_INFLIGHT * SV_MAX_BATCH, sizeof(*ctx->answers));
    if (ctx->batch_items == NULL || ctx->batch_lens == NULL || ctx->answers == NULL) {
        return md_fail(err, MD_ENOMEM, "out of memory");
    }
    ctx->undispatched = ctx->task_count;
    return sv_retry_setup(ctx, err);
}

void sv_unload_job(sv_ctx *ctx)
{
    for (size_t s = 0; s < ctx->shard_count; s++) {
        md_buf_free(&ctx->shards[s]);
    }
    free(ctx->shards);
    ctx->shards = NULL;
    ctx->shard_count = 0;
    free(ctx->tasks);
    ctx->tasks = NULL;
    free(ctx->task_state);
    ctx->task_state = NULL;
    free(ctx->next_attempt);
    ctx->next_attempt = NULL;
    free(ctx->suspects);
    ctx->suspects = NULL;
    free(ctx->batch_items);
    ctx->batch_items = NULL;
    free(ctx->batch_lens);
    ctx->batch_lens = NULL;
    free(ctx->answers);
    ctx->answers = NULL;
    if (ctx->jobdef_view != NULL) {
        md_jobdef_free(ctx->jobdef_view);
        ctx->jobdef_view = NULL;
    }
    ctx->jobdef = NULL;
    md_buf_free(&ctx->job_bytes);
}
