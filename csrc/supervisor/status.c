/*
 * Writing <job>/status.  Only the states the supervisor owns are written
 * here; end_time is set for every final state so clients can show how long
 * a job ran even when it failed or was canceled.
 */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "supervisor.h"

int sv_write_status(sv_ctx *ctx, md_state state, const char *error, md_error *err)
{
    md_status st;
    memset(&st, 0, sizeof(st));
    st.state = state;
    st.start_time = ctx->start_time;
    st.end_time = state == MD_STATE_RUNNING ? 0.0 : md_wall_time();
    st.error.ptr = error;
    st.error.len = error != NULL ? strlen(error) : 0;
    st.supervisor_pid = (int64_t)getpid();
    st.num_workers = ctx->num_workers;
    /* not synced here: sv_make_durable does it off the path that a waiting
     * client sees, once a second while the job runs and right after it ends.
     * One temporary name for Running, one for the end: a spare job folder
     * has both already (spare.c). */
    char tmp[64];
    if (sv_status_tmp_name(tmp, sizeof tmp, state == MD_STATE_RUNNING) != 0) {
        return md_fail(err, MD_ETOOBIG, "status: temporary file name too long");
    }
    return md_store_write_status_via(ctx->job_dir, &ctx->key, ctx->job_id, &st, tmp, err);
}

/* The temporary names of the final and the Running status, before the pid;
 * indexed by sv_status_tmp_name's running (0 or 1). */
static const char *const status_tmp_prefixes[] = {MD_STORE_STATUS ".end.",
                                                  MD_STORE_STATUS ".run."};

int sv_status_tmp_name(char *out, size_t cap, int running)
{
    int n = snprintf(out, cap, "%s%ld", status_tmp_prefixes[running != 0], (long)getpid());
    return n > 0 && (size_t)n < cap ? 0 : -1;
}

/* A name sv_status_tmp_name makes: one of the prefixes, then digits */
static int is_status_tmp_name(const char *name)
{
    for (size_t i = 0; i < sizeof status_tmp_prefixes / sizeof status_tmp_prefixes[0]; i++) {
        size_t len = strlen(status_tmp_prefixes[i]);
        if (strncmp(name, status_tmp_prefixes[i], len) != 0 || name[len] == '\0') {
            continue;
        }
        const char *digit = name + len;
        while (*digit >= '0' && *digit <= '9') {
            digit++;
        }
        return *digit == '\0';
    }
    return 0;
}

int sv_remove_status_tmp_files(const char *job_dir, md_error *err)
{
    int rc = 0;
    DIR *dir = opendir(job_dir);
    if (dir == NULL) {
        return md_fail_errno(err, errno, "cannot list %s", job_dir);
    }
    for (;;) {
        errno = 0;
        const struct dirent *entry = readdir(dir);
        if (entry == NULL) {
            if (errno != 0) {
                rc = md_fail_errno(err, errno, "cannot list %s", job_dir);
            }
            break;
        }
        if (is_status_tmp_name(entry->d_name) && unlinkat(dirfd(dir), entry->d_name, 0) != 0 &&
            errno != ENOENT) {
            rc = md_fail_errno(err, errno, "cannot remove %s/%s", job_dir, entry->d_name);
            break;
        }
    }
    if (closedir(dir) != 0 && rc == 0) {
        rc = md_fail_errno(err, errno, "cannot list %s", job_dir);
    }
    return rc;
}

/* Everything a reader needs after a host crash reaches the disk: the
 * results log, the key, definition and status, and the names in the
 * folders.  A host crash before this is done may lose the job's last
 * moments; the client then finds tasks without results (a Completed job
 * missing results is reported as lost, for resume()). */
int sv_sync_job_folder(const char *job_dir, md_error *err)
{
    static const char *const files[] = {MD_STORE_RESULTS_LOG, MD_STORE_KEY, MD_STORE_JOB,
                                        MD_STORE_STATUS};
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < sizeof(files) / sizeof(files[0]); i++) {
        rc = md_store_sync_file(job_dir, files[i], err);
        if (rc == MD_ENOENT && i == 0) {
            rc = 0;  /* no task ran: no log */
            md_error_clear(err);
        }
    }
    if (rc == 0) {
        char path[MD_PATH_MAX];
        rc = md_path_join(path, sizeof(path), job_dir, MD_STORE_RESULTS_DIR, err);
        if (rc == 0) {
            rc = md_store_sync_dir(path, err);
        }
    }
    if (rc == 0) {
        rc = md_store_sync_dir(job_dir, err);
    }
    return rc;
}

int sv_make_durable(sv_ctx *ctx, md_error *err)
{
    int rc = sv_log_sync(ctx, 1, err);
    if (rc == 0) {
        rc = sv_sync_job_folder(ctx->job_dir, err);
    }
    if (rc == 0) {
        ctx->folder_durable = 1;
    }
    return rc;
}

/* A pool leaves the syncing of the jobs it finished to its syncer thread,
 * which syncs them as a group (syncer.c): a client that submits its next job
 * at once neither waits for the last one's fsyncs nor queues behind them in
 * the filesystem's journal. */
int sv_sync_later(sv_ctx *ctx, md_error *err)
{
    int rc = sv_syncer_start(&ctx->syncer, ctx->job_dir, ctx->pool_name, err);
    if (rc == 0) {
        sv_syncer_mark(&ctx->syncer);
        sv_syncer_want_spare(&ctx->syncer, sv_pool_live_workers(ctx));
    }
    return rc;
}
