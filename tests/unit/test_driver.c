/*
 * The drivers: libvirt against its built-in test driver (test:///default,
 * no hypervisor; its state lives in this process), exec against small
 * shell scripts that keep their VMs in a file.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent/driver.h"
#include "tap.h"

static char dir[64];
static char config[128];

static void write_file(const char *path, const char *text) {
        FILE *f = fopen(path, "w");
        if (f) {
                fputs(text, f);
                fclose(f);
        }
}

/* The VM of `snapshot` in the list: its index, or -1. */
static int find(const struct driver_vm *vms, size_t n, const char *snapshot) {
        for (size_t i = 0; i < n; i++)
                if (!strcmp(vms[i].snapshot_id, snapshot))
                        return (int)i;
        return -1;
}

TEST(libvirt_activates_lists_and_deactivates_a_datacenters_vms) {
        struct driver *paris = NULL, *tokyo = NULL;
        struct driver_vm *vms = NULL;
        struct driver_spec spec = { "snap-1", 3, 7, "/srv/store/snapshots/snap-1/v3.qcow2",
                                    config };
        char err[256] = "";
        size_t n = 0;
        int i;

        CHECK(driver_libvirt_new("test:///default", "paris", &paris, err, sizeof(err)) == 0);
        CHECK(driver_libvirt_new("test:///default", "tokyo", &tokyo, err, sizeof(err)) == 0);
        if (!paris || !tokyo)
                goto out;
        CHECK(driver_activate(paris, &spec, err, sizeof(err)) == 0);
        CHECK(driver_list(paris, &vms, &n, err, sizeof(err)) == 0);
        /* test:///default's own domain "test" runs too: not ours, not listed */
        CHECK(n == 1);
        i = find(vms, n, "snap-1");
        CHECK(i == 0 && vms[i].version == 3 && vms[i].epoch == 7);
        free(vms);

        /* Another datacenter on the same hypervisor sees none of Paris's VMs. */
        CHECK(driver_list(tokyo, &vms, &n, err, sizeof(err)) == 0 && n == 0);
        free(vms);

        /* Activating again replaces the VM: the new epoch is the one listed. */
        spec.epoch = 8;
        CHECK(driver_activate(paris, &spec, err, sizeof(err)) == 0);
        CHECK(driver_list(paris, &vms, &n, err, sizeof(err)) == 0 && n == 1 && vms[0].epoch == 8);
        free(vms);

        CHECK(driver_deactivate(paris, "snap-1", err, sizeof(err)) == 0);
        CHECK(driver_list(paris, &vms, &n, err, sizeof(err)) == 0 && n == 0);
        free(vms);
        /* Deactivating what does not run is done already. */
        CHECK(driver_deactivate(paris, "snap-1", err, sizeof(err)) == 0);
out:
        driver_free(paris);
        driver_free(tokyo);
}

TEST(libvirt_refuses_what_a_domain_cannot_hold) {
        struct driver *d = NULL;
        struct driver_vm *vms = NULL;
        struct driver_spec spec = { "snap-2", 1, 1, "/srv/a'b.qcow2", config };
        char err[256] = "", bad[160];
        size_t n = 1;

        CHECK(driver_libvirt_new("test:///default", "paris", &d, err, sizeof(err)) == 0);
        if (!d)
                return;
        CHECK(driver_activate(d, &spec, err, sizeof(err)) == -EINVAL);
        CHECK(strstr(err, "a'b") != NULL);
        snprintf(bad, sizeof(bad), "%s/bad.json", dir);
        write_file(bad, "{\"vcpus\": 0}");
        spec.image = "/srv/ok.qcow2";
        spec.config = bad;
        CHECK(driver_activate(d, &spec, err, sizeof(err)) == -EINVAL);
        CHECK(strstr(err, "out of range") != NULL);
        spec.config = "/nonexistent/v1.json";
        CHECK(driver_activate(d, &spec, err, sizeof(err)) == -EINVAL);
        CHECK(driver_list(d, &vms, &n, err, sizeof(err)) == 0 && n == 0);
        free(vms);
        driver_free(d);
        CHECK(driver_libvirt_new("nosuchdriver:///x", "paris", &d, err, sizeof(err)) < 0);
        CHECK(err[0] != '\0');
}

/* A fake platform: VMs are lines "<snapshot> <version> <epoch>" in a file. */
static const char script[] =
        "#!/bin/sh\n"
        "vms=\"$(dirname \"$0\")/vms-$HOMING_DATACENTER\"\n"
        "touch \"$vms\"\n"
        "case $HOMING_ACTION in\n"
        "activate)\n"
        "  [ -f \"$HOMING_CONFIG\" ] || { echo \"no configuration\" >&2; echo "
        "\"$HOMING_CONFIG is missing\" >&2; exit 3; }\n"
        "  echo \"$HOMING_IMAGE\" > \"$(dirname \"$0\")/image\"\n"
        "  grep -v \"^$HOMING_SNAPSHOT \" \"$vms\" > \"$vms.new\"; mv \"$vms.new\" \"$vms\"\n"
        "  echo \"$HOMING_SNAPSHOT $HOMING_VERSION $HOMING_EPOCH\" >> \"$vms\" ;;\n"
        "deactivate)\n"
        "  grep -v \"^$HOMING_SNAPSHOT \" \"$vms\" > \"$vms.new\"; mv \"$vms.new\" \"$vms\" ;;\n"
        "list) cat \"$vms\" ;;\n"
        "esac\n";

TEST(exec_runs_the_operators_command_with_the_vm_in_its_environment) {
        struct driver *d = NULL;
        struct driver_vm *vms = NULL;
        struct driver_spec spec = { "snap-3", 2, 5, "/srv/store/snapshots/snap-3/v2.qcow2",
                                    config };
        char path[128], command[160], image[128], err[256] = "";
        size_t n = 0;
        FILE *f;

        snprintf(path, sizeof(path), "%s/platform", dir);
        write_file(path, script);
        chmod(path, 0755);
        snprintf(command, sizeof(command), "%s --some-flag", path);
        CHECK(driver_exec_new(command, "sydney", 10, &d) == 0);
        CHECK(driver_activate(d, &spec, err, sizeof(err)) == 0);
        CHECK(driver_list(d, &vms, &n, err, sizeof(err)) == 0 && n == 1);
        CHECK(n == 1 && !strcmp(vms[0].snapshot_id, "snap-3") && vms[0].version == 2 &&
              vms[0].epoch == 5);
        free(vms);
        snprintf(path, sizeof(path), "%s/image", dir);
        f = fopen(path, "r");
        CHECK(f && fgets(image, sizeof(image), f));
        if (f)
                fclose(f);
        CHECK(!strncmp(image, spec.image, strlen(spec.image)));

        /* A failure's reason is the last line the command wrote on stderr. */
        spec.config = "/nonexistent.json";
        CHECK(driver_activate(d, &spec, err, sizeof(err)) == -EIO);
        CHECK_STR(err, "/nonexistent.json is missing");

        CHECK(driver_deactivate(d, "snap-3", err, sizeof(err)) == 0);
        CHECK(driver_list(d, &vms, &n, err, sizeof(err)) == 0 && n == 0);
        free(vms);
        driver_free(d);
}

TEST(exec_fails_a_command_that_dies_overruns_or_lists_nonsense) {
        struct driver *d = NULL;
        struct driver_vm *vms = NULL;
        char err[256] = "";
        size_t n = 7;

        CHECK(driver_exec_new("exit 9", "x", 10, &d) == 0);
        CHECK(driver_deactivate(d, "s", err, sizeof(err)) == -EIO);
        CHECK_STR(err, "the command exited with 9");
        driver_free(d);
        CHECK(driver_exec_new("sleep 5", "x", 1, &d) == 0);
        CHECK(driver_deactivate(d, "s", err, sizeof(err)) == -ETIMEDOUT);
        driver_free(d);
        CHECK(driver_exec_new("echo 'snap-1 two 3'", "x", 10, &d) == 0);
        CHECK(driver_list(d, &vms, &n, err, sizeof(err)) == -EBADMSG && !vms && n == 0);
        driver_free(d);
}

static const struct tap_test tests[] = {
        TAP_TEST(libvirt_activates_lists_and_deactivates_a_datacenters_vms),
        TAP_TEST(libvirt_refuses_what_a_domain_cannot_hold),
        TAP_TEST(exec_runs_the_operators_command_with_the_vm_in_its_environment),
        TAP_TEST(exec_fails_a_command_that_dies_overruns_or_lists_nonsense),
};

int main(void) {
        char cmd[96];
        int r;

        snprintf(dir, sizeof(dir), "/tmp/homing-driver-XXXXXX");
        if (!mkdtemp(dir))
                return 1;
        snprintf(config, sizeof(config), "%s/v1.json", dir);
        write_file(config, "{\"vcpus\": 2, \"memory_mib\": 256}");
        r = tap_run(tests, sizeof(tests) / sizeof(tests[0]));
        snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
        return system(cmd) == 0 ? r : 1;
}
