/* Authenticated envelopes: map {"v": version, "b": body bytes, "m": MAC}.
 * The MAC covers the exact body bytes, so they are checked before a single
 * byte of the body is parsed. */
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <openssl/rand.h>

#include "msgpack_util.h"

/* Domain separation: these MACs can never be confused with other uses of the
 * key.  The trailing NUL is part of the prefix (21 bytes). */
static const char mac_prefix[] = "mapdeploy-envelope/1";
#define MAC_PREFIX_LEN (sizeof mac_prefix)

static const char *const kind_names[] = {
    NULL, "job", "tasks", "results", "status", "combine", "ready", "switch",
};
#define KIND_COUNT (sizeof kind_names / sizeof kind_names[0])

int md_key_generate(md_key *key, md_error *err)
{
    if (key == NULL) {
        return md_fail(err, MD_EARG, "key_generate: NULL key");
    }
    if (RAND_bytes(key->bytes, (int)MD_KEY_LEN) != 1) {
        return md_fail(err, MD_EIO, "key_generate: OpenSSL RAND_bytes failed");
    }
    return MD_OK;
}

const char *md_kind_name(md_kind kind)
{
    if ((int)kind <= 0 || (size_t)kind >= KIND_COUNT) {
        return NULL;
    }
    return kind_names[kind];
}

static int kind_from_name(const char *ptr, size_t len, md_kind *out)
{
    for (size_t i = 1; i < KIND_COUNT; i++) {
        if (strlen(kind_names[i]) == len && memcmp(kind_names[i], ptr, len) == 0) {
            *out = (md_kind)i;
            return 1;
        }
    }
    return 0;
}

static int compute_mac(const md_key *key, const uint8_t *body, size_t body_len,
                       uint8_t mac[MD_MAC_LEN], md_error *err)
{
    int rc = MD_OK;
    EVP_MAC *hmac = NULL;
    EVP_MAC_CTX *ctx = NULL;
    char digest[] = "SHA256";
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0),
        OSSL_PARAM_construct_end(),
    };
    size_t mac_len = 0;

    hmac = EVP_MAC_fetch(NULL, "HMAC", NULL);
    if (hmac == NULL) {
        rc = md_fail(err, MD_EIO, "envelope: OpenSSL has no HMAC");
        goto cleanup;
    }
    ctx = EVP_MAC_CTX_new(hmac);
    if (ctx == NULL) {
        rc = md_fail(err, MD_ENOMEM, "envelope: out of memory creating HMAC context");
        goto cleanup;
    }
    if (EVP_MAC_init(ctx, key->bytes, MD_KEY_LEN, params) != 1 ||
        EVP_MAC_update(ctx, (const unsigned char *)mac_prefix, MAC_PREFIX_LEN) != 1 ||
        (body_len > 0 && EVP_MAC_update(ctx, body, body_len) != 1) ||
        EVP_MAC_final(ctx, mac, &mac_len, MD_MAC_LEN) != 1 || mac_len != MD_MAC_LEN) {
        rc = md_fail(err, MD_EIO, "envelope: OpenSSL HMAC-SHA256 failed");
        goto cleanup;
    }

cleanup:
    EVP_MAC_CTX_free(ctx);
    EVP_MAC_free(hmac);
    return rc;
}

int md_envelope_encode(const md_key *key, const md_envelope *env, md_buf *out,
                       md_error *err)
{
    if (key == NULL || env == NULL || out == NULL) {
        return md_fail(err, MD_EARG, "envelope: NULL argument");
    }
    const char *kind = md_kind_name(env->kind);
    if (kind == NULL) {
        return md_fail(err, MD_EARG, "envelope: unknown kind %d", (int)env->kind);
    }
    if (env->job_id_len > MD_JOB_ID_MAX || (env->job_id == NULL && env->job_id_len != 0)) {
        return md_fail(err, MD_EARG, "envelope: job id must be at most %u bytes",
                       MD_JOB_ID_MAX);
    }
    if (env->payload == NULL && env->payload_len != 0) {
        return md_fail(err, MD_EARG, "envelope: NULL payload");
    }
    if (env->payload_len > UINT32_MAX - 256u) {
        return md_fail(err, MD_ETOOBIG, "envelope: payload of %zu bytes is over the 4 GiB limit",
                       env->payload_len);
    }

    int rc = MD_OK;
    md_buf body;
    md_buf_init(&body);
    size_t original_len = out->len;
    uint8_t mac[MD_MAC_LEN];
    msgpack_packer pk;

    md_mp_packer_init(&pk, &body);
    if (md_mp_pack_map(&pk, 6) != 0 ||
        md_mp_pack_key(&pk, "kind") != 0 || md_mp_pack_str(&pk, kind, strlen(kind)) != 0 ||
        md_mp_pack_key(&pk, "job") != 0 ||
        md_mp_pack_str(&pk, env->job_id, env->job_id_len) != 0 ||
        md_mp_pack_key(&pk, "first") != 0 || msgpack_pack_uint64(&pk, env->first) != 0 ||
        md_mp_pack_key(&pk, "count") != 0 || msgpack_pack_uint64(&pk, env->count) != 0 ||
        md_mp_pack_key(&pk, "attempt") != 0 || msgpack_pack_uint32(&pk, env->attempt) != 0 ||
        md_mp_pack_key(&pk, "payload") != 0 ||
        md_mp_pack_bin(&pk, env->payload, env->payload_len) != 0) {
        rc = md_fail(err, MD_ENOMEM, "envelope: out of memory encoding the body");
        goto cleanup;
    }
    rc = compute_mac(key, body.data, body.len, mac, err);
    if (rc != MD_OK) {
        goto cleanup;
    }
    md_mp_packer_init(&pk, out);
    if (md_mp_pack_map(&pk, 3) != 0 ||
        md_mp_pack_key(&pk, "v") != 0 || msgpack_pack_uint32(&pk, MD_FORMAT_VERSION) != 0 ||
        md_mp_pack_key(&pk, "b") != 0 || md_mp_pack_bin(&pk, body.data, body.len) != 0 ||
        md_mp_pack_key(&pk, "m") != 0 || md_mp_pack_bin(&pk, mac, MD_MAC_LEN) != 0) {
        rc = md_fail(err, MD_ENOMEM, "envelope: out of memory encoding the envelope");
        goto cleanup;
    }

cleanup:
    if (rc != MD_OK) {
        out->len = original_len;   /* leave out as it was */
    }
    md_buf_free(&body);
    return rc;
}

/* Outer structure: exactly "v" (uint), "b" (bin), "m" (bin of 32 bytes). */
static int read_outer(const msgpack_object *root, uint64_t *version, const uint8_t **body,
                      size_t *body_len, const uint8_t **mac, md_error *err)
{
    if (root->type != MSGPACK_OBJECT_MAP || root->via.map.size != 3) {
        return md_fail(err, MD_EFORMAT, "envelope: not a map of the three keys v, b, m");
    }
    int seen_v = 0, seen_b = 0, seen_m = 0;
    for (uint32_t i = 0; i < root->via.map.size; i++) {
        const msgpack_object_kv *kv = &root->via.map.ptr[i];
        if (md_mp_key_is(&kv->key, "v") && !seen_v) {
            seen_v = 1;
            if (!md_mp_get_uint(&kv->val, UINT64_MAX, version)) {
                return md_fail(err, MD_EFORMAT, "envelope: version \"v\" is not an unsigned integer");
            }
        } else if (md_mp_key_is(&kv->key, "b") && !seen_b) {
            seen_b = 1;
            if (!md_mp_get_bin(&kv->val, body, body_len)) {
                return md_fail(err, MD_EFORMAT, "envelope: body \"b\" is not bin");
            }
        } else if (md_mp_key_is(&kv->key, "m") && !seen_m) {
            seen_m = 1;
            size_t mac_len = 0;
            if (!md_mp_get_bin(&kv->val, mac, &mac_len) || mac_len != MD_MAC_LEN) {
                return md_fail(err, MD_EFORMAT, "envelope: MAC \"m\" is not bin of %u bytes",
                               MD_MAC_LEN);
            }
        } else {
            return md_fail(err, MD_EFORMAT,
                           "envelope: unexpected or repeated key (expected exactly v, b, m)");
        }
    }
    return MD_OK;
}

/* Body: exactly kind, job, first, count, attempt, payload. */
static int read_body(const msgpack_object *root, md_envelope *env, md_error *err)
{
    if (root->type != MSGPACK_OBJECT_MAP || root->via.map.size != 6) {
        return md_fail(err, MD_EFORMAT,
                       "envelope: body is not a map of kind, job, first, count, attempt, payload");
    }
    unsigned seen = 0;
    for (uint32_t i = 0; i < root->via.map.size; i++) {
        const msgpack_object *key = &root->via.map.ptr[i].key;
        const msgpack_object *val = &root->via.map.ptr[i].val;
        unsigned bit;
        int ok;
        uint64_t u = 0;
        md_str s = {NULL, 0};
        if (md_mp_key_is(key, "kind")) {
            bit = 1u;
            ok = md_mp_get_str(val, &s) && kind_from_name(s.ptr, s.len, &env->kind);
        } else if (md_mp_key_is(key, "job")) {
            bit = 2u;
            ok = md_mp_get_str(val, &s) && s.len <= MD_JOB_ID_MAX;
            env->job_id = s.ptr;
            env->job_id_len = s.len;
        } else if (md_mp_key_is(key, "first")) {
            bit = 4u;
            ok = md_mp_get_uint(val, UINT64_MAX, &env->first);
        } else if (md_mp_key_is(key, "count")) {
            bit = 8u;
            ok = md_mp_get_uint(val, UINT64_MAX, &env->count);
        } else if (md_mp_key_is(key, "attempt")) {
            bit = 16u;
            ok = md_mp_get_uint(val, UINT32_MAX, &u);
            env->attempt = (uint32_t)u;
        } else if (md_mp_key_is(key, "payload")) {
            bit = 32u;
            ok = md_mp_get_bin(val, &env->payload, &env->payload_len);
        } else {
            return md_fail(err, MD_EFORMAT, "envelope: unexpected key in the body");
        }
        if (seen & bit) {
            return md_fail(err, MD_EFORMAT, "envelope: repeated key in the body");
        }
        seen |= bit;
        if (!ok) {
            return md_fail(err, MD_EFORMAT, "envelope: body field %.*s has the wrong type or value",
                           (int)key->via.str.size, key->via.str.ptr);
        }
    }
    return MD_OK;
}

int md_envelope_decode(const md_key *key, const uint8_t *data, size_t len,
                       md_envelope *env, md_error *err)
{
    if (key == NULL || env == NULL || (data == NULL && len != 0)) {
        return md_fail(err, MD_EARG, "envelope: NULL argument");
    }
    int rc = MD_OK;
    msgpack_unpacked outer;
    msgpack_unpacked body;
    msgpack_unpacked_init(&outer);
    msgpack_unpacked_init(&body);
    uint64_t version = 0;
    const uint8_t *body_bytes = NULL;
    size_t body_len = 0;
    const uint8_t *mac = NULL;
    uint8_t expected[MD_MAC_LEN];
    md_envelope decoded;
    memset(&decoded, 0, sizeof decoded);

    rc = md_mp_unpack(data, len, &outer, "envelope", err);
    if (rc != MD_OK) {
        goto cleanup;
    }
    rc = read_outer(&outer.data, &version, &body_bytes, &body_len, &mac, err);
    if (rc != MD_OK) {
        goto cleanup;
    }
    if (version > MD_FORMAT_VERSION) {
        rc = md_fail(err, MD_EVERSION,
                     "envelope: format version %llu is newer than this mapdeploy understands "
                     "(%u); upgrade mapdeploy",
                     (unsigned long long)version, MD_FORMAT_VERSION);
        goto cleanup;
    }
    if (version != MD_FORMAT_VERSION) {
        rc = md_fail(err, MD_EVERSION, "envelope: unknown format version %llu (this mapdeploy "
                     "understands %u)", (unsigned long long)version, MD_FORMAT_VERSION);
        goto cleanup;
    }
    rc = compute_mac(key, body_bytes, body_len, expected, err);
    if (rc != MD_OK) {
        goto cleanup;
    }
    if (CRYPTO_memcmp(expected, mac, MD_MAC_LEN) != 0) {
        rc = md_fail(err, MD_EMAC, "envelope: MAC check failed (the data was modified, or it "
                     "belongs to another job)");
        goto cleanup;
    }
    rc = md_mp_unpack(body_bytes, body_len, &body, "envelope body", err);
    if (rc != MD_OK) {
        goto cleanup;
    }
    rc = read_body(&body.data, &decoded, err);
    if (rc != MD_OK) {
        goto cleanup;
    }
    *env = decoded;

cleanup:
    msgpack_unpacked_destroy(&body);
    msgpack_unpacked_destroy(&outer);
    return rc;
}

int md_envelope_expect(const md_envelope *env, md_kind kind, const char *job_id,
                       md_error *err)
{
    if (env == NULL || job_id == NULL) {
        return md_fail(err, MD_EARG, "envelope: NULL argument");
    }
    const char *want = md_kind_name(kind);
    const char *got = md_kind_name(env->kind);
    if (env->kind != kind) {
        return md_fail(err, MD_EFORMAT, "envelope: expected a \"%s\" envelope, got \"%s\"",
                       want != NULL ? want : "?", got != NULL ? got : "?");
    }
    size_t job_len = strnlen(job_id, MD_JOB_ID_MAX + 1);
    if (job_len != env->job_id_len ||
        (job_len > 0 && memcmp(job_id, env->job_id, job_len) != 0)) {
        return md_fail(err, MD_EFORMAT,
                       "envelope: belongs to job \"%.*s\", not \"%.*s\" (copied from another job?)",
                       (int)env->job_id_len, env->job_id != NULL ? env->job_id : "",
                       (int)job_len, job_id);
    }
    return MD_OK;
}
