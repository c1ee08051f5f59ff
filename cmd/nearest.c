/* homing nearest — placeholder until the geo engine lands (issue 3). */
#include <stdio.h>

#include "cmd/commands.h"

int cmd_nearest(int argc, char **argv) {
        fprintf(stderr, "homing nearest: not built yet\n");
        return 1;
}
