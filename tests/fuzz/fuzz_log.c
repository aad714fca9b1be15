/* libFuzzer target: md_log_parse iterated over a log file's bytes. */
#include "mdcore.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t pos = 0;
    md_error err;
    for (;;) {
        const uint8_t *record = NULL;
        size_t record_len = 0, consumed = 0;
        int rc = md_log_parse(data + pos, size - pos, &record, &record_len, &consumed, &err);
        if (rc != 1) {
            break;
        }
        if (consumed != record_len + 8 || consumed > size - pos || record != data + pos + 8) {
            __builtin_trap();
        }
        pos += consumed;
    }
    return 0;
}
