/*
 * clock: the monotonic readings never go back and agree with each other
 * across units; the wall clock is the epoch's milliseconds, as time() has it.
 */
#include <time.h>

#include "base/clock.h"
#include "tap.h"

TEST(monotonic_readings_never_go_back) {
        int64_t us = clock_mono_us(), ms = clock_mono_ms();
        double s = clock_mono_s();
        struct timespec pause = { 0, 2000000 };

        nanosleep(&pause, NULL);
        CHECK(clock_mono_us() >= us + 2000);
        CHECK(clock_mono_ms() >= ms + 2);
        CHECK(clock_mono_s() >= s + 0.002);
}

TEST(the_units_agree) {
        int64_t us = clock_mono_us(), ms = clock_mono_ms();
        double s = clock_mono_s();

        /* Read one after the other: within a second of each other, and in order. */
        CHECK(ms >= us / 1000 && ms - us / 1000 < 1000);
        CHECK(s >= (double)ms / 1000 - 0.001 && s - (double)ms / 1000 < 1.0);
}

TEST(the_wall_clock_is_milliseconds_since_the_epoch) {
        time_t before = time(NULL);
        int64_t ms = clock_wall_ms();
        time_t after = time(NULL);

        CHECK(ms / 1000 >= (int64_t)before && ms / 1000 <= (int64_t)after);
}

TAP_MAIN(TAP_TEST(monotonic_readings_never_go_back), TAP_TEST(the_units_agree),
         TAP_TEST(the_wall_clock_is_milliseconds_since_the_epoch))
