/*
 * diff — what differs between two states of a VM, and taking chosen items
 * of one into another.
 *
 * Configuration: a VM's configuration is a JSON document. Its items are
 * its values named by JSON Pointers (RFC 6901). The diff of two documents
 * walks both: members of objects by name, elements of arrays BY INDEX (an
 * element inserted at the front shows as every later element changed and
 * one added at the end: honest, and what a patch by index needs), anything
 * else compared whole. It lists every changed, added and removed item with
 * its old and new value, and the same as an RFC 6902 JSON Patch.
 *
 * Disks: a version's image is a qcow2 overlay on its template, and its
 * manifest (image/image.h) lists the blocks of its top layer. The diff of
 * two versions of one snapshot is the extents where their guest-visible
 * content differs, found from the two manifests alone, except for blocks
 * one version holds and the other reads through from the template: those
 * are compared with the template's block (its allocation map first, then
 * its data).
 *
 * Guest files: the file systems inside two versions' images, compared
 * through libguestfs (read-only): files added, removed and changed, with
 * sizes, mode and owner changes, and a unified diff of small text files.
 *
 * Errors are negative errno values; nothing here logs. JSON arguments are
 * borrowed unless a comment says otherwise.
 */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/must-check.h"
#include "image/image.h"

/* ---- JSON Pointers (RFC 6901) -------------------------------------------------- */

/* A parsed pointer: its reference tokens, unescaped (caller storage). */
struct diff_pointer {
        char **tokens;
        size_t n;
};

/*
 * Parses `text`: "" (the whole document) or "/" followed by tokens separated
 * by "/", where "~0" is "~", "~1" is "/", and no other "~" may appear; the
 * text must be UTF-8. Returns 0 and fills *p (diff_pointer_fini frees it);
 * -EINVAL for anything else, with *p empty; -ENOMEM.
 */
int diff_pointer_parse(const char *text, struct diff_pointer *p) MUST_CHECK;
void diff_pointer_fini(struct diff_pointer *p);

/* The pointer's text, escaped ("~" as "~0", "/" as "~1"); malloc'd, NULL when out of memory. */
char *diff_pointer_format(const struct diff_pointer *p);

/*
 * The value `text` names in `doc`, borrowed from it, or NULL when the
 * pointer is not valid or names nothing (an array index is "0" or a
 * decimal without leading zeroes, below the array's size).
 */
json_t *diff_pointer_get(const json_t *doc, const char *text);

/* ---- configuration ---------------------------------------------------------------- */

/*
 * The items that differ from `a` to `b`. Either out-parameter may be NULL.
 * *changes: a new array of {"path", "change": "changed" | "added" |
 * "removed", "old" (not for added), "new" (not for removed)}. *patch: a new
 * RFC 6902 array of {"op": "replace" | "add" | "remove", "path", "value"}
 * that turns `a` into `b` when applied in order (an array's surplus
 * elements are removed from the last one down). Identical documents give
 * empty arrays. Returns 0 or -ENOMEM.
 */
int diff_config(const json_t *a, const json_t *b, json_t **changes, json_t **patch) MUST_CHECK;

/*
 * A new document: `base` with the items named by `pointers` (n of them,
 * borrowed) taken from `from`, in order: where `from` has the item it
 * replaces or adds base's, where only `base` has it, it is removed (array
 * elements by index, so a removal shifts the later ones). Returns 0 and
 * *out; on failure *bad is the index of the pointer refused and nothing is
 * made: -EINVAL when it is not a JSON Pointer, -ENOENT when neither
 * document has the item, -ENOTDIR when the item's parent is not in the
 * result (take the parent instead) or an index would leave a hole; -ENOMEM.
 */
int diff_config_take(const json_t *base, const json_t *from, const char *const *pointers, size_t n,
                     json_t **out, size_t *bad) MUST_CHECK;

/* ---- disks ------------------------------------------------------------------------- */

struct diff_extent {
        uint64_t offset, length; /* bytes, multiples of IMAGE_BLOCK */
};

/* The changed regions of a disk (caller storage). */
struct diff_disk {
        uint64_t virtual_size;
        uint64_t changed_bytes;      /* the sum of the extents' lengths */
        uint64_t template_reads;     /* blocks whose template data had to be read */
        struct diff_extent *extents; /* increasing, coalesced: no two touch */
        size_t n;
};

/*
 * The extents where versions `a` and `b` (their manifests, borrowed; both
 * overlays on the template at `template_path`) read differently. A block
 * in both manifests differs when its hash or flags do; a block in one only
 * differs from the template's block under the other, which is opened
 * (qemu-nbd, read-only) only when there is such a block. Returns 0 and
 * fills *d (diff_disk_fini frees it); -EINVAL when the virtual sizes
 * differ; -ENOMEM; or the -errno of opening or reading the template.
 */
int diff_disk(const struct image_manifest *a, const struct image_manifest *b,
              const char *template_path, struct diff_disk *d) MUST_CHECK;
void diff_disk_fini(struct diff_disk *d);

/* ---- versions in a store ------------------------------------------------------------ */

/*
 * Versions live in a datacenter's store as <store>/snapshots/<id>/v<N>.qcow2
 * (an overlay on its template) with v<N>.manifest and v<N>.json beside it
 * (agent/README.md). On failure, the functions below put a sentence saying
 * why in `err` (err_size bytes; may be NULL when err_size is 0) and write
 * nothing to the store. Their errors: -EINVAL for a snapshot id that names
 * no folder or a version below 1; -ENOENT for a version the store lacks, or
 * whose manifest or configuration is missing; -EBADMSG for a broken
 * manifest or a configuration that is not a JSON object; -EXDEV when the
 * two versions are not overlays of one template; -ENOMEM; -errno.
 */

/*
 * The diff of versions `va` and `vb` of `snapshot`: a new object
 * {"snapshot_id", "from", "to", "config": {"changes", "patch"} (as
 * diff_config), "disk": {"virtual_size", "changed_bytes",
 * "template_blocks_read", "extents": [{"offset", "length"}]}}.
 */
int diff_store_versions(const char *store, const char *snapshot, long long va, long long vb,
                        json_t **out, char *err, size_t err_size) MUST_CHECK;

/* What a new version is made of (borrowed). */
struct diff_compose {
        long long base, from;        /* versions */
        long long version;           /* the new one; 0: one past the highest in the store */
        const char *const *pointers; /* configuration items taken from `from` */
        size_t n_pointers;
        const struct diff_extent *extents; /* disk regions taken from `from` */
        size_t n_extents;
        bool whole_disk;          /* all of `from`'s disk (the extents are then ignored) */
        const char *const *files; /* guest files taken from `from` (diff_files_take) */
        size_t n_files;
};

/*
 * Writes version c->version (or the next) of `snapshot`: an overlay on the
 * template reading as `base` outside the chosen extents and as `from`
 * inside them, its manifest (recomputed from the image and checked against
 * the two it came from) and its configuration, `base`'s with the chosen
 * items of `from` (diff_config_take), and then the chosen guest files
 * of `from` (diff_files_take, tens of seconds: a libguestfs appliance),
 * after which its manifest is taken from what the image reads, not
 * checked block for block. Never over an existing version: it is
 * built under ".partial" names and linked into place. Returns 0 and *out, a
 * new object {"snapshot_id", "version", "base", "from", "content_sha256",
 * "size_bytes", "virtual_size", "image", "config", "extents", "files"} (what
 * `homing snapshot register` needs); besides the errors above, -EINVAL for
 * an extent that is not whole blocks, empty or outside the disk, the errors
 * of diff_config_take for a configuration path, those of diff_files_take
 * for a guest file, -EEXIST when the version exists.
 */
int diff_store_compose(const char *store, const char *snapshot, const struct diff_compose *c,
                       json_t **out, char *err, size_t err_size) MUST_CHECK;

/* ---- guest files --------------------------------------------------------------------- */

/* A text file up to this size gets a unified diff. */
#define DIFF_TEXT_MAX (64 * 1024)

/* Told how far a long diff is: a phase ("launching", "listing", "comparing", "done") and 0..100. */
typedef void (*diff_progress_fn)(void *userdata, const char *phase, int percent);

/*
 * The files that differ between the file systems of two images (qcow2,
 * opened read-only in one libguestfs appliance; each file system of the
 * first paired with the one of the same name and type on the second).
 * `progress` (may be NULL) is called from this thread. Returns 0 and *out,
 * a new object {"filesystems": ["/dev/sda1", ...], "added", "removed",
 * "changed" (counts), "truncated" (the list stops at 500 entries),
 * "files": [{"filesystem", "path", "change": "added" | "removed" |
 * "changed", "type": "file" | "directory" | "symlink" | "other",
 * "old_size", "new_size" (regular files), "content_changed", "old_mode",
 * "new_mode" (octal), "old_owner", "new_owner" ("uid:gid"), "diff" (diff
 * -u, for text files up to DIFF_TEXT_MAX, 96 KiB of them in all) or
 * "diff_skipped" (why not)}]}, in path order. -ENOTSUP when libguestfs cannot run here (err says why), else
 * libguestfs's -errno with err saying what failed.
 */
int diff_files(const char *image_a, const char *image_b, diff_progress_fn progress, void *userdata,
               json_t **out, char *err, size_t err_size) MUST_CHECK;

/*
 * Whether `item` names a guest file to take: "/absolute/path" (on the
 * first file system) or "/dev/sdaN:/absolute/path", no "." or ".." steps.
 */
bool diff_file_item_valid(const char *item);

/*
 * Makes the guest files named by `items` (n, borrowed) in the image at
 * `image` (qcow2, written through libguestfs) what they are in the image
 * at `from_image` (read-only; file systems paired as in diff_files): each
 * is removed and copied whole from the other (cp -a: a folder with what
 * it holds), or only removed where the other lacks it. Returns 0; on
 * failure *bad is the item refused and err says why: -EINVAL for an item
 * that is not valid (checked before anything is written), -ENOENT for one
 * in neither image or on no file system, -ENOTSUP when libguestfs cannot
 * run here, else libguestfs's -errno (the image is then half written).
 */
int diff_files_take(const char *image, const char *from_image, const char *const *items, size_t n,
                    size_t *bad, char *err, size_t err_size) MUST_CHECK;

/*
 * diff_files on versions `va` and `vb` of `snapshot` in `store` (the
 * errors of diff_store_versions first): a new object {"snapshot_id",
 * "from", "to", "files": (as diff_files)}.
 */
int diff_store_files(const char *store, const char *snapshot, long long va, long long vb,
                     diff_progress_fn progress, void *userdata, json_t **out, char *err,
                     size_t err_size) MUST_CHECK;
