/*
 * The combiner and the job's final state.
 *
 * The values given to the combiner, and the results that decide the final
 * state, are read back from the results log file rather than kept in memory
 * while the map runs: the log is the single source of truth (it also holds
 * what a previous, resumed run produced), it applies the documented rule
 * "first Completed result wins, failing that the last one", and memory during
 * the map phase stays independent of the size of the results.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "supervisor.h"

typedef struct {
    md_buf bytes;             /* the results log; chosen[] points into it */
    md_task_result *chosen;   /* task_count + 1 entries (the last: combiner) */
} readback;

static int readback_load(sv_ctx *ctx, readback *rb, md_error *err)
{
    md_buf_init(&rb->bytes);
    rb->chosen = calloc((size_t)ctx->task_count + 1, sizeof(*rb->chosen));
    if (rb->chosen == NULL) {
        return md_fail(err, MD_ENOMEM, "out of memory reading the results back");
    }
    return sv_log_readback(ctx, &rb->bytes, rb->chosen, err);
}

static void readback_free(readback *rb)
{
    md_buf_free(&rb->bytes);
    free(rb->chosen);
    rb->chosen = NULL;
}

/* Entry names are "<function_name>-0-<i>", the names GraphLab's map_job gave
 * its tasks, which combiners written for it may rely on. */
static int build_entries(const sv_ctx *ctx, const readback *rb, md_combine_entry *entries,
                         md_buf *names, md_error *err)
{
    md_str fn = ctx->jobdef->function_name;
    size_t *offsets = (size_t *)calloc((size_t)ctx->task_count + 1, sizeof(size_t));
    if (offsets == NULL) {
        return md_fail(err, MD_ENOMEM, "out of memory naming combiner entries");
    }
    int rc = 0;
    for (uint64_t i = 0; i < ctx->task_count && rc == 0; i++) {
        char suffix[32];
        int n = snprintf(suffix, sizeof(suffix), "-0-%llu", (unsigned long long)i);
        offsets[i] = names->len;
        if (n < 0 || (fn.ptr != NULL && md_buf_append(names, fn.ptr, fn.len) != 0) ||
            md_buf_append(names, suffix, (size_t)n) != 0) {
            rc = md_fail(err, MD_ENOMEM, "out of memory naming combiner entries");
        }
    }
    offsets[ctx->task_count] = names->len;
    for (uint64_t i = 0; i < ctx->task_count && rc == 0; i++) {
        const md_task_result *r = &rb->chosen[i];
        entries[i].name.ptr = (const char *)names->data + offsets[i];
        entries[i].name.len = offsets[i + 1] - offsets[i];
        entries[i].value = r->status == MD_TASK_COMPLETED ? r->value : NULL;
        entries[i].value_len = r->status == MD_TASK_COMPLETED ? r->value_len : 0;
    }
    free(offsets);
    return rc;
}

int sv_start_combine(sv_ctx *ctx, sv_worker *w, md_error *err)
{
    readback rb = {.chosen = NULL};
    md_buf names;
    md_buf payload;
    md_combine_entry *entries = NULL;
    md_buf_init(&names);
    md_buf_init(&payload);
    int rc = readback_load(ctx, &rb, err);
    if (rc != 0) {
        goto cleanup;
    }
    entries = calloc((size_t)ctx->task_count + 1, sizeof(*entries));
    if (entries == NULL) {
        rc = md_fail(err, MD_ENOMEM, "out of memory building the combine request");
        goto cleanup;
    }
    rc = build_entries(ctx, &rb, entries, &names, err);
    if (rc == 0) {
        rc = md_combine_encode(entries, (size_t)ctx->task_count, &payload, err);
    }
    if (rc == 0) {
        sv_batch batch = {.first = ctx->task_count, .count = 1, .alone = 1, .is_combine = 1};
        rc = sv_send_batch(ctx, w, &batch, payload.data, payload.len, MD_KIND_COMBINE, err);
    }
    if (rc == 0) {
        ctx->combine_sent = 1;
    }

cleanup:
    free(entries);
    md_buf_free(&names);
    md_buf_free(&payload);
    readback_free(&rb);
    return rc;
}

static void describe_failure(const md_task_result *r, char *out, size_t out_len)
{
    if (r->status == 0) {
        (void)snprintf(out, out_len, "no result was recorded");
        return;
    }
    (void)snprintf(out, out_len, "%.*s: %.*s", r->exc_type.ptr ? (int)r->exc_type.len : 5,
                   r->exc_type.ptr ? r->exc_type.ptr : "Error",
                   r->exc_message.ptr ? (int)r->exc_message.len : 0,
                   r->exc_message.ptr ? r->exc_message.ptr : "");
}

int sv_final_outcome(sv_ctx *ctx, md_state *state, char *error, size_t error_len,
                     md_error *err)
{
    readback rb = {.chosen = NULL};
    char why[MD_ERROR_MESSAGE_LEN];
    *state = MD_STATE_COMPLETED;
    error[0] = '\0';
    if (!ctx->is_single && ctx->jobdef->combiner == NULL) {
        return 0;
    }
    int rc = readback_load(ctx, &rb, err);
    if (rc != 0) {
        goto cleanup;
    }
    const md_task_result *r = &rb.chosen[ctx->is_single ? 0 : ctx->task_count];
    if (r->status == MD_TASK_COMPLETED) {
        goto cleanup;
    }
    *state = MD_STATE_FAILED;
    describe_failure(r, why, sizeof(why));
    if (ctx->is_single) {
        (void)snprintf(error, error_len, "%s", why);
    } else {
        md_str name = ctx->jobdef->combiner_name;
        (void)snprintf(error, error_len,
                       "the combiner function %.*s raised %s; the map results are still "
                       "available with get_map_results()",
                       name.ptr ? (int)name.len : 0, name.ptr ? name.ptr : "", why);
    }

cleanup:
    readback_free(&rb);
    return rc;
}
