/*
 * The agent's loop. A worker claims the next transfer due at its
 * datacenter, runs it, and claims again; with nothing due it waits a poll
 * interval. Claims come in the API's priority order, so a worker never
 * starts a lower-priority transfer while a higher one waits for this
 * datacenter. A transfer that fails in a way that may pass (the source did
 * not answer) is handed back for a retry with back-off; the API fails it
 * for good after its attempts.
 */
#include "agent/agent.h"

#include <assert.h>
#include <errno.h>
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent/jobs.h"
#include "agent/control.h"
#include "agent/limit.h"
#include "agent/peer.h"
#include "agent/power.h"
#include "agent/transfer.h"
#include "base/config.h"
#include "base/log.h"
#include "base/net.h"
#include "metrics/metrics.h"

#define MAX_SITES 512

struct site {
        char *datacenter;
        char *store;
        char *token;
        char url[TRANSFER_URL_MAX];
        struct bucket *bucket;
        /* the priorities its workers run now (0: idle), to pick who steps aside */
        pthread_mutex_t lock;
        int *running;
};

struct agent {
        const struct config *cfg;
        atomic_bool *stop;
        struct site sites[MAX_SITES];
        struct peer_site peer_sites[MAX_SITES];
        size_t n_sites;
        struct peer *peer;
        struct power *power;                 /* NULL without a driver */
        struct metrics_counter *m_transfers; /* {outcome} */
        struct metrics_counter *m_bytes;     /* {kind} */
        struct metrics_histogram *m_seconds;
        struct metrics_gauge *m_running;
        struct metrics_fn *m_served;
};

struct worker {
        struct agent *agent;
        struct site *site;
        size_t slot; /* this worker's index among its site's */
        char owner[200];
        pthread_t thread;
};

enum { OUTCOME_SUCCEEDED, OUTCOME_FAILED, OUTCOME_RETRIED, OUTCOME_CANCELLED, OUTCOME_PAUSED };
enum { BYTES_WIRE, BYTES_REMOTE, BYTES_LOCAL };

/* ---- settings ---- */

static int add_site(struct agent *a, const char *dc, size_t n_dcs) {
        struct site *s = &a->sites[a->n_sites];
        int r;

        if (a->n_sites == MAX_SITES)
                return -E2BIG;
        s->datacenter = strdup(dc);
        if (n_dcs == 1)
                s->store = strdup(a->cfg->store);
        else if (asprintf(&s->store, "%s/%s", a->cfg->store, dc) < 0)
                s->store = NULL;
        if (!s->datacenter || !s->store)
                return -ENOMEM;
        if (mkdir(s->store, 0750) < 0 && errno != EEXIST) {
                log_error("agent", "cannot make the store %s: %s", s->store, strerror(errno));
                return -errno;
        }
        r = bucket_new((uint64_t)a->cfg->agent_bandwidth, &s->bucket);
        if (r < 0)
                return r;
        s->running = calloc((size_t)a->cfg->agent_concurrency, sizeof(*s->running));
        if (!s->running)
                return -ENOMEM;
        pthread_mutex_init(&s->lock, NULL);
        a->n_sites++;
        return 0;
}

/* Tokens: --agent-token for a single datacenter, or --agent-token-file lines "<dc> <token>". */
static int load_tokens(struct agent *a) {
        FILE *f;
        char line[512];
        unsigned lineno = 0;

        if (a->cfg->agent_token[0] && a->n_sites == 1) {
                a->sites[0].token = strdup(a->cfg->agent_token);
                return a->sites[0].token ? 0 : -ENOMEM;
        }
        if (!a->cfg->agent_token_file[0]) {
                log_error("agent", "no agent token: --agent-token (one datacenter) or "
                                   "--agent-token-file (lines \"<datacenter> <token>\")");
                return -EINVAL;
        }
        f = fopen(a->cfg->agent_token_file, "r");
        if (!f) {
                log_error("agent", "cannot read %s: %s", a->cfg->agent_token_file, strerror(errno));
                return -errno;
        }
        while (fgets(line, sizeof(line), f)) {
                char dc[200], token[300];
                lineno++;
                if (line[0] == '#' || line[strspn(line, " \t\r\n")] == '\0')
                        continue;
                if (sscanf(line, "%199s %299s", dc, token) != 2) {
                        log_error("agent", "%s:%u: expected \"<datacenter> <token>\"",
                                  a->cfg->agent_token_file, lineno);
                        fclose(f);
                        return -EINVAL;
                }
                for (size_t i = 0; i < a->n_sites; i++)
                        if (!strcmp(a->sites[i].datacenter, dc) && !a->sites[i].token)
                                a->sites[i].token = strdup(token);
        }
        fclose(f);
        for (size_t i = 0; i < a->n_sites; i++) {
                if (!a->sites[i].token) {
                        log_error("agent", "%s has no token for datacenter %s",
                                  a->cfg->agent_token_file, a->sites[i].datacenter);
                        return -EINVAL;
                }
        }
        return 0;
}

static int register_metrics(struct agent *a, struct metrics *m) {
        static const char *outcomes[] = { "succeeded", "failed", "retried",
                                          "cancelled", "paused", NULL };
        static const char *kinds[] = { "wire", "remote", "local", NULL };
        static const double seconds[] = { 0.1, 0.5, 1, 2, 5, 10, 30, 60, 300, 1800 };
        int r;

        if ((r = metrics_counter_register(m, "homing_agent_transfers_total",
                                          "Transfers this agent ran, by how they ended.",
                                          (const struct metrics_label[]){ { "outcome", outcomes },
                                                                          { NULL, NULL } },
                                          &a->m_transfers)) < 0 ||
            (r = metrics_counter_register(
                     m, "homing_agent_bytes_total",
                     "Bytes of transfers into this agent: received on the wire, data pulled, "
                     "blocks copied from cached copies here.",
                     (const struct metrics_label[]){ { "kind", kinds }, { NULL, NULL } },
                     &a->m_bytes)) < 0 ||
            (r = metrics_histogram_register(m, "homing_agent_transfer_duration_seconds",
                                            "Transfers from claim to their end.", NULL, seconds,
                                            sizeof(seconds) / sizeof(seconds[0]), &a->m_seconds)) <
                    0 ||
            (r = metrics_gauge_register(m, "homing_agent_transfers_running",
                                        "Transfers this agent is running now.", NULL,
                                        &a->m_running)) < 0)
                log_error("agent", "cannot register the agent's metrics: %s", strerror(-r));
        return r;
}

static void emit_served(void *userdata, struct metrics_emitter *e) {
        struct agent *a = userdata;
        metrics_emit(e, NULL, a->peer ? (double)peer_bytes_sent(a->peer) : 0);
}

/* ---- one job ---- */

static bool hex_digest(const char *hex, uint8_t out[IMAGE_DIGEST_SIZE]) {
        return hex && image_digest_parse(hex, out) == 0;
}

static int job_from_json(json_t *j, struct transfer_job *job) {
        const char *snapshot = json_string_value(json_object_get(j, "snapshot_id"));
        const char *tpl = json_string_value(json_object_get(j, "template_id"));
        const char *source = json_string_value(json_object_get(j, "source_url"));
        const char *tsource = json_string_value(json_object_get(j, "template_source_url"));
        const char *ticket = json_string_value(json_object_get(j, "ticket"));
        json_t *have = json_object_get(j, "have_versions"), *v;
        size_t i;

        memset(job, 0, sizeof(*job));
        job->id = json_integer_value(json_object_get(j, "transfer_id"));
        job->priority = (int)json_integer_value(json_object_get(j, "priority"));
        job->version = json_integer_value(json_object_get(j, "version"));
        json_t *digest = json_object_get(j, "content_sha256");

        if (job->id <= 0 || job->version <= 0 || !snapshot || !tpl || !ticket ||
            (!json_is_null(digest) &&
             !hex_digest(json_string_value(digest), job->content_sha256)) ||
            strlen(snapshot) >= sizeof(job->snapshot_id) ||
            strlen(tpl) >= sizeof(job->template_id) || strlen(ticket) >= sizeof(job->ticket) ||
            (source && strlen(source) >= TRANSFER_URL_MAX) ||
            (tsource && strlen(tsource) >= TRANSFER_URL_MAX))
                return -EBADMSG;
        snprintf(job->snapshot_id, sizeof(job->snapshot_id), "%s", snapshot);
        snprintf(job->template_id, sizeof(job->template_id), "%s", tpl);
        snprintf(job->source_url, sizeof(job->source_url), "%s", source ? source : "");
        snprintf(job->template_source_url, sizeof(job->template_source_url), "%s",
                 tsource ? tsource : "");
        snprintf(job->ticket, sizeof(job->ticket), "%s", ticket);
        job->registered = !json_is_null(digest);
        json_array_foreach(have, i, v) {
                if (job->n_have < sizeof(job->have_versions) / sizeof(job->have_versions[0]))
                        job->have_versions[job->n_have++] = json_integer_value(v);
        }
        return 0;
}

/* Claims one job; 1 and the job, 0 when none is due, <0 when the API did not answer. */
static int claim(struct worker *w, struct control *c, struct transfer_job *job) {
        json_t *body = json_pack("{s:s, s:i}", "owner", w->owner, "lease_s",
                                 (int)w->agent->cfg->agent_lease_s);
        json_t *reply = NULL;
        long status = 0;
        char err[256];
        int r = control_call(c, "POST", "/v1/agent/claim", body, &status, &reply, err, sizeof(err));

        json_decref(body);
        if (r < 0) {
                log_warn("agent", "%s: %s", w->site->datacenter, err);
        } else if (status == 200 && job_from_json(reply, job) == 0) {
                r = 1;
        } else if (status == 200) {
                log_error("agent", "%s: the API's job is malformed", w->site->datacenter);
                r = -EBADMSG;
        } else if (status != 204) {
                const char *detail = json_string_value(json_object_get(reply, "detail"));
                log_warn("agent", "%s: claim answered %ld %s", w->site->datacenter, status,
                         detail ? detail : "");
                r = -EIO;
        }
        json_decref(reply);
        return r;
}

/*
 * A more urgent transfer waits for this datacenter. With an idle worker here,
 * that worker will claim it; with none, the least urgent running transfer
 * steps aside (the last worker of those, when several tie).
 */
static bool should_pause(void *ctx, int priority) {
        struct worker *w = ctx;
        struct site *s = w->site;
        size_t n = (size_t)w->agent->cfg->agent_concurrency;
        bool pause = true;

        pthread_mutex_lock(&s->lock);
        for (size_t i = 0; i < n && pause; i++) {
                if (s->running[i] == 0)
                        pause = false; /* an idle worker: no one needs to step aside */
                else if (i != w->slot &&
                         (s->running[i] > priority || (s->running[i] == priority && i > w->slot)))
                        pause = false; /* someone less urgent, or later, steps aside */
        }
        pthread_mutex_unlock(&s->lock);
        return pause;
}

static void set_running(struct worker *w, int priority) {
        pthread_mutex_lock(&w->site->lock);
        w->site->running[w->slot] = priority;
        pthread_mutex_unlock(&w->site->lock);
}

static void run_job(struct worker *w, struct control *c, const struct transfer_job *job) {
        struct agent *a = w->agent;
        struct transfer_env env = {
                w->site->store, w->site->datacenter,  w->owner,     c, w->site->bucket, a->stop,
                1000,           a->cfg->agent_tls_ca, should_pause, w
        };
        struct transfer_stats stats;
        char err[512], id[32];
        const char *ids[] = {
                "transfer_id",       id,  "snapshot_id", job->snapshot_id, "datacenter_id",
                w->site->datacenter, NULL
        };
        double started = metrics_now();
        int r, outcome;

        snprintf(id, sizeof(id), "%lld", (long long)job->id);
        log_line(LOG_INFO, "agent", ids, "transfer %lld: version %lld of %s from %s",
                 (long long)job->id, (long long)job->version, job->snapshot_id,
                 job->source_url[0] ? job->source_url : "(nowhere)");
        metrics_gauge_add(a->m_running, NULL, 1);
        set_running(w, job->priority > 0 ? job->priority : 3);
        r = transfer_run(&env, job, &stats, err, sizeof(err));
        set_running(w, 0);
        metrics_gauge_add(a->m_running, NULL, -1);
        metrics_histogram_observe(a->m_seconds, NULL, metrics_now() - started);
        metrics_counter_add(a->m_bytes, (size_t[]){ BYTES_WIRE }, stats.bytes_wire);
        metrics_counter_add(a->m_bytes, (size_t[]){ BYTES_REMOTE }, stats.bytes_remote);
        metrics_counter_add(a->m_bytes, (size_t[]){ BYTES_LOCAL }, stats.bytes_local);
        outcome = r == 0                           ? OUTCOME_SUCCEEDED
                  : r == -ECANCELED || r == -EINTR ? OUTCOME_CANCELLED
                  : r == -EBUSY                    ? OUTCOME_PAUSED
                  : r == -EAGAIN                   ? OUTCOME_RETRIED
                                                   : OUTCOME_FAILED;
        metrics_counter_inc(a->m_transfers, (size_t[]){ (size_t)outcome });
        if (r == 0)
                log_line(
                        LOG_INFO, "agent", ids,
                        "transfer %lld succeeded in %.1f s: %llu bytes, %llu pulled (%llu on the "
                        "wire), %llu held here; phases: prepare %.2f s, scan %.2f s, blocks %.2f s, "
                        "verify %.2f s, check %.2f s, commit %.2f s",
                        (long long)job->id, metrics_now() - started,
                        (unsigned long long)stats.bytes_total,
                        (unsigned long long)stats.bytes_remote,
                        (unsigned long long)stats.bytes_wire, (unsigned long long)stats.bytes_local,
                        stats.s_prepare, stats.s_scan, stats.s_blocks, stats.s_verify,
                        stats.s_check, stats.s_commit);
        else if (r == -EINTR)
                log_line(LOG_INFO, "agent", ids,
                         "transfer %lld interrupted; its lease will expire "
                         "and it resumes",
                         (long long)job->id);
        else if (r == -EBUSY)
                log_line(LOG_INFO, "agent", ids,
                         "transfer %lld paused for a more urgent one; it "
                         "resumes from what it wrote",
                         (long long)job->id);
        else if (r == -ECANCELED)
                log_line(LOG_INFO, "agent", ids, "transfer %lld stopped: cancelled or taken over",
                         (long long)job->id);
        else
                log_line(r == -EAGAIN ? LOG_WARN : LOG_ERROR, "agent", ids, "transfer %lld %s: %s",
                         (long long)job->id, r == -EAGAIN ? "will be retried" : "failed", err);
}

static void *worker_main(void *arg) {
        struct worker *w = arg;
        struct agent *a = w->agent;
        struct control *c = NULL;

        if (control_new(a->cfg->api_url, w->site->token, a->cfg->agent_tls_ca, &c) < 0)
                return NULL;
        while (!atomic_load(a->stop)) {
                struct transfer_job job;
                int r = claim(w, c, &job);
                if (r == 1) {
                        run_job(w, c, &job);
                        continue;
                }
                /* Nothing due (or the API away): wait a poll interval, awake to stop. */
                for (long waited = 0; waited < a->cfg->agent_poll_ms && !atomic_load(a->stop);
                     waited += 100)
                        usleep(100 * 1000);
        }
        control_free(c);
        return NULL;
}

/* ---- cached copies ---- */

/* An id that names one folder of a store: no separators, never "." or "..". */
static bool id_is_plain(const char *id) {
        return id && *id && strlen(id) < 128 && !strchr(id, '/') && strcmp(id, ".") &&
               strcmp(id, "..");
}

/* Deletes the files of the copies the API evicted at this site. */
static void evict(struct agent *a, struct site *s, struct control *c) {
        json_t *body = json_object(), *reply = NULL, *item;
        long status = 0;
        char err[256];
        size_t i;

        if (control_call(c, "POST", "/v1/agent/evictions", body, &status, &reply, err,
                         sizeof(err)) < 0 ||
            status != 200) {
                json_decref(body);
                json_decref(reply);
                return; /* next time */
        }
        json_array_foreach(json_object_get(reply, "evicted"), i, item) {
                const char *snapshot = json_string_value(json_object_get(item, "snapshot_id"));
                long long version = json_integer_value(json_object_get(item, "version"));
                static const char *const exts[] = { "qcow2", "manifest", "json" };
                if (!id_is_plain(snapshot) || version <= 0)
                        continue;
                for (size_t e = 0; e < sizeof(exts) / sizeof(exts[0]); e++) {
                        char *path = NULL;
                        if (asprintf(&path, "%s/snapshots/%s/v%lld.%s", s->store, snapshot, version,
                                     exts[e]) >= 0)
                                unlink(path);
                        free(path);
                }
                log_info("agent", "%s: evicted the cached copy of %s version %lld", s->datacenter,
                         snapshot, version);
        }
        json_decref(body);
        json_decref(reply);
}

static void jobs_pass(struct agent *a, struct site *s, struct control *c) {
        jobs_run_pending(s->datacenter, s->store, c);
}

/* A thread that runs `pass` for each site, then waits `interval_ms`, until stopped. */
struct periodic {
        struct agent *agent;
        void (*pass)(struct agent *, struct site *, struct control *);
        long interval_ms;
        pthread_t thread;
        bool started;
};

/*
 * Two of these run: every --agent-evict-s each site asks which of its
 * cached copies are to go; every --agent-poll-ms it claims the disk diffs,
 * file diffs and compositions queued for it, so an operator's job starts
 * within a poll, not an eviction period.
 */
static void *periodic_main(void *arg) {
        struct periodic *p = arg;
        struct agent *a = p->agent;
        struct control **controls = calloc(a->n_sites, sizeof(*controls));

        for (size_t i = 0; controls && i < a->n_sites; i++)
                control_new(a->cfg->api_url, a->sites[i].token, a->cfg->agent_tls_ca, &controls[i]);
        while (controls && !atomic_load(a->stop)) {
                for (size_t i = 0; i < a->n_sites && !atomic_load(a->stop); i++)
                        if (controls[i])
                                p->pass(a, &a->sites[i], controls[i]);
                for (long waited = 0; waited < p->interval_ms && !atomic_load(a->stop);
                     waited += 100)
                        usleep(100 * 1000);
        }
        for (size_t i = 0; controls && i < a->n_sites; i++)
                control_free(controls[i]);
        free(controls);
        return NULL;
}

/* Tells the API where this datacenter's agent answers; retried until it does. */
static int announce(struct agent *a, struct site *s) {
        struct control *c = NULL;
        json_t *body = json_pack("{s:s}", "url", s->url), *reply = NULL;
        long status = 0;
        char err[256];
        int r = control_new(a->cfg->api_url, s->token, a->cfg->agent_tls_ca, &c);

        while (r == 0 && !atomic_load(a->stop)) {
                r = control_call(c, "PUT", "/v1/agent/endpoint", body, &status, &reply, err,
                                 sizeof(err));
                json_decref(reply);
                reply = NULL;
                if (r == 0 && status == 200)
                        break;
                if (r == 0 && (status == 401 || status == 403)) {
                        log_error("agent", "%s: the API refuses this agent token (%ld)",
                                  s->datacenter, status);
                        r = -EPERM;
                        break;
                }
                log_warn("agent", "%s: cannot announce the endpoint yet (%s)", s->datacenter,
                         r < 0 ? err : "the API answered an error");
                r = 0;
                sleep(1);
        }
        json_decref(body);
        control_free(c);
        return r;
}

int agent_run(const struct config *cfg, struct metrics *metrics, atomic_bool *stop) {
        struct agent *a = calloc(1, sizeof(*a));
        struct worker *workers = NULL;
        size_t n_workers = 0;
        char *list = NULL, *save = NULL, base[300], *cert = NULL, *key = NULL;
        size_t n_dcs = 1;
        int r = 0;

        if (!a || !(list = strdup(cfg->datacenter))) {
                free(a);
                return -ENOMEM;
        }
        a->cfg = cfg;
        a->stop = stop;
        if (!cfg->datacenter[0] || !cfg->store[0]) {
                log_error("agent", "--datacenter and --store are required");
                r = -EINVAL;
                goto out;
        }
        for (const char *p = cfg->datacenter; *p; p++)
                n_dcs += *p == ',';
        for (char *dc = strtok_r(list, ",", &save); dc && r == 0; dc = strtok_r(NULL, ",", &save))
                r = add_site(a, dc, n_dcs);
        if (r == 0 && a->n_sites == 0) {
                log_error("agent", "--datacenter names no datacenter");
                r = -EINVAL;
        }
        if (r == 0)
                r = load_tokens(a);
        if (r == 0)
                r = register_metrics(a, metrics);
        if (r == 0)
                r = metrics_counter_fn_labelled(metrics, "homing_agent_peer_bytes_sent_total",
                                                "Bytes of chunk streams this agent sent to peers.",
                                                (const char *[]){ NULL }, emit_served, a,
                                                &a->m_served);
        if (r < 0)
                goto out;
        for (size_t i = 0; i < a->n_sites; i++)
                a->peer_sites[i] = (struct peer_site){ a->sites[i].datacenter, a->sites[i].store,
                                                       a->sites[i].token };
        if (cfg->agent_tls_cert[0] || cfg->agent_tls_key[0]) {
                char err[300];
                if (!cfg->agent_tls_cert[0] || !cfg->agent_tls_key[0]) {
                        log_error(
                                "agent",
                                "HTTPS for peers needs both --agent-tls-cert and --agent-tls-key");
                        r = -EINVAL;
                        goto out;
                }
                if (!(cert = net_read_pem(cfg->agent_tls_cert, err, sizeof(err))) ||
                    !(key = net_read_pem(cfg->agent_tls_key, err, sizeof(err)))) {
                        log_error("agent", "%s", err);
                        r = -EINVAL;
                        goto out;
                }
        }
        {
                struct peer_tls tls = { cert, key, cfg->agent_tls_ca };
                r = peer_start(cfg->agent_listen, cfg->api_url, &tls, a->peer_sites, a->n_sites,
                               cfg->agent_max_streams, &a->peer);
        }
        if (r < 0)
                goto out;
        if (cfg->agent_url[0]) {
                snprintf(base, sizeof(base), "%s", cfg->agent_url);
        } else {
                /* host:port of --agent-listen, with the port it got */
                const char *colon = strrchr(cfg->agent_listen, ':');
                snprintf(base, sizeof(base), "%s://%.*s:%u", cert ? "https" : "http",
                         (int)(colon - cfg->agent_listen), cfg->agent_listen, peer_port(a->peer));
        }
        for (size_t i = 0; i < a->n_sites && r == 0; i++) {
                snprintf(a->sites[i].url, sizeof(a->sites[i].url), "%s/dc/%s", base,
                         a->sites[i].datacenter);
                r = announce(a, &a->sites[i]);
        }
        if (r < 0)
                goto out;
        log_info("agent", "serving %zu datacenters on %s, %ld transfers at a time each", a->n_sites,
                 base, cfg->agent_concurrency);
        {
                struct power_site_config power_sites[MAX_SITES];
                for (size_t i = 0; i < a->n_sites; i++)
                        power_sites[i] =
                                (struct power_site_config){ a->sites[i].datacenter,
                                                            a->sites[i].store, a->sites[i].token };
                r = power_start(cfg, metrics, power_sites, a->n_sites, stop, &a->power);
        }
        if (r < 0)
                goto out;

        n_workers = a->n_sites * (size_t)cfg->agent_concurrency;
        assert(n_workers > 0); /* a datacenter at least, and --agent-concurrency is 1 or more */
        workers = calloc(n_workers, sizeof(*workers));
        if (!workers) {
                r = -ENOMEM;
                goto out;
        }
        for (size_t i = 0; i < n_workers; i++) {
                struct worker *w = &workers[i];
                char host[64] = "";
                w->agent = a;
                w->site = &a->sites[i / (size_t)cfg->agent_concurrency];
                w->slot = i % (size_t)cfg->agent_concurrency;
                gethostname(host, sizeof(host) - 1);
                snprintf(w->owner, sizeof(w->owner), "%s/%d/%s/%zu", host, (int)getpid(),
                         w->site->datacenter, i % (size_t)cfg->agent_concurrency);
                pthread_create(&w->thread, NULL, worker_main, w);
        }
        {
                struct periodic loops[] = {
                        { a, evict, cfg->agent_evict_s * 1000L, 0, false },
                        { a, jobs_pass, cfg->agent_poll_ms, 0, false },
                };
                for (size_t i = 0; i < sizeof(loops) / sizeof(loops[0]); i++)
                        loops[i].started = pthread_create(&loops[i].thread, NULL, periodic_main,
                                                          &loops[i]) == 0;
                for (size_t i = 0; i < n_workers; i++)
                        pthread_join(workers[i].thread, NULL);
                for (size_t i = 0; i < sizeof(loops) / sizeof(loops[0]); i++)
                        if (loops[i].started)
                                pthread_join(loops[i].thread, NULL);
        }
out:
        free(workers);
        a->power = power_stop(a->power); /* *stop is set, or it never started */
        if (a->m_served)
                metrics_fn_detach(a->m_served); /* `a` is about to go */
        a->peer = peer_stop(a->peer);
        for (size_t i = 0; i < a->n_sites; i++) {
                free(a->sites[i].datacenter);
                free(a->sites[i].store);
                free(a->sites[i].token);
                bucket_free(a->sites[i].bucket);
                if (a->sites[i].running)
                        pthread_mutex_destroy(&a->sites[i].lock);
                free(a->sites[i].running);
        }
        free(list);
        free(cert);
        if (key)
                explicit_bzero(key, strlen(key));
        free(key);
        free(a);
        return r;
}
