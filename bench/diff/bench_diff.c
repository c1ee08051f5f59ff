/*
 * bench-diff — how long the diff of two versions of a snapshot takes
 * (configuration and changed disk regions, what `homing diff` computes),
 * in seconds per GiB of virtual disk.
 *
 * A 1 GiB template with 256 MiB of data; version A, an overlay with 256 MiB
 * of its own in 1 MiB runs spread over the disk; version B, the same plus
 * `changed_permille` of the disk (10: 1 %) rewritten in 64 KiB runs, half
 * inside A's runs and half where only the template is (those blocks are
 * compared with the template's). Their manifests and configurations are
 * saved as a store holds them (not timed). Timed: loading both manifests
 * and configurations from their files, diff_config and diff_disk.
 *
 * usage: bench-diff [changed_permille] [runs]
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/clock.h"
#include "diff/diff.h"

#define MiB (1024ull * 1024)
#define GiB (1024 * MiB)
#define RUN (64 * 1024ull)

static char dir[] = "/tmp/bench-diff-XXXXXX";

static void path(char *out, size_t size, const char *name) {
        snprintf(out, size, "%s/%s", dir, name);
}

static void fill(uint8_t *buf, size_t len, uint64_t seed) {
        uint64_t x = seed * 0x9e3779b97f4a7c15ull + 1;

        for (size_t i = 0; i + 8 <= len; i += 8) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                memcpy(buf + i, &x, 8);
        }
}

/* A VM's configuration of some 60 items; `variant` changes three of them. */
static json_t *config(int variant) {
        json_t *c = json_pack("{s:i, s:i, s:s, s:{s:s, s:s}, s:[]}", "vcpus", variant ? 4 : 2,
                              "memory_mib", 4096, "machine", "q35", "meta", "owner", "ann", "team",
                              variant ? "ops" : "dev", "nics");
        for (int i = 0; i < 8; i++)
                json_array_append_new(json_object_get(c, "nics"),
                                      json_pack("{s:s, s:i, s:s}", "net",
                                                variant && i == 3 ? "wan" : "lan", "queues", 4,
                                                "model", "virtio"));
        for (int i = 0; i < 30; i++) {
                char key[32];
                snprintf(key, sizeof(key), "opt_%02d", i);
                json_object_set_new(c, key, json_integer(i));
        }
        return c;
}

static int write_version(const char *tpl, const char *name, uint64_t changed, uint8_t *buf) {
        char p[128];
        struct image *img = NULL;
        int r;

        path(p, sizeof(p), name);
        r = image_create_overlay(tpl, p);
        r = r ? r : image_open(p, true, &img);
        /* 256 runs of 1 MiB, one every 4 MiB, the same in both versions. */
        for (uint64_t i = 0; !r && i < 256; i++) {
                fill(buf, MiB, i);
                r = image_write(img, buf, MiB, i * 4 * MiB);
        }
        /* `changed` bytes in 64 KiB runs: even ones inside A's runs, odd ones between. */
        for (uint64_t i = 0; !r && i < changed / RUN; i++) {
                uint64_t slot = i * (GiB / 8 / (changed / RUN + 1)) * 8 / (4 * MiB) % 256;
                uint64_t off = slot * 4 * MiB + (i % 2 ? 2 * MiB : 0) + (i / 2 % 8) * RUN;
                fill(buf, RUN, 100000 + i);
                r = image_write(img, buf, RUN, off);
        }
        r = r ? r : image_flush(img);
        image_free(img);
        return r;
}

static int save_manifest(const char *name, const char *manifest) {
        char p[128], m[128];
        struct image *img = NULL;
        struct image_manifest *mf = NULL;
        int r;

        path(p, sizeof(p), name);
        path(m, sizeof(m), manifest);
        r = image_open(p, false, &img);
        r = r ? r : image_manifest_compute(img, &mf);
        r = r ? r : image_manifest_save(mf, m);
        image_manifest_free(mf);
        image_free(img);
        return r;
}

static int cmp_double(const void *a, const void *b) {
        double x = *(const double *)a, y = *(const double *)b;
        return (x > y) - (x < y);
}

int main(int argc, char **argv) {
        uint64_t permille = argc > 1 ? strtoull(argv[1], NULL, 10) : 10;
        int runs = argc > 2 ? atoi(argv[2]) : 7;
        uint64_t changed = GiB * permille / 1000 / RUN * RUN;
        char tpl[128], ma[128], mb[128], ca[128], cb[128];
        uint8_t *buf = malloc(MiB);
        struct image *img = NULL;
        double *t = calloc((size_t)(runs > 0 ? runs : 1), sizeof(double));
        size_t n_changes = 0, n_extents = 0;
        uint64_t changed_bytes = 0, reads = 0;
        int r, ret = 1;

        if (!buf || !t || runs < 1 || !mkdtemp(dir))
                goto out;
        path(tpl, sizeof(tpl), "tpl.qcow2");
        path(ma, sizeof(ma), "v1.manifest");
        path(mb, sizeof(mb), "v2.manifest");
        path(ca, sizeof(ca), "v1.json");
        path(cb, sizeof(cb), "v2.json");
        r = image_create(tpl, GiB);
        r = r ? r : image_open(tpl, true, &img);
        for (uint64_t i = 0; !r && i < 256; i++) {
                fill(buf, MiB, 5000 + i);
                r = image_write(img, buf, MiB, i * MiB);
        }
        r = r ? r : image_flush(img);
        img = image_free(img);
        r = r ? r : write_version(tpl, "v1.qcow2", 0, buf);
        r = r ? r : write_version(tpl, "v2.qcow2", changed, buf);
        r = r ? r : save_manifest("v1.qcow2", "v1.manifest");
        r = r ? r : save_manifest("v2.qcow2", "v2.manifest");
        if (!r) {
                json_t *a = config(0), *b = config(1);
                r = json_dump_file(a, ca, JSON_COMPACT | JSON_SORT_KEYS) ||
                                    json_dump_file(b, cb, JSON_COMPACT | JSON_SORT_KEYS)
                            ? -5
                            : 0;
                json_decref(a);
                json_decref(b);
        }
        if (r) {
                fprintf(stderr, "bench-diff: setup: %s\n", strerror(-r));
                goto out;
        }
        printf("1 GiB disk, template 256 MiB of data, versions 256 MiB allocated, "
               "%.2f MiB (%.1f %%) rewritten in 64 KiB runs\n",
               (double)changed / MiB, 100.0 * (double)changed / GiB);

        for (int i = 0; i < runs && !r; i++) {
                struct image_manifest *a = NULL, *b = NULL;
                json_t *x = NULL, *y = NULL, *changes = NULL, *patch = NULL;
                struct diff_disk d = { 0 };
                double t0 = clock_mono_s();

                r = image_manifest_load(ma, &a);
                r = r ? r : image_manifest_load(mb, &b);
                x = json_load_file(ca, 0, NULL);
                y = json_load_file(cb, 0, NULL);
                r = r ? r : (!x || !y) ? -22 : 0;
                r = r ? r : diff_config(x, y, &changes, &patch);
                r = r ? r : diff_disk(a, b, tpl, &d);
                t[i] = clock_mono_s() - t0;
                n_changes = json_array_size(changes);
                n_extents = d.n;
                changed_bytes = d.changed_bytes;
                reads = d.template_reads;
                diff_disk_fini(&d);
                json_decref(changes);
                json_decref(patch);
                json_decref(x);
                json_decref(y);
                image_manifest_free(a);
                image_manifest_free(b);
        }
        if (r) {
                fprintf(stderr, "bench-diff: %s\n", strerror(-r));
                goto out;
        }
        printf("config changes %zu, extents %zu, changed %.2f MiB, template blocks read %llu\n",
               n_changes, n_extents, (double)changed_bytes / MiB, (unsigned long long)reads);
        qsort(t, (size_t)runs, sizeof(double), cmp_double);
        printf("diff (config + disk regions): best %.4f s, median %.4f s, worst %.4f s "
               "per GiB over %d runs\n",
               t[0], t[runs / 2], t[runs - 1], runs);
        ret = 0;
out:
        for (const char *f = "tpl.qcow2\0v1.qcow2\0v2.qcow2\0v1.manifest\0v2.manifest\0"
                             "v1.json\0v2.json\0";
             *f; f += strlen(f) + 1) {
                char p[128];
                path(p, sizeof(p), f);
                unlink(p);
        }
        rmdir(dir);
        free(t);
        free(buf);
        return ret;
}
