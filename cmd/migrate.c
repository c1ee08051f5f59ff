/*
 * homing migrate: brings PostgreSQL's schema and Kafka's topics to what this
 * version of homing expects. Running it again changes nothing.
 */
#include <stdio.h>

#include "base/config.h"
#include "base/log.h"
#include "bus/bus.h"
#include "cmd/commands.h"
#include "store/store.h"

int cmd_migrate(int argc, char **argv) {
        struct config cfg;
        struct store *db = NULL;
        char errbuf[512];
        int r = config_load(&cfg, argc, argv,
                            "homing migrate [options]: apply pending SQL migrations and create "
                            "the Kafka topics");
        if (r != 0)
                return r < 0 ? 2 : 0;

        r = store_connect(cfg.pg_dsn, &db);
        if (r == 0)
                r = store_migrate(db, cfg.migrations_dir);
        if (r >= 0) {
                int version = 0;
                if (store_schema_version(db, &version) < 0)
                        version = -1; /* logged; the migrations themselves went through */
                log_info("migrate", "%d migrations applied now; schema version %d", r, version);
                {
                        const char *topics[] = { cfg.topic_locations, cfg.topic_transfers,
                                                 cfg.topic_audit };
                        r = bus_ensure_topics(&(struct bus_cluster){ cfg.kafka_brokers,
                                                                     cfg.kafka_property,
                                                                     cfg.kafka_properties_file },
                                              topics, 3, (int)cfg.topic_partitions, errbuf,
                                              sizeof(errbuf));
                        if (r < 0)
                                log_error("migrate", "cannot create the Kafka topics: %s", errbuf);
                }
        }
        store_free(db);
        config_fini(&cfg);
        return r < 0 ? 1 : 0;
}
