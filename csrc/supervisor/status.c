/*
 * Writing <job>/status.  Only the states the supervisor owns are written
 * here; end_time is set for every final state so clients can show how long
 * a job ran even when it failed or was canceled.
 */
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
    return md_store_write_status(ctx->job_dir, &ctx->key, ctx->job_id, &st, err);
}
