/* Payload codecs: task arrays, results, job definition, status, combine, hello.
 * Decoders validate every element before calling any visitor, so a visitor
 * sees either the whole payload or nothing of it. */
#include <stdlib.h>
#include <string.h>

#include "msgpack_util.h"

#define RESULT_FIELDS 12u
/* Results written before max_rss and output existed have 10 elements. */
#define RESULT_FIELDS_MIN 10u
#define HELLO_VERSION 1u

/* Encoders append; on failure they put out back as it was. */
static int encode_failed(md_buf *out, size_t original_len, md_error *err, const char *what)
{
    out->len = original_len;
    return md_fail(err, MD_ENOMEM, "%s: out of memory, or a field over 4 GiB", what);
}

/* ------------------------------------------------------------------ bins */

int md_bins_encode(const uint8_t *const *items, const size_t *lens, size_t count,
                   md_buf *out, md_error *err)
{
    if (out == NULL || (count > 0 && (items == NULL || lens == NULL))) {
        return md_fail(err, MD_EARG, "tasks: NULL argument");
    }
    size_t original_len = out->len;
    msgpack_packer pk;
    md_mp_packer_init(&pk, out);
    if (md_mp_pack_array(&pk, count) != 0) {
        return encode_failed(out, original_len, err, "tasks");
    }
    for (size_t i = 0; i < count; i++) {
        if (items[i] == NULL && lens[i] != 0) {
            out->len = original_len;
            return md_fail(err, MD_EARG, "tasks: item %zu is NULL", i);
        }
        if (md_mp_pack_bin(&pk, items[i], lens[i]) != 0) {
            return encode_failed(out, original_len, err, "tasks");
        }
    }
    return MD_OK;
}

/* Reads the array header of a payload of `count` elements, refusing a count
 * that cannot fit in the bytes left (each element takes at least one byte). */
static int read_payload_array(md_mp_cursor *c, uint32_t *count, const char *what,
                              md_error *err)
{
    if (!md_mp_read_array(c, count)) {
        return md_fail(err, MD_EFORMAT, "%s: payload is not an array", what);
    }
    if (*count > md_mp_cursor_left(c)) {
        return md_fail(err, MD_EFORMAT,
                       "%s: msgpack container announces more elements than there are bytes",
                       what);
    }
    return MD_OK;
}

/* Decoded with a cursor, not msgpack-c: a batch holds thousands of items, and
 * building an object per item cost more than running a no-op task. */
int md_bins_decode(const uint8_t *payload, size_t len, md_bin_visitor visit,
                   void *ctx, size_t *count_out, md_error *err)
{
    if (payload == NULL && len != 0) {
        return md_fail(err, MD_EARG, "tasks: NULL data");
    }
    md_mp_cursor c;
    uint32_t count = 0;
    const uint8_t *item = NULL;
    size_t item_len = 0;
    md_mp_cursor_init(&c, payload, len);
    int rc = read_payload_array(&c, &count, "tasks", err);
    if (rc != MD_OK) {
        return rc;
    }
    const uint8_t *items_start = c.pos;
    for (uint32_t i = 0; i < count; i++) {
        if (!md_mp_read_bin(&c, &item, &item_len)) {
            return md_fail(err, MD_EFORMAT, "tasks: item %u is not bin", (unsigned)i);
        }
    }
    if (c.pos != c.end) {
        return md_fail(err, MD_EFORMAT, "tasks: %zu unexpected bytes after the msgpack value",
                       md_mp_cursor_left(&c));
    }
    if (count_out != NULL) {
        *count_out = count;
    }
    c.pos = items_start;
    for (uint32_t i = 0; visit != NULL && i < count; i++) {
        (void)md_mp_read_bin(&c, &item, &item_len);
        rc = visit(ctx, i, item, item_len);
        if (rc != 0) {
            return rc;
        }
    }
    return MD_OK;
}

/* --------------------------------------------------------------- results */

/* A direct msgpack writer for results: every result of a batch goes through
 * here (worker) and the msgpack-c packer's callback per field was a tenth of
 * a no-op task's instructions.  The encodings are the ones msgpack-c picks
 * (smallest integer form, float64 for doubles), so the bytes are the same. */
typedef struct {
    uint8_t *p;
} mp_writer;

static void w_byte(mp_writer *w, uint8_t b)
{
    *w->p++ = b;
}

static void w_be(mp_writer *w, uint64_t v, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        w->p[i] = (uint8_t)(v >> (8 * (n - 1 - i)));
    }
    w->p += n;
}

static void w_uint(mp_writer *w, uint64_t v)
{
    if (v < 128) {
        w_byte(w, (uint8_t)v);
    } else if (v < 256) {
        w_byte(w, 0xcc);
        w_be(w, v, 1);
    } else if (v < 65536) {
        w_byte(w, 0xcd);
        w_be(w, v, 2);
    } else if (v <= UINT32_MAX) {
        w_byte(w, 0xce);
        w_be(w, v, 4);
    } else {
        w_byte(w, 0xcf);
        w_be(w, v, 8);
    }
}

static void w_int(mp_writer *w, int64_t v)
{
    if (v >= 0) {
        w_uint(w, (uint64_t)v);
    } else if (v >= -32) {
        w_byte(w, (uint8_t)(int8_t)v);
    } else if (v >= INT8_MIN) {
        w_byte(w, 0xd0);
        w_be(w, (uint64_t)v, 1);
    } else if (v >= INT16_MIN) {
        w_byte(w, 0xd1);
        w_be(w, (uint64_t)v, 2);
    } else if (v >= INT32_MIN) {
        w_byte(w, 0xd2);
        w_be(w, (uint64_t)v, 4);
    } else {
        w_byte(w, 0xd3);
        w_be(w, (uint64_t)v, 8);
    }
}

static void w_double(mp_writer *w, double d)
{
    uint64_t bits;
    memcpy(&bits, &d, sizeof bits);
    w_byte(w, 0xcb);
    w_be(w, bits, 8);
}

/* str (is_str) or bin of len bytes; nil when ptr is NULL. */
static void w_raw(mp_writer *w, int is_str, const void *ptr, size_t len)
{
    if (ptr == NULL) {
        w_byte(w, 0xc0);
        return;
    }
    if (is_str && len < 32) {
        w_byte(w, (uint8_t)(0xa0u | len));
    } else if (len < 256) {
        w_byte(w, is_str ? 0xd9 : 0xc4);
        w_be(w, len, 1);
    } else if (len < 65536) {
        w_byte(w, is_str ? 0xda : 0xc5);
        w_be(w, len, 2);
    } else {
        w_byte(w, is_str ? 0xdb : 0xc6);
        w_be(w, len, 4);
    }
    if (len > 0) {
        memcpy(w->p, ptr, len);
        w->p += len;
    }
}

static void w_array(mp_writer *w, size_t count)
{
    if (count < 16) {
        w_byte(w, (uint8_t)(0x90u | count));
    } else if (count < 65536) {
        w_byte(w, 0xdc);
        w_be(w, count, 2);
    } else {
        w_byte(w, 0xdd);
        w_be(w, count, 4);
    }
}

/* Header bytes of a result besides its strings and value: the array header,
 * three uints, two doubles, two int64s and five raw headers, at most. */
#define RESULT_FIXED_MAX (1u + 3u * 9u + 2u * 9u + 2u * 9u + 5u * 5u)

int md_results_encode(const md_task_result *results, size_t count, md_buf *out,
                      md_error *err)
{
    if (out == NULL || (count > 0 && results == NULL)) {
        return md_fail(err, MD_EARG, "results: NULL argument");
    }
    if (count > UINT32_MAX) {
        return md_fail(err, MD_ENOMEM, "results: out of memory, or a field over 4 GiB");
    }
    size_t need = 5;
    for (size_t i = 0; i < count; i++) {
        const md_task_result *r = &results[i];
        if (r->status != MD_TASK_COMPLETED && r->status != MD_TASK_FAILED) {
            return md_fail(err, MD_EARG, "results: result %zu has invalid status %d", i,
                           (int)r->status);
        }
        size_t lens[5] = {r->exc_type.len, r->exc_message.len, r->exc_traceback.len,
                          r->value_len, r->output.len};
        const void *ptrs[5] = {r->exc_type.ptr, r->exc_message.ptr, r->exc_traceback.ptr,
                               r->value, r->output.ptr};
        size_t item = RESULT_FIXED_MAX;
        for (size_t f = 0; f < 5; f++) {
            if (ptrs[f] == NULL && lens[f] != 0) {
                return md_fail(err, MD_EARG, "results: result %zu has a NULL field of %zu bytes",
                               i, lens[f]);
            }
            if (ptrs[f] != NULL && lens[f] > UINT32_MAX) {
                return md_fail(err, MD_ENOMEM, "results: out of memory, or a field over 4 GiB");
            }
            item += ptrs[f] != NULL ? lens[f] : 0;
        }
        if (item > SIZE_MAX - need) {
            return md_fail(err, MD_ENOMEM, "results: out of memory, or a field over 4 GiB");
        }
        need += item;
    }
    if (md_buf_reserve(out, need) != MD_OK) {
        return md_fail(err, MD_ENOMEM, "results: out of memory, or a field over 4 GiB");
    }
    mp_writer w = {out->data + out->len};
    w_array(&w, count);
    for (size_t i = 0; i < count; i++) {
        const md_task_result *r = &results[i];
        w_array(&w, RESULT_FIELDS);
        w_uint(&w, r->task_index);
        w_uint(&w, (uint64_t)r->status);
        w_uint(&w, r->attempt);
        w_double(&w, r->start_time);
        w_double(&w, r->run_time);
        w_int(&w, r->worker_pid);
        w_raw(&w, 1, r->exc_type.ptr, r->exc_type.len);
        w_raw(&w, 1, r->exc_message.ptr, r->exc_message.len);
        w_raw(&w, 1, r->exc_traceback.ptr, r->exc_traceback.len);
        w_raw(&w, 0, r->value, r->value_len);
        w_int(&w, r->max_rss);
        w_raw(&w, 1, r->output.ptr, r->output.len);
    }
    out->len = (size_t)(w.p - out->data);
    return MD_OK;
}

/* Returns NULL when ok, else the name of the first bad field. */
static const char *read_result(md_mp_cursor *c, md_task_result *r)
{
    uint32_t fields = 0;
    uint64_t u = 0;
    if (!md_mp_read_array(c, &fields) || fields < RESULT_FIELDS_MIN) {
        return "the result (not an array of at least 10 elements)";
    }
    memset(r, 0, sizeof *r);
    if (!md_mp_read_uint(c, UINT64_MAX, &r->task_index)) {
        return "task_index";
    }
    if (!md_mp_read_uint(c, MD_TASK_FAILED, &u) || u < MD_TASK_COMPLETED) {
        return "status";
    }
    r->status = (md_task_status)u;
    if (!md_mp_read_uint(c, UINT32_MAX, &u)) {
        return "attempt";
    }
    r->attempt = (uint32_t)u;
    if (!md_mp_read_double(c, &r->start_time)) {
        return "start_time";
    }
    if (!md_mp_read_double(c, &r->run_time)) {
        return "run_time";
    }
    if (!md_mp_read_int64(c, &r->worker_pid)) {
        return "worker_pid";
    }
    if (!md_mp_read_str_or_nil(c, &r->exc_type)) {
        return "exc_type";
    }
    if (!md_mp_read_str_or_nil(c, &r->exc_message)) {
        return "exc_message";
    }
    if (!md_mp_read_str_or_nil(c, &r->exc_traceback)) {
        return "exc_traceback";
    }
    if (!md_mp_read_bin_or_nil(c, &r->value, &r->value_len)) {
        return "value";
    }
    if (fields > 10 && !md_mp_read_int64(c, &r->max_rss)) {
        return "max_rss";
    }
    if (fields > 11 && !md_mp_read_str_or_nil(c, &r->output)) {
        return "output";
    }
    /* elements added after these by a later writer of format version 1 */
    for (uint32_t i = RESULT_FIELDS; i < fields; i++) {
        if (!md_mp_skip(c)) {
            return "the result (an extra element is not valid msgpack)";
        }
    }
    return NULL;
}

/* Decoded with a cursor, not msgpack-c: the supervisor checks every RESULTS
 * envelope and the client reads every one back, and an object tree of 13
 * objects per task was most of what the supervisor did. */
int md_results_decode(const uint8_t *payload, size_t len, md_result_visitor visit,
                      void *ctx, size_t *count_out, md_error *err)
{
    if (payload == NULL && len != 0) {
        return md_fail(err, MD_EARG, "results: NULL data");
    }
    md_mp_cursor c;
    uint32_t count = 0;
    md_task_result result;
    md_mp_cursor_init(&c, payload, len);
    int rc = read_payload_array(&c, &count, "results", err);
    if (rc != MD_OK) {
        return rc;
    }
    const uint8_t *results_start = c.pos;
    for (uint32_t i = 0; i < count; i++) {
        const char *bad = read_result(&c, &result);
        if (bad != NULL) {
            return md_fail(err, MD_EFORMAT, "results: result %u: bad %s", (unsigned)i, bad);
        }
    }
    if (c.pos != c.end) {
        return md_fail(err, MD_EFORMAT, "results: %zu unexpected bytes after the msgpack value",
                       md_mp_cursor_left(&c));
    }
    if (count_out != NULL) {
        *count_out = count;
    }
    c.pos = results_start;
    for (uint32_t i = 0; visit != NULL && i < count; i++) {
        (void)read_result(&c, &result);
        rc = visit(ctx, &result);
        if (rc != 0) {
            return rc;
        }
    }
    return MD_OK;
}

/* ---------------------------------------------------------------- jobdef */

struct md_jobdef_view {
    msgpack_unpacked unpacked;        /* owns the zone; strings point into the payload */
    md_jobdef def;
    const msgpack_object *sys_path;   /* the array, inside the zone */
    const msgpack_object *retry_on;   /* the array, inside the zone; NULL when absent */
};

enum {
    JD_NAME = 1u << 0,
    JD_JOB_KIND = 1u << 1,
    JD_FUNCTION_NAME = 1u << 2,
    JD_FUNCTION = 1u << 3,
    JD_COMBINER_NAME = 1u << 4,
    JD_COMBINER = 1u << 5,
    JD_TASK_COUNT = 1u << 6,
    JD_SHARD_SIZE = 1u << 7,
    JD_PYTHON_VERSION = 1u << 8,
    JD_CWD = 1u << 9,
    JD_EXECUTABLE = 1u << 10,
    JD_PREFIX = 1u << 11,
    JD_EXEC_PREFIX = 1u << 12,
    JD_SYS_PATH = 1u << 13,
    JD_NUM_WORKERS = 1u << 14,
    JD_CREATED = 1u << 15,
    JD_TASK_TIMEOUT = 1u << 16,
    JD_MAX_RETRIES = 1u << 17,
    JD_RETRY_ON = 1u << 18,
    JD_WORKER_MEMORY_LIMIT = 1u << 19,
    JD_SLOTS_DIR = 1u << 20,
    JD_WORKER_BUDGET = 1u << 21,
    JD_JOB_DIR = 1u << 22
};

/* combiner_name, combiner and the keys from bit 16 on may be left out. */
#define JD_REQUIRED (0xffffu & ~(unsigned)(JD_COMBINER_NAME | JD_COMBINER))

static int str_equals(md_str s, const char *lit)
{
    size_t n = strlen(lit);
    return s.ptr != NULL && s.len == n && memcmp(s.ptr, lit, n) == 0;
}

/* Returns the key's bit, 0 for keys the C side ignores; *ok is whether the
 * value has the right type. */
static unsigned read_jobdef_field(const msgpack_object *key, const msgpack_object *val,
                                  md_jobdef_view *view, int *ok)
{
    md_jobdef *d = &view->def;
    uint64_t u = 0;
    if (md_mp_key_is(key, "name")) {
        *ok = md_mp_get_str(val, &d->name);
        return JD_NAME;
    }
    if (md_mp_key_is(key, "job_kind")) {
        *ok = md_mp_get_str(val, &d->job_kind) &&
              (str_equals(d->job_kind, "map") || str_equals(d->job_kind, "single"));
        return JD_JOB_KIND;
    }
    if (md_mp_key_is(key, "function_name")) {
        *ok = md_mp_get_str(val, &d->function_name);
        return JD_FUNCTION_NAME;
    }
    if (md_mp_key_is(key, "function")) {
        *ok = md_mp_get_bin(val, &d->function, &d->function_len);
        return JD_FUNCTION;
    }
    if (md_mp_key_is(key, "combiner_name")) {
        *ok = md_mp_get_str_or_nil(val, &d->combiner_name);
        return JD_COMBINER_NAME;
    }
    if (md_mp_key_is(key, "combiner")) {
        *ok = md_mp_get_bin_or_nil(val, &d->combiner, &d->combiner_len);
        return JD_COMBINER;
    }
    if (md_mp_key_is(key, "task_count")) {
        *ok = md_mp_get_uint(val, UINT64_MAX, &d->task_count);
        return JD_TASK_COUNT;
    }
    if (md_mp_key_is(key, "shard_size")) {
        *ok = md_mp_get_uint(val, UINT64_MAX, &d->shard_size) && d->shard_size > 0;
        return JD_SHARD_SIZE;
    }
    if (md_mp_key_is(key, "python_version")) {
        *ok = md_mp_get_str(val, &d->python_version);
        return JD_PYTHON_VERSION;
    }
    if (md_mp_key_is(key, "cwd")) {
        *ok = md_mp_get_str(val, &d->cwd);
        return JD_CWD;
    }
    if (md_mp_key_is(key, "executable")) {
        *ok = md_mp_get_str(val, &d->executable);
        return JD_EXECUTABLE;
    }
    if (md_mp_key_is(key, "prefix")) {
        *ok = md_mp_get_str(val, &d->prefix);
        return JD_PREFIX;
    }
    if (md_mp_key_is(key, "exec_prefix")) {
        *ok = md_mp_get_str(val, &d->exec_prefix);
        return JD_EXEC_PREFIX;
    }
    if (md_mp_key_is(key, "sys_path")) {
        *ok = val->type == MSGPACK_OBJECT_ARRAY;
        for (uint32_t i = 0; *ok && i < val->via.array.size; i++) {
            *ok = val->via.array.ptr[i].type == MSGPACK_OBJECT_STR;
        }
        view->sys_path = val;
        d->sys_path_count = *ok ? val->via.array.size : 0;
        return JD_SYS_PATH;
    }
    if (md_mp_key_is(key, "num_workers")) {
        *ok = md_mp_get_uint(val, UINT32_MAX, &u);
        d->num_workers = (uint32_t)u;
        return JD_NUM_WORKERS;
    }
    if (md_mp_key_is(key, "created")) {
        *ok = md_mp_get_double(val, &d->created);
        return JD_CREATED;
    }
    /* optional: definitions written before these keys existed run without
     * a timeout or retries, as they always did */
    if (md_mp_key_is(key, "task_timeout")) {
        d->task_timeout = 0;
        *ok = val->type == MSGPACK_OBJECT_NIL ||
              (md_mp_get_double(val, &d->task_timeout) && d->task_timeout >= 0);
        return JD_TASK_TIMEOUT;
    }
    if (md_mp_key_is(key, "max_retries")) {
        *ok = md_mp_get_uint(val, UINT32_MAX, &u);
        d->max_retries = (uint32_t)u;
        return JD_MAX_RETRIES;
    }
    if (md_mp_key_is(key, "retry_on")) {
        *ok = val->type == MSGPACK_OBJECT_ARRAY;
        for (uint32_t i = 0; *ok && i < val->via.array.size; i++) {
            *ok = val->via.array.ptr[i].type == MSGPACK_OBJECT_STR;
        }
        view->retry_on = val;
        d->retry_on_count = *ok ? val->via.array.size : 0;
        d->retry_on_given = 1;
        return JD_RETRY_ON;
    }
    /* optional: definitions written before the session-wide worker budget
     * existed run with their own num_workers, as they always did */
    if (md_mp_key_is(key, "slots_dir")) {
        *ok = md_mp_get_str_or_nil(val, &d->slots_dir) &&
              (d->slots_dir.ptr == NULL ||
               (d->slots_dir.len > 0 && memchr(d->slots_dir.ptr, '\0', d->slots_dir.len) == NULL));
        return JD_SLOTS_DIR;
    }
    if (md_mp_key_is(key, "worker_budget")) {
        *ok = md_mp_get_uint(val, UINT32_MAX, &u);
        d->worker_budget = (uint32_t)u;
        return JD_WORKER_BUDGET;
    }
    if (md_mp_key_is(key, "worker_memory_limit")) {
        *ok = md_mp_get_uint(val, UINT64_MAX, &d->worker_memory_limit);
        return JD_WORKER_MEMORY_LIMIT;
    }
    if (md_mp_key_is(key, "job_dir")) {
        *ok = md_mp_get_str_or_nil(val, &d->job_dir) &&
              (d->job_dir.ptr == NULL ||
               (d->job_dir.len > 0 && d->job_dir.len < MD_PATH_MAX &&
                memchr(d->job_dir.ptr, '\0', d->job_dir.len) == NULL));
        return JD_JOB_DIR;
    }
    *ok = 1;
    return 0;
}

static const char *jobdef_missing_name(unsigned missing)
{
    static const char *const names[] = {
        "name", "job_kind", "function_name", "function", "combiner_name", "combiner",
        "task_count", "shard_size", "python_version", "cwd", "executable", "prefix",
        "exec_prefix", "sys_path", "num_workers", "created",
    };
    for (unsigned i = 0; i < sizeof names / sizeof names[0]; i++) {
        if (missing & (1u << i)) {
            return names[i];
        }
    }
    return "?";
}

int md_jobdef_decode(const uint8_t *payload, size_t len, md_jobdef_view **out,
                     md_error *err)
{
    if (out == NULL) {
        return md_fail(err, MD_EARG, "job definition: NULL argument");
    }
    *out = NULL;
    int rc = MD_OK;
    md_jobdef_view *view = calloc(1, sizeof *view);
    if (view == NULL) {
        return md_fail(err, MD_ENOMEM, "job definition: out of memory");
    }
    msgpack_unpacked_init(&view->unpacked);

    rc = md_mp_unpack(payload, len, &view->unpacked, "job definition", err);
    if (rc != MD_OK) {
        goto cleanup;
    }
    const msgpack_object *root = &view->unpacked.data;
    if (root->type != MSGPACK_OBJECT_MAP) {
        rc = md_fail(err, MD_EFORMAT, "job definition: payload is not a map");
        goto cleanup;
    }
    unsigned seen = 0;
    for (uint32_t i = 0; i < root->via.map.size; i++) {
        const msgpack_object *key = &root->via.map.ptr[i].key;
        int ok = 0;
        unsigned bit = read_jobdef_field(key, &root->via.map.ptr[i].val, view, &ok);
        if (seen & bit) {
            rc = md_fail(err, MD_EFORMAT, "job definition: key %.*s appears twice",
                         (int)key->via.str.size, key->via.str.ptr);
            goto cleanup;
        }
        seen |= bit;
        if (!ok) {
            rc = md_fail(err, MD_EFORMAT, "job definition: field %.*s has the wrong type or value",
                         (int)key->via.str.size, key->via.str.ptr);
            goto cleanup;
        }
    }
    if ((seen & JD_REQUIRED) != JD_REQUIRED) {
        rc = md_fail(err, MD_EFORMAT, "job definition: field %s is missing",
                     jobdef_missing_name(JD_REQUIRED & ~seen));
        goto cleanup;
    }
    if ((view->def.combiner == NULL) != (view->def.combiner_name.ptr == NULL)) {
        rc = md_fail(err, MD_EFORMAT,
                     "job definition: combiner and combiner_name must both be set or both nil");
        goto cleanup;
    }
    *out = view;
    view = NULL;

cleanup:
    md_jobdef_free(view);
    return rc;
}

const md_jobdef *md_jobdef_get(const md_jobdef_view *view)
{
    return view == NULL ? NULL : &view->def;
}

md_str md_jobdef_sys_path(const md_jobdef_view *view, size_t index)
{
    md_str s = {NULL, 0};
    if (view == NULL || view->sys_path == NULL || index >= view->def.sys_path_count) {
        return s;
    }
    (void)md_mp_get_str(&view->sys_path->via.array.ptr[index], &s);
    return s;
}

md_str md_jobdef_retry_on(const md_jobdef_view *view, size_t index)
{
    md_str s = {NULL, 0};
    if (view == NULL || view->retry_on == NULL || index >= view->def.retry_on_count) {
        return s;
    }
    (void)md_mp_get_str(&view->retry_on->via.array.ptr[index], &s);
    return s;
}

void md_jobdef_free(md_jobdef_view *view)
{
    if (view == NULL) {
        return;
    }
    msgpack_unpacked_destroy(&view->unpacked);
    free(view);
}

/* ---------------------------------------------------------------- status */

static const char *const state_names[] = {
    NULL, "Pending", "Running", "Completed", "Failed", "Canceled",
};
#define STATE_COUNT (sizeof state_names / sizeof state_names[0])

const char *md_state_name(md_state state)
{
    if ((int)state <= 0 || (size_t)state >= STATE_COUNT) {
        return NULL;
    }
    return state_names[state];
}

static int pack_double_or_nil(msgpack_packer *pk, double value)
{
    return value == 0.0 ? msgpack_pack_nil(pk) : msgpack_pack_double(pk, value);
}

int md_status_encode(const md_status *status, md_buf *out, md_error *err)
{
    if (status == NULL || out == NULL) {
        return md_fail(err, MD_EARG, "status: NULL argument");
    }
    const char *state = md_state_name(status->state);
    if (state == NULL) {
        return md_fail(err, MD_EARG, "status: invalid state %d", (int)status->state);
    }
    size_t original_len = out->len;
    msgpack_packer pk;
    md_mp_packer_init(&pk, out);
    if (md_mp_pack_map(&pk, 6) != 0 ||
        md_mp_pack_key(&pk, "state") != 0 || md_mp_pack_str(&pk, state, strlen(state)) != 0 ||
        md_mp_pack_key(&pk, "start_time") != 0 || pack_double_or_nil(&pk, status->start_time) != 0 ||
        md_mp_pack_key(&pk, "end_time") != 0 || pack_double_or_nil(&pk, status->end_time) != 0 ||
        md_mp_pack_key(&pk, "error") != 0 || md_mp_pack_str_or_nil(&pk, status->error) != 0 ||
        md_mp_pack_key(&pk, "supervisor_pid") != 0 ||
        (status->supervisor_pid == 0 ? msgpack_pack_nil(&pk)
                                     : msgpack_pack_int64(&pk, status->supervisor_pid)) != 0 ||
        md_mp_pack_key(&pk, "num_workers") != 0 ||
        msgpack_pack_uint32(&pk, status->num_workers) != 0) {
        return encode_failed(out, original_len, err, "status");
    }
    return MD_OK;
}

static int get_double_or_nil(const msgpack_object *o, double *out)
{
    if (o->type == MSGPACK_OBJECT_NIL) {
        *out = 0.0;
        return 1;
    }
    return md_mp_get_double(o, out);
}

static int state_from_name(md_str s, md_state *out)
{
    for (size_t i = 1; i < STATE_COUNT; i++) {
        if (str_equals(s, state_names[i])) {
            *out = (md_state)i;
            return 1;
        }
    }
    return 0;
}

int md_status_decode(const uint8_t *payload, size_t len, md_status *out, md_error *err)
{
    if (out == NULL) {
        return md_fail(err, MD_EARG, "status: NULL argument");
    }
    int rc = MD_OK;
    msgpack_unpacked unpacked;
    msgpack_unpacked_init(&unpacked);
    md_status status;
    memset(&status, 0, sizeof status);

    rc = md_mp_unpack(payload, len, &unpacked, "status", err);
    if (rc != MD_OK) {
        goto cleanup;
    }
    const msgpack_object *root = &unpacked.data;
    if (root->type != MSGPACK_OBJECT_MAP) {
        rc = md_fail(err, MD_EFORMAT, "status: payload is not a map");
        goto cleanup;
    }
    unsigned seen = 0;
    for (uint32_t i = 0; i < root->via.map.size; i++) {
        const msgpack_object *key = &root->via.map.ptr[i].key;
        const msgpack_object *val = &root->via.map.ptr[i].val;
        unsigned bit = 0;
        int ok = 1;
        md_str s = {NULL, 0};
        uint64_t u = 0;
        if (md_mp_key_is(key, "state")) {
            bit = 1u;
            ok = md_mp_get_str(val, &s) && state_from_name(s, &status.state);
        } else if (md_mp_key_is(key, "start_time")) {
            bit = 2u;
            ok = get_double_or_nil(val, &status.start_time);
        } else if (md_mp_key_is(key, "end_time")) {
            bit = 4u;
            ok = get_double_or_nil(val, &status.end_time);
        } else if (md_mp_key_is(key, "error")) {
            bit = 8u;
            ok = md_mp_get_str_or_nil(val, &status.error);
        } else if (md_mp_key_is(key, "supervisor_pid")) {
            bit = 16u;
            ok = val->type == MSGPACK_OBJECT_NIL || md_mp_get_int64(val, &status.supervisor_pid);
        } else if (md_mp_key_is(key, "num_workers")) {
            bit = 32u;
            ok = md_mp_get_uint(val, UINT32_MAX, &u);
            status.num_workers = (uint32_t)u;
        }
        /* Unknown keys are ignored: room for additions within format version 1. */
        if (seen & bit) {
            rc = md_fail(err, MD_EFORMAT, "status: key %.*s appears twice",
                         (int)key->via.str.size, key->via.str.ptr);
            goto cleanup;
        }
        seen |= bit;
        if (!ok) {
            rc = md_fail(err, MD_EFORMAT, "status: field %.*s has the wrong type or value",
                         (int)key->via.str.size, key->via.str.ptr);
            goto cleanup;
        }
    }
    if (seen != 63u) {
        rc = md_fail(err, MD_EFORMAT, "status: a field is missing (need state, start_time, "
                     "end_time, error, supervisor_pid, num_workers)");
        goto cleanup;
    }
    *out = status;

cleanup:
    msgpack_unpacked_destroy(&unpacked);
    return rc;
}

/* --------------------------------------------------------------- combine */

int md_combine_encode(const md_combine_entry *entries, size_t count, md_buf *out,
                      md_error *err)
{
    if (out == NULL || (count > 0 && entries == NULL)) {
        return md_fail(err, MD_EARG, "combine: NULL argument");
    }
    size_t original_len = out->len;
    msgpack_packer pk;
    md_mp_packer_init(&pk, out);
    if (md_mp_pack_array(&pk, count) != 0) {
        return encode_failed(out, original_len, err, "combine");
    }
    for (size_t i = 0; i < count; i++) {
        const md_combine_entry *e = &entries[i];
        if (md_mp_pack_array(&pk, 2) != 0 ||
            md_mp_pack_str(&pk, e->name.ptr != NULL ? e->name.ptr : "", e->name.ptr != NULL ? e->name.len : 0) != 0 ||
            md_mp_pack_bin_or_nil(&pk, e->value, e->value_len) != 0) {
            return encode_failed(out, original_len, err, "combine");
        }
    }
    return MD_OK;
}

static int read_combine_entry(const msgpack_object *o, md_combine_entry *e)
{
    return o->type == MSGPACK_OBJECT_ARRAY && o->via.array.size == 2 &&
           md_mp_get_str(&o->via.array.ptr[0], &e->name) &&
           md_mp_get_bin_or_nil(&o->via.array.ptr[1], &e->value, &e->value_len);
}

int md_combine_decode(const uint8_t *payload, size_t len, md_combine_visitor visit,
                      void *ctx, size_t *count_out, md_error *err)
{
    int rc = MD_OK;
    msgpack_unpacked unpacked;
    msgpack_unpacked_init(&unpacked);
    md_combine_entry entry;

    rc = md_mp_unpack(payload, len, &unpacked, "combine", err);
    if (rc != MD_OK) {
        goto cleanup;
    }
    const msgpack_object *root = &unpacked.data;
    if (root->type != MSGPACK_OBJECT_ARRAY) {
        rc = md_fail(err, MD_EFORMAT, "combine: payload is not an array");
        goto cleanup;
    }
    for (uint32_t i = 0; i < root->via.array.size; i++) {
        if (!read_combine_entry(&root->via.array.ptr[i], &entry)) {
            rc = md_fail(err, MD_EFORMAT, "combine: entry %u is not [name: str, value: bin or nil]",
                         (unsigned)i);
            goto cleanup;
        }
    }
    if (count_out != NULL) {
        *count_out = root->via.array.size;
    }
    for (uint32_t i = 0; visit != NULL && i < root->via.array.size; i++) {
        (void)read_combine_entry(&root->via.array.ptr[i], &entry);
        rc = visit(ctx, &entry);
        if (rc != 0) {
            goto cleanup;
        }
    }

cleanup:
    msgpack_unpacked_destroy(&unpacked);
    return rc;
}

/* ----------------------------------------------------------------- hello */

int md_hello_encode(const md_hello *hello, md_buf *out, md_error *err)
{
    if (hello == NULL || out == NULL || (hello->job_id.ptr == NULL && hello->job_id.len != 0)) {
        return md_fail(err, MD_EARG, "hello: NULL argument");
    }
    if (hello->job_id.len > MD_JOB_ID_MAX) {
        return md_fail(err, MD_EARG, "hello: job id must be at most %u bytes", MD_JOB_ID_MAX);
    }
    if (hello->log.ptr != NULL &&
        (hello->log.len == 0 || hello->log.len >= MD_PATH_MAX ||
         memchr(hello->log.ptr, '\0', hello->log.len) != NULL)) {
        return md_fail(err, MD_EARG, "hello: the log path must be 1 to %u bytes without NUL",
                       MD_PATH_MAX - 1);
    }
    size_t original_len = out->len;
    msgpack_packer pk;
    md_mp_packer_init(&pk, out);
    if (md_mp_pack_map(&pk, hello->log.ptr != NULL ? 4u : 3u) != 0 ||
        md_mp_pack_key(&pk, "v") != 0 || msgpack_pack_uint32(&pk, HELLO_VERSION) != 0 ||
        md_mp_pack_key(&pk, "key") != 0 || md_mp_pack_bin(&pk, hello->key.bytes, MD_KEY_LEN) != 0 ||
        md_mp_pack_key(&pk, "job") != 0 ||
        md_mp_pack_str(&pk, hello->job_id.ptr, hello->job_id.len) != 0) {
        return encode_failed(out, original_len, err, "hello");
    }
    if (hello->log.ptr != NULL &&
        (md_mp_pack_key(&pk, "log") != 0 ||
         md_mp_pack_str(&pk, hello->log.ptr, hello->log.len) != 0)) {
        return encode_failed(out, original_len, err, "hello");
    }
    return MD_OK;
}

int md_hello_decode(const uint8_t *data, size_t len, md_hello *out, md_error *err)
{
    if (out == NULL) {
        return md_fail(err, MD_EARG, "hello: NULL argument");
    }
    int rc = MD_OK;
    msgpack_unpacked unpacked;
    msgpack_unpacked_init(&unpacked);
    md_hello hello;
    memset(&hello, 0, sizeof hello);
    uint64_t version = 0;
    const uint8_t *key = NULL;
    size_t key_len = 0;

    rc = md_mp_unpack(data, len, &unpacked, "hello", err);
    if (rc != MD_OK) {
        goto cleanup;
    }
    const msgpack_object *root = &unpacked.data;
    if (root->type != MSGPACK_OBJECT_MAP || root->via.map.size < 3 || root->via.map.size > 4) {
        rc = md_fail(err, MD_EFORMAT, "hello: not a map of the keys v, key, job and maybe log");
        goto cleanup;
    }
    unsigned seen = 0;
    for (uint32_t i = 0; i < root->via.map.size; i++) {
        const msgpack_object *k = &root->via.map.ptr[i].key;
        const msgpack_object *val = &root->via.map.ptr[i].val;
        unsigned bit;
        int ok;
        if (md_mp_key_is(k, "v")) {
            bit = 1u;
            ok = md_mp_get_uint(val, UINT64_MAX, &version);
        } else if (md_mp_key_is(k, "key")) {
            bit = 2u;
            ok = md_mp_get_bin(val, &key, &key_len) && key_len == MD_KEY_LEN;
        } else if (md_mp_key_is(k, "job")) {
            bit = 4u;
            ok = md_mp_get_str(val, &hello.job_id) && hello.job_id.len <= MD_JOB_ID_MAX;
        } else if (md_mp_key_is(k, "log")) {
            bit = 8u;
            ok = md_mp_get_str(val, &hello.log) && hello.log.len > 0 &&
                 hello.log.len < MD_PATH_MAX &&
                 memchr(hello.log.ptr, '\0', hello.log.len) == NULL;
        } else {
            rc = md_fail(err, MD_EFORMAT, "hello: unexpected key (expected v, key, job, log)");
            goto cleanup;
        }
        if (seen & bit) {
            rc = md_fail(err, MD_EFORMAT, "hello: repeated key");
            goto cleanup;
        }
        seen |= bit;
        if (!ok) {
            rc = md_fail(err, MD_EFORMAT, "hello: field %.*s has the wrong type or value",
                         (int)k->via.str.size, k->via.str.ptr);
            goto cleanup;
        }
    }
    if (version != HELLO_VERSION) {
        rc = md_fail(err, MD_EVERSION, "hello: format version %llu is not the one this "
                     "mapdeploy understands (%u); the supervisor and worker must be the same version",
                     (unsigned long long)version, HELLO_VERSION);
        goto cleanup;
    }
    memcpy(hello.key.bytes, key, MD_KEY_LEN);
    *out = hello;

cleanup:
    msgpack_unpacked_destroy(&unpacked);
    return rc;
}

int md_ready_decode(const uint8_t *payload, size_t len, md_ready *out, md_error *err)
{
    if (out == NULL || (payload == NULL && len != 0)) {
        return md_fail(err, MD_EARG, "ready: NULL argument");
    }
    int rc = MD_OK;
    msgpack_unpacked unpacked;
    msgpack_unpacked_init(&unpacked);
    md_ready ready;
    memset(&ready, 0, sizeof ready);

    /* The bounded pre-walk matters here: the bytes come from a worker, which
     * runs user code, and a map header announcing 4 billion entries must not
     * make the supervisor allocate for them. */
    rc = md_mp_unpack(payload, len, &unpacked, "ready", err);
    if (rc != MD_OK) {
        goto cleanup;
    }
    const msgpack_object *root = &unpacked.data;
    if (root->type != MSGPACK_OBJECT_MAP) {
        rc = md_fail(err, MD_EFORMAT, "ready: the payload is not a map");
        goto cleanup;
    }
    unsigned seen = 0;
    for (uint32_t i = 0; i < root->via.map.size; i++) {
        const msgpack_object *k = &root->via.map.ptr[i].key;
        const msgpack_object *val = &root->via.map.ptr[i].val;
        unsigned bit;
        int ok;
        if (md_mp_key_is(k, "pid")) {
            bit = 1u;
            ok = md_mp_get_int64(val, &ready.pid);
        } else if (md_mp_key_is(k, "python_version")) {
            bit = 2u;
            ok = md_mp_get_str(val, &ready.python_version);
        } else if (md_mp_key_is(k, "error")) {
            bit = 4u;
            ok = md_mp_get_str_or_nil(val, &ready.error);
        } else {
            continue;   /* room for additions within format version 1 */
        }
        if (seen & bit) {
            rc = md_fail(err, MD_EFORMAT, "ready: repeated key");
            goto cleanup;
        }
        seen |= bit;
        if (!ok) {
            rc = md_fail(err, MD_EFORMAT, "ready: field %.*s has the wrong type",
                         (int)k->via.str.size, k->via.str.ptr);
            goto cleanup;
        }
    }
    *out = ready;

cleanup:
    msgpack_unpacked_destroy(&unpacked);
    return rc;
}
