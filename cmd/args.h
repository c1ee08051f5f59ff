/*
 * A subcommand's own flags (--snapshot S, --version=3) taken out of argv,
 * so that what is left goes to config_load() with the shared settings.
 */
#pragma once

#include <stddef.h>

struct cmd_flag {
        const char *flag;   /* "--snapshot" */
        const char **value; /* where its value goes (borrowed from argv) */
};

/*
 * Moves the values of `flags` out of argv (argv[0] stays) and compacts the
 * rest; *out_argc is what is left. Returns 0, or -EINVAL when a flag lacks
 * its value (said on stderr, naming `command`).
 */
int cmd_take_flags(const char *command, int argc, char **argv, const struct cmd_flag *flags,
                   int *out_argc);

/*
 * Reads a whole file into a malloc'd, NUL-terminated buffer (*len bytes
 * before the NUL). NULL with errno set when it cannot.
 */
char *cmd_read_file(const char *path, size_t *len);
