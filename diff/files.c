/*
 * Guest files: what differs between the file systems inside two images,
 * read through libguestfs (its appliance mounts them read-only; nothing
 * here parses a file system). Both images go into one appliance, each file
 * system of the first paired with the one of the same name on the second
 * (/dev/sda1 with /dev/sdb1), mounted side by side under mount points made
 * for it. A tree is listed with one find, its files' SHA-256s taken with
 * one checksums-out, their metadata with lstatns lists, so the round trips
 * grow with the directories, not the files. A small text file's unified
 * diff comes from diffutils' `diff -u`.
 */
#include <errno.h>
#include <fcntl.h>
#include <guestfs.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "diff/diff.h"

extern char **environ;

#define LSTAT_BATCH 1000
/* What one answer holds, to fit the API's request bodies (256 KiB by default). */
#define FILES_MAX 500           /* entries listed; the counts cover all */
#define DIFF_BUDGET (96 * 1024) /* bytes of unified diffs in all */

/* One file of one tree: its path below the file system's root ("/etc/motd"). */
struct entry {
        char *path;
        struct guestfs_statns st;
        char sha256[65]; /* regular files; "" when checksums-out did not name it */
        char *link;      /* symlinks that need comparing */
};

struct tree {
        struct entry *e;
        size_t n;
};

struct run {
        guestfs_h *g;
        char tmp[64]; /* a private folder for checksums and diff's files */
        diff_progress_fn progress;
        void *userdata;
        size_t diff_left; /* of DIFF_BUDGET */
        char *err;
        size_t err_size;
};

static int fail(struct run *run, int r, const char *fmt, ...) {
        va_list ap;

        if (run->err_size) {
                va_start(ap, fmt);
                vsnprintf(run->err, run->err_size, fmt, ap);
                va_end(ap);
        }
        return r;
}

/* libguestfs's last error as a sentence, and its errno (EIO when it has none). */
static int fail_g(struct run *run, const char *what) {
        const char *why = guestfs_last_error(run->g);
        int e = guestfs_last_errno(run->g);

        return fail(run, e > 0 ? -e : -EIO, "%s: %s", what, why ? why : "libguestfs failed");
}

static void say(struct run *run, const char *phase, int percent) {
        if (run->progress)
                run->progress(run->userdata, phase, percent);
}

static void tree_fini(struct tree *t) {
        for (size_t i = 0; i < t->n; i++) {
                free(t->e[i].path);
                free(t->e[i].link);
        }
        free(t->e);
        t->e = NULL;
        t->n = 0;
}

static int by_path(const void *a, const void *b) {
        return strcmp(((const struct entry *)a)->path, ((const struct entry *)b)->path);
}

static struct entry *tree_find(struct tree *t, const char *path) {
        struct entry key = { .path = (char *)path };

        return t->n ? bsearch(&key, t->e, t->n, sizeof(*t->e), by_path) : NULL;
}

static void strv_free(char **v) {
        for (size_t i = 0; v && v[i]; i++)
                free(v[i]);
        free(v);
}

/* The SHA-256 of every regular file under `mnt`, from one checksums-out. */
static int tree_checksums(struct run *run, const char *mnt, struct tree *t) {
        char path[128], line[8192];
        FILE *f;
        int r = 0;

        snprintf(path, sizeof(path), "%s/sums", run->tmp);
        if (guestfs_checksums_out(run->g, "sha256", mnt, path) < 0)
                return fail_g(run, "checksums of the guest's files");
        f = fopen(path, "r");
        if (!f)
                return fail(run, -errno, "%s: %s", path, strerror(errno));
        while (fgets(line, sizeof(line), f)) {
                struct entry *e;
                size_t len = strlen(line);

                /* "<hex>  ./<path>"; sha256sum escapes odd names with a leading '\':
                 * those are left to one checksum call each. */
                if (len < 68 || line[0] == '\\' || memcmp(line + 64, "  ./", 4) != 0)
                        continue;
                if (line[len - 1] == '\n')
                        line[len - 1] = '\0';
                e = tree_find(t, line + 67);
                if (e) {
                        memcpy(e->sha256, line, 64);
                        e->sha256[64] = '\0';
                }
        }
        fclose(f);
        unlink(path);
        return r;
}

/* Orders paths by their folder, then their name, so a folder's entries come together. */
static int by_folder(const void *x, const void *y) {
        const char *a = *(char *const *)x, *b = *(char *const *)y;
        size_t da = (size_t)(strrchr(a, '/') - a), db = (size_t)(strrchr(b, '/') - b);
        int c = memcmp(a, b, da < db ? da : db);

        if (c || da != db)
                return c ? c : da < db ? -1 : 1;
        return strcmp(a + da + 1, b + db + 1);
}

/* The metadata of paths[0..n) (all in one folder), one lstatns list at a time. */
static int stat_folder(struct run *run, const char *mnt, char **paths, size_t n, struct tree *t) {
        size_t dlen = (size_t)(strrchr(paths[0], '/') - paths[0]);
        char *dir = NULL, **names = calloc(n + 1, sizeof(*names));
        struct guestfs_statns_list *st = NULL;
        int r = 0;

        if (!names || asprintf(&dir, "%s%.*s", mnt, (int)dlen, paths[0]) < 0) {
                free(names);
                return -ENOMEM;
        }
        for (size_t i = 0; i < n; i++)
                names[i] = paths[i] + dlen + 1;
        st = guestfs_lstatnslist(run->g, dir, names);
        if (!st || st->len != n)
                r = st ? fail(run, -EIO, "lstatns listed %u of %zu files", st->len, n)
                       : fail_g(run, "the guest's file metadata");
        for (size_t i = 0; r == 0 && i < n; i++) {
                struct entry *e = tree_find(t, paths[i]);
                if (e)
                        e->st = st->val[i];
        }
        guestfs_free_statns_list(st);
        free(dir);
        free(names);
        return r;
}

/* Lists the tree mounted at `mnt` with its metadata and its files' digests. */
static int tree_load(struct run *run, const char *mnt, struct tree *t) {
        char **paths = guestfs_find(run->g, mnt); /* "/etc", "/etc/motd", ... */
        size_t n = 0;
        int r = 0;

        if (!paths)
                return fail_g(run, "listing the guest's files");
        while (paths[n])
                n++;
        t->e = calloc(n ? n : 1, sizeof(*t->e));
        if (!t->e) {
                strv_free(paths);
                return -ENOMEM;
        }
        for (size_t i = 0; i < n; i++)
                if (!(t->e[t->n++].path = strdup(paths[i]))) {
                        strv_free(paths);
                        return -ENOMEM;
                }
        qsort(t->e, t->n, sizeof(*t->e), by_path);
        qsort(paths, n, sizeof(*paths), by_folder);
        for (size_t i = 0, j; r == 0 && i < n; i = j) {
                size_t dlen = (size_t)(strrchr(paths[i], '/') - paths[i]);
                for (j = i + 1; j < n && j - i < LSTAT_BATCH &&
                                (size_t)(strrchr(paths[j], '/') - paths[j]) == dlen &&
                                !memcmp(paths[i], paths[j], dlen);
                     j++)
                        ;
                r = stat_folder(run, mnt, paths + i, j - i, t);
        }
        strv_free(paths);
        return r ? r : tree_checksums(run, mnt, t);
}

static const char *type_name(int64_t mode) {
        return S_ISREG(mode)   ? "file"
               : S_ISDIR(mode) ? "directory"
               : S_ISLNK(mode) ? "symlink"
                               : "other";
}

/* A regular file's digest, asked on its own when checksums-out did not name it. */
static int entry_sha256(struct run *run, const char *mnt, struct entry *e) {
        char *full = NULL, *sum;

        if (e->sha256[0])
                return 0;
        if (asprintf(&full, "%s%s", mnt, e->path) < 0)
                return -ENOMEM;
        sum = guestfs_checksum(run->g, "sha256", full);
        free(full);
        if (!sum)
                return fail_g(run, "a guest file's checksum");
        snprintf(e->sha256, sizeof(e->sha256), "%s", sum);
        free(sum);
        return 0;
}

static char *entry_link(struct run *run, const char *mnt, const struct entry *e) {
        char *full = NULL, *target;

        if (asprintf(&full, "%s%s", mnt, e->path) < 0)
                return NULL;
        target = guestfs_readlink(run->g, full);
        free(full);
        return target;
}

/* A small file's bytes into tmp/<name>; 1 written, 0 not a small text file, <0. */
static int fetch_text(struct run *run, const char *mnt, const struct entry *e, const char *name,
                      char *out, size_t out_size) {
        char *full = NULL, *data;
        size_t size = 0;
        FILE *f;
        int r = 1;

        snprintf(out, out_size, "%s/%s", run->tmp, name);
        if (!e) {
                snprintf(out, out_size, "/dev/null");
                return 1;
        }
        if (!S_ISREG(e->st.st_mode) || e->st.st_size > DIFF_TEXT_MAX)
                return 0;
        if (asprintf(&full, "%s%s", mnt, e->path) < 0)
                return -ENOMEM;
        data = guestfs_read_file(run->g, full, &size);
        free(full);
        if (!data)
                return fail_g(run, "reading a guest file");
        if (memchr(data, '\0', size)) {
                free(data);
                return 0; /* binary, as diff and git see it */
        }
        f = fopen(out, "w");
        if (!f || fwrite(data, 1, size, f) != size)
                r = -EIO;
        if (f && fclose(f) != 0)
                r = -EIO;
        free(data);
        return r;
}

/* `diff -u` of two local files, labelled a/<path> and b/<path>: its output, malloc'd. */
static int unified_diff(struct run *run, const char *path, const char *fa, const char *fb,
                        char **out) {
        char la[4200], lb[4200], outpath[128];
        char *argv[] = { "diff", "-u", "--label", la, "--label", lb, (char *)fa, (char *)fb, NULL };
        posix_spawn_file_actions_t fa_;
        struct stat st;
        pid_t pid;
        int r, ws, fd;

        snprintf(la, sizeof(la), "a%s", path);
        snprintf(lb, sizeof(lb), "b%s", path);
        snprintf(outpath, sizeof(outpath), "%s/diff.out", run->tmp);
        r = posix_spawn_file_actions_init(&fa_);
        if (r)
                return -r;
        r = posix_spawn_file_actions_addopen(&fa_, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
        r = r ? r
              : posix_spawn_file_actions_addopen(&fa_, STDOUT_FILENO, outpath,
                                                 O_WRONLY | O_CREAT | O_TRUNC, 0600);
        r = r ? r : posix_spawnp(&pid, "diff", &fa_, NULL, argv, environ);
        posix_spawn_file_actions_destroy(&fa_);
        if (r)
                return fail(run, -r, "running diff (diffutils): %s", strerror(r));
        while (waitpid(pid, &ws, 0) < 0)
                if (errno != EINTR)
                        return -errno;
        /* diff exits 1 when the files differ, 0 when not, 2 on trouble. */
        if (!WIFEXITED(ws) || WEXITSTATUS(ws) > 1)
                return fail(run, -EIO, "diff -u failed on %s", path);
        fd = open(outpath, O_RDONLY | O_CLOEXEC);
        if (fd < 0 || fstat(fd, &st) < 0) {
                r = -errno;
                if (fd >= 0)
                        close(fd);
                return r;
        }
        *out = malloc((size_t)st.st_size + 1);
        if (!*out) {
                close(fd);
                return -ENOMEM;
        }
        r = read(fd, *out, (size_t)st.st_size) == st.st_size ? 0 : -EIO;
        (*out)[r == 0 ? st.st_size : 0] = '\0';
        close(fd);
        unlink(outpath);
        return r;
}

static char *octal(int64_t mode) {
        char *s = NULL;

        return asprintf(&s, "%04llo", (unsigned long long)(mode & 07777)) < 0 ? NULL : s;
}

static char *owner(const struct guestfs_statns *st) {
        char *s = NULL;

        return asprintf(&s, "%lld:%lld", (long long)st->st_uid, (long long)st->st_gid) < 0 ? NULL
                                                                                           : s;
}

static int set_new(json_t *o, const char *key, json_t *v) {
        return v && json_object_set_new(o, key, v) == 0 ? 0 : -ENOMEM;
}

static int set_str(json_t *o, const char *key, char *s) {
        int r = s ? set_new(o, key, json_string(s)) : -ENOMEM;

        free(s);
        return r;
}

/*
 * The entry of one file that differs (a: before or NULL, b: after or
 * NULL), with its unified diff when it is a small text file; NULL when it
 * does not differ after all. *r is 0 or the error.
 */
static json_t *compare(struct run *run, const char *fs, const char *ma, struct entry *a,
                       const char *mb, struct entry *b, int *r) {
        const struct entry *any = a ? a : b;
        bool content = false, meta = false;
        json_t *o;

        *r = 0;
        if (a && b) {
                if ((a->st.st_mode & S_IFMT) != (b->st.st_mode & S_IFMT))
                        content = true;
                else if (S_ISREG(a->st.st_mode)) {
                        *r = entry_sha256(run, ma, a);
                        *r = *r ? *r : entry_sha256(run, mb, b);
                        if (*r < 0)
                                return NULL;
                        content = a->st.st_size != b->st.st_size || strcmp(a->sha256, b->sha256);
                } else if (S_ISLNK(a->st.st_mode)) {
                        a->link = entry_link(run, ma, a);
                        b->link = entry_link(run, mb, b);
                        if (!a->link || !b->link) {
                                *r = fail_g(run, "reading a guest symlink");
                                return NULL;
                        }
                        content = strcmp(a->link, b->link) != 0;
                }
                meta = (a->st.st_mode & 07777) != (b->st.st_mode & 07777) ||
                       a->st.st_uid != b->st.st_uid || a->st.st_gid != b->st.st_gid;
                if (!content && !meta)
                        return NULL;
        }
        o = json_pack("{s:s, s:s, s:s, s:s}", "filesystem", fs, "path", any->path, "change",
                      !a   ? "added"
                      : !b ? "removed"
                           : "changed",
                      "type", type_name(b ? b->st.st_mode : a->st.st_mode));
        if (!o) {
                *r = -ENOMEM;
                return NULL;
        }
        if (a && S_ISREG(a->st.st_mode))
                *r = *r ? *r : set_new(o, "old_size", json_integer(a->st.st_size));
        if (b && S_ISREG(b->st.st_mode))
                *r = *r ? *r : set_new(o, "new_size", json_integer(b->st.st_size));
        if (a && b) {
                *r = *r ? *r : set_new(o, "content_changed", json_boolean(content));
                if ((a->st.st_mode & 07777) != (b->st.st_mode & 07777)) {
                        *r = *r ? *r : set_str(o, "old_mode", octal(a->st.st_mode));
                        *r = *r ? *r : set_str(o, "new_mode", octal(b->st.st_mode));
                }
                if (a->st.st_uid != b->st.st_uid || a->st.st_gid != b->st.st_gid) {
                        *r = *r ? *r : set_str(o, "old_owner", owner(&a->st));
                        *r = *r ? *r : set_str(o, "new_owner", owner(&b->st));
                }
        }
        if (*r == 0 && S_ISREG(any->st.st_mode) && (!a || !b || content) &&
            (!a || S_ISREG(a->st.st_mode)) && (!b || S_ISREG(b->st.st_mode))) {
                char fa[128], fb[128], *text = NULL;
                int ka = fetch_text(run, ma, a, "a", fa, sizeof(fa));
                int kb = ka == 1 ? fetch_text(run, mb, b, "b", fb, sizeof(fb)) : 0;

                if (ka < 0 || kb < 0)
                        *r = ka < 0 ? ka : kb;
                else if (ka == 1 && kb == 1)
                        *r = unified_diff(run, any->path, fa, fb, &text);
                else
                        *r = set_new(o, "diff_skipped",
                                     json_string("binary or larger than 64 KiB"));
                if (*r == 0 && text && strlen(text) > run->diff_left)
                        *r = set_new(o, "diff_skipped",
                                     json_string("the answer's room for diffs is spent"));
                else if (*r == 0 && text) {
                        run->diff_left -= strlen(text);
                        *r = set_new(o, "diff", json_string(text));
                }
                free(text);
                if (a)
                        unlink(fa);
                if (b && ka == 1)
                        unlink(fb);
        }
        if (*r < 0) {
                json_decref(o);
                return NULL;
        }
        return o;
}

/* Walks two sorted trees side by side, counting and listing what differs. */
static int compare_trees(struct run *run, const char *fs, const char *ma, struct tree *ta,
                         const char *mb, struct tree *tb, json_t *files, json_int_t count[3]) {
        size_t i = 0, j = 0;
        int r = 0;

        while (r == 0 && (i < ta->n || j < tb->n)) {
                int c = i == ta->n ? 1 : j == tb->n ? -1 : strcmp(ta->e[i].path, tb->e[j].path);
                struct entry *a = c <= 0 ? &ta->e[i++] : NULL;
                struct entry *b = c >= 0 ? &tb->e[j++] : NULL;
                json_t *o;

                /* A changed file's diff is fetched only while the list has room. */
                if (json_array_size(files) >= FILES_MAX) {
                        bool differs =
                                !a || !b ||
                                (a->st.st_mode != b->st.st_mode || a->st.st_uid != b->st.st_uid ||
                                 a->st.st_gid != b->st.st_gid || a->st.st_size != b->st.st_size ||
                                 (S_ISREG(a->st.st_mode) && strcmp(a->sha256, b->sha256)));
                        count[!a ? 0 : !b ? 1 : 2] += differs;
                        continue;
                }
                o = compare(run, fs, ma, a, mb, b, &r);
                if (!o)
                        continue;
                count[!a ? 0 : !b ? 1 : 2]++;
                if (json_array_append_new(files, o) < 0)
                        r = -ENOMEM;
        }
        return r;
}

/* The file systems worth comparing: pairs (name on the first disk, on the second). */
static int pair_filesystems(struct run *run, char ***pairs, size_t *n) {
        char **fss = guestfs_list_filesystems(run->g);
        size_t k = 0, total = 0;

        if (!fss)
                return fail_g(run, "listing the images' file systems");
        while (fss[total])
                total++;
        *pairs = calloc(total + 2, sizeof(**pairs));
        if (!*pairs) {
                strv_free(fss);
                return -ENOMEM;
        }
        for (size_t i = 0; i + 1 < total; i += 2) {
                const char *dev = fss[i], *type = fss[i + 1];
                if (strncmp(dev, "/dev/sda", 8) || !strcmp(type, "unknown") ||
                    !strcmp(type, "swap") || !*type)
                        continue;
                for (size_t j = 0; j + 1 < total; j += 2)
                        if (!strncmp(fss[j], "/dev/sdb", 8) && !strcmp(fss[j] + 8, dev + 8) &&
                            !strcmp(fss[j + 1], type)) {
                                (*pairs)[k++] = strdup(dev);
                                (*pairs)[k++] = strdup(fss[j]);
                        }
        }
        strv_free(fss);
        *n = k / 2;
        for (size_t i = 0; i < k; i++)
                if (!(*pairs)[i])
                        return -ENOMEM;
        return 0;
}

/* One appliance over two qcow2 images, the second read-only (the first too
 * unless `a_writable`): run->g, launched, or <0 said in run->err. */
static int launch_pair(struct run *run, const char *a, bool a_writable, const char *b) {
        run->g = guestfs_create_flags(GUESTFS_CREATE_NO_ENVIRONMENT);
        if (!run->g || guestfs_parse_environment(run->g) < 0)
                return fail(run, -ENOTSUP, "libguestfs cannot start here");
        guestfs_set_error_handler(run->g, NULL, NULL); /* errors are ours to say */
        if (guestfs_add_drive_opts(run->g, a, GUESTFS_ADD_DRIVE_OPTS_READONLY, !a_writable,
                                   GUESTFS_ADD_DRIVE_OPTS_FORMAT, "qcow2", -1) < 0 ||
            guestfs_add_drive_opts(run->g, b, GUESTFS_ADD_DRIVE_OPTS_READONLY, 1,
                                   GUESTFS_ADD_DRIVE_OPTS_FORMAT, "qcow2", -1) < 0)
                return fail_g(run, "adding the images");
        if (guestfs_launch(run->g) < 0) {
                const char *why = guestfs_last_error(run->g);
                return fail(run, -ENOTSUP, "libguestfs cannot run here: %s",
                            why ? why : "its appliance did not start");
        }
        return 0;
}

int diff_files(const char *image_a, const char *image_b, diff_progress_fn progress, void *userdata,
               json_t **out, char *err, size_t err_size) {
        struct run run = { .progress = progress,
                           .userdata = userdata,
                           .err = err,
                           .err_size = err_size,
                           .diff_left = DIFF_BUDGET };
        char **pairs = NULL;
        size_t n = 0;
        json_t *files = json_array(), *names = json_array();
        json_int_t count[3] = { 0, 0, 0 }; /* added, removed, changed */
        int r;

        *out = NULL;
        snprintf(run.tmp, sizeof(run.tmp), "/tmp/homing-files-XXXXXX");
        if (!files || !names) {
                r = -ENOMEM;
                goto out;
        }
        if (!mkdtemp(run.tmp)) {
                run.tmp[0] = '\0';
                r = fail(&run, -errno, "a temporary folder: %s", strerror(errno));
                goto out;
        }
        say(&run, "launching", 0);
        if ((r = launch_pair(&run, image_a, false, image_b)) < 0)
                goto out;
        say(&run, "listing", 40);
        r = pair_filesystems(&run, &pairs, &n);
        for (size_t i = 0; r == 0 && i < n; i++) {
                char ma[32], mb[32];
                snprintf(ma, sizeof(ma), "/a%zu", i);
                snprintf(mb, sizeof(mb), "/b%zu", i);
                if (guestfs_mkmountpoint(run.g, ma) < 0 || guestfs_mkmountpoint(run.g, mb) < 0)
                        r = fail_g(&run, "a mount point in the appliance");
        }
        for (size_t i = 0; r == 0 && i < n; i++) {
                struct tree ta = { 0 }, tb = { 0 };
                char ma[32], mb[32];

                snprintf(ma, sizeof(ma), "/a%zu", i);
                snprintf(mb, sizeof(mb), "/b%zu", i);
                if (guestfs_mount_ro(run.g, pairs[2 * i], ma) < 0 ||
                    guestfs_mount_ro(run.g, pairs[2 * i + 1], mb) < 0) {
                        r = fail_g(&run, "mounting a guest file system");
                        break;
                }
                r = tree_load(&run, ma, &ta);
                r = r ? r : tree_load(&run, mb, &tb);
                say(&run, "comparing", 40 + (int)(50 * (2 * i + 1) / (2 * n)));
                r = r ? r : compare_trees(&run, pairs[2 * i], ma, &ta, mb, &tb, files, count);
                r = r ? r : (json_array_append_new(names, json_string(pairs[2 * i])) ? -ENOMEM : 0);
                tree_fini(&ta);
                tree_fini(&tb);
        }
        if (r < 0)
                goto out;
        if (guestfs_shutdown(run.g) < 0) {
                r = fail_g(&run, "closing the appliance");
                goto out;
        }
        *out = json_pack("{s:o, s:I, s:I, s:I, s:b, s:o}", "filesystems", names, "added", count[0],
                         "removed", count[1], "changed", count[2], "truncated",
                         count[0] + count[1] + count[2] > (json_int_t)json_array_size(files),
                         "files", files);
        names = files = NULL;
        r = *out ? 0 : -ENOMEM;
        say(&run, "done", 100);
out:
        if (r == -ENOMEM)
                fail(&run, r, "out of memory");
        if (run.g)
                guestfs_close(run.g);
        strv_free(pairs);
        if (run.tmp[0])
                rmdir(run.tmp); /* its files were removed as they were used */
        json_decref(files);
        json_decref(names);
        return r;
}

/* ---- taking files ------------------------------------------------------------------- */

/* Splits "[/dev/sdaN:]/path" into its device (NULL: the first file system) and path. */
static bool take_split(const char *item, char *dev, size_t dev_size, const char **path) {
        const char *colon = strchr(item, ':');

        *path = item;
        dev[0] = '\0';
        if (!strncmp(item, "/dev/sda", 8) && colon) {
                if ((size_t)(colon - item) >= dev_size)
                        return false;
                snprintf(dev, dev_size, "%.*s", (int)(colon - item), item);
                *path = colon + 1;
        }
        /* An absolute path below the root, without "." or ".." steps or empty ones. */
        if ((*path)[0] != '/' || !(*path)[1] || strlen(*path) >= 4096 || strstr(*path, "//") ||
            strstr(*path, "/./") || strstr(*path, "/../") ||
            !strcmp(*path + strlen(*path) - 2, "/.") ||
            (strlen(*path) >= 3 && !strcmp(*path + strlen(*path) - 3, "/..")))
                return false;
        return true;
}

bool diff_file_item_valid(const char *item) {
        char dev[32];
        const char *path;

        return item && take_split(item, dev, sizeof(dev), &path);
}

/* Whether `path` is there (a dangling symlink is). */
static bool present(guestfs_h *g, const char *path) {
        struct guestfs_statns *st = guestfs_lstatns(g, path);

        guestfs_free_statns(st);
        return st != NULL;
}

int diff_files_take(const char *image, const char *from_image, const char *const *items, size_t n,
                    size_t *bad, char *err, size_t err_size) {
        struct run run = { .err = err, .err_size = err_size };
        char **pairs = NULL;
        size_t npairs = 0;
        int r = 0;

        *bad = 0;
        for (size_t i = 0; i < n; i++) {
                if (!diff_file_item_valid(items[i])) {
                        *bad = i;
                        return fail(&run, -EINVAL,
                                    "guest file '%s' is not [/dev/sdaN:]/absolute/path", items[i]);
                }
        }
        if ((r = launch_pair(&run, image, true, from_image)) < 0)
                goto out;
        r = pair_filesystems(&run, &pairs, &npairs);
        for (size_t i = 0; r == 0 && i < npairs; i++) {
                char ma[32], mb[32];
                snprintf(ma, sizeof(ma), "/a%zu", i);
                snprintf(mb, sizeof(mb), "/b%zu", i);
                if (guestfs_mkmountpoint(run.g, ma) < 0 || guestfs_mkmountpoint(run.g, mb) < 0 ||
                    guestfs_mount(run.g, pairs[2 * i], ma) < 0 ||
                    guestfs_mount_ro(run.g, pairs[2 * i + 1], mb) < 0)
                        r = fail_g(&run, "mounting the guest file systems");
        }
        if (r == 0 && !npairs)
                r = fail(&run, -ENOENT, "the images hold no file system to take files from");
        for (size_t i = 0; r == 0 && i < n; i++) {
                char dev[32], a[4200], b[4200], parent[4200], *slash;
                const char *path;
                size_t k = 0;
                bool in_a, in_b;

                take_split(items[i], dev, sizeof(dev), &path);
                while (dev[0] && k < npairs && strcmp(pairs[2 * k], dev))
                        k++;
                if (k == npairs) {
                        *bad = i;
                        r = fail(&run, -ENOENT, "guest file '%s': no file system %s", items[i],
                                 dev);
                        break;
                }
                snprintf(a, sizeof(a), "/a%zu%s", k, path);
                snprintf(b, sizeof(b), "/b%zu%s", k, path);
                in_a = present(run.g, a);
                in_b = present(run.g, b);
                if (!in_a && !in_b) {
                        *bad = i;
                        r = fail(&run, -ENOENT, "guest file '%s' is in neither version", items[i]);
                        break;
                }
                /* Taken whole: what the base has there goes first, then the other's copy. */
                if (in_a && guestfs_rm_rf(run.g, a) < 0) {
                        r = fail_g(&run, "removing a guest file");
                        break;
                }
                if (!in_b)
                        continue;
                snprintf(parent, sizeof(parent), "%s", a);
                slash = strrchr(parent, '/');
                *slash = '\0';
                if (guestfs_mkdir_p(run.g, parent) < 0 || guestfs_cp_a(run.g, b, a) < 0)
                        r = fail_g(&run, "copying a guest file");
        }
        if (r == 0 && (guestfs_umount_all(run.g) < 0 || guestfs_shutdown(run.g) < 0))
                r = fail_g(&run, "writing the image");
out:
        if (r == -ENOMEM)
                fail(&run, r, "out of memory");
        if (run.g)
                guestfs_close(run.g);
        strv_free(pairs);
        return r;
}
