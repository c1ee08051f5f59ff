/*
 * hash — FNV-1a (64 bits) over a string: cheap, well spread over short ids,
 * and the same on every machine and run, so what it samples or places is
 * reproducible. Not for anything an adversary chooses to collide.
 */
#pragma once

#include <stddef.h>
#include <stdint.h>

/* The FNV-1a hash of a NUL-terminated string. */
uint64_t hash_fnv1a(const char *s);

/* The same over `len` bytes. */
uint64_t hash_fnv1a_bytes(const void *data, size_t len);

/* A hash as a fraction in [0, 1): its top 53 bits over 2^53. */
double hash_unit(uint64_t h);
