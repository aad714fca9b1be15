/*
 * The session-wide worker budget: slots shared by every supervisor of the
 * session, and each running job's fair share of them.
 *
 * Everything is a file lock in <home>/slots (docs/architecture.md, "Many
 * jobs"), so nothing has to be cleaned up after a crash: the kernel drops a
 * dead supervisor's locks with its descriptors.
 *
 *   <slots>/<i>        slot i, 0 <= i < budget: held with flock(LOCK_EX) by
 *                      the supervisor for as long as one of its workers runs
 *                      on it (until the worker is reaped)
 *   <slots>/job-<id>   a running job's registration, held with flock(LOCK_EX)
 *                      for the supervisor's life; its length (ftruncate) is
 *                      the job's demand, the workers it could use now, which
 *                      other supervisors read with fstat: one atomic number,
 *                      no torn read of a half-written file is possible
 *
 * Every SV_BUDGET_CHECK_SECONDS each supervisor lists the registrations that
 * are locked (live), sorts them by job id and computes the same max-min fair
 * division of the budget every other supervisor computes from the same view:
 * one slot to each job that wants any, then one more at a time, in id order,
 * to the jobs that want more, until the budget is used up.  Its own share is
 * then the most workers it keeps; loop.c retires the excess between batches.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "supervisor.h"

#define REG_PREFIX "job-"
#define REG_NAME_MAX (sizeof(REG_PREFIX) + MD_JOB_ID_MAX)
#define REGISTER_ATTEMPTS 100  /* each failure means another process removed the
                                  file at that instant; a handful is plenty */

typedef struct {
    char name[REG_NAME_MAX + 1];
    uint64_t demand;
} reg_entry;

static int reg_compare(const void *a, const void *b)
{
    return strcmp(((const reg_entry *)a)->name, ((const reg_entry *)b)->name);
}

static int flock_retry(int fd, int op)
{
    int rc;
    do {
        rc = flock(fd, op);
    } while (rc != 0 && errno == EINTR);
    return rc;
}

/* The id names a file, so it must be a plain name (the extension writes 32
 * hex digits; anything else would be a folder someone crafted). */
static int job_id_is_plain(const char *id)
{
    if (id[0] == '\0') {
        return 0;
    }
    for (const char *p = id; *p != '\0'; p++) {
        char ch = *p;
        if (!((ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
              ch == '-' || ch == '_')) {
            return 0;
        }
    }
    return 1;
}

/* Creates and locks the registration.  A scanning supervisor that found a
 * stale file of the same name may unlink it between our open and our lock,
 * so the lock counts only if the name still leads to the locked inode. */
static int register_job(sv_ctx *ctx, md_error *err)
{
    for (int attempt = 0; attempt < REGISTER_ATTEMPTS; attempt++) {
        int fd = openat(ctx->slots_fd, ctx->reg_name, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
        if (fd < 0) {
            return md_fail_errno(err, errno, "cannot register the job in %s", ctx->slots_dir);
        }
        struct stat held;
        struct stat named;
        if (flock_retry(fd, LOCK_EX) != 0 || fstat(fd, &held) != 0) {
            int saved = errno;
            close(fd);
            return md_fail_errno(err, saved, "cannot lock %s/%s", ctx->slots_dir, ctx->reg_name);
        }
        if (fstatat(ctx->slots_fd, ctx->reg_name, &named, 0) == 0 &&
            named.st_ino == held.st_ino && named.st_dev == held.st_dev) {
            /* a length left by a supervisor of this job that died is stale */
            if (ftruncate(fd, 0) != 0) {
                int saved = errno;
                close(fd);
                return md_fail_errno(err, saved, "cannot reset %s/%s", ctx->slots_dir,
                                     ctx->reg_name);
            }
            ctx->reg_fd = fd;
            ctx->reg_ino = held.st_ino;
            ctx->demand_published = 0;
            return 0;
        }
        close(fd);
    }
    return md_fail(err, MD_EIO, "cannot register the job in %s: its file keeps being removed",
                   ctx->slots_dir);
}

int sv_budget_open(sv_ctx *ctx, md_error *err)
{
    const md_jobdef *jd = ctx->jobdef;
    if (jd->slots_dir.ptr == NULL) {
        return 0;  /* an older definition: the job's own num_workers, as before */
    }
    if (jd->slots_dir.len >= sizeof(ctx->slots_dir)) {
        return md_fail(err, MD_ETOOBIG, "the slots folder path is too long");
    }
    memcpy(ctx->slots_dir, jd->slots_dir.ptr, jd->slots_dir.len);
    ctx->slots_dir[jd->slots_dir.len] = '\0';
    if (!job_id_is_plain(ctx->job_id)) {
        return md_fail(err, MD_EFORMAT, "the job id is not a plain name");
    }
    int n = snprintf(ctx->reg_name, sizeof(ctx->reg_name), REG_PREFIX "%s", ctx->job_id);
    if (n < 0 || (size_t)n >= sizeof(ctx->reg_name)) {
        return md_fail(err, MD_ETOOBIG, "the job id is too long");
    }
    uint64_t budget = jd->worker_budget;
    if (budget == 0) {
        long cpus = sysconf(_SC_NPROCESSORS_ONLN);
        budget = cpus > 0 ? (uint64_t)cpus : 1;
    }
    ctx->budget = budget > SV_MAX_BUDGET ? SV_MAX_BUDGET : (unsigned)budget;
    /* the Python side creates it with the session folder; a resumed job of
     * an older session may find it missing */
    if (mkdir(ctx->slots_dir, 0700) != 0 && errno != EEXIST) {
        return md_fail_errno(err, errno, "cannot create the slots folder %s", ctx->slots_dir);
    }
    if (ctx->slots_fd >= 0) {
        close(ctx->slots_fd);  /* an idle pool's (sv_budget_others_running) */
    }
    ctx->slots_fd = open(ctx->slots_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (ctx->slots_fd < 0) {
        return md_fail_errno(err, errno, "cannot open the slots folder %s", ctx->slots_dir);
    }
    int rc = register_job(ctx, err);
    if (rc != 0) {
        return rc;
    }
    ctx->budget_on = 1;
    ctx->share = 0;
    ctx->last_budget_check = -1e300;
    return 0;
}

void sv_budget_close(sv_ctx *ctx)
{
    if (ctx->reg_fd >= 0) {
        /* removed while still locked, so no scanner counts a job that ended;
         * a failure leaves a file that the next scan finds unlocked and removes */
        struct stat named;
        if (fstatat(ctx->slots_fd, ctx->reg_name, &named, 0) == 0 && named.st_ino == ctx->reg_ino) {
            (void)unlinkat(ctx->slots_fd, ctx->reg_name, 0);
        }
        close(ctx->reg_fd);
        ctx->reg_fd = -1;
    }
    if (ctx->slots_fd >= 0) {
        close(ctx->slots_fd);
        ctx->slots_fd = -1;
    }
    ctx->budget_on = 0;
}

/* Another job's registration: its demand when live, -1 when its supervisor
 * is gone (the file is then removed, if it is still the one we locked) or
 * the file vanished while we looked. */
static int64_t probe_registration(const sv_ctx *ctx, const char *name)
{
    int fd = openat(ctx->slots_fd, name, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        return -1;
    }
    int64_t demand = -1;
    struct stat held;
    if (fstat(fd, &held) != 0) {
        goto cleanup;
    }
    if (flock_retry(fd, LOCK_SH | LOCK_NB) != 0) {
        if (errno == EWOULDBLOCK) {
            demand = held.st_size;
        }
        goto cleanup;
    }
    struct stat named;
    if (fstatat(ctx->slots_fd, name, &named, 0) == 0 && named.st_ino == held.st_ino &&
        named.st_dev == held.st_dev) {
        (void)unlinkat(ctx->slots_fd, name, 0);
    }

cleanup:
    close(fd);
    return demand;
}

/* One slot to every job that wants one, then one more at a time in list
 * order to those that want more.  With more jobs than slots the shares add
 * up to more than the budget; the slot locks still hold the total to the
 * budget, and the jobs without one wait for the next slot to be freed. */
static void fair_shares(const reg_entry *jobs, size_t count, unsigned budget, unsigned *shares)
{
    uint64_t used = 0;
    for (size_t i = 0; i < count; i++) {
        shares[i] = jobs[i].demand > 0 ? 1u : 0u;
        used += shares[i];
    }
    uint64_t left = used < budget ? budget - used : 0;
    int progress = 1;
    while (left > 0 && progress) {
        progress = 0;
        for (size_t i = 0; i < count && left > 0; i++) {
            if (shares[i] < jobs[i].demand) {
                shares[i]++;
                left--;
                progress = 1;
            }
        }
    }
}

static int list_registrations(sv_ctx *ctx, reg_entry **out, size_t *count, int *self_seen,
                              md_error *err)
{
    reg_entry *jobs = NULL;
    size_t len = 0;
    size_t cap = 0;
    DIR *dir = NULL;
    int rc = 0;
    int dfd = dup(ctx->slots_fd);
    if (dfd < 0) {
        rc = md_fail_errno(err, errno, "cannot list %s", ctx->slots_dir);
        goto cleanup;
    }
    dir = fdopendir(dfd);
    if (dir == NULL) {
        rc = md_fail_errno(err, errno, "cannot list %s", ctx->slots_dir);
        close(dfd);
        goto cleanup;
    }
    rewinddir(dir);  /* the duplicate shares its offset with slots_fd */
    *self_seen = 0;
    for (;;) {
        errno = 0;
        struct dirent *entry = readdir(dir);
        if (entry == NULL) {
            if (errno != 0) {
                rc = md_fail_errno(err, errno, "cannot list %s", ctx->slots_dir);
            }
            break;
        }
        if (strncmp(entry->d_name, REG_PREFIX, sizeof(REG_PREFIX) - 1) != 0 ||
            strlen(entry->d_name) > REG_NAME_MAX) {
            continue;
        }
        int64_t demand;
        if (strcmp(entry->d_name, ctx->reg_name) == 0) {
            struct stat named;
            *self_seen = fstatat(ctx->slots_fd, ctx->reg_name, &named, 0) == 0 &&
                         named.st_ino == ctx->reg_ino;
            demand = (int64_t)ctx->demand_published;
        } else {
            demand = probe_registration(ctx, entry->d_name);
        }
        if (demand < 0) {
            continue;
        }
        if (len == cap) {
            size_t grown_cap = cap < 16 ? 16 : cap * 2;
            reg_entry *grown = realloc(jobs, grown_cap * sizeof(*grown));
            if (grown == NULL) {
                rc = md_fail(err, MD_ENOMEM, "out of memory listing running jobs");
                break;
            }
            jobs = grown;
            cap = grown_cap;
        }
        size_t name_len = strlen(entry->d_name);
        memcpy(jobs[len].name, entry->d_name, name_len + 1);
        jobs[len].demand = (uint64_t)demand;
        len++;
    }

cleanup:
    if (dir != NULL) {
        closedir(dir);
    }
    if (rc != 0) {
        free(jobs);
        jobs = NULL;
        len = 0;
    }
    *out = jobs;
    *count = len;
    return rc;
}

static int recompute_share(sv_ctx *ctx, md_error *err)
{
    reg_entry *jobs = NULL;
    unsigned *shares = NULL;
    size_t count = 0;
    int self_seen = 0;
    int rc = list_registrations(ctx, &jobs, &count, &self_seen, err);
    if (rc != 0) {
        goto cleanup;
    }
    if (!self_seen) {
        /* a scanner removed our file in a race (see probe_registration);
         * register again so that the others count us from their next scan */
        close(ctx->reg_fd);
        ctx->reg_fd = -1;
        uint64_t demand = ctx->demand_published;
        rc = register_job(ctx, err);
        if (rc == 0 && demand > 0 && ftruncate(ctx->reg_fd, (off_t)demand) == 0) {
            ctx->demand_published = demand;
        }
        if (rc != 0) {
            goto cleanup;
        }
    }
    if (count == 0) {
        ctx->share = ctx->demand_published > 0 ? 1u : 0u;
        goto cleanup;
    }
    qsort(jobs, count, sizeof(*jobs), reg_compare);
    shares = calloc(count, sizeof(*shares));
    if (shares == NULL) {
        rc = md_fail(err, MD_ENOMEM, "out of memory sharing the workers");
        goto cleanup;
    }
    fair_shares(jobs, count, ctx->budget, shares);
    ctx->share = ctx->demand_published > 0 ? 1u : 0u;
    for (size_t i = 0; i < count; i++) {
        if (strcmp(jobs[i].name, ctx->reg_name) == 0) {
            ctx->share = shares[i];
            break;
        }
    }

cleanup:
    free(shares);
    free(jobs);
    return rc;
}

int sv_budget_update(sv_ctx *ctx, uint64_t demand, md_error *err)
{
    if (demand > ctx->budget) {
        demand = ctx->budget;  /* more could never be granted */
    }
    int changed = demand != ctx->demand_published;
    if (changed) {
        if (ftruncate(ctx->reg_fd, (off_t)demand) != 0) {
            return md_fail_errno(err, errno, "cannot publish the job's demand in %s",
                                 ctx->slots_dir);
        }
        ctx->demand_published = demand;
    }
    double now = md_monotonic_time();
    /* a job that starts or grows from nothing looks at once; otherwise the
     * view is refreshed at a bounded rate, which bounds how long another job
     * waits for its share */
    if ((changed && ctx->share == 0) || now - ctx->last_budget_check >= SV_BUDGET_CHECK_SECONDS) {
        ctx->last_budget_check = now;
        ctx->slots_exhausted = 0;
        return recompute_share(ctx, err);
    }
    return 0;
}

int sv_slot_take(sv_ctx *ctx, sv_worker *w, md_error *err)
{
    if (ctx->slots_exhausted) {
        return 0;  /* none was free a moment ago; look again at the next check */
    }
    for (unsigned i = 0; i < ctx->budget; i++) {
        char name[32];
        int n = snprintf(name, sizeof(name), "%u", i);
        if (n < 0 || (size_t)n >= sizeof(name)) {
            return md_fail(err, MD_ETOOBIG, "slot name too long");
        }
        /* O_CLOEXEC: a worker must not keep its slot locked after we die */
        int fd = openat(ctx->slots_fd, name, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
        if (fd < 0) {
            return md_fail_errno(err, errno, "cannot open the worker slot %s/%s",
                                 ctx->slots_dir, name);
        }
        if (flock_retry(fd, LOCK_EX | LOCK_NB) == 0) {
            w->slot_fd = fd;
            return 1;
        }
        int saved = errno;
        close(fd);
        if (saved != EWOULDBLOCK) {
            return md_fail_errno(err, saved, "cannot lock the worker slot %s/%s",
                                 ctx->slots_dir, name);
        }
    }
    ctx->slots_exhausted = 1;
    return 0;
}

/* For an idle pool: 1 when another job of the session is running (it may
 * want the slots our idle workers hold), 0 when none is.  The job must be
 * unregistered already (sv_budget_close); slots_dir is the last job's. */
int sv_budget_others_running(sv_ctx *ctx, md_error *err)
{
    if (ctx->slots_dir[0] == '\0') {
        return 0;  /* an older definition without a budget: nothing to share */
    }
    if (ctx->slots_fd < 0) {
        ctx->slots_fd = open(ctx->slots_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (ctx->slots_fd < 0) {
            return md_fail_errno(err, errno, "cannot open the slots folder %s", ctx->slots_dir);
        }
    }
    reg_entry *jobs = NULL;
    size_t count = 0;
    int self_seen = 0;
    ctx->reg_name[0] = '\0';
    int rc = list_registrations(ctx, &jobs, &count, &self_seen, err);
    free(jobs);
    if (rc != 0) {
        return rc;
    }
    return count > 0 ? 1 : 0;
}
