/*
 * Guest-file diffs (diff/diff.h) on real images: an ext4 template made by
 * mkfs.ext4 from a folder, two qcow2 overlays of it changed by the test
 * through libguestfs (one appliance), and diff_files' list checked against
 * exactly what the test changed. Two appliance launches in all, each tens
 * of seconds without KVM; where libguestfs cannot run, the whole file is
 * skipped with its reason.
 */
#include <errno.h>
#include <ftw.h>
#include <guestfs.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "diff/diff.h"
#include "tap.h"

static char root[64], tpl[128], va[128], vb[128];
static json_t *result;
static int result_r;
static char result_err[512];

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
        return remove(path);
}

static int put_file(const char *dir, const char *name, const char *data, size_t len) {
        char path[256];
        FILE *f;

        snprintf(path, sizeof(path), "%s/%s", dir, name);
        f = fopen(path, "w");
        if (!f)
                return -1;
        fwrite(data, 1, len, f);
        return fclose(f);
}

/* The template's tree, then the ext4 image made from it, then two overlays. */
static int make_template(void) {
        char src[128], cmd[512], blob[8192];

        snprintf(src, sizeof(src), "%s/src", root);
        snprintf(cmd, sizeof(cmd), "%s/etc", src);
        if (mkdir(src, 0755) || mkdir(cmd, 0755))
                return -1;
        snprintf(cmd, sizeof(cmd), "%s/data", src);
        if (mkdir(cmd, 0755))
                return -1;
        for (size_t i = 0; i < sizeof(blob); i++)
                blob[i] = (char)(i * 7);
        if (put_file(src, "etc/hostname", "alpha\n", 6) ||
            put_file(src, "etc/motd", "one\ntwo\nthree\n", 14) ||
            put_file(src, "data/blob", blob, sizeof(blob)) ||
            put_file(src, "keep.txt", "same\n", 5) || put_file(src, "gone.txt", "bye\n", 4) ||
            put_file(src, "mode.sh", "#!/bin/sh\n", 10))
                return -1;
        snprintf(cmd, sizeof(cmd), "%s/mode.sh", src);
        chmod(cmd, 0644);
        snprintf(cmd, sizeof(cmd),
                 "mkfs.ext4 -q -F -d %s %s/tpl.raw 16M >/dev/null && qemu-img convert -O qcow2 "
                 "%s/tpl.raw %s >/dev/null",
                 src, root, root, tpl);
        if (system(cmd) != 0)
                return -1;
        return image_create_overlay(tpl, va) || image_create_overlay(tpl, vb) ? -1 : 0;
}

/*
 * A: keep.txt rewritten with its own bytes (a top-layer change the guest
 * cannot see). B: the same, and hostname changed, new.conf added,
 * gone.txt removed, mode.sh made executable, data/blob's bytes changed.
 * Returns 1 when libguestfs cannot run here.
 */
static int change_versions(char *why, size_t size) {
        guestfs_h *g = guestfs_create();
        char blob[8192];
        int r = 0;

        if (!g)
                return snprintf(why, size, "guestfs_create failed"), 1;
        guestfs_set_error_handler(g, NULL, NULL);
        if (guestfs_add_drive_opts(g, va, GUESTFS_ADD_DRIVE_OPTS_FORMAT, "qcow2", -1) < 0 ||
            guestfs_add_drive_opts(g, vb, GUESTFS_ADD_DRIVE_OPTS_FORMAT, "qcow2", -1) < 0)
                r = -1;
        if (r == 0 && guestfs_launch(g) < 0) {
                snprintf(why, size, "%s", guestfs_last_error(g));
                guestfs_close(g);
                return 1;
        }
        for (size_t i = 0; i < sizeof(blob); i++)
                blob[i] = (char)(i * 7 + (i == 4000));
        if (r == 0 &&
            (guestfs_mkmountpoint(g, "/a") < 0 || guestfs_mkmountpoint(g, "/b") < 0 ||
             guestfs_mount(g, "/dev/sda", "/a") < 0 || guestfs_mount(g, "/dev/sdb", "/b") < 0 ||
             guestfs_write(g, "/a/keep.txt", "same\n", 5) < 0 ||
             guestfs_write(g, "/b/keep.txt", "same\n", 5) < 0 ||
             guestfs_write(g, "/b/etc/hostname", "beta\n", 5) < 0 ||
             guestfs_write(g, "/b/etc/new.conf", "x = 1\n", 6) < 0 ||
             guestfs_rm(g, "/b/gone.txt") < 0 || guestfs_chmod(g, 0755, "/b/mode.sh") < 0 ||
             guestfs_write(g, "/b/data/blob", blob, sizeof(blob)) < 0 || guestfs_shutdown(g) < 0)) {
                snprintf(why, size, "changing the versions: %s", guestfs_last_error(g));
                r = -1;
        }
        guestfs_close(g);
        return r;
}

static json_t *entry(const char *path) {
        size_t i;
        json_t *e;

        json_array_foreach(json_object_get(result, "files"), i, e) {
                if (!strcmp(json_string_value(json_object_get(e, "path")), path))
                        return e;
        }
        return NULL;
}

static const char *str(const json_t *e, const char *key) {
        return json_string_value(json_object_get(e, key));
}

static long long num(const json_t *e, const char *key) {
        return json_integer_value(json_object_get(e, key));
}

TEST(reports_exactly_the_files_changed_added_and_removed) {
        json_t *e;

        CHECK(result_r == 0);
        if (result_r) {
                printf("# %s\n", result_err);
                return;
        }
        CHECK(json_array_size(json_object_get(result, "filesystems")) == 1);
        CHECK_STR(json_string_value(json_array_get(json_object_get(result, "filesystems"), 0)),
                  "/dev/sda");
        CHECK(num(result, "added") == 1);
        CHECK(num(result, "removed") == 1);
        CHECK(num(result, "changed") == 3);
        CHECK(json_array_size(json_object_get(result, "files")) == 5);
        CHECK(json_is_false(json_object_get(result, "truncated")));
        CHECK(!entry("/keep.txt")); /* written, but with the bytes it had */
        CHECK(!entry("/etc/motd"));

        e = entry("/etc/new.conf");
        CHECK_STR(str(e, "change"), "added");
        CHECK_STR(str(e, "type"), "file");
        CHECK(num(e, "new_size") == 6);
        CHECK(str(e, "diff") && strstr(str(e, "diff"), "+x = 1\n"));

        e = entry("/gone.txt");
        CHECK_STR(str(e, "change"), "removed");
        CHECK(num(e, "old_size") == 4);
        CHECK(str(e, "diff") && strstr(str(e, "diff"), "-bye\n"));
}

TEST(a_small_text_file_gets_its_unified_diff) {
        json_t *e = entry("/etc/hostname");
        const char *d = str(e, "diff");

        CHECK_STR(str(e, "change"), "changed");
        CHECK(json_is_true(json_object_get(e, "content_changed")));
        CHECK(num(e, "old_size") == 6 && num(e, "new_size") == 5);
        CHECK(d && !strncmp(d, "--- a/etc/hostname\n+++ b/etc/hostname\n", 38));
        CHECK(d && strstr(d, "\n-alpha\n+beta\n"));
}

TEST(binary_files_and_mode_changes_are_listed_without_a_diff) {
        json_t *blob = entry("/data/blob"), *mode = entry("/mode.sh");

        CHECK(json_is_true(json_object_get(blob, "content_changed")));
        CHECK(num(blob, "old_size") == 8192 && num(blob, "new_size") == 8192);
        CHECK(!json_object_get(blob, "diff"));
        CHECK(str(blob, "diff_skipped") != NULL);

        CHECK(json_is_false(json_object_get(mode, "content_changed")));
        CHECK_STR(str(mode, "old_mode"), "0644");
        CHECK_STR(str(mode, "new_mode"), "0755");
        CHECK(!json_object_get(mode, "diff"));
        CHECK(!json_object_get(mode, "old_owner"));
}

TEST(a_missing_image_is_an_error_with_a_reason) {
        char missing[160], err[256] = "";
        json_t *out = NULL;

        snprintf(missing, sizeof(missing), "%s/nope.qcow2", root);
        CHECK(diff_files(va, missing, NULL, NULL, &out, err, sizeof(err)) < 0);
        CHECK(!out);
        CHECK(err[0] != '\0');
}

static void on_progress(void *userdata, const char *phase, int percent) {
        int *last = userdata;

        if (percent < *last)
                *last = 1000; /* went backwards */
        else
                *last = percent;
}

int main(void) {
        char why[512] = "";
        int last = 0, r;

        snprintf(root, sizeof(root), "/tmp/homing-test-files-XXXXXX");
        if (!mkdtemp(root))
                return 1;
        snprintf(tpl, sizeof(tpl), "%s/tpl.qcow2", root);
        snprintf(va, sizeof(va), "%s/va.qcow2", root);
        snprintf(vb, sizeof(vb), "%s/vb.qcow2", root);
        if (make_template() < 0) {
                printf("Bail out! could not make the template image\n");
                return 1;
        }
        r = change_versions(why, sizeof(why));
        if (r == 1) {
                printf("1..0 # SKIP libguestfs cannot run here: %s\n", why);
                nftw(root, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
                return 0;
        }
        if (r < 0) {
                printf("Bail out! %s\n", why);
                return 1;
        }
        result_r = diff_files(va, vb, on_progress, &last, &result, result_err, sizeof(result_err));
        if (result_r == 0 && last != 100)
                printf("# progress ended at %d, not 100\n", last), result_r = -1;
        {
                static const struct tap_test tests[] = {
                        TAP_TEST(reports_exactly_the_files_changed_added_and_removed),
                        TAP_TEST(a_small_text_file_gets_its_unified_diff),
                        TAP_TEST(binary_files_and_mode_changes_are_listed_without_a_diff),
                        TAP_TEST(a_missing_image_is_an_error_with_a_reason),
                };
                r = tap_run(tests, sizeof(tests) / sizeof(tests[0]));
        }
        json_decref(result);
        nftw(root, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
        return r;
}
