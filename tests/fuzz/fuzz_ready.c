/* libFuzzer target: the supervisor's READY payload decoder (sv_ready_error,
 * csrc/supervisor/ready.c).  It runs after the envelope's MAC check, so only
 * a worker holding the key reaches it, but a worker runs user code: its
 * bytes are not trusted.  The first byte sizes the output buffer (0..255, so
 * that truncation and the "no room" case are covered); the rest is the
 * payload. */
#include <string.h>

#include "supervisor.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0) {
        return 0;
    }
    size_t error_len = data[0];
    /* One byte past the room the decoder is given, to catch a write past it. */
    char out[257];
    memset(out, 'X', sizeof out);
    int has_error = 0;
    md_error err;
    int rc = sv_ready_error(data + 1, size - 1, out, error_len, &has_error, &err);
    if (out[error_len] != 'X') {
        __builtin_trap();   /* wrote past the buffer it was given */
    }
    if (rc == 0 && has_error && strnlen(out, error_len) >= error_len) {
        __builtin_trap();   /* an error message that is not NUL-terminated */
    }
    if (rc != 0 && has_error) {
        __builtin_trap();   /* a failure must not also report a worker error */
    }
    return 0;
}
