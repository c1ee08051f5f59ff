/*
 * homing — one binary, several subcommands, like the tools operators know.
 */
#include <stdio.h>
#include <string.h>

#include "base/config.h"
#include "cmd/commands.h"

struct command {
        const char *name;
        int (*run)(int argc, char **argv);
        const char *summary;
};

static int cmd_manual(int argc, char **argv);
static int cmd_completion(int argc, char **argv);

static const struct command commands[] = {
        { "serve", cmd_serve, "the HTTP API: location ingest, REST, health, metrics, dashboard" },
        { "schedule", cmd_schedule,
          "consume location reports, decide placements, publish the outbox" },
        { "relay", cmd_relay, "publish the outbox to Kafka (schedule runs one too)" },
        { "migrate", cmd_migrate, "apply pending SQL migrations and create the Kafka topics" },
        { "standalone", cmd_standalone, "serve, schedule and relay in one process, for a laptop" },
        { "agent", cmd_agent,
          "the transfer agent of one or more datacenters: moves snapshot images" },
        { "snapshot", cmd_snapshot,
          "register a new snapshot version written at a datacenter's store" },
        { "diff", cmd_diff, "what differs between two versions of a snapshot in a store" },
        { "compose", cmd_compose,
          "write a new version from a base version and chosen items of another" },
        { "token", cmd_token,
          "make device-token keys, device tokens, operator tokens and agent tokens" },
        { "simulate", cmd_simulate, "a simulated fleet's reports and restores, as JSON lines" },
        { "replay", cmd_replay,
          "placement policies over a recorded history, side by side: restore distances, bytes" },
        { "config", cmd_config, "print the effective settings and where each came from" },
        { "routes", cmd_routes, "list the HTTP routes and who may call them" },
        { "nearest", cmd_nearest,
          "print the k nearest datacenters for each \"lat lon\" line on stdin" },
        { "manual", cmd_manual, "print this manual as a man page (roff): homing(1)" },
        { "completion", cmd_completion, "print the bash completion script (completion bash)" },
};

#define N_COMMANDS (sizeof(commands) / sizeof(commands[0]))

/* homing(1), from the tables --help prints: the commands above and config.c's settings. */
static int cmd_manual(int argc, char **argv) {
        if (argc > 1) {
                fprintf(stderr, "usage: homing manual > homing.1\n");
                return 2;
        }
        printf(".TH HOMING 1 \"\" \"homing %s\" \"homing manual\"\n"
               ".SH NAME\n"
               "homing \\- keep each user's VM snapshot in the datacenter nearest to the user\n"
               ".SH SYNOPSIS\n"
               ".B homing\n"
               ".I command\n"
               ".RI [ options ]\n"
               ".SH DESCRIPTION\n"
               "Devices post their location; the API puts every report on Kafka; the scheduler\n"
               "finds the nearest eligible datacenter and queues a transfer of the snapshot;\n"
               "transfer agents move the images. PostgreSQL holds the truth.\n"
               ".SH COMMANDS\n",
               HOMING_VERSION);
        for (size_t i = 0; i < N_COMMANDS; i++)
                printf(".TP\n.B %s\n%s\n", commands[i].name, commands[i].summary);
        printf(".SH OPTIONS\n"
               "Every setting is a flag, an environment variable and a line\n"
               ".RB \"\" name \" = \" value\n"
               "of the configuration file; the flag wins, then the variable, then the file,\n"
               "then the default.\n"
               ".B homing config\n"
               "prints what is in effect and where each value came from.\n"
               "Some commands take flags of their own\n"
               "(\\fBhoming token\\fR, \\fBhoming snapshot\\fR, \\fBhoming simulate\\fR, \\fBhoming replay\\fR: see their \\fB\\-\\-help\\fR).\n");
        config_print_man(stdout);
        printf(".SH FILES\n"
               "The configuration file, the migrations and the dashboard: the defaults of\n"
               "\\fB\\-\\-config\\fR, \\fB\\-\\-migrations\\-dir\\fR and "
               "\\fB\\-\\-dashboard\\-dir\\fR above.\n"
               ".SH SEE ALSO\n"
               "The README beside the example configuration, homing.conf.example.\n");
        return 0;
}

/* Bash completion: the commands, then the settings' flags; a file name after a flag that names one. */
static int cmd_completion(int argc, char **argv) {
        if (argc != 2 || strcmp(argv[1], "bash") != 0) {
                fprintf(stderr, "usage: homing completion bash\n");
                return 2;
        }
        printf("# bash completion for homing, made by `homing completion bash`\n"
               "_homing() {\n"
               "  local cur=${COMP_WORDS[COMP_CWORD]} prev=${COMP_WORDS[COMP_CWORD-1]}\n"
               "  if [ \"$COMP_CWORD\" -eq 1 ]; then\n"
               "    COMPREPLY=($(compgen -W \"");
        for (size_t i = 0; i < N_COMMANDS; i++)
                printf("%s%s", i ? " " : "", commands[i].name);
        printf("\" -- \"$cur\"))\n"
               "    return\n"
               "  fi\n"
               "  case $prev in\n"
               "    --config|--store|--*-file|--*-dir|--*-cert|--*-key|--*-ca)\n"
               "      COMPREPLY=($(compgen -f -- \"$cur\")); return ;;\n"
               "  esac\n"
               "  [[ $cur == -* ]] || return\n"
               "  COMPREPLY=($(compgen -W \"$(cat <<'FLAGS'\n");
        config_print_flags(stdout);
        printf("FLAGS\n"
               ")\" -- \"$cur\"))\n"
               "}\n"
               "complete -F _homing homing\n");
        return 0;
}

static void usage(FILE *f) {
        fprintf(f, "usage: homing <command> [options]\n\ncommands:\n");
        for (size_t i = 0; i < N_COMMANDS; i++)
                fprintf(f, "  %-11s %s\n", commands[i].name, commands[i].summary);
        fprintf(f, "\nEvery setting is a flag (--pg-dsn ...), an environment variable\n"
                   "(HOMING_PG_DSN ...) and a line of the configuration file (pg-dsn = ...,\n"
                   "--config); the flag wins, then the variable, then the file.\n"
                   "'homing <command> --help' lists them; 'homing config' shows their values.\n");
}

int main(int argc, char **argv) {
        if (argc < 2) {
                usage(stderr);
                return 2;
        }
        if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
                usage(stdout);
                return 0;
        }
        for (size_t i = 0; i < N_COMMANDS; i++)
                if (!strcmp(argv[1], commands[i].name))
                        return commands[i].run(argc - 1, argv + 1);
        fprintf(stderr, "homing: unknown command '%s'\n\n", argv[1]);
        usage(stderr);
        return 2;
}
