/*
 * The READY payload: {"pid": int, "python_version": str, "error": str|nil}.
 *
 * mdcore has no codec for it because only the supervisor reads it, and only
 * its "error" field matters here: a non-nil error is systemic (the worker
 * cannot serve this job at all), so the job fails with that message.
 */
#include <msgpack.h>
#include <string.h>

#include "supervisor.h"

static int find_error(const msgpack_object *root, char *error_out, size_t error_len,
                      int *has_error, md_error *err)
{
    if (root->type != MSGPACK_OBJECT_MAP) {
        return md_fail(err, MD_EFORMAT, "the READY payload is not a map");
    }
    for (uint32_t i = 0; i < root->via.map.size; i++) {
        const msgpack_object_kv *kv = &root->via.map.ptr[i];
        if (kv->key.type != MSGPACK_OBJECT_STR || kv->key.via.str.size != 5 ||
            memcmp(kv->key.via.str.ptr, "error", 5) != 0) {
            continue;
        }
        if (kv->val.type == MSGPACK_OBJECT_NIL) {
            return 0;
        }
        if (kv->val.type != MSGPACK_OBJECT_STR) {
            return md_fail(err, MD_EFORMAT, "the READY error is not a string");
        }
        size_t n = kv->val.via.str.size;
        if (n >= error_len) {
            n = error_len - 1;
        }
        memcpy(error_out, kv->val.via.str.ptr, n);
        error_out[n] = '\0';
        *has_error = 1;
        return 0;
    }
    return 0;
}

int sv_ready_error(const uint8_t *payload, size_t len, char *error_out, size_t error_len,
                   int *has_error, md_error *err)
{
    msgpack_unpacked msg;
    size_t off = 0;
    int rc = 0;
    *has_error = 0;
    if (error_len == 0) {
        return md_fail(err, MD_EARG, "no room for the READY error");
    }
    error_out[0] = '\0';
    msgpack_unpacked_init(&msg);
    if (msgpack_unpack_next(&msg, (const char *)payload, len, &off) != MSGPACK_UNPACK_SUCCESS) {
        rc = md_fail(err, MD_EFORMAT, "the READY payload is not msgpack");
        goto cleanup;
    }
    rc = find_error(&msg.data, error_out, error_len, has_error, err);

cleanup:
    msgpack_unpacked_destroy(&msg);
    return rc;
}
