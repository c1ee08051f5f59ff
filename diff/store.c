/*
 * Versions of a snapshot in a datacenter's store (agent/README.md:
 * <store>/snapshots/<id>/v<N>.qcow2 with its .manifest and .json): their
 * diff, and a new version composed of a base version with chosen items of
 * another. A composed version is a fresh overlay on the template: the
 * base's top-layer blocks outside the chosen extents and the other's
 * inside, copied through qemu-nbd (image_reader, image_writer), so it
 * reads through to the template exactly where its sources do. It is built
 * under ".partial" names, its manifest recomputed from what was written and
 * checked block for block against what was meant, and only then linked into
 * place (never over an existing version).
 */
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "diff/diff.h"

struct version {
        long long n;
        char image[PATH_MAX], manifest_path[PATH_MAX], config_path[PATH_MAX];
        char template[PATH_MAX]; /* resolved through symlinks */
        struct image_manifest *m;
        json_t *config;
};

static int fail(char *err, size_t size, int r, const char *fmt, ...) {
        va_list ap;

        if (size) {
                va_start(ap, fmt);
                vsnprintf(err, size, fmt, ap);
                va_end(ap);
        }
        return r;
}

static void version_fini(struct version *v) {
        v->m = image_manifest_free(v->m);
        json_decref(v->config);
        v->config = NULL;
}

/* An id that names one folder of a store: no separators, never "." or "..". */
static bool id_plain(const char *id) {
        return id && *id && strlen(id) < 128 && !strchr(id, '/') && strcmp(id, ".") &&
               strcmp(id, "..");
}

static int version_paths(const char *store, const char *snapshot, long long n, struct version *v,
                         char *err, size_t size) {
        memset(v, 0, sizeof(*v));
        v->n = n;
        if (!id_plain(snapshot))
                return fail(err, size, -EINVAL, "'%s' is not a snapshot id",
                            snapshot ? snapshot : "");
        if (n < 1)
                return fail(err, size, -EINVAL, "a version is a positive integer");
        if (snprintf(v->image, sizeof(v->image), "%s/snapshots/%s/v%lld.qcow2", store, snapshot,
                     n) >= (int)sizeof(v->image))
                return fail(err, size, -ENAMETOOLONG, "the store's path is too long");
        snprintf(v->manifest_path, sizeof(v->manifest_path), "%s/snapshots/%s/v%lld.manifest",
                 store, snapshot, n);
        snprintf(v->config_path, sizeof(v->config_path), "%s/snapshots/%s/v%lld.json", store,
                 snapshot, n);
        return 0;
}

/* Loads version n: its manifest, its configuration and where its template is. */
static int version_load(const char *store, const char *snapshot, long long n, struct version *v,
                        char *err, size_t size) {
        char backing[PATH_MAX], joined[2 * PATH_MAX], *slash;
        json_error_t jerr;
        int r = version_paths(store, snapshot, n, v, err, size);

        if (r < 0)
                return r;
        if (access(v->image, F_OK) != 0)
                return fail(err, size, -ENOENT, "snapshot %s has no version %lld in %s", snapshot,
                            n, store);
        r = image_manifest_load(v->manifest_path, &v->m);
        if (r == -ENOENT)
                return fail(err, size, r, "version %lld has no manifest (%s): register it first", n,
                            v->manifest_path);
        if (r < 0)
                return fail(err, size, r, "%s: %s", v->manifest_path, strerror(-r));
        v->config = json_load_file(v->config_path, JSON_REJECT_DUPLICATES, &jerr);
        if (!json_is_object(v->config)) {
                r = access(v->config_path, F_OK) != 0 ? -ENOENT : -EBADMSG;
                version_fini(v);
                return fail(err, size, r, "%s: %s", v->config_path,
                            r == -ENOENT ? "missing" : "not a JSON object");
        }
        r = image_info_backing(v->image, backing, sizeof(backing));
        if (r < 0) {
                version_fini(v);
                return fail(err, size, r == -ENODATA ? -EXDEV : r, "%s: %s", v->image,
                            r == -ENODATA ? "not an overlay" : "qemu-img info failed");
        }
        strcpy(joined, v->image);
        slash = strrchr(joined, '/');
        if (backing[0] == '/')
                strcpy(joined, backing);
        else
                snprintf(slash + 1, sizeof(joined) - (size_t)(slash + 1 - joined), "%s", backing);
        if (!realpath(joined, v->template)) {
                r = -errno;
                version_fini(v);
                return fail(err, size, r, "%s: its template %s: %s", v->image, joined,
                            strerror(-r));
        }
        return 0;
}

/* Both versions, which must be overlays of one template. */
static int load_pair(const char *store, const char *snapshot, long long na, long long nb,
                     struct version *a, struct version *b, char *err, size_t size) {
        int r = version_load(store, snapshot, na, a, err, size);

        if (r < 0)
                return r;
        r = version_load(store, snapshot, nb, b, err, size);
        if (r < 0) {
                version_fini(a);
                return r;
        }
        if (strcmp(a->template, b->template) != 0 ||
            image_manifest_virtual_size(a->m) != image_manifest_virtual_size(b->m)) {
                version_fini(a);
                version_fini(b);
                return fail(err, size, -EXDEV,
                            "versions %lld and %lld are not overlays of one template", na, nb);
        }
        return 0;
}

static json_t *extents_json(const struct diff_extent *x, size_t n) {
        json_t *a = json_array();

        for (size_t i = 0; a && i < n; i++)
                if (json_array_append_new(a,
                                          json_pack("{s:I, s:I}", "offset", (json_int_t)x[i].offset,
                                                    "length", (json_int_t)x[i].length))) {
                        json_decref(a);
                        return NULL;
                }
        return a;
}

static json_t *strings_json(const char *const *v, size_t n) {
        json_t *a = json_array();

        for (size_t i = 0; a && i < n; i++)
                if (json_array_append_new(a, json_string(v[i]))) {
                        json_decref(a);
                        return NULL;
                }
        return a;
}

int diff_store_versions(const char *store, const char *snapshot, long long va, long long vb,
                        json_t **out, char *err, size_t err_size) {
        struct version a, b;
        struct diff_disk d = { 0 };
        json_t *changes = NULL, *patch = NULL, *extents = NULL;
        int r = load_pair(store, snapshot, va, vb, &a, &b, err, err_size);

        if (r < 0)
                return r;
        r = diff_config(a.config, b.config, &changes, &patch);
        if (r == 0)
                r = diff_disk(a.m, b.m, a.template, &d);
        if (r < 0) {
                fail(err, err_size, r, "diff of versions %lld and %lld: %s", va, vb, strerror(-r));
                goto out;
        }
        extents = extents_json(d.extents, d.n);
        *out = json_pack("{s:s, s:I, s:I, s:{s:o, s:o}, s:{s:I, s:I, s:I, s:o}}", "snapshot_id",
                         snapshot, "from", (json_int_t)va, "to", (json_int_t)vb, "config",
                         "changes", changes, "patch", patch, "disk", "virtual_size",
                         (json_int_t)d.virtual_size, "changed_bytes", (json_int_t)d.changed_bytes,
                         "template_blocks_read", (json_int_t)d.template_reads, "extents", extents);
        changes = patch = NULL; /* "o" took them, also on failure */
        if (!*out)
                r = fail(err, err_size, -ENOMEM, "out of memory");
out:
        json_decref(changes);
        json_decref(patch);
        diff_disk_fini(&d);
        version_fini(&a);
        version_fini(&b);
        return r;
}

int diff_store_files(const char *store, const char *snapshot, long long va, long long vb,
                     diff_progress_fn progress, void *userdata, json_t **out, char *err,
                     size_t err_size) {
        struct version a, b;
        json_t *files = NULL;
        int r = load_pair(store, snapshot, va, vb, &a, &b, err, err_size);

        if (r < 0)
                return r;
        r = diff_files(a.image, b.image, progress, userdata, &files, err, err_size);
        if (r == 0) {
                *out = json_pack("{s:s, s:I, s:I, s:o}", "snapshot_id", snapshot, "from",
                                 (json_int_t)va, "to", (json_int_t)vb, "files", files);
                if (!*out)
                        r = fail(err, err_size, -ENOMEM, "out of memory");
        }
        version_fini(&a);
        version_fini(&b);
        return r;
}

/* ---- compose ----------------------------------------------------------------------- */

static int extent_cmp(const void *x, const void *y) {
        const struct diff_extent *a = x, *b = y;
        return (a->offset > b->offset) - (a->offset < b->offset);
}

/*
 * The chosen extents, checked (whole blocks, inside the disk, not empty),
 * sorted and merged where they overlap or touch, into *out (malloc'd).
 */
static int extents_check(const struct diff_compose *c, uint64_t size, struct diff_extent **out,
                         size_t *n, char *err, size_t err_size) {
        size_t k = c->whole_disk ? 1 : c->n_extents, m = 0;
        struct diff_extent *x = malloc((k ? k : 1) * sizeof(*x));

        if (!x)
                return fail(err, err_size, -ENOMEM, "out of memory");
        if (c->whole_disk)
                x[0] = (struct diff_extent){ 0, size };
        else if (k)
                memcpy(x, c->extents, k * sizeof(*x));
        for (size_t i = 0; i < k; i++) {
                struct diff_extent e = x[i];
                if (e.offset % IMAGE_BLOCK || e.length % IMAGE_BLOCK || e.length == 0) {
                        free(x);
                        return fail(err, err_size, -EINVAL,
                                    "extent %llu:%llu is not whole blocks of %u bytes",
                                    (unsigned long long)e.offset, (unsigned long long)e.length,
                                    IMAGE_BLOCK);
                }
                if (e.offset >= size || e.length > size - e.offset) {
                        free(x);
                        return fail(err, err_size, -EINVAL,
                                    "extent %llu:%llu lies outside the disk (%llu bytes)",
                                    (unsigned long long)e.offset, (unsigned long long)e.length,
                                    (unsigned long long)size);
                }
        }
        qsort(x, k, sizeof(*x), extent_cmp);
        for (size_t i = 0; i < k; i++) {
                if (m && x[m - 1].offset + x[m - 1].length >= x[i].offset) {
                        uint64_t end = x[i].offset + x[i].length;
                        if (end > x[m - 1].offset + x[m - 1].length)
                                x[m - 1].length = end - x[m - 1].offset;
                } else {
                        x[m++] = x[i];
                }
        }
        *out = x;
        *n = m;
        return 0;
}

/* Whether block `index` lies in the extents; *k moves forward with increasing indexes. */
static bool inside(const struct diff_extent *x, size_t n, size_t *k, uint64_t index) {
        uint64_t off = index * IMAGE_BLOCK;

        while (*k < n && x[*k].offset + x[*k].length <= off)
                (*k)++;
        return *k < n && x[*k].offset <= off;
}

/* The entry block `index` of the composed version must have, or NULL. */
static const struct image_block_hash *meant(const struct version *base, const struct version *from,
                                            const struct diff_extent *x, size_t n, size_t *k,
                                            uint64_t index) {
        return image_manifest_lookup(inside(x, n, k, index) ? from->m : base->m, index);
}

/* How many blocks the composed version's top layer must hold. */
static size_t count_meant(const struct version *base, const struct version *from,
                          const struct diff_extent *x, size_t n) {
        size_t count = 0, k = 0;

        for (size_t i = 0; i < image_manifest_count(base->m); i++)
                count += !inside(x, n, &k, image_manifest_entry(base->m, i)->index);
        k = 0;
        for (size_t i = 0; i < image_manifest_count(from->m); i++)
                count += inside(x, n, &k, image_manifest_entry(from->m, i)->index);
        return count;
}

/*
 * Copies the top-layer blocks of `src` that lie inside the extents (or
 * outside, `want_inside` false) to the writer: zero blocks as zeroes, data
 * through a reader. Adds the blocks copied to *count.
 */
static int copy_blocks(const struct version *src, bool want_inside, const struct diff_extent *x,
                       size_t n, struct image_writer *w, size_t *count) {
        size_t total = image_manifest_count(src->m), k = 0, ns = 0, cap = 0;
        struct image_span *spans = NULL;
        struct image *img = NULL;
        struct image_reader *rd = NULL;
        int r = 0;

        for (size_t i = 0; r == 0 && i < total; i++) {
                const struct image_block_hash *e = image_manifest_entry(src->m, i);
                uint64_t off = e->index * IMAGE_BLOCK;

                if (inside(x, n, &k, e->index) != want_inside)
                        continue;
                (*count)++;
                if (e->flags & IMAGE_BLOCK_ZERO) {
                        r = image_writer_zero(w, IMAGE_BLOCK, off);
                        continue;
                }
                if (ns && spans[ns - 1].offset + spans[ns - 1].length == off) {
                        spans[ns - 1].length += IMAGE_BLOCK;
                        continue;
                }
                if (ns == cap) {
                        struct image_span *s =
                                realloc(spans, (cap = cap ? 2 * cap : 64) * sizeof(*s));
                        if (!s) {
                                r = -ENOMEM;
                                break;
                        }
                        spans = s;
                }
                spans[ns++] = (struct image_span){ off, IMAGE_BLOCK };
        }
        if (r == 0 && ns) {
                r = image_open(src->image, false, &img);
                r = r ? r : image_reader_new(img, spans, ns, &rd);
                while (r == 0) {
                        const uint8_t *data;
                        size_t len;
                        uint64_t off;
                        int more = image_reader_next(rd, &data, &len, &off);
                        if (more != 0) {
                                r = more < 0 ? more : 0;
                                break;
                        }
                        r = image_writer_write(w, data, len, off);
                }
        }
        image_reader_free(rd);
        image_free(img);
        free(spans);
        return r;
}

/* The next version number: one past the highest v<N>.qcow2 in the folder. */
static long long next_version(const char *store, const char *snapshot) {
        char p[PATH_MAX];
        long long n = 1;

        for (;; n++) {
                snprintf(p, sizeof(p), "%s/snapshots/%s/v%lld.qcow2", store, snapshot, n);
                if (access(p, F_OK) != 0)
                        return n;
        }
}

static int write_config(const char *path, const json_t *config) {
        FILE *f = fopen(path, "w");
        int r;

        if (!f)
                return -errno;
        r = json_dumpf(config, f, JSON_COMPACT | JSON_SORT_KEYS) == 0 ? 0 : -EIO;
        if (fflush(f) != 0 || fsync(fileno(f)) != 0)
                r = -EIO;
        if (fclose(f) != 0)
                r = -EIO;
        return r;
}

/* Links `from` to `to` (failing when `to` exists) and removes `from`. */
static int publish(const char *from, const char *to) {
        if (link(from, to) != 0)
                return -errno;
        unlink(from);
        return 0;
}

int diff_store_compose(const char *store, const char *snapshot, const struct diff_compose *c,
                       json_t **out, char *err, size_t err_size) {
        struct version base, from, made;
        struct diff_extent *x = NULL;
        size_t nx = 0, bad = 0, copied = 0, k = 0;
        json_t *config = NULL;
        struct image *img = NULL;
        struct image_writer *w = NULL;
        struct image_manifest *m = NULL;
        char tmp_image[PATH_MAX + 16], tmp_manifest[PATH_MAX + 16], tmp_config[PATH_MAX + 16];
        char hex[IMAGE_DIGEST_HEX_SIZE], check[256];
        uint8_t digest[IMAGE_DIGEST_SIZE];
        uint64_t size_bytes;
        long long n = c->version;
        bool started = false, linked_config = false, linked_manifest = false;
        int r = load_pair(store, snapshot, c->base, c->from, &base, &from, err, err_size);

        if (r < 0)
                return r;
        memset(&made, 0, sizeof(made));
        r = extents_check(c, image_manifest_virtual_size(base.m), &x, &nx, err, err_size);
        if (r < 0)
                goto out;
        r = diff_config_take(base.config, from.config, c->pointers, c->n_pointers, &config, &bad);
        if (r < 0) {
                static const char *const why[] = { "is not a JSON Pointer",
                                                   "names an item of neither version",
                                                   "names an item whose parent the base lacks "
                                                   "(take the parent)" };
                fail(err, err_size, r, "configuration path '%s' %s", c->pointers[bad],
                     r == -EINVAL    ? why[0]
                     : r == -ENOENT  ? why[1]
                     : r == -ENOTDIR ? why[2]
                                     : strerror(-r));
                goto out;
        }
        for (size_t i = 0; i < c->n_files; i++)
                if (!diff_file_item_valid(c->files[i])) {
                        r = fail(err, err_size, -EINVAL,
                                 "guest file '%s' is not [/dev/sdaN:]/absolute/path", c->files[i]);
                        goto out;
                }
        if (n == 0)
                n = next_version(store, snapshot);
        r = version_paths(store, snapshot, n, &made, err, err_size);
        if (r < 0)
                goto out;
        if (!access(made.image, F_OK) || !access(made.manifest_path, F_OK) ||
            !access(made.config_path, F_OK)) {
                r = fail(err, err_size, -EEXIST, "version %lld exists: a composed version is new",
                         n);
                goto out;
        }

        /* Everything checked: from here on, files are written (and removed on failure). */
        snprintf(tmp_image, sizeof(tmp_image), "%s.partial", made.image);
        snprintf(tmp_manifest, sizeof(tmp_manifest), "%s.partial", made.manifest_path);
        snprintf(tmp_config, sizeof(tmp_config), "%s.partial", made.config_path);
        unlink(tmp_image);
        started = true;
        r = image_create_overlay(base.template, tmp_image);
        r = r ? r : image_open(tmp_image, true, &img);
        r = r ? r : image_writer_new(img, NULL, NULL, &w);
        r = r ? r : copy_blocks(&base, false, x, nx, w, &copied);
        r = r ? r : copy_blocks(&from, true, x, nx, w, &copied);
        if (w) {
                int f = image_writer_finish(w);
                r = r ? r : f;
        }
        r = r ? r : image_flush(img);
        img = image_free(img);
        if (r < 0) {
                fail(err, err_size, r, "writing %s: %s", tmp_image, strerror(-r));
                goto out;
        }
        if (c->n_files) {
                r = diff_files_take(tmp_image, from.image, c->files, c->n_files, &bad, err,
                                    err_size);
                if (r < 0)
                        goto out;
        }

        /* What was written, hashed again, must be exactly what was meant (guest files
         * taken change blocks no manifest foretells: then qemu-img check alone). */
        r = image_open(tmp_image, false, &img);
        r = r ? r : image_manifest_compute(img, &m);
        img = image_free(img);
        if (r == 0 && !c->n_files &&
            (image_manifest_count(m) != copied || copied != count_meant(&base, &from, x, nx)))
                r = -EIO;
        for (size_t i = 0; r == 0 && !c->n_files && i < image_manifest_count(m); i++) {
                const struct image_block_hash *e = image_manifest_entry(m, i);
                const struct image_block_hash *want = meant(&base, &from, x, nx, &k, e->index);
                if (!want || want->flags != e->flags ||
                    memcmp(want->sha256, e->sha256, IMAGE_DIGEST_SIZE))
                        r = -EIO;
        }
        if (r < 0) {
                fail(err, err_size, r, "the composed image does not read as meant: %s",
                     strerror(-r));
                goto out;
        }
        r = image_check(tmp_image, check, sizeof(check));
        if (r < 0) {
                fail(err, err_size, r, "qemu-img check %s: %s", tmp_image, check);
                goto out;
        }
        image_manifest_digest(m, digest);
        image_digest_hex(digest, hex);
        size_bytes = (uint64_t)image_manifest_count(m) * IMAGE_BLOCK;
        *out = json_pack("{s:s, s:I, s:I, s:I, s:s, s:I, s:I, s:s, s:O, s:o, s:o}", "snapshot_id",
                         snapshot, "version", (json_int_t)n, "base", (json_int_t)c->base, "from",
                         (json_int_t)c->from, "content_sha256", hex, "size_bytes",
                         (json_int_t)size_bytes, "virtual_size",
                         (json_int_t)image_manifest_virtual_size(m), "image", made.image, "config",
                         config, "extents", extents_json(x, nx), "files",
                         strings_json(c->files, c->n_files));
        r = *out ? image_manifest_save(m, tmp_manifest) : -ENOMEM;
        r = r ? r : write_config(tmp_config, config);
        r = r ? r : publish(tmp_config, made.config_path);
        linked_config = r == 0;
        r = r ? r : publish(tmp_manifest, made.manifest_path);
        linked_manifest = r == 0;
        r = r ? r : publish(tmp_image, made.image);
        if (r < 0) {
                json_decref(*out);
                *out = NULL;
                fail(err, err_size, r, "writing version %lld: %s", n, strerror(-r));
        }
out:
        if (r < 0 && started) {
                unlink(tmp_image);
                unlink(tmp_manifest);
                unlink(tmp_config);
                if (linked_config)
                        unlink(made.config_path);
                if (linked_manifest)
                        unlink(made.manifest_path);
        }
        image_free(img);
        image_manifest_free(m);
        json_decref(config);
        free(x);
        version_fini(&base);
        version_fini(&from);
        return r;
}
