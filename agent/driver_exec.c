/*
 * The exec driver: every action runs the operator's command (/bin/sh -c)
 * with what it concerns in its environment (driver.h). The command's exit
 * status is the result and its stderr's last line the reason; `list`
 * reads "<snapshot> <version> <epoch>" lines from its stdout. A command
 * that overruns its time is killed.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdbool.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "agent/driver_impl.h"

#define OUTPUT_MAX (1u << 20)

extern char **environ;

struct exec_driver {
        struct driver base;
        char *command;
        char datacenter[65];
        long timeout_s;
};

/* What a run printed, bounded. */
struct output {
        char *data;
        size_t len;
};

static void output_add(struct output *o, const char *buf, size_t n) {
        char *grown;

        if (o->len + n > OUTPUT_MAX || !(grown = realloc(o->data, o->len + n + 1)))
                return; /* beyond the bound: the rest is dropped */
        memcpy(grown + o->len, buf, n);
        o->data = grown;
        o->len += n;
        o->data[o->len] = '\0';
}

/* The last non-empty line of the text into err. */
static void last_line(const struct output *o, char *err, size_t err_size) {
        size_t end = o->len, start;

        while (end > 0 && (o->data[end - 1] == '\n' || o->data[end - 1] == '\r'))
                end--;
        start = end;
        while (start > 0 && o->data[start - 1] != '\n')
                start--;
        if (end > start)
                snprintf(err, err_size, "%.*s", (int)(end - start), o->data + start);
}

static double now_s(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/*
 * Runs the command with `vars` (NULL-ended "NAME=value" strings) added to
 * the environment; its stdout into *out (may be NULL). 0 when it exited 0,
 * else -EIO with err saying why (its stderr's last line, or how it ended).
 */
static int run(struct exec_driver *d, char *const *vars, struct output *out, char *err,
               size_t err_size) {
        int out_pipe[2] = { -1, -1 }, err_pipe[2] = { -1, -1 }, status = 0, r = 0;
        struct output stdout_text = { 0 }, stderr_text = { 0 };
        posix_spawn_file_actions_t actions;
        posix_spawnattr_t attr;
        sigset_t none, all;
        char *argv[] = { "/bin/sh", "-c", d->command, NULL }, **env = NULL;
        size_t n_env = 0, n_vars = 0;
        double deadline = now_s() + (double)d->timeout_s;
        bool timed_out = false;
        pid_t pid;

        while (environ[n_env])
                n_env++;
        while (vars[n_vars])
                n_vars++;
        env = calloc(n_env + n_vars + 1, sizeof(*env));
        if (!env)
                return -ENOMEM;
        memcpy(env, vars, n_vars * sizeof(*env));
        memcpy(env + n_vars, environ, n_env * sizeof(*env)); /* ours first: they win */
        if (pipe2(out_pipe, O_CLOEXEC) < 0 || pipe2(err_pipe, O_CLOEXEC) < 0) {
                r = -errno;
                snprintf(err, err_size, "pipe: %s", strerror(errno));
                goto out;
        }
        posix_spawn_file_actions_init(&actions);
        posix_spawn_file_actions_adddup2(&actions, out_pipe[1], STDOUT_FILENO);
        posix_spawn_file_actions_adddup2(&actions, err_pipe[1], STDERR_FILENO);
        posix_spawn_file_actions_addopen(&actions, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
        /* The command starts with no signal blocked and default handlers,
         * whatever this process's threads do with theirs. */
        posix_spawnattr_init(&attr);
        sigemptyset(&none);
        sigfillset(&all);
        posix_spawnattr_setsigmask(&attr, &none);
        posix_spawnattr_setsigdefault(&attr, &all);
        posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
        r = -posix_spawn(&pid, argv[0], &actions, &attr, argv, env);
        posix_spawnattr_destroy(&attr);
        posix_spawn_file_actions_destroy(&actions);
        close(out_pipe[1]);
        close(err_pipe[1]);
        out_pipe[1] = err_pipe[1] = -1;
        if (r < 0) {
                snprintf(err, err_size, "cannot run %s: %s", argv[0], strerror(-r));
                goto out;
        }
        for (;;) {
                struct pollfd fds[2] = { { out_pipe[0], POLLIN, 0 }, { err_pipe[0], POLLIN, 0 } };
                double left = deadline - now_s();
                char buf[4096];
                int ready;

                if (fds[0].fd < 0 && fds[1].fd < 0)
                        break;
                if (left <= 0) {
                        timed_out = true;
                        kill(pid, SIGKILL);
                        break;
                }
                ready = poll(fds, 2, (int)(left * 1000) + 1);
                if (ready < 0 && errno != EINTR)
                        break;
                for (int i = 0; i < 2 && ready > 0; i++) {
                        int *fd = i == 0 ? &out_pipe[0] : &err_pipe[0];
                        ssize_t got;
                        if (!(fds[i].revents & (POLLIN | POLLHUP | POLLERR)))
                                continue;
                        got = read(*fd, buf, sizeof(buf));
                        if (got > 0) {
                                output_add(i == 0 ? &stdout_text : &stderr_text, buf, (size_t)got);
                        } else if (got == 0 || errno != EINTR) {
                                close(*fd);
                                *fd = -1;
                        }
                }
        }
        while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
                ;
        if (timed_out) {
                snprintf(err, err_size, "the command ran longer than %ld s and was killed",
                         d->timeout_s);
                r = -ETIMEDOUT;
        } else if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
                if (WIFEXITED(status))
                        snprintf(err, err_size, "the command exited with %d", WEXITSTATUS(status));
                else
                        snprintf(err, err_size, "the command died of signal %d", WTERMSIG(status));
                last_line(&stderr_text, err, err_size);
                r = -EIO;
        }
        if (r == 0 && out) {
                *out = stdout_text;
                stdout_text.data = NULL;
        }
out:
        for (int i = 0; i < 2; i++) {
                if (out_pipe[i] >= 0)
                        close(out_pipe[i]);
                if (err_pipe[i] >= 0)
                        close(err_pipe[i]);
        }
        free(stdout_text.data);
        free(stderr_text.data);
        free(env);
        return r;
}

static int ex_activate(struct driver *base, const struct driver_spec *spec, char *err,
                       size_t err_size) {
        struct exec_driver *d = (struct exec_driver *)base;
        char *vars[8] = { 0 };
        int r = 0;

        if (asprintf(&vars[0], "HOMING_ACTION=activate") < 0 ||
            asprintf(&vars[1], "HOMING_SNAPSHOT=%s", spec->snapshot_id) < 0 ||
            asprintf(&vars[2], "HOMING_VERSION=%lld", (long long)spec->version) < 0 ||
            asprintf(&vars[3], "HOMING_EPOCH=%lld", (long long)spec->epoch) < 0 ||
            asprintf(&vars[4], "HOMING_IMAGE=%s", spec->image) < 0 ||
            asprintf(&vars[5], "HOMING_CONFIG=%s", spec->config) < 0 ||
            asprintf(&vars[6], "HOMING_DATACENTER=%s", d->datacenter) < 0)
                r = -ENOMEM;
        if (r == 0)
                r = run(d, vars, NULL, err, err_size);
        for (size_t i = 0; i < 7; i++)
                free(vars[i]);
        return r;
}

static int ex_deactivate(struct driver *base, const char *snapshot, char *err, size_t err_size) {
        struct exec_driver *d = (struct exec_driver *)base;
        char *vars[4] = { 0 };
        int r = 0;

        if (asprintf(&vars[0], "HOMING_ACTION=deactivate") < 0 ||
            asprintf(&vars[1], "HOMING_SNAPSHOT=%s", snapshot) < 0 ||
            asprintf(&vars[2], "HOMING_DATACENTER=%s", d->datacenter) < 0)
                r = -ENOMEM;
        if (r == 0)
                r = run(d, vars, NULL, err, err_size);
        for (size_t i = 0; i < 3; i++)
                free(vars[i]);
        return r;
}

static int ex_list(struct driver *base, struct driver_vm **vms, size_t *n, char *err,
                   size_t err_size) {
        struct exec_driver *d = (struct exec_driver *)base;
        struct output text = { 0 };
        char *vars[3] = { 0 }, *save = NULL;
        size_t cap = 0;
        int r = 0;

        if (asprintf(&vars[0], "HOMING_ACTION=list") < 0 ||
            asprintf(&vars[1], "HOMING_DATACENTER=%s", d->datacenter) < 0)
                r = -ENOMEM;
        if (r == 0)
                r = run(d, vars, &text, err, err_size);
        for (char *line = r == 0 && text.data ? strtok_r(text.data, "\n", &save) : NULL;
             line && r == 0; line = strtok_r(NULL, "\n", &save)) {
                struct driver_vm vm = { 0 };
                long long version, epoch;
                char extra;
                if (line[strspn(line, " \t\r")] == '\0')
                        continue;
                if (sscanf(line, "%64s %lld %lld %c", vm.snapshot_id, &version, &epoch, &extra) !=
                    3) {
                        snprintf(err, err_size,
                                 "the command's list has a line that is not \"<snapshot> "
                                 "<version> <epoch>\": %.100s",
                                 line);
                        r = -EBADMSG;
                        break;
                }
                vm.version = version;
                vm.epoch = epoch;
                if (*n == cap) {
                        struct driver_vm *grown = realloc(*vms, (cap * 2 + 8) * sizeof(**vms));
                        if (!grown) {
                                r = -ENOMEM;
                                break;
                        }
                        *vms = grown;
                        cap = cap * 2 + 8;
                }
                (*vms)[(*n)++] = vm;
        }
        if (r < 0) {
                free(*vms);
                *vms = NULL;
                *n = 0;
        }
        free(text.data);
        for (size_t i = 0; i < 2; i++)
                free(vars[i]);
        return r;
}

static void ex_free(struct driver *base) {
        struct exec_driver *d = (struct exec_driver *)base;

        free(d->command);
        free(d);
}

static const struct driver_ops exec_ops = { ex_free, ex_activate, ex_deactivate, ex_list };

int driver_exec_new(const char *command, const char *datacenter, long timeout_s,
                    struct driver **out) {
        struct exec_driver *d = calloc(1, sizeof(*d));

        if (!d || !(d->command = strdup(command))) {
                free(d);
                return -ENOMEM;
        }
        d->base.ops = &exec_ops;
        snprintf(d->datacenter, sizeof(d->datacenter), "%s", datacenter);
        d->timeout_s = timeout_s;
        *out = &d->base;
        return 0;
}
