/*
 * The agent's VMs, reconciled with what should run. One thread looks at
 * every datacenter the agent serves in turn:
 *
 *  1. GET /v1/agent/vms: the VMs that should run here (active here, power
 *     on; each with its version and the snapshot's epoch) and those the
 *     records say run here. No answer: nothing changes (a VM is never
 *     powered off because the API is away; the fence keeps the others off).
 *  2. The driver's list. First, every VM that runs and should not — or runs
 *     another version or an older epoch — is powered off and undefined and
 *     reported powered_off (an agent back from an outage demotes what is no
 *     longer active here; its disk stays, a cached copy). A record that
 *     says powered_on for a VM that does not run is set right the same way.
 *  3. Then every VM that should run and does not is powered on, unless
 *     another datacenter still runs it (blocked_by: wait), and reported
 *     powered_on under its epoch. When the API refuses (409: stale epoch,
 *     moved, powered on elsewhere) it is powered off again at once. A VM
 *     that failed to start is reported failed and tried again after a
 *     while, not on every pass.
 *  4. A failover test's throwaway VMs (`tests`, named fotest-<id>): each
 *     runs on an overlay of the replica's copy under failover-tests/ in the
 *     store, with no epoch, reported to the test's own route; one no longer
 *     listed (the test is cleaned up) is powered off, its overlay deleted.
 */
#include "agent/power.h"

#include <errno.h>
#include <jansson.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent/control.h"
#include "agent/driver.h"
#include "base/config.h"
#include "base/log.h"
#include "image/image.h"
#include "metrics/metrics.h"

#define RETRY_FAILED_S 60.0
#define MAX_FAILURES 256

/* A start that failed: not tried again before `retry_at`. */
struct failure {
        char snapshot_id[65];
        int64_t epoch;
        double retry_at;
};

struct site {
        const char *datacenter;
        const char *store;
        struct driver *driver;
        struct control *control;
        struct failure failures[MAX_FAILURES];
        size_t n_failures;
        /* what the driver listed last, for the metric (read by the metrics thread) */
        pthread_mutex_t lock;
        struct driver_vm *running;
        size_t n_running;
};

struct power {
        const struct config *cfg;
        atomic_bool *stop;
        struct site *sites;
        size_t n_sites;
        pthread_t thread;
        bool started;
        struct metrics_counter *m_actions; /* {action, outcome} */
        struct metrics_fn *m_vms;
};

enum { ACTION_POWER_ON, ACTION_POWER_OFF };
enum { OUTCOME_OK, OUTCOME_FAILED, OUTCOME_REFUSED };

/* What should run here, from the API's answer. */
struct wanted {
        const char *snapshot_id;
        int64_t version, epoch;
        const char *blocked_by; /* NULL: free to power on */
};

/* A failover test's throwaway VM that should run here (its name: fotest-<id>). */
struct test_vm {
        long long id;
        const char *name;
        const char *snapshot_id;
        int64_t version;
};

#define TEST_PREFIX "fotest-"

static bool id_is_plain(const char *id) {
        return id && *id && strlen(id) < 65 && !strchr(id, '/') && strcmp(id, ".") &&
               strcmp(id, "..");
}

static double now_s(void) {
        return metrics_now();
}

static void count(struct power *p, int action, int outcome) {
        metrics_counter_inc(p->m_actions, (size_t[]){ (size_t)action, (size_t)outcome });
}

/*
 * Reports a power record. Returns the HTTP status (201 recorded, 409
 * refused), or <0 when the API did not answer; `detail` gets a problem's.
 */
static int report(struct site *s, const char *snapshot, int64_t epoch, const char *state,
                  const char *reason, char *detail, size_t detail_size) {
        json_t *body = json_pack("{s:I, s:s}", "epoch", (json_int_t)epoch, "state", state);
        json_t *reply = NULL;
        char path[160], err[256];
        long status = 0;
        int r;

        if (reason)
                json_object_set_new(body, "reason", json_sprintf("%.256s", reason));
        snprintf(path, sizeof(path), "/v1/agent/vms/%s/power", snapshot);
        r = control_call(s->control, "POST", path, body, &status, &reply, err, sizeof(err));
        json_decref(body);
        if (r < 0) {
                log_warn("power", "%s: reporting %s %s: %s", s->datacenter, snapshot, state, err);
        } else {
                const char *d = json_string_value(json_object_get(reply, "detail"));
                snprintf(detail, detail_size, "%s", d ? d : "");
                if (status != 201 && status != 409)
                        log_warn("power", "%s: reporting %s %s answered %ld %s", s->datacenter,
                                 snapshot, state, status, d ? d : "");
                r = (int)status;
        }
        json_decref(reply);
        return r;
}

/* Powers the VM off and says so; false when the driver could not. */
static bool power_off(struct power *p, struct site *s, const char *snapshot, int64_t epoch,
                      const char *why) {
        const char *ids[] = { "snapshot_id", snapshot, "datacenter_id", s->datacenter, NULL };
        char err[512] = "", detail[256];

        if (driver_deactivate(s->driver, snapshot, err, sizeof(err)) < 0) {
                log_line(LOG_ERROR, "power", ids, "cannot power off %s: %s", snapshot, err);
                count(p, ACTION_POWER_OFF, OUTCOME_FAILED);
                return false;
        }
        log_line(LOG_INFO, "power", ids, "powered off %s (epoch %lld): %s", snapshot,
                 (long long)epoch, why);
        count(p, ACTION_POWER_OFF, OUTCOME_OK);
        if (epoch >= 1)
                report(s, snapshot, epoch, "powered_off", why, detail, sizeof(detail));
        return true;
}

/* Says a running VM runs under `epoch`; a refusal powers it off. */
static void confirm(struct power *p, struct site *s, const char *snapshot, int64_t epoch) {
        const char *ids[] = { "snapshot_id", snapshot, "datacenter_id", s->datacenter, NULL };
        char detail[256] = "", why[320];
        int status = report(s, snapshot, epoch, "powered_on", NULL, detail, sizeof(detail));

        if (status == 201) {
                log_line(LOG_INFO, "power", ids, "powered on %s under epoch %lld", snapshot,
                         (long long)epoch);
                count(p, ACTION_POWER_ON, OUTCOME_OK);
        } else if (status == 409) {
                log_line(LOG_WARN, "power", ids, "the API refused %s under epoch %lld: %s",
                         snapshot, (long long)epoch, detail);
                count(p, ACTION_POWER_ON, OUTCOME_REFUSED);
                snprintf(why, sizeof(why), "refused: %.300s", detail);
                power_off(p, s, snapshot, epoch, why);
        }
        /* no answer: it runs; the next pass reports it again */
}

static struct failure *failure_of(struct site *s, const char *snapshot, int64_t epoch) {
        for (size_t i = 0; i < s->n_failures; i++)
                if (!strcmp(s->failures[i].snapshot_id, snapshot) && s->failures[i].epoch == epoch)
                        return &s->failures[i];
        return NULL;
}

static void power_on(struct power *p, struct site *s, const struct wanted *w) {
        const char *ids[] = { "snapshot_id", w->snapshot_id, "datacenter_id", s->datacenter, NULL };
        char image[1024], config[1024], err[512] = "", detail[256];
        struct driver_spec spec = { w->snapshot_id, w->version, w->epoch, image, config };
        struct failure *f = failure_of(s, w->snapshot_id, w->epoch);

        if (f && now_s() < f->retry_at)
                return;
        snprintf(image, sizeof(image), "%s/snapshots/%s/v%lld.qcow2", s->store, w->snapshot_id,
                 (long long)w->version);
        snprintf(config, sizeof(config), "%s/snapshots/%s/v%lld.json", s->store, w->snapshot_id,
                 (long long)w->version);
        if (access(image, R_OK) < 0)
                snprintf(err, sizeof(err), "no copy of version %lld here (%.400s)",
                         (long long)w->version, image);
        else if (driver_activate(s->driver, &spec, err, sizeof(err)) == 0)
                err[0] = '\0';
        else if (!err[0])
                snprintf(err, sizeof(err), "the driver failed");
        if (err[0]) {
                log_line(LOG_ERROR, "power", ids, "cannot power on %s: %s", w->snapshot_id, err);
                count(p, ACTION_POWER_ON, OUTCOME_FAILED);
                if (!f && s->n_failures < MAX_FAILURES) {
                        f = &s->failures[s->n_failures++];
                        snprintf(f->snapshot_id, sizeof(f->snapshot_id), "%s", w->snapshot_id);
                        f->epoch = w->epoch;
                }
                if (f)
                        f->retry_at = now_s() + RETRY_FAILED_S;
                report(s, w->snapshot_id, w->epoch, "failed", err, detail, sizeof(detail));
                return;
        }
        if (f)
                *f = s->failures[--s->n_failures];
        confirm(p, s, w->snapshot_id, w->epoch);
}

/* ---- a failover test's throwaway VMs: isolated, no epoch, no fence ---- */

static int test_report(struct site *s, long long id, const char *state, const char *reason) {
        json_t *body = json_pack("{s:s}", "state", state), *reply = NULL;
        char path[96], err[256];
        long status = 0;
        int r;

        if (reason)
                json_object_set_new(body, "reason", json_sprintf("%.256s", reason));
        snprintf(path, sizeof(path), "/v1/agent/failover-tests/vms/%lld", id);
        r = control_call(s->control, "POST", path, body, &status, &reply, err, sizeof(err));
        json_decref(body);
        json_decref(reply);
        if (r < 0 || status != 200)
                log_warn("power", "%s: reporting test VM %lld %s: %s", s->datacenter, id, state,
                         r < 0 ? err : "the API answered an error");
        return r < 0 ? r : (int)status;
}

/* The throwaway disk: an overlay of the replica's copy, so the real one is never written. */
static void test_disk(const struct site *s, const char *name, char out[1024]) {
        snprintf(out, 1024, "%s/failover-tests/%s.qcow2", s->store, name);
}

static void test_on(struct power *p, struct site *s, const struct test_vm *t) {
        const char *ids[] = { "snapshot_id", t->snapshot_id, "datacenter_id", s->datacenter, NULL };
        char base[1024], disk[1024], dir[1024], config[1024], err[512] = "";
        struct driver_spec spec = { t->name, t->version, 0, disk, config };
        int r;

        snprintf(base, sizeof(base), "%s/snapshots/%s/v%lld.qcow2", s->store, t->snapshot_id,
                 (long long)t->version);
        snprintf(config, sizeof(config), "%s/snapshots/%s/v%lld.json", s->store, t->snapshot_id,
                 (long long)t->version);
        snprintf(dir, sizeof(dir), "%s/failover-tests", s->store);
        test_disk(s, t->name, disk);
        if (mkdir(dir, 0750) < 0 && errno != EEXIST)
                snprintf(err, sizeof(err), "cannot make %.400s: %s", dir, strerror(errno));
        else if (access(disk, F_OK) < 0 && (r = image_create_overlay(base, disk)) < 0)
                snprintf(err, sizeof(err), "cannot make a throwaway overlay of %.400s: %s", base,
                         strerror(-r));
        else if (driver_activate(s->driver, &spec, err, sizeof(err)) == 0)
                err[0] = '\0';
        else if (!err[0])
                snprintf(err, sizeof(err), "the driver failed");
        if (err[0]) {
                log_line(LOG_ERROR, "power", ids, "cannot start test VM %s of %s: %s", t->name,
                         t->snapshot_id, err);
                count(p, ACTION_POWER_ON, OUTCOME_FAILED);
                unlink(disk);
                test_report(s, t->id, "failed", err); /* not listed again: no retry */
                return;
        }
        log_line(LOG_INFO, "power", ids, "started test VM %s of %s version %lld", t->name,
                 t->snapshot_id, (long long)t->version);
        count(p, ACTION_POWER_ON, OUTCOME_OK);
        test_report(s, t->id, "powered_on", NULL);
}

static void test_off(struct power *p, struct site *s, const char *name) {
        char disk[1024], err[512] = "";

        if (driver_deactivate(s->driver, name, err, sizeof(err)) < 0) {
                log_error("power", "%s: cannot power test VM %s off: %s", s->datacenter, name, err);
                count(p, ACTION_POWER_OFF, OUTCOME_FAILED);
                return;
        }
        test_disk(s, name, disk);
        unlink(disk);
        log_info("power", "%s: test VM %s powered off and its overlay deleted", s->datacenter,
                 name);
        count(p, ACTION_POWER_OFF, OUTCOME_OK);
        test_report(s, strtoll(name + strlen(TEST_PREFIX), NULL, 10), "powered_off",
                    "the failover test is cleaned up");
}

static const struct test_vm *find_test(const struct test_vm *t, size_t n, const char *name) {
        for (size_t i = 0; i < n; i++)
                if (!strcmp(t[i].name, name))
                        return &t[i];
        return NULL;
}

static const struct wanted *find_wanted(const struct wanted *w, size_t n, const char *snapshot) {
        for (size_t i = 0; i < n; i++)
                if (!strcmp(w[i].snapshot_id, snapshot))
                        return &w[i];
        return NULL;
}

static const struct driver_vm *find_running(const struct driver_vm *vms, size_t n,
                                            const char *snapshot) {
        for (size_t i = 0; i < n; i++)
                if (!strcmp(vms[i].snapshot_id, snapshot))
                        return &vms[i];
        return NULL;
}

/* The epoch the records say the VM runs under here, or 0. */
static int64_t recorded_on(json_t *powered_on, const char *snapshot) {
        size_t i;
        json_t *item;

        json_array_foreach(powered_on, i, item) {
                const char *id = json_string_value(json_object_get(item, "snapshot_id"));
                if (id && !strcmp(id, snapshot))
                        return json_integer_value(json_object_get(item, "epoch"));
        }
        return 0;
}

static void keep_list(struct site *s, struct driver_vm *vms, size_t n) {
        pthread_mutex_lock(&s->lock);
        free(s->running);
        s->running = vms;
        s->n_running = n;
        pthread_mutex_unlock(&s->lock);
}

static void reconcile(struct power *p, struct site *s) {
        json_t *answer = NULL, *vms_json, *powered_on, *tests_json, *item;
        struct driver_vm *vms = NULL;
        struct wanted *wanted = NULL;
        struct test_vm *tests = NULL;
        size_t n_vms = 0, n_wanted = 0, n_tests = 0, i;
        char err[512];
        long status = 0;

        if (control_call(s->control, "GET", "/v1/agent/vms", NULL, &status, &answer, err,
                         sizeof(err)) < 0 ||
            status != 200) {
                log_warn("power", "%s: cannot ask which VMs should run: %s", s->datacenter,
                         status ? "the API answered an error" : err);
                goto out;
        }
        vms_json = json_object_get(answer, "vms");
        powered_on = json_object_get(answer, "powered_on");
        wanted = calloc(json_array_size(vms_json) + 1, sizeof(*wanted));
        if (!wanted)
                goto out;
        json_array_foreach(vms_json, i, item) {
                struct wanted *w = &wanted[n_wanted];
                w->snapshot_id = json_string_value(json_object_get(item, "snapshot_id"));
                w->version = json_integer_value(json_object_get(item, "version"));
                w->epoch = json_integer_value(json_object_get(item, "epoch"));
                w->blocked_by = json_string_value(json_object_get(item, "blocked_by"));
                if (id_is_plain(w->snapshot_id) && w->version >= 1 && w->epoch >= 1)
                        n_wanted++;
        }
        tests_json = json_object_get(answer, "tests");
        tests = calloc(json_array_size(tests_json) + 1, sizeof(*tests));
        if (!tests)
                goto out;
        json_array_foreach(tests_json, i, item) {
                struct test_vm *t = &tests[n_tests];
                t->id = json_integer_value(json_object_get(item, "id"));
                t->name = json_string_value(json_object_get(item, "name"));
                t->snapshot_id = json_string_value(json_object_get(item, "snapshot_id"));
                t->version = json_integer_value(json_object_get(item, "version"));
                if (id_is_plain(t->name) && !strncmp(t->name, TEST_PREFIX, strlen(TEST_PREFIX)) &&
                    id_is_plain(t->snapshot_id) && t->version >= 1)
                        n_tests++;
        }
        if (driver_list(s->driver, &vms, &n_vms, err, sizeof(err)) < 0) {
                log_error("power", "%s: the driver cannot list its VMs: %s", s->datacenter, err);
                goto out;
        }

        /* Off first: what runs here and should not, or not like this. */
        for (i = 0; i < n_vms; i++) {
                const struct wanted *w = find_wanted(wanted, n_wanted, vms[i].snapshot_id);
                if (!strncmp(vms[i].snapshot_id, TEST_PREFIX, strlen(TEST_PREFIX))) {
                        if (!find_test(tests, n_tests, vms[i].snapshot_id))
                                test_off(p, s, vms[i].snapshot_id);
                } else if (!w)
                        power_off(p, s, vms[i].snapshot_id, vms[i].epoch,
                                  "not to run here (moved away, or its power is off)");
                else if (w->version != vms[i].version || w->epoch != vms[i].epoch)
                        power_off(p, s, vms[i].snapshot_id, vms[i].epoch,
                                  "runs another version or epoch than the current one");
                else if (recorded_on(powered_on, w->snapshot_id) != w->epoch)
                        confirm(p, s, w->snapshot_id, w->epoch); /* a report that was lost */
        }
        /* Records of VMs that do not run here (any more) are set right. */
        json_array_foreach(powered_on, i, item) {
                const char *snapshot = json_string_value(json_object_get(item, "snapshot_id"));
                int64_t epoch = json_integer_value(json_object_get(item, "epoch"));
                char detail[256];
                if (snapshot && !find_running(vms, n_vms, snapshot))
                        report(s, snapshot, epoch, "powered_off", "not running here", detail,
                               sizeof(detail));
        }
        free(vms);
        vms = NULL;
        n_vms = 0;
        if (driver_list(s->driver, &vms, &n_vms, err, sizeof(err)) < 0)
                goto out;

        /* Then on: what should run and does not, unless it still runs elsewhere. */
        for (i = 0; i < n_wanted && !atomic_load(p->stop); i++) {
                if (find_running(vms, n_vms, wanted[i].snapshot_id))
                        continue;
                if (wanted[i].blocked_by) {
                        log_debug("power", "%s: %s waits for %s to power it off", s->datacenter,
                                  wanted[i].snapshot_id, wanted[i].blocked_by);
                        continue;
                }
                power_on(p, s, &wanted[i]);
        }
        /* And a failover test's throwaway VMs, after the real ones. */
        for (i = 0; i < n_tests && !atomic_load(p->stop); i++)
                if (!find_running(vms, n_vms, tests[i].name))
                        test_on(p, s, &tests[i]);
        free(vms);
        vms = NULL;
        n_vms = 0;
        if (driver_list(s->driver, &vms, &n_vms, err, sizeof(err)) == 0) {
                keep_list(s, vms, n_vms);
                vms = NULL;
        }
out:
        free(vms);
        free(wanted);
        free(tests);
        json_decref(answer);
}

static void *loop(void *arg) {
        struct power *p = arg;

        while (!atomic_load(p->stop)) {
                for (size_t i = 0; i < p->n_sites && !atomic_load(p->stop); i++)
                        reconcile(p, &p->sites[i]);
                for (long waited = 0; waited < p->cfg->agent_reconcile_ms && !atomic_load(p->stop);
                     waited += 50)
                        usleep(50 * 1000);
        }
        return NULL;
}

/* homing_agent_vm{datacenter, snapshot, version, epoch} 1 for each VM the driver listed last. */
static void emit_vms(void *userdata, struct metrics_emitter *e) {
        struct power *p = userdata;

        for (size_t i = 0; i < p->n_sites; i++) {
                struct site *s = &p->sites[i];
                pthread_mutex_lock(&s->lock);
                for (size_t j = 0; j < s->n_running; j++) {
                        char version[24], epoch[24];
                        snprintf(version, sizeof(version), "%lld",
                                 (long long)s->running[j].version);
                        snprintf(epoch, sizeof(epoch), "%lld", (long long)s->running[j].epoch);
                        metrics_emit(e,
                                     (const char *const[]){ s->datacenter,
                                                            s->running[j].snapshot_id, version,
                                                            epoch },
                                     1);
                }
                pthread_mutex_unlock(&s->lock);
        }
}

static int register_metrics(struct power *p, struct metrics *m) {
        static const char *actions[] = { "power_on", "power_off", NULL };
        static const char *outcomes[] = { "ok", "failed", "refused", NULL };
        int r = metrics_counter_register(
                m, "homing_agent_power_actions_total",
                "VMs this agent powered on and off, by outcome (refused: the API's fence said no, "
                "and the VM was powered off again).",
                (const struct metrics_label[]){
                        { "action", actions }, { "outcome", outcomes }, { NULL, NULL } },
                &p->m_actions);

        if (r == 0)
                r = metrics_gauge_fn_labelled(
                        m, "homing_agent_vm",
                        "1 for each VM the driver runs for a datacenter this agent serves, with "
                        "the version and epoch it was started under.",
                        (const char *[]){ "datacenter", "snapshot", "version", "epoch", NULL },
                        emit_vms, p, &p->m_vms);
        if (r < 0)
                log_error("power", "cannot register the power metrics: %s", strerror(-r));
        return r;
}

int power_start(const struct config *cfg, struct metrics *m, const struct power_site_config *sites,
                size_t n_sites, atomic_bool *stop, struct power **out) {
        struct power *p;
        int r = 0;

        *out = NULL;
        if (!strcmp(cfg->driver, "none"))
                return 0;
        if (strcmp(cfg->driver, "libvirt") != 0 && strcmp(cfg->driver, "exec") != 0) {
                log_error("power", "--driver is none, libvirt or exec, not %s", cfg->driver);
                return -EINVAL;
        }
        if (!strcmp(cfg->driver, "exec") && !cfg->driver_command[0]) {
                log_error("power", "--driver exec needs --driver-command");
                return -EINVAL;
        }
        p = calloc(1, sizeof(*p));
        if (!p || !(p->sites = calloc(n_sites, sizeof(*p->sites)))) {
                free(p);
                return -ENOMEM;
        }
        p->cfg = cfg;
        p->stop = stop;
        for (size_t i = 0; i < n_sites && r == 0; i++) {
                struct site *s = &p->sites[i];
                char err[512];
                s->datacenter = sites[i].datacenter;
                s->store = sites[i].store;
                pthread_mutex_init(&s->lock, NULL);
                p->n_sites++;
                if (!strcmp(cfg->driver, "libvirt")) {
                        r = driver_libvirt_new(cfg->libvirt_uri, s->datacenter, &s->driver, err,
                                               sizeof(err));
                        if (r < 0)
                                log_error("power", "%s: %s", s->datacenter, err);
                } else {
                        r = driver_exec_new(cfg->driver_command, s->datacenter,
                                            cfg->driver_timeout_s, &s->driver);
                }
                if (r == 0)
                        r = control_new(cfg->api_url, sites[i].token, cfg->agent_tls_ca,
                                        &s->control);
        }
        if (r == 0)
                r = register_metrics(p, m);
        if (r == 0) {
                r = -pthread_create(&p->thread, NULL, loop, p);
                p->started = r == 0;
        }
        if (r < 0) {
                power_stop(p);
                return r;
        }
        log_info("power", "powering VMs on and off with the %s driver for %zu datacenters",
                 cfg->driver, n_sites);
        *out = p;
        return 0;
}

struct power *power_stop(struct power *p) {
        if (!p)
                return NULL;
        if (p->started)
                pthread_join(p->thread, NULL);
        if (p->m_vms)
                metrics_fn_detach(p->m_vms); /* `p` is about to go */
        for (size_t i = 0; i < p->n_sites; i++) {
                driver_free(p->sites[i].driver);
                control_free(p->sites[i].control);
                free(p->sites[i].running);
                pthread_mutex_destroy(&p->sites[i].lock);
        }
        free(p->sites);
        free(p);
        return NULL;
}
