/*
 * The syncer: a thread of a warm pool that makes finished job folders
 * durable (sv_sync_job_folder) while the main thread goes on serving.
 *
 * An fsync takes a millisecond or more, and a job folder needs several; a
 * client that submits its next job the moment the last one completed would
 * otherwise wait for them in the pool's backlog.  The main thread only
 * queues a copy of the folder's path; the thread owns the fsyncs.  The
 * queue is bounded: when it is full the main thread waits for room, so a
 * pool that finishes jobs faster than the disk syncs them slows down to
 * the disk's pace instead of piling up unsynced folders.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "supervisor.h"

static void *syncer_main(void *arg)
{
    sv_syncer *s = arg;
    pthread_mutex_lock(&s->lock);
    for (;;) {
        while (s->len == 0 && !s->stop) {
            pthread_cond_wait(&s->changed, &s->lock);
        }
        if (s->len == 0) {
            break;  /* stop, and everything queued is synced */
        }
        char *path = s->queue[0];
        memmove(s->queue, s->queue + 1, (s->len - 1) * sizeof(s->queue[0]));
        s->len--;
        pthread_mutex_unlock(&s->lock);

        md_error err;
        md_error_clear(&err);
        /* a folder deleted since (mapdeploy delete) needs nothing */
        if (sv_sync_job_folder(path, &err) != 0 && err.code != MD_ENOENT) {
            fprintf(stderr, "mapdeploy-supervisor: could not sync the finished job %s: %s\n",
                    path, err.message);
        }
        free(path);

        pthread_mutex_lock(&s->lock);
        pthread_cond_broadcast(&s->changed);
    }
    pthread_mutex_unlock(&s->lock);
    return NULL;
}

int sv_syncer_start(sv_syncer *s, md_error *err)
{
    if (s->started) {
        return 0;
    }
    memset(s, 0, sizeof(*s));
    int rc = pthread_mutex_init(&s->lock, NULL);
    if (rc != 0) {
        return md_fail_errno(err, rc, "pthread_mutex_init");
    }
    rc = pthread_cond_init(&s->changed, NULL);
    if (rc != 0) {
        pthread_mutex_destroy(&s->lock);
        return md_fail_errno(err, rc, "pthread_cond_init");
    }
    rc = pthread_create(&s->thread, NULL, syncer_main, s);
    if (rc != 0) {
        pthread_cond_destroy(&s->changed);
        pthread_mutex_destroy(&s->lock);
        return md_fail_errno(err, rc, "cannot start the syncer thread");
    }
    s->started = 1;
    return 0;
}

int sv_syncer_queue(sv_syncer *s, const char *job_dir, md_error *err)
{
    char *copy = strdup(job_dir);
    if (copy == NULL) {
        return md_fail(err, MD_ENOMEM, "out of memory");
    }
    pthread_mutex_lock(&s->lock);
    while (s->len == SV_SYNC_QUEUE) {
        pthread_cond_wait(&s->changed, &s->lock);
    }
    s->queue[s->len++] = copy;
    pthread_cond_broadcast(&s->changed);
    pthread_mutex_unlock(&s->lock);
    return 0;
}

/* Returns once everything queued is synced and the thread has ended. */
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
    s->started = 0;
}
