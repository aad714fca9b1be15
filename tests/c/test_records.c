/* Payload codecs: round trips, nil fields, forward-compatible result arrays,
 * jobdef ownership, and truncation at every length. */
#include <msgpack.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "mdcore.h"

typedef struct {
    md_task_result results[8];
    size_t n;
} result_sink;

static int collect_result(void *ctx, const md_task_result *r)
{
    result_sink *sink = ctx;
    if (sink->n < 8) {
        sink->results[sink->n++] = *r;
    }
    return 0;
}

static int stop_at_second(void *ctx, size_t index, const uint8_t *item, size_t len)
{
    (void)item;
    (void)len;
    size_t *seen = ctx;
    *seen = index + 1;
    return index == 1 ? 99 : 0;
}

typedef struct {
    md_combine_entry entries[4];
    size_t n;
} combine_sink;

static int collect_combine(void *ctx, const md_combine_entry *e)
{
    combine_sink *sink = ctx;
    if (sink->n < 4) {
        sink->entries[sink->n++] = *e;
    }
    return 0;
}

static md_str lit(const char *s)
{
    md_str m = {s, strlen(s)};
    return m;
}

static int str_is(md_str s, const char *want)
{
    return s.ptr != NULL && s.len == strlen(want) && memcmp(s.ptr, want, s.len) == 0;
}

/* Every proper prefix of a valid payload must be rejected, without crashing. */
static int prefixes_rejected(const md_buf *buf, int which)
{
    for (size_t n = 0; n < buf->len; n++) {
        uint8_t *copy = malloc(n > 0 ? n : 1);
        memcpy(copy, buf->data, n);
        int rc = 0;
        md_status st;
        md_hello hello;
        md_jobdef_view *view = NULL;
        switch (which) {
        case 0: rc = md_results_decode(copy, n, NULL, NULL, NULL, NULL); break;
        case 1: rc = md_status_decode(copy, n, &st, NULL); break;
        case 2: rc = md_hello_decode(copy, n, &hello, NULL); break;
        case 3: rc = md_jobdef_decode(copy, n, &view, NULL); break;
        case 4: rc = md_combine_decode(copy, n, NULL, NULL, NULL, NULL); break;
        default: rc = md_bins_decode(copy, n, NULL, NULL, NULL, NULL); break;
        }
        md_jobdef_free(view);
        free(copy);
        if (rc >= 0) {
            return 0;
        }
    }
    return 1;
}

static void encode_jobdef(md_buf *out, int with_combiner, int extra_key, int with_retries)
{
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    /* extra_key: bit 0 adds a key the C side ignores, bit 1 worker_memory_limit,
     * bit 2 a worker_memory_limit of the wrong type */
    msgpack_pack_map(&pk, 16u + ((extra_key & 1) ? 1u : 0u) + ((extra_key & 6) ? 1u : 0u) +
                              (with_retries ? 5u : 0u));
#define KEY(k) msgpack_pack_str_with_body(&pk, k, strlen(k))
#define STR(v) msgpack_pack_str_with_body(&pk, v, strlen(v))
    KEY("name"); STR("my job");
    KEY("job_kind"); STR("map");
    KEY("function_name"); STR("square");
    KEY("function"); msgpack_pack_bin_with_body(&pk, "\x80\x05pickle", 8);
    KEY("combiner_name");
    if (with_combiner) { STR("total"); } else { msgpack_pack_nil(&pk); }
    KEY("combiner");
    if (with_combiner) { msgpack_pack_bin_with_body(&pk, "\x80\x05comb", 6); } else { msgpack_pack_nil(&pk); }
    KEY("task_count"); msgpack_pack_uint64(&pk, 1000);
    KEY("shard_size"); msgpack_pack_uint64(&pk, 256);
    KEY("python_version"); STR("3.11");
    KEY("cwd"); STR("/home/u");
    KEY("executable"); STR("/usr/bin/python3");
    KEY("prefix"); STR("/usr");
    KEY("exec_prefix"); STR("/usr");
    KEY("sys_path"); msgpack_pack_array(&pk, 3); STR("/home/u"); STR("/usr/lib/python3.11"); STR("");
    KEY("num_workers"); msgpack_pack_uint32(&pk, 4);
    KEY("created"); msgpack_pack_double(&pk, 1700000000.5);
    if (extra_key & 1) {
        KEY("environment"); msgpack_pack_map(&pk, 1); STR("PATH"); STR("/bin");
    }
    if (with_retries) {
        KEY("task_timeout"); msgpack_pack_double(&pk, 2.5);
        KEY("max_retries"); msgpack_pack_uint32(&pk, 3);
        KEY("retry_on"); msgpack_pack_array(&pk, 2); STR("WorkerDied"); STR("ValueError");
        KEY("slots_dir"); STR("/home/u/.mapdeploy/slots");
        KEY("worker_budget"); msgpack_pack_uint32(&pk, 6);
    }
    if (extra_key & 2) {
        KEY("worker_memory_limit"); msgpack_pack_uint64(&pk, 3ull << 30);
    }
    if (extra_key & 4) {
        KEY("worker_memory_limit"); STR("3G");
    }
#undef KEY
#undef STR
    md_buf_append(out, sb.data, sb.size);
    msgpack_sbuffer_destroy(&sb);
}

/* The bytes msgpack-c's packer makes for results (what md_results_encode
 * wrote before it packed them itself): the two must agree byte for byte. */
static void pack_str_or_nil(msgpack_packer *pk, const char *ptr, size_t len)
{
    if (ptr == NULL) {
        msgpack_pack_nil(pk);
    } else {
        msgpack_pack_str_with_body(pk, ptr, len);
    }
}

static void reference_results(const md_task_result *rs, size_t n, msgpack_sbuffer *sb)
{
    msgpack_packer pk;
    msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
    msgpack_pack_array(&pk, n);
    for (size_t i = 0; i < n; i++) {
        const md_task_result *r = &rs[i];
        msgpack_pack_array(&pk, 12);
        msgpack_pack_uint64(&pk, r->task_index);
        msgpack_pack_uint32(&pk, (uint32_t)r->status);
        msgpack_pack_uint32(&pk, r->attempt);
        msgpack_pack_double(&pk, r->start_time);
        msgpack_pack_double(&pk, r->run_time);
        msgpack_pack_int64(&pk, r->worker_pid);
        pack_str_or_nil(&pk, r->exc_type.ptr, r->exc_type.len);
        pack_str_or_nil(&pk, r->exc_message.ptr, r->exc_message.len);
        pack_str_or_nil(&pk, r->exc_traceback.ptr, r->exc_traceback.len);
        if (r->value == NULL) {
            msgpack_pack_nil(&pk);
        } else {
            msgpack_pack_bin_with_body(&pk, r->value, r->value_len);
        }
        msgpack_pack_int64(&pk, r->max_rss);
        pack_str_or_nil(&pk, r->output.ptr, r->output.len);
    }
}

static void check_encoding_matches_msgpack_c(md_test_counts *c)
{
    static char text[70000];
    memset(text, 'a', sizeof text);
    const size_t sizes[] = {0, 1, 31, 32, 255, 256, 65535, 65536};
    const int64_t ints[] = {0, 127, 128, 255, 256, 65535, 65536, 4294967295LL, 4294967296LL,
                            -1, -32, -33, -128, -129, -32768, -32769, -2147483648LL,
                            -2147483649LL, INT64_MIN, INT64_MAX};
    md_task_result rs[20];
    size_t n = sizeof ints / sizeof ints[0];
    memset(rs, 0, sizeof rs);
    for (size_t i = 0; i < n; i++) {
        size_t len = sizes[i % (sizeof sizes / sizeof sizes[0])];
        rs[i].task_index = ints[i] >= 0 ? (uint64_t)ints[i] : (uint64_t)INT64_MAX + (uint64_t)i;
        rs[i].status = i % 2 ? MD_TASK_FAILED : MD_TASK_COMPLETED;
        rs[i].attempt = (uint32_t)(i * 40000u);
        rs[i].start_time = 1700000000.25 + (double)i;
        rs[i].run_time = -0.0;
        rs[i].worker_pid = ints[i];
        rs[i].max_rss = ints[n - 1 - i];
        if (i % 3 != 0) {
            rs[i].exc_type.ptr = text;
            rs[i].exc_type.len = len;
            rs[i].output.ptr = text;
            rs[i].output.len = sizes[(i + 3) % 8];
        }
        if (i % 4 != 1) {
            rs[i].value = (const uint8_t *)text;
            rs[i].value_len = len;
        }
        if (i % 5 == 2) {
            rs[i].exc_message.ptr = text;
            rs[i].exc_message.len = sizes[(i + 1) % 8];
            rs[i].exc_traceback.ptr = text;
            rs[i].exc_traceback.len = 0;
        }
    }
    md_buf buf;
    md_error err;
    md_buf_init(&buf);
    /* appended after what the buffer holds, like every encoder */
    CHECK(c, md_buf_append(&buf, "xy", 2) == MD_OK);
    CHECK(c, md_results_encode(rs, n, &buf, &err) == MD_OK);
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    reference_results(rs, n, &sb);
    CHECK(c, buf.len == sb.size + 2 && memcmp(buf.data, "xy", 2) == 0 &&
             memcmp(buf.data + 2, sb.data, sb.size) == 0);
    msgpack_sbuffer_destroy(&sb);
    /* an array header of 16 and more results */
    md_buf_clear(&buf);
    md_task_result many[17];
    memset(many, 0, sizeof many);
    for (size_t i = 0; i < 17; i++) {
        many[i].status = MD_TASK_COMPLETED;
    }
    CHECK(c, md_results_encode(many, 17, &buf, &err) == MD_OK);
    msgpack_sbuffer_init(&sb);
    reference_results(many, 17, &sb);
    CHECK(c, buf.len == sb.size && memcmp(buf.data, sb.data, sb.size) == 0);
    msgpack_sbuffer_destroy(&sb);
    md_buf_free(&buf);
}

int main(void)
{
    md_test_counts c = {0, 0};
    check_encoding_matches_msgpack_c(&c);
    md_error err;
    md_error_clear(&err);
    md_buf buf;
    md_buf_init(&buf);

    /* ---- bins */
    const uint8_t *items[3] = {(const uint8_t *)"a", (const uint8_t *)"", (const uint8_t *)"ccc"};
    size_t lens[3] = {1, 0, 3};
    size_t count = 0;
    CHECK(&c, md_bins_encode(items, lens, 3, &buf, &err) == MD_OK);
    CHECK(&c, md_bins_decode(buf.data, buf.len, NULL, NULL, &count, &err) == MD_OK && count == 3);
    size_t seen = 0;
    CHECK(&c, md_bins_decode(buf.data, buf.len, stop_at_second, &seen, NULL, &err) == 99);
    CHECK(&c, seen == 2);
    CHECK(&c, prefixes_rejected(&buf, 5));
    const uint8_t not_bins[] = {0x92, 0xc4, 0x00, 0xa0};   /* [bin, str] */
    CHECK(&c, md_bins_decode(not_bins, sizeof not_bins, NULL, NULL, NULL, &err) == MD_EFORMAT);
    md_buf_clear(&buf);

    /* ---- results */
    md_task_result rs[2];
    memset(rs, 0, sizeof rs);
    rs[0].task_index = 5;
    rs[0].status = MD_TASK_COMPLETED;
    rs[0].attempt = 1;
    rs[0].start_time = 1700000000.25;
    rs[0].run_time = 0.5;
    rs[0].worker_pid = 4242;
    rs[0].value = (const uint8_t *)"\x80\x05K\x19.";
    rs[0].value_len = 5;
    rs[1].task_index = 6;
    rs[1].status = MD_TASK_FAILED;
    rs[1].worker_pid = -1;
    rs[1].exc_type = lit("TypeError");
    rs[1].exc_message = lit("");
    rs[1].exc_traceback = lit("Traceback ...");
    CHECK(&c, md_results_encode(rs, 2, &buf, &err) == MD_OK);
    result_sink sink;
    memset(&sink, 0, sizeof sink);
    CHECK(&c, md_results_decode(buf.data, buf.len, collect_result, &sink, &count, &err) == MD_OK);
    CHECK(&c, count == 2 && sink.n == 2);
    CHECK(&c, sink.results[0].task_index == 5 && sink.results[0].status == MD_TASK_COMPLETED);
    CHECK(&c, sink.results[0].attempt == 1 && sink.results[0].start_time == 1700000000.25);
    CHECK(&c, sink.results[0].run_time == 0.5 && sink.results[0].worker_pid == 4242);
    CHECK(&c, sink.results[0].exc_type.ptr == NULL && sink.results[0].exc_message.ptr == NULL);
    CHECK(&c, sink.results[0].exc_traceback.ptr == NULL);
    CHECK(&c, sink.results[0].value_len == 5 && memcmp(sink.results[0].value, "\x80\x05K\x19.", 5) == 0);
    CHECK(&c, sink.results[0].value >= buf.data && sink.results[0].value < buf.data + buf.len);
    CHECK(&c, sink.results[1].status == MD_TASK_FAILED && sink.results[1].worker_pid == -1);
    CHECK(&c, str_is(sink.results[1].exc_type, "TypeError"));
    CHECK(&c, sink.results[1].exc_message.ptr != NULL && sink.results[1].exc_message.len == 0);
    CHECK(&c, str_is(sink.results[1].exc_traceback, "Traceback ..."));
    CHECK(&c, sink.results[1].value == NULL);
    CHECK(&c, prefixes_rejected(&buf, 0));
    rs[0].status = (md_task_status)3;
    size_t before = buf.len;
    CHECK(&c, md_results_encode(rs, 1, &buf, &err) == MD_EARG && buf.len == before);
    md_buf_clear(&buf);

    /* a result array with extra trailing elements (a later writer), integer
     * times and a float32 run_time */
    {
        msgpack_sbuffer sb;
        msgpack_sbuffer_init(&sb);
        msgpack_packer pk;
        msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
        msgpack_pack_array(&pk, 1);
        msgpack_pack_array(&pk, 13);
        msgpack_pack_uint64(&pk, 9);
        msgpack_pack_uint64(&pk, 2);
        msgpack_pack_uint64(&pk, 0);
        msgpack_pack_uint64(&pk, 1700000000);
        msgpack_pack_float(&pk, 0.25f);
        msgpack_pack_int64(&pk, 77);
        msgpack_pack_nil(&pk);
        msgpack_pack_nil(&pk);
        msgpack_pack_nil(&pk);
        msgpack_pack_nil(&pk);
        msgpack_pack_int64(&pk, 123456);
        msgpack_pack_str_with_body(&pk, "printed", 7);
        msgpack_pack_array(&pk, 2);
        msgpack_pack_true(&pk);
        msgpack_pack_false(&pk);
        memset(&sink, 0, sizeof sink);
        CHECK(&c, md_results_decode((const uint8_t *)sb.data, sb.size, collect_result, &sink,
                                    &count, &err) == MD_OK);
        CHECK(&c, count == 1 && sink.results[0].task_index == 9);
        CHECK(&c, sink.results[0].start_time == 1700000000.0 && sink.results[0].run_time == 0.25);
        CHECK(&c, sink.results[0].status == MD_TASK_FAILED && sink.results[0].value == NULL);
        CHECK(&c, sink.results[0].max_rss == 123456);
        CHECK(&c, str_is(sink.results[0].output, "printed"));
        msgpack_sbuffer_destroy(&sb);

        /* nine elements is too few; status 3 is invalid; negative index invalid */
        const uint8_t nine[] = {0x91, 0x99, 0, 1, 0, 0, 0, 0, 0xc0, 0xc0, 0xc0};
        CHECK(&c, md_results_decode(nine, sizeof nine, NULL, NULL, NULL, &err) == MD_EFORMAT);
        const uint8_t bad_status[] = {0x91, 0x9a, 0, 3, 0, 0, 0, 0, 0xc0, 0xc0, 0xc0, 0xc0};
        CHECK(&c, md_results_decode(bad_status, sizeof bad_status, NULL, NULL, NULL, &err) == MD_EFORMAT);
        const uint8_t neg_index[] = {0x91, 0x9a, 0xff, 1, 0, 0, 0, 0, 0xc0, 0xc0, 0xc0, 0xc0};
        CHECK(&c, md_results_decode(neg_index, sizeof neg_index, NULL, NULL, NULL, &err) == MD_EFORMAT);
        const uint8_t ok_min[] = {0x91, 0x9a, 0, 1, 0, 0, 0, 0, 0xc0, 0xc0, 0xc0, 0xc0};
        memset(&sink, 0, sizeof sink);
        CHECK(&c, md_results_decode(ok_min, sizeof ok_min, collect_result, &sink, NULL, &err) == MD_OK);
        /* a record from before max_rss and output existed reads them as 0 and nil */
        CHECK(&c, sink.results[0].max_rss == 0 && sink.results[0].output.ptr == NULL);
        const uint8_t bad_rss[] = {0x91, 0x9b, 0, 1, 0, 0, 0, 0, 0xc0, 0xc0, 0xc0, 0xc0, 0xa1, 'x'};
        CHECK(&c, md_results_decode(bad_rss, sizeof bad_rss, NULL, NULL, NULL, &err) == MD_EFORMAT);
        /* what msgpack-c reads as a positive integer is one: a signed int8 of 5
         * as the index, int16 of 2 as the status; a float32 start time; str8
         * and bin8 */
        const uint8_t widths[] = {0x91, 0x9c, 0xd0, 5, 0xd1, 0, 2, 0, 0xca, 0x3f, 0x80, 0, 0,
                                  0, 0xd2, 0xff, 0xff, 0xff, 0xfe, 0xd9, 1, 'E', 0xc0, 0xc0,
                                  0xc4, 1, 'v', 0, 0xc0};
        memset(&sink, 0, sizeof sink);
        CHECK(&c, md_results_decode(widths, sizeof widths, collect_result, &sink, &count, &err) == MD_OK);
        CHECK(&c, count == 1 && sink.results[0].task_index == 5 &&
                  sink.results[0].status == MD_TASK_FAILED && sink.results[0].start_time == 1.0 &&
                  sink.results[0].worker_pid == -2 && str_is(sink.results[0].exc_type, "E") &&
                  sink.results[0].value_len == 1 && sink.results[0].value[0] == 'v');
        /* a negative int8 is no index; a str where a bin goes is refused; so is
         * a value cut short or a byte after the array */
        const uint8_t neg8[] = {0x91, 0x9a, 0xd0, 0xff, 1, 0, 0, 0, 0, 0xc0, 0xc0, 0xc0, 0xc0};
        CHECK(&c, md_results_decode(neg8, sizeof neg8, NULL, NULL, NULL, &err) == MD_EFORMAT);
        const uint8_t str_value[] = {0x91, 0x9a, 0, 1, 0, 0, 0, 0, 0xc0, 0xc0, 0xc0, 0xa1, 'v'};
        CHECK(&c, md_results_decode(str_value, sizeof str_value, NULL, NULL, NULL, &err) == MD_EFORMAT);
        CHECK(&c, strstr(err.message, "value") != NULL);
        const uint8_t cut_bin[] = {0x91, 0x9a, 0, 1, 0, 0, 0, 0, 0xc0, 0xc0, 0xc0, 0xc4, 5, 'v'};
        CHECK(&c, md_results_decode(cut_bin, sizeof cut_bin, NULL, NULL, NULL, &err) == MD_EFORMAT);
        const uint8_t trailing[] = {0x91, 0x9a, 0, 1, 0, 0, 0, 0, 0xc0, 0xc0, 0xc0, 0xc0, 0xc0};
        CHECK(&c, md_results_decode(trailing, sizeof trailing, NULL, NULL, NULL, &err) == MD_EFORMAT);
        const uint8_t bins_trailing[] = {0x91, 0xc4, 1, 'a', 0xc0};
        CHECK(&c, md_bins_decode(bins_trailing, sizeof bins_trailing, NULL, NULL, NULL, &err) == MD_EFORMAT);
    }

    /* a long results array */
    {
        size_t n = 5000;
        md_task_result *many = calloc(n, sizeof *many);
        for (size_t i = 0; i < n; i++) {
            many[i].task_index = i;
            many[i].status = MD_TASK_COMPLETED;
            many[i].value = (const uint8_t *)"v";
            many[i].value_len = 1;
        }
        CHECK(&c, md_results_encode(many, n, &buf, &err) == MD_OK);
        CHECK(&c, md_results_decode(buf.data, buf.len, NULL, NULL, &count, &err) == MD_OK);
        CHECK(&c, count == n);
        free(many);
        md_buf_clear(&buf);
    }

    /* ---- status */
    md_status st;
    memset(&st, 0, sizeof st);
    st.state = MD_STATE_FAILED;
    st.start_time = 10.5;
    st.error = lit("the supervisor died");
    st.supervisor_pid = 1234;
    st.num_workers = 8;
    CHECK(&c, md_status_encode(&st, &buf, &err) == MD_OK);
    md_status got;
    CHECK(&c, md_status_decode(buf.data, buf.len, &got, &err) == MD_OK);
    CHECK(&c, got.state == MD_STATE_FAILED && got.start_time == 10.5 && got.end_time == 0.0);
    CHECK(&c, str_is(got.error, "the supervisor died") && got.supervisor_pid == 1234);
    CHECK(&c, got.num_workers == 8);
    CHECK(&c, prefixes_rejected(&buf, 1));
    md_buf_clear(&buf);
    memset(&st, 0, sizeof st);
    st.state = MD_STATE_PENDING;
    CHECK(&c, md_status_encode(&st, &buf, &err) == MD_OK);
    CHECK(&c, md_status_decode(buf.data, buf.len, &got, &err) == MD_OK);
    CHECK(&c, got.state == MD_STATE_PENDING && got.error.ptr == NULL && got.supervisor_pid == 0);
    md_buf_clear(&buf);
    st.state = (md_state)0;
    CHECK(&c, md_status_encode(&st, &buf, &err) == MD_EARG);
    CHECK(&c, strcmp(md_state_name(MD_STATE_CANCELED), "Canceled") == 0);
    CHECK(&c, strcmp(md_state_name(MD_STATE_RUNNING), "Running") == 0);
    CHECK(&c, md_state_name((md_state)6) == NULL);
    /* {"state": "Sleeping", ...} */
    {
        msgpack_sbuffer sb;
        msgpack_sbuffer_init(&sb);
        msgpack_packer pk;
        msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
        msgpack_pack_map(&pk, 1);
        msgpack_pack_str_with_body(&pk, "state", 5);
        msgpack_pack_str_with_body(&pk, "Sleeping", 8);
        CHECK(&c, md_status_decode((const uint8_t *)sb.data, sb.size, &got, &err) == MD_EFORMAT);
        msgpack_sbuffer_destroy(&sb);
    }

    /* ---- combine */
    md_combine_entry entries[3] = {
        {lit("task-0"), (const uint8_t *)"A", 1},
        {lit("task-1"), NULL, 0},
        {lit(""), (const uint8_t *)"", 0},
    };
    CHECK(&c, md_combine_encode(entries, 3, &buf, &err) == MD_OK);
    combine_sink cs;
    memset(&cs, 0, sizeof cs);
    CHECK(&c, md_combine_decode(buf.data, buf.len, collect_combine, &cs, &count, &err) == MD_OK);
    CHECK(&c, count == 3 && cs.n == 3);
    CHECK(&c, str_is(cs.entries[0].name, "task-0") && cs.entries[0].value_len == 1);
    CHECK(&c, cs.entries[1].value == NULL);
    CHECK(&c, cs.entries[2].value != NULL && cs.entries[2].value_len == 0);
    CHECK(&c, prefixes_rejected(&buf, 4));
    md_buf_clear(&buf);

    /* ---- hello */
    md_hello hello;
    memset(&hello, 0, sizeof hello);
    for (size_t i = 0; i < MD_KEY_LEN; i++) {
        hello.key.bytes[i] = (uint8_t)(200 + i);
    }
    hello.job_id = lit("job-9");
    CHECK(&c, md_hello_encode(&hello, &buf, &err) == MD_OK);
    md_hello hello2;
    CHECK(&c, md_hello_decode(buf.data, buf.len, &hello2, &err) == MD_OK);
    CHECK(&c, memcmp(hello2.key.bytes, hello.key.bytes, MD_KEY_LEN) == 0);
    CHECK(&c, str_is(hello2.job_id, "job-9"));
    CHECK(&c, hello2.log.ptr == NULL);
    CHECK(&c, prefixes_rejected(&buf, 2));
    md_buf_clear(&buf);

    /* a warm worker's switch to the next job names the log it writes to */
    hello.log = lit("/home/u/.mapdeploy/jobs/j/logs/worker-0.log");
    CHECK(&c, md_hello_encode(&hello, &buf, &err) == MD_OK);
    CHECK(&c, md_hello_decode(buf.data, buf.len, &hello2, &err) == MD_OK);
    CHECK(&c, str_is(hello2.job_id, "job-9"));
    CHECK(&c, str_is(hello2.log, "/home/u/.mapdeploy/jobs/j/logs/worker-0.log"));
    CHECK(&c, prefixes_rejected(&buf, 2));
    md_buf_clear(&buf);
    hello.log = lit("");
    CHECK(&c, md_hello_encode(&hello, &buf, &err) == MD_EARG);
    hello.log.ptr = NULL;
    hello.log.len = 0;
    md_buf_clear(&buf);

    /* ---- jobdef */
    md_jobdef_view *view = NULL;
    encode_jobdef(&buf, 1, 1, 0);
    CHECK(&c, md_jobdef_decode(buf.data, buf.len, &view, &err) == MD_OK);
    if (view != NULL) {
        const md_jobdef *d = md_jobdef_get(view);
        CHECK(&c, str_is(d->name, "my job") && str_is(d->job_kind, "map"));
        CHECK(&c, str_is(d->function_name, "square") && d->function_len == 8);
        CHECK(&c, str_is(d->combiner_name, "total") && d->combiner_len == 6);
        CHECK(&c, d->task_count == 1000 && d->shard_size == 256 && d->num_workers == 4);
        CHECK(&c, str_is(d->python_version, "3.11") && str_is(d->cwd, "/home/u"));
        CHECK(&c, str_is(d->executable, "/usr/bin/python3") && str_is(d->prefix, "/usr"));
        CHECK(&c, str_is(d->exec_prefix, "/usr") && d->created == 1700000000.5);
        CHECK(&c, d->sys_path_count == 3);
        CHECK(&c, str_is(md_jobdef_sys_path(view, 1), "/usr/lib/python3.11"));
        md_str empty = md_jobdef_sys_path(view, 2);
        CHECK(&c, empty.ptr != NULL && empty.len == 0);
        CHECK(&c, md_jobdef_sys_path(view, 3).ptr == NULL);
        /* a definition written before the optional keys existed: the defaults */
        CHECK(&c, d->task_timeout == 0 && d->max_retries == 0 && !d->retry_on_given);
        CHECK(&c, d->retry_on_count == 0 && md_jobdef_retry_on(view, 0).ptr == NULL);
        CHECK(&c, d->slots_dir.ptr == NULL && d->worker_budget == 0);
        CHECK(&c, (const uint8_t *)d->name.ptr > buf.data &&
                  (const uint8_t *)d->name.ptr < buf.data + buf.len);
    }
    md_jobdef_free(view);
    view = NULL;
    CHECK(&c, prefixes_rejected(&buf, 3));
    md_buf_clear(&buf);
    encode_jobdef(&buf, 0, 0, 1);
    CHECK(&c, md_jobdef_decode(buf.data, buf.len, &view, &err) == MD_OK);
    if (view != NULL) {
        const md_jobdef *d = md_jobdef_get(view);
        CHECK(&c, d->task_timeout == 2.5 && d->max_retries == 3 && d->retry_on_given);
        CHECK(&c, d->retry_on_count == 2 && str_is(md_jobdef_retry_on(view, 1), "ValueError"));
        CHECK(&c, md_jobdef_retry_on(view, 2).ptr == NULL);
        CHECK(&c, str_is(d->slots_dir, "/home/u/.mapdeploy/slots") && d->worker_budget == 6);
    }
    CHECK(&c, view != NULL && md_jobdef_get(view)->combiner == NULL &&
              md_jobdef_get(view)->combiner_name.ptr == NULL);
    md_jobdef_free(view);
    view = NULL;
    /* worker_memory_limit is optional: absent (older definitions) reads as 0 */
    CHECK(&c, md_jobdef_decode(buf.data, buf.len, &view, &err) == MD_OK);
    CHECK(&c, view != NULL && md_jobdef_get(view)->worker_memory_limit == 0);
    md_jobdef_free(view);
    view = NULL;
    md_buf_clear(&buf);
    encode_jobdef(&buf, 0, 3, 0);
    CHECK(&c, md_jobdef_decode(buf.data, buf.len, &view, &err) == MD_OK);
    CHECK(&c, view != NULL && md_jobdef_get(view)->worker_memory_limit == (3ull << 30));
    md_jobdef_free(view);
    view = NULL;
    md_buf_clear(&buf);
    encode_jobdef(&buf, 0, 4, 0);
    CHECK(&c, md_jobdef_decode(buf.data, buf.len, &view, &err) == MD_EFORMAT);
    CHECK(&c, view == NULL && strstr(err.message, "worker_memory_limit") != NULL);
    /* a missing required key */
    const uint8_t only_name[] = {0x81, 0xa4, 'n', 'a', 'm', 'e', 0xa1, 'x'};
    CHECK(&c, md_jobdef_decode(only_name, sizeof only_name, &view, &err) == MD_EFORMAT);
    CHECK(&c, view == NULL && strstr(err.message, "missing") != NULL);
    md_jobdef_free(NULL);

    /* hostile container sizes are refused before msgpack-c allocates */
    const uint8_t huge[] = {0xdd, 0x7f, 0xff, 0xff, 0xff, 0xc4, 0x00};
    CHECK(&c, md_bins_decode(huge, sizeof huge, NULL, NULL, NULL, &err) == MD_EFORMAT);
    CHECK(&c, md_results_decode(huge, sizeof huge, NULL, NULL, NULL, &err) == MD_EFORMAT);
    const uint8_t deep[64] = {0};
    uint8_t nested[200];
    memset(nested, 0x91, sizeof nested);
    nested[sizeof nested - 1] = 0xc0;
    CHECK(&c, md_results_decode(nested, sizeof nested, NULL, NULL, NULL, &err) == MD_EFORMAT);
    CHECK(&c, md_bins_decode(deep, sizeof deep, NULL, NULL, NULL, &err) == MD_EFORMAT);

    /* ---- ready */
    md_ready ready;
    /* {"pid": 7, "python_version": "3.11", "error": nil, "later": 1} */
    const uint8_t ready_ok[] = {0x84, 0xa3, 'p', 'i', 'd', 0x07,
                                0xae, 'p', 'y', 't', 'h', 'o', 'n', '_', 'v', 'e', 'r', 's', 'i', 'o', 'n',
                                0xa4, '3', '.', '1', '1', 0xa5, 'e', 'r', 'r', 'o', 'r', 0xc0,
                                0xa5, 'l', 'a', 't', 'e', 'r', 0x01};
    CHECK(&c, md_ready_decode(ready_ok, sizeof ready_ok, &ready, &err) == MD_OK);
    CHECK(&c, ready.pid == 7 && ready.error.ptr == NULL && ready.python_version.len == 4);
    /* {"error": "no"} */
    const uint8_t ready_error[] = {0x81, 0xa5, 'e', 'r', 'r', 'o', 'r', 0xa2, 'n', 'o'};
    CHECK(&c, md_ready_decode(ready_error, sizeof ready_error, &ready, &err) == MD_OK);
    CHECK(&c, ready.error.len == 2 && memcmp(ready.error.ptr, "no", 2) == 0);
    /* {"error": 5}, {"error": nil, "error": nil}, a trailing byte, not a map */
    const uint8_t ready_bad_type[] = {0x81, 0xa5, 'e', 'r', 'r', 'o', 'r', 0x05};
    CHECK(&c, md_ready_decode(ready_bad_type, sizeof ready_bad_type, &ready, &err) == MD_EFORMAT);
    const uint8_t ready_repeated[] = {0x82, 0xa5, 'e', 'r', 'r', 'o', 'r', 0xc0,
                                      0xa5, 'e', 'r', 'r', 'o', 'r', 0xc0};
    CHECK(&c, md_ready_decode(ready_repeated, sizeof ready_repeated, &ready, &err) == MD_EFORMAT);
    CHECK(&c, md_ready_decode(ready_error, sizeof ready_error - 1, &ready, &err) != MD_OK);
    const uint8_t ready_array[] = {0x91, 0x01};
    CHECK(&c, md_ready_decode(ready_array, sizeof ready_array, &ready, &err) == MD_EFORMAT);
    /* Regression (found by fuzz_ready): a map32 header announcing 0xffdfffff
     * entries in a 9-byte payload made msgpack-c try to allocate ~100 GiB. */
    const uint8_t ready_huge_map[] = {0x83, 0x69, 0xff, 0xff, 0xdf, 0xff, 0x00, 0x00, 0xc0};
    CHECK(&c, md_ready_decode(ready_huge_map, sizeof ready_huge_map, &ready, &err) == MD_EFORMAT);
    const uint8_t ready_map32[] = {0xdf, 0xff, 0xdf, 0xff, 0x00, 0x00, 0xc0};
    CHECK(&c, md_ready_decode(ready_map32, sizeof ready_map32, &ready, &err) == MD_EFORMAT);

    md_buf_free(&buf);
    return md_test_finish(&c);
}
