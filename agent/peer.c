/*
 * The source side of a transfer. Paths are /dc/<datacenter>/... so that one
 * process can answer for several datacenters; each request names a
 * transfer (X-Homing-Transfer) and carries its pull ticket, which the API
 * confirms is the ticket of a transfer running from that datacenter. What
 * the transfer moves — its snapshot version and its template — is all the
 * ticket opens.
 *
 * A block stream is produced lazily, one record at a time: a run of zero
 * blocks becomes one zero record, data goes in records of at most
 * WIRE_CHUNK_MAX with their SHA-256. When the manifest knows the blocks and
 * the file holds them as raw data, the data is read from the file straight
 * into the answer's buffer; else through a read-only qemu-nbd of the image.
 * libmicrohttpd runs a thread per connection here, so a reader that blocks
 * (the image, a slow peer) holds only its own thread.
 */
#include "agent/peer.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "agent/control.h"
#include "agent/wire.h"
#include "base/log.h"
#include "base/net.h"
#include "image/image.h"

#define RANGES_BODY_MAX (16u << 20)
#define FILE_MAX (512u << 20)
#define TICKET_CACHE 64
#define TICKET_TTL_S 10

struct ticket_entry {
        const struct peer_site *site; /* what a ticket opens depends on who asks the API */
        int64_t transfer_id;
        char ticket[128];
        char snapshot_id[128], template_id[128];
        int64_t version;
        bool template_only; /* the ticket's holder gets its template here, nothing else */
        time_t expires;
};

struct peer {
        struct MHD_Daemon *daemon;
        const struct peer_site *sites;
        size_t n_sites;
        char *api_url;
        char *api_ca; /* NULL: the system's */
        uint16_t port;
        long max_streams;
        atomic_long streams;
        atomic_uint_least64_t bytes_sent;
        pthread_mutex_t lock;
        struct ticket_entry cache[TICKET_CACHE];
        size_t cache_next;
};

/* What a request asks for, from its path. */
struct target {
        const struct peer_site *site;
        char snapshot_id[128];
        int64_t version; /* 0 for a template */
        char template_id[128];
        char what[16]; /* manifest, config, blocks */
};

struct request {
        struct target target;
        char *body;
        size_t body_len;
        bool too_big;
};

/*
 * Each connection's memory in libmicrohttpd, which mmaps it (pages are used
 * only once touched). A chunked answer is sent from a buffer of what is
 * free in it: with the default 32 KiB a block stream went out 32 KiB at a
 * time, a pread, a chunk and a send each, 16,700 of them per 512 MiB.
 */
#define PEER_CONNECTION_MEMORY (1u << 20)

/* A block stream being sent. */
struct stream {
        struct peer *peer;
        struct image *img;
        struct wire_range *ranges;
        size_t n_ranges, range;
        uint64_t pos;                /* within the current range */
        struct image_reader *reader; /* reads the ranges ahead through qemu-nbd */
        struct image_file_map *map;  /* or: where they lie in the file, */
        int fd;                      /* read from it directly */
        uint8_t *own;                /* into this */
        const uint8_t *buf;          /* the piece read last */
        uint64_t buf_off, buf_len;
        struct image_manifest *manifest;    /* the blocks' hashes; NULL: hash what is read */
        uint8_t out[WIRE_DATA_HEADER_SIZE]; /* the next record's fixed part */
        const uint8_t *payload;             /* and its data, in buf, */
        bool payload_in_file;               /* or in the file at payload_at */
        uint64_t payload_at;
        uint8_t blocks[WIRE_CHUNK_MAX / IMAGE_BLOCK][32]; /* its blocks' hashes */
        size_t out_len, payload_len, out_sent;
        struct wire_digest *digest;
        uint64_t records;
        bool ended;
};

/* ---- answers ---- */

static enum MHD_Result reply(struct MHD_Connection *conn, unsigned status, const char *type,
                             void *data, size_t len, bool take) {
        struct MHD_Response *resp = MHD_create_response_from_buffer(
                len, data, take ? MHD_RESPMEM_MUST_FREE : MHD_RESPMEM_MUST_COPY);
        enum MHD_Result ret;

        if (!resp)
                return MHD_NO;
        MHD_add_response_header(resp, "Content-Type", type);
        MHD_add_response_header(resp, "Cache-Control", "no-store");
        ret = MHD_queue_response(conn, status, resp);
        MHD_destroy_response(resp);
        return ret;
}

static enum MHD_Result problem(struct MHD_Connection *conn, unsigned status, const char *type,
                               const char *detail) {
        char *body = NULL;
        json_t *doc =
                json_pack("{s:s, s:i, s:s}", "type", type, "status", (int)status, "detail", detail);
        if (doc)
                body = json_dumps(doc, JSON_COMPACT);
        json_decref(doc);
        if (!body)
                return MHD_NO;
        return reply(conn, status, "application/problem+json", body, strlen(body), true);
}

/* ---- paths and tickets ---- */

static bool id_valid(const char *s, size_t n) {
        if (n == 0 || n >= 128)
                return false;
        for (size_t i = 0; i < n; i++) {
                char c = s[i];
                if (!(c >= 'a' && c <= 'z') && !(c >= 'A' && c <= 'Z') && !(c >= '0' && c <= '9') &&
                    c != '-' && c != '_' && c != '.')
                        return false;
        }
        return !(n <= 2 && s[0] == '.'); /* never "." or ".." */
}

/* Splits "/dc/<dc>/snapshots/<id>/versions/<v>/<what>" or "/dc/<dc>/templates/<id>/<what>". */
static bool parse_path(const struct peer *p, const char *url, struct target *t) {
        const char *parts[8];
        size_t lens[8], n = 0;
        const char *s = url;

        memset(t, 0, sizeof(*t));
        while (*s == '/' && n < 8) {
                s++;
                parts[n] = s;
                lens[n] = strcspn(s, "/");
                s += lens[n];
                n++;
        }
        if (*s || n < 5 || lens[0] != 2 || memcmp(parts[0], "dc", 2))
                return false;
        for (size_t i = 1; i < n; i++)
                if (!id_valid(parts[i], lens[i]))
                        return false;
        for (size_t i = 0; i < p->n_sites; i++)
                if (strlen(p->sites[i].datacenter) == lens[1] &&
                    !memcmp(p->sites[i].datacenter, parts[1], lens[1]))
                        t->site = &p->sites[i];
        if (!t->site)
                return false;
        if (n == 7 && lens[2] == 9 && !memcmp(parts[2], "snapshots", 9) && lens[4] == 8 &&
            !memcmp(parts[4], "versions", 8)) {
                char v[24];
                char *end;
                snprintf(t->snapshot_id, sizeof(t->snapshot_id), "%.*s", (int)lens[3], parts[3]);
                snprintf(v, sizeof(v), "%.*s", (int)(lens[5] < 20 ? lens[5] : 20), parts[5]);
                t->version = strtoll(v, &end, 10);
                if (*end || t->version <= 0)
                        return false;
                snprintf(t->what, sizeof(t->what), "%.*s", (int)(lens[6] < 15 ? lens[6] : 15),
                         parts[6]);
        } else if (n == 5 && lens[2] == 9 && !memcmp(parts[2], "templates", 9)) {
                snprintf(t->template_id, sizeof(t->template_id), "%.*s", (int)lens[3], parts[3]);
                snprintf(t->what, sizeof(t->what), "%.*s", (int)(lens[4] < 15 ? lens[4] : 15),
                         parts[4]);
        } else {
                return false;
        }
        return !strcmp(t->what, "manifest") || !strcmp(t->what, "blocks") ||
               (!strcmp(t->what, "config") && t->version > 0);
}

/* Looks a ticket up in the cache, or asks the API. 1 valid, 0 not, <0 unknown. */
static int check_ticket(struct peer *p, const struct peer_site *site, int64_t transfer,
                        const char *ticket, struct ticket_entry *out) {
        struct control *c = NULL;
        json_t *body, *answer = NULL;
        long status = 0;
        char err[256];
        time_t now = time(NULL);
        int r;

        pthread_mutex_lock(&p->lock);
        for (size_t i = 0; i < TICKET_CACHE; i++) {
                struct ticket_entry *e = &p->cache[i];
                if (e->site == site && e->transfer_id == transfer && e->expires > now &&
                    !strcmp(e->ticket, ticket)) {
                        *out = *e;
                        pthread_mutex_unlock(&p->lock);
                        return 1;
                }
        }
        pthread_mutex_unlock(&p->lock);

        if (control_new(p->api_url, site->token, p->api_ca, &c) < 0)
                return -ENOMEM;
        body = json_pack("{s:I, s:s}", "transfer_id", (json_int_t)transfer, "ticket", ticket);
        r = control_call(c, "POST", "/v1/agent/pulls/verify", body, &status, &answer, err,
                         sizeof(err));
        json_decref(body);
        control_free(c);
        if (r < 0 || status >= 500) {
                json_decref(answer);
                return -EIO;
        }
        if (status != 200 || !json_is_object(answer)) {
                json_decref(answer);
                return 0;
        }
        memset(out, 0, sizeof(*out));
        out->site = site;
        out->transfer_id = transfer;
        snprintf(out->ticket, sizeof(out->ticket), "%s", ticket);
        {
                const char *snapshot = json_string_value(json_object_get(answer, "snapshot_id"));
                const char *tpl = json_string_value(json_object_get(answer, "template_id"));
                snprintf(out->snapshot_id, sizeof(out->snapshot_id), "%s",
                         snapshot ? snapshot : "");
                const char *serves = json_string_value(json_object_get(answer, "serves"));
                snprintf(out->template_id, sizeof(out->template_id), "%s", tpl ? tpl : "");
                out->template_only = !serves || strcmp(serves, "snapshot") != 0;
        }
        out->version = json_integer_value(json_object_get(answer, "version"));
        out->expires = now + TICKET_TTL_S;
        json_decref(answer);
        pthread_mutex_lock(&p->lock);
        p->cache[p->cache_next++ % TICKET_CACHE] = *out;
        pthread_mutex_unlock(&p->lock);
        return 1;
}

/* 0 when the request's ticket opens its target; else the answer was queued. */
static int authorize(struct peer *p, struct MHD_Connection *conn, const struct target *t,
                     enum MHD_Result *ret) {
        const char *auth = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Authorization");
        const char *id = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "X-Homing-Transfer");
        struct ticket_entry e;
        char *end = NULL;
        long long transfer = id ? strtoll(id, &end, 10) : 0;
        int r;

        if (!auth || strncmp(auth, "Bearer ", 7) || !id || !end || *end || transfer <= 0 ||
            strlen(auth + 7) >= sizeof(e.ticket)) {
                *ret = problem(
                        conn, 401, "urn:homing:problem:unauthorized",
                        "a pull ticket (Authorization: Bearer) and X-Homing-Transfer are required");
                return -EPERM;
        }
        r = check_ticket(p, t->site, transfer, auth + 7, &e);
        if (r < 0) {
                *ret = problem(conn, 503, "urn:homing:problem:api-unavailable",
                               "the ticket cannot be checked now");
                return -EIO;
        }
        if (r == 0 ||
            (t->version > 0 && (e.template_only || strcmp(e.snapshot_id, t->snapshot_id) ||
                                e.version != t->version)) ||
            (t->version == 0 && strcmp(e.template_id, t->template_id))) {
                *ret = problem(conn, 403, "urn:homing:problem:forbidden",
                               "the ticket does not open this image");
                return -EPERM;
        }
        return 0;
}

/* ---- files ---- */

static void image_path(const struct target *t, const char *ext, char *out, size_t size) {
        if (t->version > 0)
                snprintf(out, size, "%s/snapshots/%s/v%" PRId64 ".%s", t->site->store,
                         t->snapshot_id, t->version, ext);
        else
                snprintf(out, size, "%s/templates/%s.%s", t->site->store, t->template_id, ext);
}

static int read_file(const char *path, char **data, size_t *len) {
        FILE *f = fopen(path, "rb");
        struct stat st;
        int r = 0;

        if (!f)
                return -errno;
        if (fstat(fileno(f), &st) < 0 || st.st_size > (off_t)FILE_MAX)
                r = -EFBIG;
        else if (!(*data = malloc((size_t)st.st_size + 1)))
                r = -ENOMEM;
        else if (fread(*data, 1, (size_t)st.st_size, f) != (size_t)st.st_size) {
                free(*data);
                r = -EIO;
        } else
                *len = (size_t)st.st_size;
        fclose(f);
        return r;
}

/* A template's manifest is made once, when first asked for (templates never change). */
static int template_manifest(const struct target *t, const char *path) {
        char image[1100];
        struct image *img = NULL;
        struct image_manifest *m = NULL;
        int r;

        image_path(t, "qcow2", image, sizeof(image));
        r = image_open(image, false, &img);
        if (r == 0)
                r = image_manifest_compute(img, &m);
        image_free(img);
        if (r == 0)
                r = image_manifest_save(m, path);
        image_manifest_free(m);
        return r;
}

/*
 * A snapshot version's manifest as a patch from an older version the asker
 * holds (?base=<its content digest>), when this store holds that one too:
 * a few changed entries instead of all of them. 1 answered, 0 not possible.
 */
static int serve_patch(struct MHD_Connection *conn, const struct target *t, const char *base_hex,
                       enum MHD_Result *ret) {
        uint8_t base_digest[IMAGE_DIGEST_SIZE], d[IMAGE_DIGEST_SIZE];
        struct image_manifest *want = NULL, *base = NULL;
        char path[1100];
        void *patch = NULL;
        size_t len = 0;
        int r = 0;

        if (t->version <= 1 || image_digest_parse(base_hex, base_digest) < 0)
                return 0;
        image_path(t, "manifest", path, sizeof(path));
        if (image_manifest_load(path, &want) < 0)
                return 0;
        for (int64_t v = t->version - 1; v >= 1 && !base; v--) {
                struct target older = *t;
                older.version = v;
                image_path(&older, "manifest", path, sizeof(path));
                if (image_manifest_load(path, &base) < 0)
                        continue;
                image_manifest_digest(base, d);
                if (memcmp(d, base_digest, sizeof(d)) != 0)
                        base = image_manifest_free(base);
        }
        if (base && image_manifest_patch_encode(base, want, &patch, &len) == 0) {
                *ret = reply(conn, 200, "application/vnd.homing.manifest-patch", patch, len, true);
                r = 1;
        }
        image_manifest_free(base);
        image_manifest_free(want);
        return r;
}

static enum MHD_Result serve_file(struct MHD_Connection *conn, const struct target *t) {
        char path[1100], *data = NULL;
        size_t len = 0;
        bool manifest = !strcmp(t->what, "manifest");
        const char *base = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "base");
        enum MHD_Result ret;
        int r;

        if (manifest && base && serve_patch(conn, t, base, &ret))
                return ret;
        image_path(t, manifest ? "manifest" : "json", path, sizeof(path));
        r = read_file(path, &data, &len);
        if (r == -ENOENT && manifest && t->version == 0 && template_manifest(t, path) == 0)
                r = read_file(path, &data, &len);
        if (r == -ENOENT)
                return problem(conn, 404, "urn:homing:problem:not-found",
                               "this store does not hold it");
        if (r < 0)
                return problem(conn, 500, "urn:homing:problem:store", strerror(-r));
        return reply(conn, 200, manifest ? "application/octet-stream" : "application/json", data,
                     len, true);
}

/* ---- block streams ---- */

static bool all_zero(const uint8_t *p, size_t n) {
        static const uint8_t zero[IMAGE_BLOCK];
        for (size_t i = 0; i < n; i += IMAGE_BLOCK)
                if (memcmp(p + i, zero, IMAGE_BLOCK))
                        return false;
        return true;
}

static int pread_all(int fd, uint8_t *buf, uint64_t len, uint64_t offset) {
        for (uint64_t done = 0; done < len;) {
                ssize_t n = pread(fd, buf + done, len - done, (off_t)(offset + done));
                if (n < 0 && errno == EINTR)
                        continue;
                if (n <= 0)
                        return n < 0 ? -errno : -EIO;
                done += (uint64_t)n;
        }
        return 0;
}

/*
 * A data record's SHA-256. The blocks' own hashes come from the version's
 * manifest when it has them all, which spares hashing what was read: the
 * receiver hashes it anyway and checks each block against the same
 * manifest, so a block that is not what the manifest says is caught there.
 */
static void chunk_sha256(struct stream *s, uint64_t at, const uint8_t *data, uint64_t len,
                         uint8_t out[32]) {
        size_t n = len / IMAGE_BLOCK;
        const struct image_block_hash *e;

        if (s->manifest && image_manifest_run(s->manifest, at / IMAGE_BLOCK, n, &e) == n) {
                for (size_t i = 0; i < n; i++)
                        memcpy(s->blocks[i], e[i].sha256, 32);
                wire_chunk_sha256_of((const uint8_t(*)[32])s->blocks, n, out);
                return;
        }
        wire_chunk_sha256(data, (uint32_t)len, NULL, out);
}

/*
 * The next record from where the version's file holds it, when the
 * manifest knows its blocks (which are zeroes, what the others hash to):
 * stream_read then reads the data straight into the answer's buffer.
 * 0, 1 when the manifest lacks the first block, -EIO.
 */
static int next_record_mapped(struct stream *s, struct wire_range rg, uint64_t at) {
        uint64_t max = rg.length - s->pos < WIRE_CHUNK_MAX ? rg.length - s->pos : WIRE_CHUNK_MAX;
        const struct image_block_hash *e;
        uint64_t file_off, n, run;
        size_t listed;
        uint8_t sha[32];
        bool zero = false;

        /* read_directly found every range in the file. */
        if (image_file_map_find(s->map, at, max, &file_off, &n) < 0)
                return -EIO;
        listed = image_manifest_run(s->manifest, at / IMAGE_BLOCK, n / IMAGE_BLOCK, &e);
        for (run = 0; run / IMAGE_BLOCK < listed; run += IMAGE_BLOCK) {
                const struct image_block_hash *b = &e[run / IMAGE_BLOCK];
                if (run && zero != !!(b->flags & IMAGE_BLOCK_ZERO))
                        break;
                zero = b->flags & IMAGE_BLOCK_ZERO;
                memcpy(s->blocks[run / IMAGE_BLOCK], b->sha256, 32);
        }
        if (run == 0)
                return 1;
        if (zero) {
                wire_zero_record(s->out, at, run);
                s->out_len = WIRE_ZERO_SIZE;
        } else {
                wire_chunk_sha256_of((const uint8_t(*)[32])s->blocks, run / IMAGE_BLOCK, sha);
                wire_data_header(s->out, at, (uint32_t)run, sha);
                s->out_len = WIRE_DATA_HEADER_SIZE;
                s->payload_in_file = true;
                s->payload_at = file_off;
                s->payload_len = run;
        }
        wire_digest_add(s->digest, s->out, s->out_len);
        s->records++;
        s->pos += run;
        return 0;
}

/* Fills s->out (and s->payload) with the next record. 0, or <0 on a read failure. */
static int next_record(struct stream *s) {
        struct wire_range rg;
        uint64_t at, len, run;
        const uint8_t *data;
        uint8_t sha[32];
        bool zero;
        int r;

        s->payload_len = 0;
        s->payload_in_file = false;
        while (s->range < s->n_ranges && s->pos == s->ranges[s->range].length) {
                s->range++;
                s->pos = 0;
        }
        if (s->range == s->n_ranges) {
                uint8_t digest[32];
                wire_digest_final(s->digest, digest);
                wire_end_record(s->out, s->records, digest);
                s->out_len = WIRE_END_SIZE;
                s->ended = true;
                return 0;
        }
        rg = s->ranges[s->range];
        at = rg.offset + s->pos;
        if (s->map && s->manifest && (r = next_record_mapped(s, rg, at)) <= 0)
                return r;
        if ((at < s->buf_off || at >= s->buf_off + s->buf_len) && s->map) {
                uint64_t file_off, n;
                len = rg.length - s->pos < IMAGE_READER_PIECE ? rg.length - s->pos
                                                              : IMAGE_READER_PIECE;
                r = image_file_map_find(s->map, at, len, &file_off, &n);
                if (r == 0)
                        r = pread_all(s->fd, s->own, n, file_off);
                if (r < 0)
                        return r;
                s->buf = s->own;
                s->buf_off = at;
                s->buf_len = n;
        } else if (at < s->buf_off || at >= s->buf_off + s->buf_len) {
                size_t got;
                /* The reader's pieces follow the ranges exactly. */
                r = image_reader_next(s->reader, &s->buf, &got, &s->buf_off);
                if (r != 0 || s->buf_off != at)
                        return r < 0 ? r : -EIO;
                s->buf_len = got;
        }
        data = s->buf + (at - s->buf_off);
        len = s->buf_off + s->buf_len - at;
        if (len > rg.length - s->pos)
                len = rg.length - s->pos;
        /* The leading run of blocks of one kind. */
        zero = all_zero(data, IMAGE_BLOCK);
        for (run = IMAGE_BLOCK; run < len && all_zero(data + run, IMAGE_BLOCK) == zero;
             run += IMAGE_BLOCK)
                ;
        if (zero) {
                wire_zero_record(s->out, at, run);
                s->out_len = WIRE_ZERO_SIZE;
        } else {
                chunk_sha256(s, at, data, run, sha);
                wire_data_header(s->out, at, (uint32_t)run, sha);
                s->out_len = WIRE_DATA_HEADER_SIZE;
                s->payload = data;
                s->payload_len = run;
        }
        wire_digest_add(s->digest, s->out, zero ? WIRE_ZERO_SIZE : WIRE_DATA_HEADER_SIZE);
        s->records++;
        s->pos += run;
        return 0;
}

/*
 * Fills `buf` with as many records as fit, a header together with its
 * data: a header sent on its own was a send, a segment and a wake-up of
 * the receiver of their own for each record.
 */
static ssize_t stream_read(void *cls, uint64_t pos, char *buf, size_t max) {
        struct stream *s = cls;
        size_t n = 0, take;

        while (n < max) {
                if (s->out_sent == s->out_len + s->payload_len) {
                        if (s->ended)
                                break;
                        if (next_record(s) < 0)
                                goto failed;
                        s->out_sent = 0;
                }
                if (s->out_sent < s->out_len) {
                        take = s->out_len - s->out_sent < max - n ? s->out_len - s->out_sent
                                                                  : max - n;
                        memcpy(buf + n, s->out + s->out_sent, take);
                } else {
                        size_t at = s->out_sent - s->out_len;
                        take = s->payload_len - at < max - n ? s->payload_len - at : max - n;
                        if (!s->payload_in_file)
                                memcpy(buf + n, s->payload + at, take);
                        else if (pread_all(s->fd, (uint8_t *)buf + n, take, s->payload_at + at) < 0)
                                goto failed;
                }
                s->out_sent += take;
                n += take;
        }
        if (n == 0)
                return MHD_CONTENT_READER_END_OF_STREAM;
        atomic_fetch_add(&s->peer->bytes_sent, n);
        return (ssize_t)n;
failed:
        log_warn("agent", "a block stream stopped: the image could not be read");
        return MHD_CONTENT_READER_END_WITH_ERROR;
}

static void stream_free(void *cls) {
        struct stream *s = cls;
        atomic_fetch_sub(&s->peer->streams, 1);
        image_reader_free(s->reader);
        image_file_map_free(s->map);
        if (s->fd >= 0)
                close(s->fd);
        free(s->own);
        image_free(s->img);
        image_manifest_free(s->manifest);
        wire_digest_free(s->digest);
        free(s->ranges);
        free(s);
}

/*
 * A version's file is never written: when all the ranges asked for lie in
 * it as raw data, they are read from it directly, which spares a qemu-nbd
 * and a copy through its socket. 0 (reading directly), 1 (go through
 * qemu-nbd; the ranges may be decoded already), -EBADMSG, -ENOENT, -errno.
 */
static int read_directly(struct stream *s, const char *path, const struct request *req) {
        uint64_t file_off, n;

        if (image_file_map_new(path, &s->map) < 0)
                return access(path, R_OK) < 0 ? -errno : 1;
        if (wire_ranges_decode(req->body, req->body_len, image_file_map_size(s->map), &s->ranges,
                               &s->n_ranges) < 0)
                return -EBADMSG;
        for (size_t i = 0; i < s->n_ranges; i++) {
                for (uint64_t at = 0; at < s->ranges[i].length; at += n) {
                        if (image_file_map_find(s->map, s->ranges[i].offset + at,
                                                s->ranges[i].length - at, &file_off, &n) < 0) {
                                s->map = image_file_map_free(s->map);
                                return 1;
                        }
                }
        }
        s->fd = open(path, O_RDONLY | O_CLOEXEC);
        s->own = malloc(IMAGE_READER_PIECE);
        if (s->fd < 0 || !s->own) {
                s->map = image_file_map_free(s->map);
                return s->fd < 0 ? -errno : -ENOMEM;
        }
        return 0;
}

/* Starts reading the ranges ahead. */
static int start_reading(struct stream *s) {
        struct image_span *spans = calloc(s->n_ranges ? s->n_ranges : 1, sizeof(*spans));
        int r;

        if (!spans)
                return -ENOMEM;
        for (size_t i = 0; i < s->n_ranges; i++)
                spans[i] = (struct image_span){ s->ranges[i].offset, s->ranges[i].length };
        r = image_reader_new(s->img, spans, s->n_ranges, &s->reader);
        free(spans);
        return r;
}

static enum MHD_Result serve_blocks(struct peer *p, struct MHD_Connection *conn,
                                    const struct target *t, const struct request *req) {
        struct stream *s;
        struct MHD_Response *resp;
        char path[1100];
        enum MHD_Result ret;
        int r;

        if (atomic_fetch_add(&p->streams, 1) >= p->max_streams) {
                atomic_fetch_sub(&p->streams, 1);
                return problem(conn, 503, "urn:homing:problem:busy",
                               "this agent sends as many streams as it may; try again");
        }
        s = calloc(1, sizeof(*s));
        if (!s || !(s->digest = wire_digest_new())) {
                free(s);
                atomic_fetch_sub(&p->streams, 1);
                return MHD_NO;
        }
        s->peer = p;
        s->fd = -1;
        /* Without its manifest (a template's not asked for yet), the data is hashed. */
        image_path(t, "manifest", path, sizeof(path));
        if (image_manifest_load(path, &s->manifest) < 0)
                s->manifest = NULL;
        image_path(t, "qcow2", path, sizeof(path));
        r = read_directly(s, path, req);
        if (r == 1) {
                r = image_open(path, false, &s->img);
                if (r == 0 && !s->ranges &&
                    wire_ranges_decode(req->body, req->body_len, image_size(s->img), &s->ranges,
                                       &s->n_ranges) < 0)
                        r = -EBADMSG;
                if (r == 0)
                        r = start_reading(s);
        }
        if (r < 0) {
                stream_free(s);
                if (r == -EBADMSG)
                        return problem(conn, 400, "urn:homing:problem:invalid-ranges",
                                       "the body is not a valid list of ranges of this image");
                return problem(conn, r == -ENOENT ? 404 : 500, "urn:homing:problem:store",
                               strerror(-r));
        }
        resp = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 256 * 1024, stream_read, s,
                                                 stream_free);
        if (!resp) {
                stream_free(s);
                return MHD_NO;
        }
        MHD_add_response_header(resp, "Content-Type", "application/vnd.homing.chunks");
        ret = MHD_queue_response(conn, 200, resp);
        MHD_destroy_response(resp);
        return ret;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *upload,
                                  size_t *upload_size, void **con_cls) {
        struct peer *p = cls;
        struct request *req = *con_cls;
        enum MHD_Result ret;

        if (!req) {
                req = calloc(1, sizeof(*req));
                if (!req)
                        return MHD_NO;
                *con_cls = req;
                if (!parse_path(p, url, &req->target))
                        req->target.site = NULL;
                return MHD_YES;
        }
        if (*upload_size) {
                if (req->body_len + *upload_size > RANGES_BODY_MAX) {
                        req->too_big = true;
                } else {
                        char *grown = realloc(req->body, req->body_len + *upload_size);
                        if (!grown)
                                return MHD_NO;
                        memcpy(grown + req->body_len, upload, *upload_size);
                        req->body = grown;
                        req->body_len += *upload_size;
                }
                *upload_size = 0;
                return MHD_YES;
        }
        if (!req->target.site)
                return problem(conn, 404, "urn:homing:problem:not-found", "no such image here");
        if (strcmp(method, !strcmp(req->target.what, "blocks") ? "POST" : "GET"))
                return problem(conn, 405, "urn:homing:problem:method-not-allowed",
                               "blocks are POSTed, manifests and configurations are GETs");
        if (req->too_big)
                return problem(conn, 413, "urn:homing:problem:too-large", "too many ranges");
        if (authorize(p, conn, &req->target, &ret) < 0)
                return ret;
        if (!strcmp(req->target.what, "blocks"))
                return serve_blocks(p, conn, &req->target, req);
        return serve_file(conn, &req->target);
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe) {
        struct request *req = *con_cls;
        if (req) {
                free(req->body);
                free(req);
        }
        *con_cls = NULL;
}

int peer_start(const char *listen, const char *api_url, const struct peer_tls *tls,
               const struct peer_site *sites, size_t n, long max_streams, struct peer **out) {
        struct peer *p = calloc(1, sizeof(*p));
        struct sockaddr_storage addr;
        const union MHD_DaemonInfo *info;
        char err[256];

        if (!p || !(p->api_url = strdup(api_url)) ||
            (tls->ca && *tls->ca && !(p->api_ca = strdup(tls->ca)))) {
                if (p)
                        free(p->api_url);
                free(p);
                return -ENOMEM;
        }
        if (net_parse_listen(listen, &addr, err, sizeof(err)) < 0) {
                log_error("agent", "--agent-listen: %s", err);
                peer_stop(p);
                return -EINVAL;
        }
        pthread_mutex_init(&p->lock, NULL);
        p->sites = sites;
        p->n_sites = n;
        p->max_streams = max_streams;
        /* poll, not select: one agent for many datacenters (the quickstart's
         * 159) holds over FD_SETSIZE descriptors, and select refuses those. */
        if (tls->cert_pem)
                p->daemon = MHD_start_daemon(
                        MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD |
                                MHD_USE_POLL | MHD_USE_ERROR_LOG | MHD_USE_TLS,
                        0, NULL, NULL, on_request, p, MHD_OPTION_SOCK_ADDR,
                        (struct sockaddr *)&addr, MHD_OPTION_NOTIFY_COMPLETED, on_completed, p,
                        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int)60,
                        MHD_OPTION_CONNECTION_LIMIT, (unsigned int)256,
                        MHD_OPTION_LISTENING_ADDRESS_REUSE, (unsigned int)1,
                        MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)PEER_CONNECTION_MEMORY,
                        MHD_OPTION_HTTPS_MEM_CERT, tls->cert_pem, MHD_OPTION_HTTPS_MEM_KEY,
                        tls->key_pem, MHD_OPTION_HTTPS_PRIORITIES, NET_TLS_PRIORITIES,
                        MHD_OPTION_END);
        else
                p->daemon = MHD_start_daemon(MHD_USE_THREAD_PER_CONNECTION |
                                                     MHD_USE_INTERNAL_POLLING_THREAD |
                                                     MHD_USE_POLL | MHD_USE_ERROR_LOG,
                                             0, NULL, NULL, on_request, p, MHD_OPTION_SOCK_ADDR,
                                             (struct sockaddr *)&addr, MHD_OPTION_NOTIFY_COMPLETED,
                                             on_completed, p, MHD_OPTION_CONNECTION_TIMEOUT,
                                             (unsigned int)60, MHD_OPTION_CONNECTION_LIMIT,
                                             (unsigned int)256, MHD_OPTION_LISTENING_ADDRESS_REUSE,
                                             (unsigned int)1, MHD_OPTION_CONNECTION_MEMORY_LIMIT,
                                             (size_t)PEER_CONNECTION_MEMORY, MHD_OPTION_END);
        if (!p->daemon) {
                log_error("agent", "cannot listen on %s", listen);
                peer_stop(p);
                return -EADDRINUSE;
        }
        info = MHD_get_daemon_info(p->daemon, MHD_DAEMON_INFO_BIND_PORT);
        p->port = info ? info->port : 0;
        *out = p;
        return 0;
}

struct peer *peer_stop(struct peer *p) {
        if (!p)
                return NULL;
        if (p->daemon)
                MHD_stop_daemon(p->daemon);
        pthread_mutex_destroy(&p->lock);
        free(p->api_url);
        free(p->api_ca);
        free(p);
        return NULL;
}

uint16_t peer_port(const struct peer *p) {
        return p->port;
}

uint64_t peer_bytes_sent(const struct peer *p) {
        return atomic_load(&((struct peer *)p)->bytes_sent);
}
