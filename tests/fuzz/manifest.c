/*
 * Block-hash manifests (image/image.h): image_manifest_decode on any bytes.
 *
 * Properties: no crash or leak; for every accepted x, encode(decode(x)) is x
 * byte for byte (the encoding is canonical), the digest is the SHA-256 of x,
 * entries are strictly increasing inside the image and each is found by
 * lookup; the diff of a manifest against itself is empty and against NULL
 * covers exactly its blocks.
 */
#include <nettle/sha2.h>

#include "fuzz.h"
#include "image/image.h"

struct cover {
        uint64_t blocks, last_end;
};

static int never(void *userdata, uint64_t offset, uint64_t length, bool zero) {
        FUZZ_CHECK(!"a manifest differs from itself");
        return 0;
}

static int count(void *userdata, uint64_t offset, uint64_t length, bool zero) {
        struct cover *c = userdata;
        FUZZ_CHECK(length > 0 && offset % IMAGE_BLOCK == 0 && length % IMAGE_BLOCK == 0);
        FUZZ_CHECK(offset >= c->last_end);
        c->blocks += length / IMAGE_BLOCK;
        c->last_end = offset + length;
        return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        struct image_manifest *m = NULL;
        void *enc = NULL;
        size_t len = 0, n;
        uint8_t digest[IMAGE_DIGEST_SIZE], want[32];
        struct sha256_ctx c;
        struct cover cover = { 0 };

        if (image_manifest_decode(data, size, &m) != 0)
                return 0;
        FUZZ_CHECK(image_manifest_encode(m, &enc, &len) == 0);
        FUZZ_CHECK(len == size && !memcmp(enc, data, size));
        free(enc);

        sha256_init(&c);
        sha256_update(&c, size, data);
        sha256_digest(&c, 32, want);
        image_manifest_digest(m, digest);
        FUZZ_CHECK(!memcmp(digest, want, 32));

        n = image_manifest_count(m);
        FUZZ_CHECK(image_manifest_virtual_size(m) % IMAGE_BLOCK == 0);
        for (size_t i = 0; i < n; i++) {
                const struct image_block_hash *e = image_manifest_entry(m, i);
                FUZZ_CHECK(e->index < image_manifest_virtual_size(m) / IMAGE_BLOCK);
                FUZZ_CHECK(i == 0 || e->index > image_manifest_entry(m, i - 1)->index);
                FUZZ_CHECK(image_manifest_lookup(m, e->index) == e);
        }
        FUZZ_CHECK(image_manifest_diff(m, m, never, NULL) == 0);
        FUZZ_CHECK(image_manifest_diff(NULL, m, count, &cover) == 0);
        FUZZ_CHECK(cover.blocks == n);
        image_manifest_free(m);
        return 0;
}
