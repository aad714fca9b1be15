/*
 * mapdeploy core: plain C11, never includes Python.h.
 *
 * One header for the whole core; one .c file per concern:
 *   buf.c       growable byte buffer
 *   error.c     md_error
 *   crc32c.c    CRC-32C for the append-only results log
 *   envelope.c  authenticated msgpack envelopes (HMAC-SHA256, OpenSSL)
 *   frame.c     length-prefixed frames over file descriptors
 *   records.c   payload codecs: task results, pickled-kwargs arrays,
 *               job definition, status, hello, combine
 *   log.c       the append-only results log (length + CRC per record)
 *   store.c     job folder file operations (atomic writes, exclusive create)
 *   blob.c      large buffers out of band: blob files (Poly1305) and the wrapper
 *
 * Conventions: functions return 0 on success or a negative MD_E* code and
 * fill the md_error they were given (which may be NULL).  Decoders never read
 * outside the bytes they are given and borrow pointers into them: a decoded
 * value lives as long as the input bytes do.
 * The wire and disk formats are written down in docs/protocol.md.
 */
#ifndef MAPDEPLOY_CORE_H
#define MAPDEPLOY_CORE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------ errors */

enum {
    MD_OK = 0,
    MD_ENOMEM = -1,     /* allocation failed */
    MD_EIO = -2,        /* a system call failed; message has strerror */
    MD_EFORMAT = -3,    /* bytes are not what the format says */
    MD_EMAC = -4,       /* authentication failed: tampered or wrong key */
    MD_EVERSION = -5,   /* a format version this build does not know */
    MD_ETRUNCATED = -6, /* input ends early (torn tail, short frame) */
    MD_EEXIST = -7,     /* create-if-absent found the file present */
    MD_ENOENT = -8,     /* no such file */
    MD_ECLOSED = -9,    /* peer closed the descriptor cleanly */
    MD_EARG = -10,      /* invalid argument from the caller */
    MD_ETOOBIG = -11,   /* a size over the format's limit */
    MD_ENOSPC = -12     /* no space left on the device */
};

#define MD_ERROR_MESSAGE_LEN 512

typedef struct {
    int code;
    char message[MD_ERROR_MESSAGE_LEN];
} md_error;

/* Sets err (if not NULL) and returns code, so callers can `return md_fail(...)`. */
int md_fail(md_error *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Like md_fail, appending ": <strerror(errno_value)>"; maps ENOSPC/EDQUOT to MD_ENOSPC,
 * ENOENT to MD_ENOENT, EEXIST to MD_EEXIST, otherwise MD_EIO. */
int md_fail_errno(md_error *err, int errno_value, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void md_error_clear(md_error *err);
/* Prepends "what: " to err's message (so that a decoder's message names the
 * file it came from) and returns code. */
int md_error_prefix(md_error *err, int code, const char *what);

/* ------------------------------------------------------------------ buffer */

typedef struct {
    uint8_t *data;
    size_t len;
    size_t cap;
} md_buf;

void md_buf_init(md_buf *buf);
void md_buf_free(md_buf *buf);           /* frees and re-initialises */
void md_buf_clear(md_buf *buf);          /* len = 0, keeps capacity */
int md_buf_reserve(md_buf *buf, size_t extra);
int md_buf_append(md_buf *buf, const void *data, size_t len);
/* Removes the first n bytes (n <= len). */
void md_buf_consume(md_buf *buf, size_t n);

/* ------------------------------------------------------------- byte order */

/* Frames and log records carry big-endian 32-bit lengths. */
static inline void md_put_be32(uint8_t out[4], uint32_t value)
{
    out[0] = (uint8_t)(value >> 24);
    out[1] = (uint8_t)(value >> 16);
    out[2] = (uint8_t)(value >> 8);
    out[3] = (uint8_t)value;
}

static inline uint32_t md_get_be32(const uint8_t in[4])
{
    return ((uint32_t)in[0] << 24) | ((uint32_t)in[1] << 16) | ((uint32_t)in[2] << 8) |
           (uint32_t)in[3];
}

/* ------------------------------------------------------------------ crc32c */

uint32_t md_crc32c(uint32_t crc, const void *data, size_t len);
/* The same, byte at a time with a table, whatever the CPU (tests compare them). */
uint32_t md_crc32c_portable(uint32_t crc, const void *data, size_t len);

/* --------------------------------------------------------------- envelopes */

#define MD_FORMAT_VERSION 1u
#define MD_KEY_LEN 32u
#define MD_MAC_LEN 32u
#define MD_JOB_ID_MAX 64u

typedef struct {
    uint8_t bytes[MD_KEY_LEN];
} md_key;

int md_key_generate(md_key *key, md_error *err);   /* OpenSSL RAND_bytes */

typedef enum {
    MD_KIND_JOB = 1,      /* the job definition */
    MD_KIND_TASKS = 2,    /* pickled kwargs of tasks [first, first+count) */
    MD_KIND_RESULTS = 3,  /* results of tasks [first, first+count) */
    MD_KIND_STATUS = 4,   /* the job's status */
    MD_KIND_COMBINE = 5,  /* supervisor -> worker: run the combiner */
    MD_KIND_READY = 6,    /* worker -> supervisor: interpreter is up */
    MD_KIND_SWITCH = 7    /* supervisor -> warm worker: a hello for the next job,
                             authenticated with the key of the job it served */
} md_kind;

/* Returns the wire name ("job", "tasks", ...) or NULL for an unknown kind. */
const char *md_kind_name(md_kind kind);

typedef struct {
    md_kind kind;
    const char *job_id;      /* borrowed; not NUL-terminated */
    size_t job_id_len;       /* <= MD_JOB_ID_MAX */
    uint64_t first;
    uint64_t count;
    uint32_t attempt;
    const uint8_t *payload;  /* borrowed */
    size_t payload_len;
} md_envelope;

/* Appends the encoded envelope to out. */
int md_envelope_encode(const md_key *key, const md_envelope *env, md_buf *out,
                       md_error *err);
/* Checks the MAC over the exact body bytes before parsing the body; on
 * success fills env with pointers into data.  MD_EMAC on a bad MAC,
 * MD_EVERSION on an unknown format version, MD_EFORMAT otherwise. */
int md_envelope_decode(const md_key *key, const uint8_t *data, size_t len,
                       md_envelope *env, md_error *err);
/* MD_EFORMAT unless env has this kind and this job id (stops replays of an
 * envelope from another job or of another kind). */
int md_envelope_expect(const md_envelope *env, md_kind kind, const char *job_id,
                       md_error *err);

/* ------------------------------------------------------------------ frames */

/* A frame is a 4-byte big-endian length followed by that many bytes. */
#define MD_FRAME_MAX ((size_t)1 << 31)

/* Blocking; retries on EINTR and short writes/reads. */
int md_frame_write(int fd, const uint8_t *data, size_t len, md_error *err);
/* Replaces out's contents with one frame.  MD_ECLOSED on EOF before a frame
 * starts, MD_ETRUNCATED on EOF inside one. */
int md_frame_read(int fd, md_buf *out, size_t max_len, md_error *err);
/* Pure parser over buffered bytes: returns 1 and sets *frame, *frame_len, *consumed
 * when a whole frame is at the start of data, 0 when more bytes are needed,
 * MD_ETOOBIG when the announced length exceeds max_len. */
int md_frame_parse(const uint8_t *data, size_t len, size_t max_len,
                   const uint8_t **frame, size_t *frame_len, size_t *consumed,
                   md_error *err);

/* ---------------------------------------------------------------- payloads */

/* Arrays of byte strings: the payload of a TASKS envelope (one pickle of a
 * kwargs dict per task). */
int md_bins_encode(const uint8_t *const *items, const size_t *lens, size_t count,
                   md_buf *out, md_error *err);
typedef int (*md_bin_visitor)(void *ctx, size_t index, const uint8_t *item, size_t len);
/* Calls visit for each item in order; stops and returns the visitor's value
 * when it is non-zero.  *count_out (may be NULL) receives the array length. */
int md_bins_decode(const uint8_t *payload, size_t len, md_bin_visitor visit,
                   void *ctx, size_t *count_out, md_error *err);

typedef enum {
    MD_TASK_COMPLETED = 1,
    MD_TASK_FAILED = 2
} md_task_status;

typedef struct {
    const char *ptr;   /* NULL when absent (msgpack nil) */
    size_t len;
} md_str;

typedef struct {
    uint64_t task_index;     /* task_count for the combiner */
    md_task_status status;
    uint32_t attempt;
    double start_time;       /* seconds since the epoch (wall clock) */
    double run_time;         /* seconds (monotonic clock) */
    int64_t worker_pid;
    md_str exc_type;         /* class name, e.g. "TypeError" */
    md_str exc_message;      /* str(e) */
    md_str exc_traceback;    /* formatted traceback */
    const uint8_t *value;    /* pickled return value; NULL when none */
    size_t value_len;
    int64_t max_rss;         /* peak resident memory of the worker after the task, bytes; 0 unknown */
    md_str output;           /* what the task printed (stdout and stderr, capped); NULL when none */
} md_task_result;

/* Payload of a RESULTS envelope. */
int md_results_encode(const md_task_result *results, size_t count, md_buf *out,
                      md_error *err);
typedef int (*md_result_visitor)(void *ctx, const md_task_result *result);
int md_results_decode(const uint8_t *payload, size_t len, md_result_visitor visit,
                      void *ctx, size_t *count_out, md_error *err);

/* Job definition (payload of the JOB envelope).  Strings borrowed. */
typedef struct {
    md_str name;             /* job name */
    md_str job_kind;         /* "map" or "single" */
    md_str function_name;
    const uint8_t *function; size_t function_len;   /* cloudpickle bytes */
    md_str combiner_name;    /* ptr NULL when there is no combiner */
    const uint8_t *combiner; size_t combiner_len;   /* NULL when none */
    uint64_t task_count;
    uint64_t shard_size;     /* tasks per tasks/<shard> file */
    md_str python_version;   /* "3.11" */
    md_str cwd;
    md_str executable;       /* the submitter's sys.executable */
    md_str prefix;           /* the submitter's sys.prefix */
    md_str exec_prefix;
    size_t sys_path_count;   /* entries via md_jobdef_sys_path */
    uint32_t num_workers;    /* 0: one per core */
    double created;
    /* Optional keys (added within format version 1; absent in older
     * definitions, which read as the defaults): */
    double task_timeout;     /* seconds a task may run; 0: no limit */
    uint32_t max_retries;    /* extra attempts for a task whose failure is retryable */
    size_t retry_on_count;   /* entries via md_jobdef_retry_on; absent: the default */
    int retry_on_given;      /* 1 when the key was present */
    md_str slots_dir;        /* the session's worker slots folder; ptr NULL when absent
                                (or nil): the job runs without the machine-wide budget */
    uint32_t worker_budget;  /* slots in slots_dir the job may use; 0: one per core */
    uint64_t worker_memory_limit;  /* bytes of address space per worker (RLIMIT_AS); 0: none.
                                      optional, older definitions read as 0 */
    md_str job_dir;          /* the job folder (absolute): where blobs are; ptr NULL when
                                absent (older definitions): values then travel in band */
} md_jobdef;

/* The job definition payload is a msgpack map with more keys than the C side
 * reads (the Python side stores its own metadata there too); unknown keys are
 * ignored.  md_jobdef_decode keeps a pointer to the payload to answer
 * md_jobdef_sys_path. */
typedef struct md_jobdef_view md_jobdef_view;
int md_jobdef_decode(const uint8_t *payload, size_t len, md_jobdef_view **out,
                     md_error *err);
const md_jobdef *md_jobdef_get(const md_jobdef_view *view);
md_str md_jobdef_sys_path(const md_jobdef_view *view, size_t index);
/* Entry index of retry_on: "WorkerDied", "TaskTimeout", "Exception" (any
 * exception the function raised) or an exception class name. */
md_str md_jobdef_retry_on(const md_jobdef_view *view, size_t index);
void md_jobdef_free(md_jobdef_view *view);

/* Status (payload of the STATUS envelope, file <job>/status). */
typedef enum {
    MD_STATE_PENDING = 1,
    MD_STATE_RUNNING = 2,
    MD_STATE_COMPLETED = 3,
    MD_STATE_FAILED = 4,
    MD_STATE_CANCELED = 5
} md_state;

/* "Pending", "Running", "Completed", "Failed", "Canceled" (the contract's strings). */
const char *md_state_name(md_state state);

typedef struct {
    md_state state;
    double start_time;       /* 0: not started */
    double end_time;         /* 0: not ended */
    md_str error;            /* why the job as a whole failed; ptr NULL if none */
    int64_t supervisor_pid;  /* 0 when none */
    uint32_t num_workers;
} md_status;

int md_status_encode(const md_status *status, md_buf *out, md_error *err);
int md_status_decode(const uint8_t *payload, size_t len, md_status *out, md_error *err);

/* Combine request (payload of the COMBINE envelope): one entry per map task
 * in task order: its name and its pickled result (NULL for a failed task). */
typedef struct {
    md_str name;
    const uint8_t *value;
    size_t value_len;
} md_combine_entry;

int md_combine_encode(const md_combine_entry *entries, size_t count, md_buf *out,
                      md_error *err);
typedef int (*md_combine_visitor)(void *ctx, const md_combine_entry *entry);
int md_combine_decode(const uint8_t *payload, size_t len, md_combine_visitor visit,
                      void *ctx, size_t *count_out, md_error *err);

/* A request on a warm pool's socket (docs/protocol.md, "The pool socket"):
 * 'J' | uint32 big-endian N | N bytes of an absolute job folder path, or 'S'. */
#define MD_POOL_RUN 'J'
#define MD_POOL_STOP 'S'
typedef struct {
    char op;          /* MD_POOL_RUN or MD_POOL_STOP */
    md_str path;      /* MD_POOL_RUN: borrowed from the input, no NUL, starts with '/' */
} md_pool_request;

/* Pure parser over the bytes received so far: 1 and *out when a whole
 * request is at the start of data, 0 when more bytes are needed,
 * MD_EFORMAT for anything else (an unknown op, an empty, relative or
 * over-long path, a NUL in it). */
int md_pool_request_parse(const uint8_t *data, size_t len, md_pool_request *out,
                          md_error *err);
/* Appends a request to out (path NULL for MD_POOL_STOP). */
int md_pool_request_encode(char op, const char *path, md_buf *out, md_error *err);

/* Hello: the first frame on a worker's socket, sent by the supervisor before
 * the worker has a key; plain msgpack, not an envelope (the socketpair is
 * private to the two processes).  A warm worker kept for the next job gets
 * it again as the payload of a SWITCH envelope, with the log it writes to
 * from then on (log.ptr NULL: no such key, the worker keeps its log). */
typedef struct {
    md_key key;
    md_str job_id;
    md_str log;
} md_hello;

int md_hello_encode(const md_hello *hello, md_buf *out, md_error *err);
int md_hello_decode(const uint8_t *data, size_t len, md_hello *out, md_error *err);

/* Ready (payload of the READY envelope a worker sends once its interpreter
 * is up): {"pid": int, "python_version": str, "error": str or nil}.  Unknown
 * keys are ignored; a missing key reads as 0 / absent.  A non-NULL error
 * means the worker cannot serve this job. */
typedef struct {
    int64_t pid;
    md_str python_version;   /* ptr NULL when absent */
    md_str error;            /* ptr NULL when nil or absent */
} md_ready;

int md_ready_decode(const uint8_t *payload, size_t len, md_ready *out, md_error *err);

/* ------------------------------------------------------------------ blobs */

/* Buffers of at least MD_BLOB_THRESHOLD bytes in a pickle travel out of band:
 * each is written once to <job>/blobs/<hex nonce> and the pickle is wrapped
 * (magic "\0MDB", then msgpack [pickle, [[length, nonce, tag, readonly]...]])
 * so that readers know which blobs to read and check (docs/protocol.md). */
#define MD_BLOB_THRESHOLD ((size_t)1 << 20)
#define MD_BLOB_NONCE_LEN 16u
#define MD_BLOB_TAG_LEN 16u
#define MD_BLOB_MAX ((uint64_t)1 << 40)
#define MD_OOB_MAGIC_LEN 4u
#define MD_OOB_MAX_BLOBS 65536u
#define MD_STORE_BLOBS_DIR "blobs"

extern const uint8_t md_oob_magic[MD_OOB_MAGIC_LEN];

typedef struct {
    uint64_t length;
    uint8_t nonce[MD_BLOB_NONCE_LEN];  /* random; names the file */
    uint8_t tag[MD_BLOB_TAG_LEN];      /* Poly1305, one-time key from the job key and nonce */
    int readonly;                      /* the buffer was read-only (bytes): rebuild it as bytes */
} md_blob_ref;

/* "blobs/<32 hex digits of the nonce>", the blob's name inside the job folder. */
int md_blob_name(const md_blob_ref *ref, char *out, size_t out_len, md_error *err);
/* The tag of data under key and nonce (one pass, one thread). */
int md_blob_tag(const md_key *key, const uint8_t nonce[MD_BLOB_NONCE_LEN], const uint8_t *data,
                size_t len, uint8_t tag[MD_BLOB_TAG_LEN], md_error *err);
/* Picks a random nonce, creates <job_dir>/blobs/<hex> (O_EXCL, 0600, no
 * fsync; the blobs folder too when absent), writes data with one write(2)
 * while a second thread computes the tag, and fills ref (readonly left 0). */
int md_blob_write(const char *job_dir, const md_key *key, const uint8_t *data, size_t len,
                  md_blob_ref *ref, md_error *err);
/* Reads the blob ref names into dst (ref->length bytes), checking its size
 * and tag: MD_EMAC when it was changed, swapped or cut, MD_ENOENT when it is
 * gone.  The tag is computed over dst, the bytes handed on, by a second
 * thread that follows the reads.  Advises huge pages for dst. */
int md_blob_read(const char *job_dir, const md_key *key, const md_blob_ref *ref, uint8_t *dst,
                 md_error *err);

/* 1 when data starts with the out-of-band wrapper's magic (no pickle does). */
int md_oob_is(const uint8_t *data, size_t len);
int md_oob_encode(const uint8_t *pickle, size_t pickle_len, const md_blob_ref *refs,
                  size_t count, md_buf *out, md_error *err);
typedef int (*md_blob_visitor)(void *ctx, size_t index, const md_blob_ref *ref);
/* Validates the whole wrapper, then sets *pickle (borrowed) and calls visit
 * for each buffer in order; stops at a non-zero visitor value. */
int md_oob_decode(const uint8_t *data, size_t len, const uint8_t **pickle, size_t *pickle_len,
                  md_blob_visitor visit, void *ctx, size_t *count_out, md_error *err);

/* ---------------------------------------------------------- results log */

/* Record: 4-byte big-endian length, 4-byte big-endian CRC-32C of the bytes,
 * the bytes (one RESULTS envelope). */
#define MD_LOG_RECORD_MAX ((size_t)1 << 31)

/* Appends one record with a single write(2) when possible; on a short write
 * keeps writing.  Does not fsync. */
int md_log_append(int fd, const uint8_t *record, size_t len, md_error *err);
/* Pure parser: returns 1 and sets *record, *record_len, *consumed for a whole,
 * intact record at the start of data; 0 when data ends inside a record (a torn
 * or still-being-written tail: stop reading here); MD_EFORMAT when a complete
 * record's CRC does not match. */
int md_log_parse(const uint8_t *data, size_t len, const uint8_t **record,
                 size_t *record_len, size_t *consumed, md_error *err);

/* ---------------------------------------------------------- job folder */

/* Names inside a job folder (see docs/protocol.md). */
#define MD_STORE_KEY "key"
#define MD_STORE_JOB "job"
#define MD_STORE_STATUS "status"
#define MD_STORE_TASKS_DIR "tasks"
#define MD_STORE_RESULTS_DIR "results"
#define MD_STORE_RESULTS_LOG "results/log"
#define MD_STORE_LOGS_DIR "logs"
#define MD_STORE_SUPERVISOR_LOG "logs/supervisor.log"
#define MD_STORE_WORKER_TABLE "logs/workers"
/* <jobs>/.spare-<pool name>: a job folder a warm pool made ahead of time
 * (csrc/supervisor/spare.c); create_job renames it to the new job's name. */
#define MD_STORE_SPARE_PREFIX ".spare-"
#define MD_STORE_LOCK "supervisor.lock"
#define MD_STORE_CANCEL "cancel"
#define MD_PATH_MAX 4096u

/* Joins dir and name into out (NUL-terminated); MD_ETOOBIG if it does not fit. */
int md_path_join(char *out, size_t out_len, const char *dir, const char *name,
                 md_error *err);
/* Name of the tasks file of a shard: "tasks/00000042". */
int md_shard_name(char *out, size_t out_len, uint64_t shard, md_error *err);

/* Writes dir/name.tmp.<pid>, fsyncs it, renames it over dir/name, fsyncs dir. */
int md_store_write_atomic(const char *dir, const char *name, const uint8_t *data,
                          size_t len, unsigned mode, md_error *err);
/* The same rename of a complete file over dir/name, fsyncs only with sync:
 * readers never see a partial file, and a host crash may lose the change
 * until the writer syncs it (md_store_sync_file, md_store_sync_dir). */
int md_store_replace(const char *dir, const char *name, const uint8_t *data, size_t len,
                     unsigned mode, int sync, md_error *err);
/* md_store_replace, unsynced, through the temporary file dir/tmp_name
 * (created if absent): a spare job folder has it already, and a file that is
 * there costs no inode allocation. */
int md_store_replace_via(const char *dir, const char *name, const char *tmp_name,
                         const uint8_t *data, size_t len, unsigned mode, md_error *err);
/* Creates dir/name only if absent (O_EXCL): MD_EEXIST when present. */
int md_store_create_exclusive(const char *dir, const char *name, const uint8_t *data,
                              size_t len, unsigned mode, md_error *err);
/* The same without fsync: for files whose loss in a host crash costs nothing
 * (a new job folder before its supervisor runs, which a reader then finds
 * incomplete or failing its MACs). A crash of the writing process alone loses
 * nothing: the data is in the page cache once write(2) returned. */
int md_store_create_unsynced(const char *dir, const char *name, const uint8_t *data,
                             size_t len, unsigned mode, md_error *err);
/* md_store_create_unsynced into the file dir/name if it is there (truncated):
 * the empty files of a spare job folder, which this process now owns. */
int md_store_fill_unsynced(const char *dir, const char *name, const uint8_t *data, size_t len,
                           unsigned mode, md_error *err);
/* The empty files a spare job folder holds for its client (besides the
 * supervisor's); the definition goes through MD_STORE_SPARE_JOB_TMP. */
#define MD_STORE_SPARE_JOB_TMP "job.tmp"
#define MD_STORE_FIRST_SHARD MD_STORE_TASKS_DIR "/00000000"
/* fsync(2) of the file dir/name (not of its folder). */
int md_store_sync_file(const char *dir, const char *name, md_error *err);
/* fsync(2) of the folder dir itself: the names created or renamed in it. */
int md_store_sync_dir(const char *dir, md_error *err);
/* Reads a whole file into out (replacing its contents); MD_ENOENT if absent. */
int md_store_read(const char *dir, const char *name, md_buf *out, md_error *err);
/* Reads from byte offset to the end of the file, appending to out. */
int md_store_read_from(const char *path, uint64_t offset, md_buf *out, md_error *err);
/* Appends at most max bytes of path from byte offset to out, so that a large
 * file can be taken a piece at a time; *eof is set when fewer than max bytes
 * were there (bytes appended meanwhile wait for the next call).  MD_ENOENT if
 * absent; out is unchanged on any error. */
int md_store_read_range(const char *path, uint64_t offset, size_t max, md_buf *out, int *eof,
                        md_error *err);
/* mkdir(dir/name, mode); succeeds if it exists and exists_ok. */
int md_store_mkdir(const char *dir, const char *name, unsigned mode, int exists_ok,
                   md_error *err);

/* Reads <dir>/key (MD_KEY_LEN bytes, must be mode 0600 or stricter). */
int md_store_read_key(const char *dir, md_key *key, md_error *err);
/* Reads and authenticates <dir>/status. */
int md_store_read_status(const char *dir, const md_key *key, const char *job_id,
                         md_buf *scratch, md_status *out, md_error *err);
/* Encodes, authenticates and atomically writes <dir>/status (durably). */
int md_store_write_status(const char *dir, const md_key *key, const char *job_id,
                          const md_status *status, md_error *err);
/* The same; without sync the rename is not fsynced (see md_store_replace). */
int md_store_write_status_ex(const char *dir, const md_key *key, const char *job_id,
                             const md_status *status, int sync, md_error *err);
/* Unsynced, through the temporary file dir/tmp_name (md_store_replace_via). */
int md_store_write_status_via(const char *dir, const md_key *key, const char *job_id,
                              const md_status *status, const char *tmp_name, md_error *err);

/* ---------------------------------------------------------- time */

double md_wall_time(void);       /* CLOCK_REALTIME, seconds */
double md_monotonic_time(void);  /* CLOCK_MONOTONIC, seconds */

#ifdef __cplusplus
}
#endif
#endif
