/*
 * fuzz.h — what the libFuzzer targets of tests/fuzz share: a property check
 * that stops the run (the fuzzer saves the input), and a reader that takes
 * typed values from the fuzzer's bytes for the targets that build their own
 * inputs (like LLVM's FuzzedDataProvider, in C).
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

/* A property that must hold for every input: abort (a crash to the fuzzer). */
#define FUZZ_CHECK(cond)                                                                    \
        do {                                                                                \
                if (!(cond)) {                                                              \
                        fprintf(stderr, "%s:%d: property failed: %s\n", __FILE__, __LINE__, \
                                #cond);                                                     \
                        abort();                                                            \
                }                                                                           \
        } while (0)

/* The fuzzer's bytes as a NUL-terminated string (malloc'd; aborts when out of memory). */
static inline char *fuzz_strndup(const uint8_t *data, size_t size) {
        char *s = malloc(size + 1);
        if (!s)
                abort();
        memcpy(s, data, size);
        s[size] = '\0';
        return s;
}

/* Typed values from the bytes, front to back; zeroes once they run out. */
struct fuzz_bytes {
        const uint8_t *p;
        size_t left;
};

static inline uint8_t fuzz_u8(struct fuzz_bytes *b) {
        if (!b->left)
                return 0;
        b->left--;
        return *b->p++;
}

static inline uint32_t fuzz_u32(struct fuzz_bytes *b) {
        uint32_t v = 0;
        for (int i = 0; i < 4; i++)
                v = v << 8 | fuzz_u8(b);
        return v;
}

static inline uint64_t fuzz_u64(struct fuzz_bytes *b) {
        return (uint64_t)fuzz_u32(b) << 32 | fuzz_u32(b);
}

/* A value in [lo, hi]. */
static inline uint32_t fuzz_range(struct fuzz_bytes *b, uint32_t lo, uint32_t hi) {
        uint32_t span = hi - lo + 1, v = hi - lo < 256 ? fuzz_u8(b) : fuzz_u32(b);
        return span ? lo + v % span : v;
}

/* A fraction in [0, 1]. */
static inline double fuzz_unit(struct fuzz_bytes *b) {
        return (double)fuzz_u32(b) / 4294967295.0;
}
