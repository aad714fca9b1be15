/* Blobs (md_blob_write / md_blob_read) and the out-of-band wrapper, in a
 * private mkdtemp folder.  Sizes on both sides of the MAC thread's threshold. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "harness.h"
#include "mdcore.h"

static int blob_path(const char *dir, const md_blob_ref *ref, char *out, size_t out_len)
{
    char name[64];
    return md_blob_name(ref, name, sizeof name, NULL) == MD_OK &&
           md_path_join(out, out_len, dir, name, NULL) == MD_OK;
}

static int flip_byte(const char *path, off_t offset)
{
    uint8_t byte = 0;
    int fd = open(path, O_RDWR);
    if (fd < 0) {
        return 0;
    }
    int ok = pread(fd, &byte, 1, offset) == 1;
    byte ^= 0x01;
    ok = ok && pwrite(fd, &byte, 1, offset) == 1;
    return close(fd) == 0 && ok;
}

static void check_size(md_test_counts *c, const char *dir, size_t len)
{
    md_key key;
    md_key other;
    md_blob_ref ref;
    md_blob_ref ref2;
    md_error err;
    char path[MD_PATH_MAX];
    char path2[MD_PATH_MAX];
    uint8_t tag[MD_BLOB_TAG_LEN];
    uint8_t *data = malloc(len + 1);
    uint8_t *back = malloc(len + 1);
    CHECK(c, data != NULL && back != NULL);
    if (data == NULL || back == NULL) {
        free(data);
        free(back);
        return;
    }
    for (size_t i = 0; i < len; i++) {
        data[i] = (uint8_t)(i * 131u + (i >> 13));
    }
    memset(&key, 7, sizeof key);
    memset(&other, 8, sizeof other);

    /* round trip, and the tag is md_blob_tag's */
    CHECK(c, md_blob_write(dir, &key, data, len, &ref, &err) == MD_OK);
    CHECK(c, ref.length == len);
    CHECK(c, md_blob_tag(&key, ref.nonce, data, len, tag, &err) == MD_OK &&
                 memcmp(tag, ref.tag, MD_BLOB_TAG_LEN) == 0);
    memset(back, 0, len + 1);
    CHECK(c, md_blob_read(dir, &key, &ref, back, &err) == MD_OK && memcmp(back, data, len) == 0);
    CHECK(c, blob_path(dir, &ref, path, sizeof path));
    struct stat st;
    CHECK(c, stat(path, &st) == 0 && (size_t)st.st_size == len && (st.st_mode & 0777) == 0600);

    /* another key, another nonce or another tag: refused */
    CHECK(c, md_blob_read(dir, &other, &ref, back, &err) == MD_EMAC);
    md_blob_ref bad = ref;
    bad.tag[0] ^= 1;
    CHECK(c, md_blob_read(dir, &key, &bad, back, &err) == MD_EMAC);

    /* a second blob swapped in under the first one's name: refused */
    data[0] ^= 0xff;
    CHECK(c, md_blob_write(dir, &key, data, len, &ref2, &err) == MD_OK);
    CHECK(c, memcmp(ref.nonce, ref2.nonce, MD_BLOB_NONCE_LEN) != 0);
    CHECK(c, blob_path(dir, &ref2, path2, sizeof path2));
    CHECK(c, rename(path2, path) == 0);
    CHECK(c, md_blob_read(dir, &key, &ref, back, &err) == MD_EMAC);
    CHECK(c, strstr(err.message, "tampered") != NULL);
    CHECK(c, unlink(path) == 0);

    /* a flipped byte near the end (after the MAC thread's first steps) */
    data[0] ^= 0xff;
    CHECK(c, md_blob_write(dir, &key, data, len, &ref, &err) == MD_OK);
    CHECK(c, blob_path(dir, &ref, path, sizeof path));
    CHECK(c, flip_byte(path, (off_t)(len - 1)));
    CHECK(c, md_blob_read(dir, &key, &ref, back, &err) == MD_EMAC);
    CHECK(c, unlink(path) == 0);

    /* cut short, made longer, gone */
    CHECK(c, md_blob_write(dir, &key, data, len, &ref, &err) == MD_OK);
    CHECK(c, blob_path(dir, &ref, path, sizeof path));
    CHECK(c, truncate(path, (off_t)(len - 1)) == 0);
    CHECK(c, md_blob_read(dir, &key, &ref, back, &err) == MD_EMAC);
    CHECK(c, truncate(path, (off_t)(len + 1)) == 0);
    CHECK(c, md_blob_read(dir, &key, &ref, back, &err) == MD_EMAC);
    CHECK(c, unlink(path) == 0);
    CHECK(c, md_blob_read(dir, &key, &ref, back, &err) == MD_ENOENT);
    free(data);
    free(back);
}

static int count_visit(void *ctx, size_t index, const md_blob_ref *ref)
{
    md_blob_ref *seen = ctx;
    seen[index] = *ref;
    return 0;
}

static void check_wrapper(md_test_counts *c)
{
    md_buf out;
    md_error err;
    md_blob_ref refs[2];
    md_blob_ref seen[2];
    const uint8_t pickle[] = {0x80, 0x05, 0x97, 0x98, '.'};
    const uint8_t *inner = NULL;
    size_t inner_len = 0;
    size_t count = 0;

    md_buf_init(&out);
    memset(refs, 0, sizeof refs);
    refs[0].length = 5;
    refs[0].nonce[0] = 1;
    refs[0].tag[15] = 2;
    refs[0].readonly = 1;
    refs[1].length = (uint64_t)1 << 33;
    refs[1].nonce[15] = 3;
    CHECK(c, md_oob_encode(pickle, sizeof pickle, refs, 2, &out, &err) == MD_OK);
    CHECK(c, md_oob_is(out.data, out.len));
    CHECK(c, !md_oob_is(pickle, sizeof pickle));
    memset(seen, 0, sizeof seen);
    CHECK(c, md_oob_decode(out.data, out.len, &inner, &inner_len, count_visit, seen, &count,
                           &err) == MD_OK);
    CHECK(c, count == 2 && inner_len == sizeof pickle && memcmp(inner, pickle, sizeof pickle) == 0);
    CHECK(c, seen[0].length == refs[0].length && seen[0].readonly == 1 &&
                 memcmp(seen[0].nonce, refs[0].nonce, MD_BLOB_NONCE_LEN) == 0 &&
                 memcmp(seen[0].tag, refs[0].tag, MD_BLOB_TAG_LEN) == 0);
    CHECK(c, seen[1].length == refs[1].length && seen[1].readonly == 0 &&
                 memcmp(seen[1].nonce, refs[1].nonce, MD_BLOB_NONCE_LEN) == 0);

    /* every cut of a valid wrapper is refused, never read past */
    for (size_t cut = 0; cut < out.len; cut++) {
        CHECK(c, md_oob_decode(out.data, cut, &inner, &inner_len, NULL, NULL, NULL, &err) != MD_OK);
    }
    /* a length over MD_BLOB_MAX is refused */
    md_buf_clear(&out);
    refs[1].length = MD_BLOB_MAX + 1;
    CHECK(c, md_oob_encode(pickle, sizeof pickle, refs, 2, &out, &err) == MD_OK);
    CHECK(c, md_oob_decode(out.data, out.len, &inner, &inner_len, NULL, NULL, NULL, &err) ==
                 MD_EFORMAT);
    md_buf_free(&out);
}

int main(void)
{
    md_test_counts c = {0, 0};
    md_error err;
    char dir[] = "/tmp/mdblobXXXXXX";
    CHECK(&c, mkdtemp(dir) != NULL);
    /* the first blob makes the blobs folder (a job whose arguments had none) */
    md_key key;
    md_blob_ref ref;
    char path[MD_PATH_MAX];
    memset(&key, 1, sizeof key);
    CHECK(&c, md_blob_write(dir, &key, (const uint8_t *)"x", 1, &ref, &err) == MD_OK);
    CHECK(&c, blob_path(dir, &ref, path, sizeof path) && unlink(path) == 0);
    check_size(&c, dir, 1);
    check_size(&c, dir, (size_t)3 << 20);           /* MAC inline */
    check_size(&c, dir, ((size_t)9 << 20) + 12345);   /* MAC on the second thread */
    check_wrapper(&c);
    /* every blob was renamed over or removed by check_size: the folders are empty */
    char blobs[MD_PATH_MAX];
    CHECK(&c, md_path_join(blobs, sizeof blobs, dir, MD_STORE_BLOBS_DIR, &err) == MD_OK);
    CHECK(&c, rmdir(blobs) == 0 && rmdir(dir) == 0);
    return md_test_finish(&c);
}
