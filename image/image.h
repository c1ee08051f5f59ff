/*
 * image — homing's access to the VM disk images of a datacenter's store.
 *
 * A store is a directory. A template is an immutable qcow2 base image; a
 * snapshot version is a qcow2 overlay whose backing file is its template,
 * recorded as a path RELATIVE to the overlay's directory so that a store
 * can be moved or mounted elsewhere whole. Overlays use 64 KiB clusters
 * with extended L2 entries, i.e. 4 KiB subclusters: the unit of change is
 * one 4 KiB block (IMAGE_BLOCK), and so is the unit of the manifest.
 *
 * No qcow2 is parsed here. Data goes through libnbd to a qemu-nbd child
 * (one per open image, socket-activated, reaped on image_free); creating,
 * checking and inspecting images runs qemu-img (argv, no shell).
 *
 * A manifest lists, for every block allocated in an image's TOP layer, its
 * index, whether it reads as zeroes and the SHA-256 of its 4 KiB. Its
 * canonical encoding (README.md) is hashed into the version's digest: two
 * images with the same top-layer content have the same digest whatever their
 * qcow2 files look like. The diff of two manifests is what to copy to turn
 * one version's blocks into another's.
 *
 * Sizes: images handled here have virtual sizes that are multiples of
 * IMAGE_BLOCK (image_create insists, image_open refuses others).
 * Errors are negative errno values; nothing here logs. Paths are borrowed
 * for the duration of a call. An open image serves one thread at a time.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define IMAGE_BLOCK 4096u
#define IMAGE_DIGEST_SIZE 32
#define IMAGE_DIGEST_HEX_SIZE 65 /* 64 hex digits and a NUL */

/*
 * Called for each range of an image or a diff, in increasing offset order,
 * offset and length multiples of IMAGE_BLOCK; `zero` when the range reads as
 * zeroes. Return 0 to go on; a negative value stops the walk and is returned
 * by the function that called back.
 */
typedef int (*image_extent_fn)(void *userdata, uint64_t offset, uint64_t length, bool zero);

/* ---- creating and checking (qemu-img) --------------------------------------- */

/*
 * Creates a standalone qcow2 (a template) of `virtual_size` bytes, a
 * non-zero multiple of IMAGE_BLOCK. The file must not exist. Returns 0,
 * -EINVAL, -EEXIST, another -errno from the file system, or -EIO when
 * qemu-img fails.
 */
int image_create(const char *path, uint64_t virtual_size);

/*
 * Creates an overlay of `template_path` at `overlay_path` (which must not
 * exist; its directory must). The backing file is recorded relative to the
 * overlay's directory, both resolved through symlinks first, e.g.
 * "../../templates/tpl-1.qcow2"; the size is the template's. Returns 0,
 * -EEXIST, -ENOENT, another -errno, or -EIO when qemu-img fails.
 */
int image_create_overlay(const char *template_path, const char *overlay_path);

/*
 * Runs `qemu-img check` (which opens the backing chain too). Returns 0 for a
 * clean image; -EUCLEAN when it reports corruptions or leaked clusters; -EIO
 * when it cannot check the image at all (unreadable, not qcow2, header
 * broken, backing file missing, held by a writer); -errno when qemu-img
 * cannot run. On failure `err` (may be NULL when err_size is 0) says why.
 */
int image_check(const char *path, char *err, size_t err_size);

/*
 * The backing file name as recorded in the image (not resolved), copied into
 * `out`. Works while a writer holds the image and when the backing file is
 * missing. Returns 0, -ENODATA when the image has no backing file, -ENOBUFS
 * when `size` is too small, -EIO when qemu-img fails or says nonsense.
 */
int image_info_backing(const char *path, char *out, size_t size);

/*
 * Where the top layer's raw data lies in its qcow2 file (`qemu-img map`):
 * for a reader of an image that nothing writes, which can then read the
 * file itself (pread) instead of asking a qemu-nbd. Only uncompressed,
 * unencrypted data of the top layer has a place in the file; read-through
 * blocks, zeroes and compressed clusters have none. Returns 0 and *out, -EIO
 * when qemu-img fails or its answer is too long (a very fragmented image),
 * -ENOMEM or -errno.
 */
struct image_file_map;

int image_file_map_new(const char *path, struct image_file_map **out);
/* Accepts NULL; returns NULL. */
struct image_file_map *image_file_map_free(struct image_file_map *m);
/* The image's virtual size. */
uint64_t image_file_map_size(const struct image_file_map *m);
/*
 * Where guest byte `offset` lies in the file, and how many bytes from it
 * (at most `len`) follow in order there. 0, or -ENOENT when the byte has
 * no place in the file.
 */
int image_file_map_find(const struct image_file_map *m, uint64_t offset, uint64_t len,
                        uint64_t *file_offset, uint64_t *run);

/* ---- open images (qemu-nbd through libnbd) ---------------------------------- */

struct image;

/*
 * Opens a qcow2 image (and its backing chain) by starting qemu-nbd on it.
 * Read-only unless `writable`; qemu's image locking refuses a second writer.
 * Returns 0 and *out; -ENOENT, -EACCES for the file; -EINVAL when the size
 * is not a multiple of IMAGE_BLOCK; -EOPNOTSUPP when the server lacks the
 * allocation contexts; -ENOMEM; or the -errno of a failed start or
 * handshake: qemu-nbd refusing the image (not qcow2, locked, backing file
 * missing) shows as a lost connection, e.g. -ECONNRESET, and qemu-nbd says
 * why on the process's stderr, which it inherits.
 */
int image_open(const char *path, bool writable, struct image **out);

/*
 * Disconnects and waits for qemu-nbd to exit; qemu writes its caches back on
 * the way out, but only image_flush reports a failure to. Accepts NULL;
 * returns NULL.
 */
struct image *image_free(struct image *img);

/* Virtual size in bytes. */
uint64_t image_size(const struct image *img);

/*
 * Guest-visible I/O; `buf` is borrowed. Any length (split into requests the
 * server accepts); the range must lie inside the image. Return 0, -EINVAL
 * for a range outside, -EPERM for writes to a read-only image, -errno.
 */
int image_read(struct image *img, void *buf, size_t len, uint64_t offset);
int image_write(struct image *img, const void *buf, size_t len, uint64_t offset);
/* Makes the range read as zeroes (NBD write_zeroes: no data is sent). */
int image_zero(struct image *img, uint64_t len, uint64_t offset);
/* Makes what was written durable. 0 for a read-only image. */
int image_flush(struct image *img);

/*
 * A writer: a thread of its own does an open image's writes and zeroes, in
 * the order they were queued, several in flight, while the caller goes on
 * (receiving the next data, say). While a writer exists, the image is its
 * alone. Queued data is copied (image_writer_write) or received in place
 * (image_writer_reserve); consecutive copied writes that meet are merged
 * into larger requests while they wait. At most IMAGE_WRITER_QUEUE bytes
 * of data wait at a time.
 */
#define IMAGE_WRITER_QUEUE (8u << 20)
#define IMAGE_WRITER_PIECE (1u << 20) /* the most one reservation holds */

struct image_writer;

/*
 * Called in the writer's thread with each request before it is sent (`data`
 * NULL for zeroes), so that checking what is written runs beside the
 * caller. A negative value fails the writer with it: neither that request
 * nor any after it is written.
 */
typedef int (*image_writer_check_fn)(void *userdata, const void *data, uint64_t len,
                                     uint64_t offset);

/*
 * Starts a writer for a writable `img` (borrowed); `check` may be NULL.
 * 0, -EPERM, -ENOMEM or -errno.
 */
int image_writer_new(struct image *img, image_writer_check_fn check, void *userdata,
                     struct image_writer **out);
/*
 * Queue a write of `len` bytes (any length, the range inside the image) or
 * of zeroes; wait while the queue is full. Return 0, or the error of the
 * first queued request that failed (then nothing more is written).
 */
int image_writer_write(struct image_writer *w, const void *buf, size_t len, uint64_t offset);
int image_writer_zero(struct image_writer *w, uint64_t len, uint64_t offset);
/*
 * A write of `len` bytes (at most IMAGE_WRITER_PIECE) whose data the caller
 * puts in *buf (the queue's own memory) and then queues with
 * image_writer_commit. Waits while the queue is full. A reservation not
 * committed is dropped by the next call on the writer. Return 0, -EINVAL,
 * or the error of a failed request.
 */
int image_writer_reserve(struct image_writer *w, size_t len, uint64_t offset, void **buf);
int image_writer_commit(struct image_writer *w);
/* Bytes queued (data or zeroes) that are not written yet. */
uint64_t image_writer_pending(struct image_writer *w);
/*
 * Waits until everything queued is written, stops the thread and frees the
 * writer. Returns 0 or the first failed request's error. Accepts NULL.
 */
int image_writer_finish(struct image_writer *w);

/*
 * A reader: the data of a list of ranges, in order, in pieces of at most
 * IMAGE_READER_PIECE bytes, read ahead by a thread of its own with up to
 * three NBD requests in flight (4 MiB of buffers) while the caller works on
 * the piece it holds. While a reader exists, the image is its alone.
 */
#define IMAGE_READER_PIECE (1u << 20)

struct image_reader;

struct image_span {
        uint64_t offset, length;
};

/*
 * Starts reading `n` spans inside the image, in order (copied). 0, -EINVAL
 * for a span outside, -ENOMEM or -errno.
 */
int image_reader_new(struct image *img, const struct image_span *spans, size_t n,
                     struct image_reader **out);
/*
 * The next piece: its data (borrowed until the next call or the free), its
 * length and offset. Returns 0, 1 after the last piece, or the -errno of a
 * failed read.
 */
int image_reader_next(struct image_reader *r, const uint8_t **data, size_t *len, uint64_t *offset);
/* Stops reading, waits for what is in flight. Accepts NULL; returns NULL. */
struct image_reader *image_reader_free(struct image_reader *r);

/*
 * Calls `cb` for the extents allocated in the top layer only (not those read
 * through from the backing file), coalesced, `zero` when they read as
 * zeroes. Partial blocks at an extent's edges are rounded outward and then
 * do not count as zero. Returns 0, cb's negative value, or -errno.
 */
int image_own_extents(struct image *img, image_extent_fn cb, void *userdata);

/* ---- manifests --------------------------------------------------------------- */

#define IMAGE_BLOCK_ZERO 0x1u /* the block reads as 4096 zero bytes */

struct image_block_hash {
        uint64_t index; /* block number: offset / IMAGE_BLOCK */
        uint32_t flags; /* IMAGE_BLOCK_* */
        uint8_t sha256[IMAGE_DIGEST_SIZE];
};

/* Immutable once made; every accessor borrows. */
struct image_manifest;

/*
 * Hashes every block allocated in the top layer of `img`, reading in 4 MiB
 * requests, several in flight (a reader thread, joined before returning,
 * and 16 MiB of buffers); `img` must not be used by another thread
 * meanwhile. A block is IMAGE_BLOCK_ZERO exactly when its data is all
 * zeroes (whether or not qcow2 stored it as a zero cluster), and its hash is
 * then that of 4096 zero bytes. Returns 0 and *out (free with
 * image_manifest_free), -ENOMEM, or -errno of a failed read.
 */
int image_manifest_compute(struct image *img, struct image_manifest **out);

/* Accepts NULL; returns NULL. */
struct image_manifest *image_manifest_free(struct image_manifest *m);

uint64_t image_manifest_virtual_size(const struct image_manifest *m);
size_t image_manifest_count(const struct image_manifest *m);
/* The i-th entry (i < count), in increasing index order; borrowed. */
const struct image_block_hash *image_manifest_entry(const struct image_manifest *m, size_t i);
/* The entry for block `index`, or NULL when it is not in the manifest; borrowed. */
const struct image_block_hash *image_manifest_lookup(const struct image_manifest *m,
                                                     uint64_t index);
/*
 * How many of blocks `index`, `index` + 1, ... (at most `max`) the manifest
 * lists, one search for all: their entries are (*first)[0 .. return - 1],
 * borrowed. 0 (and *first NULL) when it lacks block `index`.
 */
size_t image_manifest_run(const struct image_manifest *m, uint64_t index, size_t max,
                          const struct image_block_hash **first);

/*
 * The canonical encoding (README.md). *out is malloc'd, the caller frees it.
 * Returns 0 or -ENOMEM (-EOVERFLOW if it would not fit in memory).
 */
int image_manifest_encode(const struct image_manifest *m, void **out, size_t *out_len);

/*
 * Parses an encoding; `data` is borrowed. Accepts exactly what
 * image_manifest_encode can produce: returns 0 and *out, -EBADMSG for
 * anything else (wrong magic or version, truncated, trailing bytes, entries
 * not strictly increasing or past the end, unknown flags, a zero flag that
 * disagrees with the hash), or -ENOMEM. Pure: no I/O, no global state.
 */
int image_manifest_decode(const void *data, size_t len, struct image_manifest **out);

/* Writes the encoding to `path` atomically (temporary file, fsync, rename). 0 or -errno. */
int image_manifest_save(const struct image_manifest *m, const char *path);
/* Reads and decodes `path`. 0 and *out, -EBADMSG, or -errno. */
int image_manifest_load(const char *path, struct image_manifest **out);

/* SHA-256 of the canonical encoding: the version's content digest. */
void image_manifest_digest(const struct image_manifest *m, uint8_t out[IMAGE_DIGEST_SIZE]);

/*
 * Calls `cb` with the runs of consecutive blocks of `want` that `have` lacks
 * (absent from `have`, or present with another hash or flags), coalesced
 * into (offset, length, zero) byte ranges. `have` may be NULL: all of
 * `want`. Blocks that `have` holds and `want` does not are not reported (a
 * write cannot express "read through to the backing file again").
 * Returns 0, -EINVAL when the virtual sizes differ, or cb's negative value.
 */
int image_manifest_diff(const struct image_manifest *have, const struct image_manifest *want,
                        image_extent_fn cb, void *userdata);

/*
 * A patch that turns `base` into `want` (same virtual size): the entries of
 * `want` that `base` lacks or holds otherwise (as a manifest, in the
 * canonical encoding) and the blocks `base` holds that `want` does not. What
 * a target that holds an older version needs of a newer one's manifest: a
 * few entries instead of all of them (README.md has the layout). *out is
 * malloc'd. Returns 0, -EINVAL when the sizes differ, -ENOMEM.
 */
int image_manifest_patch_encode(const struct image_manifest *base,
                                const struct image_manifest *want, void **out, size_t *out_len);

/*
 * Applies a patch to `base` (borrowed). Returns 0 and the new manifest,
 * -EBADMSG for a malformed patch or one that does not fit `base`, -ENOMEM.
 * Pure; the caller checks the result's digest against what it expects.
 */
int image_manifest_patch_apply(const struct image_manifest *base, const void *patch, size_t len,
                               struct image_manifest **out);

/* ---- digests ------------------------------------------------------------------ */

/*
 * The SHA-256 of one IMAGE_BLOCK of `data`, as a manifest lists it.
 * Thread-safe. OpenSSL's (libcrypto): its SHA-NI code hashes 4 KiB blocks
 * about 1.4 times as fast as Nettle's here, and every block of a transfer
 * and of a manifest is hashed.
 */
void image_block_sha256(const void *data, uint8_t out[IMAGE_DIGEST_SIZE]);

/*
 * A hasher: the blocks of one buffer hashed by the calling thread and a
 * helper thread of its own together, so that checking a transfer's blocks
 * uses both cores. They share the blocks a few at a time, so a helper that
 * is not scheduled costs the caller at most the few it took. One caller at
 * a time.
 */
struct image_hasher;

/* 0, -ENOMEM or -errno (no thread). */
int image_hasher_new(struct image_hasher **out);
/* Stops the helper. Accepts NULL; returns NULL. */
struct image_hasher *image_hasher_free(struct image_hasher *h);
/* out[i] = image_block_sha256(data + i * IMAGE_BLOCK) for i < n; returns when all are. */
void image_hasher_run(struct image_hasher *h, const void *data, size_t n,
                      uint8_t (*out)[IMAGE_DIGEST_SIZE]);

/* 64 lower-case hex digits and a NUL. */
void image_digest_hex(const uint8_t digest[IMAGE_DIGEST_SIZE], char out[IMAGE_DIGEST_HEX_SIZE]);
/* Parses exactly 64 hex digits (either case). 0 or -EINVAL. */
int image_digest_parse(const char *hex, uint8_t out[IMAGE_DIGEST_SIZE]);
