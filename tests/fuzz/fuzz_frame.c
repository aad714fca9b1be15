/* libFuzzer target: md_frame_parse iterated over a byte stream. */
#include "mdcore.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* The first byte picks the limit so both sides of it get exercised. */
    size_t max_len = size > 0 ? (size_t)data[0] * 64u : 0;
    size_t pos = size > 0 ? 1 : 0;
    md_error err;
    for (;;) {
        const uint8_t *frame = NULL;
        size_t frame_len = 0, consumed = 0;
        int rc = md_frame_parse(data + pos, size - pos, max_len, &frame, &frame_len, &consumed, &err);
        if (rc != 1) {
            break;
        }
        if (consumed != frame_len + 4 || consumed > size - pos || frame != data + pos + 4) {
            __builtin_trap();
        }
        pos += consumed;
    }
    return 0;
}
