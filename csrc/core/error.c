/* md_error: a code plus a human-readable message. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "mdcore.h"

static void format_message(md_error *err, const char *fmt, va_list ap)
    __attribute__((format(printf, 2, 0)));

static void format_message(md_error *err, const char *fmt, va_list ap)
{
    /* A message cut short at MD_ERROR_MESSAGE_LEN is still useful, so
     * truncation is accepted; only an encoding error leaves it empty. */
    if (vsnprintf(err->message, sizeof err->message, fmt, ap) < 0) {
        err->message[0] = '\0';
    }
}

int md_fail(md_error *err, int code, const char *fmt, ...)
{
    if (err == NULL) {
        return code;
    }
    va_list ap;
    va_start(ap, fmt);
    format_message(err, fmt, ap);
    va_end(ap);
    err->code = code;
    return code;
}

static int code_for_errno(int errno_value)
{
    switch (errno_value) {
    case ENOSPC:
#ifdef EDQUOT
    case EDQUOT:
#endif
        return MD_ENOSPC;
    case ENOENT:
        return MD_ENOENT;
    case EEXIST:
        return MD_EEXIST;
    default:
        return MD_EIO;
    }
}

/* strerror() is not thread-safe and the extension calls us without the GIL;
 * this hides the GNU/XSI split of strerror_r. */
static const char *describe_errno(int errno_value, char *scratch, size_t scratch_len)
{
#if defined(_GNU_SOURCE) && defined(__GLIBC__)
    return strerror_r(errno_value, scratch, scratch_len);
#else
    if (strerror_r(errno_value, scratch, scratch_len) != 0) {
        int n = snprintf(scratch, scratch_len, "errno %d", errno_value);
        if (n < 0) {
            scratch[0] = '\0';
        }
    }
    return scratch;
#endif
}

int md_fail_errno(md_error *err, int errno_value, const char *fmt, ...)
{
    int code = code_for_errno(errno_value);
    if (err == NULL) {
        return code;
    }
    va_list ap;
    va_start(ap, fmt);
    format_message(err, fmt, ap);
    va_end(ap);

    char scratch[128];
    const char *reason = describe_errno(errno_value, scratch, sizeof scratch);
    size_t used = strnlen(err->message, sizeof err->message);
    if (used < sizeof err->message) {
        /* Truncating the strerror suffix is acceptable; the code says it all. */
        if (snprintf(err->message + used, sizeof err->message - used, ": %s", reason) < 0) {
            err->message[used] = '\0';
        }
    }
    err->code = code;
    return code;
}

void md_error_clear(md_error *err)
{
    if (err == NULL) {
        return;
    }
    err->code = MD_OK;
    err->message[0] = '\0';
}

int md_error_prefix(md_error *err, int code, const char *what)
{
    if (err == NULL || what == NULL) {
        return code;
    }
    char original[MD_ERROR_MESSAGE_LEN];
    memcpy(original, err->message, sizeof original);
    original[sizeof original - 1] = '\0';
    return md_fail(err, code, "%s: %s", what, original);
}
