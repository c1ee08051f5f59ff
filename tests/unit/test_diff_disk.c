/*
 * Disk diffs (diff/diff.h) on real images: a 32 MiB template whose first
 * 8 MiB hold data, two overlays of it written by the test with qemu-nbd,
 * their manifests, and diff_disk's extents checked against what the test
 * wrote and against both images read block by block.
 */
#include <errno.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "diff/diff.h"
#include "tap.h"

#define MiB (1024ull * 1024)
#define SIZE (32 * MiB)
#define BLOCKS (SIZE / IMAGE_BLOCK)
#define TEMPLATE_BLOCKS 2048 /* blocks 0..2047 hold data in the template */

static char root[64], tpl[128], va[128], vb[128];

static void fill(uint8_t *buf, size_t len, uint64_t seed) {
        uint64_t x = seed * 0x9e3779b97f4a7c15ull + 1;

        for (size_t i = 0; i < len; i += 8) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                memcpy(buf + i, &x, len - i < 8 ? len - i : 8);
        }
}

/* The template's block b holds fill(1000000 + b). */
#define TPL_SEED(b) (1000000 + (b))

static int put(struct image *img, uint64_t b, uint64_t seed) {
        uint8_t buf[IMAGE_BLOCK];

        fill(buf, sizeof(buf), seed);
        return image_write(img, buf, sizeof(buf), b * IMAGE_BLOCK);
}

static int zero(struct image *img, uint64_t b, uint64_t n) {
        return image_zero(img, n * IMAGE_BLOCK, b * IMAGE_BLOCK);
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
        return remove(path);
}

/*
 * A: 10..13 (seeds 1-4), 20 (not the template's), 30 (the template's own
 *    bytes), 3000 zeroed, 3010 zeroed.
 * B: 10, 11, 13 as A, 12 other, 3010 zeroed, 40 zeroed over template data,
 *    50 the template's bytes, 51 other, 2047 and 2048 (the template's data
 *    ends between them), 4000..4015 and 4017.
 * Changed: 12, 20, 40, 51, 2047-2048, 4000-4015, 4017. Not changed: 10,
 * 11, 13 (same), 30 and 50 (the template's bytes), 3000 (zeroes over no
 * data), 3010 (zero in both).
 */
static int make_store(void) {
        struct image *img = NULL;
        uint8_t *buf = malloc(TEMPLATE_BLOCKS * IMAGE_BLOCK);
        int r;

        strcpy(root, "/tmp/homing-diff-XXXXXX");
        if (!buf || !mkdtemp(root)) {
                free(buf);
                return -ENOMEM;
        }
        snprintf(tpl, sizeof(tpl), "%s/tpl.qcow2", root);
        snprintf(va, sizeof(va), "%s/v1.qcow2", root);
        snprintf(vb, sizeof(vb), "%s/v2.qcow2", root);
        for (uint64_t b = 0; b < TEMPLATE_BLOCKS; b++)
                fill(buf + b * IMAGE_BLOCK, IMAGE_BLOCK, TPL_SEED(b));
        r = image_create(tpl, SIZE);
        r = r ? r : image_open(tpl, true, &img);
        r = r ? r : image_write(img, buf, TEMPLATE_BLOCKS * IMAGE_BLOCK, 0);
        r = r ? r : image_flush(img);
        img = image_free(img);
        free(buf);

        r = r ? r : image_create_overlay(tpl, va);
        r = r ? r : image_open(va, true, &img);
        for (uint64_t b = 10; !r && b <= 13; b++)
                r = put(img, b, b - 9);
        r = r ? r : put(img, 20, 20);
        r = r ? r : put(img, 30, TPL_SEED(30));
        r = r ? r : zero(img, 3000, 1);
        r = r ? r : zero(img, 3010, 1);
        r = r ? r : image_flush(img);
        img = image_free(img);

        r = r ? r : image_create_overlay(tpl, vb);
        r = r ? r : image_open(vb, true, &img);
        r = r ? r : put(img, 10, 1);
        r = r ? r : put(img, 11, 2);
        r = r ? r : put(img, 12, 99);
        r = r ? r : put(img, 13, 4);
        r = r ? r : zero(img, 3010, 1);
        r = r ? r : zero(img, 40, 1);
        r = r ? r : put(img, 50, TPL_SEED(50));
        r = r ? r : put(img, 51, 51);
        r = r ? r : put(img, 2047, 2047);
        r = r ? r : put(img, 2048, 2048);
        for (uint64_t b = 4000; !r && b < 4016; b++)
                r = put(img, b, b);
        r = r ? r : put(img, 4017, 4017);
        r = r ? r : image_flush(img);
        image_free(img);
        if (r)
                printf("# make_store: %s\n", strerror(-r));
        return r;
}

static int manifest_of(const char *path, struct image_manifest **m) {
        struct image *img = NULL;
        int r = image_open(path, false, &img);

        r = r ? r : image_manifest_compute(img, m);
        image_free(img);
        return r;
}

/* The changed extents found by reading both images whole, block by block. */
static int truth(struct diff_extent *x, size_t *n) {
        struct image *a = NULL, *b = NULL;
        uint8_t *ba = malloc(SIZE), *bb = malloc(SIZE);
        int r = ba && bb ? 0 : -ENOMEM;

        *n = 0;
        r = r ? r : image_open(va, false, &a);
        r = r ? r : image_open(vb, false, &b);
        r = r ? r : image_read(a, ba, SIZE, 0);
        r = r ? r : image_read(b, bb, SIZE, 0);
        for (uint64_t i = 0; !r && i < BLOCKS; i++) {
                if (!memcmp(ba + i * IMAGE_BLOCK, bb + i * IMAGE_BLOCK, IMAGE_BLOCK))
                        continue;
                if (*n && x[*n - 1].offset + x[*n - 1].length == i * IMAGE_BLOCK)
                        x[*n - 1].length += IMAGE_BLOCK;
                else
                        x[(*n)++] = (struct diff_extent){ i * IMAGE_BLOCK, IMAGE_BLOCK };
        }
        image_free(a);
        image_free(b);
        free(ba);
        free(bb);
        return r;
}

TEST(the_disk_diff_finds_exactly_the_blocks_that_read_differently) {
        static const struct diff_extent want[] = {
                { 12 * IMAGE_BLOCK, IMAGE_BLOCK },       { 20 * IMAGE_BLOCK, IMAGE_BLOCK },
                { 40 * IMAGE_BLOCK, IMAGE_BLOCK },       { 51 * IMAGE_BLOCK, IMAGE_BLOCK },
                { 2047 * IMAGE_BLOCK, 2 * IMAGE_BLOCK }, { 4000 * IMAGE_BLOCK, 16 * IMAGE_BLOCK },
                { 4017 * IMAGE_BLOCK, IMAGE_BLOCK },
        };
        size_t nw = sizeof(want) / sizeof(want[0]), nt = 0;
        struct image_manifest *a = NULL, *b = NULL;
        struct diff_disk d, back;
        struct diff_extent seen[64];
        uint64_t total = 0;

        CHECK(make_store() == 0);
        CHECK(manifest_of(va, &a) == 0);
        CHECK(manifest_of(vb, &b) == 0);
        if (!a || !b)
                goto out;
        CHECK(diff_disk(a, b, tpl, &d) == 0);
        CHECK(d.virtual_size == SIZE);
        CHECK(d.n == nw);
        for (size_t i = 0; i < d.n && i < nw; i++) {
                CHECK(d.extents[i].offset == want[i].offset);
                CHECK(d.extents[i].length == want[i].length);
                total += d.extents[i].length;
        }
        CHECK(d.changed_bytes == total && total == 23 * IMAGE_BLOCK);
        /* Only the lone blocks over template data were read: 20, 30, 40, 50, 51, 2047. */
        CHECK(d.template_reads == 6);

        /* The same as reading both images whole. */
        CHECK(truth(seen, &nt) == 0);
        CHECK(nt == d.n);
        for (size_t i = 0; i < nt && i < d.n; i++)
                CHECK(seen[i].offset == d.extents[i].offset &&
                      seen[i].length == d.extents[i].length);

        /* And the same the other way round. */
        CHECK(diff_disk(b, a, tpl, &back) == 0);
        CHECK(back.n == d.n && back.changed_bytes == d.changed_bytes);
        for (size_t i = 0; i < back.n && i < d.n; i++)
                CHECK(back.extents[i].offset == d.extents[i].offset);
        diff_disk_fini(&back);
        diff_disk_fini(&d);
out:
        image_manifest_free(a);
        image_manifest_free(b);
}

TEST(a_version_against_itself_is_unchanged_and_opens_no_template) {
        struct image_manifest *a = NULL;
        struct diff_disk d;

        CHECK(manifest_of(va, &a) == 0);
        if (!a)
                return;
        CHECK(diff_disk(a, a, "/nonexistent/template.qcow2", &d) == 0);
        CHECK(d.n == 0 && d.changed_bytes == 0 && d.template_reads == 0);
        diff_disk_fini(&d);
        image_manifest_free(a);
}

TEST(versions_of_other_sizes_are_refused) {
        struct image_manifest *a = NULL, *small = NULL;
        struct diff_disk d;
        char other[160];

        snprintf(other, sizeof(other), "%s/small.qcow2", root);
        CHECK(image_create(other, SIZE / 2) == 0);
        CHECK(manifest_of(va, &a) == 0);
        CHECK(manifest_of(other, &small) == 0);
        if (a && small)
                CHECK(diff_disk(a, small, tpl, &d) == -EINVAL);
        image_manifest_free(a);
        image_manifest_free(small);
        nftw(root, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

TAP_MAIN(TAP_TEST(the_disk_diff_finds_exactly_the_blocks_that_read_differently),
         TAP_TEST(a_version_against_itself_is_unchanged_and_opens_no_template),
         TAP_TEST(versions_of_other_sizes_are_refused))
