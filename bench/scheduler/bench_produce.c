/*
 * bench-produce — puts a simulated fleet's location reports on a topic as
 * fast as Kafka takes them, for the scheduler benchmark. FILE is what
 * `homing simulate` writes: each report line is already the topic's
 * record and goes as it is, keyed by its user as the API keys it; restore
 * lines are skipped.
 *
 * usage: bench-produce BROKERS TOPIC FILE
 */
#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bus/bus.h"
#include "report/report.h"

static atomic_long failed, delivered;

static void on_delivery(void *opaque, int err) {
        atomic_fetch_add(err ? &failed : &delivered, 1);
}

int main(int argc, char **argv) {
        struct bus_producer *p;
        char errbuf[512], *line = NULL;
        size_t cap = 0;
        ssize_t len;
        unsigned long lineno = 0;
        FILE *in;

        if (argc != 4) {
                fprintf(stderr, "usage: bench-produce BROKERS TOPIC FILE\n");
                return 2;
        }
        if (!(in = fopen(argv[3], "r"))) {
                fprintf(stderr, "bench-produce: %s: %s\n", argv[3], strerror(errno));
                return 1;
        }
        if (bus_producer_new(&(struct bus_cluster){ argv[1], NULL, NULL }, NULL, 60000, on_delivery,
                             &p, errbuf, sizeof(errbuf)) < 0) {
                fprintf(stderr, "bench-produce: %s\n", errbuf);
                return 1;
        }
        while ((len = getline(&line, &cap, in)) > 0) {
                struct report r;
                int e;

                lineno++;
                while (len > 0 && line[len - 1] == '\n')
                        line[--len] = '\0';
                if (!strncmp(line, "{\"restore\"", 10))
                        continue;
                if (report_decode(line, (size_t)len, &r) < 0) {
                        fprintf(stderr, "bench-produce: %s:%lu: not a report record\n", argv[3],
                                lineno);
                        return 1;
                }
                while ((e = bus_produce(p, argv[2], r.user_id, strlen(r.user_id), line, (size_t)len,
                                        NULL)) == -ENOBUFS)
                        usleep(1000);
                if (e < 0)
                        return 1;
        }
        free(line);
        fclose(in);
        if (bus_producer_flush(p, 60000) < 0)
                fprintf(stderr, "some reports were still undelivered after 60 s\n");
        p = bus_producer_free(p);
        printf("produced %ld reports (%ld failed)\n", atomic_load(&delivered),
               atomic_load(&failed));
        return atomic_load(&failed) ? 1 : 0;
}
