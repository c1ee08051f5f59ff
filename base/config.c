/*
 * The configuration table. Adding a setting is one field in struct config and
 * one row below; parsing, bounds, the file, the environment, --help and
 * `homing config` follow from it.
 */
#include "base/config.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/log.h"

/* A list is a string of lines: every value given is appended, in the order read. */
enum setting_type { SETTING_STRING, SETTING_LONG, SETTING_DOUBLE, SETTING_LIST, SETTING_BOOL };

struct setting {
        const char *name; /* flag name; the variable is HOMING_ + upper-case */
        enum setting_type type;
        size_t offset;
        const char *fallback;
        double min, max; /* bounds for numbers */
        const char *help;
};

#define FIELD(f) offsetof(struct config, f)

static const struct setting settings[] = {
        { "pg-dsn", SETTING_STRING, FIELD(pg_dsn),
          "host=127.0.0.1 port=55432 dbname=homing user=homing", 0, 0,
          "PostgreSQL connection (libpq conninfo)" },
        { "kafka-brokers", SETTING_STRING, FIELD(kafka_brokers), "127.0.0.1:59092", 0, 0,
          "Kafka bootstrap servers" },
        { "kafka-property", SETTING_LIST, FIELD(kafka_property), "", 0, 0,
          "a librdkafka property key=value for every producer and consumer (security.protocol, "
          "sasl.mechanisms, sasl.username, sasl.password, ssl.ca.location, ...); repeatable, "
          "applied after --kafka-properties-file (the variable: one per line)" },
        { "kafka-properties-file", SETTING_STRING, FIELD(kafka_properties_file), "", 0, 0,
          "a file of librdkafka properties, key=value lines (# starts a comment)" },
        { "kafka-linger-ms", SETTING_DOUBLE, FIELD(kafka_linger_ms), "0.5", 0, 900000,
          "how long a produced message waits for others to share its request to Kafka "
          "(librdkafka's linger.ms, fractions too): latency against throughput" },
        { "kafka-batch-bytes", SETTING_LONG, FIELD(kafka_batch_bytes), "1000000", 1, 2147483647,
          "the largest request one partition's messages make (librdkafka's batch.size)" },
        { "kafka-compression", SETTING_STRING, FIELD(kafka_compression), "lz4", 0, 0,
          "how produced messages are compressed: none, gzip, snappy, lz4 or zstd" },
        { "listen", SETTING_STRING, FIELD(listen), "127.0.0.1:58080", 0, 0,
          "host:port of the HTTP server (port 0 picks a free one)" },
        { "topic-locations", SETTING_STRING, FIELD(topic_locations), "homing.locations.v1", 0, 0,
          "topic of location reports" },
        { "topic-transfers", SETTING_STRING, FIELD(topic_transfers), "homing.transfers.v1", 0, 0,
          "topic of transfer jobs" },
        { "topic-audit", SETTING_STRING, FIELD(topic_audit), "homing.audit.v1", 0, 0,
          "topic of audit events (CloudEvents)" },
        { "consumer-group", SETTING_STRING, FIELD(consumer_group), "homing-scheduler", 0, 0,
          "consumer group of the schedulers" },
        { "topic-partitions", SETTING_LONG, FIELD(topic_partitions), "6", 1, 1000,
          "partitions of topics that `homing migrate` creates" },
        { "create-topics", SETTING_BOOL, FIELD(create_topics), "true", 0, 0,
          "whether `homing migrate` creates the topics (false: where topics are managed "
          "elsewhere, it checks that they exist)" },
        { "produce-timeout-ms", SETTING_LONG, FIELD(produce_timeout_ms), "5000", 100, 300000,
          "how long a report may wait for Kafka before the API answers 503" },
        { "max-body-bytes", SETTING_LONG, FIELD(max_body_bytes), "262144", 256, 16777216,
          "largest request body accepted (413 beyond)" },
        { "max-reports-per-request", SETTING_LONG, FIELD(max_reports_per_request), "500", 1, 10000,
          "largest array of reports in one POST" },
        { "max-future-skew-s", SETTING_LONG, FIELD(max_future_skew_s), "300", 0, 86400,
          "how far in the future a device timestamp may lie" },
        { "http-threads", SETTING_LONG, FIELD(http_threads), "2", 1, 64, "HTTP worker threads" },
        { "http-event-loop", SETTING_STRING, FIELD(http_event_loop), "epoll", 0, 0,
          "how the HTTP threads wait for their connections: poll or epoll" },
        { "http-max-connections", SETTING_LONG, FIELD(http_max_connections), "4096", 1, 100000,
          "HTTP connections held at once; near it the longest-idle keep-alive ones make room" },
        { "http-max-connections-per-ip", SETTING_LONG, FIELD(http_max_connections_per_ip), "128", 0,
          100000, "HTTP connections one client address may hold at once (0: no limit)" },
        { "http-header-timeout-s", SETTING_LONG, FIELD(http_header_timeout_s), "30", 1, 3600,
          "seconds a connection has for a request's head, from its accept or its last answer" },
        { "http-body-timeout-s", SETTING_LONG, FIELD(http_body_timeout_s), "60", 1, 3600,
          "seconds a request has for its body, from its head" },
        { "ingest-rate-per-device", SETTING_DOUBLE, FIELD(ingest_rate_per_device), "10", 0, 1e6,
          "reports a second one device may post, on average (0: no limit; 429 beyond)" },
        { "ingest-burst-per-device", SETTING_LONG, FIELD(ingest_burst_per_device), "1000", 1,
          1000000, "reports one device may post at once, after a quiet spell" },
        { "device-token-keys", SETTING_STRING, FIELD(device_token_keys), "", 0, 0,
          "device token keys, kid:base64key[,kid:base64key...]: the first signs, all verify "
          "(homing token key makes one)" },
        { "tls-cert", SETTING_STRING, FIELD(tls_cert), "", 0, 0,
          "PEM certificate (chain) file: with --tls-key, the API serves HTTPS" },
        { "tls-key", SETTING_STRING, FIELD(tls_key), "", 0, 0,
          "PEM private key file of --tls-cert" },
        { "dashboard-dir", SETTING_STRING, FIELD(dashboard_dir), HOMING_DATA_DIR "/dashboard", 0, 0,
          "folder of the dashboard's files, with its npm packages in node_modules" },
        { "db-pool-size", SETTING_LONG, FIELD(db_pool_size), "4", 1, 64,
          "PostgreSQL connections the API keeps for operator requests" },
        { "pg-statement-timeout-ms", SETTING_LONG, FIELD(pg_statement_timeout_ms), "10000", 0,
          3600000, "longest statement on the API's PostgreSQL connections (0: no limit)" },
        { "token-cache-s", SETTING_LONG, FIELD(token_cache_s), "30", 0, 3600,
          "how long the API trusts an operator or agent token it looked up (0: ask every time); "
          "a revoked token works in other processes until then" },
        { "move-margin-m", SETTING_DOUBLE, FIELD(move_margin_m), "50000", 0, 20040000,
          "a datacenter must be closer than the current one by more than this many metres" },
        { "move-margin-ratio", SETTING_DOUBLE, FIELD(move_margin_ratio), "0.2", 0, 1,
          "...and by more than this fraction of the distance to the current one" },
        { "max-accuracy-m", SETTING_DOUBLE, FIELD(max_accuracy_m), "2000", 0, 1e7,
          "reports less precise than this are dropped" },
        { "max-speed-mps", SETTING_DOUBLE, FIELD(max_speed_mps), "300", 1, 1e6,
          "reports implying a faster journey from the device's last fix are dropped" },
        { "dwell-s", SETTING_LONG, FIELD(dwell_s), "1800", 0, 30 * 86400L,
          "the user must stay near the better datacenter this long before a move" },
        { "dwell-reports", SETTING_LONG, FIELD(dwell_reports), "3", 1, 100000,
          "...with at least this many reports" },
        { "cooldown-s", SETTING_LONG, FIELD(cooldown_s), "21600", 0, 30 * 86400L,
          "least time between two moves of a snapshot" },
        { "max-moves-per-day", SETTING_LONG, FIELD(max_moves_per_day), "4", 1, 1000,
          "most moves of a snapshot in 24 hours" },
        { "audit-stay-sample", SETTING_DOUBLE, FIELD(audit_stay_sample), "0.01", 0, 1,
          "the share of recorded stays also published as audit events (every move is)" },
        { "km-per-gib", SETTING_DOUBLE, FIELD(km_per_gib), "5", 0, 1e6,
          "a move must save this many km for every GiB it sends" },
        { "batch-max", SETTING_LONG, FIELD(batch_max), "500", 1, 100000,
          "reports the scheduler commits in one PostgreSQL transaction at most" },
        /* 0: a batch is what came while the one before it committed (its
         * read-ahead) and what Kafka has at once; a wait to fill it added up
         * to itself to every report's latency below the backlog's rate. */
        { "batch-wait-ms", SETTING_LONG, FIELD(batch_wait_ms), "0", 0, 10000,
          "how long the scheduler waits to fill a batch" },
        { "outbox-max-attempts", SETTING_LONG, FIELD(outbox_max_attempts), "10", 1, 1000000,
          "times Kafka may refuse an outbox row for its own sake before the relay parks it" },
        { "catalog-refresh-s", SETTING_LONG, FIELD(catalog_refresh_s), "10", 1, 3600,
          "how often the scheduler reloads the datacenter catalog" },
        { "replica-pass-s", SETTING_LONG, FIELD(replica_pass_s), "10", 0, 86400,
          "how often a scheduler places warm replicas and queues their refreshes, after a "
          "catalog reload (0: never)" },
        { "prestage-pass-s", SETTING_LONG, FIELD(prestage_pass_s), "10", 0, 86400,
          "how often a scheduler pre-stages warm copies for announced trips and releases "
          "those of trips over, after a catalog reload (0: never)" },
        { "prestage-lead-s", SETTING_LONG, FIELD(prestage_lead_s), "3600", 0, 7 * 86400,
          "a pre-staged copy is due a transfer's time and this long before the arrival" },
        { "api-url", SETTING_STRING, FIELD(api_url), "http://127.0.0.1:58080", 0, 0,
          "agent, replay --publish: where homing's API answers" },
        { "operator-token", SETTING_STRING, FIELD(operator_token), "", 0, 0,
          "replay --publish: the operator token (hop_..., operator role or higher) it posts "
          "the figures with; prefer the variable to the flag" },
        { "datacenter", SETTING_STRING, FIELD(datacenter), "", 0, 0,
          "agent: the datacenter(s) it serves, comma-separated" },
        { "store", SETTING_STRING, FIELD(store), "", 0, 0,
          "agent: the datacenter's store directory; with several datacenters, the folder "
          "holding one store per datacenter id" },
        { "agent-token", SETTING_STRING, FIELD(agent_token), "", 0, 0,
          "agent: its agent token (hag_..., one datacenter); prefer the variable to the flag" },
        { "agent-token-file", SETTING_STRING, FIELD(agent_token_file), "", 0, 0,
          "agent: a file of lines \"<datacenter> <token>\", for several datacenters" },
        { "agent-listen", SETTING_STRING, FIELD(agent_listen), "127.0.0.1:58090", 0, 0,
          "agent: host:port where peers pull from it (port 0: any free one)" },
        { "agent-url", SETTING_STRING, FIELD(agent_url), "", 0, 0,
          "agent: its base URL as peers reach it (\"\": http://<agent-listen>)" },
        { "agent-concurrency", SETTING_LONG, FIELD(agent_concurrency), "2", 1, 64,
          "agent: transfers it runs at once into each datacenter" },
        { "agent-max-streams", SETTING_LONG, FIELD(agent_max_streams), "8", 1, 1024,
          "agent: block streams it sends to peers at once (503 beyond)" },
        { "agent-bandwidth", SETTING_LONG, FIELD(agent_bandwidth), "0", 0, 1e12,
          "agent: bytes per second it receives into each datacenter (0: no cap)" },
        { "agent-lease-s", SETTING_LONG, FIELD(agent_lease_s), "30", 5, 3600,
          "agent: a claimed transfer is its for this long, renewed by progress" },
        { "agent-poll-ms", SETTING_LONG, FIELD(agent_poll_ms), "1000", 50, 60000,
          "agent: how long it waits between claims when nothing is due" },
        { "agent-evict-s", SETTING_LONG, FIELD(agent_evict_s), "60", 1, 86400,
          "agent: how often it asks which cached copies to delete" },
        { "agent-tls-cert", SETTING_STRING, FIELD(agent_tls_cert), "", 0, 0,
          "agent: PEM certificate (chain): with --agent-tls-key, peers pull over HTTPS "
          "(TLS 1.2 and 1.3)" },
        { "agent-tls-key", SETTING_STRING, FIELD(agent_tls_key), "", 0, 0,
          "agent: PEM private key of --agent-tls-cert" },
        { "agent-tls-ca", SETTING_STRING, FIELD(agent_tls_ca), "", 0, 0,
          "agent: CA bundle it trusts for its peers and the API (\"\": the system's)" },
        { "driver", SETTING_STRING, FIELD(driver), "none", 0, 0,
          "agent: who powers the VMs of its datacenters on and off: none, libvirt or exec" },
        { "libvirt-uri", SETTING_STRING, FIELD(libvirt_uri), "qemu:///system", 0, 0,
          "agent: libvirt's connection URI (--driver libvirt; test:///default needs no "
          "hypervisor)" },
        { "driver-command", SETTING_STRING, FIELD(driver_command), "", 0, 0,
          "agent: the command --driver exec runs (/bin/sh -c) with HOMING_ACTION and the VM "
          "in its environment" },
        { "driver-timeout-s", SETTING_LONG, FIELD(driver_timeout_s), "120", 1, 86400,
          "agent: the exec driver's command is killed after this long, and fails" },
        { "agent-reconcile-ms", SETTING_LONG, FIELD(agent_reconcile_ms), "2000", 50, 600000,
          "agent: how long it waits between two looks at which VMs should run here" },
        { "cache-max-age-s", SETTING_LONG, FIELD(cache_max_age_s), "604800", 0, 3650 * 86400L,
          "cached copies (older versions kept for small transfers) older than this are evicted" },
        { "cache-high-water", SETTING_DOUBLE, FIELD(cache_high_water), "0.9", 0, 1,
          "above this share of a datacenter's capacity (used + reserved + cached), its oldest "
          "cached copies are evicted" },
        { "migrations-dir", SETTING_STRING, FIELD(migrations_dir), HOMING_DATA_DIR "/migrations", 0,
          0, "folder of numbered SQL migrations" },
        { "metrics-listen", SETTING_STRING, FIELD(metrics_listen), "", 0, 0,
          "host:port where `schedule` and `relay` serve /metrics and /healthz (\"\": nowhere; "
          "`serve` and `standalone` have /metrics on --listen)" },
        { "metrics-token-file", SETTING_STRING, FIELD(metrics_token_file), "", 0, 0,
          "a file holding the bearer token a scraper must send to --metrics-listen's /metrics "
          "(needed beyond loopback)" },
        { "log-level", SETTING_STRING, FIELD(log_level), "info", 0, 0,
          "debug, info, warn or error" },
        { "config", SETTING_STRING, FIELD(config), HOMING_CONFIG_FILE, 0, 0,
          "the configuration file: lines \"key = value\", the key a flag's name (pg-dsn) or its "
          "variable (HOMING_PG_DSN); the environment and flags override it (\"\": none)" },
};

#define N_SETTINGS (sizeof(settings) / sizeof(settings[0]))

/* The settings `homing config` masks: keys and tokens. pg-dsn's password is masked too. */
static const char *const secrets[] = { "device-token-keys", "agent-token", "operator-token", NULL };

static bool setting_secret(const struct setting *s) {
        for (const char *const *name = secrets; *name; name++)
                if (!strcmp(*name, s->name))
                        return true;
        return false;
}

static void env_name(const struct setting *s, char *out, size_t size) {
        size_t n = (size_t)snprintf(out, size, "HOMING_");
        for (const char *p = s->name; *p && n + 1 < size; p++)
                out[n++] = *p == '-' ? '_' : (char)toupper((unsigned char)*p);
        out[n] = '\0';
}

/* Where a setting's value came from: "default", "HOMING_X", "--x" or "FILE:LINE". */
static int origin_set(struct config *cfg, const struct setting *s, const char *origin) {
        size_t i = (size_t)(s - settings);
        const char *before = cfg->origins[i];
        char *copy = NULL;

        /* A list that had values says every place they came from. */
        if (s->type == SETTING_LIST && before && strcmp(before, "default") != 0) {
                if (asprintf(&copy, "%s, %s", before, origin) < 0)
                        copy = NULL;
        } else {
                copy = strdup(origin);
        }
        if (!copy)
                return -ENOMEM;
        free(cfg->origins[i]);
        cfg->origins[i] = copy;
        return 0;
}

static int setting_assign(struct config *cfg, const struct setting *s, const char *value,
                          const char *origin) {
        char *slot = (char *)cfg + s->offset;
        char *end;

        switch (s->type) {
        case SETTING_LIST: {
                const char *old = *(char **)slot;
                char *joined;
                if (old && !value[0])
                        return 0; /* an empty value adds nothing */
                if (asprintf(&joined, "%s%s%s", old ? old : "", old && old[0] ? "\n" : "", value) <
                    0)
                        return -ENOMEM;
                free(*(char **)slot);
                *(char **)slot = joined;
                return origin_set(cfg, s, origin);
        }
        case SETTING_BOOL: {
                static const char *const yes[] = { "true", "yes", "on", "1", NULL };
                static const char *const no[] = { "false", "no", "off", "0", NULL };
                for (size_t i = 0; yes[i]; i++) {
                        if (!strcmp(value, yes[i]) || !strcmp(value, no[i])) {
                                *(bool *)slot = !strcmp(value, yes[i]);
                                return origin_set(cfg, s, origin);
                        }
                }
                fprintf(stderr, "homing: %s: '%s' is not true or false\n", origin, value);
                return -EINVAL;
        }
        case SETTING_STRING: {
                char *copy = strdup(value);
                if (!copy)
                        return -ENOMEM;
                free(*(char **)slot);
                *(char **)slot = copy;
                return origin_set(cfg, s, origin);
        }
        case SETTING_LONG: {
                long v;
                errno = 0;
                v = strtol(value, &end, 10);
                if (errno || end == value || *end || v < s->min || v > s->max) {
                        fprintf(stderr, "homing: %s: '%s' is not a whole number in [%.0f, %.0f]\n",
                                origin, value, s->min, s->max);
                        return -EINVAL;
                }
                *(long *)slot = v;
                return origin_set(cfg, s, origin);
        }
        case SETTING_DOUBLE: {
                double v;
                errno = 0;
                v = strtod(value, &end);
                if (errno || end == value || *end || !isfinite(v) || v < s->min || v > s->max) {
                        fprintf(stderr, "homing: %s: '%s' is not a number in [%g, %g]\n", origin,
                                value, s->min, s->max);
                        return -EINVAL;
                }
                *(double *)slot = v;
                return origin_set(cfg, s, origin);
        }
        }
        return -EINVAL;
}

static const struct setting *setting_find(const char *name, size_t len) {
        for (size_t i = 0; i < N_SETTINGS; i++)
                if (strlen(settings[i].name) == len && !strncmp(settings[i].name, name, len))
                        return &settings[i];
        return NULL;
}

/* A key of the file: a flag's name (pg-dsn) or its variable (HOMING_PG_DSN). */
static const struct setting *setting_find_key(const char *key) {
        char var[64];

        for (size_t i = 0; i < N_SETTINGS; i++) {
                env_name(&settings[i], var, sizeof(var));
                if (!strcmp(settings[i].name, key) || !strcmp(var, key))
                        return &settings[i];
        }
        return NULL;
}

static char *trim(char *s) {
        char *end = s + strlen(s);

        while (isspace((unsigned char)*s))
                s++;
        while (end > s && isspace((unsigned char)end[-1]))
                *--end = '\0';
        return s;
}

/*
 * Reads the configuration file's lines into `cfg`. A missing file is fine
 * when nobody asked for it (`required` false). Returns 0 or -EINVAL (said).
 */
static int file_load(struct config *cfg, const char *path, bool required) {
        char origin[4200], *line = NULL;
        size_t cap = 0;
        FILE *f = fopen(path, "r");
        int r = 0;

        if (!f) {
                if (errno == ENOENT && !required)
                        return 0;
                fprintf(stderr, "homing: cannot read the configuration file %s: %s\n", path,
                        strerror(errno));
                return -EINVAL;
        }
        for (long number = 1; r == 0 && getline(&line, &cap, f) >= 0; number++) {
                char *text = trim(line), *eq = strchr(text, '='), *key, *value;
                const struct setting *s;
                size_t len;

                snprintf(origin, sizeof(origin), "%s:%ld", path, number);
                if (!*text || *text == '#' || *text == ';')
                        continue;
                if (!eq) {
                        fprintf(stderr, "homing: %s: not \"key = value\"\n", origin);
                        r = -EINVAL;
                        break;
                }
                *eq = '\0';
                key = trim(text);
                value = trim(eq + 1);
                /* Quotes as systemd's EnvironmentFile= allows them, so one file serves both. */
                len = strlen(value);
                if (len >= 2 && (value[0] == '"' || value[0] == '\'') &&
                    value[len - 1] == value[0]) {
                        value[len - 1] = '\0';
                        value++;
                }
                s = setting_find_key(key);
                if (!s || s->offset == FIELD(config)) {
                        fprintf(stderr,
                                "homing: %s: unknown setting '%s' (see homing serve --help)\n",
                                origin, key);
                        r = -EINVAL;
                        break;
                }
                r = setting_assign(cfg, s, value, origin);
        }
        if (r == 0 && ferror(f)) {
                fprintf(stderr, "homing: cannot read the configuration file %s\n", path);
                r = -EINVAL;
        }
        free(line);
        fclose(f);
        return r;
}

/* The file to read: --config in argv, else HOMING_CONFIG, else the default (may be missing). */
static int file_choose(struct config *cfg, int argc, char **argv, bool *required) {
        const struct setting *s = setting_find("config", strlen("config"));
        const char *env = getenv("HOMING_CONFIG");

        *required = false;
        for (int i = 1; i < argc; i++) {
                if (!strncmp(argv[i], "--config=", 9)) {
                        *required = true;
                        return setting_assign(cfg, s, argv[i] + 9, "--config");
                }
                if (!strcmp(argv[i], "--config") && i + 1 < argc) {
                        *required = true;
                        return setting_assign(cfg, s, argv[i + 1], "--config");
                }
        }
        if (env && *env) {
                *required = true;
                return setting_assign(cfg, s, env, "HOMING_CONFIG");
        }
        return 0;
}

/* True for the binary that meson built, run where it was built (not an installed copy). */
static bool in_build_tree(void) {
        char self[4096];
        ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
        size_t root = strlen(HOMING_BUILD_ROOT);

        if (n <= 0)
                return false;
        self[n] = '\0';
        return !strncmp(self, HOMING_BUILD_ROOT, root) && self[root] == '/';
}

/*
 * A setting's default. The binary run in its build directory reads the
 * source tree's files for the installed ones, and no installed
 * configuration file: development never depends on what is installed.
 */
static int fallback_assign(struct config *cfg, const struct setting *s, bool in_place) {
        size_t data = strlen(HOMING_DATA_DIR);
        const char *value = s->fallback;
        char *owned = NULL;
        int r;

        if (in_place && !strncmp(value, HOMING_DATA_DIR "/", data + 1)) {
                if (asprintf(&owned, "%s%s", HOMING_SOURCE_ROOT, value + data) < 0)
                        return -ENOMEM;
                value = owned;
        } else if (in_place && s->offset == FIELD(config)) {
                value = "";
        }
        r = setting_assign(cfg, s, value, "default");
        free(owned);
        return r;
}

int config_load(struct config *cfg, int argc, char **argv, const char *usage) {
        char var[64], origin[96];
        bool required, in_place;
        int r;

        memset(cfg, 0, sizeof(*cfg));
        /* Help even when the file is broken. */
        for (int i = 1; i < argc; i++) {
                if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
                        printf("usage: %s\n\n", usage);
                        config_print_help(stdout);
                        return 1;
                }
        }
        cfg->origins = calloc(N_SETTINGS, sizeof(*cfg->origins));
        if (!cfg->origins)
                return -ENOMEM;
        in_place = in_build_tree();
        for (size_t i = 0; i < N_SETTINGS; i++) {
                r = fallback_assign(cfg, &settings[i], in_place);
                if (r < 0)
                        goto fail;
        }
        r = file_choose(cfg, argc, argv, &required);
        if (r == 0 && cfg->config[0])
                r = file_load(cfg, cfg->config, required);
        if (r < 0)
                goto fail;

        for (size_t i = 0; i < N_SETTINGS; i++) {
                const char *env;
                env_name(&settings[i], var, sizeof(var));
                env = getenv(var);
                if (env && *env && (r = setting_assign(cfg, &settings[i], env, var)) < 0)
                        goto fail;
        }
        for (int i = 1; i < argc; i++) {
                const char *arg = argv[i], *eq, *value;
                const struct setting *s;

                if (strncmp(arg, "--", 2) != 0) {
                        fprintf(stderr, "homing %s: unexpected argument '%s'\n", argv[0], arg);
                        r = -EINVAL;
                        goto fail;
                }
                arg += 2;
                eq = strchr(arg, '=');
                s = setting_find(arg, eq ? (size_t)(eq - arg) : strlen(arg));
                if (!s) {
                        fprintf(stderr, "homing %s: unknown option '%s' (see --help)\n", argv[0],
                                argv[i]);
                        r = -EINVAL;
                        goto fail;
                }
                if (eq) {
                        value = eq + 1;
                } else if (i + 1 < argc) {
                        value = argv[++i];
                } else {
                        fprintf(stderr, "homing %s: --%s needs a value\n", argv[0], s->name);
                        r = -EINVAL;
                        goto fail;
                }
                snprintf(origin, sizeof(origin), "--%s", s->name);
                r = setting_assign(cfg, s, value, origin);
                if (r < 0)
                        goto fail;
        }

        if (log_set_level(cfg->log_level) < 0) {
                fprintf(stderr, "homing: log level '%s' is not debug, info, warn or error\n",
                        cfg->log_level);
                r = -EINVAL;
                goto fail;
        }
        return 0;

fail:
        config_fini(cfg);
        return r;
}

void config_fini(struct config *cfg) {
        for (size_t i = 0; i < N_SETTINGS; i++) {
                if (settings[i].type == SETTING_STRING || settings[i].type == SETTING_LIST) {
                        char **slot = (char **)((char *)cfg + settings[i].offset);
                        free(*slot);
                        *slot = NULL;
                }
                if (cfg->origins)
                        free(cfg->origins[i]);
        }
        free(cfg->origins);
        cfg->origins = NULL;
}

void config_print_help(FILE *f) {
        char var[64];

        fprintf(f, "settings (flag, environment variable, default):\n");
        for (size_t i = 0; i < N_SETTINGS; i++) {
                env_name(&settings[i], var, sizeof(var));
                fprintf(f, "  --%-24s %s\n      %s (default: %s)\n", settings[i].name, var,
                        settings[i].help, settings[i].fallback);
        }
}

/* Text as roff: backslashes and hyphens escaped, a line never starts with a control character. */
static void roff(FILE *f, const char *text) {
        if (*text == '.' || *text == '\'')
                fputs("\\&", f);
        for (const char *p = text; *p; p++) {
                if (*p == '\\')
                        fputs("\\e", f);
                else if (*p == '-')
                        fputs("\\-", f);
                else
                        fputc(*p, f);
        }
}

void config_print_man(FILE *f) {
        char var[64];

        for (size_t i = 0; i < N_SETTINGS; i++) {
                env_name(&settings[i], var, sizeof(var));
                fputs(".TP\n\\fB\\-\\-", f);
                roff(f, settings[i].name);
                fputs("\\fR \\fIvalue\\fR, \\fB", f);
                roff(f, var);
                fputs("\\fR\n", f);
                roff(f, settings[i].help);
                if (settings[i].fallback[0]) {
                        fputs(" (default: ", f);
                        roff(f, settings[i].fallback);
                        fputs(")", f);
                }
                fputs(settings[i].type == SETTING_LIST ? "; repeatable\n" : "\n", f);
        }
}

void config_print_flags(FILE *f) {
        for (size_t i = 0; i < N_SETTINGS; i++)
                fprintf(f, "--%s\n", settings[i].name);
}

/*
 * A libpq conninfo with its password masked: "password=..." in the key=value
 * form, "user:...@" in the URI form.
 */
static void print_dsn(FILE *f, const char *dsn) {
        const char *scheme = strstr(dsn, "://"), *p = dsn;

        if (scheme) {
                const char *at = strchr(scheme + 3, '@'), *colon = strchr(scheme + 3, ':');
                if (at && colon && colon < at) {
                        fprintf(f, "%.*s:********%s", (int)(colon - dsn), dsn, at);
                        return;
                }
                fputs(dsn, f);
                return;
        }
        while (*p) {
                const char *key = p, *value;
                size_t key_len;

                while (*p && !isspace((unsigned char)*p) && *p != '=')
                        p++;
                key_len = (size_t)(p - key);
                while (isspace((unsigned char)*p))
                        p++;
                if (*p != '=') {
                        fprintf(f, "%.*s", (int)(p - key), key);
                        continue;
                }
                p++;
                while (isspace((unsigned char)*p))
                        p++;
                value = p;
                if (*p == '\'') {
                        for (p++; *p && *p != '\''; p++)
                                if (*p == '\\' && p[1])
                                        p++;
                        if (*p)
                                p++;
                } else {
                        while (*p && !isspace((unsigned char)*p))
                                p++;
                }
                if (key_len == strlen("password") && !strncmp(key, "password", key_len))
                        fprintf(f, "%.*s********", (int)(value - key), key);
                else
                        fprintf(f, "%.*s", (int)(p - key), key);
                while (isspace((unsigned char)*p))
                        fputc(*p++, f);
        }
}

/* A secret's key in librdkafka's properties: its value is masked. */
static bool property_secret(const char *key, size_t len) {
        char name[128];

        snprintf(name, sizeof(name), "%.*s", (int)len, key);
        return strstr(name, "password") || strstr(name, "secret");
}

/* A list's lines, on one line: "a=1 | b=2", secrets' values masked. */
static void print_list(FILE *f, const char *list) {
        for (const char *p = list; *p;) {
                size_t len = strcspn(p, "\n"), key = strcspn(p, "=");
                if (p != list)
                        fputs(" | ", f);
                if (key < len && property_secret(p, key))
                        fprintf(f, "%.*s=********", (int)key, p);
                else
                        fprintf(f, "%.*s", (int)len, p);
                p += len;
                if (*p)
                        p++;
        }
}

void config_print(FILE *f, const struct config *cfg) {
        for (size_t i = 0; i < N_SETTINGS; i++) {
                const struct setting *s = &settings[i];
                const char *slot = (const char *)cfg + s->offset;

                fprintf(f, "%s = ", s->name);
                switch (s->type) {
                case SETTING_LIST:
                        print_list(f, *(char *const *)slot);
                        break;
                case SETTING_STRING: {
                        const char *value = *(char *const *)slot;
                        if (setting_secret(s) && value[0])
                                fputs("********", f);
                        else if (s->offset == FIELD(pg_dsn))
                                print_dsn(f, value);
                        else
                                fputs(value, f);
                        break;
                }
                case SETTING_LONG:
                        fprintf(f, "%ld", *(const long *)slot);
                        break;
                case SETTING_DOUBLE:
                        fprintf(f, "%g", *(const double *)slot);
                        break;
                case SETTING_BOOL:
                        fputs(*(const bool *)slot ? "true" : "false", f);
                        break;
                }
                fprintf(f, "  (%s)\n", cfg->origins[i]);
        }
}
