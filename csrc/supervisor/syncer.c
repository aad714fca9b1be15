/*
 * The syncer: a thread of a warm pool that makes finished jobs durable
 * while the main thread goes on serving the next ones.
 *
 * Each fsync forces a journal commit that every other file operation on the
 * disk then waits behind, so syncing each job's files right after it ends
 * made the next job's folder slow to create (a median create_job of 1.9 ms
 * instead of 0.3).  So finished jobs are synced as a group, with one
 * syncfs(2) of the filesystem of the session's jobs folder at most
 * SV_SYNC_SECONDS after the first of them ended: the same bound the results
 * log of a running job has always had (docs/architecture.md, "Durability").
 *
 * The thread also makes the spare folder of the pool's next job (spare.c),
 * for the same reason: file-system work the client need not wait for.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "supervisor.h"

static void sync_now(int folder_fd)
{
    if (syncfs(folder_fd) != 0) {
        fprintf(stderr, "mapdeploy-supervisor: could not sync finished jobs to disk: %s\n",
                strerror(errno));
    }
}

static void close_folders(sv_syncer *s)
{
    close(s->folder_fd);
    if (s->jobs_fd >= 0) {
        close(s->jobs_fd);
    }
}

static struct timespec sync_due(struct timespec since)
{
    long long due_ns = (long long)since.tv_nsec + (long long)(SV_SYNC_SECONDS * 1e9);
    since.tv_sec += (time_t)(due_ns / 1000000000LL);
    since.tv_nsec = (long)(due_ns % 1000000000LL);
    return since;
}

static int reached(struct timespec due)
{
    struct timespec now;
    if (clock_gettime(CLOCK_MONOTONIC, &now) != 0) {
        return 1;
    }
    return now.tv_sec > due.tv_sec || (now.tv_sec == due.tv_sec && now.tv_nsec >= due.tv_nsec);
}

static void *syncer_main(void *arg)
{
    sv_syncer *s = arg;
    pthread_mutex_lock(&s->lock);
    for (;;) {
        if (s->spare_wanted) {
            s->spare_wanted = 0;
            if (!s->stop) {
                unsigned workers = s->spare_workers;
                pthread_mutex_unlock(&s->lock);
                sv_spare_make(s->jobs_fd, s->pool_name, workers);
                pthread_mutex_lock(&s->lock);
            }
            continue;
        }
        if (s->pending) {
            struct timespec due = sync_due(s->pending_since);
            if (s->stop || reached(due)) {
                s->pending = 0;
                pthread_mutex_unlock(&s->lock);
                sync_now(s->folder_fd);
                pthread_mutex_lock(&s->lock);
            } else {
                (void)pthread_cond_timedwait(&s->changed, &s->lock, &due);
            }
            continue;
        }
        if (s->stop) {
            break;
        }
        pthread_cond_wait(&s->changed, &s->lock);
    }
    pthread_mutex_unlock(&s->lock);
    return NULL;
}

/* The folder a job folder is in, opened; -1 when it has none. */
static int open_parent(const char *job_dir)
{
    char parent[MD_PATH_MAX];
    const char *slash = strrchr(job_dir, '/');
    if (slash == NULL || slash == job_dir) {
        return -1;
    }
    size_t len = (size_t)(slash - job_dir);
    if (len >= sizeof parent) {
        return -1;
    }
    memcpy(parent, job_dir, len);
    parent[len] = '\0';
    return open(parent, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
}

/* job_dir: the pool's first job; syncs go to its filesystem, spares next to it. */
int sv_syncer_start(sv_syncer *s, const char *job_dir, const char *pool_name, md_error *err)
{
    pthread_condattr_t attr;
    if (s->started) {
        return 0;
    }
    memset(s, 0, sizeof(*s));
    s->pool_name = pool_name;
    s->folder_fd = open(job_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (s->folder_fd < 0) {
        return md_fail_errno(err, errno, "cannot open %s", job_dir);
    }
    s->jobs_fd = pool_name != NULL ? open_parent(job_dir) : -1;
    int rc = pthread_condattr_init(&attr);
    if (rc == 0) {
        rc = pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
        if (rc == 0) {
            rc = pthread_cond_init(&s->changed, &attr);
        }
        (void)pthread_condattr_destroy(&attr);
    }
    if (rc != 0) {
        close_folders(s);
        return md_fail_errno(err, rc, "pthread_cond_init");
    }
    rc = pthread_mutex_init(&s->lock, NULL);
    if (rc != 0) {
        pthread_cond_destroy(&s->changed);
        close_folders(s);
        return md_fail_errno(err, rc, "pthread_mutex_init");
    }
    rc = pthread_create(&s->thread, NULL, syncer_main, s);
    if (rc != 0) {
        pthread_mutex_destroy(&s->lock);
        pthread_cond_destroy(&s->changed);
        close_folders(s);
        return md_fail_errno(err, rc, "cannot start the syncer thread");
    }
    s->started = 1;
    return 0;
}

/* A job ended: its files reach the disk within SV_SYNC_SECONDS. */
void sv_syncer_mark(sv_syncer *s)
{
    pthread_mutex_lock(&s->lock);
    if (!s->pending) {
        s->pending = 1;
        (void)clock_gettime(CLOCK_MONOTONIC, &s->pending_since);
        pthread_cond_broadcast(&s->changed);
    }
    pthread_mutex_unlock(&s->lock);
}

/* The pool's next job may find its folder made (spare.c), with logs for
 * that many workers. */
void sv_syncer_want_spare(sv_syncer *s, unsigned workers)
{
    if (!s->started || s->jobs_fd < 0) {
        return;
    }
    pthread_mutex_lock(&s->lock);
    s->spare_wanted = 1;
    if (workers > s->spare_workers) {
        s->spare_workers = workers;  /* never fewer: removal goes by the most made */
    }
    pthread_cond_broadcast(&s->changed);
    pthread_mutex_unlock(&s->lock);
}

/* Returns once every finished job is synced and the thread has ended; the
 * spare no job took is removed. */
void sv_syncer_stop(sv_syncer *s)
{
    if (!s->started) {
        return;
    }
    pthread_mutex_lock(&s->lock);
    s->stop = 1;
    pthread_cond_broadcast(&s->changed);
    pthread_mutex_unlock(&s->lock);
    pthread_join(s->thread, NULL);
    pthread_cond_destroy(&s->changed);
    pthread_mutex_destroy(&s->lock);
    sv_spare_remove(s->jobs_fd, s->pool_name, s->spare_workers);
    close_folders(s);
    s->started = 0;
}
