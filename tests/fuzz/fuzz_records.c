/* libFuzzer target: the payload decoders.  The first byte picks the decoder,
 * the rest is its input. */
#include "mdcore.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef struct {
    const uint8_t *start;
    const uint8_t *end;
} bounds;

static void check_inside(const bounds *b, const void *ptr, size_t len)
{
    const uint8_t *p = ptr;
    if (len > 0 && (p < b->start || p + len > b->end)) {
        __builtin_trap();
    }
}

static int visit_bin(void *ctx, size_t index, const uint8_t *item, size_t len)
{
    (void)index;
    check_inside(ctx, item, len);
    return 0;
}

static int visit_result(void *ctx, const md_task_result *r)
{
    check_inside(ctx, r->exc_type.ptr, r->exc_type.len);
    check_inside(ctx, r->exc_message.ptr, r->exc_message.len);
    check_inside(ctx, r->exc_traceback.ptr, r->exc_traceback.len);
    check_inside(ctx, r->value, r->value_len);
    return 0;
}

static int visit_combine(void *ctx, const md_combine_entry *e)
{
    check_inside(ctx, e->name.ptr, e->name.len);
    check_inside(ctx, e->value, e->value_len);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0) {
        return 0;
    }
    const uint8_t *payload = data + 1;
    size_t len = size - 1;
    bounds b = {payload, payload + len};
    md_error err;
    size_t count = 0;
    switch (data[0] % 6u) {
    case 0:
        (void)md_results_decode(payload, len, visit_result, &b, &count, &err);
        break;
    case 1:
        (void)md_bins_decode(payload, len, visit_bin, &b, &count, &err);
        break;
    case 2: {
        md_jobdef_view *view = NULL;
        if (md_jobdef_decode(payload, len, &view, &err) == MD_OK) {
            const md_jobdef *d = md_jobdef_get(view);
            check_inside(&b, d->name.ptr, d->name.len);
            check_inside(&b, d->function, d->function_len);
            for (size_t i = 0; i <= d->sys_path_count; i++) {
                md_str s = md_jobdef_sys_path(view, i);
                check_inside(&b, s.ptr, s.len);
            }
        }
        md_jobdef_free(view);
        break;
    }
    case 3: {
        md_status st;
        if (md_status_decode(payload, len, &st, &err) == MD_OK) {
            check_inside(&b, st.error.ptr, st.error.len);
        }
        break;
    }
    case 4:
        (void)md_combine_decode(payload, len, visit_combine, &b, &count, &err);
        break;
    default: {
        md_hello hello;
        if (md_hello_decode(payload, len, &hello, &err) == MD_OK) {
            check_inside(&b, hello.job_id.ptr, hello.job_id.len);
        }
        break;
    }
    }
    return 0;
}
