/* Pickles of plain values written and read without the pickle module.
 *
 * Most parameter sets are dicts of ints, floats, strings and bytes, and most
 * task functions return one of those.  pickle.dumps / pickle.loads make and
 * tear down a Pickler or Unpickler per call (~1 us); for such values a
 * pickle is a fixed sequence of opcodes that takes tens of nanoseconds to
 * write or read.  What is written is an ordinary protocol 5 pickle that
 * pickle.loads reads, and what is read is checked opcode by opcode, anything
 * else left to pickle.loads: the job format does not change, and a reader
 * never needs to know which way a pickle was made.
 *
 * Compiled into both the _mapdeploy extension and the worker.  The bytes
 * read here were authenticated before, like everything that is unpickled. */
#ifndef MAPDEPLOY_FLATPICKLE_H
#define MAPDEPLOY_FLATPICKLE_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "mdcore.h"

/* Replaces out's contents with a pickle of obj when obj is None, a bool, an
 * int of 64 bits, a float, a str (no lone surrogates) or bytes; with dicts
 * set, also a dict (exactly dict) of str keys to such values.  0 written,
 * 1 obj is something else (nothing to report), -1 out of memory.
 * With oob not NULL (and *oob NULL or a list), bytes of MD_BLOB_THRESHOLD
 * or more are written out of band (NEXT_BUFFER, READONLY_BUFFER) and
 * appended, in order, to the list *oob (made on the first one: a pickle
 * without any costs no allocation); the pickle then needs
 * pickle.loads(data, buffers=*oob).  On 1 or -1, *oob may hold items
 * already: the caller drops it. */
int md_flat_pickle(PyObject *obj, int dicts, md_buf *out, PyObject **oob);

/* The object of a pickle made of the opcodes md_flat_pickle writes, or NULL
 * with *unknown set (and no exception) when it holds anything else, for
 * pickle.loads to read; NULL with an exception for a malformed one. */
PyObject *md_flat_unpickle(const uint8_t *data, size_t len, int *unknown);

#endif
