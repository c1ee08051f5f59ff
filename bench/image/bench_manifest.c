/*
 * bench-manifest — how fast image_manifest_compute hashes a version's top
 * layer, in MB/s of allocated data, against what its two halves cost alone
 * (reading the extents through qemu-nbd, SHA-256 of 4 KiB blocks).
 *
 * A 1 GiB template with nothing in it and an overlay with `allocated_mib`
 * of random data, either in 1 MiB runs spread evenly (a booted guest) or as
 * single 4 KiB blocks spread evenly (the worst case: one extent per block).
 *
 * usage: bench-manifest [allocated_mib] [runs|blocks]
 */
#include <nettle/sha2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "base/clock.h"
#include "image/image.h"

#define MiB (1024ull * 1024)
#define GiB (1024 * MiB)

struct extents {
        uint64_t *offset, *length;
        size_t n, cap;
};

static int collect(void *userdata, uint64_t offset, uint64_t length, bool zero) {
        struct extents *x = userdata;

        if (x->n == x->cap) {
                x->cap = x->cap ? 2 * x->cap : 1024;
                x->offset = realloc(x->offset, x->cap * sizeof(uint64_t));
                x->length = realloc(x->length, x->cap * sizeof(uint64_t));
                if (!x->offset || !x->length)
                        return -1;
        }
        x->offset[x->n] = offset;
        x->length[x->n++] = length;
        return 0;
}

int main(int argc, char **argv) {
        uint64_t allocated = (argc > 1 ? strtoull(argv[1], NULL, 10) : 256) * MiB;
        bool blocks = argc > 2 && !strcmp(argv[2], "blocks");
        uint64_t unit = blocks ? IMAGE_BLOCK : MiB, n = allocated / unit, stride = GiB / n;
        char dir[] = "/tmp/bench-manifest-XXXXXX", tpl[64], ovl[64];
        uint8_t *buf = malloc(4 * MiB), digest[32];
        struct image *img = NULL;
        struct image_manifest *m = NULL;
        struct extents x = { 0 };
        struct sha256_ctx ctx;
        double t0, t_read, t_hash, t_manifest, mb = (double)allocated / 1e6;
        int r;

        if (!buf || !mkdtemp(dir) || n == 0 || stride < unit) {
                free(buf);
                return 1;
        }
        snprintf(tpl, sizeof(tpl), "%s/tpl.qcow2", dir);
        snprintf(ovl, sizeof(ovl), "%s/v1.qcow2", dir);
        srand(1);
        for (size_t i = 0; i < 4 * MiB; i++)
                buf[i] = (uint8_t)rand();
        r = image_create(tpl, GiB);
        if (!r)
                r = image_create_overlay(tpl, ovl);
        if (!r)
                r = image_open(ovl, true, &img);
        for (uint64_t i = 0; !r && i < n; i++)
                r = image_write(img, buf + (i * unit) % (4 * MiB - unit), unit, i * stride);
        if (!r)
                r = image_flush(img);
        img = image_free(img);
        if (r) {
                fprintf(stderr, "bench-manifest: setup: %s\n", strerror(-r));
                return 1;
        }
        printf("overlay: 1 GiB, %.0f MiB allocated as %llu %s\n", (double)allocated / MiB,
               (unsigned long long)n, blocks ? "4 KiB blocks" : "1 MiB runs");

        /* Each measurement on a fresh qemu-nbd; the file is in the page cache by now. */
        r = image_open(ovl, false, &img);
        t0 = clock_mono_s();
        r = r ? r : image_own_extents(img, collect, &x);
        for (size_t i = 0; !r && i < x.n; i++)
                for (uint64_t done = 0; !r && done < x.length[i]; done += 4 * MiB) {
                        uint64_t len = x.length[i] - done < 4 * MiB ? x.length[i] - done : 4 * MiB;
                        r = image_read(img, buf, len, x.offset[i] + done);
                }
        t_read = clock_mono_s() - t0;
        img = image_free(img);

        t0 = clock_mono_s();
        for (uint64_t done = 0; done < allocated; done += IMAGE_BLOCK) {
                sha256_init(&ctx);
                sha256_update(&ctx, IMAGE_BLOCK, buf + done % (4 * MiB));
                sha256_digest(&ctx, 32, digest);
        }
        t_hash = clock_mono_s() - t0;

        r = r ? r : image_open(ovl, false, &img);
        t0 = clock_mono_s();
        r = r ? r : image_manifest_compute(img, &m);
        t_manifest = clock_mono_s() - t0;
        if (r) {
                fprintf(stderr, "bench-manifest: %s\n", strerror(-r));
                return 1;
        }
        printf("extents %zu, entries %zu\n", x.n, image_manifest_count(m));
        printf("extents + reads alone: %8.0f MB/s\n", mb / t_read);
        printf("sha-256 alone:         %8.0f MB/s\n", mb / t_hash);
        printf("image_manifest_compute:%8.0f MB/s (%.3f s)\n", mb / t_manifest, t_manifest);

        image_manifest_free(m);
        image_free(img);
        unlink(ovl);
        unlink(tpl);
        rmdir(dir);
        free(x.offset);
        free(x.length);
        free(buf);
        return 0;
}
