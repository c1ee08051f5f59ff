/*
 * image/internal.h — what image.c offers manifest.c and nothing else.
 */
#pragma once

#include "image/image.h"

/* One range to read: inside the image, at most IMAGE_RANGE_MAX bytes. */
#define IMAGE_RANGE_MAX (4u << 20)

struct image_range {
        uint64_t offset;
        uint32_t length;
};

/* Called once per range, in order; `data` is borrowed until it returns. */
typedef int (*image_range_fn)(void *userdata, size_t i, const uint8_t *data);

/*
 * Reads `n` ranges (borrowed) with several NBD requests in flight, so the
 * server reads ahead while `cb` works on the one before. Returns 0, cb's
 * negative value, -EINVAL for a range outside the image, -ENOMEM or -errno.
 */
int image_read_ranges(struct image *img, const struct image_range *ranges, size_t n,
                      image_range_fn cb, void *userdata);
