/*
 * wire — the bytes agents exchange (agent/README.md says them byte by byte):
 * a list of ranges the target asks for, and the chunk stream the source
 * answers with. Pure: no I/O, no allocation beyond what a call returns, so
 * that it can be fuzzed on its own.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define WIRE_BLOCK 4096u
#define WIRE_CHUNK_MAX (1u << 20) /* a data record's payload, at most */
#define WIRE_RANGES_MAX 1000000u  /* ranges in one request, at most */

#define WIRE_DATA_HEADER_SIZE 45 /* u8 type, u64 offset, u32 length, sha256 */
#define WIRE_ZERO_SIZE 17        /* u8 type, u64 offset, u64 length */
#define WIRE_END_SIZE 41         /* u8 type, u64 records, sha256 */

enum wire_record { WIRE_DATA = 1, WIRE_ZERO = 2, WIRE_END = 3 };

struct wire_range {
        uint64_t offset, length;
};

/* ---- ranges ---- */

/* Bytes of the encoding of `n` ranges. */
size_t wire_ranges_size(size_t n);
/* Encodes into `out` (wire_ranges_size(n) bytes). */
void wire_ranges_encode(const struct wire_range *ranges, size_t n, uint8_t *out);
/*
 * Decodes and checks ranges: increasing, not overlapping, non-empty, 4 KiB
 * aligned, within `limit` bytes. Returns 0 and a malloc'd array the caller
 * frees, or -EBADMSG, -ENOMEM.
 */
int wire_ranges_decode(const void *buf, size_t len, uint64_t limit, struct wire_range **out,
                       size_t *n);

/* ---- records: writing ---- */

/*
 * A data record's SHA-256: that of the SHA-256s of its 4 KiB blocks, one
 * after the other. The blocks' own hashes are what a manifest lists, so a
 * receiver checks a chunk and each of its blocks with one pass over the
 * data. `blocks` (length / WIRE_BLOCK entries) may be NULL.
 */
void wire_chunk_sha256(const void *data, uint32_t length, uint8_t (*blocks)[32], uint8_t out[32]);
/* The same from the blocks' SHA-256s (`n` of them), for a sender that knows them already. */
void wire_chunk_sha256_of(const uint8_t (*blocks)[32], size_t n, uint8_t out[32]);

void wire_data_header(uint8_t out[WIRE_DATA_HEADER_SIZE], uint64_t offset, uint32_t length,
                      const uint8_t sha256[32]);
void wire_zero_record(uint8_t out[WIRE_ZERO_SIZE], uint64_t offset, uint64_t length);
void wire_end_record(uint8_t out[WIRE_END_SIZE], uint64_t records, const uint8_t sha256[32]);

/* The running SHA-256 over record headers that the end record carries. */
struct wire_digest;
struct wire_digest *wire_digest_new(void);
struct wire_digest *wire_digest_free(struct wire_digest *d);
void wire_digest_add(struct wire_digest *d, const void *header, size_t len);
void wire_digest_final(struct wire_digest *d, uint8_t out[32]);

/* ---- records: reading ---- */

struct wire_reader_ops {
        /* A data record whose SHA-256 matched; `data` and `block_sha256` (the
         * SHA-256 of each 4 KiB block) are borrowed for the call. -EILSEQ
         * says the record is wrong after all (e.g. a block is not what the
         * manifest says); wire_reader_bad() then names it. With `begin`,
         * see there: the data is the consumer's to check. */
        int (*data)(void *ctx, uint64_t offset, const void *data, uint32_t length,
                    const uint8_t (*block_sha256)[32]);
        /* A zero record; -EILSEQ as for data. */
        int (*zero)(void *ctx, uint64_t offset, uint64_t length);
        /* Optional, for a consumer that knows what the blocks hash to (a
         * manifest) and checks the data itself, elsewhere (another thread):
         * called when a data record's header is read, it fills in the
         * SHA-256 each block must have and where to receive the `length`
         * bytes (*buf, the consumer's until `data` or an error). The reader
         * then checks the record's SHA-256 against those block hashes
         * instead of hashing the data, and `data` gets them and data that
         * NO ONE HAS CHECKED yet. -EILSEQ as for data. */
        int (*begin)(void *ctx, uint64_t offset, uint32_t length, uint8_t (*block_sha256)[32],
                     void **buf);
};

struct wire_reader;

/* A reader for a stream of an image of `virtual_size` bytes. */
int wire_reader_new(uint64_t virtual_size, struct wire_reader **out);
struct wire_reader *wire_reader_free(struct wire_reader *r);

/*
 * Feeds the next bytes of the stream; complete records go to `ops`.
 * Returns 0; -EBADMSG for a malformed stream (or bytes after its end);
 * -EILSEQ when a data record's SHA-256 does not match its data (or the
 * block hashes `begin` gave; then wire_reader_bad() says which); or the
 * first error an op returned.
 * After an error the reader takes nothing more.
 */
int wire_reader_feed(struct wire_reader *r, const void *buf, size_t len,
                     const struct wire_reader_ops *ops, void *ctx);

/* True once a valid end record (count and header digest) was read. */
bool wire_reader_done(const struct wire_reader *r);

/* The range of the record that failed its SHA-256 (or that an op said -EILSEQ to). */
struct wire_range wire_reader_bad(const struct wire_reader *r);
