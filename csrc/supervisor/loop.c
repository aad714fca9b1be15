/*
 * The main loop: poll() over the worker sockets and the signalfd.
 *
 * Each turn first settles state (reap the dead, start replacements, hand out
 * batches), then waits at most SV_POLL_MS, so that the cancel file and
 * workers that closed their socket without exiting are noticed within a
 * bounded time even when nothing else happens.
 */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "supervisor.h"

static int map_done(const sv_ctx *ctx)
{
    return ctx->tasks_done == ctx->task_count;
}

static int combine_pending(const sv_ctx *ctx)
{
    return map_done(ctx) && ctx->needs_combine && !ctx->combine_done;
}

static sv_worker *free_slot(sv_ctx *ctx)
{
    for (unsigned i = 0; i < ctx->num_workers; i++) {
        if (ctx->workers[i].state == SV_WORKER_FREE) {
            return &ctx->workers[i];
        }
    }
    return NULL;
}

/* Workers that are not retiring: the ones the job counts on. */
static unsigned active_workers(const sv_ctx *ctx)
{
    unsigned n = 0;
    for (unsigned i = 0; i < ctx->num_workers; i++) {
        n += ctx->workers[i].state != SV_WORKER_FREE && !ctx->workers[i].retiring;
    }
    return n;
}

/* Rank of a worker as a candidate for retiring: an idle one costs nothing,
 * one still starting has run nothing yet, a busy one is retired only once
 * its batches are answered. */
static int retire_rank(const sv_worker *w)
{
    if (w->state == SV_WORKER_READY && w->nbatches == 0) {
        return 0;
    }
    return w->state == SV_WORKER_STARTING ? 1 : 2;
}

/* Brings the workers the job counts on to `want`: over it, some are marked
 * retiring (no task is ever killed for this: they get nothing new and leave
 * when their batches are answered); under it, retiring ones that have not
 * left yet are taken back before anything new is started.  A retiring worker
 * with nothing in flight has its socket closed; it exits on EOF and its slot
 * is given back when it is reaped. */
static void retire_excess(sv_ctx *ctx, uint64_t want)
{
    unsigned active = active_workers(ctx);
    for (int rank = 0; rank < 3 && active > want; rank++) {
        for (unsigned i = ctx->num_workers; i-- > 0 && active > want;) {
            sv_worker *w = &ctx->workers[i];
            if (w->state != SV_WORKER_FREE && !w->retiring && w->fd >= 0 &&
                retire_rank(w) == rank) {
                w->retiring = 1;
                active--;
            }
        }
    }
    for (unsigned i = 0; i < ctx->num_workers && active < want; i++) {
        sv_worker *w = &ctx->workers[i];
        if (w->state != SV_WORKER_FREE && w->retiring && w->fd >= 0) {
            w->retiring = 0;
            active++;
        }
    }
    for (unsigned i = 0; i < ctx->num_workers; i++) {
        sv_worker *w = &ctx->workers[i];
        if (w->retiring && w->state == SV_WORKER_READY && w->fd >= 0 && w->nbatches == 0) {
            sv_worker_drop_socket(w);
        }
    }
}

/* Keeps as many workers as there is work for, up to num_workers and, with
 * the session budget, up to the job's fair share and the free slots;
 * replaces the dead while tasks remain, within spawn_limit (no fork loop). */
static int ensure_workers(sv_ctx *ctx, md_error *err)
{
    uint64_t work = ctx->undispatched + ctx->suspect_len + sv_inflight_tasks(ctx) +
                    (combine_pending(ctx) ? 1u : 0u);
    uint64_t desired = work < ctx->num_workers ? work : ctx->num_workers;
    if (ctx->budget_on) {
        /* A pool keeps the workers it has even when the work left needs
         * fewer: they are warm for its next job.  It asks for them, so that
         * only another job's claim on the slots makes it retire some. */
        uint64_t demand = desired;
        if (ctx->pool_name != NULL && ctx->linger > 0) {
            unsigned active = active_workers(ctx);
            demand = desired > active ? desired : active;
        }
        int rc = sv_budget_update(ctx, demand, err);
        if (rc != 0) {
            return rc;
        }
        retire_excess(ctx, demand < ctx->share ? demand : ctx->share);
        if (desired > ctx->share) {
            desired = ctx->share;
        }
    }
    unsigned live = active_workers(ctx);
    while (live < desired) {
        sv_worker *w = free_slot(ctx);
        if (w == NULL) {
            return 0;
        }
        if (ctx->spawned >= ctx->spawn_limit) {
            return md_fail(err, MD_EIO,
                           "workers kept dying: %u were started; see %s/logs/worker-*.log",
                           ctx->spawned, ctx->job_dir);
        }
        if (ctx->budget_on) {
            int taken = sv_slot_take(ctx, w, err);
            if (taken <= 0) {
                return taken;  /* an error, or every slot is in use: wait */
            }
        }
        int rc = sv_worker_spawn(ctx, w, err);
        if (rc != 0) {
            return rc;
        }
        live++;
    }
    return 0;
}

/* Sends every ready worker what it can take now; before the loop runs, only
 * a pool's warm workers are ready (see run_job). */
int sv_dispatch_all(sv_ctx *ctx, md_error *err)
{
    for (unsigned i = 0; i < ctx->num_workers; i++) {
        sv_worker *w = &ctx->workers[i];
        int rc = sv_dispatch(ctx, w, err);
        if (rc != 0) {
            return rc;
        }
        if (combine_pending(ctx) && !ctx->combine_sent && w->state == SV_WORKER_READY &&
            w->fd >= 0 && w->nbatches == 0 && !w->retiring) {
            rc = sv_start_combine(ctx, w, err);
            if (rc != 0) {
                return rc;
            }
        }
    }
    return 0;
}

/* A worker that closed its socket but does not exit would hold the job
 * forever; after a grace period it is killed and reaped like any death. */
static void kill_lingering(sv_ctx *ctx)
{
    double now = md_monotonic_time();
    for (unsigned i = 0; i < ctx->num_workers; i++) {
        sv_worker *w = &ctx->workers[i];
        if (w->state != SV_WORKER_FREE && w->fd < 0 && w->pid > 0 &&
            now - w->eof_mono > SV_EOF_GRACE_SECONDS) {
            (void)kill(w->pid, SIGKILL);
        }
    }
}

static int cancel_file_present(sv_ctx *ctx)
{
    double now = md_monotonic_time();
    if (now - ctx->last_cancel_check < SV_CANCEL_CHECK_SECONDS) {
        return 0;
    }
    ctx->last_cancel_check = now;
    char path[MD_PATH_MAX];
    if (md_path_join(path, sizeof(path), ctx->job_dir, MD_STORE_CANCEL, NULL) != 0) {
        return 0;
    }
    return access(path, F_OK) == 0;
}

/* Returns 1 when a terminating signal arrived; SIGCHLD needs no action here
 * because every turn of the loop (and of an idle pool's) reaps. */
int sv_read_signals(sv_ctx *ctx)
{
    int terminate = 0;
    for (;;) {
        struct signalfd_siginfo si;
        ssize_t n = read(ctx->sig_fd, &si, sizeof(si));
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n != (ssize_t)sizeof(si)) {
            return terminate;
        }
        if (si.ssi_signo == SIGTERM || si.ssi_signo == SIGINT || si.ssi_signo == SIGHUP) {
            terminate = 1;
        }
    }
}

static int settle(sv_ctx *ctx, md_error *err)
{
    int rc = sv_reap_workers(ctx, err);
    if (rc == 0) {
        rc = sv_check_timeouts(ctx, err);
    }
    if (rc == 0) {
        rc = ensure_workers(ctx, err);
    }
    if (rc == 0) {
        rc = sv_dispatch_all(ctx, err);
    }
    if (rc == 0) {
        kill_lingering(ctx);
        rc = sv_log_sync(ctx, 0, err);
    }
    if (rc == 0 && !ctx->folder_durable && md_wall_time() - ctx->start_time >= SV_SYNC_SECONDS) {
        rc = sv_make_durable(ctx, err);
    }
    return rc;
}

static size_t fill_pollfds(sv_ctx *ctx, struct pollfd *pfds, sv_worker **owners)
{
    size_t n = 0;
    pfds[n].fd = ctx->sig_fd;
    pfds[n].events = POLLIN;
    owners[n++] = NULL;
    for (unsigned i = 0; i < ctx->num_workers; i++) {
        sv_worker *w = &ctx->workers[i];
        if (w->state == SV_WORKER_FREE || w->fd < 0) {
            continue;
        }
        pfds[n].fd = w->fd;
        pfds[n].events = (short)(POLLIN | (w->out.len > w->out_sent ? POLLOUT : 0));
        owners[n++] = w;
    }
    return n;
}

static int service_workers(sv_ctx *ctx, struct pollfd *pfds, sv_worker **owners, size_t n,
                           md_error *err)
{
    for (size_t i = 1; i < n; i++) {
        sv_worker *w = owners[i];
        if (pfds[i].revents & POLLOUT) {
            (void)sv_worker_flush(w);
        }
        if (pfds[i].revents & (POLLIN | POLLHUP | POLLERR)) {
            int rc = sv_read_worker(ctx, w, err);
            if (rc != 0) {
                return rc;
            }
        }
    }
    return 0;
}

sv_run_outcome sv_run(sv_ctx *ctx, md_error *err)
{
    sv_run_outcome outcome = SV_RUN_FAILED;
    struct pollfd *pfds = calloc((size_t)ctx->num_workers + 1, sizeof(*pfds));
    sv_worker **owners = calloc((size_t)ctx->num_workers + 1, sizeof(*owners));
    if (pfds == NULL || owners == NULL) {
        (void)md_fail(err, MD_ENOMEM, "out of memory");
        goto cleanup;
    }
    for (;;) {
        if (settle(ctx, err) != 0) {
            goto cleanup;
        }
        if (map_done(ctx) && !combine_pending(ctx)) {
            outcome = SV_RUN_DONE;
            goto cleanup;
        }
        if (cancel_file_present(ctx)) {
            outcome = SV_RUN_CANCELED;
            goto cleanup;
        }
        size_t n = fill_pollfds(ctx, pfds, owners);
        int ready = poll(pfds, (nfds_t)n, SV_POLL_MS);
        if (ready < 0 && errno != EINTR) {
            (void)md_fail_errno(err, errno, "poll");
            goto cleanup;
        }
        if (ready <= 0) {
            continue;
        }
        if ((pfds[0].revents & POLLIN) && sv_read_signals(ctx)) {
            outcome = SV_RUN_CANCELED;
            goto cleanup;
        }
        if (service_workers(ctx, pfds, owners, n, err) != 0) {
            goto cleanup;
        }
    }

cleanup:
    free(pfds);
    free(owners);
    return outcome;
}
