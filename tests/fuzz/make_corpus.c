/* Writes the seed corpus for the fuzz targets: valid encodings made with the
 * core itself.  Usage: make_corpus <corpus-dir>  (creates <dir>/<target>/). */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <msgpack.h>

#include "mdcore.h"

static const md_key corpus_key = {{
    0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f,
    0x10, 0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x18, 0x19, 0x1a, 0x1b, 0x1c, 0x1d, 0x1e, 0x1f,
}};

static int make_dir(const char *path)
{
    if (mkdir(path, 0755) != 0 && errno != EEXIST) {
        perror(path);
        return -1;
    }
    return 0;
}

/* Writes <root>/<target>/<name>, optionally preceded by one selector byte. */
static int write_seed(const char *root, const char *target, const char *name, int selector,
                      const uint8_t *data, size_t len)
{
    char dir[1024];
    char path[1200];
    int n = snprintf(dir, sizeof dir, "%s/%s", root, target);
    if (n < 0 || (size_t)n >= sizeof dir || make_dir(dir) != 0) {
        return -1;
    }
    n = snprintf(path, sizeof path, "%s/%s", dir, name);
    if (n < 0 || (size_t)n >= sizeof path) {
        return -1;
    }
    FILE *f = fopen(path, "wb");
    if (f == NULL) {
        perror(path);
        return -1;
    }
    int rc = 0;
    if (selector >= 0 && fputc(selector, f) == EOF) {
        rc = -1;
    }
    if (len > 0 && fwrite(data, 1, len, f) != len) {
        rc = -1;
    }
    if (fclose(f) != 0) {
        rc = -1;
    }
    if (rc != 0) {
        fprintf(stderr, "cannot write %s\n", path);
    }
    return rc;
}

static md_str lit(const char *s)
{
    md_str m = {s, strlen(s)};
    return m;
}

static int sbuf_write(void *ctx, const char *buf, size_t len)
{
    return md_buf_append((md_buf *)ctx, buf, len) == MD_OK ? 0 : -1;
}

static int jobdef(md_buf *out)
{
    msgpack_packer pk;
    msgpack_packer_init(&pk, out, sbuf_write);
    int bad = 0;
#define KEY(k) bad |= msgpack_pack_str_with_body(&pk, k, strlen(k))
#define STR(v) bad |= msgpack_pack_str_with_body(&pk, v, strlen(v))
    bad |= msgpack_pack_map(&pk, 17);
    KEY("name"); STR("seed job");
    KEY("job_kind"); STR("map");
    KEY("function_name"); STR("f");
    KEY("function"); bad |= msgpack_pack_bin_with_body(&pk, "\x80\x05.", 3);
    KEY("combiner_name"); STR("c");
    KEY("combiner"); bad |= msgpack_pack_bin_with_body(&pk, "\x80\x05N.", 4);
    KEY("task_count"); bad |= msgpack_pack_uint64(&pk, 10);
    KEY("shard_size"); bad |= msgpack_pack_uint64(&pk, 4);
    KEY("python_version"); STR("3.11");
    KEY("cwd"); STR("/tmp");
    KEY("executable"); STR("/usr/bin/python3");
    KEY("prefix"); STR("/usr");
    KEY("exec_prefix"); STR("/usr");
    KEY("sys_path"); bad |= msgpack_pack_array(&pk, 2); STR("/tmp"); STR("/usr/lib/python3.11");
    KEY("num_workers"); bad |= msgpack_pack_uint32(&pk, 0);
    KEY("created"); bad |= msgpack_pack_double(&pk, 1700000000.0);
    KEY("environment"); bad |= msgpack_pack_nil(&pk);
#undef KEY
#undef STR
    return bad;
}

/* The body map of protocol.md, as md_envelope_encode writes it. */
static int envelope_body(const md_envelope *e, const char *kind, md_buf *out)
{
    msgpack_packer pk;
    msgpack_packer_init(&pk, out, sbuf_write);
    return msgpack_pack_map(&pk, 6) | msgpack_pack_str_with_body(&pk, "kind", 4) |
           msgpack_pack_str_with_body(&pk, kind, strlen(kind)) |
           msgpack_pack_str_with_body(&pk, "job", 3) |
           msgpack_pack_str_with_body(&pk, e->job_id, e->job_id_len) |
           msgpack_pack_str_with_body(&pk, "first", 5) | msgpack_pack_uint64(&pk, e->first) |
           msgpack_pack_str_with_body(&pk, "count", 5) | msgpack_pack_uint64(&pk, e->count) |
           msgpack_pack_str_with_body(&pk, "attempt", 7) | msgpack_pack_uint32(&pk, e->attempt) |
           msgpack_pack_str_with_body(&pk, "payload", 7) |
           msgpack_pack_bin_with_body(&pk, e->payload, e->payload_len);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s <corpus-dir>\n", argv[0]);
        return 2;
    }
    const char *root = argv[1];
    if (make_dir(root) != 0) {
        return 1;
    }
    int rc = 0;
    md_error err;
    md_buf results, bins, status, combine, hello, job, env;
    md_buf_init(&results);
    md_buf_init(&bins);
    md_buf_init(&status);
    md_buf_init(&combine);
    md_buf_init(&hello);
    md_buf_init(&job);
    md_buf_init(&env);

    md_task_result rs[2];
    memset(rs, 0, sizeof rs);
    rs[0].task_index = 3;
    rs[0].status = MD_TASK_COMPLETED;
    rs[0].start_time = 1700000000.5;
    rs[0].run_time = 0.01;
    rs[0].worker_pid = 100;
    rs[0].value = (const uint8_t *)"\x80\x05K\x07.";
    rs[0].value_len = 5;
    rs[1].task_index = 4;
    rs[1].status = MD_TASK_FAILED;
    rs[1].attempt = 1;
    rs[1].worker_pid = 101;
    rs[1].exc_type = lit("ValueError");
    rs[1].exc_message = lit("bad value");
    rs[1].exc_traceback = lit("Traceback (most recent call last):\n");
    const uint8_t *items[2] = {(const uint8_t *)"\x80\x05}\x94.", (const uint8_t *)""};
    size_t lens[2] = {5, 0};
    md_status st;
    memset(&st, 0, sizeof st);
    st.state = MD_STATE_FAILED;
    st.start_time = 1700000000.0;
    st.end_time = 1700000010.0;
    st.error = lit("worker died");
    st.supervisor_pid = 55;
    st.num_workers = 2;
    md_combine_entry entries[2] = {{lit("a"), (const uint8_t *)"x", 1}, {lit("b"), NULL, 0}};
    md_hello h;
    memset(&h, 0, sizeof h);
    h.key = corpus_key;
    h.job_id = lit("job-1");

    if (md_results_encode(rs, 2, &results, &err) != MD_OK ||
        md_bins_encode(items, lens, 2, &bins, &err) != MD_OK ||
        md_status_encode(&st, &status, &err) != MD_OK ||
        md_combine_encode(entries, 2, &combine, &err) != MD_OK ||
        md_hello_encode(&h, &hello, &err) != MD_OK || jobdef(&job) != 0) {
        fprintf(stderr, "encoding failed: %s\n", err.message);
        rc = 1;
        goto cleanup;
    }

    /* records: selector byte = decoder */
    rc |= write_seed(root, "records", "results", 0, results.data, results.len);
    rc |= write_seed(root, "records", "bins", 1, bins.data, bins.len);
    rc |= write_seed(root, "records", "jobdef", 2, job.data, job.len);
    rc |= write_seed(root, "records", "status", 3, status.data, status.len);
    rc |= write_seed(root, "records", "combine", 4, combine.data, combine.len);
    rc |= write_seed(root, "records", "hello", 5, hello.data, hello.len);
    {
        md_buf switch_hello;
        md_buf_init(&switch_hello);
        h.log = lit("/home/u/.mapdeploy/jobs/j/logs/worker-0.log");
        if (md_hello_encode(&h, &switch_hello, &err) != MD_OK) {
            rc = 1;
        } else {
            rc |= write_seed(root, "records", "hello-switch", 5, switch_hello.data,
                             switch_hello.len);
        }
        md_buf_free(&switch_hello);
    }
    {
        md_buf request;
        md_buf_init(&request);
        if (md_pool_request_encode(MD_POOL_RUN, "/home/u/.mapdeploy/jobs/add-1", &request,
                                   &err) != MD_OK) {
            rc = 1;
        } else {
            rc |= write_seed(root, "pool", "run", -1, request.data, request.len);
        }
        md_buf_clear(&request);
        if (md_pool_request_encode(MD_POOL_STOP, NULL, &request, &err) != MD_OK) {
            rc = 1;
        } else {
            rc |= write_seed(root, "pool", "stop", -1, request.data, request.len);
        }
        md_buf_free(&request);
    }

    /* envelopes: selector 0 = raw envelope, 1 = body wrapped with a valid MAC */
    const md_buf *payloads[6] = {&job, &bins, &results, &status, &combine, &hello};
    const char *names[6] = {"job", "tasks", "results", "status", "combine", "ready"};
    md_buf log;
    md_buf_init(&log);
    for (int k = 0; k < 6 && rc == 0; k++) {
        md_envelope e;
        memset(&e, 0, sizeof e);
        e.kind = (md_kind)(k + 1);
        e.job_id = "job-1";
        e.job_id_len = 5;
        e.first = (uint64_t)k;
        e.count = 2;
        e.payload = payloads[k]->data;
        e.payload_len = payloads[k]->len;
        md_buf_clear(&env);
        if (md_envelope_encode(&corpus_key, &e, &env, &err) != MD_OK) {
            fprintf(stderr, "envelope: %s\n", err.message);
            rc = 1;
            break;
        }
        char name[64];
        int n = snprintf(name, sizeof name, "raw-%s", names[k]);
        if (n < 0 || (size_t)n >= sizeof name) {
            rc = 1;
            break;
        }
        rc |= write_seed(root, "envelope", name, 0, env.data, env.len);
        /* The same body bare, for the target's "wrap with a valid MAC" mode. */
        md_buf body;
        md_buf_init(&body);
        if (envelope_body(&e, names[k], &body) != 0) {
            rc = 1;
        }
        n = snprintf(name, sizeof name, "body-%s", names[k]);
        if (rc == 0 && n > 0 && (size_t)n < sizeof name) {
            rc |= write_seed(root, "envelope", name, 1, body.data, body.len);
        }
        md_buf_free(&body);
        /* frames and the log carry whole envelopes */
        uint8_t header[4] = {(uint8_t)(env.len >> 24), (uint8_t)(env.len >> 16),
                             (uint8_t)(env.len >> 8), (uint8_t)env.len};
        md_buf frame;
        md_buf_init(&frame);
        if (md_buf_append(&frame, header, 4) != MD_OK || md_buf_append(&frame, env.data, env.len) != MD_OK) {
            rc = 1;
        }
        n = snprintf(name, sizeof name, "frame-%s", names[k]);
        if (rc == 0 && n > 0 && (size_t)n < sizeof name) {
            /* selector byte 0xff: max_len = 255 * 64 */
            rc |= write_seed(root, "frame", name, 0xff, frame.data, frame.len);
        }
        md_buf_free(&frame);
        uint32_t crc = md_crc32c(0, env.data, env.len);
        uint8_t log_header[8] = {header[0], header[1], header[2], header[3],
                                 (uint8_t)(crc >> 24), (uint8_t)(crc >> 16), (uint8_t)(crc >> 8),
                                 (uint8_t)crc};
        if (md_buf_append(&log, log_header, 8) != MD_OK || md_buf_append(&log, env.data, env.len) != MD_OK) {
            rc = 1;
        }
    }
    /* oob: a wrapper with two blob references, without its magic (the
     * target prepends it), and one with none */
    md_buf oob;
    md_buf_init(&oob);
    md_blob_ref refs[2];
    memset(refs, 0, sizeof refs);
    refs[0].length = (uint64_t)1 << 20;
    refs[0].readonly = 1;
    memset(refs[0].nonce, 0x11, MD_BLOB_NONCE_LEN);
    memset(refs[0].tag, 0x22, MD_BLOB_TAG_LEN);
    refs[1].length = (uint64_t)3 << 20;
    memset(refs[1].nonce, 0x33, MD_BLOB_NONCE_LEN);
    static const uint8_t two_buffers[] = {0x80, 0x05, '}', '(', 0x8c, 1, 'a', 0x97, 0x98,
                                          0x8c, 1, 'b', 0x97, 'u', '.'};
    if (rc == 0 && md_oob_encode(two_buffers, sizeof two_buffers, refs, 2, &oob, &err) == MD_OK) {
        rc |= write_seed(root, "oob", "two-blobs", -1, oob.data + MD_OOB_MAGIC_LEN,
                         oob.len - MD_OOB_MAGIC_LEN);
    } else {
        rc = 1;
    }
    md_buf_clear(&oob);
    if (rc == 0 && md_oob_encode(two_buffers, sizeof two_buffers, refs, 0, &oob, &err) == MD_OK) {
        rc |= write_seed(root, "oob", "no-blobs", -1, oob.data + MD_OOB_MAGIC_LEN,
                         oob.len - MD_OOB_MAGIC_LEN);
    } else {
        rc = 1;
    }
    md_buf_free(&oob);
    if (rc == 0) {
        rc |= write_seed(root, "log", "torn-tail", -1, log.data, log.len / 2);
        rc |= write_seed(root, "log", "six-records", -1, log.data, log.len);
    }
    md_buf_free(&log);

cleanup:
    md_buf_free(&results);
    md_buf_free(&bins);
    md_buf_free(&status);
    md_buf_free(&combine);
    md_buf_free(&hello);
    md_buf_free(&job);
    md_buf_free(&env);
    return rc == 0 ? 0 : 1;
}
