/*
 * peer — the source side: an agent's HTTP server that answers the agents
 * pulling from its datacenters (agent/README.md, "Agent to agent"). It
 * serves a snapshot version or a template only to the holder of a running
 * transfer's pull ticket, which it checks with the API.
 */
#pragma once

#include <stddef.h>
#include <stdint.h>

struct peer;
struct metrics;

/* A datacenter this process serves, with its store and its API client's settings. */
struct peer_site {
        const char *datacenter;
        const char *store;
        const char *token; /* the datacenter's agent token, to check tickets with */
};

/*
 * Listens on `listen` (host:port; port 0: any) for the `n` sites (borrowed:
 * they must outlive the server), over HTTPS when `tls` has a certificate
 * (copied). `api_url` is where tickets are checked.
 * At most `max_streams` block streams at once (503 beyond). Returns 0, or
 * -EADDRINUSE, -ENOMEM.
 */
struct peer_tls {
        const char *cert_pem, *key_pem; /* both NULL: plain HTTP */
        const char *ca; /* CA file to check the API's certificate; NULL: the system's */
};

int peer_start(const char *listen, const char *api_url, const struct peer_tls *tls,
               const struct peer_site *sites, size_t n, long max_streams, struct peer **out);
struct peer *peer_stop(struct peer *p);

/* The port it listens on. */
uint16_t peer_port(const struct peer *p);

/* Bytes of chunk streams sent so far. */
uint64_t peer_bytes_sent(const struct peer *p);
