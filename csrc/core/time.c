/* Clocks: wall time for timestamps people read, monotonic for durations. */
#include <time.h>

#include "mdcore.h"

static double clock_seconds(clockid_t clock)
{
    struct timespec ts;
    /* These clocks cannot fail on Linux with a valid timespec; 0 is the
     * documented "unknown" value elsewhere in the formats. */
    if (clock_gettime(clock, &ts) != 0) {
        return 0.0;
    }
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

double md_wall_time(void)
{
    return clock_seconds(CLOCK_REALTIME);
}

double md_monotonic_time(void)
{
    return clock_seconds(CLOCK_MONOTONIC);
}
