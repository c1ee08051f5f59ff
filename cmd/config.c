/*
 * homing config: the settings a command would run with, each with where it
 * came from (default, file and line, variable or flag), secrets masked.
 */
#include <stdio.h>

#include "base/config.h"
#include "cmd/commands.h"

int cmd_config(int argc, char **argv) {
        struct config cfg;
        int r = config_load(&cfg, argc, argv,
                            "homing config [options]: print the effective settings and where "
                            "each came from (secrets masked)");
        if (r != 0)
                return r < 0 ? 2 : 0;
        config_print(stdout, &cfg);
        config_fini(&cfg);
        return 0;
}
