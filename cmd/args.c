/*
 * A subcommand's own flags taken out of argv before the shared settings
 * read the rest: one pass, the flag and its value (or --flag=value) moved
 * into place, what is left compacted.
 */
#include "cmd/args.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
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

char *cmd_read_file(const char *path, size_t *len) {
        FILE *f = fopen(path, "rb");
        char *buf = NULL;
        size_t cap = 0, n = 0;

        if (!f)
                return NULL;
        for (;;) {
                if (cap - n < 65536) {
                        char *more = realloc(buf, cap ? 2 * cap : 65536);
                        if (!more) {
                                free(buf);
                                fclose(f);
                                errno = ENOMEM;
                                return NULL;
                        }
                        buf = more;
                        cap = cap ? 2 * cap : 65536;
                }
                size_t got = fread(buf + n, 1, cap - n - 1, f);
                n += got;
                if (got == 0)
                        break;
        }
        if (ferror(f)) {
                free(buf);
                fclose(f);
                errno = EIO;
                return NULL;
        }
        fclose(f);
        buf[n] = '\0';
        *len = n;
        return buf;
}
