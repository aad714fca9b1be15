/* Job folder operations in a private mkdtemp folder. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "harness.h"
#include "mdcore.h"

static void remove_file(const char *dir, const char *name)
{
    char path[MD_PATH_MAX];
    if (md_path_join(path, sizeof path, dir, name, NULL) == MD_OK) {
        unlink(path);
    }
}

int main(void)
{
    md_test_counts c = {0, 0};
    md_error err;
    md_error_clear(&err);
    md_buf buf;
    md_buf_init(&buf);
    char dir[] = "/tmp/mdstoreXXXXXX";
    CHECK(&c, mkdtemp(dir) != NULL);

    /* paths */
    char path[MD_PATH_MAX];
    CHECK(&c, md_path_join(path, sizeof path, "/a/b", "c", &err) == MD_OK && strcmp(path, "/a/b/c") == 0);
    CHECK(&c, md_path_join(path, sizeof path, "/a/b/", "c", &err) == MD_OK && strcmp(path, "/a/b/c") == 0);
    char small[8];
    CHECK(&c, md_path_join(small, sizeof small, "/abc", "de", &err) == MD_OK && strcmp(small, "/abc/de") == 0);
    CHECK(&c, md_path_join(small, sizeof small, "/abc", "def", &err) == MD_ETOOBIG);
    char *long_dir = malloc(MD_PATH_MAX + 10);
    memset(long_dir, 'd', MD_PATH_MAX + 9);
    long_dir[MD_PATH_MAX + 9] = '\0';
    CHECK(&c, md_path_join(path, sizeof path, long_dir, "x", &err) == MD_ETOOBIG);
    CHECK(&c, md_store_read(long_dir, "x", &buf, &err) == MD_ETOOBIG);
    free(long_dir);
    CHECK(&c, md_shard_name(path, sizeof path, 42, &err) == MD_OK && strcmp(path, "tasks/00000042") == 0);
    CHECK(&c, md_shard_name(path, sizeof path, 123456789012ull, &err) == MD_OK &&
              strcmp(path, "tasks/123456789012") == 0);
    CHECK(&c, md_shard_name(small, sizeof small, 1, &err) == MD_ETOOBIG);

    /* atomic write creates, then replaces; no tmp file is left */
    CHECK(&c, md_store_write_atomic(dir, "job", (const uint8_t *)"one", 3, 0600, &err) == MD_OK);
    CHECK(&c, md_store_read(dir, "job", &buf, &err) == MD_OK && buf.len == 3 && memcmp(buf.data, "one", 3) == 0);
    CHECK(&c, md_store_write_atomic(dir, "job", (const uint8_t *)"second", 6, 0600, &err) == MD_OK);
    CHECK(&c, md_store_read(dir, "job", &buf, &err) == MD_OK && buf.len == 6 && memcmp(buf.data, "second", 6) == 0);
    char tmp_name[64];
    snprintf(tmp_name, sizeof tmp_name, "job.tmp.%ld", (long)getpid());
    CHECK(&c, md_path_join(path, sizeof path, dir, tmp_name, &err) == MD_OK && access(path, F_OK) != 0);

    /* a name inside a subfolder */
    CHECK(&c, md_store_mkdir(dir, MD_STORE_TASKS_DIR, 0700, 0, &err) == MD_OK);
    CHECK(&c, md_store_mkdir(dir, MD_STORE_TASKS_DIR, 0700, 0, &err) == MD_EEXIST);
    CHECK(&c, md_store_mkdir(dir, MD_STORE_TASKS_DIR, 0700, 1, &err) == MD_OK);
    CHECK(&c, md_store_mkdir(dir, "job", 0700, 1, &err) == MD_EEXIST);
    CHECK(&c, md_shard_name(path, sizeof path, 0, &err) == MD_OK);
    CHECK(&c, md_store_write_atomic(dir, path, (const uint8_t *)"shard", 5, 0600, &err) == MD_OK);
    CHECK(&c, md_store_read(dir, path, &buf, &err) == MD_OK && buf.len == 5);
    remove_file(dir, path);

    /* exclusive create */
    CHECK(&c, md_store_create_exclusive(dir, "cancel", (const uint8_t *)"x", 1, 0600, &err) == MD_OK);
    CHECK(&c, md_store_create_exclusive(dir, "cancel", (const uint8_t *)"y", 1, 0600, &err) == MD_EEXIST);
    CHECK(&c, md_store_read(dir, "cancel", &buf, &err) == MD_OK && buf.len == 1 && buf.data[0] == 'x');

    /* a spare folder's files: filled in place when there, created when not */
    CHECK(&c, md_store_fill_unsynced(dir, "cancel", (const uint8_t *)"yz", 2, 0600, &err) == MD_OK);
    CHECK(&c, md_store_read(dir, "cancel", &buf, &err) == MD_OK && buf.len == 2 && buf.data[1] == 'z');
    CHECK(&c, md_store_fill_unsynced(dir, "filled", (const uint8_t *)"new", 3, 0600, &err) == MD_OK);
    CHECK(&c, md_store_read(dir, "filled", &buf, &err) == MD_OK && buf.len == 3);
    remove_file(dir, "filled");
    CHECK(&c, md_store_create_unsynced(dir, "job.tmp", NULL, 0, 0600, &err) == MD_OK);
    CHECK(&c, md_store_replace_via(dir, "defined", "job.tmp", (const uint8_t *)"def", 3, 0600,
                                   &err) == MD_OK);
    CHECK(&c, md_store_read(dir, "defined", &buf, &err) == MD_OK && buf.len == 3);
    CHECK(&c, md_path_join(path, sizeof path, dir, "job.tmp", &err) == MD_OK && access(path, F_OK) != 0);
    CHECK(&c, md_store_replace_via(dir, "defined", "job.tmp", (const uint8_t *)"again", 5, 0600,
                                   &err) == MD_OK);  /* no temporary file there: made */
    CHECK(&c, md_store_read(dir, "defined", &buf, &err) == MD_OK && buf.len == 5);
    remove_file(dir, "defined");

    /* missing files */
    CHECK(&c, md_store_read(dir, "nothing", &buf, &err) == MD_ENOENT);
    CHECK(&c, strstr(err.message, "No such file or directory") != NULL);
    CHECK(&c, md_store_read_from("/nonexistent/x", 0, &buf, &err) == MD_ENOENT);

    /* a file read a piece at a time: appended to what the buffer holds */
    {
        int eof = -1;
        CHECK(&c, md_store_write_atomic(dir, "pieces", (const uint8_t *)"0123456789", 10, 0600,
                                        &err) == MD_OK);
        CHECK(&c, md_path_join(path, sizeof path, dir, "pieces", &err) == MD_OK);
        md_buf_clear(&buf);
        CHECK(&c, md_buf_append(&buf, "x", 1) == MD_OK);
        CHECK(&c, md_store_read_range(path, 2, 4, &buf, &eof, &err) == MD_OK);
        CHECK(&c, eof == 0 && buf.len == 5 && memcmp(buf.data, "x2345", 5) == 0);
        CHECK(&c, md_store_read_range(path, 6, 4, &buf, &eof, &err) == MD_OK);
        CHECK(&c, eof == 0 && buf.len == 9 && memcmp(buf.data, "x23456789", 9) == 0);
        CHECK(&c, md_store_read_range(path, 10, 4, &buf, &eof, &err) == MD_OK);
        CHECK(&c, eof == 1 && buf.len == 9);
        CHECK(&c, md_store_read_range(path, 8, 100, &buf, &eof, &err) == MD_OK);
        CHECK(&c, eof == 1 && buf.len == 11 && memcmp(buf.data + 9, "89", 2) == 0);
        CHECK(&c, md_store_read_range(path, 50, 4, &buf, &eof, &err) == MD_OK);
        CHECK(&c, eof == 1 && buf.len == 11);
        CHECK(&c, md_store_read_range(path, 0, 0, &buf, &eof, &err) == MD_EARG);
        CHECK(&c, md_store_read_range(path, (uint64_t)INT64_MAX + 1, 4, &buf, &eof, &err) == MD_EARG);
        CHECK(&c, md_store_read_range("/nonexistent/x", 0, 4, &buf, &eof, &err) == MD_ENOENT);
        CHECK(&c, buf.len == 11);
        remove_file(dir, "pieces");
    }

    /* the key: 0600 accepted, 0644 refused, wrong size refused */
    md_key key, read_back;
    CHECK(&c, md_key_generate(&key, &err) == MD_OK);
    CHECK(&c, md_store_read_key(dir, &read_back, &err) == MD_ENOENT);
    CHECK(&c, md_store_create_exclusive(dir, MD_STORE_KEY, key.bytes, MD_KEY_LEN, 0600, &err) == MD_OK);
    CHECK(&c, md_store_read_key(dir, &read_back, &err) == MD_OK);
    CHECK(&c, memcmp(key.bytes, read_back.bytes, MD_KEY_LEN) == 0);
    CHECK(&c, md_path_join(path, sizeof path, dir, MD_STORE_KEY, &err) == MD_OK);
    CHECK(&c, chmod(path, 0644) == 0);
    CHECK(&c, md_store_read_key(dir, &read_back, &err) == MD_EFORMAT);
    CHECK(&c, strstr(err.message, "0644") != NULL && strstr(err.message, "owner only") != NULL);
    CHECK(&c, chmod(path, 0400) == 0);
    CHECK(&c, md_store_read_key(dir, &read_back, &err) == MD_OK);
    CHECK(&c, chmod(path, 0600) == 0);
    CHECK(&c, md_store_write_atomic(dir, MD_STORE_KEY, key.bytes, MD_KEY_LEN - 1, 0600, &err) == MD_OK);
    CHECK(&c, md_store_read_key(dir, &read_back, &err) == MD_EFORMAT);
    CHECK(&c, md_store_write_atomic(dir, MD_STORE_KEY, key.bytes, MD_KEY_LEN, 0600, &err) == MD_OK);

    /* status round trip, authenticated */
    md_status st;
    memset(&st, 0, sizeof st);
    st.state = MD_STATE_RUNNING;
    st.start_time = md_wall_time();
    st.supervisor_pid = getpid();
    st.num_workers = 2;
    CHECK(&c, md_store_write_status(dir, &key, "job-1", &st, &err) == MD_OK);
    md_status got;
    CHECK(&c, md_store_read_status(dir, &key, "job-1", &buf, &got, &err) == MD_OK);
    CHECK(&c, got.state == MD_STATE_RUNNING && got.start_time == st.start_time);
    CHECK(&c, got.supervisor_pid == getpid() && got.num_workers == 2 && got.error.ptr == NULL);
    CHECK(&c, md_store_read_status(dir, &key, "job-2", &buf, &got, &err) == MD_EFORMAT);
    md_key other;
    CHECK(&c, md_key_generate(&other, &err) == MD_OK);
    CHECK(&c, md_store_read_status(dir, &other, "job-1", &buf, &got, &err) == MD_EMAC);
    st.state = MD_STATE_COMPLETED;
    st.end_time = st.start_time + 1.0;
    CHECK(&c, md_store_write_status(dir, &key, "job-1", &st, &err) == MD_OK);
    CHECK(&c, md_store_read_status(dir, &key, "job-1", &buf, &got, &err) == MD_OK);
    CHECK(&c, got.state == MD_STATE_COMPLETED && got.end_time == st.end_time);

    /* clocks */
    double m1 = md_monotonic_time();
    double m2 = md_monotonic_time();
    CHECK(&c, m2 >= m1 && m1 > 0.0 && md_wall_time() > 1.6e9);

    /* errno mapping */
    CHECK(&c, md_fail_errno(&err, ENOSPC, "writing %s", "x") == MD_ENOSPC);
    CHECK(&c, strcmp(err.message, "writing x: No space left on device") == 0);
    CHECK(&c, md_fail_errno(&err, EDQUOT, "q") == MD_ENOSPC);
    CHECK(&c, md_fail_errno(&err, EEXIST, "e") == MD_EEXIST);
    CHECK(&c, md_fail_errno(&err, EACCES, "a") == MD_EIO);
    CHECK(&c, md_fail_errno(NULL, ENOENT, "n") == MD_ENOENT);
    md_error_clear(&err);
    CHECK(&c, err.code == MD_OK && err.message[0] == '\0');

    /* clean up */
    remove_file(dir, MD_STORE_KEY);
    remove_file(dir, MD_STORE_STATUS);
    remove_file(dir, "job");
    remove_file(dir, "cancel");
    CHECK(&c, md_path_join(path, sizeof path, dir, MD_STORE_TASKS_DIR, &err) == MD_OK && rmdir(path) == 0);
    CHECK(&c, rmdir(dir) == 0);
    md_buf_free(&buf);
    return md_test_finish(&c);
}
