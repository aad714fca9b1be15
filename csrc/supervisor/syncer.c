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

static void *syncer_main(void *arg)
{
    sv_syncer *s = arg;
    pthread_mutex_lock(&s->lock);
    for (;;) {
        while (!s->pending && !s->stop) {
            pthread_cond_wait(&s->changed, &s->lock);
        }
        if (!s->pending) {
            break;  /* stopping, nothing left */
        }
        struct timespec due = s->pending_since;
        long long due_ns = (long long)due.tv_nsec + (long long)(SV_SYNC_SECONDS * 1e9);
        due.tv_sec += (time_t)(due_ns / 1000000000LL);
        due.tv_nsec = (long)(due_ns % 1000000000LL);
        while (!s->stop && pthread_cond_timedwait(&s->changed, &s->lock, &due) != ETIMEDOUT) {
        }
        s->pending = 0;
        pthread_mutex_unlock(&s->lock);
        sync_now(s->folder_fd);
        pthread_mutex_lock(&s->lock);
    }
    pthread_mutex_unlock(&s->lock);
    return NULL;
}

/* folder: any folder on the filesystem of the jobs to be synced. */
int sv_syncer_start(sv_syncer *s, const char *folder, md_error *err)
{
    pthread_condattr_t attr;
    if (s->started) {
        return 0;
    }
    memset(s, 0, sizeof(*s));
    s->folder_fd = open(folder, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (s->folder_fd < 0) {
        return md_fail_errno(err, errno, "cannot open %s", folder);
    }
    int rc = pthread_condattr_init(&attr);
    if (rc == 0) {
        rc = pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
        if (rc == 0) {
            rc = pthread_cond_init(&s->changed, &attr);
        }
        (void)pthread_condattr_destroy(&attr);
    }
    if (rc != 0) {
        close(s->folder_fd);
        return md_fail_errno(err, rc, "pthread_cond_init");
    }
    rc = pthread_mutex_init(&s->lock, NULL);
    if (rc != 0) {
        pthread_cond_destroy(&s->changed);
        close(s->folder_fd);
        return md_fail_errno(err, rc, "pthread_mutex_init");
    }
    rc = pthread_create(&s->thread, NULL, syncer_main, s);
    if (rc != 0) {
        pthread_mutex_destroy(&s->lock);
        pthread_cond_destroy(&s->changed);
        close(s->folder_fd);
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

/* Returns once every finished job is synced and the thread has ended. */
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
    close(s->folder_fd);
    s->started = 0;
}
