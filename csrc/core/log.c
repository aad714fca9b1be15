/* The append-only results log: records of length | CRC-32C | bytes. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mdcore.h"

#define LOG_HEADER_LEN 8u


int md_log_append(int fd, const uint8_t *record, size_t len, md_error *err)
{
    if (record == NULL || len == 0) {
        return md_fail(err, MD_EARG, "results log: empty record");
    }
    if (len > MD_LOG_RECORD_MAX) {
        return md_fail(err, MD_ETOOBIG, "results log: a %zu-byte record is over the limit of %zu",
                       len, MD_LOG_RECORD_MAX);
    }
    int rc = MD_OK;
    uint8_t *whole = NULL;
    size_t total = LOG_HEADER_LEN + len;

    /* One buffer, one write(2): with O_APPEND a reader then sees either
     * nothing of the record or all of it in the common case. */
    whole = malloc(total);
    if (whole == NULL) {
        rc = md_fail(err, MD_ENOMEM, "results log: out of memory for a %zu-byte record", len);
        goto cleanup;
    }
    md_put_be32(whole, (uint32_t)len);
    md_put_be32(whole + 4, md_crc32c(0, record, len));
    memcpy(whole + LOG_HEADER_LEN, record, len);

    size_t written = 0;
    while (written < total) {
        ssize_t n = write(fd, whole + written, total - written);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            rc = md_fail_errno(err, errno, "results log: write failed after %zu of %zu bytes",
                               written, total);
            goto cleanup;
        }
        written += (size_t)n;
    }

cleanup:
    free(whole);
    return rc;
}

int md_log_parse(const uint8_t *data, size_t len, const uint8_t **record,
                 size_t *record_len, size_t *consumed, md_error *err)
{
    if ((data == NULL && len != 0) || record == NULL || record_len == NULL || consumed == NULL) {
        return md_fail(err, MD_EARG, "results log: NULL argument");
    }
    if (len < LOG_HEADER_LEN) {
        return 0;
    }
    size_t body = md_get_be32(data);
    uint32_t crc = md_get_be32(data + 4);
    /* Neither is ever written, so they are corruption, not a tail still being
     * written: a zero-filled tail would otherwise parse as endless empty
     * records, and a wild length would make readers wait forever. */
    if (body == 0) {
        return md_fail(err, MD_EFORMAT, "results log: zero-length record (corrupt log)");
    }
    if (body > MD_LOG_RECORD_MAX) {
        return md_fail(err, MD_EFORMAT, "results log: record length %zu is over the limit (corrupt log)",
                       body);
    }
    if (body > len - LOG_HEADER_LEN) {
        return 0;
    }
    const uint8_t *bytes = data + LOG_HEADER_LEN;
    uint32_t actual = md_crc32c(0, bytes, body);
    if (actual != crc) {
        return md_fail(err, MD_EFORMAT,
                       "results log: CRC mismatch in a %zu-byte record (stored %08x, computed %08x): "
                       "the log is corrupt", body, (unsigned)crc, (unsigned)actual);
    }
    *record = bytes;
    *record_len = body;
    *consumed = LOG_HEADER_LEN + body;
    return 1;
}
