/* Growable byte buffer. */
#include <stdlib.h>
#include <string.h>

#include "mdcore.h"

/* Small buffers are common (headers, status payloads); starting at 64 bytes
 * avoids a string of tiny reallocations. */
#define MD_BUF_MIN_CAP 64u

void md_buf_init(md_buf *buf)
{
    buf->data = NULL;
    buf->len = 0;
    buf->cap = 0;
}

void md_buf_free(md_buf *buf)
{
    free(buf->data);
    md_buf_init(buf);
}

void md_buf_clear(md_buf *buf)
{
    buf->len = 0;
}

int md_buf_reserve(md_buf *buf, size_t extra)
{
    if (extra > SIZE_MAX - buf->len) {
        return MD_ENOMEM;
    }
    size_t need = buf->len + extra;
    if (need <= buf->cap) {
        return MD_OK;
    }
    size_t cap = buf->cap < MD_BUF_MIN_CAP ? MD_BUF_MIN_CAP : buf->cap;
    while (cap < need) {
        if (cap > SIZE_MAX / 2) {
            cap = need;
            break;
        }
        cap *= 2;
    }
    uint8_t *data = realloc(buf->data, cap);
    if (data == NULL) {
        return MD_ENOMEM;
    }
    buf->data = data;
    buf->cap = cap;
    return MD_OK;
}

int md_buf_append(md_buf *buf, const void *data, size_t len)
{
    if (len == 0) {
        return MD_OK;
    }
    int rc = md_buf_reserve(buf, len);
    if (rc != MD_OK) {
        return rc;
    }
    memcpy(buf->data + buf->len, data, len);
    buf->len += len;
    return MD_OK;
}

void md_buf_consume(md_buf *buf, size_t n)
{
    if (n >= buf->len) {
        buf->len = 0;
        return;
    }
    memmove(buf->data, buf->data + n, buf->len - n);
    buf->len -= n;
}
