/*
 * pool — the API's PostgreSQL connections: one per request at a time, and
 * the two ways to run a statement on the request's.
 */
#pragma once

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>

struct request;
struct store;
struct store_result;

struct api_pool {
        pthread_mutex_t lock;
        pthread_cond_t freed;
        struct store **conns;
        bool *busy;
        size_t n;
};

/* `n` connections, each statement limited to `statement_timeout_ms` (0: none). 0 or <0. */
int api_pool_init(struct api_pool *pool, const char *dsn, size_t n, long statement_timeout_ms);
void api_pool_fini(struct api_pool *pool);
/* Waits for a free connection. */
struct store *api_db_acquire(struct api_pool *pool);
/* Rolls back whatever is open and hands the connection back. NULL is fine. */
void api_db_release(struct api_pool *pool, struct store *db);

/* Runs one statement on req->db. 0 or <0 (-EINVAL without a connection). */
int api_exec(struct request *req, const char *sql, int n, const char *const *params,
             struct store_result **out);

/* Runs a query on req->db: 1 and the rows when there is one at least, 0 (and
 * *out NULL) when none, <0 on failure. */
int api_fetch_one(struct request *req, const char *sql, int n, const char *const *params,
                  struct store_result **out);
