/*
 * The jobs an agent runs on its store for the API, which queues them at the
 * datacenter of the snapshot's active placement, where the versions'
 * images are: disk diffs, compositions and file diffs. A disk diff is what
 * `homing diff` computes, posted back; a file diff is what `homing diff
 * --files` adds, with its phase and percent posted as it goes. For each claimed composition: the version is written in the store as `homing
 * compose` writes it, registered with the API like any version (which
 * makes it the active one), and the composition reported succeeded with
 * it. Whatever fails is reported with its reason, and the files of a
 * version that could not be registered are removed.
 */
#include "agent/jobs.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agent/control.h"
#include "base/log.h"
#include "diff/diff.h"

/* Ends composition `id` as failed, saying why. */
static void report_failed(struct control *c, const char *dc, long long id, const char *why) {
        char path[96], err[256];
        size_t n = strlen(why);
        json_t *body, *reply = NULL;
        long status = 0;

        /* The API keeps 256 bytes: cut at a character's start. */
        if (n > 256)
                for (n = 256; n > 0 && ((unsigned char)why[n] & 0xc0) == 0x80; n--)
                        ;
        body = json_pack("{s:s%}", "error", why, n);
        snprintf(path, sizeof(path), "/v1/agent/compositions/%lld/failed", id);
        if (control_call(c, "POST", path, body, &status, &reply, err, sizeof(err)) < 0 ||
            status != 200)
                log_warn("agent", "%s: composition %lld failed (%s) and the API was not told: %ld",
                         dc, id, why, status);
        else
                log_info("agent", "%s: composition %lld failed: %s", dc, id, why);
        json_decref(body);
        json_decref(reply);
}

static void remove_version(const char *store, const char *snapshot, long long v) {
        static const char *const exts[] = { "qcow2", "manifest", "json" };

        for (size_t e = 0; e < sizeof(exts) / sizeof(exts[0]); e++) {
                char path[4096];
                snprintf(path, sizeof(path), "%s/snapshots/%s/v%lld.%s", store, snapshot, v,
                         exts[e]);
                unlink(path);
        }
}

/* Registers what diff_store_compose made; 0, or -1 with `why` filled. */
static int register_made(struct control *c, const char *snapshot, const json_t *made, char *why,
                         size_t size) {
        char path[256], err[256];
        json_t *body =
                json_pack("{s:O, s:O, s:O, s:O, s:O}", "version", json_object_get(made, "version"),
                          "content_sha256", json_object_get(made, "content_sha256"), "size_bytes",
                          json_object_get(made, "size_bytes"), "virtual_size",
                          json_object_get(made, "virtual_size"), "config",
                          json_object_get(made, "config"));
        json_t *reply = NULL;
        long status = 0;
        int r = 0;

        snprintf(path, sizeof(path), "/v1/agent/snapshots/%s/versions", snapshot);
        if (!body || control_call(c, "POST", path, body, &status, &reply, err, sizeof(err)) < 0) {
                snprintf(why, size, "registering the version: %s", body ? err : "out of memory");
                r = -1;
        } else if (status != 201) {
                const char *detail = json_string_value(json_object_get(reply, "detail"));
                snprintf(why, size, "registering the version: the API answered %ld: %s", status,
                         detail ? detail : "");
                r = -1;
        }
        json_decref(body);
        json_decref(reply);
        return r;
}

/* Writes and registers one claimed composition (the claim's answer, borrowed). */
static void compose_one(const char *dc, const char *store, struct control *c, const json_t *job) {
        long long id = json_integer_value(json_object_get(job, "composition_id"));
        const char *snapshot = json_string_value(json_object_get(job, "snapshot_id"));
        json_t *paths = json_object_get(job, "config"), *ext = json_object_get(job, "disk_extents");
        json_t *gf = json_object_get(job, "files");
        size_t np = json_array_size(paths), ne = json_array_size(ext), nf = json_array_size(gf);
        const char **files = calloc(nf + 1, sizeof(*files));
        const char **pointers = calloc(np + 1, sizeof(*pointers));
        struct diff_extent *extents = calloc(ne + 1, sizeof(*extents));
        struct diff_compose want = {
                .base = json_integer_value(json_object_get(job, "base")),
                .from = json_integer_value(json_object_get(job, "from")),
                .version = json_integer_value(json_object_get(job, "version")),
                .pointers = pointers,
                .n_pointers = np,
                .extents = extents,
                .n_extents = ne,
                .whole_disk = json_is_true(json_object_get(job, "whole_disk")),
                .files = files,
                .n_files = nf,
        };
        json_t *made = NULL, *body = NULL, *reply = NULL;
        char why[600], path[96], err[256];
        long status = 0;

        if (!pointers || !extents || !files || !snapshot) {
                report_failed(c, dc, id, "the claim was not understood");
                goto out;
        }
        for (size_t i = 0; i < np; i++)
                pointers[i] = json_string_value(json_array_get(paths, i));
        for (size_t i = 0; i < nf; i++)
                files[i] = json_string_value(json_array_get(gf, i));
        for (size_t i = 0; i < ne; i++) {
                json_t *e = json_array_get(ext, i);
                extents[i].offset = (uint64_t)json_integer_value(json_object_get(e, "offset"));
                extents[i].length = (uint64_t)json_integer_value(json_object_get(e, "length"));
        }
        if (diff_store_compose(store, snapshot, &want, &made, why, sizeof(why)) < 0) {
                report_failed(c, dc, id, why);
                goto out;
        }
        if (register_made(c, snapshot, made, why, sizeof(why)) < 0) {
                remove_version(store, snapshot, want.version);
                report_failed(c, dc, id, why);
                goto out;
        }
        body = json_pack("{s:I}", "version", (json_int_t)want.version);
        snprintf(path, sizeof(path), "/v1/agent/compositions/%lld/succeeded", id);
        if (control_call(c, "POST", path, body, &status, &reply, err, sizeof(err)) < 0 ||
            status != 200)
                log_warn("agent",
                         "%s: composition %lld wrote version %lld of %s, but the API "
                         "was not told (%ld)",
                         dc, id, want.version, snapshot, status);
        else
                log_info("agent", "%s: composition %lld wrote version %lld of %s", dc, id,
                         want.version, snapshot);
out:
        json_decref(made);
        json_decref(body);
        json_decref(reply);
        free(pointers);
        free(extents);
        free(files);
}

/* Computes one claimed disk diff and posts its extents, or why it could not. */
static void diff_one(const char *dc, const char *store, struct control *c, const json_t *job) {
        long long id = json_integer_value(json_object_get(job, "disk_diff_id"));
        const char *snapshot = json_string_value(json_object_get(job, "snapshot_id"));
        long long from = json_integer_value(json_object_get(job, "from"));
        long long to = json_integer_value(json_object_get(job, "to"));
        json_t *out = NULL, *body, *reply = NULL;
        char why[600], path[96], err[256];
        long status = 0;
        size_t n;

        if (snapshot &&
            diff_store_versions(store, snapshot, from, to, &out, why, sizeof(why)) == 0) {
                snprintf(path, sizeof(path), "/v1/agent/diffs/%lld/succeeded", id);
                body = json_pack("{s:O}", "disk", json_object_get(out, "disk"));
        } else {
                if (!snapshot)
                        snprintf(why, sizeof(why), "the claim was not understood");
                n = strlen(why);
                if (n > 256) /* the API keeps 256 bytes: cut at a character's start */
                        for (n = 256; n > 0 && ((unsigned char)why[n] & 0xc0) == 0x80; n--)
                                ;
                snprintf(path, sizeof(path), "/v1/agent/diffs/%lld/failed", id);
                body = json_pack("{s:s%}", "error", why, n);
        }
        if (control_call(c, "POST", path, body, &status, &reply, err, sizeof(err)) < 0 ||
            status != 200)
                log_warn("agent", "%s: disk diff %lld of %s: the API was not told (%ld)", dc, id,
                         snapshot ? snapshot : "?", status);
        json_decref(body);
        json_decref(reply);
        json_decref(out);
}

/* Where a running file diff's progress goes. */
struct file_progress {
        struct control *c;
        long long id;
};

static void file_progress(void *userdata, const char *phase, int percent) {
        struct file_progress *p = userdata;
        json_t *body = json_pack("{s:s, s:i}", "phase", phase, "percent", percent), *reply = NULL;
        char path[96], err[256];
        long status = 0;

        snprintf(path, sizeof(path), "/v1/agent/file-diffs/%lld/progress", p->id);
        if (body)
                control_call(p->c, "POST", path, body, &status, &reply, err, sizeof(err));
        json_decref(body);
        json_decref(reply);
}

/*
 * Compares the guest files of one claimed file diff (libguestfs, tens of
 * seconds) and posts them, or why it could not: `unavailable` when
 * libguestfs cannot run here.
 */
static void files_one(const char *dc, const char *store, struct control *c, const json_t *job) {
        struct file_progress p = { c, json_integer_value(json_object_get(job, "file_diff_id")) };
        const char *snapshot = json_string_value(json_object_get(job, "snapshot_id"));
        long long from = json_integer_value(json_object_get(job, "from"));
        long long to = json_integer_value(json_object_get(job, "to"));
        json_t *out = NULL, *body, *reply = NULL;
        char why[600], path[96], err[256];
        long status = 0;
        int r = -EINVAL;
        size_t n;

        snprintf(why, sizeof(why), "the claim was not understood");
        if (snapshot)
                r = diff_store_files(store, snapshot, from, to, file_progress, &p, &out, why,
                                     sizeof(why));
        if (r == 0) {
                snprintf(path, sizeof(path), "/v1/agent/file-diffs/%lld/succeeded", p.id);
                body = json_pack("{s:O}", "files", json_object_get(out, "files"));
        } else {
                n = strlen(why);
                if (n > 256) /* the API keeps 256 bytes: cut at a character's start */
                        for (n = 256; n > 0 && ((unsigned char)why[n] & 0xc0) == 0x80; n--)
                                ;
                snprintf(path, sizeof(path), "/v1/agent/file-diffs/%lld/failed", p.id);
                body = json_pack("{s:s%, s:b}", "error", why, n, "unavailable", r == -ENOTSUP);
        }
        if (control_call(c, "POST", path, body, &status, &reply, err, sizeof(err)) < 0 ||
            status != 200)
                log_warn("agent", "%s: file diff %lld of %s: the API was not told (%ld)", dc, p.id,
                         snapshot ? snapshot : "?", status);
        else if (r < 0)
                log_warn("agent", "%s: file diff %lld of %s failed: %s", dc, p.id,
                         snapshot ? snapshot : "?", why);
        else
                log_info("agent", "%s: file diff %lld of %s versions %lld and %lld done", dc, p.id,
                         snapshot, from, to);
        json_decref(body);
        json_decref(reply);
        json_decref(out);
}

/* Claims jobs from `claim_path` and runs each with `run` until none is left. */
static void run_pending(const char *dc, const char *store, struct control *c,
                        const char *claim_path,
                        void (*run)(const char *, const char *, struct control *, const json_t *)) {
        for (;;) {
                json_t *body = json_object(), *job = NULL;
                long status = 0;
                char err[256];
                int r = control_call(c, "POST", claim_path, body, &status, &job, err, sizeof(err));

                json_decref(body);
                if (r == 0 && status == 200 && json_is_object(job))
                        run(dc, store, c, job);
                json_decref(job);
                if (r < 0 || status != 200)
                        return; /* none left (204), or next time */
        }
}

void jobs_run_pending(const char *datacenter, const char *store, struct control *c) {
        run_pending(datacenter, store, c, "/v1/agent/diffs/claim", diff_one);
        run_pending(datacenter, store, c, "/v1/agent/compositions/claim", compose_one);
        run_pending(datacenter, store, c, "/v1/agent/file-diffs/claim", files_one);
}
