/*
 * homing snapshot register: a hypervisor (or the demo) wrote a new version
 * of a snapshot into the store of the datacenter where it is active, as
 * <store>/snapshots/<id>/v<N>.qcow2 (an overlay on its template). This
 * hashes its blocks into a manifest, writes the manifest and the VM's
 * configuration beside it, and registers the version with the API (with the
 * datacenter's agent token), which makes it the active one.
 */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/control.h"
#include "base/config.h"
#include "cmd/args.h"
#include "cmd/commands.h"
#include "image/image.h"

static const char usage[] =
        "usage: homing snapshot register --snapshot ID --version N [--config FILE]\n"
        "           --datacenter DC --store DIR [--api-url URL] (token: HOMING_AGENT_TOKEN)\n"
        "  hashes <store>/snapshots/<ID>/v<N>.qcow2, writes v<N>.manifest and v<N>.json\n"
        "  (the configuration, canonical JSON; {} without --config) and registers the\n"
        "  version, which becomes the active one at the datacenter\n";

static int write_canonical(const char *path, json_t *config) {
        FILE *f = fopen(path, "w");
        int r;
        if (!f)
                return -errno;
        r = json_dumpf(config, f, JSON_COMPACT | JSON_SORT_KEYS) == 0 ? 0 : -EIO;
        if (fclose(f) != 0)
                r = -EIO;
        return r;
}

/* Sums the data (not zero) ranges a newer version's manifest differs by. */
static int count_changed(void *userdata, uint64_t offset, uint64_t length, bool zero) {
        (void)offset;
        if (!zero)
                *(uint64_t *)userdata += length;
        return 0;
}

/*
 * The bytes of the blocks that changed since version - 1, when the store
 * holds that version's manifest: what a copy of the older version lacks.
 * false when that cannot be told (a first version, another size).
 */
static bool changed_since_previous(const struct config *cfg, const char *snapshot,
                                   long long version, const struct image_manifest *m,
                                   uint64_t *changed) {
        struct image_manifest *prev = NULL;
        char path[1100];
        bool ok;

        *changed = 0;
        snprintf(path, sizeof(path), "%s/snapshots/%s/v%lld.manifest", cfg->store, snapshot,
                 version - 1);
        ok = version > 1 && image_manifest_load(path, &prev) == 0 &&
             image_manifest_diff(prev, m, count_changed, changed) == 0;
        image_manifest_free(prev);
        return ok;
}

static int register_version(const struct config *cfg, const char *snapshot, long long version,
                            const char *config_path) {
        char image_path[1024], manifest_path[1100], config_out[1100], hex[IMAGE_DIGEST_HEX_SIZE];
        char err[256], path[300];
        uint8_t digest[IMAGE_DIGEST_SIZE];
        struct image *img = NULL;
        struct image_manifest *m = NULL;
        struct control *c = NULL;
        json_t *config = NULL, *body = NULL, *reply = NULL;
        json_error_t jerr = { 0 };
        uint64_t size = 0, changed = 0;
        long status = 0;
        int r;

        snprintf(image_path, sizeof(image_path), "%s/snapshots/%s/v%lld.qcow2", cfg->store,
                 snapshot, version);
        snprintf(manifest_path, sizeof(manifest_path), "%s/snapshots/%s/v%lld.manifest", cfg->store,
                 snapshot, version);
        snprintf(config_out, sizeof(config_out), "%s/snapshots/%s/v%lld.json", cfg->store, snapshot,
                 version);
        config = config_path ? json_load_file(config_path, 0, &jerr) : json_object();
        if (!json_is_object(config)) {
                fprintf(stderr, "homing snapshot: %s:%d: %s\n", config_path ? config_path : "-",
                        jerr.line, config ? "the configuration is not a JSON object" : jerr.text);
                json_decref(config);
                return 2;
        }
        r = image_open(image_path, false, &img);
        if (r == 0)
                r = image_manifest_compute(img, &m);
        if (r < 0) {
                fprintf(stderr, "homing snapshot: %s: %s\n", image_path, strerror(-r));
                goto out;
        }
        size = image_manifest_count(m) * (uint64_t)IMAGE_BLOCK;
        image_manifest_digest(m, digest);
        image_digest_hex(digest, hex);
        r = image_manifest_save(m, manifest_path);
        if (r == 0)
                r = write_canonical(config_out, config);
        if (r < 0) {
                fprintf(stderr, "homing snapshot: cannot write beside %s: %s\n", image_path,
                        strerror(-r));
                goto out;
        }
        body = json_pack("{s:I, s:s, s:I, s:I, s:O}", "version", (json_int_t)version,
                         "content_sha256", hex, "size_bytes", (json_int_t)size, "virtual_size",
                         (json_int_t)image_size(img), "config", config);
        if (body && changed_since_previous(cfg, snapshot, version, m, &changed))
                json_object_set_new(body, "changed_bytes", json_integer((json_int_t)changed));
        snprintf(path, sizeof(path), "/v1/agent/snapshots/%s/versions", snapshot);
        r = control_new(cfg->api_url, cfg->agent_token, cfg->agent_tls_ca, &c);
        if (r == 0)
                r = control_call(c, "POST", path, body, &status, &reply, err, sizeof(err));
        if (r < 0) {
                fprintf(stderr, "homing snapshot: %s\n", r == -EIO ? err : strerror(-r));
        } else if (status != 201) {
                const char *detail = json_string_value(json_object_get(reply, "detail"));
                fprintf(stderr, "homing snapshot: the API answered %ld: %s\n", status,
                        detail ? detail : "");
                r = -EPERM;
        } else {
                printf("%s v%lld %s %llu\n", snapshot, version, hex, (unsigned long long)size);
        }
out:
        image_manifest_free(m);
        image_free(img);
        control_free(c);
        json_decref(config);
        json_decref(body);
        json_decref(reply);
        return r < 0 ? 1 : 0;
}

int cmd_snapshot(int argc, char **argv) {
        const char *snapshot = NULL, *version = NULL, *config_path = NULL;
        const struct cmd_flag flags[] = { { "--snapshot", &snapshot },
                                          { "--version", &version },
                                          { "--config", &config_path },
                                          { NULL, NULL } };
        struct config cfg;
        char *end = NULL;
        long long v;
        int r;

        if (argc < 2 || strcmp(argv[1], "register") != 0) {
                fputs(usage, argc >= 2 && !strcmp(argv[1], "--help") ? stdout : stderr);
                return argc >= 2 && !strcmp(argv[1], "--help") ? 0 : 2;
        }
        argc--, argv++;
        if (cmd_take_flags("snapshot register", argc, argv, flags, &argc) < 0)
                return 2;
        r = config_load(&cfg, argc, argv, usage);
        if (r != 0)
                return r < 0 ? 2 : 0;
        v = version ? strtoll(version, &end, 10) : 0;
        if (!snapshot || !version || *end || v <= 0 || !cfg.store[0] || !cfg.agent_token[0]) {
                fprintf(stderr,
                        "homing snapshot register: --snapshot, --version (a positive "
                        "integer), --store and an agent token are required\n%s",
                        usage);
                config_fini(&cfg);
                return 2;
        }
        r = register_version(&cfg, snapshot, v, config_path);
        config_fini(&cfg);
        return r;
}
