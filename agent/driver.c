/*
 * The driver interface: each driver is a table of its operations behind
 * struct driver (driver_libvirt.c, driver_exec.c); this file dispatches.
 */
#include "agent/driver.h"

#include "agent/driver_impl.h"

struct driver *driver_free(struct driver *d) {
        if (d)
                d->ops->free(d);
        return NULL;
}

int driver_activate(struct driver *d, const struct driver_spec *spec, char *err, size_t err_size) {
        return d->ops->activate(d, spec, err, err_size);
}

int driver_deactivate(struct driver *d, const char *snapshot_id, char *err, size_t err_size) {
        return d->ops->deactivate(d, snapshot_id, err, err_size);
}

int driver_list(struct driver *d, struct driver_vm **vms, size_t *n, char *err, size_t err_size) {
        *vms = NULL;
        *n = 0;
        return d->ops->list(d, vms, n, err, err_size);
}
