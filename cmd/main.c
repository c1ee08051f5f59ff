/*
 * homing — one binary, several subcommands, like the tools operators know.
 */
#include <stdio.h>
#include <string.h>

#include "cmd/commands.h"

struct command {
        const char *name;
        int (*run)(int argc, char **argv);
        const char *summary;
};

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
        { "token", cmd_token,
          "make device-token keys, device tokens, operator tokens and agent tokens" },
        { "config", cmd_config, "print the effective settings and where each came from" },
        { "routes", cmd_routes, "list the HTTP routes and who may call them" },
        { "nearest", cmd_nearest,
          "print the k nearest datacenters for each \"lat lon\" line on stdin" },
};

static void usage(FILE *f) {
        fprintf(f, "usage: homing <command> [options]\n\ncommands:\n");
        for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
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
        for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
                if (!strcmp(argv[1], commands[i].name))
                        return commands[i].run(argc - 1, argv + 1);
        fprintf(stderr, "homing: unknown command '%s'\n\n", argv[1]);
        usage(stderr);
        return 2;
}
