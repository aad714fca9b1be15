/* Internal to the core (not part of the mdcore.h API): msgpack helpers shared
 * by envelope.c, records.c and store.c. */
#ifndef MAPDEPLOY_MSGPACK_UTIL_H
#define MAPDEPLOY_MSGPACK_UTIL_H

#include <msgpack.h>

#include "mdcore.h"

/* A packer whose output is appended to buf. */
void md_mp_packer_init(msgpack_packer *pk, md_buf *buf);

/* Each returns 0 on success, non-zero on failure (allocation, or a length
 * over msgpack's 32-bit limit). */
int md_mp_pack_key(msgpack_packer *pk, const char *name);
int md_mp_pack_str(msgpack_packer *pk, const char *ptr, size_t len);
int md_mp_pack_str_or_nil(msgpack_packer *pk, md_str s);
int md_mp_pack_bin(msgpack_packer *pk, const uint8_t *ptr, size_t len);
int md_mp_pack_bin_or_nil(msgpack_packer *pk, const uint8_t *ptr, size_t len);
int md_mp_pack_array(msgpack_packer *pk, size_t count);
int md_mp_pack_map(msgpack_packer *pk, size_t count);

/* Parses data as exactly one msgpack object (no trailing bytes).  Before
 * handing the bytes to msgpack-c it walks them without allocating, so that a
 * container header announcing more elements than there are bytes left is
 * refused instead of making msgpack-c allocate for it: the memory used is
 * then bounded by a small multiple of len.  Strings and bins in the result
 * point into data.  `what` names the input in error messages.  On failure
 * *out holds nothing that needs freeing; on success the caller must call
 * msgpack_unpacked_destroy. */
int md_mp_unpack(const uint8_t *data, size_t len, msgpack_unpacked *out,
                 const char *what, md_error *err);

/* Field readers: return 1 when the object has the wanted type (and fits),
 * 0 otherwise.  Empty strings/bins get a non-NULL pointer, since NULL means
 * "nil" in md_str and the value fields. */
int md_mp_key_is(const msgpack_object *key, const char *name);
int md_mp_get_uint(const msgpack_object *o, uint64_t max, uint64_t *out);
int md_mp_get_int64(const msgpack_object *o, int64_t *out);
int md_mp_get_double(const msgpack_object *o, double *out);
int md_mp_get_str(const msgpack_object *o, md_str *out);
int md_mp_get_str_or_nil(const msgpack_object *o, md_str *out);
int md_mp_get_bin(const msgpack_object *o, const uint8_t **ptr, size_t *len);
int md_mp_get_bin_or_nil(const msgpack_object *o, const uint8_t **ptr, size_t *len);

#endif
