/*
 * Images on disk: qemu-img makes and inspects them, a qemu-nbd child serves
 * each open one to libnbd. We never read qcow2 ourselves; what we need to
 * know about the layers comes from two NBD metadata contexts qemu-nbd
 * offers: "qemu:allocation-depth" says which layer of the backing chain
 * holds each extent (1 is the image itself), "base:allocation" whether it
 * reads as zeroes. Their intersection at depth 1 is what this version
 * changed on top of its template.
 *
 * Paths handed to qemu start with "/" or "./": qemu takes "name:rest" for
 * a protocol ("nbd:", "json:") and a leading "-" for an option.
 */
#include "image/image.h"
#include "image/internal.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <libgen.h>
#include <libnbd.h>
#include <poll.h>
#include <pthread.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

#define CLUSTER_OPTIONS "cluster_size=64k,extended_l2=on"
/* qemu-nbd 7.2 advertises 32 MiB as its largest request; libnbd allows 64. */
#define REQUEST_MAX (32u << 20)
/* Block status and write_zeroes lengths are 32-bit on the wire. */
#define STATUS_CHUNK (1ull << 30)
#define TOOL_STDOUT_MAX (1u << 20)
#define TOOL_STDERR_MAX (8u << 10)
/* Buffers below 32 MiB from the heap, and a heap that is not given back at every free. */
#define QEMU_NBD_MALLOC \
        "GLIBC_TUNABLES=glibc.malloc.mmap_threshold=33554432:glibc.malloc.trim_threshold=268435456"

struct image {
        struct nbd_handle *nbd;
        uint64_t size;
        bool writable;
        size_t request_max;
};

static void err_set(char *err, size_t err_size, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));

static void err_set(char *err, size_t err_size, const char *fmt, ...) {
        va_list ap;

        if (!err || !err_size)
                return;
        va_start(ap, fmt);
        vsnprintf(err, err_size, fmt, ap);
        va_end(ap);
}

/* libnbd keeps the errno of its last failure per thread; some have none. */
static int nbd_error(void) {
        int e = nbd_get_errno();
        return e > 0 ? -e : -EIO;
}

/* "./x" for a relative path; see the top of the file. *out is malloc'd. */
static int qemu_path(const char *path, char **out) {
        if (!path || !*path)
                return -EINVAL;
        if (path[0] == '/')
                *out = strdup(path);
        else if (asprintf(out, "./%s", path) < 0)
                *out = NULL;
        return *out ? 0 : -ENOMEM;
}

/* ---- running qemu-img ------------------------------------------------------ */

struct capture {
        char *data; /* NUL-terminated; bytes past max are read and dropped */
        size_t len, max;
};

static void capture_take(struct capture *c, const char *buf, size_t n) {
        size_t keep = c->len < c->max ? c->max - c->len : 0;

        if (n < keep)
                keep = n;
        if (!keep || !c->data)
                return;
        memcpy(c->data + c->len, buf, keep);
        c->len += keep;
        c->data[c->len] = '\0';
}

/*
 * Runs argv (found in PATH) with stdin from /dev/null, collecting stdout and
 * stderr (both drained together, so a chatty child cannot block on either).
 * *status is the exit code, or 128 + the signal. Returns 0 when the child
 * ran, -errno when it could not start.
 */
static int tool_run(char *const argv[], struct capture *out, struct capture *err, int *status) {
        struct capture *cap[2] = { out, err };
        posix_spawn_file_actions_t actions;
        int pipes[2][2] = { { -1, -1 }, { -1, -1 } }; /* [stdout, stderr][read, write] */
        pid_t pid;
        int r, ws;

        for (int i = 0; i < 2; i++) {
                cap[i]->len = 0;
                cap[i]->data = malloc(cap[i]->max + 1);
                if (!cap[i]->data)
                        return -ENOMEM;
                cap[i]->data[0] = '\0';
                /* CLOEXEC: other children (a qemu-nbd) must not hold our pipes open. */
                if (pipe2(pipes[i], O_CLOEXEC) < 0) {
                        r = -errno;
                        goto out;
                }
        }
        r = posix_spawn_file_actions_init(&actions);
        if (r) {
                r = -r;
                goto out;
        }
        r = posix_spawn_file_actions_addopen(&actions, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
        if (!r)
                r = posix_spawn_file_actions_adddup2(&actions, pipes[0][1], STDOUT_FILENO);
        if (!r)
                r = posix_spawn_file_actions_adddup2(&actions, pipes[1][1], STDERR_FILENO);
        if (!r)
                r = posix_spawnp(&pid, argv[0], &actions, NULL, argv, environ);
        posix_spawn_file_actions_destroy(&actions);
        for (int i = 0; i < 2; i++) {
                close(pipes[i][1]);
                pipes[i][1] = -1;
        }
        if (r) {
                r = -r;
                goto out;
        }

        while (pipes[0][0] >= 0 || pipes[1][0] >= 0) {
                /* poll skips an entry whose fd is negative: a pipe already at EOF. */
                struct pollfd fds[2] = { { .fd = pipes[0][0], .events = POLLIN },
                                         { .fd = pipes[1][0], .events = POLLIN } };
                char buf[4096];

                if (poll(fds, 2, -1) < 0) {
                        if (errno == EINTR)
                                continue;
                        break; /* still reap the child below */
                }
                for (int i = 0; i < 2; i++) {
                        ssize_t n;

                        if (fds[i].fd < 0 || !fds[i].revents)
                                continue;
                        n = read(fds[i].fd, buf, sizeof(buf));
                        if (n < 0 && errno == EINTR)
                                continue;
                        if (n <= 0) {
                                close(pipes[i][0]);
                                pipes[i][0] = -1;
                                continue;
                        }
                        capture_take(cap[i], buf, (size_t)n);
                }
        }
        while (waitpid(pid, &ws, 0) < 0) {
                if (errno != EINTR) {
                        r = -errno;
                        goto out;
                }
        }
        *status = WIFEXITED(ws) ? WEXITSTATUS(ws) : 128 + (WIFSIGNALED(ws) ? WTERMSIG(ws) : 0);
        r = 0;
out:
        for (int i = 0; i < 2; i++)
                for (int j = 0; j < 2; j++)
                        if (pipes[i][j] >= 0)
                                close(pipes[i][j]);
        return r;
}

static void capture_fini(struct capture *c) {
        free(c->data);
        c->data = NULL;
}

/* The first line of a tool's stderr, for error texts. */
static const char *first_line(struct capture *c) {
        char *nl;

        if (!c->data)
                return "";
        nl = strchr(c->data, '\n');
        if (nl)
                *nl = '\0';
        return c->data;
}

/*
 * Runs qemu-img and wants exit code 0 from it. Returns 0, -EIO when it
 * failed (and its first stderr line in err), -errno when it did not run.
 */
static int qemu_img(char *const argv[], struct capture *out, char *err, size_t err_size) {
        struct capture e = { .max = TOOL_STDERR_MAX };
        int status = -1, r;

        r = tool_run(argv, out, &e, &status);
        if (r < 0)
                err_set(err, err_size, "qemu-img: %s", strerror(-r));
        else if (status != 0) {
                err_set(err, err_size, "qemu-img exited with %d: %s", status, first_line(&e));
                r = -EIO;
        }
        capture_fini(&e);
        return r;
}

/* ---- creating ---------------------------------------------------------------- */

/*
 * Claims `path` with O_EXCL before qemu-img writes it: qemu-img create would
 * silently truncate an existing image, a version or a template.
 */
static int claim_path(const char *path) {
        int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);

        if (fd < 0)
                return -errno;
        close(fd);
        return 0;
}

/*
 * Runs `qemu-img create` (argv) for an image at `path`, which must not exist:
 * claims the path first and removes it again when qemu-img fails, so a failed
 * create leaves nothing behind. 0, or -errno.
 */
static int qemu_img_create(const char *path, char *const argv[]) {
        struct capture out = { .max = TOOL_STDERR_MAX };
        int r = claim_path(path);

        if (r < 0)
                return r;
        r = qemu_img(argv, &out, NULL, 0);
        if (r < 0)
                unlink(path);
        capture_fini(&out);
        return r;
}

int image_create(const char *path, uint64_t virtual_size) {
        char size[32], *qpath = NULL;
        int r;

        if (!virtual_size || virtual_size % IMAGE_BLOCK || virtual_size > INT64_MAX)
                return -EINVAL;
        r = qemu_path(path, &qpath);
        if (r < 0)
                return r;
        snprintf(size, sizeof(size), "%" PRIu64, virtual_size);
        r = qemu_img_create(path, (char *[]){ "qemu-img", "create", "-q", "-f", "qcow2", "-o",
                                              CLUSTER_OPTIONS, qpath, size, NULL });
        free(qpath);
        return r;
}

/*
 * The path of `file` as seen from directory `dir`, both absolute and free
 * of symlinks, "." and "..": the kernel resolves the ".." that qemu puts
 * after the overlay's directory physically, so physical paths are the right
 * ones to compare. *out is malloc'd.
 */
static int path_relative(const char *dir, const char *file, char **out) {
        size_t i = 0, last_sep = 0, ups = 0, need;
        const char *rest;
        char *p;

        if (!strcmp(dir, "/")) {
                rest = file + 1;
        } else {
                while (dir[i] && dir[i] == file[i]) {
                        if (dir[i] == '/')
                                last_sep = i;
                        i++;
                }
                if (!dir[i] && file[i] == '/') {
                        rest = file + i + 1;
                } else {
                        rest = file + last_sep + 1;
                        for (const char *s = dir + last_sep; *s; s++)
                                ups += *s == '/';
                }
        }
        /* "tpl:1.qcow2" would read as protocol "tpl"; "./tpl:1.qcow2" does not. */
        need = ups * 3 + strlen(rest) + 3;
        p = malloc(need);
        if (!p)
                return -ENOMEM;
        p[0] = '\0';
        if (!ups && memchr(rest, ':', strcspn(rest, "/")))
                strcat(p, "./");
        for (size_t k = 0; k < ups; k++)
                strcat(p, "../");
        strcat(p, rest);
        *out = p;
        return 0;
}

int image_create_overlay(const char *template_path, const char *overlay_path) {
        char *tpl = NULL, *dir_copy = NULL, *dir = NULL, *backing = NULL, *qpath = NULL;
        int r;

        r = qemu_path(overlay_path, &qpath);
        if (r < 0)
                goto out;
        tpl = realpath(template_path, NULL);
        if (!tpl) {
                r = -errno;
                goto out;
        }
        dir_copy = strdup(overlay_path);
        if (!dir_copy) {
                r = -ENOMEM;
                goto out;
        }
        dir = realpath(dirname(dir_copy), NULL);
        if (!dir) {
                r = -errno;
                goto out;
        }
        r = path_relative(dir, tpl, &backing);
        if (r < 0)
                goto out;
        /* No size: qemu-img takes the template's, opening it through `backing`. */
        r = qemu_img_create(overlay_path,
                            (char *[]){ "qemu-img", "create", "-q", "-f", "qcow2", "-b", backing,
                                        "-F", "qcow2", "-o", CLUSTER_OPTIONS, qpath, NULL });
out:
        free(qpath);
        free(backing);
        free(dir);
        free(dir_copy);
        free(tpl);
        return r;
}

/* ---- checking ---------------------------------------------------------------- */

static json_int_t json_count(json_t *obj, const char *key) {
        json_t *v = json_object_get(obj, key);
        return json_is_integer(v) ? json_integer_value(v) : 0;
}

int image_check(const char *path, char *err, size_t err_size) {
        struct capture out = { .max = TOOL_STDOUT_MAX }, e = { .max = TOOL_STDERR_MAX };
        json_t *report = NULL;
        json_int_t corruptions, leaks, check_errors;
        char *qpath = NULL;
        int status = -1, r;

        err_set(err, err_size, "%s", "");
        r = qemu_path(path, &qpath);
        if (r < 0)
                goto out;
        r = tool_run((char *[]){ "qemu-img", "check", "-f", "qcow2", "--output=json", qpath, NULL },
                     &out, &e, &status);
        if (r < 0) {
                err_set(err, err_size, "qemu-img: %s", strerror(-r));
                goto out;
        }
        /* Exit 0 clean, 2 corrupt, 3 leaks: all with a report; otherwise no report. */
        report = json_loads(out.data ? out.data : "", 0, NULL);
        if (!json_is_object(report) || (status != 0 && status != 2 && status != 3)) {
                err_set(err, err_size, "qemu-img check exited with %d: %s", status, first_line(&e));
                r = -EIO;
                goto out;
        }
        corruptions = json_count(report, "corruptions");
        leaks = json_count(report, "leaks");
        check_errors = json_count(report, "check-errors");
        if (check_errors) {
                err_set(err, err_size, "qemu-img check could not finish (%lld errors): %s",
                        (long long)check_errors, first_line(&e));
                r = -EIO;
        } else if (corruptions || leaks || status != 0) {
                err_set(err, err_size, "%lld corruptions, %lld leaked clusters: %s",
                        (long long)corruptions, (long long)leaks, first_line(&e));
                r = -EUCLEAN;
        }
out:
        json_decref(report);
        capture_fini(&out);
        capture_fini(&e);
        free(qpath);
        return r;
}

int image_info_backing(const char *path, char *out, size_t size) {
        struct capture o = { .max = TOOL_STDOUT_MAX };
        json_t *info = NULL, *backing;
        char *qpath = NULL;
        const char *name;
        int r;

        r = qemu_path(path, &qpath);
        if (r < 0)
                goto out;
        /* -U: the name is in the header, readable while a writer holds the image. */
        r = qemu_img((char *[]){ "qemu-img", "info", "-U", "-f", "qcow2", "--output=json", qpath,
                                 NULL },
                     &o, NULL, 0);
        if (r < 0)
                goto out;
        info = json_loads(o.data, 0, NULL);
        if (!json_is_object(info)) {
                r = -EIO;
                goto out;
        }
        backing = json_object_get(info, "backing-filename");
        if (!backing) {
                r = -ENODATA;
                goto out;
        }
        name = json_string_value(backing);
        if (!name) {
                r = -EIO;
                goto out;
        }
        if (strlen(name) >= size) {
                r = -ENOBUFS;
                goto out;
        }
        memcpy(out, name, strlen(name) + 1);
out:
        json_decref(info);
        capture_fini(&o);
        free(qpath);
        return r;
}

/* ---- open images ---------------------------------------------------------------- */

/*
 * Whether the file system under `path` takes O_DIRECT (tmpfs before Linux
 * 6.6 does not). An image written through qemu-nbd with --cache=none
 * (O_DIRECT) skips the copy into the page cache, which a profile of a
 * transfer showed as a third of qemu-nbd's time, and leaves little for the
 * final flush; qemu still writes back its qcow2 metadata and flushes on
 * image_flush.
 */
static bool direct_io_works(const char *path) {
        int fd = open(path, O_RDONLY | O_DIRECT | O_CLOEXEC);

        if (fd < 0)
                return false;
        close(fd);
        return true;
}

int image_open(const char *path, bool writable, struct image **out) {
        struct image *img = NULL;
        char *qpath = NULL;
        int64_t size, max;
        int r;

        r = qemu_path(path, &qpath);
        if (r < 0)
                goto out;
        /* The common failures, said plainly before qemu-nbd says them on stderr. */
        if (access(path, writable ? R_OK | W_OK : R_OK) < 0) {
                r = -errno;
                goto out;
        }
        img = calloc(1, sizeof(*img));
        if (!img) {
                r = -ENOMEM;
                goto out;
        }
        img->writable = writable;
        img->nbd = nbd_create();
        if (!img->nbd) {
                r = nbd_error();
                goto out;
        }
        /* Reads fill their buffers or fail: zeroing them first is wasted. */
        nbd_set_pread_initialize(img->nbd, false);
        if (nbd_add_meta_context(img->nbd, LIBNBD_CONTEXT_BASE_ALLOCATION) < 0 ||
            nbd_add_meta_context(img->nbd, "qemu:allocation-depth") < 0) {
                r = nbd_error();
                goto out;
        }
        {
                /*
                 * No --persistent: qemu-nbd exits when we disconnect. qemu-nbd
                 * allocates a buffer for every request, and glibc maps each
                 * one of a MiB afresh and unmaps it after: every byte written
                 * cost a page fault, a third of qemu-nbd's time. A fixed
                 * mmap threshold keeps such buffers on its heap. `env` execs
                 * qemu-nbd in its own process, as socket activation needs.
                 */
                char *argv[10] = { "env", QEMU_NBD_MALLOC, "qemu-nbd",
                                   "-f",  "qcow2",         "--allocation-depth" };
                size_t n = 6;

                if (!writable)
                        argv[n++] = "--read-only";
                else if (direct_io_works(path))
                        argv[n++] = "--cache=none";
                argv[n++] = qpath;
                argv[n] = NULL;
                if (nbd_connect_systemd_socket_activation(img->nbd, argv) < 0) {
                        r = nbd_error();
                        goto out;
                }
        }
        if (nbd_can_meta_context(img->nbd, LIBNBD_CONTEXT_BASE_ALLOCATION) != 1 ||
            nbd_can_meta_context(img->nbd, "qemu:allocation-depth") != 1) {
                r = -EOPNOTSUPP;
                goto out;
        }
        size = nbd_get_size(img->nbd);
        if (size < 0) {
                r = nbd_error();
                goto out;
        }
        if (size % IMAGE_BLOCK) {
                r = -EINVAL;
                goto out;
        }
        img->size = (uint64_t)size;
        max = nbd_get_block_size(img->nbd, LIBNBD_SIZE_MAXIMUM);
        img->request_max = max > 0 && max < REQUEST_MAX ? (size_t)max : REQUEST_MAX;
        *out = img;
        img = NULL;
out:
        image_free(img);
        free(qpath);
        return r;
}

struct image *image_free(struct image *img) {
        if (!img)
                return NULL;
        if (img->nbd) {
                /* A polite NBD_CMD_DISC lets qemu-nbd close the image and exit. */
                if (nbd_aio_is_ready(img->nbd))
                        nbd_shutdown(img->nbd, 0);
                nbd_close(img->nbd);
        }
        free(img);
        return NULL;
}

uint64_t image_size(const struct image *img) {
        return img->size;
}

static int range_check(const struct image *img, uint64_t len, uint64_t offset) {
        return offset > img->size || len > img->size - offset ? -EINVAL : 0;
}

int image_read(struct image *img, void *buf, size_t len, uint64_t offset) {
        int r = range_check(img, len, offset);

        for (size_t done = 0; !r && done < len;) {
                size_t n = len - done < img->request_max ? len - done : img->request_max;

                if (nbd_pread(img->nbd, (char *)buf + done, n, offset + done, 0) < 0)
                        return nbd_error();
                done += n;
        }
        return r;
}

int image_write(struct image *img, const void *buf, size_t len, uint64_t offset) {
        int r = img->writable ? range_check(img, len, offset) : -EPERM;

        for (size_t done = 0; !r && done < len;) {
                size_t n = len - done < img->request_max ? len - done : img->request_max;

                if (nbd_pwrite(img->nbd, (const char *)buf + done, n, offset + done, 0) < 0)
                        return nbd_error();
                done += n;
        }
        return r;
}

int image_zero(struct image *img, uint64_t len, uint64_t offset) {
        int r = img->writable ? range_check(img, len, offset) : -EPERM;

        for (uint64_t done = 0; !r && done < len;) {
                uint64_t n = len - done < STATUS_CHUNK ? len - done : STATUS_CHUNK;

                if (nbd_zero(img->nbd, n, offset + done, 0) < 0)
                        return nbd_error();
                done += n;
        }
        return r;
}

int image_flush(struct image *img) {
        if (!img->writable)
                return 0;
        return nbd_flush(img->nbd, 0) < 0 ? nbd_error() : 0;
}

/* ---- where data lies in the file ------------------------------------------------ */

#define MAP_STDOUT_MAX (8u << 20) /* about 75,000 extents */

struct file_extent {
        uint64_t start, length, offset;
};

struct image_file_map {
        struct file_extent *e;
        size_t n;
        uint64_t size;
};

int image_file_map_new(const char *path, struct image_file_map **out) {
        struct capture o = { .max = MAP_STDOUT_MAX };
        struct image_file_map *m = NULL;
        json_t *list = NULL;
        char *qpath = NULL;
        size_t i;
        json_t *x;
        int r;

        r = qemu_path(path, &qpath);
        if (r == 0)
                r = qemu_img((char *[]){ "qemu-img", "map", "-U", "-f", "qcow2", "--output=json",
                                         qpath, NULL },
                             &o, NULL, 0);
        if (r < 0)
                goto out;
        list = json_loads(o.data, 0, NULL);
        m = calloc(1, sizeof(*m));
        if (!m ||
            (json_is_array(list) && !(m->e = calloc(json_array_size(list) + 1, sizeof(*m->e))))) {
                r = -ENOMEM;
                goto out;
        }
        if (!json_is_array(list)) {
                r = -EIO;
                goto out;
        }
        json_array_foreach(list, i, x) {
                json_int_t start = json_integer_value(json_object_get(x, "start"));
                json_int_t length = json_integer_value(json_object_get(x, "length"));
                json_t *offset = json_object_get(x, "offset");
                struct file_extent *last = m->n ? &m->e[m->n - 1] : NULL;

                if (start < 0 || length <= 0 || (uint64_t)start != m->size) {
                        r = -EIO;
                        goto out;
                }
                m->size += (uint64_t)length;
                /* Depth 0 is this file; an offset at depth 1 is the backing file's. */
                if (json_integer_value(json_object_get(x, "depth")) != 0 ||
                    !json_is_true(json_object_get(x, "data")) || !json_is_integer(offset) ||
                    json_integer_value(offset) < 0)
                        continue;
                if (last && last->start + last->length == (uint64_t)start &&
                    last->offset + last->length == (uint64_t)json_integer_value(offset)) {
                        last->length += (uint64_t)length;
                        continue;
                }
                m->e[m->n++] = (struct file_extent){ (uint64_t)start, (uint64_t)length,
                                                     (uint64_t)json_integer_value(offset) };
        }
        *out = m;
        m = NULL;
out:
        image_file_map_free(m);
        json_decref(list);
        capture_fini(&o);
        free(qpath);
        return r;
}

struct image_file_map *image_file_map_free(struct image_file_map *m) {
        if (m)
                free(m->e);
        free(m);
        return NULL;
}

uint64_t image_file_map_size(const struct image_file_map *m) {
        return m->size;
}

int image_file_map_find(const struct image_file_map *m, uint64_t offset, uint64_t len,
                        uint64_t *file_offset, uint64_t *run) {
        size_t lo = 0, hi = m->n;

        while (lo < hi) {
                size_t mid = lo + (hi - lo) / 2;
                const struct file_extent *e = &m->e[mid];

                if (offset < e->start) {
                        hi = mid;
                } else if (offset >= e->start + e->length) {
                        lo = mid + 1;
                } else {
                        uint64_t left = e->start + e->length - offset;
                        *file_offset = e->offset + (offset - e->start);
                        *run = left < len ? left : len;
                        return 0;
                }
        }
        return -ENOENT;
}

/* ---- background writes -------------------------------------------------------- */

/*
 * A ring of slots: the caller fills slot (head + count) % SLOTS and counts
 * it; the thread checks and sends slots [head, head + issued) as NBD
 * writes, several in flight, so that qemu-nbd receives the next while it
 * writes the last, and frees them in order as they finish. The caller may
 * grow the last counted slot while the thread has not taken it.
 */
#define WRITER_SLOT_SIZE IMAGE_WRITER_PIECE
#define WRITER_SLOTS (IMAGE_WRITER_QUEUE / WRITER_SLOT_SIZE)

struct image_writer;

struct writer_slot {
        struct image_writer *w;
        uint8_t *data;
        uint64_t offset, len;
        bool zero, done;
        int error; /* errno of a failed write */
};

struct image_writer {
        struct image *img;
        image_writer_check_fn check;
        void *userdata;
        pthread_t thread;
        pthread_mutex_t lock;
        pthread_cond_t changed; /* a slot was freed */
        int wake;               /* eventfd: a slot was counted, or closing */
        struct writer_slot slot[WRITER_SLOTS];
        size_t slot_size;
        size_t head, count, issued;
        uint64_t pending; /* bytes queued and not written yet */
        bool closing, polling;
        bool reserved; /* slot (head + count) is the caller's, not counted yet */
        int error;
};

/* libnbd calls this in the writer's thread, from nbd_aio_notify_*. 1: retire the command. */
static int writer_done(void *userdata, int *error) {
        struct writer_slot *s = userdata;

        pthread_mutex_lock(&s->w->lock);
        s->done = true;
        s->error = *error;
        pthread_mutex_unlock(&s->w->lock);
        return 1;
}

/* Sends slot `s` (unlocked). 0, or the -errno of a write that could not be sent. */
static int writer_send(struct image_writer *w, struct writer_slot *s) {
        nbd_completion_callback done = { .callback = writer_done, .user_data = s };
        int64_t cookie = s->zero ? nbd_aio_zero(w->img->nbd, s->len, s->offset, done, 0)
                                 : nbd_aio_pwrite(w->img->nbd, s->data, s->len, s->offset, done, 0);
        return cookie < 0 ? nbd_error() : 0;
}

/* Waits for the connection to move on or the caller to count a slot (unlocked). */
static int writer_wait(struct image_writer *w, bool in_flight) {
        struct nbd_handle *nbd = w->img->nbd;
        struct pollfd fds[2] = { { .fd = w->wake, .events = POLLIN } };
        nfds_t n = 1;
        uint64_t v;

        if (in_flight) {
                unsigned dir = nbd_aio_get_direction(nbd);
                fds[1].fd = nbd_aio_get_fd(nbd);
                fds[1].events = (dir & LIBNBD_AIO_DIRECTION_READ ? POLLIN : 0) |
                                (dir & LIBNBD_AIO_DIRECTION_WRITE ? POLLOUT : 0);
                if (fds[1].fd < 0)
                        return nbd_error();
                n = 2;
        }
        if (poll(fds, n, -1) < 0)
                return errno == EINTR ? 0 : -errno;
        if (fds[0].revents & POLLIN && read(w->wake, &v, sizeof(v)) < 0 && errno != EAGAIN)
                return -errno;
        if (n == 2 && fds[1].revents & (POLLIN | POLLHUP | POLLERR)) {
                if (nbd_aio_notify_read(nbd) < 0)
                        return nbd_error();
        } else if (n == 2 && fds[1].revents & POLLOUT) {
                if (nbd_aio_notify_write(nbd) < 0)
                        return nbd_error();
        }
        return 0;
}

static void *writer_thread(void *userdata) {
        struct image_writer *w = userdata;

        pthread_mutex_lock(&w->lock);
        for (;;) {
                struct writer_slot *s = &w->slot[w->head];
                int r;

                /* Free what was written, in order. */
                if (w->issued && s->done) {
                        if (s->error && !w->error)
                                w->error = -s->error;
                        w->pending -= s->len;
                        w->head = (w->head + 1) % WRITER_SLOTS;
                        w->count--;
                        w->issued--;
                        pthread_cond_broadcast(&w->changed);
                        continue;
                }
                /* Send what is counted; after a failure, only pass it by. */
                if (w->issued < w->count) {
                        s = &w->slot[(w->head + w->issued) % WRITER_SLOTS];
                        s->done = false;
                        s->error = 0;
                        w->issued++;
                        r = w->error;
                        pthread_mutex_unlock(&w->lock);
                        if (r == 0 && w->check)
                                r = w->check(w->userdata, s->zero ? NULL : s->data, s->len,
                                             s->offset);
                        if (r == 0)
                                r = writer_send(w, s);
                        pthread_mutex_lock(&w->lock);
                        if (r < 0) {
                                s->done = true;
                                if (!w->error)
                                        w->error = r;
                        }
                        continue;
                }
                if (!w->count && w->closing)
                        break;
                w->polling = true;
                pthread_mutex_unlock(&w->lock);
                r = writer_wait(w, w->issued > 0);
                pthread_mutex_lock(&w->lock);
                w->polling = false;
                /* A dead connection finishes nothing more: what was sent failed. */
                if (r < 0) {
                        if (!w->error)
                                w->error = r;
                        for (size_t i = 0; i < w->issued; i++)
                                w->slot[(w->head + i) % WRITER_SLOTS].done = true;
                }
        }
        pthread_mutex_unlock(&w->lock);
        return NULL;
}

int image_writer_new(struct image *img, image_writer_check_fn check, void *userdata,
                     struct image_writer **out) {
        struct image_writer *w;
        int r;

        if (!img->writable)
                return -EPERM;
        w = calloc(1, sizeof(*w));
        if (!w)
                return -ENOMEM;
        w->img = img;
        w->check = check;
        w->userdata = userdata;
        w->slot_size = img->request_max < WRITER_SLOT_SIZE ? img->request_max : WRITER_SLOT_SIZE;
        w->wake = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (w->wake < 0) {
                r = -errno;
                goto fail;
        }
        for (unsigned i = 0; i < WRITER_SLOTS; i++) {
                w->slot[i].w = w;
                w->slot[i].data = malloc(w->slot_size);
                if (!w->slot[i].data) {
                        r = -ENOMEM;
                        goto fail;
                }
        }
        pthread_mutex_init(&w->lock, NULL);
        pthread_cond_init(&w->changed, NULL);
        r = -pthread_create(&w->thread, NULL, writer_thread, w);
        if (r < 0) {
                pthread_cond_destroy(&w->changed);
                pthread_mutex_destroy(&w->lock);
                goto fail;
        }
        *out = w;
        return 0;
fail:
        for (unsigned i = 0; i < WRITER_SLOTS; i++)
                free(w->slot[i].data);
        if (w->wake >= 0)
                close(w->wake);
        free(w);
        return r;
}

/* Tells a thread that waits in poll that there is more. Locked. */
static void writer_wake(struct image_writer *w) {
        uint64_t one = 1;

        if (w->polling && write(w->wake, &one, sizeof(one)) < 0) {
                /* The counter is full: the thread has a wake-up pending anyway. */
        }
}

/* Queues one piece: merged into the last slot when it continues it, else a new slot. */
static int writer_queue(struct image_writer *w, const void *buf, uint64_t len, uint64_t offset) {
        struct writer_slot *s;
        int r;

        pthread_mutex_lock(&w->lock);
        w->reserved = false;
        if (w->count > w->issued) {
                s = &w->slot[(w->head + w->count - 1) % WRITER_SLOTS];
                /* Zeroes merge up to a request NBD can carry: 32-bit lengths. */
                if (s->offset + s->len == offset && s->zero == !buf &&
                    s->len + len <= (buf ? w->slot_size : STATUS_CHUNK)) {
                        /* The thread takes up no slot while we hold the lock. */
                        if (buf)
                                memcpy(s->data + s->len, buf, len);
                        s->len += len;
                        w->pending += len;
                        pthread_mutex_unlock(&w->lock);
                        return 0;
                }
        }
        while (w->count == WRITER_SLOTS && !w->error)
                pthread_cond_wait(&w->changed, &w->lock);
        r = w->error;
        /* Slot (head + count) is ours until count covers it; taken under the
         * lock, since head and count change together as the thread frees one. */
        s = &w->slot[(w->head + w->count) % WRITER_SLOTS];
        pthread_mutex_unlock(&w->lock);
        if (r < 0)
                return r;
        s->offset = offset;
        s->len = len;
        s->zero = !buf;
        if (buf)
                memcpy(s->data, buf, len);
        pthread_mutex_lock(&w->lock);
        w->count++;
        w->pending += len;
        writer_wake(w);
        pthread_mutex_unlock(&w->lock);
        return 0;
}

int image_writer_write(struct image_writer *w, const void *buf, size_t len, uint64_t offset) {
        int r = range_check(w->img, len, offset);

        for (size_t done = 0; !r && done < len;) {
                size_t n = len - done < w->slot_size ? len - done : w->slot_size;
                r = writer_queue(w, (const uint8_t *)buf + done, n, offset + done);
                done += n;
        }
        return r;
}

int image_writer_zero(struct image_writer *w, uint64_t len, uint64_t offset) {
        int r = range_check(w->img, len, offset);

        /* Write_zeroes lengths are 32-bit on the wire. */
        for (uint64_t done = 0; !r && done < len;) {
                uint64_t n = len - done < STATUS_CHUNK ? len - done : STATUS_CHUNK;
                r = writer_queue(w, NULL, n, offset + done);
                done += n;
        }
        return r;
}

int image_writer_reserve(struct image_writer *w, size_t len, uint64_t offset, void **buf) {
        struct writer_slot *s;
        int r = len && len <= w->slot_size ? range_check(w->img, len, offset) : -EINVAL;

        if (r < 0)
                return r;
        pthread_mutex_lock(&w->lock);
        w->reserved = false;
        while (w->count == WRITER_SLOTS && !w->error)
                pthread_cond_wait(&w->changed, &w->lock);
        r = w->error;
        if (r == 0) {
                /* Slot (head + count) is the caller's until image_writer_commit counts it. */
                s = &w->slot[(w->head + w->count) % WRITER_SLOTS];
                s->offset = offset;
                s->len = len;
                s->zero = false;
                *buf = s->data;
                w->reserved = true;
        }
        pthread_mutex_unlock(&w->lock);
        return r;
}

int image_writer_commit(struct image_writer *w) {
        int r;

        pthread_mutex_lock(&w->lock);
        r = w->reserved ? w->error : -EINVAL;
        if (r == 0) {
                w->reserved = false;
                w->pending += w->slot[(w->head + w->count) % WRITER_SLOTS].len;
                w->count++;
                writer_wake(w);
        }
        pthread_mutex_unlock(&w->lock);
        return r;
}

uint64_t image_writer_pending(struct image_writer *w) {
        uint64_t n;

        pthread_mutex_lock(&w->lock);
        n = w->pending;
        pthread_mutex_unlock(&w->lock);
        return n;
}

int image_writer_finish(struct image_writer *w) {
        int r;

        if (!w)
                return 0;
        pthread_mutex_lock(&w->lock);
        w->closing = true;
        writer_wake(w);
        pthread_mutex_unlock(&w->lock);
        pthread_join(w->thread, NULL);
        r = w->error;
        pthread_cond_destroy(&w->changed);
        pthread_mutex_destroy(&w->lock);
        for (unsigned i = 0; i < WRITER_SLOTS; i++)
                free(w->slot[i].data);
        close(w->wake);
        free(w);
        return r;
}

/* ---- top-layer extents ------------------------------------------------------- */

/*
 * Coalesces block-aligned ranges on their way to the caller. Rounding
 * outward can make a range overlap its predecessor by one block; that block
 * is then data, since only part of it was known to read as zeroes.
 */
struct coalesce {
        image_extent_fn cb;
        void *userdata;
        bool pending;
        uint64_t offset, end;
        bool zero;
};

static int coalesce_flush(struct coalesce *c) {
        int r = 0;

        if (c->pending && c->end > c->offset)
                r = c->cb(c->userdata, c->offset, c->end - c->offset, c->zero);
        c->pending = false;
        return r;
}

static int coalesce_aligned(struct coalesce *c, uint64_t start, uint64_t end, bool zero) {
        int r;

        if (c->pending && start < c->end) {
                if (zero == c->zero) {
                        if (end > c->end)
                                c->end = end;
                        return 0;
                }
                if (c->zero) {
                        c->end = start; /* the data range wins the shared block */
                } else {
                        start = c->end;
                        if (start >= end)
                                return 0;
                }
        }
        if (c->pending && start == c->end && zero == c->zero) {
                c->end = end;
                return 0;
        }
        r = coalesce_flush(c);
        if (r < 0)
                return r;
        *c = (struct coalesce){ .cb = c->cb,
                                .userdata = c->userdata,
                                .pending = true,
                                .offset = start,
                                .end = end,
                                .zero = zero };
        return 0;
}

static int coalesce_push(struct coalesce *c, uint64_t offset, uint64_t len, bool zero) {
        const uint64_t mask = IMAGE_BLOCK - 1;
        uint64_t start = offset & ~mask, end = (offset + len + mask) & ~mask;
        uint64_t inner_start = (offset + mask) & ~mask, inner_end = (offset + len) & ~mask;
        int r = 0;

        if (!zero || inner_start >= inner_end)
                return coalesce_aligned(c, start, end, false);
        if (start < inner_start)
                r = coalesce_aligned(c, start, inner_start, false);
        if (!r)
                r = coalesce_aligned(c, inner_start, inner_end, true);
        if (!r && inner_end < end)
                r = coalesce_aligned(c, inner_end, end, false);
        return r;
}

/* One block-status reply: (length, flags) pairs per context, from the same offset. */
struct status_reply {
        uint32_t *alloc, *depth;
        size_t n_alloc, n_depth;
        int error;
};

static int status_copy(uint32_t **dst, size_t *n_dst, const uint32_t *entries, size_t n) {
        uint32_t *copy = malloc((n ? n : 1) * sizeof(*copy));

        if (!copy)
                return -ENOMEM;
        memcpy(copy, entries, n * sizeof(*copy));
        free(*dst);
        *dst = copy;
        *n_dst = n & ~(size_t)1;
        return 0;
}

static int status_cb(void *userdata, const char *metacontext, uint64_t offset, uint32_t *entries,
                     size_t nr_entries, int *error) {
        struct status_reply *s = userdata;
        int r = 0;

        if (*error)
                s->error = *error;
        else if (!strcmp(metacontext, LIBNBD_CONTEXT_BASE_ALLOCATION))
                r = status_copy(&s->alloc, &s->n_alloc, entries, nr_entries);
        else if (!strcmp(metacontext, "qemu:allocation-depth"))
                r = status_copy(&s->depth, &s->n_depth, entries, nr_entries);
        if (r < 0)
                s->error = -r;
        return 0;
}

/*
 * Walks both contexts' extents from `offset`, pushing the depth-1 pieces,
 * up to where the shorter list ends (or `limit`). *next is where to ask again.
 */
static int status_merge(const struct status_reply *s, uint64_t offset, uint64_t limit,
                        struct coalesce *c, uint64_t *next) {
        uint64_t pos = offset, end_alloc = offset, end_depth = offset;
        uint32_t alloc_flags = 0, depth = 0;
        size_t ia = 0, id = 0;
        int r;

        while (pos < limit) {
                uint64_t seg_end;

                if (pos == end_alloc) {
                        if (ia >= s->n_alloc)
                                break;
                        end_alloc += s->alloc[ia];
                        alloc_flags = s->alloc[ia + 1];
                        ia += 2;
                        continue; /* zero-length entries just move on */
                }
                if (pos == end_depth) {
                        if (id >= s->n_depth)
                                break;
                        end_depth += s->depth[id];
                        depth = s->depth[id + 1];
                        id += 2;
                        continue;
                }
                seg_end = end_alloc < end_depth ? end_alloc : end_depth;
                if (seg_end > limit)
                        seg_end = limit;
                if (depth == 1) {
                        r = coalesce_push(c, pos, seg_end - pos, alloc_flags & LIBNBD_STATE_ZERO);
                        if (r < 0)
                                return r;
                }
                pos = seg_end;
        }
        *next = pos;
        return 0;
}

int image_own_extents(struct image *img, image_extent_fn cb, void *userdata) {
        struct coalesce c = { .cb = cb, .userdata = userdata };
        struct status_reply s = { 0 };
        uint64_t offset = 0;
        int r = 0;

        while (offset < img->size) {
                uint64_t count =
                        img->size - offset < STATUS_CHUNK ? img->size - offset : STATUS_CHUNK;
                uint64_t next = offset;

                s.n_alloc = s.n_depth = 0;
                s.error = 0;
                if (nbd_block_status(img->nbd, count, offset,
                                     (nbd_extent_callback){ .callback = status_cb,
                                                            .user_data = &s },
                                     0) < 0) {
                        r = s.error ? -s.error : nbd_error();
                        goto out;
                }
                if (s.error) {
                        r = -s.error;
                        goto out;
                }
                r = status_merge(&s, offset, img->size, &c, &next);
                if (r < 0)
                        goto out;
                /* A reply that covers nothing would have us ask forever. */
                if (next <= offset) {
                        r = -EIO;
                        goto out;
                }
                offset = next;
        }
        r = coalesce_flush(&c);
out:
        free(s.alloc);
        free(s.depth);
        return r;
}

/* ---- pipelined reads ---------------------------------------------------------- */

/*
 * Reading and consuming overlap: a reader thread keeps requests in flight
 * and drives libnbd (the only thread that calls it meanwhile) while the
 * caller's thread consumes finished ranges in order. Data lands in SLABS
 * slabs used in turn; a slab is filled by consecutive ranges and reused
 * once all of them are consumed, which, ranges being consumed in order,
 * happens to it as a whole.
 */
#define SLABS 4
#define SLAB_SIZE IMAGE_RANGE_MAX /* image_read_ranges'; a reader's are its piece */
#define IN_FLIGHT_MAX 64

struct pipeline;

struct pending {
        struct pipeline *p;
        uint8_t *data;
        unsigned slab;
        bool done;
        int error; /* errno of a failed read */
};

struct pipeline {
        struct image *img;
        const struct image_range *ranges;
        size_t n;

        pthread_mutex_t lock;
        pthread_cond_t changed; /* a read finished, a slab was freed, or stop */
        uint8_t *slab[SLABS];
        size_t slab_size;
        size_t used[SLABS];
        unsigned live[SLABS], cur;
        struct pending q[IN_FLIGHT_MAX]; /* q[(head + k) % MAX] is range first + k */
        size_t head, count, first, in_flight;
        bool stop;
        int reader_error; /* negative: the connection failed, nothing more finishes */
};

/* A place for `len` bytes, or NULL until the consumer frees a slab. Locked. */
static uint8_t *pipeline_alloc(struct pipeline *p, size_t len, unsigned *slab) {
        uint8_t *data;

        if (p->used[p->cur] + len > p->slab_size) {
                unsigned next = (p->cur + 1) % SLABS;

                if (p->live[next])
                        return NULL;
                p->cur = next;
                p->used[next] = 0;
        }
        data = p->slab[p->cur] + p->used[p->cur];
        p->used[p->cur] += len;
        p->live[p->cur]++;
        *slab = p->cur;
        return data;
}

/* Frees the oldest range's place. Locked. */
static void pipeline_pop(struct pipeline *p) {
        unsigned s = p->q[p->head].slab;

        if (--p->live[s] == 0 && s == p->cur)
                p->used[s] = 0;
        p->head = (p->head + 1) % IN_FLIGHT_MAX;
        p->count--;
        p->first++;
}

/* libnbd calls this in the reader thread, from nbd_poll. 1: retire the command. */
static int pipeline_read_done(void *userdata, int *error) {
        struct pending *q = userdata;
        struct pipeline *p = q->p;

        pthread_mutex_lock(&p->lock);
        q->done = true;
        q->error = *error;
        p->in_flight--;
        pthread_cond_broadcast(&p->changed);
        pthread_mutex_unlock(&p->lock);
        return 1;
}

static void *pipeline_reader(void *userdata) {
        struct pipeline *p = userdata;
        struct nbd_handle *nbd = p->img->nbd;

        pthread_mutex_lock(&p->lock);
        for (;;) {
                size_t index = p->first + p->count;
                struct pending *q = &p->q[(p->head + p->count) % IN_FLIGHT_MAX];

                /* Send what fits; our lock is never held inside libnbd, which
                 * calls pipeline_read_done with its own lock held. */
                if (!p->stop && index < p->n && p->count < IN_FLIGHT_MAX &&
                    (q->data = pipeline_alloc(p, p->ranges[index].length, &q->slab))) {
                        int64_t cookie;

                        q->p = p;
                        q->done = false;
                        q->error = 0;
                        p->count++;
                        p->in_flight++;
                        pthread_mutex_unlock(&p->lock);
                        cookie = nbd_aio_pread(
                                nbd, q->data, p->ranges[index].length, p->ranges[index].offset,
                                (nbd_completion_callback){ .callback = pipeline_read_done,
                                                           .user_data = q },
                                0);
                        pthread_mutex_lock(&p->lock);
                        if (cookie < 0) {
                                /* Not sent: the connection is gone or refuses us. */
                                q->done = true;
                                q->error = nbd_get_errno() > 0 ? nbd_get_errno() : EIO;
                                p->in_flight--;
                                p->stop = true;
                                pthread_cond_broadcast(&p->changed);
                        }
                        continue;
                }
                if (p->in_flight) {
                        int r;

                        pthread_mutex_unlock(&p->lock);
                        r = nbd_poll(nbd, -1);
                        pthread_mutex_lock(&p->lock);
                        /* Only a dead connection is sure to write into no slab again. */
                        if (r < 0 && (nbd_aio_is_dead(nbd) == 1 || nbd_aio_is_closed(nbd) == 1)) {
                                p->reader_error = nbd_error();
                                pthread_cond_broadcast(&p->changed);
                                break;
                        }
                        continue;
                }
                if (p->stop || p->first + p->count >= p->n)
                        break;
                pthread_cond_wait(&p->changed, &p->lock);
        }
        pthread_mutex_unlock(&p->lock);
        return NULL;
}

/* image_read_ranges with slabs of `slab_size` bytes (no range is larger). */
static int read_ranges(struct image *img, const struct image_range *ranges, size_t n,
                       size_t slab_size, image_range_fn cb, void *userdata) {
        struct pipeline p = { .img = img, .ranges = ranges, .n = n, .slab_size = slab_size };
        pthread_t reader;
        bool started = false;
        int r = 0;

        for (size_t i = 0; i < n; i++)
                if (ranges[i].length > slab_size || ranges[i].length > img->request_max ||
                    range_check(img, ranges[i].length, ranges[i].offset) < 0)
                        return -EINVAL;
        if (!n)
                return 0;
        pthread_mutex_init(&p.lock, NULL);
        pthread_cond_init(&p.changed, NULL);
        for (unsigned s = 0; s < SLABS; s++) {
                p.slab[s] = malloc(slab_size);
                if (!p.slab[s]) {
                        r = -ENOMEM;
                        goto out;
                }
        }
        r = -pthread_create(&reader, NULL, pipeline_reader, &p);
        if (r < 0)
                goto out;
        started = true;

        pthread_mutex_lock(&p.lock);
        while (p.first < n) {
                struct pending *q = &p.q[p.head];

                while (!(p.count && q->done) && !p.reader_error)
                        pthread_cond_wait(&p.changed, &p.lock);
                if (!(p.count && q->done)) {
                        r = p.reader_error;
                        break;
                }
                if (q->error) {
                        r = -q->error;
                        break;
                }
                /* The reader never touches a range it has finished. */
                pthread_mutex_unlock(&p.lock);
                r = cb(userdata, p.first, q->data);
                pthread_mutex_lock(&p.lock);
                pipeline_pop(&p);
                pthread_cond_broadcast(&p.changed);
                if (r < 0)
                        break;
        }
        p.stop = true;
        pthread_cond_broadcast(&p.changed);
        pthread_mutex_unlock(&p.lock);
out:
        /* The reader leaves only when nothing it sent is still out. */
        if (started)
                pthread_join(reader, NULL);
        for (unsigned s = 0; s < SLABS; s++)
                free(p.slab[s]);
        pthread_cond_destroy(&p.changed);
        pthread_mutex_destroy(&p.lock);
        return r;
}

int image_read_ranges(struct image *img, const struct image_range *ranges, size_t n,
                      image_range_fn cb, void *userdata) {
        return read_ranges(img, ranges, n, SLAB_SIZE, cb, userdata);
}

/* ---- reading ahead, one piece at a time ------------------------------------------ */

/*
 * image_read_ranges runs in a thread of its own; its callback hands each
 * range to image_reader_next and waits until the caller asks for the next
 * one, so the caller holds one range at a time while the reads after it
 * are in flight.
 */
struct image_reader {
        struct image *img;
        struct image_range *ranges;
        size_t n;
        pthread_t thread;
        pthread_mutex_t lock;
        pthread_cond_t changed;
        const uint8_t *data; /* the range handed over */
        size_t index;
        bool ready, held, released, stop, done;
        int error;
};

static int reader_take(void *userdata, size_t i, const uint8_t *data) {
        struct image_reader *r = userdata;
        int ret;

        pthread_mutex_lock(&r->lock);
        r->data = data;
        r->index = i;
        r->ready = true;
        pthread_cond_broadcast(&r->changed);
        while (!r->released && !r->stop)
                pthread_cond_wait(&r->changed, &r->lock);
        r->released = false;
        ret = r->stop ? -ECANCELED : 0;
        pthread_mutex_unlock(&r->lock);
        return ret;
}

static void *reader_thread(void *userdata) {
        struct image_reader *r = userdata;
        /* Slabs of one piece: three reads in flight while the caller holds the fourth. */
        int e = read_ranges(r->img, r->ranges, r->n, IMAGE_READER_PIECE, reader_take, r);

        pthread_mutex_lock(&r->lock);
        r->error = e;
        r->done = true;
        pthread_cond_broadcast(&r->changed);
        pthread_mutex_unlock(&r->lock);
        return NULL;
}

int image_reader_new(struct image *img, const struct image_span *spans, size_t n,
                     struct image_reader **out) {
        struct image_reader *r = calloc(1, sizeof(*r));
        size_t pieces = 0;
        int e;

        if (!r)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                if (range_check(img, spans[i].length, spans[i].offset) < 0) {
                        free(r);
                        return -EINVAL;
                }
                pieces += (spans[i].length + IMAGE_READER_PIECE - 1) / IMAGE_READER_PIECE;
        }
        r->ranges = calloc(pieces ? pieces : 1, sizeof(*r->ranges));
        if (!r->ranges) {
                free(r);
                return -ENOMEM;
        }
        for (size_t i = 0; i < n; i++) {
                for (uint64_t at = 0; at < spans[i].length; at += IMAGE_READER_PIECE) {
                        uint64_t len = spans[i].length - at;
                        r->ranges[r->n++] = (struct image_range){
                                spans[i].offset + at,
                                (uint32_t)(len < IMAGE_READER_PIECE ? len : IMAGE_READER_PIECE)
                        };
                }
        }
        r->img = img;
        pthread_mutex_init(&r->lock, NULL);
        pthread_cond_init(&r->changed, NULL);
        e = -pthread_create(&r->thread, NULL, reader_thread, r);
        if (e < 0) {
                pthread_cond_destroy(&r->changed);
                pthread_mutex_destroy(&r->lock);
                free(r->ranges);
                free(r);
                return e;
        }
        *out = r;
        return 0;
}

int image_reader_next(struct image_reader *r, const uint8_t **data, size_t *len, uint64_t *offset) {
        int ret = 1;

        pthread_mutex_lock(&r->lock);
        if (r->held) {
                r->held = false;
                r->released = true;
                pthread_cond_broadcast(&r->changed);
        }
        while (!r->ready && !r->done)
                pthread_cond_wait(&r->changed, &r->lock);
        if (r->ready) {
                r->ready = false;
                r->held = true;
                *data = r->data;
                *len = r->ranges[r->index].length;
                *offset = r->ranges[r->index].offset;
                ret = 0;
        } else if (r->error < 0) {
                ret = r->error;
        }
        pthread_mutex_unlock(&r->lock);
        return ret;
}

struct image_reader *image_reader_free(struct image_reader *r) {
        if (!r)
                return NULL;
        pthread_mutex_lock(&r->lock);
        r->stop = true;
        pthread_cond_broadcast(&r->changed);
        pthread_mutex_unlock(&r->lock);
        pthread_join(r->thread, NULL);
        pthread_cond_destroy(&r->changed);
        pthread_mutex_destroy(&r->lock);
        free(r->ranges);
        free(r);
        return NULL;
}
