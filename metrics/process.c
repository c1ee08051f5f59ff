/*
 * The process's own numbers, read from /proc/self when scraped, under the
 * names every Prometheus client library uses, so the usual dashboards and
 * alerts (restarts, CPU, memory, file descriptors) work unchanged.
 */
#include "metrics/metrics.h"

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

struct proc_stat {
        double utime, stime; /* clock ticks */
        double threads;
        double starttime; /* clock ticks after boot */
        double vsize;     /* bytes */
        double rss;       /* pages */
};

/* Fields of /proc/self/stat after the command name. Returns 0 or -EIO. */
static int read_stat(struct proc_stat *st) {
        char text[1024], *p;
        size_t n;
        FILE *f = fopen("/proc/self/stat", "re");
        int field = 3;

        if (!f)
                return -EIO;
        n = fread(text, 1, sizeof(text) - 1, f);
        fclose(f);
        text[n] = '\0';
        /* The command name is in parentheses and may hold spaces: skip to the last ')'. */
        p = strrchr(text, ')');
        if (!p)
                return -EIO;
        for (p++; *p && field <= 24; field++) {
                char *end;
                double v;
                while (*p == ' ')
                        p++;
                v = strtod(p, &end);
                switch (field) {
                case 14:
                        st->utime = v;
                        break;
                case 15:
                        st->stime = v;
                        break;
                case 20:
                        st->threads = v;
                        break;
                case 22:
                        st->starttime = v;
                        break;
                case 23:
                        st->vsize = v;
                        break;
                case 24:
                        st->rss = v;
                        return 0;
                default:
                        break;
                }
                if (end == p) {
                        while (*p && *p != ' ')
                                p++;
                } else {
                        p = end;
                }
        }
        return -EIO;
}

static double boot_time(void) {
        char line[256];
        double btime = NAN;
        FILE *f = fopen("/proc/stat", "re");

        if (!f)
                return NAN;
        while (fgets(line, sizeof(line), f))
                if (!strncmp(line, "btime ", 6))
                        btime = strtod(line + 6, NULL);
        fclose(f);
        return btime;
}

static void collect_cpu(void *userdata, struct metrics_emitter *e) {
        struct proc_stat st;
        if (read_stat(&st) == 0)
                metrics_emit(e, NULL, (st.utime + st.stime) / (double)sysconf(_SC_CLK_TCK));
}

static double resident_bytes(void *userdata) {
        struct proc_stat st;
        return read_stat(&st) == 0 ? st.rss * (double)sysconf(_SC_PAGESIZE) : NAN;
}

static double virtual_bytes(void *userdata) {
        struct proc_stat st;
        return read_stat(&st) == 0 ? st.vsize : NAN;
}

static double threads(void *userdata) {
        struct proc_stat st;
        return read_stat(&st) == 0 ? st.threads : NAN;
}

static double open_fds(void *userdata) {
        DIR *d = opendir("/proc/self/fd");
        struct dirent *de;
        double n = 0;

        if (!d)
                return NAN;
        while ((de = readdir(d)))
                if (de->d_name[0] != '.')
                        n++;
        closedir(d);
        return n - 1; /* the directory's own descriptor */
}

static double max_fds(void *userdata) {
        struct rlimit rl;
        if (getrlimit(RLIMIT_NOFILE, &rl) < 0 || rl.rlim_cur == RLIM_INFINITY)
                return NAN;
        return (double)rl.rlim_cur;
}

int metrics_register_process(struct metrics *m) {
        struct metrics_gauge *start = NULL;
        struct proc_stat st;
        int r;

        r = metrics_gauge_register(m, "process_start_time_seconds",
                                   "Start time of the process since the Unix epoch in seconds.",
                                   NULL, &start);
        if (r < 0)
                return r;
        if (read_stat(&st) == 0)
                metrics_gauge_set(start, NULL,
                                  boot_time() + st.starttime / (double)sysconf(_SC_CLK_TCK));
        if ((r = metrics_counter_fn_labelled(m, "process_cpu_seconds_total",
                                             "Total user and system CPU time spent in seconds.",
                                             NULL, collect_cpu, NULL, NULL)) < 0 ||
            (r = metrics_gauge_fn(m, "process_resident_memory_bytes",
                                  "Resident memory size in bytes.", resident_bytes, NULL, NULL)) <
                    0 ||
            (r = metrics_gauge_fn(m, "process_virtual_memory_bytes",
                                  "Virtual memory size in bytes.", virtual_bytes, NULL, NULL)) <
                    0 ||
            (r = metrics_gauge_fn(m, "process_open_fds", "Number of open file descriptors.",
                                  open_fds, NULL, NULL)) < 0 ||
            (r = metrics_gauge_fn(m, "process_max_fds", "Maximum number of open file descriptors.",
                                  max_fds, NULL, NULL)) < 0 ||
            (r = metrics_gauge_fn(m, "process_threads", "Number of OS threads in the process.",
                                  threads, NULL, NULL)) < 0)
                return r;
        return 0;
}
