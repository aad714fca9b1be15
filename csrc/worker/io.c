/* Frames and envelopes on the protocol socket. */
#include "worker.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <msgpack.h>

/* Blocking socket calls release the GIL: threads a task started (loggers,
 * pools, heartbeats) must keep running while the worker waits for work. */
worker_status worker_read_frame(worker_ctx *ctx)
{
    md_error err;
    int rc;

    md_error_clear(&err);
    if (ctx->python_up) {
        Py_BEGIN_ALLOW_THREADS
        rc = md_frame_read(ctx->fd, &ctx->frame, MD_FRAME_MAX, &err);
        Py_END_ALLOW_THREADS
    } else {
        rc = md_frame_read(ctx->fd, &ctx->frame, MD_FRAME_MAX, &err);
    }
    if (rc == MD_ECLOSED)
        return WORKER_EOF;
    if (rc == MD_ETOOBIG) {
        fprintf(stderr, "mapdeploy-worker: rejected a frame: %s\n", err.message);
        return WORKER_REJECT;
    }
    if (rc < 0) {
        fprintf(stderr, "mapdeploy-worker: reading from the supervisor failed: %s\n",
                err.message);
        return WORKER_FATAL;
    }
    return WORKER_OK;
}

worker_status worker_send_envelope(worker_ctx *ctx, md_kind kind, uint64_t first,
                                   uint64_t count, uint32_t attempt,
                                   const uint8_t *payload, size_t payload_len)
{
    md_envelope env;
    md_error err;
    int rc;

    md_error_clear(&err);
    memset(&env, 0, sizeof env);
    env.kind = kind;
    env.job_id = ctx->job_id;
    env.job_id_len = ctx->job_id_len;
    env.first = first;
    env.count = count;
    env.attempt = attempt;
    env.payload = payload;
    env.payload_len = payload_len;

    md_buf_clear(&ctx->out);
    rc = md_envelope_encode(&ctx->key, &env, &ctx->out, &err);
    if (rc < 0) {
        fprintf(stderr, "mapdeploy-worker: could not encode a %s envelope: %s\n",
                md_kind_name(kind) ? md_kind_name(kind) : "?", err.message);
        return WORKER_FATAL;
    }
    if (ctx->python_up) {
        Py_BEGIN_ALLOW_THREADS
        rc = md_frame_write(ctx->fd, ctx->out.data, ctx->out.len, &err);
        Py_END_ALLOW_THREADS
    } else {
        rc = md_frame_write(ctx->fd, ctx->out.data, ctx->out.len, &err);
    }
    if (rc < 0) {
        fprintf(stderr, "mapdeploy-worker: writing to the supervisor failed: %s\n",
                err.message);
        return WORKER_FATAL;
    }
    return WORKER_OK;
}

static int pack_key(msgpack_packer *pk, const char *key)
{
    size_t len = strlen(key);

    if (msgpack_pack_str(pk, len) != 0)
        return -1;
    return msgpack_pack_str_body(pk, key, len);
}

/* The READY payload is small and worker-specific, so it is packed here with
 * msgpack-c rather than through a core codec. */
worker_status worker_send_ready(worker_ctx *ctx, const char *error)
{
    msgpack_sbuffer sbuf;
    msgpack_packer pk;
    char version[32];
    int n;
    int packed = -1;
    worker_status status = WORKER_FATAL;

    msgpack_sbuffer_init(&sbuf);
    msgpack_packer_init(&pk, &sbuf, msgpack_sbuffer_write);

    n = snprintf(version, sizeof version, "%d.%d", PY_MAJOR_VERSION, PY_MINOR_VERSION);
    if (n < 0 || (size_t)n >= sizeof version)
        goto cleanup;

    if (msgpack_pack_map(&pk, 3) != 0)
        goto cleanup;
    if (pack_key(&pk, "pid") != 0 || msgpack_pack_int64(&pk, (int64_t)getpid()) != 0)
        goto cleanup;
    if (pack_key(&pk, "python_version") != 0 || pack_key(&pk, version) != 0)
        goto cleanup;
    if (pack_key(&pk, "error") != 0)
        goto cleanup;
    if (error == NULL)
        packed = msgpack_pack_nil(&pk);
    else
        packed = pack_key(&pk, error);
    if (packed != 0)
        goto cleanup;

    status = worker_send_envelope(ctx, MD_KIND_READY, 0, 0, 0,
                                  (const uint8_t *)sbuf.data, sbuf.size);

cleanup:
    if (packed != 0)
        fprintf(stderr, "mapdeploy-worker: could not encode the READY payload\n");
    msgpack_sbuffer_destroy(&sbuf);
    return status;
}
