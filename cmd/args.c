/*
 * A subcommand's own flags taken out of argv before the shared settings
 * read the rest: one pass, the flag and its value (or --flag=value) moved
 * into place, what is left compacted.
 */
#include "cmd/args.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

int cmd_take_flags(const char *command, int argc, char **argv, const struct cmd_flag *flags,
                   int *out_argc) {
        int n = 1;

        for (int i = 1; i < argc; i++) {
                bool ours = false;
                for (const struct cmd_flag *f = flags; f->flag && !ours; f++) {
                        size_t len = strlen(f->flag);
                        if (!strcmp(argv[i], f->flag)) {
                                if (i + 1 >= argc) {
                                        fprintf(stderr, "homing %s: %s needs a value\n", command,
                                                argv[i]);
                                        return -EINVAL;
                                }
                                *f->value = argv[++i];
                                ours = true;
                        } else if (!strncmp(argv[i], f->flag, len) && argv[i][len] == '=') {
                                *f->value = argv[i] + len + 1;
                                ours = true;
                        }
                }
                if (!ours)
                        argv[n++] = argv[i];
        }
        *out_argc = n;
        return 0;
}
