/* Envelopes: round trips, MAC tamper detection, replay and version checks. */
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "mdcore.h"

static md_key fixed_key(uint8_t seed)
{
    md_key key;
    for (size_t i = 0; i < MD_KEY_LEN; i++) {
        key.bytes[i] = (uint8_t)(seed + i * 7u);
    }
    return key;
}

static int encode(const md_key *key, md_kind kind, const char *job, const uint8_t *payload,
                  size_t payload_len, md_buf *out)
{
    md_envelope env;
    memset(&env, 0, sizeof env);
    env.kind = kind;
    env.job_id = job;
    env.job_id_len = strlen(job);
    env.first = 42;
    env.count = 7;
    env.attempt = 3;
    env.payload = payload;
    env.payload_len = payload_len;
    return md_envelope_encode(key, &env, out, NULL);
}

/* Builds an envelope by hand with a chosen version and key set, using the
 * real MAC of another envelope's body: only "v" differs. */
static void set_version(md_buf *buf, uint8_t version)
{
    /* encode writes map(3) then "v" (fixstr 0xa1 'v') then a positive fixint. */
    if (buf->len > 3 && buf->data[1] == 0xa1 && buf->data[2] == 'v') {
        buf->data[3] = version;
    }
}

int main(void)
{
    md_test_counts c = {0, 0};
    md_error err;
    md_error_clear(&err);
    md_key key = fixed_key(1);
    md_key other = fixed_key(2);
    md_buf buf;
    md_buf_init(&buf);
    md_envelope env;
    const uint8_t payload[] = "some payload \x00\x01\x02 bytes";

    /* kind names */
    CHECK(&c, strcmp(md_kind_name(MD_KIND_JOB), "job") == 0);
    CHECK(&c, strcmp(md_kind_name(MD_KIND_READY), "ready") == 0);
    CHECK(&c, md_kind_name((md_kind)0) == NULL);
    CHECK(&c, strcmp(md_kind_name(MD_KIND_SWITCH), "switch") == 0);
    CHECK(&c, md_kind_name((md_kind)8) == NULL);

    /* generated keys differ */
    md_key k1, k2;
    CHECK(&c, md_key_generate(&k1, &err) == MD_OK);
    CHECK(&c, md_key_generate(&k2, &err) == MD_OK);
    CHECK(&c, memcmp(k1.bytes, k2.bytes, MD_KEY_LEN) != 0);

    /* round trip */
    CHECK(&c, encode(&key, MD_KIND_RESULTS, "job-123", payload, sizeof payload, &buf) == MD_OK);
    CHECK(&c, md_envelope_decode(&key, buf.data, buf.len, &env, &err) == MD_OK);
    CHECK(&c, env.kind == MD_KIND_RESULTS);
    CHECK(&c, env.job_id_len == 7 && memcmp(env.job_id, "job-123", 7) == 0);
    CHECK(&c, env.first == 42 && env.count == 7 && env.attempt == 3);
    CHECK(&c, env.payload_len == sizeof payload && memcmp(env.payload, payload, sizeof payload) == 0);
    /* borrowed pointers point into the input */
    CHECK(&c, env.payload > buf.data && env.payload + env.payload_len <= buf.data + buf.len);
    CHECK(&c, (const uint8_t *)env.job_id > buf.data);
    CHECK(&c, md_envelope_expect(&env, MD_KIND_RESULTS, "job-123", &err) == MD_OK);

    /* replay from another job or of another kind */
    CHECK(&c, md_envelope_expect(&env, MD_KIND_RESULTS, "job-124", &err) == MD_EFORMAT);
    CHECK(&c, md_envelope_expect(&env, MD_KIND_RESULTS, "job-12", &err) == MD_EFORMAT);
    CHECK(&c, md_envelope_expect(&env, MD_KIND_STATUS, "job-123", &err) == MD_EFORMAT);

    /* wrong key */
    CHECK(&c, md_envelope_decode(&other, buf.data, buf.len, &env, &err) == MD_EMAC);
    CHECK(&c, strstr(err.message, "MAC check failed") != NULL);

    /* every single flipped bit/byte is caught */
    int flips_ok = 1;
    for (size_t i = 0; i < buf.len; i++) {
        for (unsigned bit = 0; bit < 8; bit++) {
            buf.data[i] ^= (uint8_t)(1u << bit);
            int rc = md_envelope_decode(&key, buf.data, buf.len, &env, &err);
            if (rc != MD_EMAC && rc != MD_EFORMAT && rc != MD_EVERSION) {
                flips_ok = 0;
            }
            /* only the version byte may give MD_EVERSION */
            if (rc == MD_EVERSION && i != 3) {
                flips_ok = 0;
            }
            buf.data[i] ^= (uint8_t)(1u << bit);
        }
        buf.data[i] ^= 0xff;
        int rc = md_envelope_decode(&key, buf.data, buf.len, &env, &err);
        if (rc == MD_OK) {
            flips_ok = 0;
        }
        buf.data[i] ^= 0xff;
    }
    CHECK(&c, flips_ok);
    CHECK(&c, md_envelope_decode(&key, buf.data, buf.len, &env, &err) == MD_OK);

    /* truncation at every length fails cleanly; so does trailing garbage */
    int trunc_ok = 1;
    for (size_t n = 0; n < buf.len; n++) {
        uint8_t *copy = malloc(n > 0 ? n : 1);
        memcpy(copy, buf.data, n);
        if (md_envelope_decode(&key, copy, n, &env, &err) != MD_EFORMAT) {
            trunc_ok = 0;
        }
        free(copy);
    }
    CHECK(&c, trunc_ok);
    CHECK(&c, md_buf_append(&buf, "x", 1) == MD_OK);
    CHECK(&c, md_envelope_decode(&key, buf.data, buf.len, &env, &err) == MD_EFORMAT);
    buf.len--;

    /* a future version: version error, not a MAC error */
    set_version(&buf, 7);
    CHECK(&c, md_envelope_decode(&key, buf.data, buf.len, &env, &err) == MD_EVERSION);
    CHECK(&c, strstr(err.message, "format version 7 is newer") != NULL);
    set_version(&buf, 0);
    CHECK(&c, md_envelope_decode(&key, buf.data, buf.len, &env, &err) == MD_EVERSION);
    set_version(&buf, 1);
    CHECK(&c, md_envelope_decode(&key, buf.data, buf.len, &env, &err) == MD_OK);

    /* arguments */
    md_buf_clear(&buf);
    char long_id[MD_JOB_ID_MAX + 2];
    memset(long_id, 'j', sizeof long_id - 1);
    long_id[sizeof long_id - 1] = '\0';
    CHECK(&c, encode(&key, MD_KIND_JOB, long_id, payload, 3, &buf) == MD_EARG);
    CHECK(&c, buf.len == 0);
    long_id[MD_JOB_ID_MAX] = '\0';
    CHECK(&c, encode(&key, MD_KIND_JOB, long_id, payload, 3, &buf) == MD_OK);
    CHECK(&c, md_envelope_decode(&key, buf.data, buf.len, &env, &err) == MD_OK);
    CHECK(&c, env.job_id_len == MD_JOB_ID_MAX);
    md_buf_clear(&buf);
    CHECK(&c, encode(&key, (md_kind)9, "j", payload, 3, &buf) == MD_EARG);
    /* empty payload and empty job id */
    CHECK(&c, encode(&key, MD_KIND_READY, "", NULL, 0, &buf) == MD_OK);
    CHECK(&c, md_envelope_decode(&key, buf.data, buf.len, &env, &err) == MD_OK);
    CHECK(&c, env.payload_len == 0 && env.job_id_len == 0 && env.kind == MD_KIND_READY);
    CHECK(&c, md_envelope_expect(&env, MD_KIND_READY, "", &err) == MD_OK);

    /* garbage and wrong shapes */
    const uint8_t not_map[] = {0x93, 0x01, 0x02, 0x03};
    CHECK(&c, md_envelope_decode(&key, not_map, sizeof not_map, &env, &err) == MD_EFORMAT);
    const uint8_t huge_array[] = {0xdd, 0xff, 0xff, 0xff, 0xf0};
    CHECK(&c, md_envelope_decode(&key, huge_array, sizeof huge_array, &env, &err) == MD_EFORMAT);
    const uint8_t huge_map[] = {0xdf, 0x10, 0x00, 0x00, 0x00, 0xc0, 0xc0};
    CHECK(&c, md_envelope_decode(&key, huge_map, sizeof huge_map, &env, &err) == MD_EFORMAT);
    CHECK(&c, md_envelope_decode(&key, NULL, 0, &env, &err) == MD_EFORMAT);

    md_buf_free(&buf);
    return md_test_finish(&c);
}
