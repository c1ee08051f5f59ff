/*
 * The changed regions between two versions of a snapshot, from their
 * manifests. Both are overlays on one template, so a block reads as the
 * version's top layer where its manifest lists it and as the template
 * elsewhere. A block both manifests list differs when its hash (or zero
 * flag) does; a block one lists differs from the template's block under
 * the other. The template is asked only about those: its allocation map
 * first (a block it does not hold, or holds as zeroes, reads as zeroes,
 * which the manifest's zero flag answers), its data only for the rest.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "diff/diff.h"

#define READ_MAX (4u << 20) /* bytes of template data read at once */

void diff_disk_fini(struct diff_disk *d) {
        free(d->extents);
        memset(d, 0, sizeof(*d));
}

/* Appends block `index`, merging it into the last extent when they touch. */
static int add_block(struct diff_disk *d, size_t *cap, uint64_t index) {
        uint64_t off = index * IMAGE_BLOCK;

        d->changed_bytes += IMAGE_BLOCK;
        if (d->n && d->extents[d->n - 1].offset + d->extents[d->n - 1].length == off) {
                d->extents[d->n - 1].length += IMAGE_BLOCK;
                return 0;
        }
        if (d->n == *cap) {
                size_t c = *cap ? 2 * *cap : 64;
                struct diff_extent *e = realloc(d->extents, c * sizeof(*e));
                if (!e)
                        return -ENOMEM;
                d->extents = e;
                *cap = c;
        }
        d->extents[d->n++] = (struct diff_extent){ off, IMAGE_BLOCK };
        return 0;
}

/* A block only one manifest lists, to compare with the template's. */
struct lone {
        const struct image_block_hash *e;
        bool differs;
};

/* The template's extents that may hold data (not those that read as zeroes). */
struct data_extents {
        struct diff_extent *x;
        size_t n, cap;
};

static int collect_data(void *userdata, uint64_t offset, uint64_t length, bool zero) {
        struct data_extents *t = userdata;

        if (zero)
                return 0;
        if (t->n == t->cap) {
                size_t c = t->cap ? 2 * t->cap : 64;
                struct diff_extent *x = realloc(t->x, c * sizeof(*x));
                if (!x)
                        return -ENOMEM;
                t->x = x;
                t->cap = c;
        }
        t->x[t->n++] = (struct diff_extent){ offset, length };
        return 0;
}

/*
 * Decides lone[i].differs for the n lone blocks (increasing indexes): a
 * block where the template holds no data differs unless it is a zero
 * block; elsewhere the template's 4 KiB are read (consecutive blocks in
 * one request) and hashed.
 */
static int compare_with_template(const char *template_path, struct lone *lone, size_t n,
                                 uint64_t *reads) {
        struct image *tpl = NULL;
        struct data_extents t = { 0 };
        uint8_t *buf = NULL, hash[IMAGE_DIGEST_SIZE];
        size_t k = 0;
        int r = image_open(template_path, false, &tpl);

        if (r == 0)
                r = image_own_extents(tpl, collect_data, &t);
        if (r == 0 && !(buf = malloc(READ_MAX)))
                r = -ENOMEM;
        for (size_t i = 0; r == 0 && i < n;) {
                uint64_t off = lone[i].e->index * IMAGE_BLOCK;
                size_t run = 1;

                while (k < t.n && t.x[k].offset + t.x[k].length <= off)
                        k++;
                if (k == t.n || t.x[k].offset > off) { /* the template reads zeroes here */
                        lone[i].differs = !(lone[i].e->flags & IMAGE_BLOCK_ZERO);
                        i++;
                        continue;
                }
                /* Consecutive lone blocks inside this template extent: one read. */
                while (i + run < n && run < READ_MAX / IMAGE_BLOCK &&
                       lone[i + run].e->index == lone[i].e->index + run &&
                       off + (run + 1) * IMAGE_BLOCK <= t.x[k].offset + t.x[k].length)
                        run++;
                r = image_read(tpl, buf, run * IMAGE_BLOCK, off);
                for (size_t j = 0; r == 0 && j < run; j++) {
                        image_block_sha256(buf + j * IMAGE_BLOCK, hash);
                        lone[i + j].differs =
                                memcmp(hash, lone[i + j].e->sha256, sizeof(hash)) != 0;
                }
                *reads += run;
                i += run;
        }
        free(buf);
        free(t.x);
        image_free(tpl);
        return r;
}

/* Walks both manifests in index order; calls `step` per block either lists. */
static int merge(const struct image_manifest *a, const struct image_manifest *b,
                 int (*step)(void *u, uint64_t index, const struct image_block_hash *ea,
                             const struct image_block_hash *eb),
                 void *u) {
        size_t na = image_manifest_count(a), nb = image_manifest_count(b), i = 0, j = 0;
        int r = 0;

        while (r == 0 && (i < na || j < nb)) {
                const struct image_block_hash *ea = i < na ? image_manifest_entry(a, i) : NULL;
                const struct image_block_hash *eb = j < nb ? image_manifest_entry(b, j) : NULL;

                if (ea && (!eb || ea->index < eb->index))
                        r = step(u, ea->index, ea, NULL), i++;
                else if (eb && (!ea || eb->index < ea->index))
                        r = step(u, eb->index, NULL, eb), j++;
                else if (ea && eb)
                        r = step(u, ea->index, ea, eb), i++, j++;
                else
                        break;
        }
        return r;
}

struct pass {
        struct diff_disk *d;
        struct lone *lone;
        size_t n_lone, cap_lone, next_lone, cap;
};

static int find_lone(void *u, uint64_t index, const struct image_block_hash *ea,
                     const struct image_block_hash *eb) {
        struct pass *p = u;

        if (ea && eb)
                return 0;
        if (p->n_lone == p->cap_lone) {
                size_t c = p->cap_lone ? 2 * p->cap_lone : 64;
                struct lone *l = realloc(p->lone, c * sizeof(*l));
                if (!l)
                        return -ENOMEM;
                p->lone = l;
                p->cap_lone = c;
        }
        p->lone[p->n_lone++] = (struct lone){ ea ? ea : eb, false };
        return 0;
}

static int add_changed(void *u, uint64_t index, const struct image_block_hash *ea,
                       const struct image_block_hash *eb) {
        struct pass *p = u;
        bool differs;

        if (ea && eb)
                differs =
                        ea->flags != eb->flags || memcmp(ea->sha256, eb->sha256, IMAGE_DIGEST_SIZE);
        else if (p->next_lone < p->n_lone)
                differs = p->lone[p->next_lone++].differs;
        else
                return -EIO; /* the two passes disagree: cannot be */
        return differs ? add_block(p->d, &p->cap, index) : 0;
}

int diff_disk(const struct image_manifest *a, const struct image_manifest *b,
              const char *template_path, struct diff_disk *d) {
        struct pass p = { d, NULL, 0, 0, 0, 0 };
        int r;

        memset(d, 0, sizeof(*d));
        if (image_manifest_virtual_size(a) != image_manifest_virtual_size(b))
                return -EINVAL;
        d->virtual_size = image_manifest_virtual_size(a);
        r = merge(a, b, find_lone, &p);
        if (r == 0 && p.n_lone)
                r = compare_with_template(template_path, p.lone, p.n_lone, &d->template_reads);
        if (r == 0)
                r = merge(a, b, add_changed, &p);
        free(p.lone);
        if (r < 0)
                diff_disk_fini(d);
        return r;
}
