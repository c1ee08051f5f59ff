/*
 * Images, their top-layer extents and their manifests, against the real
 * qemu-img and qemu-nbd. Every test makes its own store under /tmp: a
 * 64 MiB template whose first 16 MiB hold known data, and overlays of it.
 */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <nettle/sha2.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "image/image.h"
#include "image/internal.h"
#include "tap.h"

#define MiB (1024ull * 1024)
#define TEMPLATE_SIZE (64 * MiB)
#define TEMPLATE_DATA_BLOCKS 4096 /* blocks 0..4095 (16 MiB) written in the template */
#define BLOCKS (TEMPLATE_SIZE / IMAGE_BLOCK)

struct store {
        char root[64];
        char tpl[128];
};

/* Deterministic, block-distinct contents: xorshift seeded by `seed`. */
static void fill(uint8_t *buf, size_t len, uint64_t seed) {
        uint64_t x = seed * 0x9e3779b97f4a7c15ull + 1;

        for (size_t i = 0; i < len; i += 8) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                memcpy(buf + i, &x, len - i < 8 ? len - i : 8);
        }
}

static void sha256_of(const void *data, size_t len, uint8_t out[32]) {
        struct sha256_ctx ctx;

        sha256_init(&ctx);
        sha256_update(&ctx, len, data);
        sha256_digest(&ctx, 32, out);
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
        return remove(path);
}

static void store_fini(struct store *s) {
        if (s->root[0])
                nftw(s->root, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static void path_in(const struct store *s, const char *rel, char *out, size_t size) {
        snprintf(out, size, "%s/%s", s->root, rel);
}

static void mkdir_in(const struct store *s, const char *rel) {
        char p[256];

        path_in(s, rel, p, sizeof(p));
        mkdir(p, 0755);
}

/* A store with templates/tpl-1.qcow2 (data in its first 16 MiB) and versions/. */
static int store_init(struct store *s) {
        struct image *img = NULL;
        uint8_t *buf = malloc(4 * MiB);
        int r;

        memset(s, 0, sizeof(*s));
        strcpy(s->root, "/tmp/homing-image-XXXXXX");
        if (!buf || !mkdtemp(s->root)) {
                free(buf);
                return -errno;
        }
        mkdir_in(s, "templates");
        mkdir_in(s, "versions");
        mkdir_in(s, "versions/v1");
        mkdir_in(s, "versions/v2");
        mkdir_in(s, "versions/v3");
        path_in(s, "templates/tpl-1.qcow2", s->tpl, sizeof(s->tpl));
        r = image_create(s->tpl, TEMPLATE_SIZE);
        if (!r)
                r = image_open(s->tpl, true, &img);
        for (uint64_t b = 0; !r && b < TEMPLATE_DATA_BLOCKS; b++) {
                fill(buf + (b % 1024) * IMAGE_BLOCK, IMAGE_BLOCK, 1000000 + b);
                if (b % 1024 == 1023)
                        r = image_write(img, buf, 4 * MiB, (b - 1023) * IMAGE_BLOCK);
        }
        if (!r)
                r = image_flush(img);
        image_free(img);
        free(buf);
        if (r)
                printf("# store_init: %s\n", strerror(-r));
        return r;
}

/* Writes one block of fill(seed) at block `b`. */
static int write_block(struct image *img, uint64_t b, uint64_t seed) {
        uint8_t buf[IMAGE_BLOCK];

        fill(buf, sizeof(buf), seed);
        return image_write(img, buf, sizeof(buf), b * IMAGE_BLOCK);
}

/* Which blocks a walk reported, and which of them as zero. */
struct block_map {
        uint8_t seen[BLOCKS]; /* 0 no, 1 data, 2 zero */
        size_t calls;
        int bad; /* misaligned or overlapping ranges */
        uint64_t last_end;
};

static int map_cb(void *userdata, uint64_t offset, uint64_t length, bool zero) {
        struct block_map *m = userdata;

        m->calls++;
        if (offset % IMAGE_BLOCK || length % IMAGE_BLOCK || !length || offset < m->last_end ||
            offset + length > TEMPLATE_SIZE) {
                m->bad = 1;
                return 0;
        }
        m->last_end = offset + length;
        for (uint64_t b = offset / IMAGE_BLOCK; b < (offset + length) / IMAGE_BLOCK; b++)
                m->seen[b] = zero ? 2 : 1;
        return 0;
}

/*
 * v1: four scattered blocks (three over template data, one past it), 64 KiB
 * across a cluster boundary at 2 MiB + 8 KiB, block 7 zeroed (write_zeroes)
 * and block 9000 written with zero bytes.
 */
static const uint64_t v1_scattered[] = { 3, 100, 1001, 5000 };
#define V1_RUN_FIRST 514 /* (2 MiB + 8 KiB) / 4 KiB */
#define V1_RUN_BLOCKS 16

static int write_v1(struct image *img) {
        uint8_t run[V1_RUN_BLOCKS * IMAGE_BLOCK], zeros[IMAGE_BLOCK] = { 0 };
        int r = 0;

        for (size_t i = 0; !r && i < sizeof(v1_scattered) / sizeof(v1_scattered[0]); i++)
                r = write_block(img, v1_scattered[i], v1_scattered[i]);
        for (size_t b = 0; b < V1_RUN_BLOCKS; b++)
                fill(run + b * IMAGE_BLOCK, IMAGE_BLOCK, V1_RUN_FIRST + b);
        if (!r)
                r = image_write(img, run, sizeof(run), V1_RUN_FIRST * IMAGE_BLOCK);
        if (!r)
                r = image_zero(img, IMAGE_BLOCK, 7 * IMAGE_BLOCK);
        if (!r)
                r = image_write(img, zeros, sizeof(zeros), 9000 * IMAGE_BLOCK);
        if (!r)
                r = image_flush(img);
        return r;
}

static bool v1_block(uint64_t b) {
        for (size_t i = 0; i < sizeof(v1_scattered) / sizeof(v1_scattered[0]); i++)
                if (v1_scattered[i] == b)
                        return true;
        return (b >= V1_RUN_FIRST && b < V1_RUN_FIRST + V1_RUN_BLOCKS) || b == 7 || b == 9000;
}

/* Opens an overlay of the store's template at versions/<rel> and writes v1 into it. */
static struct image *make_v1(struct store *s, const char *rel) {
        struct image *img = NULL;
        char p[256];

        path_in(s, rel, p, sizeof(p));
        if (image_create_overlay(s->tpl, p) < 0 || image_open(p, true, &img) < 0)
                return NULL;
        if (write_v1(img) < 0)
                img = image_free(img);
        return img;
}

/* ---- creating ------------------------------------------------------------------ */

TEST(an_overlay_records_its_template_by_a_relative_path) {
        struct store s;
        char p[256], backing[256];

        CHECK(store_init(&s) == 0);
        path_in(&s, "versions/v1/disk.qcow2", p, sizeof(p));
        CHECK(image_create_overlay(s.tpl, p) == 0);
        CHECK(image_info_backing(p, backing, sizeof(backing)) == 0);
        CHECK_STR(backing, "../../templates/tpl-1.qcow2");
        CHECK(image_info_backing(p, backing, 8) == -ENOBUFS);
        CHECK(image_info_backing(s.tpl, backing, sizeof(backing)) == -ENODATA);
        /* An existing file is never overwritten. */
        CHECK(image_create_overlay(s.tpl, p) == -EEXIST);
        CHECK(image_create(p, TEMPLATE_SIZE) == -EEXIST);
        CHECK(image_create_overlay(s.tpl, "/nonexistent-dir/x.qcow2") == -ENOENT);
        /* Beside its template: the bare name. */
        path_in(&s, "templates/side.qcow2", p, sizeof(p));
        CHECK(image_create_overlay(s.tpl, p) == 0);
        CHECK(image_info_backing(p, backing, sizeof(backing)) == 0);
        CHECK_STR(backing, "tpl-1.qcow2");
        CHECK(image_create(p, 1000) == -EINVAL);
        store_fini(&s);
}

TEST(an_overlay_has_its_templates_size_and_reads_through_to_it) {
        struct store s;
        struct image *img = NULL;
        uint8_t got[IMAGE_BLOCK], want[IMAGE_BLOCK], zeros[IMAGE_BLOCK] = { 0 };

        CHECK(store_init(&s) == 0);
        img = make_v1(&s, "versions/v1/disk.qcow2");
        CHECK(img != NULL);
        if (!img)
                goto out;
        CHECK(image_size(img) == TEMPLATE_SIZE);
        /* Untouched: the template's data. */
        CHECK(image_read(img, got, sizeof(got), 4 * IMAGE_BLOCK) == 0);
        fill(want, sizeof(want), 1000000 + 4);
        CHECK(!memcmp(got, want, sizeof(got)));
        /* Written: the overlay's. */
        CHECK(image_read(img, got, sizeof(got), 100 * IMAGE_BLOCK) == 0);
        fill(want, sizeof(want), 100);
        CHECK(!memcmp(got, want, sizeof(got)));
        /* Zeroed over template data, and never written past it. */
        CHECK(image_read(img, got, sizeof(got), 7 * IMAGE_BLOCK) == 0);
        CHECK(!memcmp(got, zeros, sizeof(got)));
        CHECK(image_read(img, got, sizeof(got), 10000 * IMAGE_BLOCK) == 0);
        CHECK(!memcmp(got, zeros, sizeof(got)));
        /* Ranges past the end are refused before they reach the server. */
        CHECK(image_read(img, got, sizeof(got), TEMPLATE_SIZE - 1024) == -EINVAL);
        CHECK(image_zero(img, IMAGE_BLOCK, TEMPLATE_SIZE) == -EINVAL);
out:
        image_free(img);
        store_fini(&s);
}

TEST(a_read_only_image_refuses_writes_and_qemu_nbd_is_reaped) {
        struct store s;
        struct image *img = NULL;
        uint8_t buf[IMAGE_BLOCK] = { 0 };

        CHECK(store_init(&s) == 0);
        CHECK(image_open(s.tpl, false, &img) == 0);
        if (img) {
                CHECK(image_write(img, buf, sizeof(buf), 0) == -EPERM);
                CHECK(image_zero(img, IMAGE_BLOCK, 0) == -EPERM);
                CHECK(image_flush(img) == 0);
                CHECK(image_read(img, buf, sizeof(buf), 0) == 0);
        }
        img = image_free(img);
        CHECK(img == NULL);
        /* No child left, not even a zombie. */
        CHECK(waitpid(-1, NULL, WNOHANG) == -1 && errno == ECHILD);
        CHECK(image_open("/nonexistent.qcow2", false, &img) == -ENOENT);
        /* qemu's locks: one writer, and then no second one. */
        {
                struct image *w = NULL, *w2 = NULL;

                CHECK(image_open(s.tpl, true, &w) == 0);
                CHECK(image_open(s.tpl, true, &w2) < 0 && w2 == NULL);
                image_free(w);
        }
        /* Not a qcow2: qemu-nbd refuses it (and says why on stderr). */
        {
                char p[256];
                int fd, r;

                path_in(&s, "templates/junk.qcow2", p, sizeof(p));
                fd = open(p, O_WRONLY | O_CREAT, 0644);
                CHECK(fd >= 0 && write(fd, "not an image\n", 13) == 13);
                close(fd);
                r = image_open(p, false, &img);
                printf("# junk: %s\n", strerror(-r));
                CHECK(r < 0 && img == NULL);
        }
        store_fini(&s);
}

/* ---- extents ------------------------------------------------------------------- */

TEST(own_extents_are_the_overlays_writes_not_the_templates_data) {
        static struct block_map map;
        struct store s;
        struct image *img = NULL;
        bool exact = true;

        CHECK(store_init(&s) == 0);
        img = make_v1(&s, "versions/v1/disk.qcow2");
        CHECK(img != NULL);
        if (!img)
                goto out;
        memset(&map, 0, sizeof(map));
        CHECK(image_own_extents(img, map_cb, &map) == 0);
        CHECK(!map.bad);
        for (uint64_t b = 0; b < BLOCKS; b++)
                if ((map.seen[b] != 0) != v1_block(b)) {
                        printf("#   block %llu: seen %d\n", (unsigned long long)b, map.seen[b]);
                        exact = false;
                }
        CHECK(exact);
        /* write_zeroes left a zero subcluster, and qemu says so. */
        CHECK(map.seen[7] == 2);
        CHECK(map.seen[3] == 1 && map.seen[V1_RUN_FIRST] == 1);
        /* The 64 KiB write came back as one range, not sixteen. */
        CHECK(map.calls == 7);
        img = image_free(img);

        /* A template's own extents are its data. */
        memset(&map, 0, sizeof(map));
        CHECK(image_open(s.tpl, false, &img) == 0);
        CHECK(img && image_own_extents(img, map_cb, &map) == 0);
        CHECK(map.calls == 1 && map.seen[0] == 1 && map.seen[TEMPLATE_DATA_BLOCKS - 1] == 1 &&
              map.seen[TEMPLATE_DATA_BLOCKS] == 0);
out:
        image_free(img);
        store_fini(&s);
}

static int stop_cb(void *userdata, uint64_t offset, uint64_t length, bool zero) {
        return -ECANCELED;
}

TEST(a_partial_write_allocates_its_whole_4k_block) {
        static struct block_map map;
        struct store s;
        struct image *img = NULL;
        char p[256];
        uint8_t bytes[512];

        CHECK(store_init(&s) == 0);
        path_in(&s, "versions/v1/disk.qcow2", p, sizeof(p));
        CHECK(image_create_overlay(s.tpl, p) == 0 && image_open(p, true, &img) == 0);
        if (!img)
                goto out;
        memset(bytes, 0xab, sizeof(bytes));
        CHECK(image_write(img, bytes, sizeof(bytes), 11 * IMAGE_BLOCK + 1024) == 0);
        CHECK(image_write(img, bytes, sizeof(bytes), 11000 * IMAGE_BLOCK + 3584) == 0);
        memset(&map, 0, sizeof(map));
        CHECK(image_own_extents(img, map_cb, &map) == 0);
        CHECK(!map.bad && map.calls == 2 && map.seen[11] == 1 && map.seen[11000] == 1);
out:
        image_free(img);
        store_fini(&s);
}

TEST(writes_outlive_image_free_even_unflushed) {
        struct store s;
        struct image *img = NULL;
        char p[256];
        uint8_t got[IMAGE_BLOCK], want[IMAGE_BLOCK];

        CHECK(store_init(&s) == 0);
        path_in(&s, "versions/v1/disk.qcow2", p, sizeof(p));
        CHECK(image_create_overlay(s.tpl, p) == 0 && image_open(p, true, &img) == 0);
        for (uint64_t b = 0; img && b < 64; b++)
                CHECK(write_block(img, 10000 + b * 17, 555 + b) == 0);
        img = image_free(img);
        CHECK(image_check(p, NULL, 0) == 0);
        CHECK(image_open(p, false, &img) == 0);
        for (uint64_t b = 0; img && b < 64; b++) {
                fill(want, sizeof(want), 555 + b);
                CHECK(image_read(img, got, sizeof(got), (10000 + b * 17) * IMAGE_BLOCK) == 0);
                CHECK(!memcmp(got, want, sizeof(got)));
        }
        image_free(img);
        store_fini(&s);
}

TEST(a_callback_error_stops_the_walk_and_comes_back) {
        struct store s;
        struct image *img = NULL;

        CHECK(store_init(&s) == 0);
        img = make_v1(&s, "versions/v1/disk.qcow2");
        CHECK(img && image_own_extents(img, stop_cb, NULL) == -ECANCELED);
        image_free(img);
        store_fini(&s);
}

/* Checks each range's data against fill(block) and stops at range `stop_at`. */
struct ranges_seen {
        const struct image_range *ranges;
        size_t calls, stop_at;
        bool in_order, data_ok;
};

static int ranges_cb(void *userdata, size_t i, const uint8_t *data) {
        struct ranges_seen *r = userdata;
        uint8_t want[IMAGE_BLOCK];

        r->in_order = r->in_order && i == r->calls;
        r->calls++;
        for (uint32_t b = 0; b < r->ranges[i].length / IMAGE_BLOCK; b++) {
                fill(want, sizeof(want), 1000000 + r->ranges[i].offset / IMAGE_BLOCK + b);
                r->data_ok =
                        r->data_ok && !memcmp(data + (size_t)b * IMAGE_BLOCK, want, IMAGE_BLOCK);
        }
        return i == r->stop_at ? -ECANCELED : 0;
}

TEST(pipelined_reads_come_in_order_and_stop_cleanly) {
        static struct image_range ranges[600];
        struct store s;
        struct image *img = NULL;
        struct ranges_seen seen = {
                .ranges = ranges, .stop_at = SIZE_MAX, .in_order = true, .data_ok = true
        };
        uint8_t got[IMAGE_BLOCK], want[IMAGE_BLOCK];

        CHECK(store_init(&s) == 0);
        CHECK(image_open(s.tpl, false, &img) == 0);
        if (!img)
                goto out;
        /* Sizes from 4 KiB to 4 MiB, so the slabs fill unevenly and wrap. */
        for (size_t i = 0; i < 600; i++) {
                ranges[i].length = (uint32_t)(IMAGE_BLOCK << (i % 11));
                ranges[i].offset = (i * 7919 % 3000) * IMAGE_BLOCK;
                if (ranges[i].offset + ranges[i].length > TEMPLATE_DATA_BLOCKS * IMAGE_BLOCK)
                        ranges[i].offset = 0;
        }
        CHECK(image_read_ranges(img, ranges, 600, ranges_cb, &seen) == 0);
        CHECK(seen.calls == 600 && seen.in_order && seen.data_ok);
        /* Stopped with reads still out: they are retired, the image still works. */
        seen = (struct ranges_seen){
                .ranges = ranges, .stop_at = 5, .in_order = true, .data_ok = true
        };
        CHECK(image_read_ranges(img, ranges, 600, ranges_cb, &seen) == -ECANCELED);
        CHECK(seen.calls == 6);
        CHECK(image_read(img, got, sizeof(got), 42 * IMAGE_BLOCK) == 0);
        fill(want, sizeof(want), 1000000 + 42);
        CHECK(!memcmp(got, want, sizeof(got)));
        ranges[0].offset = TEMPLATE_SIZE;
        CHECK(image_read_ranges(img, ranges, 1, ranges_cb, &seen) == -EINVAL);
        CHECK(image_read_ranges(img, ranges, 0, ranges_cb, &seen) == 0);
out:
        image_free(img);
        store_fini(&s);
}

TEST(queued_writes_land_in_order_and_read_ahead_gives_them_back) {
        static uint8_t want[12 * MiB];
        struct image_span spans[3] = { { 0, 3 * MiB },
                                       { 8 * MiB, MiB },
                                       { 30 * MiB, IMAGE_BLOCK } };
        struct store s;
        struct image *img = NULL;
        struct image_writer *w = NULL;
        struct image_reader *r = NULL;
        const uint8_t *data;
        size_t len, pieces = 0;
        uint64_t off, expect_off = 0;
        bool ok = true;
        char p[256];

        CHECK(store_init(&s) == 0);
        CHECK(image_open(s.tpl, false, &img) == 0);
        CHECK(img && image_writer_new(img, NULL, NULL, &w) == -EPERM);
        img = image_free(img);
        path_in(&s, "versions/v1/disk.qcow2", p, sizeof(p));
        CHECK(image_create_overlay(s.tpl, p) == 0 && image_open(p, true, &img) == 0);
        if (!img)
                goto out;
        fill(want, 3 * MiB, 77);
        CHECK(image_writer_new(img, NULL, NULL, &w) == 0);
        /* Small consecutive writes (merged while they wait), a later write over an
         * earlier one, zeroes over the template's data, one past the end. */
        for (size_t at = 0; w && at < 3 * MiB; at += 64 * 1024)
                CHECK(image_writer_write(w, want + at, 64 * 1024, at) == 0);
        fill(want + 5 * IMAGE_BLOCK, IMAGE_BLOCK, 99);
        CHECK(image_writer_write(w, want + 5 * IMAGE_BLOCK, IMAGE_BLOCK, 5 * IMAGE_BLOCK) == 0);
        CHECK(image_writer_zero(w, MiB, 8 * MiB) == 0);
        memset(want + 8 * MiB, 0, MiB);
        CHECK(image_writer_write(w, want, IMAGE_BLOCK, TEMPLATE_SIZE) == -EINVAL);
        CHECK(image_writer_finish(w) == 0);

        CHECK(image_reader_new(img, spans, 3, &r) == 0);
        while (r && image_reader_next(r, &data, &len, &off) == 0) {
                static uint8_t zero[IMAGE_BLOCK];
                if (pieces == 3)
                        expect_off = 8 * MiB;
                if (pieces == 4)
                        expect_off = 30 * MiB;
                ok = ok && off == expect_off && len <= IMAGE_READER_PIECE &&
                     !memcmp(data, off < 12 * MiB ? want + off : zero, len);
                expect_off += len;
                pieces++;
        }
        CHECK(ok && pieces == 5);
        r = image_reader_free(r);
        /* Freed with reads in flight: the image still answers. */
        CHECK(image_reader_new(img, spans, 3, &r) == 0);
        CHECK(r && image_reader_next(r, &data, &len, &off) == 0 && off == 0);
        r = image_reader_free(r);
        CHECK(image_read(img, want, IMAGE_BLOCK, 8 * MiB) == 0 && want[0] == 0);
        spans[0].offset = TEMPLATE_SIZE;
        CHECK(image_reader_new(img, spans, 1, &r) == -EINVAL);
out:
        image_free(img);
        store_fini(&s);
}

TEST(a_queued_zero_range_longer_than_four_gib_is_written_in_requests_nbd_accepts) {
        const uint64_t size = 6ull << 30, zero_len = 5ull << 30;
        uint8_t block[IMAGE_BLOCK], got[IMAGE_BLOCK], zero[IMAGE_BLOCK] = { 0 };
        struct store s;
        struct image *img = NULL;
        struct image_writer *w = NULL;
        char p[256];

        CHECK(store_init(&s) == 0);
        path_in(&s, "versions/v1/big.qcow2", p, sizeof(p));
        CHECK(image_create(p, size) == 0 && image_open(p, true, &img) == 0);
        if (!img)
                goto out;
        /* Data to be zeroed, at 4.5 GiB, and data past the range, kept. */
        fill(block, sizeof(block), 4545);
        CHECK(image_write(img, block, IMAGE_BLOCK, 9ull << 29) == 0);
        CHECK(image_write(img, block, IMAGE_BLOCK, zero_len) == 0);
        CHECK(image_writer_new(img, NULL, NULL, &w) == 0);
        /* Queued in pieces of 1 GiB that meet: merged, they must not exceed NBD's 32 bits. */
        CHECK(w && image_writer_zero(w, zero_len, 0) == 0);
        CHECK(image_writer_finish(w) == 0);
        CHECK(image_read(img, got, IMAGE_BLOCK, 9ull << 29) == 0 &&
              !memcmp(got, zero, IMAGE_BLOCK));
        CHECK(image_read(img, got, IMAGE_BLOCK, zero_len) == 0 && !memcmp(got, block, IMAGE_BLOCK));
out:
        image_free(img);
        store_fini(&s);
}

/* A check that refuses the request at `refuse` and counts what it saw. */
struct seen {
        uint64_t refuse;
        unsigned data, zero;
};

static int check_cb(void *userdata, const void *data, uint64_t len, uint64_t offset) {
        struct seen *s = userdata;

        if (offset == s->refuse)
                return -EILSEQ;
        if (data)
                s->data++;
        else
                s->zero++;
        return 0;
}

TEST(reserved_writes_are_checked_before_they_are_written_and_a_refusal_stops_the_rest) {
        static uint8_t want[3 * MiB], got[3 * MiB];
        struct seen seen = { .refuse = UINT64_MAX };
        struct store s;
        struct image *img = NULL;
        struct image_writer *w = NULL;
        void *buf = NULL;
        char p[256];

        CHECK(store_init(&s) == 0);
        path_in(&s, "versions/v1/disk.qcow2", p, sizeof(p));
        CHECK(image_create_overlay(s.tpl, p) == 0 && image_open(p, true, &img) == 0);
        if (!img)
                goto out;
        fill(want, sizeof(want), 31);
        CHECK(image_writer_new(img, check_cb, &seen, &w) == 0);
        for (uint64_t at = 0; w && at < 3 * MiB; at += MiB) {
                CHECK(image_writer_reserve(w, MiB, at, &buf) == 0);
                memcpy(buf, want + at, MiB);
                CHECK(image_writer_commit(w) == 0);
        }
        CHECK(image_writer_zero(w, MiB, 8 * MiB) == 0);
        /* Too large, outside the image, nothing reserved. */
        CHECK(image_writer_reserve(w, IMAGE_WRITER_PIECE + IMAGE_BLOCK, 0, &buf) == -EINVAL);
        CHECK(image_writer_reserve(w, IMAGE_BLOCK, TEMPLATE_SIZE, &buf) == -EINVAL);
        CHECK(image_writer_commit(w) == -EINVAL);
        CHECK(image_writer_finish(w) == 0);
        CHECK(seen.data == 3 && seen.zero == 1);
        CHECK(image_read(img, got, sizeof(got), 0) == 0 && !memcmp(got, want, sizeof(got)));

        /* Refused in the middle: the first is written; the refused one and the next are not. */
        fill(want, sizeof(want), 32);
        seen = (struct seen){ .refuse = 1 * MiB };
        CHECK(image_writer_new(img, check_cb, &seen, &w) == 0);
        for (uint64_t at = 0; w && at < 3 * MiB; at += MiB) {
                int r = image_writer_reserve(w, MiB, at, &buf);
                CHECK(r == 0 || r == -EILSEQ);
                if (r == 0) {
                        memcpy(buf, want + at, MiB);
                        r = image_writer_commit(w);
                        CHECK(r == 0 || r == -EILSEQ);
                }
        }
        CHECK(image_writer_finish(w) == -EILSEQ);
        CHECK(seen.data == 1);
        CHECK(image_read(img, got, sizeof(got), 0) == 0 && !memcmp(got, want, MiB));
        fill(want, sizeof(want), 31); /* beyond it, what the first writer left */
        CHECK(!memcmp(got + MiB, want + MiB, 2 * MiB));
out:
        image_free(img);
        store_fini(&s);
}

TEST(the_file_map_places_the_top_layers_data_and_nothing_else) {
        struct store s;
        struct image *img = NULL;
        struct image_file_map *m = NULL;
        uint8_t got[2 * IMAGE_BLOCK], want[2 * IMAGE_BLOCK];
        uint64_t at = 0, run = 0;
        char p[256];
        int fd;

        CHECK(store_init(&s) == 0);
        path_in(&s, "versions/v1/disk.qcow2", p, sizeof(p));
        CHECK(image_create_overlay(s.tpl, p) == 0 && image_open(p, true, &img) == 0);
        if (!img)
                goto out;
        fill(want, sizeof(want), 4242);
        CHECK(image_write(img, want, sizeof(want), 9000 * IMAGE_BLOCK) == 0);
        CHECK(image_zero(img, IMAGE_BLOCK, 9100 * IMAGE_BLOCK) == 0);
        img = image_free(img);
        CHECK(image_file_map_new(p, &m) == 0);
        if (!m)
                goto out;
        CHECK(image_file_map_size(m) == TEMPLATE_SIZE);
        /* The two written blocks lie in the file, in order, and read back from it. */
        CHECK(image_file_map_find(m, 9000 * IMAGE_BLOCK, MiB, &at, &run) == 0 &&
              run == sizeof(want));
        fd = open(p, O_RDONLY);
        CHECK(fd >= 0 && pread(fd, got, sizeof(got), (off_t)at) == (ssize_t)sizeof(got));
        CHECK(!memcmp(got, want, sizeof(got)));
        close(fd);
        CHECK(image_file_map_find(m, 9001 * IMAGE_BLOCK, IMAGE_BLOCK, &at, &run) == 0 &&
              run == IMAGE_BLOCK);
        /* The template's data (read through), zeroes and unwritten blocks have no place. */
        CHECK(image_file_map_find(m, 5 * IMAGE_BLOCK, IMAGE_BLOCK, &at, &run) == -ENOENT);
        CHECK(image_file_map_find(m, 9100 * IMAGE_BLOCK, IMAGE_BLOCK, &at, &run) == -ENOENT);
        CHECK(image_file_map_find(m, 9002 * IMAGE_BLOCK, IMAGE_BLOCK, &at, &run) == -ENOENT);
        m = image_file_map_free(m);
        path_in(&s, "versions/none.qcow2", p, sizeof(p));
        CHECK(image_file_map_new(p, &m) < 0);
out:
        image_file_map_free(m);
        image_free(img);
        store_fini(&s);
}

/* ---- manifests ------------------------------------------------------------------ */

TEST(a_manifest_holds_exactly_the_written_blocks_and_their_hashes) {
        struct store s;
        struct image *img = NULL;
        struct image_manifest *m = NULL;
        uint8_t data[IMAGE_BLOCK], hash[32], zero_hash[32], zeros[IMAGE_BLOCK] = { 0 };
        const struct image_block_hash *e;

        CHECK(store_init(&s) == 0);
        img = make_v1(&s, "versions/v1/disk.qcow2");
        CHECK(img && image_manifest_compute(img, &m) == 0);
        if (!m)
                goto out;
        sha256_of(zeros, sizeof(zeros), zero_hash);
        CHECK(image_manifest_virtual_size(m) == TEMPLATE_SIZE);
        CHECK(image_manifest_count(m) == 4 + V1_RUN_BLOCKS + 2);
        for (size_t i = 0; i < image_manifest_count(m); i++) {
                e = image_manifest_entry(m, i);
                CHECK(v1_block(e->index));
                CHECK(i == 0 || e->index > image_manifest_entry(m, i - 1)->index);
                if (e->index == 7 || e->index == 9000) {
                        /* Zero by qemu's flag or by the data: the same entry. */
                        CHECK(e->flags == IMAGE_BLOCK_ZERO);
                        CHECK(!memcmp(e->sha256, zero_hash, 32));
                } else {
                        fill(data, sizeof(data), e->index);
                        sha256_of(data, sizeof(data), hash);
                        CHECK(e->flags == 0);
                        CHECK(!memcmp(e->sha256, hash, 32));
                }
                CHECK(image_manifest_lookup(m, e->index) == e);
        }
        CHECK(image_manifest_entry(m, image_manifest_count(m)) == NULL);
        CHECK(image_manifest_lookup(m, 4) == NULL);
        CHECK(image_manifest_lookup(m, 0) == NULL);
        CHECK(image_manifest_lookup(m, BLOCKS + 5) == NULL);
        /* A run: as many consecutive blocks as are listed, up to max. */
        CHECK(image_manifest_run(m, V1_RUN_FIRST, 64, &e) == V1_RUN_BLOCKS &&
              e == image_manifest_lookup(m, V1_RUN_FIRST));
        CHECK(image_manifest_run(m, V1_RUN_FIRST + 3, 4, &e) == 4 &&
              e[3].index == V1_RUN_FIRST + 6);
        CHECK(image_manifest_run(m, V1_RUN_FIRST + V1_RUN_BLOCKS - 1, 2, &e) == 1);
        CHECK(image_manifest_run(m, 3, 2, &e) == 1 && e->index == 3); /* 4 is not listed */
        CHECK(image_manifest_run(m, 4, 8, &e) == 0 && e == NULL);
        CHECK(image_manifest_run(m, 9000, 8, &e) == 1); /* the last entry */
out:
        image_manifest_free(m);
        image_free(img);
        store_fini(&s);
}

/* Copies each range the diff reports from `src` to `dst`; applied later in reverse. */
struct copy_plan {
        struct {
                uint64_t offset, length;
                bool zero;
        } r[64];
        size_t n;
};

static int plan_cb(void *userdata, uint64_t offset, uint64_t length, bool zero) {
        struct copy_plan *p = userdata;

        if (p->n == 64)
                return -E2BIG;
        p->r[p->n].offset = offset;
        p->r[p->n].length = length;
        p->r[p->n].zero = zero;
        p->n++;
        return 0;
}

TEST(a_version_rebuilt_from_the_diff_has_the_same_digest) {
        struct store s;
        struct image *v1 = NULL, *v2 = NULL;
        struct image_manifest *m1 = NULL, *m2 = NULL;
        struct copy_plan plan = { .n = 0 };
        uint8_t d1[32], d2[32], *buf = malloc(V1_RUN_BLOCKS * IMAGE_BLOCK);
        char p[256], h1[65], h2[65];
        int r = 0;

        CHECK(store_init(&s) == 0);
        v1 = make_v1(&s, "versions/v1/disk.qcow2");
        CHECK(v1 && image_manifest_compute(v1, &m1) == 0);
        path_in(&s, "versions/v2/disk.qcow2", p, sizeof(p));
        CHECK(image_create_overlay(s.tpl, p) == 0 && image_open(p, true, &v2) == 0);
        if (!m1 || !v2 || !buf)
                goto out;
        CHECK(image_manifest_diff(NULL, m1, plan_cb, &plan) == 0);
        /* 3, 7 (zero), 100, 514..529, 1001, 5000, 9000 (zero). */
        CHECK(plan.n == 7);
        /* Backwards, so the qcow2 clusters land in another order than in v1. */
        for (size_t i = plan.n; !r && i-- > 0;) {
                if (plan.r[i].zero) {
                        r = image_zero(v2, plan.r[i].length, plan.r[i].offset);
                        continue;
                }
                CHECK(plan.r[i].length <= V1_RUN_BLOCKS * IMAGE_BLOCK);
                r = image_read(v1, buf, plan.r[i].length, plan.r[i].offset);
                if (!r)
                        r = image_write(v2, buf, plan.r[i].length, plan.r[i].offset);
        }
        CHECK(r == 0);
        CHECK(image_flush(v2) == 0);
        CHECK(image_manifest_compute(v2, &m2) == 0);
        if (!m2)
                goto out;
        image_manifest_digest(m1, d1);
        image_manifest_digest(m2, d2);
        image_digest_hex(d1, h1);
        image_digest_hex(d2, h2);
        CHECK_STR(h1, h2);
        /* Nothing left to copy, and the other way round neither. */
        plan.n = 0;
        CHECK(image_manifest_diff(m2, m1, plan_cb, &plan) == 0 && plan.n == 0);
        CHECK(image_manifest_diff(m1, m2, plan_cb, &plan) == 0 && plan.n == 0);
        /* One more block and the digest moves. */
        m2 = image_manifest_free(m2);
        CHECK(write_block(v2, 12000, 12000) == 0);
        CHECK(image_manifest_compute(v2, &m2) == 0);
        if (m2) {
                image_manifest_digest(m2, d2);
                CHECK(memcmp(d1, d2, 32) != 0);
        }
out:
        free(buf);
        image_manifest_free(m1);
        image_manifest_free(m2);
        image_free(v1);
        image_free(v2);
        store_fini(&s);
}

/* The blocks a diff reports, and how many ranges it took. */
struct diff_blocks {
        uint64_t blocks[64];
        size_t n, ranges;
};

static int diff_cb(void *userdata, uint64_t offset, uint64_t length, bool zero) {
        struct diff_blocks *d = userdata;

        d->ranges++;
        for (uint64_t b = offset / IMAGE_BLOCK; b < (offset + length) / IMAGE_BLOCK; b++)
                if (d->n < 64)
                        d->blocks[d->n++] = b;
        return 0;
}

TEST(the_diff_of_two_versions_lists_exactly_the_changed_blocks) {
        /* 2048 blocks from 3000 on (across the end of the template's data), then 1% of
         * them changed: 18 scattered, a pair of neighbours (one range), one new block;
         * one block rewritten with the same bytes does not count. */
        static const uint64_t changed[] = { 3000, 3100, 3101, 3333, 3500, 3777, 3901,
                                            4000, 4095, 4096, 4200, 4321, 4400, 4500,
                                            4600, 4700, 4800, 4900, 5000, 5047, 12000 };
        const size_t n_changed = sizeof(changed) / sizeof(changed[0]);
        struct store s;
        struct image *img = NULL;
        struct image_manifest *a = NULL, *b = NULL;
        struct diff_blocks d = { .n = 0 };
        uint8_t *buf = malloc(2048 * IMAGE_BLOCK);
        char p[256];
        int r;

        CHECK(store_init(&s) == 0);
        path_in(&s, "versions/v3/disk.qcow2", p, sizeof(p));
        CHECK(buf && image_create_overlay(s.tpl, p) == 0 && image_open(p, true, &img) == 0);
        if (!img || !buf)
                goto out;
        for (uint64_t i = 0; i < 2048; i++)
                fill(buf + i * IMAGE_BLOCK, IMAGE_BLOCK, 3000 + i);
        CHECK(image_write(img, buf, 2048 * IMAGE_BLOCK, 3000 * IMAGE_BLOCK) == 0);
        CHECK(image_manifest_compute(img, &a) == 0);
        r = 0;
        for (size_t i = 0; !r && i < n_changed; i++)
                r = write_block(img, changed[i], 777777 + changed[i]);
        CHECK(r == 0);
        CHECK(write_block(img, 3200, 3200) == 0); /* the same bytes again */
        CHECK(image_manifest_compute(img, &b) == 0);
        if (!a || !b)
                goto out;
        CHECK(image_manifest_count(a) == 2048);
        CHECK(image_manifest_count(b) == 2049);
        CHECK(image_manifest_diff(a, b, diff_cb, &d) == 0);
        CHECK(d.n == n_changed);
        for (size_t i = 0; i < n_changed && i < d.n; i++)
                CHECK(d.blocks[i] == changed[i]);
        /* 3100 and 3101 share a range; 4095 and 4096 too. */
        CHECK(d.ranges == n_changed - 2);
        /* Against nothing: all of b, coalesced into [3000, 5048) and 12000. */
        d = (struct diff_blocks){ .n = 0 };
        CHECK(image_manifest_diff(NULL, b, diff_cb, &d) == 0 && d.ranges == 2);
        {
                /* What a holder of a needs to learn b: a patch of the changed entries,
                 * which gives b back exactly; both ways; a damaged patch is refused. */
                void *patch = NULL, *full = NULL, *back = NULL;
                size_t patch_len = 0, full_len = 0, back_len = 0;
                struct image_manifest *b2 = NULL, *a2 = NULL;
                uint8_t want[IMAGE_DIGEST_SIZE], got[IMAGE_DIGEST_SIZE];
                CHECK(image_manifest_patch_encode(a, b, &patch, &patch_len) == 0);
                CHECK(image_manifest_encode(b, &full, &full_len) == 0);
                CHECK(patch_len < full_len / 20);
                CHECK(image_manifest_patch_apply(a, patch, patch_len, &b2) == 0);
                image_manifest_digest(b, want);
                if (b2)
                        image_manifest_digest(b2, got);
                CHECK(b2 && !memcmp(want, got, sizeof(want)));
                CHECK(image_manifest_patch_encode(b, a, &back, &back_len) == 0);
                CHECK(image_manifest_patch_apply(b, back, back_len, &a2) == 0);
                CHECK(a2 && image_manifest_count(a2) == 2048);
                CHECK(image_manifest_patch_apply(a, patch, patch_len - 1, &b2) == -EBADMSG);
                CHECK(image_manifest_patch_apply(a, back, back_len, &a2) ==
                      -EBADMSG); /* drops a lacks */
                ((uint8_t *)patch)[0] ^= 1;
                CHECK(image_manifest_patch_apply(a, patch, patch_len, &b2) == -EBADMSG);
                image_manifest_free(b2);
                image_manifest_free(a2);
                free(patch);
                free(full);
                free(back);
        }
out:
        free(buf);
        image_manifest_free(a);
        image_manifest_free(b);
        image_free(img);
        store_fini(&s);
}

/* ---- encoding --------------------------------------------------------------------- */

/* v1's manifest, encoded; NULL on failure. */
static struct image_manifest *v1_manifest(struct store *s) {
        struct image *img;
        struct image_manifest *m = NULL;

        if (store_init(s) < 0)
                return NULL;
        img = make_v1(s, "versions/v1/disk.qcow2");
        if (img && image_manifest_compute(img, &m) < 0)
                m = NULL;
        image_free(img);
        return m;
}

TEST(a_manifest_survives_encoding_and_a_file) {
        struct store s;
        struct image_manifest *m = v1_manifest(&s), *back = NULL, *loaded = NULL;
        uint8_t d[32], d_back[32], d_loaded[32], d_bytes[32];
        void *enc = NULL, *enc2 = NULL;
        size_t len = 0, len2 = 0;
        char p[256];

        CHECK(m != NULL);
        if (!m)
                goto out;
        CHECK(image_manifest_encode(m, &enc, &len) == 0);
        CHECK(len == 32 + 41 * image_manifest_count(m));
        CHECK(!memcmp(enc, "HMIMGMF\n\x01\0\0\0\0\x10\0\0", 16));
        CHECK(image_manifest_decode(enc, len, &back) == 0);
        CHECK(back && image_manifest_encode(back, &enc2, &len2) == 0);
        CHECK(len2 == len && enc2 && !memcmp(enc, enc2, len));
        /* The digest is the SHA-256 of exactly these bytes. */
        image_manifest_digest(m, d);
        sha256_of(enc, len, d_bytes);
        CHECK(!memcmp(d, d_bytes, 32));
        if (back) {
                image_manifest_digest(back, d_back);
                CHECK(!memcmp(d, d_back, 32));
        }
        path_in(&s, "versions/v1/disk.manifest", p, sizeof(p));
        CHECK(image_manifest_save(m, p) == 0);
        CHECK(image_manifest_load(p, &loaded) == 0);
        if (loaded) {
                image_manifest_digest(loaded, d_loaded);
                CHECK(!memcmp(d, d_loaded, 32));
        }
        /* Saving again replaces the file whole. */
        CHECK(image_manifest_save(m, p) == 0);
        path_in(&s, "versions/v1/missing.manifest", p, sizeof(p));
        CHECK(image_manifest_load(p, &loaded) == -ENOENT);
out:
        free(enc);
        free(enc2);
        image_manifest_free(m);
        image_manifest_free(back);
        image_manifest_free(loaded);
        store_fini(&s);
}

static void le64_put(uint8_t *p, uint64_t v) {
        for (int i = 0; i < 8; i++)
                p[i] = (uint8_t)(v >> (8 * i));
}

/* decode(buf) is refused, and nothing is handed back. */
static bool refused(const void *buf, size_t len) {
        struct image_manifest *m = NULL;
        int r = image_manifest_decode(buf, len, &m);

        image_manifest_free(m);
        return r == -EBADMSG && m == NULL;
}

TEST(the_decoder_refuses_malformed_input) {
        struct store s;
        struct image_manifest *m = v1_manifest(&s), *ok = NULL;
        uint8_t *enc = NULL, *bad = NULL, zeros[IMAGE_BLOCK] = { 0 }, zero_hash[32];
        size_t len = 0;
        bool all = true;
        /* entry i starts at 32 + 41 * i: index (8), flags (1), hash (32) */
#define ENTRY(i) (bad + 32 + 41 * (i))

        CHECK(m && image_manifest_encode(m, (void **)&enc, &len) == 0);
        if (!enc)
                goto out;
        bad = malloc(len + 1);
        sha256_of(zeros, sizeof(zeros), zero_hash);
        /* Every truncation, and one byte too many. */
        for (size_t n = 0; n < len; n++)
                all = all && refused(enc, n);
        CHECK(all);
        memcpy(bad, enc, len);
        bad[len] = 0;
        CHECK(refused(bad, len + 1));
        CHECK(refused(NULL, 0));

#define MUTATE(stmt)                      \
        do {                              \
                memcpy(bad, enc, len);    \
                stmt;                     \
                CHECK(refused(bad, len)); \
        } while (0)
        MUTATE(bad[0] = 'X');                          /* magic */
        MUTATE(bad[8] = 2);                            /* version */
        MUTATE(bad[13] = 0x02);                        /* block size 512 */
        MUTATE(le64_put(bad + 16, TEMPLATE_SIZE + 1)); /* size not whole blocks */
        MUTATE(le64_put(bad + 16, 22 * IMAGE_BLOCK));  /* entries past the end */
        MUTATE(le64_put(bad + 24, 21));                /* count disagrees with length */
        MUTATE(le64_put(bad + 24, UINT64_MAX));
        MUTATE(memcpy(ENTRY(0), enc + 32 + 41, 41); /* unsorted: entries 0 and 1 swapped */
               memcpy(ENTRY(1), enc + 32, 41));
        MUTATE(memcpy(ENTRY(1), enc + 32, 41)); /* duplicate index */
        MUTATE(le64_put(ENTRY(21), BLOCKS));    /* index == blocks */
        MUTATE(le64_put(ENTRY(21), UINT64_MAX));
        MUTATE(ENTRY(0)[8] = 0x02);                  /* unknown flag */
        MUTATE(ENTRY(0)[8] = IMAGE_BLOCK_ZERO);      /* zero flag on a data hash */
        MUTATE(memcpy(ENTRY(0) + 9, zero_hash, 32)); /* the zero hash without the flag */

        /* A changed data hash is still a well-formed manifest (of other content). */
        memcpy(bad, enc, len);
        ENTRY(0)[20] ^= 0x40;
        CHECK(image_manifest_decode(bad, len, &ok) == 0);
        ok = image_manifest_free(ok);

        /* Garbage after a valid header, and every single-bit flip: refused or valid,
         * never read out of bounds (the sanitizers watch). */
        srand(7);
        for (int round = 0; round < 2000; round++) {
                size_t n = 32 + (size_t)rand() % (len - 32);
                int r;

                memcpy(bad, enc, 32);
                for (size_t i = 32; i < n; i++)
                        bad[i] = (uint8_t)rand();
                r = image_manifest_decode(bad, n, &ok);
                all = all && (r == -EBADMSG || r == 0);
                ok = image_manifest_free(ok);
        }
        for (size_t bit = 0; bit < len * 8; bit++) {
                int r;

                memcpy(bad, enc, len);
                bad[bit / 8] ^= (uint8_t)(1u << (bit % 8));
                r = image_manifest_decode(bad, len, &ok);
                all = all && (r == -EBADMSG || r == 0);
                /* Only the size, an index or a data block's hash may change and still
                 * decode; magic, version, block size, count and flags never. */
                if (r == 0)
                        all = all && ((bit / 8 >= 16 && bit / 8 < 24) ||
                                      (bit / 8 >= 32 && (bit / 8 - 32) % 41 != 8));
                ok = image_manifest_free(ok);
        }
        CHECK(all);
#undef MUTATE
#undef ENTRY
out:
        free(bad);
        free(enc);
        image_manifest_free(m);
        store_fini(&s);
}

TEST(digests_print_and_parse_as_hex) {
        uint8_t d[32], back[32];
        char hex[65];

        for (int i = 0; i < 32; i++)
                d[i] = (uint8_t)(i * 37 + 5);
        image_digest_hex(d, hex);
        CHECK(strlen(hex) == 64);
        CHECK(!strncmp(hex, "052a4f", 6));
        CHECK(image_digest_parse(hex, back) == 0 && !memcmp(d, back, 32));
        hex[0] = 'F';
        hex[1] = 'A';
        CHECK(image_digest_parse(hex, back) == 0 && back[0] == 0xfa);
        hex[5] = 'g';
        CHECK(image_digest_parse(hex, back) == -EINVAL);
        CHECK(image_digest_parse("abcd", back) == -EINVAL);
        CHECK(image_digest_parse(NULL, back) == -EINVAL);
}

/* ---- checking -------------------------------------------------------------------- */

static uint64_t be64_at(int fd, off_t off) {
        uint8_t b[8];
        uint64_t v = 0;

        if (pread(fd, b, 8, off) != 8)
                return 0;
        for (int i = 0; i < 8; i++)
                v = v << 8 | b[i];
        return v;
}

TEST(image_check_passes_good_images_and_flags_broken_ones) {
        struct store s;
        struct image *img = NULL;
        char p[256], err[512];
        uint64_t refcount_block, bad_l1 = 0x30123;
        uint8_t zero16[2] = { 0, 0 }, be[8];
        int fd;

        CHECK(store_init(&s) == 0);
        CHECK(image_check(s.tpl, err, sizeof(err)) == 0);
        img = make_v1(&s, "versions/v1/disk.qcow2");
        image_free(img);
        path_in(&s, "versions/v1/disk.qcow2", p, sizeof(p));
        CHECK(image_check(p, err, sizeof(err)) == 0);

        /* Cluster 0 (the header) claimed by nobody: refcount block entry 0 set to 0.
         * The refcount table's offset is at byte 48 of the header, big-endian. */
        fd = open(p, O_RDWR);
        CHECK(fd >= 0);
        refcount_block = be64_at(fd, (off_t)be64_at(fd, 48));
        CHECK(refcount_block > 0);
        CHECK(pwrite(fd, zero16, 2, (off_t)refcount_block) == 2);
        close(fd);
        CHECK(image_check(p, err, sizeof(err)) == -EUCLEAN);
        printf("# refcount: %s\n", err);
        CHECK(strstr(err, "1 corruptions") != NULL);

        /* The L1 table's offset (byte 40) no longer cluster-aligned: qemu cannot open it. */
        fd = open(s.tpl, O_RDWR);
        for (int i = 0; i < 8; i++)
                be[i] = (uint8_t)(bad_l1 >> (56 - 8 * i));
        CHECK(fd >= 0 && pwrite(fd, be, 8, 40) == 8);
        close(fd);
        CHECK(image_check(s.tpl, err, sizeof(err)) == -EIO);
        printf("# l1: %s\n", err);
        CHECK(strstr(err, "L1") != NULL);
        CHECK(image_check("/nonexistent.qcow2", err, sizeof(err)) == -EIO);
        store_fini(&s);
}

/* Hashes blocks [first, first + 512) of a pattern with image_block_sha256 and with Nettle. */
static void *block_hashes_agree(void *arg) {
        uint64_t first = (uint64_t)(uintptr_t)arg;
        uint8_t block[IMAGE_BLOCK], got[32], want[32];
        uintptr_t differ = 0;

        for (uint64_t b = first; b < first + 512; b++) {
                fill(block, sizeof(block), b);
                image_block_sha256(block, got);
                sha256_of(block, sizeof(block), want);
                differ += memcmp(got, want, sizeof(got)) != 0;
        }
        return (void *)differ;
}

TEST(a_blocks_hash_is_its_sha256_from_any_thread) {
        static const uint8_t zero[IMAGE_BLOCK];
        uint8_t got[32], want[32];
        pthread_t threads[4];
        void *differ;

        image_block_sha256(zero, got);
        sha256_of(zero, sizeof(zero), want);
        CHECK(!memcmp(got, want, sizeof(got)));
        CHECK(got[0] == 0xad && got[31] == 0xa7); /* ad7facb2…48892ca7 */
        for (uintptr_t i = 0; i < 4; i++)
                CHECK(pthread_create(&threads[i], NULL, block_hashes_agree, (void *)(i * 512)) ==
                      0);
        for (int i = 0; i < 4; i++) {
                CHECK(pthread_join(threads[i], &differ) == 0);
                CHECK(differ == NULL);
        }
}

TEST(a_hasher_gives_every_blocks_hash_job_after_job) {
        enum { MAX = 512 };
        uint8_t *data = malloc((size_t)MAX * IMAGE_BLOCK);
        uint8_t(*got)[32] = calloc(MAX, 32), (*want)[32] = calloc(MAX, 32);
        static const uint8_t none[32];
        struct image_hasher *h = NULL;
        size_t wrong = 0;

        CHECK(data && got && want && image_hasher_new(&h) == 0);
        if (!data || !got || !want || !h)
                goto out;
        fill(data, (size_t)MAX * IMAGE_BLOCK, 7);
        for (size_t i = 0; i < MAX; i++)
                sha256_of(data + i * IMAGE_BLOCK, IMAGE_BLOCK, want[i]);
        /* Sizes around the share (8 blocks), the helper sometimes late for a job. */
        for (size_t run = 0; run < 200; run++) {
                size_t n = run % 3 == 0 ? MAX : run % 17, first = run % 5;
                if (first + n > MAX)
                        n = MAX - first;
                memset(got, 0, (size_t)MAX * 32);
                image_hasher_run(h, data + first * IMAGE_BLOCK, n, got);
                for (size_t i = 0; i < MAX; i++)
                        wrong += memcmp(got[i], i < n ? want[first + i] : none, 32) != 0;
        }
        CHECK(wrong == 0);
out:
        image_hasher_free(h);
        CHECK(image_hasher_free(NULL) == NULL);
        free(want);
        free(got);
        free(data);
}

TAP_MAIN(TAP_TEST(an_overlay_records_its_template_by_a_relative_path),
         TAP_TEST(an_overlay_has_its_templates_size_and_reads_through_to_it),
         TAP_TEST(a_read_only_image_refuses_writes_and_qemu_nbd_is_reaped),
         TAP_TEST(own_extents_are_the_overlays_writes_not_the_templates_data),
         TAP_TEST(a_partial_write_allocates_its_whole_4k_block),
         TAP_TEST(writes_outlive_image_free_even_unflushed),
         TAP_TEST(a_callback_error_stops_the_walk_and_comes_back),
         TAP_TEST(pipelined_reads_come_in_order_and_stop_cleanly),
         TAP_TEST(queued_writes_land_in_order_and_read_ahead_gives_them_back),
         TAP_TEST(a_queued_zero_range_longer_than_four_gib_is_written_in_requests_nbd_accepts),
         TAP_TEST(reserved_writes_are_checked_before_they_are_written_and_a_refusal_stops_the_rest),
         TAP_TEST(the_file_map_places_the_top_layers_data_and_nothing_else),
         TAP_TEST(a_manifest_holds_exactly_the_written_blocks_and_their_hashes),
         TAP_TEST(a_version_rebuilt_from_the_diff_has_the_same_digest),
         TAP_TEST(the_diff_of_two_versions_lists_exactly_the_changed_blocks),
         TAP_TEST(a_manifest_survives_encoding_and_a_file),
         TAP_TEST(the_decoder_refuses_malformed_input), TAP_TEST(digests_print_and_parse_as_hex),
         TAP_TEST(a_blocks_hash_is_its_sha256_from_any_thread),
         TAP_TEST(a_hasher_gives_every_blocks_hash_job_after_job),
         TAP_TEST(image_check_passes_good_images_and_flags_broken_ones))
