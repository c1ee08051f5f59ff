/* Listening addresses through getaddrinfo: numeric or names, IPv4 or IPv6. */
#include "base/net.h"

#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int net_parse_listen(const char *listen, struct sockaddr_storage *addr, char *errbuf, size_t size) {
        struct addrinfo hints = { .ai_socktype = SOCK_STREAM,
                                  .ai_flags = AI_NUMERICSERV | AI_PASSIVE };
        struct addrinfo *res = NULL;
        const char *colon = listen ? strrchr(listen, ':') : NULL;
        char host[256];
        size_t n;
        int r;

        if (!colon || !colon[1]) {
                snprintf(errbuf, size, "'%s' is not host:port", listen ? listen : "(null)");
                return -EINVAL;
        }
        n = (size_t)(colon - listen);
        if (n >= sizeof(host)) {
                snprintf(errbuf, size, "host name too long");
                return -EINVAL;
        }
        memcpy(host, listen, n);
        host[n] = '\0';
        if (n >= 2 && host[0] == '[' && host[n - 1] == ']') {
                memmove(host, host + 1, n - 2);
                host[n - 2] = '\0';
        }
        r = getaddrinfo(host[0] ? host : NULL, colon + 1, &hints, &res);
        if (r != 0) {
                snprintf(errbuf, size, "'%s': %s", listen, gai_strerror(r));
                return -EINVAL;
        }
        memcpy(addr, res->ai_addr, res->ai_addrlen);
        freeaddrinfo(res);
        return 0;
}

char *net_read_pem(const char *path, char *errbuf, size_t size) {
        FILE *f = fopen(path, "rb");
        char *text = NULL;
        size_t len = 0;
        long n;

        if (f && fseek(f, 0, SEEK_END) == 0 && (n = ftell(f)) > 0 && n < (1 << 20) &&
            fseek(f, 0, SEEK_SET) == 0 && (text = malloc((size_t)n + 1)))
                len = fread(text, 1, (size_t)n, f);
        if (!text || len == 0) {
                snprintf(errbuf, size, "cannot read %s: %s", path,
                         f ? "empty or too large" : strerror(errno));
                if (f)
                        fclose(f);
                free(text);
                return NULL;
        }
        fclose(f);
        text[len] = '\0';
        return text;
}
