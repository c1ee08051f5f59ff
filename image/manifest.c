/*
 * Block-hash manifests: what a version's top layer holds, block by block,
 * in a form that does not depend on how qcow2 laid it out. The encoding is
 * canonical (one byte string per manifest: sorted entries, the zero flag a
 * function of the data) so that its SHA-256 can serve as the version's
 * content digest, and the decoder accepts nothing else. The format is in
 * README.md; all integers are little-endian.
 */
#include "image/image.h"
#include "image/internal.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <nettle/sha2.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAGIC "HMIMGMF\n"
#define MAGIC_SIZE 8
#define VERSION 1
#define HEADER_SIZE 32
#define ENTRY_SIZE 41 /* index u64, flags u8, sha256 */

struct image_manifest {
        uint64_t virtual_size;
        size_t n;
        struct image_block_hash *entries;
};

/* SHA-256 of 4096 zero bytes; the unit test recomputes it. */
static const uint8_t zero_block_sha256[IMAGE_DIGEST_SIZE] = {
        0xad, 0x7f, 0xac, 0xb2, 0x58, 0x6f, 0xc6, 0xe9, 0x66, 0xc0, 0x04,
        0xd7, 0xd1, 0xd1, 0x6b, 0x02, 0x4f, 0x58, 0x05, 0xff, 0x7c, 0xb4,
        0x7c, 0x7a, 0x85, 0xda, 0xbd, 0x8b, 0x48, 0x89, 0x2c, 0xa7,
};

static void le64_put(uint8_t *p, uint64_t v) {
        for (int i = 0; i < 8; i++)
                p[i] = (uint8_t)(v >> (8 * i));
}

static void le32_put(uint8_t *p, uint32_t v) {
        for (int i = 0; i < 4; i++)
                p[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t le64_get(const uint8_t *p) {
        uint64_t v = 0;
        for (int i = 7; i >= 0; i--)
                v = v << 8 | p[i];
        return v;
}

static uint32_t le32_get(const uint8_t *p) {
        uint32_t v = 0;
        for (int i = 3; i >= 0; i--)
                v = v << 8 | p[i];
        return v;
}

static bool block_is_zero(const uint8_t *b) {
        /* Equal to itself shifted by one byte and starting with 0: all zero. */
        return b[0] == 0 && !memcmp(b, b + 1, IMAGE_BLOCK - 1);
}

/* ---- computing ---------------------------------------------------------------- */

struct extent {
        uint64_t offset, length;
        bool zero;
};

struct extent_list {
        struct extent *v;
        size_t n, cap;
        uint64_t blocks;
};

static int extent_collect(void *userdata, uint64_t offset, uint64_t length, bool zero) {
        struct extent_list *l = userdata;

        if (l->n == l->cap) {
                size_t cap = l->cap ? 2 * l->cap : 64;
                struct extent *v = reallocarray(l->v, cap, sizeof(*v));

                if (!v)
                        return -ENOMEM;
                l->v = v;
                l->cap = cap;
        }
        l->v[l->n++] = (struct extent){ offset, length, zero };
        l->blocks += length / IMAGE_BLOCK;
        return 0;
}

static void entry_set(struct image_block_hash *e, uint64_t index, const uint8_t *data) {
        e->index = index;
        if (!data || block_is_zero(data)) {
                e->flags = IMAGE_BLOCK_ZERO;
                memcpy(e->sha256, zero_block_sha256, IMAGE_DIGEST_SIZE);
                return;
        }
        e->flags = 0;
        image_block_sha256(data, e->sha256);
}

/* Where each range read for the manifest goes: entries from `first` on. */
struct hash_job {
        struct image_manifest *m;
        const struct image_range *ranges;
        const size_t *first;
};

static int hash_range(void *userdata, size_t i, const uint8_t *data) {
        const struct hash_job *job = userdata;
        uint64_t index = job->ranges[i].offset / IMAGE_BLOCK;

        for (uint32_t b = 0; b < job->ranges[i].length / IMAGE_BLOCK; b++)
                entry_set(&job->m->entries[job->first[i] + b], index + b,
                          data + (size_t)b * IMAGE_BLOCK);
        return 0;
}

int image_manifest_compute(struct image *img, struct image_manifest **out) {
        struct extent_list l = { 0 };
        struct image_manifest *m = NULL;
        struct image_range *ranges = NULL;
        size_t *first = NULL, n_ranges = 0, cap = 0;
        int r;

        /* Extents first: libnbd's callbacks may not issue reads of their own. */
        r = image_own_extents(img, extent_collect, &l);
        if (r < 0)
                goto out;
        m = calloc(1, sizeof(*m));
        if (!m) {
                r = -ENOMEM;
                goto out;
        }
        m->virtual_size = image_size(img);
        m->entries = reallocarray(NULL, l.blocks ? l.blocks : 1, sizeof(*m->entries));
        for (size_t i = 0; i < l.n; i++)
                if (!l.v[i].zero)
                        cap += (l.v[i].length + IMAGE_RANGE_MAX - 1) / IMAGE_RANGE_MAX;
        ranges = reallocarray(NULL, cap ? cap : 1, sizeof(*ranges));
        first = reallocarray(NULL, cap ? cap : 1, sizeof(*first));
        if (!m->entries || !ranges || !first) {
                r = -ENOMEM;
                goto out;
        }
        /* Zero extents are entered now, unread; data extents become ranges. */
        for (size_t i = 0; i < l.n; i++) {
                const struct extent *x = &l.v[i];

                for (uint64_t done = 0; done < x->length;) {
                        uint64_t len = x->length - done < IMAGE_RANGE_MAX ? x->length - done
                                                                          : IMAGE_RANGE_MAX;

                        if (x->zero) {
                                for (uint64_t b = 0; b < len / IMAGE_BLOCK; b++)
                                        entry_set(&m->entries[m->n + b],
                                                  (x->offset + done) / IMAGE_BLOCK + b, NULL);
                        } else {
                                ranges[n_ranges] =
                                        (struct image_range){ x->offset + done, (uint32_t)len };
                                first[n_ranges++] = m->n;
                        }
                        m->n += len / IMAGE_BLOCK;
                        done += len;
                }
        }
        r = image_read_ranges(img, ranges, n_ranges, hash_range,
                              &(struct hash_job){ .m = m, .ranges = ranges, .first = first });
        if (r < 0)
                goto out;
        *out = m;
        m = NULL;
out:
        image_manifest_free(m);
        free(ranges);
        free(first);
        free(l.v);
        return r;
}

struct image_manifest *image_manifest_free(struct image_manifest *m) {
        if (m) {
                free(m->entries);
                free(m);
        }
        return NULL;
}

/* ---- accessors ---------------------------------------------------------------- */

uint64_t image_manifest_virtual_size(const struct image_manifest *m) {
        return m->virtual_size;
}

size_t image_manifest_count(const struct image_manifest *m) {
        return m->n;
}

const struct image_block_hash *image_manifest_entry(const struct image_manifest *m, size_t i) {
        return i < m->n ? &m->entries[i] : NULL;
}

const struct image_block_hash *image_manifest_lookup(const struct image_manifest *m,
                                                     uint64_t index) {
        size_t lo = 0, hi = m->n;

        while (lo < hi) {
                size_t mid = lo + (hi - lo) / 2;

                if (m->entries[mid].index == index)
                        return &m->entries[mid];
                if (m->entries[mid].index < index)
                        lo = mid + 1;
                else
                        hi = mid;
        }
        return NULL;
}

size_t image_manifest_run(const struct image_manifest *m, uint64_t index, size_t max,
                          const struct image_block_hash **first) {
        const struct image_block_hash *e = image_manifest_lookup(m, index);
        size_t n = 0, left;

        *first = e;
        if (!e)
                return 0;
        /* Entries are in increasing index order: a run is consecutive entries. */
        left = m->n - (size_t)(e - m->entries);
        while (n < max && n < left && e[n].index == index + n)
                n++;
        return n;
}

/* ---- encoding ------------------------------------------------------------------ */

/* The encoding goes to a sink in pieces, so the digest needs no copy of it. */
typedef void (*sink_fn)(void *ctx, const uint8_t *data, size_t len);

static void manifest_emit(const struct image_manifest *m, sink_fn sink, void *ctx) {
        uint8_t buf[HEADER_SIZE + 1024 * ENTRY_SIZE];
        size_t n = HEADER_SIZE;

        memcpy(buf, MAGIC, MAGIC_SIZE); /* NOLINT(bugprone-not-null-terminated-result): bytes */
        le32_put(buf + 8, VERSION);
        le32_put(buf + 12, IMAGE_BLOCK);
        le64_put(buf + 16, m->virtual_size);
        le64_put(buf + 24, m->n);
        for (size_t i = 0; i < m->n; i++) {
                const struct image_block_hash *e = &m->entries[i];

                if (n + ENTRY_SIZE > sizeof(buf)) {
                        sink(ctx, buf, n);
                        n = 0;
                }
                le64_put(buf + n, e->index);
                buf[n + 8] = (uint8_t)e->flags;
                memcpy(buf + n + 9, e->sha256, IMAGE_DIGEST_SIZE);
                n += ENTRY_SIZE;
        }
        sink(ctx, buf, n);
}

static void sink_copy(void *ctx, const uint8_t *data, size_t len) {
        uint8_t **p = ctx;

        memcpy(*p, data, len);
        *p += len;
}

int image_manifest_encode(const struct image_manifest *m, void **out, size_t *out_len) {
        uint8_t *buf, *p;
        size_t len;

        if (m->n > (SIZE_MAX - HEADER_SIZE) / ENTRY_SIZE)
                return -EOVERFLOW;
        len = HEADER_SIZE + m->n * ENTRY_SIZE;
        buf = malloc(len);
        if (!buf)
                return -ENOMEM;
        p = buf;
        manifest_emit(m, sink_copy, &p);
        *out = buf;
        *out_len = len;
        return 0;
}

static void sink_sha256(void *ctx, const uint8_t *data, size_t len) {
        sha256_update(ctx, len, data);
}

void image_manifest_digest(const struct image_manifest *m, uint8_t out[IMAGE_DIGEST_SIZE]) {
        struct sha256_ctx ctx;

        sha256_init(&ctx);
        manifest_emit(m, sink_sha256, &ctx);
        sha256_digest(&ctx, IMAGE_DIGEST_SIZE, out);
}

int image_manifest_decode(const void *data, size_t len, struct image_manifest **out) {
        const uint8_t *p = data;
        struct image_manifest *m;
        uint64_t virtual_size, count, blocks;

        if (!p || len < HEADER_SIZE || memcmp(p, MAGIC, MAGIC_SIZE) || le32_get(p + 8) != VERSION ||
            le32_get(p + 12) != IMAGE_BLOCK)
                return -EBADMSG;
        virtual_size = le64_get(p + 16);
        count = le64_get(p + 24);
        blocks = virtual_size / IMAGE_BLOCK;
        /* The length must be exactly the header and `count` entries. */
        if (virtual_size % IMAGE_BLOCK || (len - HEADER_SIZE) % ENTRY_SIZE ||
            (len - HEADER_SIZE) / ENTRY_SIZE != count || count > blocks)
                return -EBADMSG;

        m = calloc(1, sizeof(*m));
        if (!m)
                return -ENOMEM;
        m->virtual_size = virtual_size;
        m->entries = reallocarray(NULL, count ? count : 1, sizeof(*m->entries));
        if (!m->entries) {
                image_manifest_free(m);
                return -ENOMEM;
        }
        p += HEADER_SIZE;
        for (uint64_t i = 0; i < count; i++, p += ENTRY_SIZE) {
                struct image_block_hash *e = &m->entries[i];
                bool hash_zero;

                e->index = le64_get(p);
                e->flags = p[8];
                memcpy(e->sha256, p + 9, IMAGE_DIGEST_SIZE);
                hash_zero = !memcmp(e->sha256, zero_block_sha256, IMAGE_DIGEST_SIZE);
                /* Strictly increasing, inside the image, known flags, and the zero
                 * flag exactly when the hash is the zero block's (as compute sets it). */
                if (e->index >= blocks || (i > 0 && e->index <= e[-1].index) ||
                    (e->flags & ~IMAGE_BLOCK_ZERO) ||
                    hash_zero != !!(e->flags & IMAGE_BLOCK_ZERO)) {
                        image_manifest_free(m);
                        return -EBADMSG;
                }
                m->n++;
        }
        *out = m;
        return 0;
}

/* ---- patches --------------------------------------------------------------------- */

#define PATCH_MAGIC "HMIMGPT\n"

static bool same_entry(const struct image_block_hash *a, const struct image_block_hash *b) {
        return a->index == b->index && a->flags == b->flags &&
               !memcmp(a->sha256, b->sha256, IMAGE_DIGEST_SIZE);
}

int image_manifest_patch_encode(const struct image_manifest *base,
                                const struct image_manifest *want, void **out, size_t *out_len) {
        struct image_manifest set = { want->virtual_size, 0, NULL };
        uint64_t *drop = NULL;
        size_t n_drop = 0, i = 0, j = 0, set_len = 0, len;
        void *set_bytes = NULL;
        uint8_t *buf;
        int r;

        if (base->virtual_size != want->virtual_size)
                return -EINVAL;
        set.entries = reallocarray(NULL, want->n ? want->n : 1, sizeof(*set.entries));
        drop = reallocarray(NULL, base->n ? base->n : 1, sizeof(*drop));
        if (!set.entries || !drop) {
                r = -ENOMEM;
                goto out;
        }
        /* One walk over both, in index order. */
        while (i < base->n || j < want->n) {
                if (j == want->n ||
                    (i < base->n && base->entries[i].index < want->entries[j].index)) {
                        drop[n_drop++] = base->entries[i++].index;
                } else if (i == base->n || want->entries[j].index < base->entries[i].index) {
                        set.entries[set.n++] = want->entries[j++];
                } else {
                        if (!same_entry(&base->entries[i], &want->entries[j]))
                                set.entries[set.n++] = want->entries[j];
                        i++, j++;
                }
        }
        r = image_manifest_encode(&set, &set_bytes, &set_len);
        if (r < 0)
                goto out;
        len = MAGIC_SIZE + 8 + set_len + 8 + 8 * n_drop;
        buf = malloc(len);
        if (!buf) {
                r = -ENOMEM;
                goto out;
        }
        memcpy(buf, PATCH_MAGIC, MAGIC_SIZE);
        le64_put(buf + MAGIC_SIZE, set_len);
        memcpy(buf + MAGIC_SIZE + 8, set_bytes, set_len);
        le64_put(buf + MAGIC_SIZE + 8 + set_len, n_drop);
        for (size_t k = 0; k < n_drop; k++)
                le64_put(buf + MAGIC_SIZE + 16 + set_len + 8 * k, drop[k]);
        *out = buf;
        *out_len = len;
out:
        free(set.entries);
        free(drop);
        free(set_bytes);
        return r;
}

int image_manifest_patch_apply(const struct image_manifest *base, const void *data, size_t len,
                               struct image_manifest **out) {
        const uint8_t *p = data;
        struct image_manifest *set = NULL, *m = NULL;
        uint64_t set_len, n_drop;
        size_t i = 0, j = 0, d = 0;
        const uint8_t *drops;
        int r;

        if (!p || len < MAGIC_SIZE + 16 || memcmp(p, PATCH_MAGIC, MAGIC_SIZE))
                return -EBADMSG;
        set_len = le64_get(p + MAGIC_SIZE);
        if (set_len > len - MAGIC_SIZE - 16)
                return -EBADMSG;
        n_drop = le64_get(p + MAGIC_SIZE + 8 + set_len);
        if (n_drop > (len - MAGIC_SIZE - 16 - set_len) / 8 ||
            len != MAGIC_SIZE + 16 + set_len + 8 * n_drop)
                return -EBADMSG;
        /* The entries to set are a manifest: decoding them checks them. */
        r = image_manifest_decode(p + MAGIC_SIZE + 8, (size_t)set_len, &set);
        if (r < 0)
                return r;
        if (set->virtual_size != base->virtual_size) {
                r = -EBADMSG;
                goto fail;
        }
        drops = p + MAGIC_SIZE + 16 + set_len;
        m = calloc(1, sizeof(*m));
        if (!m || !(m->entries = reallocarray(NULL, base->n + set->n + 1, sizeof(*m->entries)))) {
                r = -ENOMEM;
                goto fail;
        }
        m->virtual_size = base->virtual_size;
        while (i < base->n || j < set->n) {
                const struct image_block_hash *b = i < base->n ? &base->entries[i] : NULL;
                const struct image_block_hash *e = j < set->n ? &set->entries[j] : NULL;
                if (b && (!e || b->index < e->index)) {
                        /* Kept unless dropped; drops name base's entries, in order. */
                        if (d < n_drop && le64_get(drops + 8 * d) == b->index)
                                d++;
                        else
                                m->entries[m->n++] = *b;
                        i++;
                } else {
                        /* The loop's condition keeps b or e; without b, e is set:
                         * NOLINTNEXTLINE(clang-analyzer-core.NullDereference) */
                        m->entries[m->n++] = *e;
                        j++;
                        if (b && b->index == e->index)
                                i++;
                }
        }
        if (d != n_drop) {
                r = -EBADMSG; /* a drop of something base does not hold, or out of order */
                goto fail;
        }
        image_manifest_free(set);
        *out = m;
        return 0;
fail:
        image_manifest_free(set);
        image_manifest_free(m);
        return r;
}

/* ---- files ------------------------------------------------------------------------ */

static int write_all(int fd, const uint8_t *p, size_t len) {
        while (len > 0) {
                ssize_t n = write(fd, p, len);

                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                p += n;
                len -= (size_t)n;
        }
        return 0;
}

int image_manifest_save(const struct image_manifest *m, const char *path) {
        char *tmp = NULL, *dir_copy = NULL;
        void *buf = NULL;
        size_t len;
        int fd = -1, dfd, r;

        r = image_manifest_encode(m, &buf, &len);
        if (r < 0)
                goto out;
        if (asprintf(&tmp, "%s.tmp-XXXXXX", path) < 0) {
                tmp = NULL;
                r = -ENOMEM;
                goto out;
        }
        fd = mkostemp(tmp, O_CLOEXEC);
        if (fd < 0) {
                r = -errno;
                free(tmp);
                tmp = NULL;
                goto out;
        }
        r = write_all(fd, buf, len);
        if (!r && fsync(fd) < 0)
                r = -errno;
        if (close(fd) < 0 && !r)
                r = -errno;
        fd = -1;
        if (!r && rename(tmp, path) < 0)
                r = -errno;
        if (r < 0)
                goto out;
        free(tmp);
        tmp = NULL;
        /* The rename is durable only once the directory is. */
        dir_copy = strdup(path);
        if (!dir_copy) {
                r = -ENOMEM;
                goto out;
        }
        dfd = open(dirname(dir_copy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd < 0 || fsync(dfd) < 0)
                r = -errno;
        if (dfd >= 0)
                close(dfd);
out:
        if (tmp) {
                unlink(tmp);
                free(tmp);
        }
        free(dir_copy);
        free(buf);
        return r;
}

int image_manifest_load(const char *path, struct image_manifest **out) {
        struct stat st;
        uint8_t *buf = NULL;
        size_t len = 0;
        int fd, r;

        fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        if (fstat(fd, &st) < 0) {
                r = -errno;
                goto out;
        }
        if (!S_ISREG(st.st_mode) || (uint64_t)st.st_size > SIZE_MAX - 1) {
                r = -EBADMSG;
                goto out;
        }
        buf = malloc((size_t)st.st_size + 1);
        if (!buf) {
                r = -ENOMEM;
                goto out;
        }
        /* Read one byte past the expected end: a file that grew is not what we sized. */
        for (;;) {
                ssize_t n = read(fd, buf + len, (size_t)st.st_size + 1 - len);

                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        r = -errno;
                        goto out;
                }
                if (n == 0)
                        break;
                len += (size_t)n;
                if (len > (size_t)st.st_size) {
                        r = -EBADMSG;
                        goto out;
                }
        }
        r = image_manifest_decode(buf, len, out);
out:
        free(buf);
        close(fd);
        return r;
}

/* ---- diff ------------------------------------------------------------------------ */

int image_manifest_diff(const struct image_manifest *have, const struct image_manifest *want,
                        image_extent_fn cb, void *userdata) {
        uint64_t run_start = 0, run_end = 0;
        bool run = false, run_zero = false;
        size_t j = 0;
        int r;

        if (have && have->virtual_size != want->virtual_size)
                return -EINVAL;
        for (size_t i = 0; i < want->n; i++) {
                const struct image_block_hash *w = &want->entries[i];
                bool zero = w->flags & IMAGE_BLOCK_ZERO;

                /* Both lists are sorted: one pass through each. */
                while (have && j < have->n && have->entries[j].index < w->index)
                        j++;
                if (have && j < have->n && have->entries[j].index == w->index &&
                    have->entries[j].flags == w->flags &&
                    !memcmp(have->entries[j].sha256, w->sha256, IMAGE_DIGEST_SIZE))
                        continue;
                if (run && w->index == run_end && zero == run_zero) {
                        run_end++;
                        continue;
                }
                if (run) {
                        r = cb(userdata, run_start * IMAGE_BLOCK,
                               (run_end - run_start) * IMAGE_BLOCK, run_zero);
                        if (r < 0)
                                return r;
                }
                run = true;
                run_start = w->index;
                run_end = w->index + 1;
                run_zero = zero;
        }
        if (run)
                return cb(userdata, run_start * IMAGE_BLOCK, (run_end - run_start) * IMAGE_BLOCK,
                          run_zero);
        return 0;
}

/* ---- hex ------------------------------------------------------------------------- */

/* Fetched once: looking the algorithm up on every call costs a tenth of the hashing. */
static EVP_MD *block_md;
static pthread_once_t block_md_once = PTHREAD_ONCE_INIT;

static void block_md_fetch(void) {
        block_md = EVP_MD_fetch(NULL, "SHA256", NULL);
}

void image_block_sha256(const void *data, uint8_t out[IMAGE_DIGEST_SIZE]) {
        struct sha256_ctx ctx;

        pthread_once(&block_md_once, block_md_fetch);
        if (block_md && EVP_Digest(data, IMAGE_BLOCK, out, NULL, block_md, NULL) == 1)
                return;
        /* OpenSSL could not (no memory for its context): the same hash, slower. */
        sha256_init(&ctx);
        sha256_update(&ctx, IMAGE_BLOCK, data);
        sha256_digest(&ctx, IMAGE_DIGEST_SIZE, out);
}

/* ---- hashing on two cores ---- */

#define HASH_GRAIN 8 /* blocks taken at a time (32 KiB) */

struct image_hasher {
        pthread_t thread;
        pthread_mutex_t lock;
        pthread_cond_t changed;
        /* The job, set by the caller while the helper is not in one. */
        const uint8_t *data;
        uint8_t (*out)[IMAGE_DIGEST_SIZE];
        size_t n;
        atomic_size_t next; /* the next block not taken */
        unsigned job;       /* counts jobs: the helper joins the newest */
        bool helping;       /* the helper is inside a job: it may not change */
        bool closing;
};

/* Hashes blocks of the current job until none is left; either thread. */
static void hasher_work(struct image_hasher *h) {
        size_t i;

        while ((i = atomic_fetch_add(&h->next, HASH_GRAIN)) < h->n)
                for (size_t end = i + HASH_GRAIN < h->n ? i + HASH_GRAIN : h->n; i < end; i++)
                        image_block_sha256(h->data + i * IMAGE_BLOCK, h->out[i]);
}

static void *hasher_thread(void *userdata) {
        struct image_hasher *h = userdata;
        unsigned seen = 0;

        pthread_mutex_lock(&h->lock);
        for (;;) {
                while (h->job == seen && !h->closing)
                        pthread_cond_wait(&h->changed, &h->lock);
                if (h->closing)
                        break;
                /* A job the caller already finished leaves nothing to take. */
                seen = h->job;
                h->helping = true;
                pthread_mutex_unlock(&h->lock);
                hasher_work(h);
                pthread_mutex_lock(&h->lock);
                h->helping = false;
                pthread_cond_broadcast(&h->changed);
        }
        pthread_mutex_unlock(&h->lock);
        return NULL;
}

int image_hasher_new(struct image_hasher **out) {
        struct image_hasher *h = calloc(1, sizeof(*h));
        int r;

        if (!h)
                return -ENOMEM;
        pthread_mutex_init(&h->lock, NULL);
        pthread_cond_init(&h->changed, NULL);
        r = -pthread_create(&h->thread, NULL, hasher_thread, h);
        if (r < 0) {
                pthread_cond_destroy(&h->changed);
                pthread_mutex_destroy(&h->lock);
                free(h);
                return r;
        }
        *out = h;
        return 0;
}

struct image_hasher *image_hasher_free(struct image_hasher *h) {
        if (!h)
                return NULL;
        pthread_mutex_lock(&h->lock);
        h->closing = true;
        pthread_cond_broadcast(&h->changed);
        pthread_mutex_unlock(&h->lock);
        pthread_join(h->thread, NULL);
        pthread_cond_destroy(&h->changed);
        pthread_mutex_destroy(&h->lock);
        free(h);
        return NULL;
}

void image_hasher_run(struct image_hasher *h, const void *data, size_t n,
                      uint8_t (*out)[IMAGE_DIGEST_SIZE]) {
        pthread_mutex_lock(&h->lock);
        /* A helper late for the last job must leave it before this one is set. */
        while (h->helping)
                pthread_cond_wait(&h->changed, &h->lock);
        h->data = data;
        h->out = out;
        h->n = n;
        atomic_store(&h->next, 0);
        if (n > HASH_GRAIN) {
                h->job++;
                pthread_cond_broadcast(&h->changed);
        }
        pthread_mutex_unlock(&h->lock);
        hasher_work(h);
        pthread_mutex_lock(&h->lock);
        while (h->helping)
                pthread_cond_wait(&h->changed, &h->lock);
        pthread_mutex_unlock(&h->lock);
}

void image_digest_hex(const uint8_t digest[IMAGE_DIGEST_SIZE], char out[IMAGE_DIGEST_HEX_SIZE]) {
        static const char hex[] = "0123456789abcdef";

        for (size_t i = 0; i < IMAGE_DIGEST_SIZE; i++) {
                out[2 * i] = hex[digest[i] >> 4];
                out[2 * i + 1] = hex[digest[i] & 0xf];
        }
        out[2 * IMAGE_DIGEST_SIZE] = '\0';
}

static int hex_value(char c) {
        if (c >= '0' && c <= '9')
                return c - '0';
        if (c >= 'a' && c <= 'f')
                return c - 'a' + 10;
        if (c >= 'A' && c <= 'F')
                return c - 'A' + 10;
        return -1;
}

int image_digest_parse(const char *hex, uint8_t out[IMAGE_DIGEST_SIZE]) {
        uint8_t d[IMAGE_DIGEST_SIZE];

        if (!hex || strlen(hex) != 2 * IMAGE_DIGEST_SIZE)
                return -EINVAL;
        for (size_t i = 0; i < IMAGE_DIGEST_SIZE; i++) {
                int hi = hex_value(hex[2 * i]), lo = hex_value(hex[2 * i + 1]);

                if (hi < 0 || lo < 0)
                        return -EINVAL;
                d[i] = (uint8_t)(hi << 4 | lo);
        }
        memcpy(out, d, sizeof(d));
        return 0;
}
