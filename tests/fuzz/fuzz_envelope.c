/* libFuzzer target: md_envelope_decode under a fixed key.
 * Even first byte: the rest is decoded as an envelope as-is (outer structure,
 * version, MAC).  Odd first byte: the rest is wrapped as the body of an
 * envelope with a valid MAC, so that the body parser, which normally sits
 * behind the MAC check, is fuzzed too. */
#include <string.h>

#include <msgpack.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "mdcore.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const md_key fuzz_key = {{
    0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f,
    0x10, 0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x18, 0x19, 0x1a, 0x1b, 0x1c, 0x1d, 0x1e, 0x1f,
}};

static void decode(const uint8_t *data, size_t size)
{
    md_envelope env;
    md_error err;
    if (md_envelope_decode(&fuzz_key, data, size, &env, &err) == MD_OK) {
        /* A success must describe bytes inside the input. */
        if (env.payload_len > 0 && (env.payload < data || env.payload + env.payload_len > data + size)) {
            __builtin_trap();
        }
        (void)md_envelope_expect(&env, MD_KIND_RESULTS, "fuzz", &err);
    }
}

static int sbuf_write(void *ctx, const char *buf, size_t len)
{
    return md_buf_append((md_buf *)ctx, buf, len) == MD_OK ? 0 : -1;
}

static void decode_wrapped(const uint8_t *body, size_t size)
{
    uint8_t prefixed_mac[32];
    unsigned mac_len = 0;
    md_buf macced;
    md_buf env;
    md_buf_init(&macced);
    md_buf_init(&env);
    if (md_buf_append(&macced, "mapdeploy-envelope/1", 21) != MD_OK ||
        md_buf_append(&macced, body, size) != MD_OK) {
        goto cleanup;
    }
    if (HMAC(EVP_sha256(), fuzz_key.bytes, (int)MD_KEY_LEN, macced.data, macced.len,
             prefixed_mac, &mac_len) == NULL || mac_len != 32) {
        goto cleanup;
    }
    msgpack_packer pk;
    msgpack_packer_init(&pk, &env, sbuf_write);
    if (msgpack_pack_map(&pk, 3) != 0 || msgpack_pack_str_with_body(&pk, "v", 1) != 0 ||
        msgpack_pack_uint32(&pk, 1) != 0 || msgpack_pack_str_with_body(&pk, "b", 1) != 0 ||
        msgpack_pack_bin_with_body(&pk, body, size) != 0 ||
        msgpack_pack_str_with_body(&pk, "m", 1) != 0 ||
        msgpack_pack_bin_with_body(&pk, prefixed_mac, 32) != 0) {
        goto cleanup;
    }
    decode(env.data, env.len);

cleanup:
    md_buf_free(&env);
    md_buf_free(&macced);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0) {
        decode(data, size);
        return 0;
    }
    if (data[0] & 1u) {
        decode_wrapped(data + 1, size - 1);
    } else {
        decode(data + 1, size - 1);
    }
    return 0;
}
