/* Starting and probing the job's supervisor process.  Called without the GIL. */
#include "ext.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <string.h>
#include <poll.h>
#include <stddef.h>
#include <stdio.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <openssl/evp.h>

extern char **environ;

#define SPAWN_OUTPUT_MAX 65536u

static int read_all(int fd, md_buf *out, md_error *err)
{
    uint8_t chunk[4096];
    for (;;) {
        ssize_t got = read(fd, chunk, sizeof chunk);
        if (got == 0) {
            return MD_OK;
        }
        if (got < 0) {
            if (errno == EINTR) {
                continue;
            }
            return md_fail_errno(err, errno, "reading the supervisor's output");
        }
        /* Keep reading to EOF even past the cap so the child never blocks on a full pipe. */
        if (out->len < SPAWN_OUTPUT_MAX) {
            size_t keep = (size_t)got;
            if (keep > SPAWN_OUTPUT_MAX - out->len) {
                keep = SPAWN_OUTPUT_MAX - out->len;
            }
            if (md_buf_append(out, chunk, keep) != MD_OK) {
                return md_fail(err, MD_ENOMEM, "out of memory");
            }
        }
    }
}

static int wait_child(pid_t pid, int *status, md_error *err)
{
    for (;;) {
        if (waitpid(pid, status, 0) == pid) {
            return MD_OK;
        }
        if (errno != EINTR) {
            return md_fail_errno(err, errno, "waiting for the supervisor to start");
        }
    }
}

static void trim_trailing_space(md_buf *text)
{
    while (text->len > 0 && (text->data[text->len - 1] == '\n' || text->data[text->len - 1] == ' ')) {
        text->len--;
    }
}

/* Reads the pool's answer: 'R' started, 'N' declined, 'E' + message failed.
 * EOF or a reset first means the pool went away before it took the job. */
static int read_pool_answer(int fd, md_buf *answer, md_error *err)
{
    uint8_t chunk[512];
    for (;;) {
        ssize_t got = recv(fd, chunk, sizeof chunk, 0);
        if (got < 0 && errno == EINTR) {
            continue;
        }
        if (got <= 0) {
            return MD_OK;
        }
        if (answer->len < SPAWN_OUTPUT_MAX &&
            md_buf_append(answer, chunk, (size_t)got) != MD_OK) {
            return md_fail(err, MD_ENOMEM, "out of memory");
        }
        if (answer->len > 0 && answer->data[0] != 'E') {
            return MD_OK;
        }
    }
}

/* Hands the job to a warm pool of this environment, if one is idle
 * (csrc/supervisor/pool.c).  Returns 1 when the pool started it, 0 when
 * there is no pool or it declined (the caller spawns a supervisor), or an
 * error when the pool took the job and it failed to start. */
static int pool_request(const char *pool, const char *dir, md_error *err)
{
    struct sockaddr_un addr;
    md_buf request;
    md_buf answer;
    int fd = -1;
    int rc = 0;
    size_t dir_len = strlen(dir);

    md_buf_init(&request);
    md_buf_init(&answer);
    memset(&addr, 0, sizeof addr);
    addr.sun_family = AF_UNIX;
    int n = snprintf(addr.sun_path + 1, sizeof(addr.sun_path) - 1, "mapdeploy-pool-%s", pool);
    if (n < 0 || (size_t)n >= sizeof(addr.sun_path) - 1 || dir[0] != '/' ||
        dir_len >= MD_PATH_MAX) {
        goto cleanup;
    }
    socklen_t addr_len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + (size_t)n);
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        goto cleanup;  /* no pool then; the spawn reports real trouble */
    }
    if (connect(fd, (const struct sockaddr *)&addr, addr_len) != 0) {
        goto cleanup;
    }
    rc = md_pool_request_encode(MD_POOL_RUN, dir, &request, err);
    if (rc != MD_OK) {
        goto cleanup;
    }
    if (send(fd, request.data, request.len, MSG_NOSIGNAL) != (ssize_t)request.len) {
        goto cleanup;
    }
    rc = read_pool_answer(fd, &answer, err);
    if (rc != MD_OK || answer.len == 0) {
        goto cleanup;
    }
    if (answer.data[0] == 'R') {
        rc = 1;
    } else if (answer.data[0] == 'E') {
        rc = md_fail(err, MD_EIO, "the supervisor could not start the job: %.*s",
                     (int)(answer.len - 1 > 400 ? 400 : answer.len - 1),
                     (const char *)answer.data + 1);
    }
cleanup:
    if (fd >= 0) {
        (void)close(fd);
    }
    md_buf_free(&request);
    md_buf_free(&answer);
    return rc;
}

int md_launch_supervisor(const char *supervisor, const char *worker, const char *dir,
                         const char *pool, const char *pool_dir, double linger,
                         md_error *err)
{
    if (pool != NULL && pool_dir != NULL) {
        int served = pool_request(pool, dir, err);
        if (served != 0) {
            return served > 0 ? MD_OK : served;
        }
    }
    return md_spawn_supervisor(supervisor, worker, dir, pool, pool_dir, linger, err);
}

int md_spawn_supervisor(const char *supervisor, const char *worker, const char *dir,
                        const char *pool, const char *pool_dir, double linger,
                        md_error *err)
{
    int pipe_fds[2] = {-1, -1};
    posix_spawn_file_actions_t actions;
    posix_spawnattr_t attr;
    int actions_ready = 0;
    int attr_ready = 0;
    int child_status = 0;
    pid_t pid = -1;
    md_buf output;
    sigset_t empty_mask;
    sigset_t default_signals;
    int rc = MD_EIO;
    char linger_text[32];
    char *argv[] = {"mapdeploy-supervisor", "--job-dir", (char *)dir, "--worker",
                    (char *)worker, "--daemonize", NULL, NULL, NULL, NULL, NULL, NULL, NULL};
    if (pool != NULL && pool_dir != NULL) {
        int n = snprintf(linger_text, sizeof linger_text, "%.3f", linger);
        if (n < 0 || (size_t)n >= sizeof linger_text) {
            return md_fail(err, MD_EARG, "linger of %g seconds is out of range", linger);
        }
        argv[6] = "--pool";
        argv[7] = (char *)pool;
        argv[8] = "--pool-dir";
        argv[9] = (char *)pool_dir;
        argv[10] = "--linger";
        argv[11] = linger_text;
    }

    md_buf_init(&output);
    if (pipe2(pipe_fds, O_CLOEXEC) != 0) {
        rc = md_fail_errno(err, errno, "creating a pipe for the supervisor");
        goto cleanup;
    }
    if (posix_spawn_file_actions_init(&actions) != 0) {
        rc = md_fail(err, MD_ENOMEM, "posix_spawn_file_actions_init failed");
        goto cleanup;
    }
    actions_ready = 1;
    if (posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0) != 0 ||
        posix_spawn_file_actions_adddup2(&actions, pipe_fds[1], 1) != 0 ||
        posix_spawn_file_actions_adddup2(&actions, pipe_fds[1], 2) != 0) {
        rc = md_fail(err, MD_ENOMEM, "preparing the supervisor's standard streams failed");
        goto cleanup;
    }
    if (posix_spawnattr_init(&attr) != 0) {
        rc = md_fail(err, MD_ENOMEM, "posix_spawnattr_init failed");
        goto cleanup;
    }
    attr_ready = 1;
    /* The calling thread may block signals (Python threads do); the supervisor
     * must start with none blocked and default actions for the ones it handles. */
    if (sigemptyset(&empty_mask) != 0 || sigemptyset(&default_signals) != 0 ||
        sigaddset(&default_signals, SIGINT) != 0 || sigaddset(&default_signals, SIGTERM) != 0 ||
        sigaddset(&default_signals, SIGHUP) != 0 || sigaddset(&default_signals, SIGCHLD) != 0 ||
        posix_spawnattr_setsigmask(&attr, &empty_mask) != 0 ||
        posix_spawnattr_setsigdefault(&attr, &default_signals) != 0 ||
        posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF) != 0) {
        rc = md_fail(err, MD_EIO, "preparing the supervisor's signal state failed");
        goto cleanup;
    }
    int spawn_errno = posix_spawn(&pid, supervisor, &actions, &attr, argv, environ);
    if (spawn_errno != 0) {
        pid = -1;
        rc = md_fail_errno(err, spawn_errno, "starting %s", supervisor);
        goto cleanup;
    }
    if (close(pipe_fds[1]) != 0) {
        pipe_fds[1] = -1;
        rc = md_fail_errno(err, errno, "closing the supervisor pipe");
        goto cleanup;
    }
    pipe_fds[1] = -1;
    rc = read_all(pipe_fds[0], &output, err);
    if (rc != MD_OK) {
        goto cleanup;
    }
    rc = wait_child(pid, &child_status, err);
    pid = -1;
    if (rc != MD_OK) {
        goto cleanup;
    }
    if (!WIFEXITED(child_status) || WEXITSTATUS(child_status) != 0) {
        trim_trailing_space(&output);
        int code = WIFEXITED(child_status) ? WEXITSTATUS(child_status) : 128 + WTERMSIG(child_status);
        rc = md_fail(err, MD_EIO, "the supervisor could not start the job (exit status %d): %.*s",
                     code, (int)(output.len > 400 ? 400 : output.len), (const char *)output.data);
        goto cleanup;
    }
    rc = MD_OK;
cleanup:
    if (pid > 0) {
        int ignored = 0;
        (void)wait_child(pid, &ignored, NULL);
    }
    if (attr_ready) {
        (void)posix_spawnattr_destroy(&attr);
    }
    if (actions_ready) {
        (void)posix_spawn_file_actions_destroy(&actions);
    }
    if (pipe_fds[0] >= 0) {
        (void)close(pipe_fds[0]);
    }
    if (pipe_fds[1] >= 0) {
        (void)close(pipe_fds[1]);
    }
    md_buf_free(&output);
    return rc;
}

int md_supervisor_alive(const char *dir, md_error *err)
{
    char path[MD_PATH_MAX];
    int fd = -1;
    int alive = 0;
    if (md_path_join(path, sizeof path, dir, MD_STORE_LOCK, err) != MD_OK) {
        return err != NULL ? err->code : MD_ETOOBIG;
    }
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT) {
            return 0;
        }
        return md_fail_errno(err, errno, "opening %s", path);
    }
    if (flock(fd, LOCK_SH | LOCK_NB) == 0) {
        (void)flock(fd, LOCK_UN);
        alive = 0;
    } else if (errno == EWOULDBLOCK) {
        alive = 1;
    } else {
        alive = md_fail_errno(err, errno, "probing %s", path);
    }
    (void)close(fd);
    return alive;
}

/* ------------------------------------------------------------ pool_digest */

static int compare_entries(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static int digest_update(EVP_MD_CTX *md, const char *data, size_t len)
{
    static const char separator = '\0';
    return EVP_DigestUpdate(md, data, len) == 1 && EVP_DigestUpdate(md, &separator, 1) == 1;
}

/* The C environment, not os.environ: it is what a spawned supervisor and
 * its workers inherit (os.environ writes through to it with putenv). */
PyObject *md_pool_digest(PyObject *module, PyObject *parts)
{
    (void)module;
    PyObject *seq = NULL;
    PyObject *result = NULL;
    const char **entries = NULL;
    EVP_MD_CTX *md = NULL;
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int digest_len = 0;
    char hex[33];
    int ok = 1;

    seq = PySequence_Fast(parts, "parts must be a sequence of str");
    if (seq == NULL) {
        goto cleanup;
    }
    md = EVP_MD_CTX_new();
    if (md == NULL || EVP_DigestInit_ex(md, EVP_sha256(), NULL) != 1) {
        PyErr_SetString(PyExc_RuntimeError, "pool_digest: OpenSSL SHA-256 is unavailable");
        goto cleanup;
    }
    for (Py_ssize_t i = 0; ok && i < PySequence_Fast_GET_SIZE(seq); i++) {
        PyObject *part = PySequence_Fast_GET_ITEM(seq, i);
        if (!PyUnicode_Check(part)) {
            PyErr_Format(PyExc_TypeError, "parts[%zd] must be str, not %.100s", i,
                         Py_TYPE(part)->tp_name);
            goto cleanup;
        }
        PyObject *encoded = PyUnicode_EncodeFSDefault(part);
        if (encoded == NULL) {
            goto cleanup;
        }
        ok = digest_update(md, PyBytes_AS_STRING(encoded), (size_t)PyBytes_GET_SIZE(encoded));
        Py_DECREF(encoded);
    }
    size_t count = 0;
    while (environ != NULL && environ[count] != NULL) {
        count++;
    }
    entries = PyMem_Calloc(count + 1, sizeof *entries);
    if (entries == NULL) {
        PyErr_NoMemory();
        goto cleanup;
    }
    for (size_t i = 0; i < count; i++) {
        entries[i] = environ[i];
    }
    qsort(entries, count, sizeof *entries, compare_entries);
    for (size_t i = 0; ok && i < count; i++) {
        ok = digest_update(md, entries[i], strlen(entries[i]));
    }
    if (!ok || EVP_DigestFinal_ex(md, digest, &digest_len) != 1 || digest_len < 16) {
        PyErr_SetString(PyExc_RuntimeError, "pool_digest: OpenSSL SHA-256 failed");
        goto cleanup;
    }
    for (size_t i = 0; i < 16; i++) {
        static const char digits[] = "0123456789abcdef";
        hex[2 * i] = digits[digest[i] >> 4];
        hex[2 * i + 1] = digits[digest[i] & 15];
    }
    result = PyUnicode_FromStringAndSize(hex, 32);
cleanup:
    Py_XDECREF(seq);
    PyMem_Free(entries);
    EVP_MD_CTX_free(md);
    return result;
}
