/* Results log: CRC-32C check value, append/parse, torn tails, corruption. */
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"
#include "mdcore.h"

int main(void)
{
    md_test_counts c = {0, 0};
    md_error err;
    md_error_clear(&err);

    /* the standard CRC-32C check value, in one call and chained */
    CHECK(&c, md_crc32c(0, "123456789", 9) == 0xe3069283u);
    CHECK(&c, md_crc32c(md_crc32c(0, "1234", 4), "56789", 5) == 0xe3069283u);
    CHECK(&c, md_crc32c(0, NULL, 0) == 0);
    {
        /* the fast path agrees with the table for every length and alignment */
        uint8_t bytes[300];
        int agree = 1;
        for (size_t i = 0; i < sizeof bytes; i++) {
            bytes[i] = (uint8_t)(i * 131u + 7u);
        }
        for (size_t start = 0; start < 9; start++) {
            for (size_t len = 0; start + len <= sizeof bytes; len++) {
                if (md_crc32c(0x1234u, bytes + start, len) !=
                    md_crc32c_portable(0x1234u, bytes + start, len)) {
                    agree = 0;
                }
            }
        }
        CHECK(&c, agree);
        CHECK(&c, md_crc32c_portable(0, "123456789", 9) == 0xe3069283u);
    }

    /* append three records to a file, read it back */
    char path[] = "/tmp/mdlogXXXXXX";
    int fd = mkstemp(path);
    CHECK(&c, fd >= 0);
    const char *recs[3] = {"first record", "second", "third, a little longer"};
    for (int i = 0; i < 3; i++) {
        CHECK(&c, md_log_append(fd, (const uint8_t *)recs[i], strlen(recs[i]), &err) == MD_OK);
    }
    CHECK(&c, md_log_append(fd, NULL, 0, &err) == MD_EARG);
    close(fd);
    md_buf file;
    md_buf_init(&file);
    CHECK(&c, md_store_read_from(path, 0, &file, &err) == MD_OK);
    size_t expect_len = 0;
    for (int i = 0; i < 3; i++) {
        expect_len += 8 + strlen(recs[i]);
    }
    CHECK(&c, file.len == expect_len);

    size_t pos = 0;
    int n = 0;
    int parse_ok = 1;
    for (;;) {
        const uint8_t *rec = NULL;
        size_t rec_len = 0, consumed = 0;
        int rc = md_log_parse(file.data + pos, file.len - pos, &rec, &rec_len, &consumed, &err);
        if (rc == 0) {
            break;
        }
        if (rc != 1 || n >= 3 || rec_len != strlen(recs[n]) || memcmp(rec, recs[n], rec_len) != 0) {
            parse_ok = 0;
            break;
        }
        pos += consumed;
        n++;
    }
    CHECK(&c, parse_ok && n == 3 && pos == file.len);

    /* reading from an offset appends only the rest */
    md_buf tail;
    md_buf_init(&tail);
    size_t first_len = 8 + strlen(recs[0]);
    CHECK(&c, md_store_read_from(path, first_len, &tail, &err) == MD_OK);
    CHECK(&c, tail.len == file.len - first_len && memcmp(tail.data, file.data + first_len, tail.len) == 0);
    md_buf_free(&tail);

    /* a torn tail at every length: whole records first, then 0 */
    int torn_ok = 1;
    for (size_t cut = 0; cut < file.len; cut++) {
        uint8_t *copy = malloc(cut > 0 ? cut : 1);
        memcpy(copy, file.data, cut);
        size_t at = 0;
        int whole = 0;
        int rc;
        for (;;) {
            const uint8_t *rec = NULL;
            size_t rec_len = 0, consumed = 0;
            rc = md_log_parse(copy + at, cut - at, &rec, &rec_len, &consumed, &err);
            if (rc != 1) {
                break;
            }
            at += consumed;
            whole++;
        }
        size_t boundary = 0;
        int expect_whole = 0;
        while (expect_whole < 3 && boundary + 8 + strlen(recs[expect_whole]) <= cut) {
            boundary += 8 + strlen(recs[expect_whole]);
            expect_whole++;
        }
        if (rc != 0 || whole != expect_whole || at != boundary) {
            torn_ok = 0;
        }
        free(copy);
    }
    CHECK(&c, torn_ok);

    /* a flipped byte in a complete record is corruption */
    const uint8_t *rec = NULL;
    size_t rec_len = 0, consumed = 0;
    file.data[8 + 3] ^= 0x20;
    CHECK(&c, md_log_parse(file.data, file.len, &rec, &rec_len, &consumed, &err) == MD_EFORMAT);
    CHECK(&c, strstr(err.message, "CRC") != NULL);
    file.data[8 + 3] ^= 0x20;
    file.data[5] ^= 0x01;   /* in the stored CRC */
    CHECK(&c, md_log_parse(file.data, file.len, &rec, &rec_len, &consumed, &err) == MD_EFORMAT);
    file.data[5] ^= 0x01;
    CHECK(&c, md_log_parse(file.data, file.len, &rec, &rec_len, &consumed, &err) == 1);

    /* a zero-filled tail is corruption, not endless empty records */
    const uint8_t zeros[16] = {0};
    CHECK(&c, md_log_parse(zeros, sizeof zeros, &rec, &rec_len, &consumed, &err) == MD_EFORMAT);
    const uint8_t wild[8] = {0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0};
    CHECK(&c, md_log_parse(wild, sizeof wild, &rec, &rec_len, &consumed, &err) == MD_EFORMAT);

    /* a bad fd */
    CHECK(&c, md_log_append(-1, (const uint8_t *)"x", 1, &err) == MD_EIO);
    CHECK(&c, strstr(err.message, ": Bad file descriptor") != NULL);

    unlink(path);
    md_buf_free(&file);
    return md_test_finish(&c);
}
