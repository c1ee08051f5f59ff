/*
 * The subcommands of the homing binary. Each takes the arguments after its
 * own name (argv[0] is the subcommand) and returns the process exit status.
 */
#pragma once

int cmd_serve(int argc, char **argv);
int cmd_schedule(int argc, char **argv);
int cmd_migrate(int argc, char **argv);
int cmd_relay(int argc, char **argv);
int cmd_standalone(int argc, char **argv);
int cmd_nearest(int argc, char **argv);
int cmd_token(int argc, char **argv);
int cmd_routes(int argc, char **argv);
int cmd_agent(int argc, char **argv);
int cmd_snapshot(int argc, char **argv);
int cmd_simulate(int argc, char **argv);
int cmd_replay(int argc, char **argv);
int cmd_diff(int argc, char **argv);
int cmd_compose(int argc, char **argv);
int cmd_config(int argc, char **argv);
