/* Large buffers out of band: blob files in the job folder and the wrapper
 * that names them (docs/protocol.md, "Blobs").
 *
 * A blob is written once, by whoever holds it (the client for arguments, the
 * worker for return values), and read once by whoever needs it; nothing in
 * between forwards its bytes.  Its tag is Poly1305 under a one-time key
 * derived from the job key and the blob's random nonce: about 6 GB/s here
 * against 1.5 GB/s for HMAC-SHA256, and it is computed on a second thread
 * while the bytes are written or read, so on two free cores it costs no
 * time of its own. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <openssl/rand.h>

#include "msgpack_util.h"

static const char blob_key_prefix[] = "mapdeploy-blob/1";  /* with its NUL */
#define BLOB_KEY_PREFIX_LEN sizeof(blob_key_prefix)
/* read(2) and MAC in steps of this much: small enough that the MAC thread
 * follows the reader closely (and works on bytes still in cache), large
 * enough that the hand-over costs nothing. */
#define BLOB_STEP ((size_t)4 << 20)
/* Below this a second thread costs more than it saves. */
#define BLOB_THREAD_MIN ((size_t)8 << 20)
#define HUGE_PAGE ((uintptr_t)2 << 20)
#define OOB_FIELDS 4u

const uint8_t md_oob_magic[MD_OOB_MAGIC_LEN] = {0x00, 'M', 'D', 'B'};

int md_blob_name(const md_blob_ref *ref, char *out, size_t out_len, md_error *err)
{
    static const char hex[] = "0123456789abcdef";
    size_t prefix = sizeof(MD_STORE_BLOBS_DIR);  /* "blobs/" */
    if (out_len < prefix + 2 * MD_BLOB_NONCE_LEN + 1) {
        return md_fail(err, MD_ETOOBIG, "blob name: buffer too small");
    }
    memcpy(out, MD_STORE_BLOBS_DIR "/", prefix);
    for (size_t i = 0; i < MD_BLOB_NONCE_LEN; i++) {
        out[prefix + 2 * i] = hex[ref->nonce[i] >> 4];
        out[prefix + 2 * i + 1] = hex[ref->nonce[i] & 0x0f];
    }
    out[prefix + 2 * MD_BLOB_NONCE_LEN] = '\0';
    return MD_OK;
}

/* ------------------------------------------------------------------ MAC */

typedef struct {
    EVP_MAC *mac;
    EVP_MAC_CTX *ctx;
} blob_mac;

static void blob_mac_free(blob_mac *m)
{
    EVP_MAC_CTX_free(m->ctx);
    EVP_MAC_free(m->mac);
    m->ctx = NULL;
    m->mac = NULL;
}

/* Poly1305 keyed with HMAC-SHA256(job key, "mapdeploy-blob/1\0" || nonce):
 * a fresh 32-byte key per blob, as Poly1305 requires (a key must never
 * authenticate two messages; nonces are 128 random bits). */
static int blob_mac_init(blob_mac *m, const md_key *key, const uint8_t nonce[MD_BLOB_NONCE_LEN],
                         md_error *err)
{
    int rc = MD_OK;
    EVP_MAC *hmac = NULL;
    EVP_MAC_CTX *hctx = NULL;
    uint8_t one_time[32];
    size_t one_time_len = 0;
    char digest[] = "SHA256";
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0),
        OSSL_PARAM_construct_end(),
    };

    m->mac = NULL;
    m->ctx = NULL;
    hmac = EVP_MAC_fetch(NULL, "HMAC", NULL);
    hctx = hmac != NULL ? EVP_MAC_CTX_new(hmac) : NULL;
    if (hctx == NULL || EVP_MAC_init(hctx, key->bytes, MD_KEY_LEN, params) != 1 ||
        EVP_MAC_update(hctx, (const unsigned char *)blob_key_prefix, BLOB_KEY_PREFIX_LEN) != 1 ||
        EVP_MAC_update(hctx, nonce, MD_BLOB_NONCE_LEN) != 1 ||
        EVP_MAC_final(hctx, one_time, &one_time_len, sizeof one_time) != 1 ||
        one_time_len != sizeof one_time) {
        rc = md_fail(err, MD_EIO, "blob: OpenSSL HMAC-SHA256 failed");
        goto cleanup;
    }
    m->mac = EVP_MAC_fetch(NULL, "POLY1305", NULL);
    m->ctx = m->mac != NULL ? EVP_MAC_CTX_new(m->mac) : NULL;
    if (m->ctx == NULL || EVP_MAC_init(m->ctx, one_time, sizeof one_time, NULL) != 1) {
        rc = md_fail(err, MD_EIO, "blob: OpenSSL has no Poly1305");
        blob_mac_free(m);
        goto cleanup;
    }
cleanup:
    OPENSSL_cleanse(one_time, sizeof one_time);
    EVP_MAC_CTX_free(hctx);
    EVP_MAC_free(hmac);
    return rc;
}

static int blob_mac_update(blob_mac *m, const uint8_t *data, size_t len)
{
    return len == 0 || EVP_MAC_update(m->ctx, data, len) == 1;
}

static int blob_mac_final(blob_mac *m, uint8_t tag[MD_BLOB_TAG_LEN], md_error *err)
{
    size_t tag_len = 0;
    if (EVP_MAC_final(m->ctx, tag, &tag_len, MD_BLOB_TAG_LEN) != 1 || tag_len != MD_BLOB_TAG_LEN) {
        return md_fail(err, MD_EIO, "blob: OpenSSL Poly1305 failed");
    }
    return MD_OK;
}

int md_blob_tag(const md_key *key, const uint8_t nonce[MD_BLOB_NONCE_LEN], const uint8_t *data,
                size_t len, uint8_t tag[MD_BLOB_TAG_LEN], md_error *err)
{
    blob_mac m;
    if (key == NULL || nonce == NULL || tag == NULL || (data == NULL && len > 0)) {
        return md_fail(err, MD_EARG, "blob tag: NULL argument");
    }
    int rc = blob_mac_init(&m, key, nonce, err);
    if (rc != MD_OK) {
        return rc;
    }
    rc = blob_mac_update(&m, data, len) ? blob_mac_final(&m, tag, err)
                                        : md_fail(err, MD_EIO, "blob: OpenSSL Poly1305 failed");
    blob_mac_free(&m);
    return rc;
}

/* ------------------------------------------------------- the MAC thread */

/* The MAC thread follows `ready`, the count of bytes of data that are in
 * place: all of them from the start when writing, what read(2) has filled
 * so far when reading. */
typedef struct {
    blob_mac mac;
    const uint8_t *data;
    size_t len;
    pthread_mutex_t lock;
    pthread_cond_t moved;
    size_t ready;
    int stop;        /* the reader failed: give up */
    int ok;          /* every update succeeded */
} mac_follower;

static void *mac_follow(void *arg)
{
    mac_follower *f = arg;
    size_t done = 0;
    while (done < f->len) {
        size_t ready = 0;
        int stop = 0;
        (void)pthread_mutex_lock(&f->lock);
        while (f->ready <= done && !f->stop) {
            (void)pthread_cond_wait(&f->moved, &f->lock);
        }
        ready = f->ready;
        stop = f->stop;
        (void)pthread_mutex_unlock(&f->lock);
        if (stop) {
            break;
        }
        if (!blob_mac_update(&f->mac, f->data + done, ready - done)) {
            f->ok = 0;
            break;
        }
        done = ready;
    }
    return NULL;
}

static void mac_publish(mac_follower *f, size_t ready, int stop)
{
    (void)pthread_mutex_lock(&f->lock);
    f->ready = ready;
    f->stop = stop;
    (void)pthread_cond_signal(&f->moved);
    (void)pthread_mutex_unlock(&f->lock);
}

/* Starts the thread when len makes it worth it; *started says whether it runs
 * (when not, the caller MACs inline). */
static int follower_start(mac_follower *f, pthread_t *thread, int *started, size_t initially_ready)
{
    *started = 0;
    f->ready = initially_ready;
    f->stop = 0;
    f->ok = 1;
    if (f->len < BLOB_THREAD_MIN) {
        return 0;
    }
    if (pthread_mutex_init(&f->lock, NULL) != 0) {
        return 0;
    }
    if (pthread_cond_init(&f->moved, NULL) != 0) {
        (void)pthread_mutex_destroy(&f->lock);
        return 0;
    }
    if (pthread_create(thread, NULL, mac_follow, f) != 0) {
        (void)pthread_cond_destroy(&f->moved);
        (void)pthread_mutex_destroy(&f->lock);
        return 0;
    }
    *started = 1;
    return 0;
}

static void follower_join(mac_follower *f, pthread_t thread)
{
    (void)pthread_join(thread, NULL);
    (void)pthread_cond_destroy(&f->moved);
    (void)pthread_mutex_destroy(&f->lock);
}

/* ---------------------------------------------------------- write, read */

int md_blob_write(const char *job_dir, const md_key *key, const uint8_t *data, size_t len,
                  md_blob_ref *ref, md_error *err)
{
    int rc = MD_OK;
    int fd = -1;
    int created = 0;
    int started = 0;
    pthread_t thread;
    mac_follower f;
    char name[64];
    char path[MD_PATH_MAX];

    if (job_dir == NULL || key == NULL || ref == NULL || (data == NULL && len > 0)) {
        return md_fail(err, MD_EARG, "blob write: NULL argument");
    }
    memset(ref, 0, sizeof *ref);
    ref->length = len;
    if (RAND_bytes(ref->nonce, (int)MD_BLOB_NONCE_LEN) != 1) {
        return md_fail(err, MD_EIO, "blob: OpenSSL RAND_bytes failed");
    }
    rc = md_blob_name(ref, name, sizeof name, err);
    if (rc == MD_OK) {
        rc = md_path_join(path, sizeof path, job_dir, name, err);
    }
    if (rc != MD_OK) {
        return rc;
    }
    f.data = data;
    f.len = len;
    rc = blob_mac_init(&f.mac, key, ref->nonce, err);
    if (rc != MD_OK) {
        return rc;
    }
    fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0 && errno == ENOENT) {
        /* the first blob of a job whose arguments had none */
        rc = md_store_mkdir(job_dir, MD_STORE_BLOBS_DIR, 0700, 1, err);
        if (rc != MD_OK) {
            goto cleanup;
        }
        fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    }
    if (fd < 0) {
        rc = md_fail_errno(err, errno, "cannot create %s", path);
        goto cleanup;
    }
    created = 1;
    (void)follower_start(&f, &thread, &started, len);
    size_t written = 0;
    while (written < len) {
        ssize_t n = write(fd, data + written, len - written);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            rc = md_fail_errno(err, n < 0 ? errno : EIO, "cannot write %s", path);
            break;
        }
        written += (size_t)n;
    }
    if (started) {
        follower_join(&f, thread);
    } else if (rc == MD_OK) {
        f.ok = blob_mac_update(&f.mac, data, len);
    }
    if (rc != MD_OK) {
        goto cleanup;
    }
    if (!f.ok) {
        rc = md_fail(err, MD_EIO, "blob: OpenSSL Poly1305 failed");
        goto cleanup;
    }
    rc = blob_mac_final(&f.mac, ref->tag, err);
    if (rc != MD_OK) {
        goto cleanup;
    }
    if (close(fd) != 0) {
        fd = -1;
        rc = md_fail_errno(err, errno, "cannot write %s", path);
        goto cleanup;
    }
    fd = -1;
cleanup:
    if (fd >= 0) {
        (void)close(fd);
    }
    if (rc != MD_OK && created) {
        (void)unlink(path);
    }
    blob_mac_free(&f.mac);
    return rc;
}

/* The destination is fresh memory: asking for huge pages there turns ~65,000
 * page faults per 256 MiB into ~130 (measured: 1.3 GB/s into 4 KiB pages,
 * 4-5 GB/s into huge ones).  Advice only; it may be refused. */
static void advise_huge_pages(uint8_t *dst, size_t len)
{
    uintptr_t start = ((uintptr_t)dst + HUGE_PAGE - 1) & ~(HUGE_PAGE - 1);
    uintptr_t end = ((uintptr_t)dst + len) & ~(HUGE_PAGE - 1);
    if (end > start) {
        (void)madvise((void *)start, (size_t)(end - start), MADV_HUGEPAGE);
    }
}

int md_blob_read(const char *job_dir, const md_key *key, const md_blob_ref *ref, uint8_t *dst,
                 md_error *err)
{
    int rc = MD_OK;
    int fd = -1;
    int started = 0;
    pthread_t thread;
    mac_follower f;
    uint8_t tag[MD_BLOB_TAG_LEN];
    char name[64];
    char path[MD_PATH_MAX];
    struct stat st;

    if (job_dir == NULL || key == NULL || ref == NULL || (dst == NULL && ref->length > 0)) {
        return md_fail(err, MD_EARG, "blob read: NULL argument");
    }
    rc = md_blob_name(ref, name, sizeof name, err);
    if (rc == MD_OK) {
        rc = md_path_join(path, sizeof path, job_dir, name, err);
    }
    if (rc != MD_OK) {
        return rc;
    }
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        return md_fail_errno(err, errno, "cannot open %s", path);
    }
    if (fstat(fd, &st) != 0) {
        rc = md_fail_errno(err, errno, "cannot stat %s", path);
        (void)close(fd);
        return rc;
    }
    if (!S_ISREG(st.st_mode) || (uint64_t)st.st_size != ref->length) {
        (void)close(fd);
        return md_fail(err, MD_EMAC, "%s has %lld bytes, its reference says %llu: the blob was "
                       "tampered with or damaged", path, (long long)st.st_size,
                       (unsigned long long)ref->length);
    }
    size_t len = (size_t)ref->length;
    f.data = dst;
    f.len = len;
    rc = blob_mac_init(&f.mac, key, ref->nonce, err);
    if (rc != MD_OK) {
        (void)close(fd);
        return rc;
    }
    if (len >= BLOB_THREAD_MIN) {
        advise_huge_pages(dst, len);
    }
    (void)follower_start(&f, &thread, &started, 0);
    size_t filled = 0;
    while (filled < len) {
        size_t want = len - filled < BLOB_STEP ? len - filled : BLOB_STEP;
        ssize_t n = read(fd, dst + filled, want);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            rc = n < 0 ? md_fail_errno(err, errno, "cannot read %s", path)
                       : md_fail(err, MD_EMAC, "%s ends after %zu of %zu bytes: the blob was "
                                 "tampered with or damaged", path, filled, len);
            break;
        }
        filled += (size_t)n;
        if (started) {
            mac_publish(&f, filled, 0);
        }
    }
    if (started) {
        if (rc != MD_OK) {
            mac_publish(&f, filled, 1);
        }
        follower_join(&f, thread);
    } else if (rc == MD_OK) {
        f.ok = blob_mac_update(&f.mac, dst, len);
    }
    if (rc != MD_OK) {
        goto cleanup;
    }
    if (!f.ok) {
        rc = md_fail(err, MD_EIO, "blob: OpenSSL Poly1305 failed");
        goto cleanup;
    }
    rc = blob_mac_final(&f.mac, tag, err);
    if (rc == MD_OK && CRYPTO_memcmp(tag, ref->tag, MD_BLOB_TAG_LEN) != 0) {
        rc = md_fail(err, MD_EMAC, "%s does not match its MAC: the blob was tampered with or "
                     "damaged", path);
    }
cleanup:
    (void)close(fd);
    blob_mac_free(&f.mac);
    return rc;
}

/* ------------------------------------------------------------- wrapper */

int md_oob_is(const uint8_t *data, size_t len)
{
    return data != NULL && len >= MD_OOB_MAGIC_LEN &&
           memcmp(data, md_oob_magic, MD_OOB_MAGIC_LEN) == 0;
}

int md_oob_encode(const uint8_t *pickle, size_t pickle_len, const md_blob_ref *refs,
                  size_t count, md_buf *out, md_error *err)
{
    if (out == NULL || (pickle == NULL && pickle_len > 0) || (refs == NULL && count > 0)) {
        return md_fail(err, MD_EARG, "out-of-band pickle: NULL argument");
    }
    if (count > MD_OOB_MAX_BLOBS) {
        return md_fail(err, MD_ETOOBIG, "out-of-band pickle: %zu buffers, at most %u", count,
                       MD_OOB_MAX_BLOBS);
    }
    size_t original_len = out->len;
    msgpack_packer pk;
    md_mp_packer_init(&pk, out);
    int failed = md_buf_append(out, md_oob_magic, MD_OOB_MAGIC_LEN) != MD_OK ||
                 md_mp_pack_array(&pk, 2) != 0 || md_mp_pack_bin(&pk, pickle, pickle_len) != 0 ||
                 md_mp_pack_array(&pk, count) != 0;
    for (size_t i = 0; !failed && i < count; i++) {
        failed = md_mp_pack_array(&pk, OOB_FIELDS) != 0 ||
                 msgpack_pack_uint64(&pk, refs[i].length) != 0 ||
                 md_mp_pack_bin(&pk, refs[i].nonce, MD_BLOB_NONCE_LEN) != 0 ||
                 md_mp_pack_bin(&pk, refs[i].tag, MD_BLOB_TAG_LEN) != 0 ||
                 (refs[i].readonly ? msgpack_pack_true(&pk) : msgpack_pack_false(&pk)) != 0;
    }
    if (failed) {
        out->len = original_len;
        return md_fail(err, MD_ENOMEM, "out-of-band pickle: out of memory");
    }
    return MD_OK;
}

static int read_ref(const msgpack_object *o, md_blob_ref *ref)
{
    const uint8_t *nonce = NULL;
    const uint8_t *tag = NULL;
    size_t nonce_len = 0;
    size_t tag_len = 0;
    uint64_t length = 0;
    if (o->type != MSGPACK_OBJECT_ARRAY || o->via.array.size != OOB_FIELDS) {
        return 0;
    }
    const msgpack_object *f = o->via.array.ptr;
    if (!md_mp_get_uint(&f[0], MD_BLOB_MAX, &length) ||
        !md_mp_get_bin(&f[1], &nonce, &nonce_len) || nonce_len != MD_BLOB_NONCE_LEN ||
        !md_mp_get_bin(&f[2], &tag, &tag_len) || tag_len != MD_BLOB_TAG_LEN ||
        f[3].type != MSGPACK_OBJECT_BOOLEAN) {
        return 0;
    }
    memset(ref, 0, sizeof *ref);
    ref->length = length;
    memcpy(ref->nonce, nonce, MD_BLOB_NONCE_LEN);
    memcpy(ref->tag, tag, MD_BLOB_TAG_LEN);
    ref->readonly = f[3].via.boolean ? 1 : 0;
    return 1;
}

int md_oob_decode(const uint8_t *data, size_t len, const uint8_t **pickle, size_t *pickle_len,
                  md_blob_visitor visit, void *ctx, size_t *count_out, md_error *err)
{
    int rc = MD_OK;
    msgpack_unpacked unpacked;
    md_blob_ref ref;

    msgpack_unpacked_init(&unpacked);
    if (!md_oob_is(data, len)) {
        return md_fail(err, MD_EFORMAT, "out-of-band pickle: no magic");
    }
    rc = md_mp_unpack(data + MD_OOB_MAGIC_LEN, len - MD_OOB_MAGIC_LEN, &unpacked,
                      "out-of-band pickle", err);
    if (rc != MD_OK) {
        goto cleanup;
    }
    const msgpack_object *root = &unpacked.data;
    const uint8_t *p = NULL;
    size_t p_len = 0;
    if (root->type != MSGPACK_OBJECT_ARRAY || root->via.array.size != 2 ||
        !md_mp_get_bin(&root->via.array.ptr[0], &p, &p_len) ||
        root->via.array.ptr[1].type != MSGPACK_OBJECT_ARRAY) {
        rc = md_fail(err, MD_EFORMAT, "out-of-band pickle: not [pickle, buffers]");
        goto cleanup;
    }
    const msgpack_object *list = &root->via.array.ptr[1];
    if (list->via.array.size > MD_OOB_MAX_BLOBS) {
        rc = md_fail(err, MD_EFORMAT, "out-of-band pickle: %u buffers, at most %u",
                     (unsigned)list->via.array.size, MD_OOB_MAX_BLOBS);
        goto cleanup;
    }
    for (uint32_t i = 0; i < list->via.array.size; i++) {
        if (!read_ref(&list->via.array.ptr[i], &ref)) {
            rc = md_fail(err, MD_EFORMAT, "out-of-band pickle: buffer %u is malformed",
                         (unsigned)i);
            goto cleanup;
        }
    }
    if (pickle != NULL) {
        *pickle = p;
    }
    if (pickle_len != NULL) {
        *pickle_len = p_len;
    }
    if (count_out != NULL) {
        *count_out = list->via.array.size;
    }
    for (uint32_t i = 0; visit != NULL && i < list->via.array.size; i++) {
        (void)read_ref(&list->via.array.ptr[i], &ref);
        rc = visit(ctx, i, &ref);
        if (rc != 0) {
            goto cleanup;
        }
    }
cleanup:
    msgpack_unpacked_destroy(&unpacked);
    return rc;
}
