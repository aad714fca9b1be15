/*
 * The READY payload: {"pid": int, "python_version": str, "error": str|nil},
 * decoded by md_ready_decode in the core.  Only its "error" field matters
 * here: a non-nil error is systemic (the worker cannot serve this job at
 * all), so the job fails with that message.
 */
#include <string.h>

#include "supervisor.h"

int sv_ready_error(const uint8_t *payload, size_t len, char *error_out, size_t error_len,
                   int *has_error, md_error *err)
{
    md_ready ready;
    *has_error = 0;
    if (error_len == 0) {
        return md_fail(err, MD_EARG, "no room for the READY error");
    }
    error_out[0] = '\0';
    int rc = md_ready_decode(payload, len, &ready, err);
    if (rc != MD_OK) {
        return rc;
    }
    if (ready.error.ptr != NULL) {
        size_t n = ready.error.len < error_len - 1 ? ready.error.len : error_len - 1;
        memcpy(error_out, ready.error.ptr, n);
        error_out[n] = '\0';
        *has_error = 1;
    }
    return MD_OK;
}
