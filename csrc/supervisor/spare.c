/*
 * Spare job folders: a warm pool makes the folder of the next job of its
 * environment ahead of time, off the path a client waits on.
 *
 * On ext4 making a folder or a file allocates an inode, which on this VM's
 * disk costs 0.1-1.5 ms (median ~0.5 ms), against ~30 us to open a file that
 * is there.  A job folder needs four folders (itself, tasks/, results/,
 * logs/) and a dozen files: the client writes its key, first task shard,
 * status and definition (through a temporary file), the supervisor its
 * lock, log, results log, worker table and two statuses (through a
 * temporary file each), and each worker the log of what its tasks print.  A pool's syncer thread makes all of them, empty, as
 * <jobs>/.spare-<pool name>, under a temporary name first so that a spare is
 * always complete; the client's create_job renames the spare to the new
 * job's name and fills its files when there is one, and makes the folder
 * itself when there is not (csrc/ext/jobstore.c).  Listings skip names that
 * start with '.', and a folder without its definition is no job yet.
 *
 * Everything here goes by name from the jobs folder: a client may rename the
 * spare at any moment, and nothing of the job it became may be touched.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "supervisor.h"

#define SPARE_TMP_SUFFIX ".tmp"

static const char *const spare_dirs[] = {MD_STORE_TASKS_DIR, MD_STORE_RESULTS_DIR,
                                         MD_STORE_LOGS_DIR};
static const char *const spare_files[] = {
    MD_STORE_KEY, MD_STORE_STATUS, MD_STORE_FIRST_SHARD, MD_STORE_SPARE_JOB_TMP,  /* client's */
    MD_STORE_LOCK, MD_STORE_RESULTS_LOG, MD_STORE_SUPERVISOR_LOG, MD_STORE_WORKER_TABLE};

static int make_file(int jobs_fd, const char *folder, const char *name)
{
    char path[MD_PATH_MAX];
    if (md_path_join(path, sizeof path, folder, name, NULL) != 0) {
        errno = ENAMETOOLONG;
        return -1;
    }
    int fd = openat(jobs_fd, path, O_WRONLY | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0) {
        return -1;
    }
    (void)close(fd);
    return 0;
}

static int spare_name(char *out, size_t cap, const char *pool_name, const char *suffix)
{
    int n = snprintf(out, cap, MD_STORE_SPARE_PREFIX "%s%s", pool_name, suffix);
    return n > 0 && (size_t)n < cap ? 0 : -1;
}

static void report(const char *what, const char *name, int error)
{
    fprintf(stderr, "mapdeploy-supervisor: could not %s the spare job folder %s: %s\n", what,
            name, strerror(error));
}

/* Fills the temporary folder tmp (made if missing: a pool killed while
 * making it leaves it half made) and renames it to name, unless a spare is
 * there already.  Best effort: without a spare the client makes its folder. */
void sv_spare_make(int jobs_fd, const char *pool_name, unsigned workers)
{
    char name[MD_PATH_MAX];
    char tmp[MD_PATH_MAX];
    char path[MD_PATH_MAX];
    if (jobs_fd < 0 || spare_name(name, sizeof name, pool_name, "") != 0 ||
        spare_name(tmp, sizeof tmp, pool_name, SPARE_TMP_SUFFIX) != 0) {
        return;
    }
    if (faccessat(jobs_fd, name, F_OK, AT_SYMLINK_NOFOLLOW) == 0) {
        return;
    }
    if (mkdirat(jobs_fd, tmp, 0700) != 0 && errno != EEXIST) {
        report("make", tmp, errno);
        return;
    }
    for (size_t i = 0; i < sizeof spare_dirs / sizeof spare_dirs[0]; i++) {
        if (md_path_join(path, sizeof path, tmp, spare_dirs[i], NULL) != 0 ||
            (mkdirat(jobs_fd, path, 0700) != 0 && errno != EEXIST)) {
            report("make", tmp, errno);
            return;
        }
    }
    for (size_t i = 0; i < sizeof spare_files / sizeof spare_files[0]; i++) {
        if (make_file(jobs_fd, tmp, spare_files[i]) != 0) {
            report("make", tmp, errno);
            return;
        }
    }
    /* the temporary files of this pool's two status writes; a job that
     * another supervisor runs keeps them, empty */
    for (int running = 0; running <= 1; running++) {
        if (sv_status_tmp_name(path, sizeof path, running) != 0 ||
            make_file(jobs_fd, tmp, path) != 0) {
            report("make", tmp, errno);
            return;
        }
    }
    for (unsigned i = 0; i < workers; i++) {
        if (sv_worker_log_name(path, sizeof path, i) != 0 || make_file(jobs_fd, tmp, path) != 0) {
            report("make", tmp, errno);
            return;
        }
    }
    /* NOREPLACE: a spare another pool of the name made meanwhile is as good */
    if (renameat2(jobs_fd, tmp, jobs_fd, name, RENAME_NOREPLACE) != 0 && errno != EEXIST) {
        report("rename", tmp, errno);
    }
}

/* flags: 0, or AT_REMOVEDIR for a folder */
static void remove_entry(int jobs_fd, const char *folder, const char *name, int flags)
{
    char path[MD_PATH_MAX];
    if (md_path_join(path, sizeof path, folder, name, NULL) == 0) {
        (void)unlinkat(jobs_fd, path, flags);  /* gone already, or taken: nothing to do */
    }
}

/* Removes the pool's spare (when no client took it); called as the pool
 * ends.  What is not there, or not empty, is left. */
void sv_spare_remove(int jobs_fd, const char *pool_name, unsigned workers)
{
    char name[MD_PATH_MAX];
    char made[64];
    if (jobs_fd < 0 || spare_name(name, sizeof name, pool_name, "") != 0) {
        return;
    }
    for (size_t i = 0; i < sizeof spare_files / sizeof spare_files[0]; i++) {
        remove_entry(jobs_fd, name, spare_files[i], 0);
    }
    for (int running = 0; running <= 1; running++) {
        if (sv_status_tmp_name(made, sizeof made, running) == 0) {
            remove_entry(jobs_fd, name, made, 0);
        }
    }
    for (unsigned i = 0; i < workers; i++) {
        if (sv_worker_log_name(made, sizeof made, i) == 0) {
            remove_entry(jobs_fd, name, made, 0);
        }
    }
    for (size_t i = 0; i < sizeof spare_dirs / sizeof spare_dirs[0]; i++) {
        remove_entry(jobs_fd, name, spare_dirs[i], AT_REMOVEDIR);
    }
    (void)unlinkat(jobs_fd, name, AT_REMOVEDIR);
}
