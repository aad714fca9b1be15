/* The append-only results log: records of length | CRC-32C | bytes. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
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
    uint8_t header[LOG_HEADER_LEN];
    md_put_be32(header, (uint32_t)len);
    md_put_be32(header + 4, md_crc32c(0, record, len));

    /* One writev(2) of header and record, no copy into a joined buffer (a
     * RESULTS envelope of a large batch is hundreds of KiB): with O_APPEND a
     * reader then sees either nothing of the record or all of it in the
     * common case. */
    size_t total = LOG_HEADER_LEN + len;
    size_t written = 0;
    while (written < total) {
        struct iovec rest[2];
        int count = 0;
        if (written < LOG_HEADER_LEN) {
            rest[count].iov_base = header + written;
            rest[count].iov_len = LOG_HEADER_LEN - written;
            count++;
            rest[count].iov_base = (void *)(uintptr_t)record;
            rest[count].iov_len = len;
            count++;
        } else {
            size_t done = written - LOG_HEADER_LEN;
            rest[count].iov_base = (void *)(uintptr_t)(record + done);
            rest[count].iov_len = len - done;
            count++;
        }
        ssize_t n = writev(fd, rest, count);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            return md_fail_errno(err, errno, "results log: write failed after %zu of %zu bytes",
                                 written, total);
        }
        written += (size_t)n;
    }
    return MD_OK;
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
