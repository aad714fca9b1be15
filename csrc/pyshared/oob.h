/* Pickles whose large buffers travel as blob files (docs/protocol.md,
 * "Blobs"), as the worker and the extension read and write them.
 *
 * Compiled into both the _mapdeploy extension and the worker. */
#ifndef MAPDEPLOY_OOB_H
#define MAPDEPLOY_OOB_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "mdcore.h"

/* The object of data: a wrapper (md_oob_is) has its blobs read from
 * job_dir and checked, each rebuilt as bytes (read-only buffers) or
 * bytearray, then pickle_loads(pickle, buffers=[...]); any other data is
 * pickle_loads(data).  On failure returns NULL: with err->code set and no
 * Python exception when a wrapper or a blob is bad (tampered, missing,
 * malformed), with a Python exception otherwise.  job_dir NULL: a wrapper
 * is an error (the job predates blobs). */
PyObject *md_oob_loads(const uint8_t *data, size_t len, const char *job_dir, const md_key *key,
                       PyObject *pickle_loads, md_error *err);

/* Writes each object of buffers (anything with a contiguous buffer) as a
 * blob of job_dir and returns the wrapper of pickle and their references,
 * as bytes.  NULL with err->code set (no Python exception) when a blob
 * cannot be written; NULL with an exception otherwise. */
PyObject *md_oob_dumps(const uint8_t *pickle, size_t pickle_len, PyObject *buffers,
                       const char *job_dir, const md_key *key, md_error *err);

/* A callable for pickle.dumps(..., buffer_callback=...) that appends every
 * contiguous buffer of MD_BLOB_THRESHOLD bytes or more to list (which it
 * holds a reference to) and returns False for it (out of band), True for
 * the others (in band). */
PyObject *md_oob_collector(PyObject *list);

#endif
