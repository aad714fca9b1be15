/* Length-prefixed frames over file descriptors (the supervisor/worker socket). */
#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "mdcore.h"

#define FRAME_HEADER_LEN 4u
/* Grow the read buffer as bytes arrive rather than trusting the announced
 * length up front, so a peer cannot make us allocate max_len by lying. */
#define FRAME_READ_STEP ((size_t)1 << 20)


static size_t effective_max(size_t max_len)
{
    return max_len > MD_FRAME_MAX ? MD_FRAME_MAX : max_len;
}

/* A write failure because the peer went away is the "closed" case the
 * supervisor handles by replacing the worker, not an I/O error. */
static int write_failure(md_error *err, int errno_value)
{
    if (errno_value == EPIPE || errno_value == ECONNRESET) {
        return md_fail(err, MD_ECLOSED, "frame: the peer closed the connection");
    }
    return md_fail_errno(err, errno_value, "frame: write failed");
}

int md_frame_write(int fd, const uint8_t *data, size_t len, md_error *err)
{
    if (data == NULL && len != 0) {
        return md_fail(err, MD_EARG, "frame: NULL data");
    }
    if (len > MD_FRAME_MAX) {
        return md_fail(err, MD_ETOOBIG, "frame: %zu bytes is over the frame limit of %zu",
                       len, MD_FRAME_MAX);
    }
    uint8_t header[FRAME_HEADER_LEN];
    md_put_be32(header, (uint32_t)len);
    struct iovec iov[2] = {
        {.iov_base = header, .iov_len = sizeof header},
        {.iov_base = (void *)(uintptr_t)data, .iov_len = len},
    };
    struct iovec *cur = iov;
    int iov_count = len > 0 ? 2 : 1;
    /* sendmsg with MSG_NOSIGNAL so a dead worker gives EPIPE instead of
     * killing the sender with SIGPIPE; plain writev for non-sockets. */
    int use_send = 1;
    while (iov_count > 0) {
        ssize_t n;
        if (use_send) {
            struct msghdr msg = {0};
            msg.msg_iov = cur;
            msg.msg_iovlen = (size_t)iov_count;
            n = sendmsg(fd, &msg, MSG_NOSIGNAL);
            if (n < 0 && errno == ENOTSOCK) {
                use_send = 0;
                continue;
            }
        } else {
            n = writev(fd, cur, iov_count);
        }
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            return write_failure(err, errno);
        }
        size_t done = (size_t)n;
        while (iov_count > 0 && done >= cur->iov_len) {
            done -= cur->iov_len;
            cur++;
            iov_count--;
        }
        if (iov_count > 0) {
            cur->iov_base = (uint8_t *)cur->iov_base + done;
            cur->iov_len -= done;
        }
    }
    return MD_OK;
}

/* Reads exactly len bytes.  Returns MD_OK, MD_ECLOSED on EOF (with *got
 * bytes read before it), or an error. */
static int read_exact(int fd, uint8_t *dst, size_t len, size_t *got, md_error *err)
{
    *got = 0;
    while (*got < len) {
        ssize_t n = read(fd, dst + *got, len - *got);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            if (errno == ECONNRESET) {
                return MD_ECLOSED;
            }
            return md_fail_errno(err, errno, "frame: read failed");
        }
        if (n == 0) {
            return MD_ECLOSED;
        }
        *got += (size_t)n;
    }
    return MD_OK;
}

int md_frame_read(int fd, md_buf *out, size_t max_len, md_error *err)
{
    if (out == NULL) {
        return md_fail(err, MD_EARG, "frame: NULL buffer");
    }
    md_buf_clear(out);
    uint8_t header[FRAME_HEADER_LEN];
    size_t got = 0;
    int rc = read_exact(fd, header, sizeof header, &got, err);
    if (rc == MD_ECLOSED) {
        if (got == 0) {
            return md_fail(err, MD_ECLOSED, "frame: the peer closed the connection");
        }
        return md_fail(err, MD_ETRUNCATED, "frame: connection closed inside a frame header");
    }
    if (rc != MD_OK) {
        return rc;
    }
    size_t len = md_get_be32(header);
    if (len > effective_max(max_len)) {
        return md_fail(err, MD_ETOOBIG, "frame: announced length %zu is over the limit of %zu",
                       len, effective_max(max_len));
    }
    size_t remaining = len;
    while (remaining > 0) {
        size_t chunk = remaining < FRAME_READ_STEP ? remaining : FRAME_READ_STEP;
        if (md_buf_reserve(out, chunk) != MD_OK) {
            return md_fail(err, MD_ENOMEM, "frame: out of memory for a %zu-byte frame", len);
        }
        rc = read_exact(fd, out->data + out->len, chunk, &got, err);
        out->len += got;
        if (rc == MD_ECLOSED) {
            return md_fail(err, MD_ETRUNCATED,
                           "frame: connection closed after %zu of %zu bytes", out->len, len);
        }
        if (rc != MD_OK) {
            return rc;
        }
        remaining -= chunk;
    }
    return MD_OK;
}

int md_frame_parse(const uint8_t *data, size_t len, size_t max_len,
                   const uint8_t **frame, size_t *frame_len, size_t *consumed,
                   md_error *err)
{
    if ((data == NULL && len != 0) || frame == NULL || frame_len == NULL || consumed == NULL) {
        return md_fail(err, MD_EARG, "frame: NULL argument");
    }
    if (len < FRAME_HEADER_LEN) {
        return 0;
    }
    size_t body = md_get_be32(data);
    if (body > effective_max(max_len)) {
        return md_fail(err, MD_ETOOBIG, "frame: announced length %zu is over the limit of %zu",
                       body, effective_max(max_len));
    }
    if (body > len - FRAME_HEADER_LEN) {
        return 0;
    }
    *frame = data + FRAME_HEADER_LEN;
    *frame_len = body;
    *consumed = FRAME_HEADER_LEN + body;
    return 1;
}

int md_pool_request_parse(const uint8_t *data, size_t len, md_pool_request *out,
                          md_error *err)
{
    if (out == NULL || (data == NULL && len != 0)) {
        return md_fail(err, MD_EARG, "pool request: NULL argument");
    }
    if (len == 0) {
        return 0;
    }
    memset(out, 0, sizeof(*out));
    if (data[0] == MD_POOL_STOP) {
        out->op = MD_POOL_STOP;
        return 1;
    }
    if (data[0] != MD_POOL_RUN) {
        return md_fail(err, MD_EFORMAT, "pool request: unknown operation 0x%02x", data[0]);
    }
    if (len < 5) {
        return 0;
    }
    uint32_t path_len = md_get_be32(data + 1);
    if (path_len == 0 || path_len >= MD_PATH_MAX) {
        return md_fail(err, MD_EFORMAT, "pool request: a path of %u bytes (1 to %u allowed)",
                       path_len, MD_PATH_MAX - 1);
    }
    if (len - 5 < path_len) {
        return 0;
    }
    const char *path = (const char *)data + 5;
    if (path[0] != '/' || memchr(path, '\0', path_len) != NULL) {
        return md_fail(err, MD_EFORMAT, "pool request: the job folder must be an absolute path "
                       "without NUL");
    }
    out->op = MD_POOL_RUN;
    out->path.ptr = path;
    out->path.len = path_len;
    return 1;
}

int md_pool_request_encode(char op, const char *path, md_buf *out, md_error *err)
{
    if (out == NULL || (op == MD_POOL_RUN) == (path == NULL) ||
        (op != MD_POOL_RUN && op != MD_POOL_STOP)) {
        return md_fail(err, MD_EARG, "pool request: bad arguments");
    }
    uint8_t head[5] = {(uint8_t)op, 0, 0, 0, 0};
    if (op == MD_POOL_STOP) {
        return md_buf_append(out, head, 1) == MD_OK
                   ? MD_OK
                   : md_fail(err, MD_ENOMEM, "pool request: out of memory");
    }
    size_t path_len = strlen(path);
    if (path_len == 0 || path_len >= MD_PATH_MAX || path[0] != '/') {
        return md_fail(err, MD_EARG, "pool request: the job folder must be an absolute path "
                       "of at most %u bytes", MD_PATH_MAX - 1);
    }
    md_put_be32(head + 1, (uint32_t)path_len);
    size_t original_len = out->len;
    if (md_buf_append(out, head, sizeof(head)) != MD_OK ||
        md_buf_append(out, (const uint8_t *)path, path_len) != MD_OK) {
        out->len = original_len;
        return md_fail(err, MD_ENOMEM, "pool request: out of memory");
    }
    return MD_OK;
}
