/* libFuzzer target: the out-of-band wrapper (md_oob_decode), which the
 * worker and the client read from a task's kwargs or a result's value before
 * they open any blob.  It sits behind an envelope's MAC, but a result's value
 * comes from a worker, which runs user code: its bytes are not trusted.  The
 * input is the wrapper without its magic (prepended here), so that the
 * fuzzer spends its time in the msgpack behind it. */
#include <stdlib.h>
#include <string.h>

#include "mdcore.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef struct {
    size_t seen;
} visit_state;

static int visit(void *ctx, size_t index, const md_blob_ref *ref)
{
    visit_state *state = ctx;
    if (index != state->seen || ref->length > MD_BLOB_MAX || (ref->readonly != 0 && ref->readonly != 1)) {
        __builtin_trap();   /* out of order, or a reference the decoder should have refused */
    }
    state->seen++;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t *wrapped = malloc(size + MD_OOB_MAGIC_LEN);
    if (wrapped == NULL) {
        return 0;
    }
    memcpy(wrapped, md_oob_magic, MD_OOB_MAGIC_LEN);
    if (size > 0) {
        memcpy(wrapped + MD_OOB_MAGIC_LEN, data, size);
    }
    size_t len = size + MD_OOB_MAGIC_LEN;
    const uint8_t *pickle = NULL;
    size_t pickle_len = 0;
    size_t count = 0;
    visit_state state = {0};
    md_error err;
    int rc = md_oob_decode(wrapped, len, &pickle, &pickle_len, visit, &state, &count, &err);
    if (rc == MD_OK) {
        /* an empty bin points at a static empty string, not into the input */
        int outside = pickle_len > 0 && (pickle < wrapped || pickle_len > len ||
                                         pickle + pickle_len > wrapped + len);
        if (pickle == NULL || outside || state.seen != count || count > MD_OOB_MAX_BLOBS) {
            __builtin_trap();   /* a pickle outside the input, or buffers not all visited */
        }
    } else if (state.seen != 0) {
        __builtin_trap();   /* a failed decode must not have called the visitor */
    }
    /* the magic alone, or a cut of it, is never a wrapper */
    if (md_oob_is(wrapped, size < MD_OOB_MAGIC_LEN ? size : MD_OOB_MAGIC_LEN - 1)) {
        __builtin_trap();
    }
    free(wrapped);
    return 0;
}
