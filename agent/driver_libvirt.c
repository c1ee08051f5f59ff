/*
 * The libvirt driver: a VM is a libvirt domain named
 * homing-<datacenter>-<snapshot>, defined from the version's configuration
 * (vcpus, memory_mib, domain_type) with the version's qcow2 overlay as its
 * disk. Its description says whose it is ("homing datacenter=D snapshot=S
 * version=N epoch=E"), so the list reads back the version and epoch it was
 * started under, and skips the domains of other datacenters and anyone
 * else's. Deactivating shuts the guest down (ACPI), waits, then pulls the
 * plug if it must, and undefines the domain; the disk stays (a cached copy).
 */
#include <errno.h>
#include <jansson.h>
#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agent/driver_impl.h"

#define SHUTDOWN_WAIT_S 30

struct libvirt_driver {
        struct driver base;
        virConnectPtr conn;
        char datacenter[65];
        char default_type[16]; /* the domain type when the configuration names none */
};

/* libvirt reports through virGetLastErrorMessage(); its default handler would print too. */
static void quiet(void *userdata, virErrorPtr error) {
        (void)userdata;
        (void)error;
}

static int failed(char *err, size_t err_size, const char *what, const char *snapshot) {
        snprintf(err, err_size, "%s %s: %s", what, snapshot, virGetLastErrorMessage());
        return -EIO;
}

static void domain_name(const struct libvirt_driver *d, const char *snapshot, char out[160]) {
        snprintf(out, 160, "homing-%s-%s", d->datacenter, snapshot);
}

/* Text that goes into the XML as it is: no markup characters. */
static bool plain(const char *s) {
        return s && !strpbrk(s, "<>&'\"");
}

static int read_config(const char *path, long long *vcpus, long long *memory_mib, const char **type,
                       json_t **doc, char *err, size_t err_size) {
        json_error_t jerr;
        json_t *v;

        *doc = json_load_file(path, JSON_REJECT_DUPLICATES, &jerr);
        if (!json_is_object(*doc)) {
                snprintf(err, err_size, "the configuration %s is not a JSON object: %s", path,
                         jerr.text);
                json_decref(*doc);
                *doc = NULL;
                return -EINVAL;
        }
        v = json_object_get(*doc, "vcpus");
        *vcpus = json_is_integer(v) ? json_integer_value(v) : 1;
        v = json_object_get(*doc, "memory_mib");
        *memory_mib = json_is_integer(v) ? json_integer_value(v) : 512;
        v = json_object_get(*doc, "domain_type");
        if (json_is_string(v))
                *type = json_string_value(v);
        if (*vcpus < 1 || *vcpus > 4096 || *memory_mib < 1 || *memory_mib > (1LL << 30) ||
            (*type && (strlen(*type) > 15 ||
                       strspn(*type, "abcdefghijklmnopqrstuvwxyz") != strlen(*type)))) {
                snprintf(err, err_size,
                         "the configuration %s: vcpus, memory_mib or domain_type is out of range",
                         path);
                json_decref(*doc);
                *doc = NULL;
                return -EINVAL;
        }
        return 0;
}

/* Stops and forgets the domain of that name, if there is one. */
static int undefine(struct libvirt_driver *d, const char *name, const char *snapshot, char *err,
                    size_t err_size) {
        virDomainPtr dom = virDomainLookupByName(d->conn, name);
        int r = 0;

        if (!dom)
                return 0;
        if (virDomainIsActive(dom) == 1 && virDomainShutdown(dom) == 0) {
                for (int i = 0; i < SHUTDOWN_WAIT_S * 10 && virDomainIsActive(dom) == 1; i++)
                        usleep(100 * 1000);
        }
        if (virDomainIsActive(dom) == 1 && virDomainDestroy(dom) < 0)
                r = failed(err, err_size, "virDomainDestroy", snapshot);
        if (r == 0 && virDomainUndefine(dom) < 0)
                r = failed(err, err_size, "virDomainUndefine", snapshot);
        virDomainFree(dom);
        return r;
}

static int lv_activate(struct driver *base, const struct driver_spec *spec, char *err,
                       size_t err_size) {
        struct libvirt_driver *d = (struct libvirt_driver *)base;
        long long vcpus, memory_mib;
        const char *type = NULL;
        char name[160], *xml = NULL;
        json_t *config = NULL;
        virDomainPtr dom = NULL;
        int r;

        if (!plain(spec->image) || !plain(spec->snapshot_id)) {
                snprintf(err, err_size,
                         "the image path %s has characters a domain's XML cannot "
                         "hold as they are",
                         spec->image);
                return -EINVAL;
        }
        r = read_config(spec->config, &vcpus, &memory_mib, &type, &config, err, err_size);
        if (r < 0)
                return r;
        domain_name(d, spec->snapshot_id, name);
        r = undefine(d, name, spec->snapshot_id, err, err_size);
        if (r == 0 &&
            asprintf(&xml,
                     "<domain type='%s'><name>%s</name>"
                     "<description>homing datacenter=%s snapshot=%s version=%lld epoch=%lld"
                     "</description>"
                     "<memory unit='MiB'>%lld</memory><vcpu>%lld</vcpu>"
                     "<os><type>hvm</type></os><devices>"
                     "<disk type='file' device='disk'><driver name='qemu' type='qcow2'/>"
                     "<source file='%s'/><target dev='vda' bus='virtio'/></disk>"
                     "</devices></domain>",
                     type ? type : d->default_type, name, d->datacenter, spec->snapshot_id,
                     (long long)spec->version, (long long)spec->epoch, memory_mib, vcpus,
                     spec->image) < 0)
                r = -ENOMEM;
        if (r == 0 && !(dom = virDomainDefineXML(d->conn, xml)))
                r = failed(err, err_size, "virDomainDefineXML", spec->snapshot_id);
        if (r == 0 && virDomainCreate(dom) < 0) {
                r = failed(err, err_size, "virDomainCreate", spec->snapshot_id);
                virDomainUndefine(dom); /* nothing half-made stays */
        }
        if (dom)
                virDomainFree(dom);
        free(xml);
        json_decref(config);
        return r;
}

static int lv_deactivate(struct driver *base, const char *snapshot, char *err, size_t err_size) {
        struct libvirt_driver *d = (struct libvirt_driver *)base;
        char name[160];

        domain_name(d, snapshot, name);
        return undefine(d, name, snapshot, err, err_size);
}

static int lv_list(struct driver *base, struct driver_vm **vms, size_t *n, char *err,
                   size_t err_size) {
        struct libvirt_driver *d = (struct libvirt_driver *)base;
        virDomainPtr *doms = NULL;
        int count = virConnectListAllDomains(d->conn, &doms, VIR_CONNECT_LIST_DOMAINS_ACTIVE);

        if (count < 0)
                return failed(err, err_size, "virConnectListAllDomains", "here");
        *vms = calloc((size_t)count + 1, sizeof(**vms));
        for (int i = 0; i < count; i++) {
                char *text =
                        virDomainGetMetadata(doms[i], VIR_DOMAIN_METADATA_DESCRIPTION, NULL, 0);
                char dc[65], snapshot[65];
                long long version, epoch;
                if (*vms && text &&
                    sscanf(text, "homing datacenter=%64s snapshot=%64s version=%lld epoch=%lld", dc,
                           snapshot, &version, &epoch) == 4 &&
                    !strcmp(dc, d->datacenter)) {
                        struct driver_vm *vm = &(*vms)[(*n)++];
                        snprintf(vm->snapshot_id, sizeof(vm->snapshot_id), "%s", snapshot);
                        vm->version = version;
                        vm->epoch = epoch;
                }
                free(text);
                virDomainFree(doms[i]);
        }
        free(doms);
        return *vms ? 0 : -ENOMEM;
}

static void lv_free(struct driver *base) {
        struct libvirt_driver *d = (struct libvirt_driver *)base;

        if (d->conn)
                virConnectClose(d->conn);
        free(d);
}

static const struct driver_ops libvirt_ops = { lv_free, lv_activate, lv_deactivate, lv_list };

int driver_libvirt_new(const char *uri, const char *datacenter, struct driver **out, char *err,
                       size_t err_size) {
        struct libvirt_driver *d = calloc(1, sizeof(*d));
        const char *type;

        if (!d)
                return -ENOMEM;
        d->base.ops = &libvirt_ops;
        snprintf(d->datacenter, sizeof(d->datacenter), "%s", datacenter);
        virSetErrorFunc(NULL, quiet);
        d->conn = virConnectOpen(uri);
        if (!d->conn) {
                snprintf(err, err_size, "cannot connect to libvirt at %s: %s", uri,
                         virGetLastErrorMessage());
                free(d);
                return -EIO;
        }
        /* libvirt's test driver runs domains of type "test" only; a hypervisor, kvm. */
        type = virConnectGetType(d->conn);
        snprintf(d->default_type, sizeof(d->default_type), "%s",
                 type && !strcmp(type, "TEST") ? "test" : "kvm");
        *out = &d->base;
        return 0;
}
