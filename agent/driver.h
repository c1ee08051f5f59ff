/*
 * driver — what "activate and power on" and "deactivate" mean at a
 * datacenter. Two drivers: libvirt (its C API, a connection URI per
 * datacenter) and exec (an operator's command, for platforms without
 * libvirt). A VM is named by its snapshot; the driver keeps the version
 * and epoch it was started under with it, and lists only the VMs of its
 * own datacenter, so several datacenters may share one hypervisor.
 */
#pragma once

#include <stddef.h>
#include <stdint.h>

struct driver;

/* A VM that runs, as the driver lists it. */
struct driver_vm {
        char snapshot_id[65];
        int64_t version;
        int64_t epoch;
};

/* What to run: the version's overlay as the disk, its configuration (a JSON file). */
struct driver_spec {
        const char *snapshot_id;
        int64_t version;
        int64_t epoch;
        const char *image;  /* <store>/snapshots/<id>/v<N>.qcow2 */
        const char *config; /* <store>/snapshots/<id>/v<N>.json */
};

/*
 * libvirt at `uri` ("qemu:///system", "test:///default", ...) for
 * `datacenter`'s VMs. Returns 0, or <0 with err filled (cannot connect).
 */
int driver_libvirt_new(const char *uri, const char *datacenter, struct driver **out, char *err,
                       size_t err_size) __attribute__((warn_unused_result));
/*
 * `command` run by /bin/sh -c with HOMING_ACTION (activate, deactivate,
 * list), HOMING_SNAPSHOT, HOMING_VERSION, HOMING_EPOCH, HOMING_IMAGE,
 * HOMING_CONFIG and HOMING_DATACENTER in its environment; exit status 0 is
 * success, else its stderr's last line says why. `list` prints one
 * "<snapshot> <version> <epoch>" line per VM that runs. A command that
 * takes longer than `timeout_s` is killed and fails.
 */
int driver_exec_new(const char *command, const char *datacenter, long timeout_s,
                    struct driver **out) __attribute__((warn_unused_result));
struct driver *driver_free(struct driver *d);

/* Defines and powers on the VM (replacing one of the snapshot's that is defined). 0 or <0, err. */
int driver_activate(struct driver *d, const struct driver_spec *spec, char *err, size_t err_size)
        __attribute__((warn_unused_result));
/* Shuts the snapshot's VM down and undefines it; 0 also when there was none. */
int driver_deactivate(struct driver *d, const char *snapshot_id, char *err, size_t err_size)
        __attribute__((warn_unused_result));
/* The VMs of this datacenter that run: *vms (the caller frees it) and *n. */
int driver_list(struct driver *d, struct driver_vm **vms, size_t *n, char *err, size_t err_size)
        __attribute__((warn_unused_result));
