/* Frames over a socketpair and a pipe, EOF cases, and the pure parser. */
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"
#include "mdcore.h"

static int write_raw(int fd, const void *data, size_t len)
{
    return write(fd, data, len) == (ssize_t)len ? 0 : -1;
}

int main(void)
{
    md_test_counts c = {0, 0};
    md_error err;
    md_error_clear(&err);
    md_buf in;
    md_buf_init(&in);
    int sv[2];

    /* round trip over a socketpair, including an empty frame */
    CHECK(&c, socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
    const uint8_t hello[] = "hello, worker";
    CHECK(&c, md_frame_write(sv[0], hello, sizeof hello, &err) == MD_OK);
    CHECK(&c, md_frame_write(sv[0], NULL, 0, &err) == MD_OK);
    CHECK(&c, md_frame_read(sv[1], &in, 1024, &err) == MD_OK);
    CHECK(&c, in.len == sizeof hello && memcmp(in.data, hello, sizeof hello) == 0);
    CHECK(&c, md_frame_read(sv[1], &in, 1024, &err) == MD_OK);
    CHECK(&c, in.len == 0);

    /* a large frame through a child process (bigger than socket buffers) */
    size_t big_len = 3u << 20;
    uint8_t *big = malloc(big_len);
    for (size_t i = 0; i < big_len; i++) {
        big[i] = (uint8_t)(i * 31u);
    }
    pid_t pid = fork();
    if (pid == 0) {
        close(sv[1]);
        int rc = md_frame_write(sv[0], big, big_len, NULL);
        _exit(rc == MD_OK ? 0 : 1);
    }
    CHECK(&c, md_frame_read(sv[1], &in, big_len, &err) == MD_OK);
    CHECK(&c, in.len == big_len && memcmp(in.data, big, big_len) == 0);
    int status = 0;
    CHECK(&c, waitpid(pid, &status, 0) == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0);

    /* over max_len */
    CHECK(&c, md_frame_write(sv[0], hello, sizeof hello, &err) == MD_OK);
    CHECK(&c, md_frame_read(sv[1], &in, 4, &err) == MD_ETOOBIG);
    close(sv[0]);
    close(sv[1]);

    /* EOF before a frame: closed; inside the header or body: truncated */
    CHECK(&c, socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
    close(sv[0]);
    CHECK(&c, md_frame_read(sv[1], &in, 1024, &err) == MD_ECLOSED);
    close(sv[1]);

    int p[2];
    CHECK(&c, pipe(p) == 0);
    CHECK(&c, write_raw(p[1], "\x00\x00", 2) == 0);
    close(p[1]);
    CHECK(&c, md_frame_read(p[0], &in, 1024, &err) == MD_ETRUNCATED);
    close(p[0]);

    CHECK(&c, pipe(p) == 0);
    CHECK(&c, write_raw(p[1], "\x00\x00\x00\x05" "abc", 7) == 0);
    close(p[1]);
    CHECK(&c, md_frame_read(p[0], &in, 1024, &err) == MD_ETRUNCATED);
    close(p[0]);

    /* frames over a pipe (writev path, not sendmsg) */
    CHECK(&c, pipe(p) == 0);
    CHECK(&c, md_frame_write(p[1], hello, 5, &err) == MD_OK);
    close(p[1]);
    CHECK(&c, md_frame_read(p[0], &in, 1024, &err) == MD_OK);
    CHECK(&c, in.len == 5 && memcmp(in.data, hello, 5) == 0);
    CHECK(&c, md_frame_read(p[0], &in, 1024, &err) == MD_ECLOSED);
    close(p[0]);

    /* writing to a closed peer: ECLOSED, not SIGPIPE */
    CHECK(&c, socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
    close(sv[1]);
    CHECK(&c, md_frame_write(sv[0], hello, sizeof hello, &err) == MD_ECLOSED);
    close(sv[0]);

    /* the pure parser: a stream of two frames fed one byte at a time */
    md_buf stream;
    md_buf_init(&stream);
    CHECK(&c, socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
    CHECK(&c, md_frame_write(sv[0], hello, sizeof hello, &err) == MD_OK);
    CHECK(&c, md_frame_write(sv[0], (const uint8_t *)"xy", 2, &err) == MD_OK);
    close(sv[0]);
    uint8_t raw[64];
    ssize_t raw_len = read(sv[1], raw, sizeof raw);
    close(sv[1]);
    CHECK(&c, raw_len == (ssize_t)(4 + sizeof hello + 4 + 2));
    int frames = 0;
    int parse_ok = 1;
    for (ssize_t i = 0; i < raw_len; i++) {
        CHECK(&c, md_buf_append(&stream, &raw[i], 1) == MD_OK);
        for (;;) {
            const uint8_t *frame = NULL;
            size_t frame_len = 0, consumed = 0;
            int rc = md_frame_parse(stream.data, stream.len, 1024, &frame, &frame_len,
                                    &consumed, &err);
            if (rc == 0) {
                break;
            }
            if (rc != 1) {
                parse_ok = 0;
                break;
            }
            if (frames == 0 && (frame_len != sizeof hello || memcmp(frame, hello, frame_len) != 0)) {
                parse_ok = 0;
            }
            if (frames == 1 && (frame_len != 2 || memcmp(frame, "xy", 2) != 0)) {
                parse_ok = 0;
            }
            frames++;
            md_buf_consume(&stream, consumed);
        }
    }
    CHECK(&c, parse_ok && frames == 2 && stream.len == 0);

    const uint8_t *frame = NULL;
    size_t frame_len = 0, consumed = 0;
    const uint8_t too_big[] = {0x00, 0x01, 0x00, 0x00};
    CHECK(&c, md_frame_parse(too_big, sizeof too_big, 1024, &frame, &frame_len, &consumed,
                             &err) == MD_ETOOBIG);
    const uint8_t giant[] = {0xff, 0xff, 0xff, 0xff};
    CHECK(&c, md_frame_parse(giant, sizeof giant, SIZE_MAX, &frame, &frame_len, &consumed,
                             &err) == MD_ETOOBIG);
    CHECK(&c, md_frame_parse(NULL, 0, 1024, &frame, &frame_len, &consumed, &err) == 0);

    /* ---- requests on a warm pool's socket */
    md_buf request;
    md_buf_init(&request);
    md_pool_request parsed;
    CHECK(&c, md_pool_request_encode(MD_POOL_RUN, "/jobs/add-1", &request, &err) == MD_OK);
    CHECK(&c, request.len == 5 + 11 && request.data[0] == 'J');
    for (size_t len = 0; len < request.len; len++) {
        CHECK(&c, md_pool_request_parse(request.data, len, &parsed, &err) == 0);
    }
    CHECK(&c, md_pool_request_parse(request.data, request.len, &parsed, &err) == 1);
    CHECK(&c, parsed.op == MD_POOL_RUN && parsed.path.len == 11 &&
              memcmp(parsed.path.ptr, "/jobs/add-1", 11) == 0);
    md_buf_clear(&request);
    CHECK(&c, md_pool_request_encode(MD_POOL_STOP, NULL, &request, &err) == MD_OK);
    CHECK(&c, md_pool_request_parse(request.data, request.len, &parsed, &err) == 1 &&
              parsed.op == MD_POOL_STOP);
    CHECK(&c, md_pool_request_encode(MD_POOL_RUN, "relative/job", &request, &err) == MD_EARG);
    const uint8_t unknown[] = {'X'};
    CHECK(&c, md_pool_request_parse(unknown, sizeof unknown, &parsed, &err) == MD_EFORMAT);
    const uint8_t relative[] = {'J', 0, 0, 0, 3, 'a', '/', 'b'};
    CHECK(&c, md_pool_request_parse(relative, sizeof relative, &parsed, &err) == MD_EFORMAT);
    const uint8_t with_nul[] = {'J', 0, 0, 0, 3, '/', 0, 'b'};
    CHECK(&c, md_pool_request_parse(with_nul, sizeof with_nul, &parsed, &err) == MD_EFORMAT);
    const uint8_t empty[] = {'J', 0, 0, 0, 0};
    CHECK(&c, md_pool_request_parse(empty, sizeof empty, &parsed, &err) == MD_EFORMAT);
    const uint8_t huge[] = {'J', 0xff, 0xff, 0xff, 0xff};
    CHECK(&c, md_pool_request_parse(huge, sizeof huge, &parsed, &err) == MD_EFORMAT);
    md_buf_free(&request);

    free(big);
    md_buf_free(&stream);
    md_buf_free(&in);
    return md_test_finish(&c);
}
