/*
 * The agents' wire format (agent/wire.h).
 *
 * First byte 0: the rest is a ranges body. wire_ranges_decode must not
 * crash; what it accepts is increasing, non-overlapping, aligned, inside the
 * limit, and encodes back to the same bytes.
 *
 * First byte 1: the rest is a chunk stream (after two bytes that seed the
 * piece sizes), fed to wire_reader_feed in pieces of random sizes and, to a
 * second reader, whole. Both must say the same (records handed on, result,
 * done); every record handed on is whole blocks inside the image, a data
 * record's bytes match its SHA-256 (that of its blocks' SHA-256s, which are
 * handed on and must be its blocks'), and a reader that failed takes
 * nothing more.
 *
 * Otherwise the rest describes records (data of a few blocks of one byte,
 * or zeroes); the target writes them with wire_data_header,
 * wire_zero_record and wire_end_record, perhaps flips one byte, and feeds
 * the stream in random pieces: unflipped, the reader hands on exactly those
 * records and is done; flipped, it never says the stream is complete. The
 * same holds for a consumer that gives the blocks' hashes in `begin` (as a
 * manifest would) and checks the data itself, as a transfer's target does.
 */
#include <errno.h>
#include <nettle/sha2.h>

#include "agent/wire.h"
#include "fuzz.h"

#define VSIZE (64u * WIRE_BLOCK) /* the image the streams are for */
#define MAX_RECORDS 16

struct rec {
        uint8_t type;
        uint64_t offset, length;
        uint8_t sha[32];
};

struct sink {
        struct rec recs[4096];
        size_t n;
};

static int on_data(void *ctx, uint64_t offset, const void *data, uint32_t length,
                   const uint8_t (*block_sha256)[32]) {
        struct sink *s = ctx;
        struct rec *r = &s->recs[s->n < 4096 ? s->n : 4095];

        FUZZ_CHECK(length > 0 && length <= WIRE_CHUNK_MAX && length % WIRE_BLOCK == 0);
        FUZZ_CHECK(offset % WIRE_BLOCK == 0 && offset <= VSIZE && length <= VSIZE - offset);
        r->type = WIRE_DATA, r->offset = offset, r->length = length;
        for (uint32_t at = 0; at < length; at += WIRE_BLOCK) {
                struct sha256_ctx c;
                uint8_t sha[32];
                sha256_init(&c);
                sha256_update(&c, WIRE_BLOCK, (const uint8_t *)data + at);
                sha256_digest(&c, 32, sha);
                FUZZ_CHECK(!memcmp(sha, block_sha256[at / WIRE_BLOCK], 32));
        }
        wire_chunk_sha256(data, length, NULL, r->sha);
        s->n++;
        return 0;
}

static int on_zero(void *ctx, uint64_t offset, uint64_t length) {
        struct sink *s = ctx;
        struct rec *r = &s->recs[s->n < 4096 ? s->n : 4095];

        FUZZ_CHECK(length > 0 && length % WIRE_BLOCK == 0);
        FUZZ_CHECK(offset % WIRE_BLOCK == 0 && offset <= VSIZE && length <= VSIZE - offset);
        r->type = WIRE_ZERO, r->offset = offset, r->length = length;
        memset(r->sha, 0, 32);
        s->n++;
        return 0;
}

static const struct wire_reader_ops ops = { .data = on_data, .zero = on_zero };

static bool recs_equal(const struct rec *a, const struct rec *b, size_t n) {
        for (size_t i = 0; i < n; i++)
                if (a[i].type != b[i].type || a[i].offset != b[i].offset ||
                    a[i].length != b[i].length || memcmp(a[i].sha, b[i].sha, 32))
                        return false;
        return true;
}

/* Feeds buf in pieces whose sizes come from a small generator seeded by `seed`. */
static int feed_pieces(struct wire_reader *r, const uint8_t *buf, size_t len, uint32_t seed,
                       struct sink *s) {
        int result = 0;

        while (len > 0) {
                size_t piece;
                int e;
                seed = seed * 1103515245u + 12345u;
                piece = (seed >> 16) % 4 == 0 ? (seed >> 8) % 8192 : (seed >> 16) % 64;
                piece = piece > len ? len : piece;
                e = wire_reader_feed(r, buf, piece, &ops, s);
                if (result < 0)
                        FUZZ_CHECK(e == result); /* a failed reader stays failed */
                else
                        result = e;
                buf += piece, len -= piece;
        }
        return result;
}

static void ranges(const uint8_t *data, size_t size) {
        struct wire_range *rs = NULL;
        size_t n = 0;
        uint64_t limit = 1ull << 40;

        if (wire_ranges_decode(data, size, limit, &rs, &n) != 0)
                return;
        FUZZ_CHECK(wire_ranges_size(n) == size);
        for (size_t i = 0; i < n; i++) {
                FUZZ_CHECK(rs[i].length > 0 && rs[i].offset % WIRE_BLOCK == 0 &&
                           rs[i].length % WIRE_BLOCK == 0);
                FUZZ_CHECK(rs[i].offset <= limit && rs[i].length <= limit - rs[i].offset);
                FUZZ_CHECK(i == 0 || rs[i].offset >= rs[i - 1].offset + rs[i - 1].length);
        }
        uint8_t *again = malloc(size);
        FUZZ_CHECK(again != NULL);
        wire_ranges_encode(rs, n, again);
        FUZZ_CHECK(!memcmp(again, data, size));
        free(again);
        free(rs);
}

static struct sink whole, pieces;

static void raw_stream(const uint8_t *data, size_t size) {
        struct wire_reader *a, *b;
        uint32_t seed = size >= 2 ? (uint32_t)data[0] << 8 | data[1] : 1;
        int ra, rb;

        data += size >= 2 ? 2 : size, size -= size >= 2 ? 2 : size;
        FUZZ_CHECK(wire_reader_new(VSIZE, &a) == 0 && wire_reader_new(VSIZE, &b) == 0);
        whole.n = pieces.n = 0;
        ra = wire_reader_feed(a, data, size, &ops, &whole);
        rb = feed_pieces(b, data, size, seed, &pieces);
        FUZZ_CHECK(ra == 0 || ra == -EBADMSG || ra == -EILSEQ);
        FUZZ_CHECK(ra == rb);
        FUZZ_CHECK(wire_reader_done(a) == wire_reader_done(b));
        FUZZ_CHECK(whole.n == pieces.n &&
                   recs_equal(whole.recs, pieces.recs, whole.n < 4096 ? whole.n : 4096));
        if (ra < 0)
                FUZZ_CHECK(wire_reader_feed(a, "\x02", 1, &ops, &whole) == ra);
        wire_reader_free(a);
        wire_reader_free(b);
}

/* A consumer that knows what each data record's blocks hash to: that of the records written. */
struct knower {
        const struct rec *want;
        uint8_t (*blocks)[4][32];
        size_t n, next;
        uint8_t buf[4 * WIRE_BLOCK];
        struct sink *sink;
};

static int on_begin(void *ctx, uint64_t offset, uint32_t length, uint8_t (*block_sha256)[32],
                    void **buf) {
        struct knower *k = ctx;

        while (k->next < k->n && k->want[k->next].type != WIRE_DATA)
                k->next++;
        if (k->next == k->n || k->want[k->next].offset != offset ||
            k->want[k->next].length != length)
                return -EILSEQ;
        memcpy(block_sha256, k->blocks[k->next], length / WIRE_BLOCK * 32);
        k->next++;
        *buf = k->buf;
        return 0;
}

static int on_known_data(void *ctx, uint64_t offset, const void *data, uint32_t length,
                         const uint8_t (*block_sha256)[32]) {
        struct knower *k = ctx;
        uint8_t blocks[4][32], sha[32];

        FUZZ_CHECK(data == k->buf && length <= sizeof(k->buf));
        wire_chunk_sha256(data, length, blocks, sha);
        if (memcmp(blocks, block_sha256, length / WIRE_BLOCK * 32))
                return -EILSEQ;
        return on_data(k->sink, offset, data, length, block_sha256);
}

static int on_known_zero(void *ctx, uint64_t offset, uint64_t length) {
        struct knower *k = ctx;
        return on_zero(k->sink, offset, length);
}

static const struct wire_reader_ops known_ops = { .data = on_known_data,
                                                  .zero = on_known_zero,
                                                  .begin = on_begin };

/* feed_pieces, to the consumer that knows the hashes. */
static int feed_known(struct wire_reader *r, const uint8_t *buf, size_t len, uint32_t seed,
                      struct knower *k) {
        int result = 0;

        while (len > 0) {
                size_t piece;
                int e;
                seed = seed * 1103515245u + 12345u;
                piece = (seed >> 16) % 4 == 0 ? (seed >> 8) % 8192 : (seed >> 16) % 64;
                piece = piece > len ? len : piece;
                e = wire_reader_feed(r, buf, piece, &known_ops, k);
                if (result < 0)
                        FUZZ_CHECK(e == result);
                else
                        result = e;
                buf += piece, len -= piece;
        }
        return result;
}

static void written_stream(const uint8_t *data, size_t size) {
        static uint8_t
                stream[MAX_RECORDS * (WIRE_DATA_HEADER_SIZE + 4 * WIRE_BLOCK) + WIRE_END_SIZE];
        struct fuzz_bytes b = { data, size };
        struct rec want[MAX_RECORDS];
        uint8_t blocks[MAX_RECORDS][4][32];
        struct knower k = { want, blocks, 0, 0, { 0 }, &pieces };
        size_t n = fuzz_range(&b, 0, MAX_RECORDS), len = 0;
        struct wire_digest *d = wire_digest_new();
        struct wire_reader *r;
        uint8_t sha[32];
        uint32_t seed = fuzz_u32(&b);
        uint8_t flip = fuzz_u8(&b);
        size_t flip_at = fuzz_u32(&b);
        int e;

        FUZZ_CHECK(d != NULL);
        for (size_t i = 0; i < n; i++) {
                struct rec *w = &want[i];
                w->type = fuzz_u8(&b) & 1 ? WIRE_ZERO : WIRE_DATA;
                w->length = fuzz_range(&b, 1, 4) * WIRE_BLOCK;
                w->offset = fuzz_range(&b, 0, VSIZE / WIRE_BLOCK - 4) * (uint64_t)WIRE_BLOCK;
                if (w->type == WIRE_DATA) {
                        uint8_t *payload = stream + len + WIRE_DATA_HEADER_SIZE;
                        memset(payload, fuzz_u8(&b), w->length);
                        wire_chunk_sha256(payload, (uint32_t)w->length, blocks[i], w->sha);
                        wire_data_header(stream + len, w->offset, (uint32_t)w->length, w->sha);
                        wire_digest_add(d, stream + len, WIRE_DATA_HEADER_SIZE);
                        len += WIRE_DATA_HEADER_SIZE + w->length;
                } else {
                        memset(w->sha, 0, 32);
                        wire_zero_record(stream + len, w->offset, w->length);
                        wire_digest_add(d, stream + len, WIRE_ZERO_SIZE);
                        len += WIRE_ZERO_SIZE;
                }
        }
        wire_digest_final(d, sha);
        wire_digest_free(d);
        wire_end_record(stream + len, n, sha);
        len += WIRE_END_SIZE;
        if (flip)
                stream[flip_at % len] ^= flip;

        FUZZ_CHECK(wire_reader_new(VSIZE, &r) == 0);
        pieces.n = 0;
        e = feed_pieces(r, stream, len, seed, &pieces);
        if (!flip) {
                FUZZ_CHECK(e == 0 && wire_reader_done(r));
                FUZZ_CHECK(pieces.n == n && recs_equal(pieces.recs, want, n));
        } else {
                /* Any flipped byte is caught: by a header check, a data record's
                 * SHA-256 or the end record's count and digest of the headers. */
                FUZZ_CHECK(e < 0 || !wire_reader_done(r));
        }
        wire_reader_free(r);

        /* Again, to a consumer that gives the hashes and checks the data itself. */
        FUZZ_CHECK(wire_reader_new(VSIZE, &r) == 0);
        pieces.n = 0;
        k.n = n;
        e = feed_known(r, stream, len, seed, &k);
        if (!flip) {
                FUZZ_CHECK(e == 0 && wire_reader_done(r));
                FUZZ_CHECK(pieces.n == n && recs_equal(pieces.recs, want, n));
        } else {
                FUZZ_CHECK(e < 0 || !wire_reader_done(r));
        }
        wire_reader_free(r);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        if (size < 1)
                return 0;
        switch (data[0] % 3) {
        case 0:
                ranges(data + 1, size - 1);
                break;
        case 1:
                raw_stream(data + 1, size - 1);
                break;
        default:
                written_stream(data + 1, size - 1);
                break;
        }
        return 0;
}
