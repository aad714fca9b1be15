/* Job folder file operations: atomic replace, exclusive create, reads. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mdcore.h"

int md_path_join(char *out, size_t out_len, const char *dir, const char *name,
                 md_error *err)
{
    if (out == NULL || out_len == 0 || dir == NULL || name == NULL) {
        return md_fail(err, MD_EARG, "path: NULL argument");
    }
    size_t dir_len = strlen(dir);
    const char *sep = (dir_len > 0 && dir[dir_len - 1] != '/') ? "/" : "";
    int n = snprintf(out, out_len, "%s%s%s", dir, sep, name);
    if (n < 0 || (size_t)n >= out_len) {
        out[0] = '\0';
        return md_fail(err, MD_ETOOBIG, "path: %s/%s is longer than %zu bytes", dir, name,
                       out_len - 1);
    }
    return MD_OK;
}

int md_shard_name(char *out, size_t out_len, uint64_t shard, md_error *err)
{
    if (out == NULL || out_len == 0) {
        return md_fail(err, MD_EARG, "shard name: NULL argument");
    }
    int n = snprintf(out, out_len, MD_STORE_TASKS_DIR "/%08llu", (unsigned long long)shard);
    if (n < 0 || (size_t)n >= out_len) {
        out[0] = '\0';
        return md_fail(err, MD_ETOOBIG, "shard name: buffer of %zu bytes is too small", out_len);
    }
    return MD_OK;
}

static int write_all(int fd, const uint8_t *data, size_t len, const char *path, md_error *err)
{
    size_t done = 0;
    while (done < len) {
        ssize_t n = write(fd, data + done, len - done);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            return md_fail_errno(err, errno, "cannot write %s", path);
        }
        done += (size_t)n;
    }
    return MD_OK;
}

/* A rename or create is only durable once the folder holding the entry is
 * fsynced; path's folder is found from path itself because name may hold a
 * '/' (tasks/00000042). */
static int fsync_parent(const char *path, md_error *err)
{
    char parent[MD_PATH_MAX];
    const char *slash = strrchr(path, '/');
    size_t len = slash == NULL ? 0 : (size_t)(slash - path);
    if (slash == NULL) {
        parent[0] = '.';
        parent[1] = '\0';
    } else if (len == 0) {
        parent[0] = '/';
        parent[1] = '\0';
    } else {
        if (len >= sizeof parent) {
            return md_fail(err, MD_ETOOBIG, "path: %s is too long", path);
        }
        memcpy(parent, path, len);
        parent[len] = '\0';
    }
    int rc = MD_OK;
    int fd = open(parent, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) {
        return md_fail_errno(err, errno, "cannot open folder %s to sync it", parent);
    }
    if (fsync(fd) != 0) {
        rc = md_fail_errno(err, errno, "cannot sync folder %s", parent);
    }
    if (close(fd) != 0 && rc == MD_OK) {
        rc = md_fail_errno(err, errno, "cannot close folder %s", parent);
    }
    return rc;
}

/* Writes, fsyncs and closes an already open fd; closes it on error too. */
static int write_sync_close(int fd, const uint8_t *data, size_t len, const char *path,
                            md_error *err)
{
    int rc = write_all(fd, data, len, path, err);
    if (rc == MD_OK && fsync(fd) != 0) {
        rc = md_fail_errno(err, errno, "cannot sync %s", path);
    }
    if (close(fd) != 0 && rc == MD_OK) {
        rc = md_fail_errno(err, errno, "cannot close %s", path);
    }
    return rc;
}

int md_store_write_atomic(const char *dir, const char *name, const uint8_t *data,
                          size_t len, unsigned mode, md_error *err)
{
    return md_store_replace(dir, name, data, len, mode, 1, err);
}

static int replace_via(const char *path, const char *tmp, const uint8_t *data, size_t len,
                       unsigned mode, int sync, md_error *err);

int md_store_replace(const char *dir, const char *name, const uint8_t *data, size_t len,
                     unsigned mode, int sync, md_error *err)
{
    if (data == NULL && len != 0) {
        return md_fail(err, MD_EARG, "write: NULL data");
    }
    char path[MD_PATH_MAX];
    char tmp[MD_PATH_MAX];
    int rc = md_path_join(path, sizeof path, dir, name, err);
    if (rc != MD_OK) {
        return rc;
    }
    int n = snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
    if (n < 0 || (size_t)n >= sizeof tmp) {
        return md_fail(err, MD_ETOOBIG, "path: %s.tmp.<pid> is too long", path);
    }
    return replace_via(path, tmp, data, len, mode, sync, err);
}

int md_store_replace_via(const char *dir, const char *name, const char *tmp_name,
                         const uint8_t *data, size_t len, unsigned mode, md_error *err)
{
    if (data == NULL && len != 0) {
        return md_fail(err, MD_EARG, "write: NULL data");
    }
    char path[MD_PATH_MAX];
    char tmp[MD_PATH_MAX];
    int rc = md_path_join(path, sizeof path, dir, name, err);
    if (rc == MD_OK) {
        rc = md_path_join(tmp, sizeof tmp, dir, tmp_name, err);
    }
    if (rc != MD_OK) {
        return rc;
    }
    return replace_via(path, tmp, data, len, mode, 0, err);
}

static int replace_via(const char *path, const char *tmp, const uint8_t *data, size_t len,
                       unsigned mode, int sync, md_error *err)
{
    int rc = MD_OK;
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, (mode_t)mode);
    if (fd < 0) {
        return md_fail_errno(err, errno, "cannot create %s", tmp);
    }
    int created = 1;
    if (sync) {
        rc = write_sync_close(fd, data, len, tmp, err);
    } else {
        rc = write_all(fd, data, len, tmp, err);
        if (close(fd) != 0 && rc == MD_OK) {
            rc = md_fail_errno(err, errno, "cannot close %s", tmp);
        }
    }
    if (rc != MD_OK) {
        goto cleanup;
    }
    if (rename(tmp, path) != 0) {
        rc = md_fail_errno(err, errno, "cannot rename %s to %s", tmp, path);
        goto cleanup;
    }
    created = 0;
    if (sync) {
        rc = fsync_parent(path, err);
    }

cleanup:
    if (created) {
        /* Best effort: the original error is the one worth reporting, and a
         * stray tmp file is overwritten by the next attempt from this pid. */
        (void)unlink(tmp);
    }
    return rc;
}

/* O_EXCL create of dir/name (in_place: or the file there, truncated); with
 * sync, the file and then its folder are fsynced before success is reported. */
static int create_exclusive(const char *dir, const char *name, const uint8_t *data,
                            size_t len, unsigned mode, int sync, int in_place, md_error *err)
{
    if (data == NULL && len != 0) {
        return md_fail(err, MD_EARG, "create: NULL data");
    }
    char path[MD_PATH_MAX];
    int rc = md_path_join(path, sizeof path, dir, name, err);
    if (rc != MD_OK) {
        return rc;
    }
    int fd = open(path, O_WRONLY | O_CREAT | (in_place ? O_TRUNC : O_EXCL) | O_CLOEXEC | O_NOFOLLOW,
                  (mode_t)mode);
    if (fd < 0) {
        if (errno == EEXIST) {
            return md_fail(err, MD_EEXIST, "%s already exists", path);
        }
        return md_fail_errno(err, errno, "cannot create %s", path);
    }
    if (sync) {
        rc = write_sync_close(fd, data, len, path, err);
        if (rc == MD_OK) {
            rc = fsync_parent(path, err);
        }
    } else {
        rc = write_all(fd, data, len, path, err);
        if (close(fd) != 0 && rc == MD_OK) {
            rc = md_fail_errno(err, errno, "cannot close %s", path);
        }
    }
    if (rc != MD_OK) {
        /* Best effort: a half-written file must not pass for a created one;
         * the error already reported is the one that matters. */
        (void)unlink(path);
    }
    return rc;
}

int md_store_create_exclusive(const char *dir, const char *name, const uint8_t *data,
                              size_t len, unsigned mode, md_error *err)
{
    return create_exclusive(dir, name, data, len, mode, 1, 0, err);
}

int md_store_create_unsynced(const char *dir, const char *name, const uint8_t *data,
                             size_t len, unsigned mode, md_error *err)
{
    return create_exclusive(dir, name, data, len, mode, 0, 0, err);
}

int md_store_fill_unsynced(const char *dir, const char *name, const uint8_t *data, size_t len,
                           unsigned mode, md_error *err)
{
    return create_exclusive(dir, name, data, len, mode, 0, 1, err);
}

int md_store_sync_dir(const char *dir, md_error *err)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) {
        return md_fail_errno(err, errno, "cannot open folder %s to sync it", dir);
    }
    int rc = MD_OK;
    if (fsync(fd) != 0) {
        rc = md_fail_errno(err, errno, "cannot sync folder %s", dir);
    }
    close(fd);
    return rc;
}

int md_store_sync_file(const char *dir, const char *name, md_error *err)
{
    char path[MD_PATH_MAX];
    int rc = md_path_join(path, sizeof path, dir, name, err);
    if (rc != MD_OK) {
        return rc;
    }
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) {
        return md_fail_errno(err, errno, "cannot open %s to sync it", path);
    }
    if (fsync(fd) != 0) {
        rc = md_fail_errno(err, errno, "cannot sync %s", path);
    }
    if (close(fd) != 0 && rc == MD_OK) {
        rc = md_fail_errno(err, errno, "cannot close %s", path);
    }
    return rc;
}

/* Appends fd's bytes from its current position to EOF. */
static int read_to_end(int fd, md_buf *out, const char *path, md_error *err)
{
    for (;;) {
        if (md_buf_reserve(out, 65536) != MD_OK) {
            return md_fail(err, MD_ENOMEM, "out of memory reading %s", path);
        }
        ssize_t n = read(fd, out->data + out->len, out->cap - out->len);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            return md_fail_errno(err, errno, "cannot read %s", path);
        }
        if (n == 0) {
            return MD_OK;
        }
        out->len += (size_t)n;
    }
}

static int read_path_from(const char *path, uint64_t offset, md_buf *out, md_error *err)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        return md_fail_errno(err, errno, "cannot open %s", path);
    }
    int rc = MD_OK;
    if (offset > (uint64_t)INT64_MAX) {
        rc = md_fail(err, MD_EARG, "read %s: offset %llu is too large", path,
                     (unsigned long long)offset);
    } else if (offset > 0 && lseek(fd, (off_t)offset, SEEK_SET) < 0) {
        rc = md_fail_errno(err, errno, "cannot seek in %s", path);
    } else {
        rc = read_to_end(fd, out, path, err);
    }
    if (close(fd) != 0 && rc == MD_OK) {
        rc = md_fail_errno(err, errno, "cannot close %s", path);
    }
    return rc;
}

int md_store_read(const char *dir, const char *name, md_buf *out, md_error *err)
{
    if (out == NULL) {
        return md_fail(err, MD_EARG, "read: NULL buffer");
    }
    char path[MD_PATH_MAX];
    int rc = md_path_join(path, sizeof path, dir, name, err);
    if (rc != MD_OK) {
        return rc;
    }
    md_buf_clear(out);
    rc = read_path_from(path, 0, out, err);
    if (rc != MD_OK) {
        md_buf_clear(out);
    }
    return rc;
}

int md_store_read_from(const char *path, uint64_t offset, md_buf *out, md_error *err)
{
    if (path == NULL || out == NULL) {
        return md_fail(err, MD_EARG, "read: NULL argument");
    }
    size_t original_len = out->len;
    int rc = read_path_from(path, offset, out, err);
    if (rc != MD_OK) {
        out->len = original_len;
    }
    return rc;
}

int md_store_read_range(const char *path, uint64_t offset, size_t max, md_buf *out, int *eof,
                        md_error *err)
{
    if (path == NULL || out == NULL || eof == NULL || max == 0) {
        return md_fail(err, MD_EARG, "read range: NULL argument or no bytes asked for");
    }
    if (offset > (uint64_t)INT64_MAX) {
        return md_fail(err, MD_EARG, "read %s: offset %llu is too large", path,
                       (unsigned long long)offset);
    }
    *eof = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        return md_fail_errno(err, errno, "cannot open %s", path);
    }
    int rc = MD_OK;
    size_t got = 0;
    struct stat st;
    if (fstat(fd, &st) != 0) {
        rc = md_fail_errno(err, errno, "cannot stat %s", path);
        goto cleanup;
    }
    /* Only what the file holds is reserved: a buffer of max bytes for a short
     * file would be a large allocation for nothing (and glibc, once such a
     * block is freed, serves later large ones from the heap, which keeps
     * them resident). Bytes appended after the fstat are left for the next
     * read. */
    uint64_t size = st.st_size > 0 ? (uint64_t)st.st_size : 0;
    size_t want = size <= offset ? 0 : (size - offset < max ? (size_t)(size - offset) : max);
    if (want > 0 && md_buf_reserve(out, want) != MD_OK) {
        rc = md_fail(err, MD_ENOMEM, "out of memory reading %s", path);
        goto cleanup;
    }
    while (got < want) {
        ssize_t n = pread(fd, out->data + out->len + got, want - got, (off_t)(offset + got));
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            rc = md_fail_errno(err, errno, "cannot read %s", path);
            goto cleanup;
        }
        if (n == 0) {
            break;   /* cut short since the fstat */
        }
        got += (size_t)n;
    }
    *eof = got < max;
cleanup:
    if (close(fd) != 0 && rc == MD_OK) {
        rc = md_fail_errno(err, errno, "cannot close %s", path);
    }
    if (rc == MD_OK) {
        out->len += got;
    } else {
        *eof = 0;
    }
    return rc;
}

int md_store_mkdir(const char *dir, const char *name, unsigned mode, int exists_ok,
                   md_error *err)
{
    char path[MD_PATH_MAX];
    int rc = md_path_join(path, sizeof path, dir, name, err);
    if (rc != MD_OK) {
        return rc;
    }
    if (mkdir(path, (mode_t)mode) == 0) {
        return MD_OK;
    }
    int saved = errno;
    if (saved == EEXIST && exists_ok) {
        struct stat st;
        if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) {
            return MD_OK;
        }
        return md_fail(err, MD_EEXIST, "%s exists and is not a folder", path);
    }
    return md_fail_errno(err, saved, "cannot create folder %s", path);
}

int md_store_read_key(const char *dir, md_key *key, md_error *err)
{
    if (key == NULL) {
        return md_fail(err, MD_EARG, "key: NULL argument");
    }
    char path[MD_PATH_MAX];
    int rc = md_path_join(path, sizeof path, dir, MD_STORE_KEY, err);
    if (rc != MD_OK) {
        return rc;
    }
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) {
        return md_fail_errno(err, errno, "cannot open the job key %s", path);
    }
    struct stat st;
    uint8_t bytes[MD_KEY_LEN + 1];
    size_t got = 0;
    if (fstat(fd, &st) != 0) {
        rc = md_fail_errno(err, errno, "cannot stat the job key %s", path);
        goto cleanup;
    }
    if (!S_ISREG(st.st_mode)) {
        rc = md_fail(err, MD_EFORMAT, "the job key %s is not a regular file", path);
        goto cleanup;
    }
    /* A key others can read lets them forge envelopes, including pickles
     * that the workers would load. */
    if ((st.st_mode & 077) != 0) {
        rc = md_fail(err, MD_EFORMAT,
                     "the job key %s has mode %04o: it must be readable by its owner only "
                     "(0600); refusing to use a key others may have read",
                     path, (unsigned)(st.st_mode & 07777));
        goto cleanup;
    }
    /* One byte more than a key, to tell "exactly 32" from "at least 32". */
    while (got < sizeof bytes) {
        ssize_t n = read(fd, bytes + got, sizeof bytes - got);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            rc = md_fail_errno(err, errno, "cannot read the job key %s", path);
            goto cleanup;
        }
        if (n == 0) {
            break;
        }
        got += (size_t)n;
    }
    if (got != MD_KEY_LEN) {
        rc = md_fail(err, MD_EFORMAT, "the job key %s is not exactly %u bytes", path, MD_KEY_LEN);
        goto cleanup;
    }
    memcpy(key->bytes, bytes, MD_KEY_LEN);

cleanup:
    if (close(fd) != 0 && rc == MD_OK) {
        rc = md_fail_errno(err, errno, "cannot close the job key %s", path);
    }
    return rc;
}

int md_store_read_status(const char *dir, const md_key *key, const char *job_id,
                         md_buf *scratch, md_status *out, md_error *err)
{
    if (key == NULL || job_id == NULL || scratch == NULL || out == NULL) {
        return md_fail(err, MD_EARG, "status: NULL argument");
    }
    md_envelope env;
    int rc = md_store_read(dir, MD_STORE_STATUS, scratch, err);
    if (rc != MD_OK) {
        return rc;
    }
    rc = md_envelope_decode(key, scratch->data, scratch->len, &env, err);
    if (rc == MD_OK) {
        rc = md_envelope_expect(&env, MD_KIND_STATUS, job_id, err);
    }
    if (rc == MD_OK) {
        rc = md_status_decode(env.payload, env.payload_len, out, err);
    }
    return rc == MD_OK ? rc : md_error_prefix(err, rc, "file '" MD_STORE_STATUS "'");
}

int md_store_write_status(const char *dir, const md_key *key, const char *job_id,
                          const md_status *status, md_error *err)
{
    return md_store_write_status_ex(dir, key, job_id, status, 1, err);
}

static int write_status(const char *dir, const md_key *key, const char *job_id,
                        const md_status *status, const char *tmp_name, int sync, md_error *err);

int md_store_write_status_ex(const char *dir, const md_key *key, const char *job_id,
                             const md_status *status, int sync, md_error *err)
{
    return write_status(dir, key, job_id, status, NULL, sync, err);
}

int md_store_write_status_via(const char *dir, const md_key *key, const char *job_id,
                              const md_status *status, const char *tmp_name, md_error *err)
{
    return write_status(dir, key, job_id, status, tmp_name, 0, err);
}

static int write_status(const char *dir, const md_key *key, const char *job_id,
                        const md_status *status, const char *tmp_name, int sync, md_error *err)
{
    if (key == NULL || job_id == NULL || status == NULL) {
        return md_fail(err, MD_EARG, "status: NULL argument");
    }
    int rc = MD_OK;
    md_buf payload;
    md_buf envelope;
    md_buf_init(&payload);
    md_buf_init(&envelope);
    md_envelope env;
    memset(&env, 0, sizeof env);

    rc = md_status_encode(status, &payload, err);
    if (rc != MD_OK) {
        goto cleanup;
    }
    env.kind = MD_KIND_STATUS;
    env.job_id = job_id;
    env.job_id_len = strnlen(job_id, MD_JOB_ID_MAX + 1);
    env.payload = payload.data;
    env.payload_len = payload.len;
    rc = md_envelope_encode(key, &env, &envelope, err);
    if (rc != MD_OK) {
        goto cleanup;
    }
    rc = tmp_name != NULL ? md_store_replace_via(dir, MD_STORE_STATUS, tmp_name, envelope.data,
                                                 envelope.len, 0600, err)
                          : md_store_replace(dir, MD_STORE_STATUS, envelope.data, envelope.len,
                                             0600, sync, err);

cleanup:
    md_buf_free(&envelope);
    md_buf_free(&payload);
    return rc;
}
