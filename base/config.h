/*
 * config — every setting homing has, in one table: a default, a line of the
 * configuration file (--config, /etc/homing/homing.conf) that overrides it, an
 * environment variable HOMING_<NAME> that overrides both, and a flag --<name>
 * that overrides all. Values are checked against their bounds when read.
 */
#pragma once

#include <stdbool.h>
#include <stdio.h>

#include "base/must-check.h"

struct config {
        /* connections */
        char *pg_dsn;                /* libpq conninfo */
        char *kafka_brokers;         /* host:port[,host:port...] */
        char *kafka_property;        /* librdkafka "key=value" lines, applied after the file's */
        char *kafka_properties_file; /* a properties file of them ("": none) */
        char *listen;                /* host:port of the HTTP server */
        /* Kafka */
        char *topic_locations;
        char *topic_transfers;
        char *topic_audit;
        char *consumer_group;
        long topic_partitions;
        bool create_topics; /* false: `homing migrate` only checks that they exist */
        long produce_timeout_ms;
        double kafka_linger_ms; /* every producer's linger.ms, batch.size, compression.type */
        long kafka_batch_bytes;
        char *kafka_compression;
        /* ingest */
        long max_body_bytes;
        long max_reports_per_request;
        long max_future_skew_s;
        long http_threads;
        char *http_event_loop; /* "poll" or "epoll" */
        long http_max_connections;
        long http_max_connections_per_ip; /* 0: no limit */
        long http_header_timeout_s;       /* a request's head, from its connection's last answer */
        long http_body_timeout_s;         /* its body, from its head */
        double ingest_rate_per_device;    /* reports/s, a token bucket per device; 0: none */
        long ingest_burst_per_device;     /* the bucket's size */
        /* the operator API and access control */
        char *device_token_keys; /* "kid:base64key,..."; the first signs, all verify */
        char *tls_cert;          /* PEM files; both set: HTTPS */
        char *tls_key;
        char *dashboard_dir;          /* the dashboard's files (and its node_modules) */
        long db_pool_size;            /* PostgreSQL connections of the API */
        long pg_statement_timeout_ms; /* the API's statements; 0: no limit */
        long token_cache_s;           /* operator/agent token lookups kept; 0: none */
        /* scheduler: the policy (README explains each) */
        double move_margin_m;
        double move_margin_ratio;
        double max_accuracy_m;
        double max_speed_mps;
        long dwell_s;
        long dwell_reports;
        long cooldown_s;
        long max_moves_per_day;
        double km_per_gib;
        double audit_stay_sample;
        long batch_max;
        long batch_wait_ms;
        long catalog_refresh_s;
        long replica_pass_s;      /* how often warm replicas are placed and refreshed; 0: never */
        long prestage_pass_s;     /* how often copies are pre-staged for trips; 0: never */
        long prestage_lead_s;     /* a pre-staged copy is due this long before the arrival */
        long outbox_max_attempts; /* refusals of one row before the relay parks it */
        char *metrics_listen;     /* host:port of /metrics for schedule and relay; "": none */
        char *metrics_token_file; /* the scrape token of --metrics-listen */
        /* agent: the transfers into a datacenter (agent/README.md) */
        char *api_url;          /* where agents (and replay --publish) reach homing's API */
        char *operator_token;   /* hop_..., replay --publish's */
        char *datacenter;       /* the datacenters this agent serves, comma-separated */
        char *store;            /* the store (one datacenter) or the folder of stores (several) */
        char *agent_token;      /* hag_... for a single datacenter */
        char *agent_token_file; /* lines "<datacenter> <token>" */
        char *agent_listen;     /* host:port of the agent's server for peers */
        char *agent_url;        /* its base URL as peers reach it; "": from --agent-listen */
        long agent_concurrency; /* transfers running at once, per datacenter */
        long agent_max_streams; /* block streams served at once */
        long agent_bandwidth;   /* bytes per second into each datacenter; 0: no cap */
        long agent_lease_s;
        long agent_poll_ms;
        long agent_evict_s;   /* how often the agent asks which cached copies to delete */
        char *agent_tls_cert; /* PEM files; both set: peers pull over HTTPS */
        char *agent_tls_key;
        char *agent_tls_ca;      /* CA bundle it trusts for peers and the API; "": the system's */
        char *driver;            /* agent: none, libvirt or exec: who powers VMs on and off */
        char *libvirt_uri;       /* agent: libvirt's connection URI, for every datacenter served */
        char *driver_command;    /* agent: the exec driver's command */
        long driver_timeout_s;   /* agent: longest run of the exec driver's command */
        long agent_reconcile_ms; /* agent: the wait between two looks at what should run */
        long cache_max_age_s;    /* API: cached copies older than this go */
        double cache_high_water; /* API: ...and the oldest, above this share of capacity */
        /* housekeeping */
        char *migrations_dir;
        char *log_level;
        char *config; /* the configuration file read ("": none) */

        /* Where each setting's value came from, in the table's order (config_print). */
        char **origins;
};

/*
 * Fills `cfg` from defaults, the configuration file, the environment and argv
 * (argv[0] is the command's name; every other argument must be a known flag).
 * The file is --config, else HOMING_CONFIG, else the installed default, which
 * may be missing; its lines are "key = value" (the key a flag's name or its
 * variable's), "#" starts a comment line. Returns 0, 1 when --help was asked
 * for and printed, or -EINVAL after printing what is wrong to stderr (a bad
 * line of the file with its name and number). `cfg` owns its strings:
 * release them with config_fini().
 */
int config_load(struct config *cfg, int argc, char **argv, const char *usage) MUST_CHECK;

void config_fini(struct config *cfg);

/* Prints every setting, its variable, default and meaning. */
void config_print_help(FILE *f);

/* Prints every setting as roff for the OPTIONS of homing(1): the same table as --help. */
void config_print_man(FILE *f);

/* Prints every flag, "--name" one a line, for shell completion. */
void config_print_flags(FILE *f);

/*
 * Prints the effective settings, one "name = value  (origin)" line each, with
 * secrets (keys, tokens, passwords) masked.
 */
void config_print(FILE *f, const struct config *cfg);
