/* The agents' wire format: ranges and chunk streams, whole and in pieces. */
#include <errno.h>
#include <nettle/sha2.h>
#include <stdlib.h>

#include "agent/wire.h"
#include "tap.h"

#define MIB (1024u * 1024u)

struct sink {
        uint64_t data_bytes, zero_bytes, last_offset;
        unsigned records;
        uint8_t first_byte;
        uint8_t last_block_sha[32];
        bool refuse; /* answer data records with -EILSEQ */
};

static int on_data(void *ctx, uint64_t offset, const void *data, uint32_t length,
                   const uint8_t (*block_sha256)[32]) {
        struct sink *s = ctx;
        if (s->refuse)
                return -EILSEQ;
        memcpy(s->last_block_sha, block_sha256[length / 4096 - 1], 32);
        s->data_bytes += length;
        s->last_offset = offset;
        s->first_byte = ((const uint8_t *)data)[0];
        s->records++;
        return 0;
}

static int on_zero(void *ctx, uint64_t offset, uint64_t length) {
        struct sink *s = ctx;
        s->zero_bytes += length;
        s->last_offset = offset;
        s->records++;
        return 0;
}

static const struct wire_reader_ops ops = { .data = on_data, .zero = on_zero };

/* A stream: one data record of `len` bytes of `fill` at 4096, a zero record, the end. */
static size_t build(uint8_t *out, uint32_t len, uint8_t fill, bool corrupt) {
        uint8_t sha[32], *p = out;
        struct wire_digest *d = wire_digest_new();

        memset(p + WIRE_DATA_HEADER_SIZE, fill, len);
        wire_chunk_sha256(p + WIRE_DATA_HEADER_SIZE, len, NULL, sha);
        wire_data_header(p, 4096, len, sha);
        wire_digest_add(d, p, WIRE_DATA_HEADER_SIZE);
        if (corrupt)
                p[WIRE_DATA_HEADER_SIZE + 17] ^= 1;
        p += WIRE_DATA_HEADER_SIZE + len;
        wire_zero_record(p, 2 * MIB, 8192);
        wire_digest_add(d, p, WIRE_ZERO_SIZE);
        p += WIRE_ZERO_SIZE;
        wire_digest_final(d, sha);
        wire_end_record(p, 2, sha);
        p += WIRE_END_SIZE;
        wire_digest_free(d);
        return (size_t)(p - out);
}

TEST(ranges_round_trip_and_bad_ones_are_refused) {
        struct wire_range in[3] = { { 0, 4096 }, { 8192, 65536 }, { MIB, MIB } }, *out = NULL;
        uint8_t buf[64];
        size_t n = 0;

        wire_ranges_encode(in, 3, buf);
        CHECK(wire_ranges_decode(buf, wire_ranges_size(3), 4 * MIB, &out, &n) == 0);
        CHECK(n == 3 && out[1].offset == 8192 && out[2].length == MIB);
        free(out);
        /* beyond the image, truncated, unaligned, overlapping */
        CHECK(wire_ranges_decode(buf, wire_ranges_size(3), MIB, &out, &n) == -EBADMSG);
        CHECK(wire_ranges_decode(buf, wire_ranges_size(3) - 1, 4 * MIB, &out, &n) == -EBADMSG);
        in[1].offset = 8193;
        wire_ranges_encode(in, 3, buf);
        CHECK(wire_ranges_decode(buf, wire_ranges_size(3), 4 * MIB, &out, &n) == -EBADMSG);
        in[1] = (struct wire_range){ 0, 4096 };
        wire_ranges_encode(in, 3, buf);
        CHECK(wire_ranges_decode(buf, wire_ranges_size(3), 4 * MIB, &out, &n) == -EBADMSG);
        /* a count that does not fit the length */
        buf[0] = 0xff;
        CHECK(wire_ranges_decode(buf, wire_ranges_size(3), 4 * MIB, &out, &n) == -EBADMSG);
}

TEST(a_stream_read_whole_or_byte_by_byte_gives_the_same_records) {
        static uint8_t stream[MIB + 200];
        size_t len = build(stream, 65536, 0xab, false);
        struct wire_reader *r = NULL;
        struct sink whole = { 0 }, bytes = { 0 };

        CHECK(wire_reader_new(4 * MIB, &r) == 0);
        CHECK(wire_reader_feed(r, stream, len, &ops, &whole) == 0);
        CHECK(wire_reader_done(r));
        r = wire_reader_free(r);
        CHECK(whole.records == 2 && whole.data_bytes == 65536 && whole.zero_bytes == 8192);
        CHECK(whole.first_byte == 0xab);

        CHECK(wire_reader_new(4 * MIB, &r) == 0);
        for (size_t i = 0; i < len; i++)
                CHECK(wire_reader_feed(r, stream + i, 1, &ops, &bytes) == 0);
        CHECK(wire_reader_done(r));
        CHECK(bytes.records == whole.records && bytes.data_bytes == whole.data_bytes);
        /* nothing may follow the end */
        CHECK(wire_reader_feed(r, stream, 1, &ops, &bytes) == -EBADMSG);
        wire_reader_free(r);
}

TEST(a_flipped_byte_is_caught_before_the_data_is_handed_on) {
        static uint8_t stream[MIB + 200];
        size_t len = build(stream, 65536, 0x11, true);
        struct wire_reader *r = NULL;
        struct sink s = { 0 };

        CHECK(wire_reader_new(4 * MIB, &r) == 0);
        CHECK(wire_reader_feed(r, stream, len, &ops, &s) == -EILSEQ);
        CHECK(s.data_bytes == 0);
        CHECK(wire_reader_bad(r).offset == 4096 && wire_reader_bad(r).length == 65536);
        CHECK(!wire_reader_done(r));
        wire_reader_free(r);
}

TEST(a_chunk_hash_is_that_of_its_blocks_hashes_which_the_reader_hands_on) {
        static uint8_t data[3 * 4096], stream[MIB];
        uint8_t blocks[3][32], sha[32], one[32];
        struct sha256_ctx c;
        struct wire_reader *r = NULL;
        struct sink s = { 0 };
        size_t len;

        for (size_t i = 0; i < sizeof(data); i++)
                data[i] = (uint8_t)(i * 7 / 4096 + i);
        wire_chunk_sha256(data, sizeof(data), blocks, sha);
        sha256_init(&c);
        sha256_update(&c, 4096, data + 2 * 4096);
        sha256_digest(&c, 32, one);
        CHECK(!memcmp(one, blocks[2], 32));
        sha256_init(&c);
        sha256_update(&c, sizeof(blocks), (const uint8_t *)blocks);
        sha256_digest(&c, 32, one);
        CHECK(!memcmp(one, sha, 32));

        len = build(stream, 8192, 0x5a, false);
        CHECK(wire_reader_new(4 * MIB, &r) == 0);
        CHECK(wire_reader_feed(r, stream, len, &ops, &s) == 0);
        memset(data, 0x5a, 4096);
        sha256_init(&c);
        sha256_update(&c, 4096, data);
        sha256_digest(&c, 32, one);
        CHECK(!memcmp(one, s.last_block_sha, 32));
        wire_reader_free(r);

        /* a receiver that finds a block is not what it wants names the record */
        s = (struct sink){ .refuse = true };
        CHECK(wire_reader_new(4 * MIB, &r) == 0);
        CHECK(wire_reader_feed(r, stream, len, &ops, &s) == -EILSEQ);
        CHECK(wire_reader_bad(r).offset == 4096 && wire_reader_bad(r).length == 8192);
        wire_reader_free(r);
}

TEST(a_cut_or_spliced_stream_is_not_complete) {
        static uint8_t stream[MIB + 200];
        size_t len = build(stream, 4096, 0x22, false);
        struct wire_reader *r = NULL;
        struct sink s = { 0 };

        CHECK(wire_reader_new(4 * MIB, &r) == 0);
        CHECK(wire_reader_feed(r, stream, len - 1, &ops, &s) == 0);
        CHECK(!wire_reader_done(r));
        wire_reader_free(r);

        /* the end record's count says three where two came */
        stream[len - WIRE_END_SIZE + 1] = 3;
        CHECK(wire_reader_new(4 * MIB, &r) == 0);
        CHECK(wire_reader_feed(r, stream, len, &ops, &s) == -EBADMSG);
        wire_reader_free(r);
}

TEST(records_outside_the_image_or_oversized_are_refused) {
        uint8_t rec[WIRE_DATA_HEADER_SIZE], sha[32] = { 0 };
        struct wire_reader *r = NULL;
        struct sink s = { 0 };

        wire_zero_record(rec, 4 * MIB, 4096);
        CHECK(wire_reader_new(4 * MIB, &r) == 0);
        CHECK(wire_reader_feed(r, rec, WIRE_ZERO_SIZE, &ops, &s) == -EBADMSG);
        wire_reader_free(r);

        wire_data_header(rec, 0, WIRE_CHUNK_MAX + 4096, sha);
        CHECK(wire_reader_new(64 * MIB, &r) == 0);
        CHECK(wire_reader_feed(r, rec, WIRE_DATA_HEADER_SIZE, &ops, &s) == -EBADMSG);
        wire_reader_free(r);

        rec[0] = 9;
        CHECK(wire_reader_new(64 * MIB, &r) == 0);
        CHECK(wire_reader_feed(r, rec, 1, &ops, &s) == -EBADMSG);
        wire_reader_free(r);
}

/* A consumer that knows the blocks' hashes: each block of `fill`, received into `into`. */
struct expect {
        uint8_t fill;
        uint8_t into[MIB];
        const void *handed;
        unsigned begun, data;
};

static int on_begin(void *ctx, uint64_t offset, uint32_t length, uint8_t (*block_sha256)[32],
                    void **buf) {
        struct expect *e = ctx;
        uint8_t block[4096];

        memset(block, e->fill, sizeof(block));
        for (uint32_t i = 0; i < length / 4096; i++)
                wire_chunk_sha256(block, sizeof(block), &block_sha256[i], (uint8_t[32]){ 0 });
        *buf = e->into;
        e->begun++;
        return 0;
}

static int on_expected_data(void *ctx, uint64_t offset, const void *data, uint32_t length,
                            const uint8_t (*block_sha256)[32]) {
        struct expect *e = ctx;
        e->handed = data;
        e->data++;
        return 0;
}

static int on_any_zero(void *ctx, uint64_t offset, uint64_t length) {
        return 0;
}

static const struct wire_reader_ops expect_ops = { .data = on_expected_data,
                                                   .zero = on_any_zero,
                                                   .begin = on_begin };

TEST(with_begin_the_payload_lands_in_the_consumers_buffer_checked_against_its_hashes) {
        static uint8_t stream[2 * MIB];
        static struct expect e;
        struct wire_reader *r;
        size_t len = build(stream, 65536, 0x5a, false);

        /* The right hashes: the data is handed on where begin put it. */
        e = (struct expect){ .fill = 0x5a };
        CHECK(wire_reader_new(4 * MIB, &r) == 0);
        for (size_t i = 0; i < len; i += 1000)
                CHECK(wire_reader_feed(r, stream + i, len - i < 1000 ? len - i : 1000, &expect_ops,
                                       &e) == 0);
        CHECK(wire_reader_done(r) && e.begun == 1 && e.data == 1 && e.handed == e.into);
        CHECK(e.into[0] == 0x5a && e.into[65535] == 0x5a);
        wire_reader_free(r);

        /* The record's SHA-256 is not that of the consumer's hashes: refused, not handed on. */
        e = (struct expect){ .fill = 0x5b };
        CHECK(wire_reader_new(4 * MIB, &r) == 0);
        CHECK(wire_reader_feed(r, stream, len, &expect_ops, &e) == -EILSEQ);
        CHECK(e.data == 0 && wire_reader_bad(r).offset == 4096 &&
              wire_reader_bad(r).length == 65536);
        wire_reader_free(r);

        /* The reader hashes no data then: a flipped byte is the consumer's to find. */
        len = build(stream, 65536, 0x5a, true);
        e = (struct expect){ .fill = 0x5a };
        CHECK(wire_reader_new(4 * MIB, &r) == 0);
        CHECK(wire_reader_feed(r, stream, len, &expect_ops, &e) == 0);
        CHECK(e.data == 1 && e.into[17] == (0x5a ^ 1));
        wire_reader_free(r);
}

TAP_MAIN(TAP_TEST(ranges_round_trip_and_bad_ones_are_refused),
         TAP_TEST(a_chunk_hash_is_that_of_its_blocks_hashes_which_the_reader_hands_on),
         TAP_TEST(a_stream_read_whole_or_byte_by_byte_gives_the_same_records),
         TAP_TEST(a_flipped_byte_is_caught_before_the_data_is_handed_on),
         TAP_TEST(a_cut_or_spliced_stream_is_not_complete),
         TAP_TEST(records_outside_the_image_or_oversized_are_refused),
         TAP_TEST(with_begin_the_payload_lands_in_the_consumers_buffer_checked_against_its_hashes))
