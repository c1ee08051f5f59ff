/*
 * clock — the two clocks homing reads: the monotonic one for durations and
 * deadlines (it never jumps), the wall clock for what is stored or shown.
 */
#pragma once

#include <stdint.h>

/* The monotonic clock, in microseconds, milliseconds and seconds. */
int64_t clock_mono_us(void);
int64_t clock_mono_ms(void);
double clock_mono_s(void);

/* The wall clock: milliseconds since the Unix epoch, UTC. */
int64_t clock_wall_ms(void);
