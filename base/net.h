/*
 * net — the addresses homing listens on, as operators write them.
 */
#pragma once

#include <stddef.h>
#include <sys/socket.h>

#include "base/must-check.h"

/*
 * "host:port", "[v6]:port" or ":port" (all addresses) into an address to
 * bind; a port of 0 lets the kernel choose. Returns 0, or -EINVAL with
 * `errbuf` saying why.
 */
int net_parse_listen(const char *listen, struct sockaddr_storage *addr, char *errbuf,
                     size_t size) MUST_CHECK;

/*
 * A listener's PEM file (certificate chain or key), whole, NUL-terminated,
 * at most 1 MiB. Returns it (the caller frees), or NULL with `errbuf`
 * saying why.
 */
char *net_read_pem(const char *path, char *errbuf, size_t size);

/* The TLS versions homing's listeners offer (a GnuTLS priority string): 1.2 and 1.3. */
#define NET_TLS_PRIORITIES "NORMAL:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2"
