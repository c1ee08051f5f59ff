/*
 * bench-produce — puts N location reports on a topic as fast as Kafka takes
 * them, for the scheduler benchmark: random users among U, random places,
 * rising timestamps in the past, keyed by user as the API keys them.
 *
 * usage: bench-produce BROKERS TOPIC REPORTS USERS
 */
#include <errno.h>
#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bus/bus.h"
#include "report/report.h"

static atomic_long failed, delivered;

static void on_delivery(void *opaque, int err) {
        atomic_fetch_add(err ? &failed : &delivered, 1);
}

int main(int argc, char **argv) {
        struct bus_producer *p;
        char errbuf[512];
        long n, users;
        int64_t now;
        unsigned seed = 42;

        if (argc != 5) {
                fprintf(stderr, "usage: bench-produce BROKERS TOPIC REPORTS USERS\n");
                return 2;
        }
        n = atol(argv[3]);
        users = atol(argv[4]);
        if (bus_producer_new(&(struct bus_cluster){ argv[1], NULL, NULL }, NULL, 60000, on_delivery,
                             &p, errbuf, sizeof(errbuf)) < 0) {
                fprintf(stderr, "bench-produce: %s\n", errbuf);
                return 1;
        }
        now = (int64_t)time(NULL) * 1000;
        for (long i = 0; i < n; i++) {
                struct report r = { 0 };
                char *text;
                int e;
                long u = rand_r(&seed) % users;
                snprintf(r.device_id, sizeof(r.device_id), "d-%07ld", u);
                snprintf(r.user_id, sizeof(r.user_id), "u-%07ld", u);
                r.lat = asin(2.0 * rand_r(&seed) / RAND_MAX - 1) * 180 / M_PI;
                r.lon = 360.0 * rand_r(&seed) / RAND_MAX - 180;
                r.accuracy_m = 20;
                r.ts_ms = now - 86400000LL + i; /* rising, a day ago */
                r.received_ms = now;
                text = report_encode(&r);
                while ((e = bus_produce(p, argv[2], r.user_id, strlen(r.user_id), text,
                                        strlen(text), NULL)) == -ENOBUFS)
                        usleep(1000);
                free(text);
                if (e < 0)
                        return 1;
        }
        if (bus_producer_flush(p, 60000) < 0)
                fprintf(stderr, "some reports were still undelivered after 60 s\n");
        p = bus_producer_free(p);
        printf("produced %ld reports (%ld failed)\n", atomic_load(&delivered),
               atomic_load(&failed));
        return atomic_load(&failed) ? 1 : 0;
}
