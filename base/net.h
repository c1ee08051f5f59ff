/*
 * net — the addresses homing listens on, as operators write them.
 */
#pragma once

#include <stddef.h>
#include <sys/socket.h>

/*
 * "host:port", "[v6]:port" or ":port" (all addresses) into an address to
 * bind; a port of 0 lets the kernel choose. Returns 0, or -EINVAL with
 * `errbuf` saying why.
 */
int net_parse_listen(const char *listen, struct sockaddr_storage *addr, char *errbuf,
                     size_t size);
