/*
 * homing migrate: brings PostgreSQL's schema and Kafka's topics to what this
 * version of homing expects. Running it again changes nothing. With
 * --check it changes nothing at all and says whether they are as expected;
 * with --create-topics=false it leaves the topics to whoever manages them
 * and only checks that they exist.
 */
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "base/config.h"
#include "base/log.h"
#include "bus/bus.h"
#include "cmd/commands.h"
#include "store/store.h"

/* Returns how many topics are missing, or <0 (logged). */
static int topics_check(const struct config *cfg, const struct bus_cluster *cluster,
                        const char *const *topics) {
        char errbuf[512];
        int r = bus_check_topics(cluster, topics, 3, (int)cfg->topic_partitions, errbuf,
                                 sizeof(errbuf));
        if (r < 0)
                log_error("migrate", "cannot look the Kafka topics up: %s", errbuf);
        return r;
}

int cmd_migrate(int argc, char **argv) {
        struct config cfg;
        struct store *db = NULL;
        char errbuf[512];
        bool check = false;
        int n = 1, r;

        /* --check is ours; the rest are the shared settings. */
        for (int i = 1; i < argc; i++) {
                if (!strcmp(argv[i], "--check"))
                        check = true;
                else
                        argv[n++] = argv[i];
        }
        r = config_load(&cfg, n, argv,
                        "homing migrate [--check] [options]: apply pending SQL migrations and "
                        "create the Kafka topics; --check only says whether they are as expected");
        if (r != 0)
                return r < 0 ? 2 : 0;
        {
                const char *topics[] = { cfg.topic_locations, cfg.topic_transfers,
                                         cfg.topic_audit };
                const struct bus_cluster cluster = { cfg.kafka_brokers, cfg.kafka_property,
                                                     cfg.kafka_properties_file };

                r = store_connect(cfg.pg_dsn, &db);
                if (r == 0 && check) {
                        int pending = store_migrations_check(db, cfg.migrations_dir);
                        int missing = topics_check(&cfg, &cluster, topics);
                        if (pending >= 0)
                                printf("schema: %s\n", pending ? "NOT as expected" : "as expected");
                        if (missing >= 0)
                                printf("topics: %s\n", missing ? "NOT as expected" : "as expected");
                        r = pending < 0 || missing < 0 ? -1 : pending || missing ? 1 : 0;
                        store_free(db);
                        config_fini(&cfg);
                        return r < 0 ? 2 : r;
                }
                if (r == 0)
                        r = store_migrate(db, cfg.migrations_dir);
                if (r >= 0) {
                        int version = 0;
                        if (store_schema_version(db, &version) < 0)
                                version = -1; /* logged; the migrations themselves went through */
                        log_info("migrate", "%d migrations applied now; schema version %d", r,
                                 version);
                        if (cfg.create_topics) {
                                r = bus_ensure_topics(&cluster, topics, 3,
                                                      (int)cfg.topic_partitions, errbuf,
                                                      sizeof(errbuf));
                                if (r < 0)
                                        log_error("migrate", "cannot create the Kafka topics: %s",
                                                  errbuf);
                        } else if ((r = topics_check(&cfg, &cluster, topics)) > 0) {
                                log_error("migrate",
                                          "%d topics are missing and "
                                          "--create-topics=false: create them first",
                                          r);
                                r = -1;
                        }
                }
        }
        store_free(db);
        config_fini(&cfg);
        return r < 0 ? 1 : 0;
}
