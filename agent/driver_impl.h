/*
 * What a driver implements (driver.c dispatches to it): a table of
 * operations at the head of its own state. Private to agent/driver*.c.
 */
#pragma once

#include "agent/driver.h"

struct driver_ops {
        void (*free)(struct driver *d);
        int (*activate)(struct driver *d, const struct driver_spec *spec, char *err,
                        size_t err_size);
        int (*deactivate)(struct driver *d, const char *snapshot_id, char *err, size_t err_size);
        int (*list)(struct driver *d, struct driver_vm **vms, size_t *n, char *err,
                    size_t err_size);
};

/* The head of every driver's state. */
struct driver {
        const struct driver_ops *ops;
};
