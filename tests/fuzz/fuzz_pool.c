/* libFuzzer target: md_pool_request_parse, the parser of what a client
 * sends to a warm pool's socket.  Only processes of the pool's own user get
 * that far (SO_PEERCRED), but they are not otherwise trusted.  The input is
 * fed in every prefix length, as a socket may deliver it. */
#include <string.h>

#include "mdcore.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int complete_at = -1;
    for (size_t len = 0; len <= size; len++) {
        md_pool_request request;
        md_error err;
        int rc = md_pool_request_parse(data, len, &request, &err);
        if (rc < 0) {
            return 0;  /* refused: so is every longer input, which is not tried */
        }
        if (rc == 1) {
            if (request.op == MD_POOL_RUN) {
                const char *end = data != NULL ? (const char *)data + len : NULL;
                if (request.path.len == 0 || request.path.len >= MD_PATH_MAX ||
                    request.path.ptr < (const char *)data ||
                    request.path.ptr + request.path.len > end || request.path.ptr[0] != '/' ||
                    memchr(request.path.ptr, '\0', request.path.len) != NULL) {
                    __builtin_trap();
                }
            } else if (request.op != MD_POOL_STOP) {
                __builtin_trap();
            }
            if (complete_at < 0) {
                complete_at = (int)len;
            }
        } else if (complete_at >= 0) {
            __builtin_trap();  /* more bytes cannot make a whole request incomplete */
        }
    }
    return 0;
}
