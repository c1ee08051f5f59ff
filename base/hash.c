/* FNV-1a, 64-bit: xor in each byte, multiply by the FNV prime. */
#include "base/hash.h"

#define FNV_OFFSET_BASIS 14695981039346656037ULL
#define FNV_PRIME 1099511628211ULL

uint64_t hash_fnv1a(const char *s) {
        uint64_t h = FNV_OFFSET_BASIS;
        for (; *s; s++)
                h = (h ^ (unsigned char)*s) * FNV_PRIME;
        return h;
}

uint64_t hash_fnv1a_bytes(const void *data, size_t len) {
        const unsigned char *p = data;
        uint64_t h = FNV_OFFSET_BASIS;
        for (size_t i = 0; i < len; i++)
                h = (h ^ p[i]) * FNV_PRIME;
        return h;
}

double hash_unit(uint64_t h) {
        return (double)(h >> 11) / 9007199254740992.0;
}
