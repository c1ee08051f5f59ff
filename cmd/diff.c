/*
 * homing diff and homing compose: the diff module on a datacenter's store
 * directly, for scripts. `diff` prints what differs between two versions of
 * a snapshot (configuration items and changed disk extents) as JSON;
 * `compose` writes a new version from a base version with chosen items of
 * another, ready for `homing snapshot register`.
 */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmd/args.h"
#include "cmd/commands.h"
#include "diff/diff.h"

static const char diff_usage[] =
        "usage: homing diff [--store DIR] [--files] SNAPSHOT VERSION_A VERSION_B\n"
        "  prints, as JSON, the configuration items (JSON Pointer paths, old and new\n"
        "  values, an RFC 6902 patch) and the disk extents that differ from version A\n"
        "  to version B of SNAPSHOT in the store (default: $HOMING_STORE); with\n"
        "  --files also the guest files added, removed and changed (libguestfs: tens\n"
        "  of seconds without KVM)\n";

static const char compose_usage[] =
        "usage: homing compose [--store DIR] SNAPSHOT --base VA --from VB [--version N]\n"
        "           [--config POINTER]... [--disk-extent OFFSET:LENGTH]... [--whole-disk]\n"
        "           [--file [/dev/sdaN:]PATH]...\n"
        "  writes a new version (N, or one past the highest) of SNAPSHOT: version VA with\n"
        "  the chosen configuration items, disk extents (bytes, whole 4 KiB blocks) and\n"
        "  guest files (libguestfs) taken from version VB; prints it as JSON. Register it with\n"
        "  homing snapshot register --snapshot SNAPSHOT --version N --config <store>/snapshots/SNAPSHOT/vN.json\n";

/* A positive decimal, all of `s`. */
static bool parse_version(const char *s, long long *out) {
        char *end = NULL;
        long long v;

        if (!s || *s < '0' || *s > '9')
                return false;
        errno = 0;
        v = strtoll(s, &end, 10);
        if (errno || *end || v < 1)
                return false;
        *out = v;
        return true;
}

static bool parse_u64(const char *s, const char *stop, uint64_t *out) {
        char *end = NULL;

        if (*s < '0' || *s > '9')
                return false;
        errno = 0;
        *out = strtoull(s, &end, 10);
        return !errno && end == stop;
}

/* "OFFSET:LENGTH", both decimal bytes. */
static bool parse_extent(const char *s, struct diff_extent *x) {
        const char *colon = strchr(s, ':');

        return colon && parse_u64(s, colon, &x->offset) &&
               parse_u64(colon + 1, colon + 1 + strlen(colon + 1), &x->length);
}

static int print_json(json_t *j) {
        int r = json_dumpf(j, stdout, JSON_INDENT(2)) == 0 ? 0 : 1;
        putchar('\n');
        json_decref(j);
        return r;
}

/* What is left once the command's own flags are taken: positionals, or an error. */
static bool positionals(const char *command, int argc, char **argv, const char **out, int n,
                        const char *usage) {
        int k = 0;

        for (int i = 1; i < argc; i++) {
                if (argv[i][0] == '-' || k == n) {
                        fprintf(stderr, "homing %s: unexpected '%s'\n%s", command, argv[i], usage);
                        return false;
                }
                out[k++] = argv[i];
        }
        if (k < n) {
                fprintf(stderr, "%s", usage);
                return false;
        }
        return true;
}

static bool wants_help(int argc, char **argv, const char *usage) {
        for (int i = 1; i < argc; i++)
                if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
                        fputs(usage, stdout);
                        return true;
                }
        return false;
}

int cmd_diff(int argc, char **argv) {
        const char *store = getenv("HOMING_STORE"), *pos[3];
        const struct cmd_flag flags[] = { { "--store", &store }, { NULL, NULL } };
        long long va, vb;
        json_t *out = NULL, *files = NULL;
        char err[512];
        bool with_files = false;
        int r, n = 1;

        if (wants_help(argc, argv, diff_usage))
                return 0;
        for (int i = 1; i < argc; i++) {
                if (!strcmp(argv[i], "--files"))
                        with_files = true;
                else
                        argv[n++] = argv[i];
        }
        argc = n;
        if (cmd_take_flags("diff", argc, argv, flags, &argc) < 0 ||
            !positionals("diff", argc, argv, pos, 3, diff_usage))
                return 2;
        if (!store || !*store) {
                fprintf(stderr, "homing diff: --store (or HOMING_STORE) is required\n");
                return 2;
        }
        if (!parse_version(pos[1], &va) || !parse_version(pos[2], &vb)) {
                fprintf(stderr, "homing diff: versions are positive integers\n");
                return 2;
        }
        r = diff_store_versions(store, pos[0], va, vb, &out, err, sizeof(err));
        if (r == 0 && with_files) {
                r = diff_store_files(store, pos[0], va, vb, NULL, NULL, &files, err, sizeof(err));
                if (r == 0 && json_object_set(out, "files", json_object_get(files, "files")))
                        r = -ENOMEM, snprintf(err, sizeof(err), "out of memory");
                json_decref(files);
        }
        if (r < 0) {
                fprintf(stderr, "homing diff: %s\n", err);
                json_decref(out);
                return 1;
        }
        return print_json(out);
}

int cmd_compose(int argc, char **argv) {
        const char *store = getenv("HOMING_STORE"), *base = NULL, *from = NULL, *version = NULL;
        const struct cmd_flag flags[] = { { "--store", &store },
                                          { "--base", &base },
                                          { "--from", &from },
                                          { "--version", &version },
                                          { NULL, NULL } };
        const char **pointers = calloc((size_t)argc, sizeof(*pointers)), *pos[1];
        struct diff_extent *extents = calloc((size_t)argc, sizeof(*extents));
        const char **files = calloc((size_t)argc, sizeof(*files));
        struct diff_compose c = { 0 };
        json_t *out = NULL;
        char err[512];
        int n = 1, ret = 2;

        if (!pointers || !extents || !files) {
                ret = 1;
                goto out;
        }
        if (wants_help(argc, argv, compose_usage)) {
                ret = 0;
                goto out;
        }
        /* The repeated flags first; cmd_take_flags keeps the last of a flag. */
        for (int i = 1; i < argc; i++) {
                bool cfg = !strcmp(argv[i], "--config"), ext = !strcmp(argv[i], "--disk-extent");
                bool file = !strcmp(argv[i], "--file");
                if (!strcmp(argv[i], "--whole-disk")) {
                        c.whole_disk = true;
                } else if (cfg || ext || file) {
                        if (i + 1 >= argc) {
                                fprintf(stderr, "homing compose: %s needs a value\n", argv[i]);
                                goto out;
                        }
                        if (file) {
                                files[c.n_files++] = argv[++i];
                        } else if (cfg) {
                                pointers[c.n_pointers++] = argv[++i];
                        } else if (!parse_extent(argv[++i], &extents[c.n_extents++])) {
                                fprintf(stderr,
                                        "homing compose: --disk-extent '%s' is not OFFSET:LENGTH "
                                        "(decimal bytes)\n",
                                        argv[i]);
                                goto out;
                        }
                } else {
                        argv[n++] = argv[i];
                }
        }
        argc = n;
        if (cmd_take_flags("compose", argc, argv, flags, &argc) < 0 ||
            !positionals("compose", argc, argv, pos, 1, compose_usage))
                goto out;
        if (!store || !*store) {
                fprintf(stderr, "homing compose: --store (or HOMING_STORE) is required\n");
                goto out;
        }
        if (!parse_version(base, &c.base) || !parse_version(from, &c.from) ||
            (version && !parse_version(version, &c.version))) {
                fprintf(stderr,
                        "homing compose: --base and --from (and --version) are positive "
                        "integers\n%s",
                        compose_usage);
                goto out;
        }
        if (!c.n_pointers && !c.n_extents && !c.whole_disk && !c.n_files) {
                fprintf(stderr, "homing compose: nothing chosen: give --config, --disk-extent, "
                                "--whole-disk or --file\n");
                goto out;
        }
        c.pointers = pointers;
        c.extents = extents;
        c.files = files;
        if (diff_store_compose(store, pos[0], &c, &out, err, sizeof(err)) < 0) {
                fprintf(stderr, "homing compose: %s\n", err);
                ret = 1;
                goto out;
        }
        ret = print_json(out);
out:
        free(pointers);
        free(extents);
        free(files);
        return ret;
}
