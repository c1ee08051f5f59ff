/*
 * The agents' wire format. Everything is little-endian and fixed-size
 * except a data record's payload, which the reader buffers whole (at most
 * WIRE_CHUNK_MAX) so that its SHA-256 is checked before anyone writes it.
 * The end record counts the records and digests their headers, so a stream
 * cut short or spliced is told from a complete one.
 */
#include "agent/wire.h"

#include <errno.h>
#include <nettle/sha2.h>
#include <stdlib.h>
#include <string.h>

static void put_u32(uint8_t *p, uint32_t v) {
        for (int i = 0; i < 4; i++)
                p[i] = (uint8_t)(v >> (8 * i));
}

static void put_u64(uint8_t *p, uint64_t v) {
        for (int i = 0; i < 8; i++)
                p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t get_u32(const uint8_t *p) {
        uint32_t v = 0;
        for (int i = 3; i >= 0; i--)
                v = v << 8 | p[i];
        return v;
}

static uint64_t get_u64(const uint8_t *p) {
        uint64_t v = 0;
        for (int i = 7; i >= 0; i--)
                v = v << 8 | p[i];
        return v;
}

/* ---- ranges ---- */

size_t wire_ranges_size(size_t n) {
        return 4 + 16 * n;
}

void wire_ranges_encode(const struct wire_range *ranges, size_t n, uint8_t *out) {
        put_u32(out, (uint32_t)n);
        for (size_t i = 0; i < n; i++) {
                put_u64(out + 4 + 16 * i, ranges[i].offset);
                put_u64(out + 12 + 16 * i, ranges[i].length);
        }
}

int wire_ranges_decode(const void *buf, size_t len, uint64_t limit, struct wire_range **out,
                       size_t *n) {
        const uint8_t *p = buf;
        struct wire_range *ranges;
        uint64_t end = 0;
        uint32_t count;

        if (len < 4)
                return -EBADMSG;
        count = get_u32(p);
        if (count > WIRE_RANGES_MAX || len != wire_ranges_size(count))
                return -EBADMSG;
        ranges = calloc(count ? count : 1, sizeof(*ranges));
        if (!ranges)
                return -ENOMEM;
        for (uint32_t i = 0; i < count; i++) {
                uint64_t off = get_u64(p + 4 + 16 * (size_t)i),
                         length = get_u64(p + 12 + 16 * (size_t)i);
                if (length == 0 || off % WIRE_BLOCK || length % WIRE_BLOCK || off < end ||
                    off > limit || length > limit - off) {
                        free(ranges);
                        return -EBADMSG;
                }
                ranges[i] = (struct wire_range){ off, length };
                end = off + length;
        }
        *out = ranges;
        *n = count;
        return 0;
}

/* ---- records: writing ---- */

void wire_data_header(uint8_t out[WIRE_DATA_HEADER_SIZE], uint64_t offset, uint32_t length,
                      const uint8_t sha256[32]) {
        out[0] = WIRE_DATA;
        put_u64(out + 1, offset);
        put_u32(out + 9, length);
        memcpy(out + 13, sha256, 32);
}

void wire_zero_record(uint8_t out[WIRE_ZERO_SIZE], uint64_t offset, uint64_t length) {
        out[0] = WIRE_ZERO;
        put_u64(out + 1, offset);
        put_u64(out + 9, length);
}

void wire_end_record(uint8_t out[WIRE_END_SIZE], uint64_t records, const uint8_t sha256[32]) {
        out[0] = WIRE_END;
        put_u64(out + 1, records);
        memcpy(out + 9, sha256, 32);
}

void wire_chunk_sha256(const void *data, uint32_t length, uint8_t (*blocks)[32], uint8_t out[32]) {
        struct sha256_ctx all, one;
        uint8_t sha[32];

        sha256_init(&all);
        for (uint32_t at = 0; at < length; at += WIRE_BLOCK) {
                sha256_init(&one);
                sha256_update(&one, WIRE_BLOCK, (const uint8_t *)data + at);
                sha256_digest(&one, 32, blocks ? blocks[at / WIRE_BLOCK] : sha);
                sha256_update(&all, 32, blocks ? blocks[at / WIRE_BLOCK] : sha);
        }
        sha256_digest(&all, 32, out);
}

void wire_chunk_sha256_of(const uint8_t (*blocks)[32], size_t n, uint8_t out[32]) {
        struct sha256_ctx all;
        sha256_init(&all);
        sha256_update(&all, 32 * n, (const uint8_t *)blocks);
        sha256_digest(&all, 32, out);
}

struct wire_digest {
        struct sha256_ctx sha;
};

struct wire_digest *wire_digest_new(void) {
        struct wire_digest *d = malloc(sizeof(*d));
        if (d)
                sha256_init(&d->sha);
        return d;
}

struct wire_digest *wire_digest_free(struct wire_digest *d) {
        free(d);
        return NULL;
}

void wire_digest_add(struct wire_digest *d, const void *header, size_t len) {
        sha256_update(&d->sha, len, header);
}

void wire_digest_final(struct wire_digest *d, uint8_t out[32]) {
        sha256_digest(&d->sha, 32, out);
}

/* ---- records: reading ---- */

struct wire_reader {
        uint64_t virtual_size;
        uint8_t header[WIRE_DATA_HEADER_SIZE]; /* the largest fixed part */
        size_t have;                           /* bytes of the current record so far */
        uint8_t *payload;                      /* a data record's, WIRE_CHUNK_MAX */
        uint8_t *into;                         /* where it goes: payload or begin's */
        uint8_t (*blocks)[32];                 /* its blocks' SHA-256s */
        uint64_t records;
        struct wire_digest digest;
        struct wire_range bad;
        int error;
        bool done;
};

int wire_reader_new(uint64_t virtual_size, struct wire_reader **out) {
        struct wire_reader *r = calloc(1, sizeof(*r));
        if (!r || !(r->payload = malloc(WIRE_CHUNK_MAX)) ||
            !(r->blocks = malloc(WIRE_CHUNK_MAX / WIRE_BLOCK * sizeof(*r->blocks)))) {
                if (r)
                        free(r->payload);
                free(r);
                return -ENOMEM;
        }
        r->virtual_size = virtual_size;
        sha256_init(&r->digest.sha);
        *out = r;
        return 0;
}

struct wire_reader *wire_reader_free(struct wire_reader *r) {
        if (r) {
                free(r->payload);
                free(r->blocks);
        }
        free(r);
        return NULL;
}

bool wire_reader_done(const struct wire_reader *r) {
        return r->done;
}

struct wire_range wire_reader_bad(const struct wire_reader *r) {
        return r->bad;
}

/* The fixed size of a record of this type, 0 for an unknown type. */
static size_t fixed_size(uint8_t type) {
        switch (type) {
        case WIRE_DATA:
                return WIRE_DATA_HEADER_SIZE;
        case WIRE_ZERO:
                return WIRE_ZERO_SIZE;
        case WIRE_END:
                return WIRE_END_SIZE;
        default:
                return 0;
        }
}

/* A record's extent must be whole blocks inside the image. */
static bool extent_valid(const struct wire_reader *r, uint64_t off, uint64_t len) {
        return len > 0 && off % WIRE_BLOCK == 0 && len % WIRE_BLOCK == 0 &&
               off <= r->virtual_size && len <= r->virtual_size - off;
}

/* The header is complete: check it. Returns 0 or -EBADMSG. */
static int header_done(struct wire_reader *r) {
        switch (r->header[0]) {
        case WIRE_DATA: {
                uint32_t len = get_u32(r->header + 9);
                if (len > WIRE_CHUNK_MAX || !extent_valid(r, get_u64(r->header + 1), len))
                        return -EBADMSG;
                return 0;
        }
        case WIRE_ZERO:
                return extent_valid(r, get_u64(r->header + 1), get_u64(r->header + 9)) ? 0
                                                                                       : -EBADMSG;
        default:
                return 0;
        }
}

static int record_done(struct wire_reader *r, const struct wire_reader_ops *ops, void *ctx) {
        uint8_t type = r->header[0];
        int e = 0;

        if (type == WIRE_END) {
                uint8_t sha[32];
                struct sha256_ctx copy = r->digest.sha;
                sha256_digest(&copy, 32, sha);
                if (get_u64(r->header + 1) != r->records || memcmp(sha, r->header + 9, 32) != 0)
                        return -EBADMSG;
                r->done = true;
                return 0;
        }
        sha256_update(&r->digest.sha, fixed_size(type), r->header);
        r->records++;
        if (type == WIRE_ZERO) {
                e = ops->zero(ctx, get_u64(r->header + 1), get_u64(r->header + 9));
                if (e == -EILSEQ)
                        r->bad = (struct wire_range){ get_u64(r->header + 1),
                                                      get_u64(r->header + 9) };
                return e;
        }

        {
                uint64_t off = get_u64(r->header + 1);
                uint32_t len = get_u32(r->header + 9);
                uint8_t sha[32];
                /* With begin, the blocks' hashes are the consumer's, who checks the data. */
                if (ops->begin)
                        wire_chunk_sha256_of((const uint8_t(*)[32])r->blocks, len / WIRE_BLOCK,
                                             sha);
                else
                        wire_chunk_sha256(r->into, len, r->blocks, sha);
                if (memcmp(sha, r->header + 13, 32) != 0)
                        e = -EILSEQ;
                else
                        e = ops->data(ctx, off, r->into, len, (const uint8_t(*)[32])r->blocks);
                if (e == -EILSEQ)
                        r->bad = (struct wire_range){ off, len };
        }
        return e;
}

/* A data record's header is read: where its payload goes. */
static int begin(struct wire_reader *r, const struct wire_reader_ops *ops, void *ctx) {
        uint64_t off = get_u64(r->header + 1);
        uint32_t len = get_u32(r->header + 9);
        void *buf = NULL;
        int e;

        r->into = r->payload;
        if (!ops->begin)
                return 0;
        e = ops->begin(ctx, off, len, r->blocks, &buf);
        if (e == -EILSEQ)
                r->bad = (struct wire_range){ off, len };
        if (e == 0)
                r->into = buf;
        return e;
}

int wire_reader_feed(struct wire_reader *r, const void *buf, size_t len,
                     const struct wire_reader_ops *ops, void *ctx) {
        const uint8_t *p = buf;

        if (r->error)
                return r->error;
        while (len > 0) {
                size_t fixed, want, take;
                if (r->done)
                        return r->error = -EBADMSG;
                if (r->have == 0 && !fixed_size(p[0]))
                        return r->error = -EBADMSG;
                fixed = fixed_size(r->have ? r->header[0] : p[0]);
                if (r->have < fixed) {
                        take = fixed - r->have < len ? fixed - r->have : len;
                        memcpy(r->header + r->have, p, take);
                        r->have += take, p += take, len -= take;
                        if (r->have < fixed)
                                break;
                        if (header_done(r) < 0)
                                return r->error = -EBADMSG;
                        if (r->header[0] == WIRE_DATA) {
                                int e = begin(r, ops, ctx);
                                if (e < 0)
                                        return r->error = e;
                        }
                }
                want = fixed + (r->header[0] == WIRE_DATA ? get_u32(r->header + 9) : 0);
                if (r->have < want) {
                        take = want - r->have < len ? want - r->have : len;
                        memcpy(r->into + (r->have - fixed), p, take);
                        r->have += take, p += take, len -= take;
                        if (r->have < want)
                                break;
                }
                r->have = 0;
                int e = record_done(r, ops, ctx);
                if (e < 0)
                        return r->error = e;
        }
        return 0;
}
