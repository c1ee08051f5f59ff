/* The clocks as numbers: clock_gettime read once, scaled. */
#include "base/clock.h"

#include <time.h>

static struct timespec read_clock(clockid_t id) {
        struct timespec ts;
        clock_gettime(id, &ts); /* cannot fail for these two clocks */
        return ts;
}

int64_t clock_mono_us(void) {
        struct timespec ts = read_clock(CLOCK_MONOTONIC);
        return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

int64_t clock_mono_ms(void) {
        struct timespec ts = read_clock(CLOCK_MONOTONIC);
        return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

double clock_mono_s(void) {
        struct timespec ts = read_clock(CLOCK_MONOTONIC);
        return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int64_t clock_wall_ms(void) {
        struct timespec ts = read_clock(CLOCK_REALTIME);
        return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}
