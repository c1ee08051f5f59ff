/*
 * A transfer, from the target's side.
 *
 * Every block of the wanted version is one of four kinds: already in the
 * partial image from an earlier attempt (its hash matches: kept), held by a
 * cached older version here (copied locally), zeroes (written as zeroes),
 * or to be pulled. Only the last kind crosses the network, as a chunk
 * stream whose every chunk is checked before it is written. A chunk that
 * fails its check, or a stream cut short, costs only what was not written
 * yet: the next request asks for the blocks still missing, which is also
 * how a killed agent resumes — the partial image is the journal.
 *
 * The result is trusted only when the manifest of what was built hashes to
 * the digest the version was registered with and qemu-img check passes;
 * then it is fsynced and renamed into place, and the API flips the
 * placement.
 */
#include "agent/transfer.h"

#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "agent/control.h"
#include "agent/limit.h"
#include "agent/wire.h"
#include "base/clock.h"
#include "base/log.h"

#define MANIFEST_MAX (512u << 20)
#define CONFIG_MAX (1u << 20)
#define PULL_ROUNDS 8         /* requests for what is still missing before giving up */
#define LOCAL_READ (4u << 20) /* a cached copy is read this much at a time */
#define HASHES_MAX (LOCAL_READ / IMAGE_BLOCK)
_Static_assert(IMAGE_WRITER_PIECE <= LOCAL_READ, "a writer's request is hashed in one go");

/* Formats a path; -ENAMETOOLONG rather than a truncated one. */
static int __attribute__((format(printf, 2, 3))) pathf(char out[PATH_MAX], const char *fmt, ...) {
        va_list ap;
        int n;
        va_start(ap, fmt);
        n = vsnprintf(out, PATH_MAX, fmt, ap);
        va_end(ap);
        return n < 0 || n >= PATH_MAX ? -ENAMETOOLONG : 0;
}

static int mkdirs(const char *path) {
        char tmp[PATH_MAX];
        if (pathf(tmp, "%s", path) < 0)
                return -ENAMETOOLONG;
        for (char *p = tmp + 1; *p; p++) {
                if (*p == '/') {
                        *p = '\0';
                        if (mkdir(tmp, 0750) < 0 && errno != EEXIST)
                                return -errno;
                        *p = '/';
                }
        }
        return mkdir(tmp, 0750) < 0 && errno != EEXIST ? -errno : 0;
}

static int fsync_path(const char *path) {
        int fd = open(path, O_RDONLY | O_CLOEXEC), r = 0;
        if (fd < 0)
                return -errno;
        if (fsync(fd) < 0)
                r = -errno;
        close(fd);
        return r;
}

static int write_file(const char *path, const void *data, size_t len) {
        char tmp[PATH_MAX];
        int fd, r = 0;

        if (pathf(tmp, "%s.tmp", path) < 0)
                return -ENAMETOOLONG;
        fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
        if (fd < 0)
                return -errno;
        if (write(fd, data, len) != (ssize_t)len || fsync(fd) < 0)
                r = -EIO;
        close(fd);
        if (r == 0 && rename(tmp, path) < 0)
                r = -errno;
        return r;
}

/* ---- steps beside the transfer's thread ---- */

/*
 * A step that needs neither the network nor the blocks (a file written, a
 * qemu-img run) runs in a thread of its own while the transfer's thread
 * waits on the source, and is waited for where its result is needed; in
 * the caller's thread when no thread can start.
 */
struct beside {
        int (*fn)(void *arg);
        void *arg;
        pthread_t thread;
        bool started, ran;
        int r;
};

static void *beside_main(void *userdata) {
        struct beside *b = userdata;
        b->r = b->fn(b->arg);
        return NULL;
}

/* Starts b->fn(b->arg). */
static void beside_start(struct beside *b) {
        b->ran = true;
        b->started = pthread_create(&b->thread, NULL, beside_main, b) == 0;
        if (!b->started)
                b->r = b->fn(b->arg);
}

/* The step's result once it is done; -ENOENT for one never started. */
static int beside_wait(struct beside *b) {
        if (b->started)
                pthread_join(b->thread, NULL);
        b->started = false;
        return b->ran ? b->r : -ENOENT;
}

/* ---- talking to the source ---- */

struct transfer_run {
        const struct transfer_env *env;
        const struct transfer_job *job;
        struct transfer_stats *stats;
        struct image *out;                 /* the partial image being built */
        const struct image_manifest *want; /* what it is built into */
        uint8_t *checked; /* a bit per block: in place and checked against `want` */
        struct wire_reader *reader;
        struct image_writer *writer;          /* checks and writes t->out while a stream is read */
        struct image_hasher *hasher;          /* hashes blocks to be checked on both cores */
        struct beside *during_pull;           /* started when the first pull starts; or NULL */
        uint8_t (*hashes)[IMAGE_DIGEST_SIZE]; /* HASHES_MAX, the hasher's output */
        struct wire_range bad;                /* the block the writer's check refused */
        int64_t next_progress_ms;
        uint64_t bytes_done; /* blocks of the version in place or queued for writing */
        int error;           /* why a stream was stopped from our side */
        char *err;
        size_t err_size;
};

/* Reports progress at most every progress_ms; -ECANCELED when the API says stop. */
static int progress(struct transfer_run *t, bool force) {
        json_t *body, *reply = NULL;
        long status = 0;
        char path[64], err[256];
        uint64_t done = t->bytes_done;
        int r;

        if (!force && clock_mono_ms() < t->next_progress_ms)
                return 0;
        /* What is reported written must survive this process being killed. */
        if (t->writer)
                done -= image_writer_pending(t->writer);
        t->next_progress_ms = clock_mono_ms() + t->env->progress_ms;
        snprintf(path, sizeof(path), "/v1/agent/transfers/%lld/progress", (long long)t->job->id);
        body = json_pack("{s:s, s:I, s:I, s:I}", "owner", t->env->owner, "bytes_done",
                         (json_int_t)done, "bytes_sent", (json_int_t)t->stats->bytes_wire,
                         "bytes_total", (json_int_t)t->stats->bytes_total);
        r = control_call(t->env->control, "POST", path, body, &status, &reply, err, sizeof(err));
        json_decref(body);
        if (r == 0 && status == 200 &&
            json_is_true(json_object_get(reply, "more_urgent_waiting")) && t->env->should_pause &&
            t->env->should_pause(t->env->pause_ctx, t->job->priority)) {
                json_decref(reply);
                return -EBUSY;
        }
        json_decref(reply);
        if (r == 0 && status == 409)
                return -ECANCELED;
        /* The API not answering is no reason to stop moving bytes. */
        return 0;
}

static int stopping(struct transfer_run *t) {
        if (atomic_load(t->env->stop))
                return -EINTR;
        return progress(t, false);
}

struct fetch {
        struct transfer_run *t;
        char *data;
        size_t len, max;
};

static size_t on_fetch(char *ptr, size_t size, size_t n, void *userdata) {
        struct fetch *f = userdata;
        size_t len = size * n;
        char *grown;

        if (f->len + len > f->max)
                return 0;
        bucket_take(f->t->env->bucket, len);
        grown = realloc(f->data, f->len + len + 1);
        if (!grown)
                return 0;
        memcpy(grown + f->len, ptr, len);
        f->data = grown;
        f->len += len;
        f->t->stats->bytes_wire += len;
        return len;
}

static struct curl_slist *peer_headers(const struct transfer_job *job) {
        char auth[200], id[64];
        struct curl_slist *h = NULL;
        snprintf(auth, sizeof(auth), "Authorization: Bearer %s", job->ticket);
        snprintf(id, sizeof(id), "X-Homing-Transfer: %lld", (long long)job->id);
        h = curl_slist_append(h, auth);
        h = curl_slist_append(h, id);
        return h;
}

/* What every request to a peer has: its ticket, short connects, no stall. */
static void peer_options(const struct transfer_run *t, CURL *curl, const char *url,
                         struct curl_slist *headers, curl_write_callback on_body, void *userdata) {
        curl_easy_setopt(curl, CURLOPT_URL, url);
        curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
        curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, on_body);
        curl_easy_setopt(curl, CURLOPT_WRITEDATA, userdata);
        curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT_MS, 3000L);
        curl_easy_setopt(curl, CURLOPT_LOW_SPEED_LIMIT, 1L);
        curl_easy_setopt(curl, CURLOPT_LOW_SPEED_TIME, 15L);
        curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
        if (t->env->tls_ca && *t->env->tls_ca)
                curl_easy_setopt(curl, CURLOPT_CAINFO, t->env->tls_ca);
}

/*
 * GETs `base``path` from the source into memory. Returns 0, -EAGAIN when the
 * source did not answer (or answered 5xx), -EPERM when it refused, -EIO.
 */
static int fetch(struct transfer_run *t, const char *base, const char *path, size_t max,
                 char **data, size_t *len) {
        struct fetch f = { t, NULL, 0, max };
        struct curl_slist *headers = peer_headers(t->job);
        CURL *curl = curl_easy_init();
        char url[TRANSFER_URL_MAX + 256];
        long status = 0;
        CURLcode rc;
        int r = 0;

        if (!curl) {
                curl_slist_free_all(headers);
                return -ENOMEM;
        }
        snprintf(url, sizeof(url), "%s%s", base, path);
        peer_options(t, curl, url, headers, on_fetch, &f);
        rc = curl_easy_perform(curl);
        curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
        if (rc != CURLE_OK) {
                snprintf(t->err, t->err_size, "GET %s: %s", url, curl_easy_strerror(rc));
                r = -EAGAIN;
        } else if (status != 200) {
                snprintf(t->err, t->err_size, "GET %s: HTTP %ld", url, status);
                r = status >= 500 ? -EAGAIN : status == 403 || status == 401 ? -EPERM : -EIO;
        }
        curl_easy_cleanup(curl);
        curl_slist_free_all(headers);
        if (r < 0) {
                free(f.data);
                return r;
        }
        *data = f.data;
        *len = f.len;
        return 0;
}

static bool is_checked(const struct transfer_run *t, uint64_t index) {
        return t->checked[index / 8] >> (index % 8) & 1;
}

static void mark_checked(struct transfer_run *t, uint64_t offset, uint64_t length) {
        for (uint64_t i = offset / IMAGE_BLOCK; i < (offset + length) / IMAGE_BLOCK; i++)
                t->checked[i / 8] |= (uint8_t)(1u << (i % 8));
}

/* Whether block `index` holding data that hashes to `sha256` is the version's. */
static bool block_wanted(const struct transfer_run *t, uint64_t index, const uint8_t *sha256) {
        const struct image_block_hash *w = image_manifest_lookup(t->want, index);
        return w && !memcmp(w->sha256, sha256, IMAGE_DIGEST_SIZE);
}

/*
 * Every block is checked against the manifest before it is written (the
 * final verification then needs no second read of what was written): in
 * the writer's thread, just before the write, so that hashing runs beside
 * receiving, and by the hasher's thread with it, so that it runs on both
 * cores. Marked at once: a write that fails later fails the whole pull.
 */
static int check_written(void *userdata, const void *data, uint64_t len, uint64_t offset) {
        struct transfer_run *t = userdata;
        const struct image_block_hash *w = NULL;
        size_t n = 0;

        if (data) {
                image_hasher_run(t->hasher, data, len / IMAGE_BLOCK, t->hashes);
                n = image_manifest_run(t->want, offset / IMAGE_BLOCK, len / IMAGE_BLOCK, &w);
        }
        for (size_t i = 0; data && i < len / IMAGE_BLOCK; i++) {
                if (i >= n || memcmp(w[i].sha256, t->hashes[i], IMAGE_DIGEST_SIZE) != 0) {
                        t->bad = (struct wire_range){ offset + i * IMAGE_BLOCK, IMAGE_BLOCK };
                        return -EILSEQ;
                }
        }
        mark_checked(t, offset, len);
        return 0;
}

/* A data record's header: its blocks must be in the manifest; it lands in the writer's queue. */
static int on_chunk_begin(void *ctx, uint64_t offset, uint32_t length, uint8_t (*block_sha256)[32],
                          void **buf) {
        struct transfer_run *t = ctx;
        const struct image_block_hash *w;
        size_t n = length / IMAGE_BLOCK;

        if (image_manifest_run(t->want, offset / IMAGE_BLOCK, n, &w) < n)
                return -EILSEQ;
        for (size_t i = 0; i < n; i++)
                memcpy(block_sha256[i], w[i].sha256, IMAGE_DIGEST_SIZE);
        return image_writer_reserve(t->writer, length, offset, buf);
}

/* The record's SHA-256 matched the manifest's hashes: check_written checks the data. */
static int on_chunk_data(void *ctx, uint64_t offset, const void *data, uint32_t length,
                         const uint8_t (*block_sha256)[32]) {
        struct transfer_run *t = ctx;
        int r = image_writer_commit(t->writer);

        if (r == 0) {
                t->stats->bytes_remote += length;
                t->bytes_done += length;
        }
        return r;
}

static int on_chunk_zero(void *ctx, uint64_t offset, uint64_t length) {
        struct transfer_run *t = ctx;
        int r;

        for (uint64_t i = offset / IMAGE_BLOCK; i < (offset + length) / IMAGE_BLOCK; i++) {
                const struct image_block_hash *w = image_manifest_lookup(t->want, i);
                if (!w || !(w->flags & IMAGE_BLOCK_ZERO))
                        return -EILSEQ;
        }
        r = image_writer_zero(t->writer, length, offset);
        if (r == 0)
                t->bytes_done += length;
        return r;
}

static const struct wire_reader_ops chunk_ops = { .data = on_chunk_data,
                                                  .zero = on_chunk_zero,
                                                  .begin = on_chunk_begin };

static size_t on_stream(char *ptr, size_t size, size_t n, void *userdata) {
        struct transfer_run *t = userdata;
        size_t len = size * n;
        int r;

        bucket_take(t->env->bucket, len);
        t->stats->bytes_wire += len;
        r = wire_reader_feed(t->reader, ptr, len, &chunk_ops, t);
        if (r == 0)
                r = stopping(t);
        if (r < 0) {
                t->error = r;
                return 0; /* stops the transfer of this stream */
        }
        return len;
}

/*
 * Asks the source for `ranges` and writes what comes. Returns 0 when the
 * stream ended well, -EILSEQ (a chunk failed its check), -EAGAIN (cut short
 * or not answered), -ECANCELED, -EINTR, or another -errno.
 */
static int pull(struct transfer_run *t, const char *base, const char *path,
                const struct wire_range *ranges, size_t n, uint64_t virtual_size) {
        struct curl_slist *headers = peer_headers(t->job);
        size_t body_len = wire_ranges_size(n);
        uint8_t *body = malloc(body_len);
        char url[TRANSFER_URL_MAX + 256];
        CURL *curl = curl_easy_init();
        long status = 0;
        CURLcode rc;
        bool refused;
        int r = 0, written;

        if (!body || !curl || wire_reader_new(virtual_size, &t->reader) < 0 ||
            image_writer_new(t->out, check_written, t, &t->writer) < 0) {
                t->reader = wire_reader_free(t->reader);
                free(body);
                if (curl)
                        curl_easy_cleanup(curl);
                curl_slist_free_all(headers);
                return -ENOMEM;
        }
        wire_ranges_encode(ranges, n, body);
        headers = curl_slist_append(headers, "Content-Type: application/vnd.homing.ranges");
        snprintf(url, sizeof(url), "%s%s", base, path);
        t->error = 0;
        peer_options(t, curl, url, headers, on_stream, t);
        curl_easy_setopt(curl, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body_len);
        curl_easy_setopt(curl, CURLOPT_BUFFERSIZE, 256L * 1024);
        rc = curl_easy_perform(curl);
        curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
        /* What was queued is written, or refused by check_written. */
        written = image_writer_finish(t->writer);
        t->writer = NULL;
        /* A refusal's problem body was fed to the reader too: the status says more. */
        refused = status != 0 && status != 200 && (!t->error || t->error == -EBADMSG);
        if (refused) {
                snprintf(t->err, t->err_size, "POST %s: HTTP %ld", url, status);
                r = status >= 500 ? -EAGAIN : status == 403 || status == 401 ? -EPERM : -EIO;
        } else if (t->error) {
                r = t->error;
                if (r == -EBADMSG)
                        snprintf(t->err, t->err_size, "POST %s: not a chunk stream", url);
        } else if (rc != CURLE_OK) {
                snprintf(t->err, t->err_size, "POST %s: %s", url, curl_easy_strerror(rc));
                r = -EAGAIN;
        } else if (!wire_reader_done(t->reader)) {
                snprintf(t->err, t->err_size, "POST %s: the stream ended early", url);
                r = -EAGAIN;
        }
        if (written == -EILSEQ && (r == 0 || r == -EILSEQ || r == -EAGAIN)) {
                r = -EILSEQ;
        } else if (written < 0 && (r == 0 || r == -EILSEQ || r == -EAGAIN || r == written)) {
                snprintf(t->err, t->err_size, "cannot write the copy: %s", strerror(-written));
                r = written;
        }
        if (r == -EILSEQ) {
                struct wire_range bad = written == -EILSEQ ? t->bad : wire_reader_bad(t->reader);
                t->stats->chunks_refetched++;
                log_warn("agent",
                         "transfer %lld: the chunk at %llu (+%llu) failed its "
                         "SHA-256 or is not the version's; asking for it again",
                         (long long)t->job->id, (unsigned long long)bad.offset,
                         (unsigned long long)bad.length);
        }
        t->reader = wire_reader_free(t->reader);
        curl_easy_cleanup(curl);
        curl_slist_free_all(headers);
        free(body);
        return r;
}

/* ---- planning: which blocks come from where ---- */

enum block_kind { BLOCK_KEPT, BLOCK_LOCAL, BLOCK_ZERO, BLOCK_REMOTE };

struct plan {
        struct wire_range *ranges[4];
        size_t n[4], cap[4];
        uint64_t bytes[4];
};

static int plan_add(struct plan *p, enum block_kind kind, uint64_t offset) {
        size_t n = p->n[kind];
        p->bytes[kind] += IMAGE_BLOCK;
        if (n && p->ranges[kind][n - 1].offset + p->ranges[kind][n - 1].length == offset &&
            (kind != BLOCK_REMOTE || p->ranges[kind][n - 1].length < WIRE_CHUNK_MAX)) {
                p->ranges[kind][n - 1].length += IMAGE_BLOCK;
                return 0;
        }
        if (n == p->cap[kind]) {
                size_t cap = p->cap[kind] ? 2 * p->cap[kind] : 256;
                struct wire_range *grown = realloc(p->ranges[kind], cap * sizeof(*grown));
                if (!grown)
                        return -ENOMEM;
                p->ranges[kind] = grown;
                p->cap[kind] = cap;
        }
        p->ranges[kind][p->n[kind]++] = (struct wire_range){ offset, IMAGE_BLOCK };
        return 0;
}

static void plan_fini(struct plan *p) {
        for (int k = 0; k < 4; k++)
                free(p->ranges[k]);
}

static bool same_block(const struct image_block_hash *a, const struct image_block_hash *b) {
        return a && b && a->flags == b->flags && !memcmp(a->sha256, b->sha256, IMAGE_DIGEST_SIZE);
}

/* Sorts every block of the version by where it will come from; checked ones are kept. */
static int plan_blocks(struct plan *p, const struct transfer_run *t,
                       const struct image_manifest *cached) {
        size_t n = image_manifest_count(t->want);
        int r = 0;

        for (size_t i = 0; i < n && r == 0; i++) {
                const struct image_block_hash *w = image_manifest_entry(t->want, i);
                enum block_kind kind;
                if (is_checked(t, w->index))
                        kind = BLOCK_KEPT;
                else if (w->flags & IMAGE_BLOCK_ZERO)
                        kind = BLOCK_ZERO;
                else if (cached && same_block(w, image_manifest_lookup(cached, w->index)))
                        kind = BLOCK_LOCAL;
                else
                        kind = BLOCK_REMOTE;
                r = plan_add(p, kind, w->index * IMAGE_BLOCK);
        }
        return r;
}

static void log_plan(const struct transfer_run *t, const struct image_manifest *want,
                     const struct plan *p) {
        log_info("agent",
                 "transfer %lld: %llu blocks: %llu kept, %llu local, %llu zero, %llu to pull",
                 (long long)t->job->id, (unsigned long long)image_manifest_count(want),
                 (unsigned long long)(p->bytes[BLOCK_KEPT] / IMAGE_BLOCK),
                 (unsigned long long)(p->bytes[BLOCK_LOCAL] / IMAGE_BLOCK),
                 (unsigned long long)(p->bytes[BLOCK_ZERO] / IMAGE_BLOCK),
                 (unsigned long long)(p->bytes[BLOCK_REMOTE] / IMAGE_BLOCK));
}

/* Writes the blocks of buf (read at `offset`) that are the version's; the others are pulled later. */
static int write_wanted(struct transfer_run *t, const uint8_t *buf, size_t len, uint64_t offset,
                        uint64_t *unwanted) {
        size_t run = 0; /* wanted bytes before `at` not written yet */
        int r = 0;

        image_hasher_run(t->hasher, buf, len / IMAGE_BLOCK, t->hashes);
        for (size_t at = 0; at <= len && r == 0; at += IMAGE_BLOCK) {
                if (at < len) {
                        if (block_wanted(t, (offset + at) / IMAGE_BLOCK,
                                         t->hashes[at / IMAGE_BLOCK])) {
                                run += IMAGE_BLOCK;
                                continue;
                        }
                        ++*unwanted;
                }
                if (run) {
                        r = image_write(t->out, buf + at - run, run, offset + at - run);
                        if (r == 0) {
                                mark_checked(t, offset + at - run, run);
                                t->stats->bytes_local += run;
                                t->bytes_done += run;
                        }
                        run = 0;
                }
        }
        return r;
}

/* Copies the LOCAL ranges from the cached image, each block checked against the manifest. */
static int copy_local(struct transfer_run *t, struct image *cached, const struct plan *p) {
        size_t cap = LOCAL_READ;
        uint8_t *buf = malloc(cap);
        uint64_t unwanted = 0;
        int r = 0;

        if (!buf)
                return -ENOMEM;
        for (size_t i = 0; i < p->n[BLOCK_LOCAL] && r == 0; i++) {
                struct wire_range rg = p->ranges[BLOCK_LOCAL][i];
                for (uint64_t off = 0; off < rg.length && r == 0; off += cap) {
                        size_t len = rg.length - off < cap ? (size_t)(rg.length - off) : cap;
                        r = image_read(cached, buf, len, rg.offset + off);
                        if (r == 0)
                                r = write_wanted(t, buf, len, rg.offset + off, &unwanted);
                        if (r == 0)
                                r = stopping(t);
                }
        }
        if (unwanted)
                log_warn("agent",
                         "transfer %lld: %llu blocks of the cached copy are not what its "
                         "manifest says; pulling them",
                         (long long)t->job->id, (unsigned long long)unwanted);
        free(buf);
        return r;
}

static int zero_ranges(struct transfer_run *t, const struct plan *p) {
        int r = 0;
        for (size_t i = 0; i < p->n[BLOCK_ZERO] && r == 0; i++) {
                struct wire_range rg = p->ranges[BLOCK_ZERO][i];
                r = image_zero(t->out, rg.length, rg.offset);
                if (r == 0) {
                        mark_checked(t, rg.offset, rg.length);
                        t->bytes_done += rg.length;
                }
        }
        return r;
}

/* Marks the blocks the partial image already holds with the version's hash. */
static void keep_built(struct transfer_run *t, const struct image_manifest *built) {
        for (size_t i = 0; i < image_manifest_count(t->want); i++) {
                const struct image_block_hash *w = image_manifest_entry(t->want, i);
                if (same_block(w, image_manifest_lookup(built, w->index)))
                        mark_checked(t, w->index * IMAGE_BLOCK, IMAGE_BLOCK);
        }
}

/* ---- building one image ---- */

/*
 * Builds `partial` until its top layer equals `want`: keeps what an earlier
 * attempt wrote, copies from `cached_path` (may be NULL) what it holds, pulls
 * the rest from `base``blocks_path`. Every block that ends up in place is
 * checked against `want` on its way in (t->checked says which). The image
 * must exist (an empty overlay or template). Returns 0 or the error of the
 * last pull.
 */
static int build(struct transfer_run *t, const char *partial, const struct image_manifest *want,
                 const char *cached_path, const char *base, const char *blocks_path) {
        uint64_t blocks = image_manifest_virtual_size(want) / IMAGE_BLOCK;
        struct image_manifest *built = NULL, *cached = NULL;
        struct image *cached_img = NULL;
        struct plan plan = { 0 };
        double started = clock_mono_s();
        int r, pulled = 0;

        free(t->checked);
        t->want = want;
        t->checked = calloc(blocks / 8 + 1, 1);
        if (!t->checked)
                return -ENOMEM;
        if ((!t->hasher && image_hasher_new(&t->hasher) < 0) ||
            (!t->hashes && !(t->hashes = calloc(HASHES_MAX, sizeof(*t->hashes)))))
                return -ENOMEM;
        r = image_open(partial, true, &t->out);
        if (r < 0) {
                snprintf(t->err, t->err_size, "cannot open %s: %s", partial, strerror(-r));
                return r;
        }
        /* What an earlier attempt wrote is read back and hashed: kept if it is the version's. */
        r = image_manifest_compute(t->out, &built);
        if (r == 0)
                keep_built(t, built);
        if (r == 0 && cached_path) {
                char manifest_path[PATH_MAX];
                /* v<N>.qcow2 -> v<N>.manifest */
                if (pathf(manifest_path, "%.*s.manifest",
                          (int)(strlen(cached_path) - strlen(".qcow2")), cached_path) < 0 ||
                    image_manifest_load(manifest_path, &cached) < 0) {
                        log_warn("agent",
                                 "transfer %lld: the cached copy %s is unreadable; "
                                 "not using it",
                                 (long long)t->job->id, cached_path);
                        cached = image_manifest_free(cached);
                }
        }
        if (r == 0)
                r = plan_blocks(&plan, t, cached);
        if (r < 0)
                goto out;
        t->stats->bytes_total = image_manifest_count(want) * (uint64_t)IMAGE_BLOCK;
        t->bytes_done = plan.bytes[BLOCK_KEPT];
        t->stats->bytes_local += plan.bytes[BLOCK_KEPT];
        log_plan(t, want, &plan);
        t->stats->s_scan += clock_mono_s() - started;
        started = clock_mono_s();
        r = progress(t, true);
        /* The plan needed only its manifest; what it cannot copy is pulled below. */
        if (r == 0 && plan.n[BLOCK_LOCAL] && image_open(cached_path, false, &cached_img) < 0)
                log_warn("agent",
                         "transfer %lld: the cached copy %s is unreadable; pulling "
                         "its blocks instead",
                         (long long)t->job->id, cached_path);
        if (r == 0 && cached_img)
                r = copy_local(t, cached_img, &plan);
        if (r == 0)
                r = zero_ranges(t, &plan);
        if (r == 0 && t->during_pull && !t->during_pull->ran)
                beside_start(t->during_pull);
        /* Pull what is missing; after a bad chunk or a cut, ask again for what still is. */
        for (int round = 0; r == 0; round++) {
                plan_fini(&plan);
                memset(&plan, 0, sizeof(plan));
                r = plan_blocks(&plan, t, NULL);
                t->bytes_done = plan.bytes[BLOCK_KEPT];
                if (r < 0 || plan.n[BLOCK_REMOTE] == 0)
                        break;
                if (round == PULL_ROUNDS) {
                        if (pulled == 0)
                                snprintf(t->err, t->err_size,
                                         "the source did not send every "
                                         "block asked for");
                        r = pulled < 0 ? pulled : -EAGAIN;
                        break;
                }
                if (round > 0)
                        log_plan(t, want, &plan);
                pulled = pull(t, base, blocks_path, plan.ranges[BLOCK_REMOTE], plan.n[BLOCK_REMOTE],
                              image_manifest_virtual_size(want));
                if (pulled != 0 && pulled != -EILSEQ && pulled != -EAGAIN)
                        r = pulled;
                if (pulled == -EAGAIN && round + 1 < PULL_ROUNDS) {
                        log_warn("agent", "transfer %lld: %s; asking for the rest",
                                 (long long)t->job->id, t->err);
                        usleep(200000u << (round < 4 ? round : 4)); /* the source may be busy */
                }
        }
        t->stats->s_blocks += clock_mono_s() - started;
        started = clock_mono_s();
        /* Making it durable is committing, as the fsync after the check is. */
        if (r == 0)
                r = image_flush(t->out);
        t->out = image_free(t->out);
        t->stats->s_commit += clock_mono_s() - started;
out:
        t->out = image_free(t->out);
        cached_img = image_free(cached_img);
        image_manifest_free(built);
        image_manifest_free(cached);
        plan_fini(&plan);
        return r;
}

/* Walks an image's top-layer extents against the manifest's entries, in order. */
struct extent_match {
        const struct image_manifest *want;
        size_t next; /* the first entry not met yet */
};

static int match_extent(void *userdata, uint64_t offset, uint64_t length, bool zero) {
        struct extent_match *m = userdata;
        size_t n = image_manifest_count(m->want);

        for (uint64_t i = offset / IMAGE_BLOCK; i < (offset + length) / IMAGE_BLOCK; i++) {
                const struct image_block_hash *w =
                        m->next < n ? image_manifest_entry(m->want, m->next) : NULL;
                /* An entry the image lacks, a block the manifest lacks, zeroes where data should be. */
                if (!w || w->index != i || (zero && !(w->flags & IMAGE_BLOCK_ZERO)))
                        return -EBADMSG;
                m->next++;
        }
        return 0;
}

/* qemu-img check of a copy, run beside the look at its allocation map. */
struct qemu_check {
        const char *path;
        char err[256];
};

static int run_check(void *arg) {
        struct qemu_check *c = arg;
        return image_check(c->path, c->err, sizeof(c->err));
}

/*
 * Checks that the image at `path` is exactly `want`; 0 or -EBADMSG (err
 * says why). Every block's content was checked against `want` as it went
 * in (t->checked); what remains is that the image holds those blocks and
 * no others (its allocation map, no data read), and that qemu-img check
 * finds its qcow2 sound. Both open the image read-only (qemu's shared
 * lock), so the check, a process of its own, runs while the map is read.
 */
static int verify(struct transfer_run *t, const char *path, const struct image_manifest *want) {
        struct extent_match m = { want, 0 };
        struct qemu_check qc = { .path = path };
        struct beside checking = { .fn = run_check, .arg = &qc };
        struct image *img = NULL;
        double started = clock_mono_s();
        int r, checked;

        for (size_t i = 0; i < image_manifest_count(want); i++) {
                if (!t->checked || !is_checked(t, image_manifest_entry(want, i)->index)) {
                        snprintf(t->err, t->err_size, "block %llu of the copy was never checked",
                                 (unsigned long long)image_manifest_entry(want, i)->index);
                        return -EBADMSG;
                }
        }
        beside_start(&checking);
        r = image_open(path, false, &img);
        if (r == 0)
                r = image_own_extents(img, match_extent, &m);
        img = image_free(img);
        t->stats->s_verify += clock_mono_s() - started;
        started = clock_mono_s();
        checked = beside_wait(&checking);
        t->stats->s_check += clock_mono_s() - started;
        if (r == 0 && m.next != image_manifest_count(want))
                r = -EBADMSG;
        if (r == -EBADMSG) {
                snprintf(t->err, t->err_size, "the copy's blocks are not the version's");
                return r;
        }
        if (r < 0) {
                snprintf(t->err, t->err_size, "cannot read back %s: %s", path, strerror(-r));
                return r;
        }
        if (checked < 0) {
                snprintf(t->err, t->err_size, "qemu-img check: %s", qc.err);
                return -EBADMSG;
        }
        started = clock_mono_s();
        r = fsync_path(path);
        t->stats->s_commit += clock_mono_s() - started;
        return r;
}

/* ---- the template ---- */

static int ensure_template(struct transfer_run *t, const char *incoming) {
        const struct transfer_job *job = t->job;
        char path[PATH_MAX], partial[PATH_MAX], mpath[PATH_MAX], blocks[PATH_MAX];
        struct image_manifest *want = NULL;
        const char *base = job->template_source_url[0] ? job->template_source_url : job->source_url;
        char *data = NULL;
        size_t len = 0;
        struct stat st;
        int r;

        if (pathf(path, "%s/templates/%s.qcow2", t->env->store, job->template_id) < 0 ||
            pathf(partial, "%s/template-%s.qcow2", incoming, job->template_id) < 0 ||
            pathf(mpath, "/templates/%s/manifest", job->template_id) < 0 ||
            pathf(blocks, "/templates/%s/blocks", job->template_id) < 0)
                return -ENAMETOOLONG;
        if (stat(path, &st) == 0)
                return 0;
        r = fetch(t, base, mpath, MANIFEST_MAX, &data, &len);
        if (r == 0 && image_manifest_decode(data, len, &want) < 0) {
                snprintf(t->err, t->err_size, "the template's manifest from %s is malformed", base);
                r = -EBADMSG;
        }
        free(data);
        if (r < 0)
                return r;
        if (stat(partial, &st) < 0)
                r = image_create(partial, image_manifest_virtual_size(want));
        if (r == 0)
                r = build(t, partial, want, NULL, base, blocks);
        if (r == 0)
                r = verify(t, partial, want);
        if (r == 0)
                r = pathf(mpath, "%s/templates", t->env->store);
        if (r == 0 && (r = mkdirs(mpath)) == 0 && rename(partial, path) < 0)
                r = -errno;
        if (r == 0)
                r = fsync_path(mpath);
        if (r == 0)
                log_info("agent", "transfer %lld: template %s is here now", (long long)job->id,
                         job->template_id);
        image_manifest_free(want);
        return r;
}

/*
 * The version's manifest and configuration are written beside the partial
 * image, and made durable, while the blocks are pulled; the commit only
 * renames them into place. Written at the commit, a 512 MiB version's 5 MB
 * manifest and its fsync took 50 to 150 ms of a busy machine, a tenth of
 * the whole copy.
 */
struct staged {
        const struct image_manifest *want; /* borrowed, as the configuration */
        const char *config;
        size_t config_len;
        char manifest[PATH_MAX], json[PATH_MAX];
};

static int stage_files(void *arg) {
        struct staged *s = arg;
        int r = image_manifest_save(s->want, s->manifest);
        return r < 0 ? r : write_file(s->json, s->config, s->config_len);
}

/*
 * The partial image, an empty overlay of the template unless an earlier
 * attempt left one, is made while the manifest is fetched: qemu-img takes
 * 15 to 30 ms to start on a busy machine.
 */
struct partial {
        const char *template_path, *path;
};

static int make_partial(void *arg) {
        struct partial *p = arg;
        struct stat st;
        return stat(p->path, &st) == 0 ? 0 : image_create_overlay(p->template_path, p->path);
}

/* ---- the whole run ---- */

static int report_end(struct transfer_run *t, int r) {
        const struct transfer_job *job = t->job;
        char path[80], hex[IMAGE_DIGEST_HEX_SIZE], err[256];
        json_t *body, *reply = NULL;
        long status = 0;

        if (r == -ECANCELED || r == -EINTR)
                return r;
        if (r == -EBUSY) {
                snprintf(path, sizeof(path), "/v1/agent/transfers/%lld/pause", (long long)job->id);
                body = json_pack("{s:s}", "owner", t->env->owner);
        } else if (r == 0) {
                snprintf(path, sizeof(path), "/v1/agent/transfers/%lld/succeeded",
                         (long long)job->id);
                image_digest_hex(job->content_sha256, hex);
                body = json_pack("{s:s, s:s, s:I}", "owner", t->env->owner, "content_sha256", hex,
                                 "bytes_sent", (json_int_t)t->stats->bytes_wire);
        } else {
                snprintf(path, sizeof(path), "/v1/agent/transfers/%lld/failed", (long long)job->id);
                body = json_pack("{s:s, s:s, s:b}", "owner", t->env->owner, "error", t->err,
                                 "retry", r == -EAGAIN);
        }
        /* The end must be said: retry a while rather than leave it to the lease. */
        for (int i = 0; i < 10; i++) {
                if (control_call(t->env->control, "POST", path, body, &status, &reply, err,
                                 sizeof(err)) == 0)
                        break;
                sleep(1);
        }
        json_decref(body);
        if (r == -EBUSY && status != 200)
                r = -ECANCELED; /* it ended meanwhile: nothing to hand back */
        if (r == 0 && status != 200) {
                const char *detail = json_string_value(json_object_get(reply, "detail"));
                snprintf(t->err, t->err_size, "the API refused the result: HTTP %ld %s", status,
                         detail ? detail : "");
                r = status == 409 ? -ECANCELED : -EBADMSG;
        }
        json_decref(reply);
        return r;
}

/* The newest cached copy of the snapshot here, older than the wanted version:
 * the nearest to it, so the smallest delta. */
static bool find_cached(const struct transfer_env *env, const struct transfer_job *job,
                        char out[PATH_MAX]) {
        long long best = -1;
        for (size_t i = 0; i < job->n_have; i++) {
                long long v = job->have_versions[i];
                char path[PATH_MAX];
                struct stat st;
                if (v >= job->version || v <= best)
                        continue;
                if (pathf(path, "%s/snapshots/%s/v%lld.qcow2", env->store, job->snapshot_id, v) ==
                            0 &&
                    stat(path, &st) == 0) {
                        best = v;
                        memcpy(out, path, PATH_MAX);
                }
        }
        return best >= 0;
}

int transfer_run(const struct transfer_env *env, const struct transfer_job *job,
                 struct transfer_stats *stats, char *err, size_t err_size) {
        struct transfer_run t = { env, job, stats, .err = err, .err_size = err_size };
        char incoming[PATH_MAX], partial[PATH_MAX], dir[PATH_MAX], final[PATH_MAX];
        char path[PATH_MAX], cached[PATH_MAX], template_path[PATH_MAX], base_path[PATH_MAX];
        struct staged staged = { 0 };
        struct partial made = { template_path, partial };
        struct beside making = { .fn = make_partial, .arg = &made };
        struct beside staging = { .fn = stage_files, .arg = &staged };
        struct image_manifest *want = NULL, *base = NULL;
        bool have_cached;
        uint8_t digest[IMAGE_DIGEST_SIZE];
        char *manifest = NULL, *config = NULL;
        size_t manifest_len = 0, config_len = 0;
        double started = clock_mono_s();
        int r;

        memset(stats, 0, sizeof(*stats));
        err[0] = '\0';
        r = pathf(incoming, "%s/incoming/%lld", env->store, (long long)job->id);
        if (r == 0)
                r = pathf(dir, "%s/snapshots/%s", env->store, job->snapshot_id);
        if (r == 0)
                r = pathf(final, "%s/v%lld.qcow2", dir, (long long)job->version);
        if (r == 0)
                r = pathf(partial, "%s/v%lld.qcow2.partial", incoming, (long long)job->version);
        if (r == 0)
                r = pathf(template_path, "%s/templates/%s.qcow2", env->store, job->template_id);
        if (r == 0)
                r = pathf(staged.manifest, "%s/v%lld.manifest", incoming, (long long)job->version);
        if (r == 0)
                r = pathf(staged.json, "%s/v%lld.json", incoming, (long long)job->version);
        if (r == 0)
                r = mkdirs(incoming);
        if (r == 0)
                r = mkdirs(dir);
        if (r < 0) {
                snprintf(err, err_size, "cannot make %s: %s", incoming, strerror(-r));
                goto out;
        }
        if (!job->registered) {
                /* Nothing to verify a copy against: such a snapshot has no image to move. */
                snprintf(err, err_size, "version %lld of %s was never registered (no image)",
                         (long long)job->version, job->snapshot_id);
                r = -ENODATA;
                goto out;
        }
        r = ensure_template(&t, incoming);
        if (r < 0)
                goto out;
        beside_start(&making);

        /* Holding an older version, ask only for how the manifest differs from it. */
        have_cached = find_cached(env, job, cached);
        if (have_cached &&
            pathf(base_path, "%.*s.manifest", (int)(strlen(cached) - strlen(".qcow2")), cached) ==
                    0 &&
            image_manifest_load(base_path, &base) == 0) {
                uint8_t d[IMAGE_DIGEST_SIZE];
                char hex[IMAGE_DIGEST_HEX_SIZE];
                image_manifest_digest(base, d);
                image_digest_hex(d, hex);
                pathf(path, "/snapshots/%s/versions/%lld/manifest?base=%s", job->snapshot_id,
                      (long long)job->version, hex);
        } else {
                pathf(path, "/snapshots/%s/versions/%lld/manifest", job->snapshot_id,
                      (long long)job->version);
        }
        r = fetch(&t, job->source_url, path, MANIFEST_MAX, &manifest, &manifest_len);
        /* A patch when the source held our version too, else the whole manifest;
         * either way its digest is checked against the registered one below. */
        if (r == 0 &&
            (!base || image_manifest_patch_apply(base, manifest, manifest_len, &want) < 0) &&
            image_manifest_decode(manifest, manifest_len, &want) < 0) {
                snprintf(err, err_size, "the source's manifest is malformed");
                r = -EBADMSG;
        }
        if (r < 0)
                goto out;
        /* The source must send the version that was registered, nothing else. */
        image_manifest_digest(want, digest);
        if (memcmp(digest, job->content_sha256, sizeof(digest)) != 0) {
                snprintf(err, err_size, "the source's manifest is not version %lld's",
                         (long long)job->version);
                r = -EBADMSG;
                goto out;
        }
        pathf(path, "/snapshots/%s/versions/%lld/config", job->snapshot_id,
              (long long)job->version);
        r = fetch(&t, job->source_url, path, CONFIG_MAX, &config, &config_len);
        if (r < 0)
                goto out;
        staged.want = want;
        staged.config = config;
        staged.config_len = config_len;
        /*
         * Started when the blocks start to move: beside the scan, its fsync
         * held the scan up (0.08 to 0.13 s instead of 0.01 to 0.02).
         */
        t.during_pull = &staging;

        r = beside_wait(&making);
        if (r < 0) {
                snprintf(err, err_size, "cannot create %s: %s", partial, strerror(-r));
                goto out;
        }
        pathf(path, "/snapshots/%s/versions/%lld/blocks", job->snapshot_id,
              (long long)job->version);
        /* What the template's own copy took counts as preparing. */
        stats->s_prepare = clock_mono_s() - started - stats->s_scan - stats->s_blocks -
                           stats->s_verify - stats->s_check - stats->s_commit;
        stats->s_scan = stats->s_blocks = stats->s_verify = stats->s_check = stats->s_commit = 0;
        r = build(&t, partial, want, have_cached ? cached : NULL, job->source_url, path);
        if (r == 0)
                r = verify(&t, partial, want);
        if (r == -EBADMSG) {
                /* Built but wrong: nothing of it can be trusted for a next attempt. */
                unlink(partial);
                r = -EAGAIN;
        }
        if (r < 0)
                goto out;

        /* The copy is proven: its manifest and configuration, then the image, into place. */
        started = clock_mono_s();
        r = beside_wait(&staging);
        if (r == 0)
                r = pathf(cached, "%s/v%lld.manifest", dir, (long long)job->version);
        if (r == 0 && rename(staged.manifest, cached) < 0)
                r = -errno;
        if (r == 0)
                r = pathf(cached, "%s/v%lld.json", dir, (long long)job->version);
        if (r == 0 && rename(staged.json, cached) < 0)
                r = -errno;
        if (r == 0 && rename(partial, final) < 0)
                r = -errno;
        if (r == 0)
                r = fsync_path(dir);
        if (r < 0) {
                snprintf(err, err_size, "cannot put the copy in place: %s", strerror(-r));
                goto out;
        }
        rmdir(incoming);
        stats->s_commit += clock_mono_s() - started;
out:
        beside_wait(&making);
        beside_wait(&staging);
        if (r == -ECANCELED) {
                /* Cancelled for good: what was built is of no use. */
                unlink(partial);
                unlink(staged.manifest);
                unlink(staged.json);
                rmdir(incoming);
        }
        r = report_end(&t, r);
        free(t.checked);
        image_hasher_free(t.hasher);
        free(t.hashes);
        image_manifest_free(want);
        image_manifest_free(base);
        free(manifest);
        free(config);
        return r;
}
