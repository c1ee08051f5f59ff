/*
 * The API's PostgreSQL: a small pool of connections. Operators' requests
 * run concurrently on the HTTP threads; each takes one connection for the
 * request and gives it back, rolled back whatever it left open.
 */
#include "api/pool.h"

#include <errno.h>
#include <stdlib.h>

#include "api/request.h"
#include "store/store.h"

int api_pool_init(struct api_pool *pool, const char *dsn, size_t n, long statement_timeout_ms) {
        int r;

        pthread_mutex_init(&pool->lock, NULL);
        pthread_cond_init(&pool->freed, NULL);
        pool->conns = calloc(n, sizeof(*pool->conns));
        pool->busy = calloc(n, sizeof(*pool->busy));
        if (!pool->conns || !pool->busy)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                r = store_connect_with_timeout(dsn, statement_timeout_ms, &pool->conns[i]);
                if (r < 0)
                        return r;
                pool->n++;
        }
        return 0;
}

void api_pool_fini(struct api_pool *pool) {
        for (size_t i = 0; i < pool->n; i++)
                store_free(pool->conns[i]);
        free(pool->conns);
        free(pool->busy);
        pool->conns = NULL;
        pool->busy = NULL;
        pool->n = 0;
        pthread_cond_destroy(&pool->freed);
        pthread_mutex_destroy(&pool->lock);
}

struct store *api_db_acquire(struct api_pool *pool) {
        struct store *db = NULL;

        pthread_mutex_lock(&pool->lock);
        while (!db) {
                for (size_t i = 0; i < pool->n && !db; i++) {
                        if (!pool->busy[i]) {
                                pool->busy[i] = true;
                                db = pool->conns[i];
                        }
                }
                if (!db)
                        pthread_cond_wait(&pool->freed, &pool->lock);
        }
        pthread_mutex_unlock(&pool->lock);
        return db;
}

void api_db_release(struct api_pool *pool, struct store *db) {
        if (!db)
                return;
        store_rollback(db);
        pthread_mutex_lock(&pool->lock);
        for (size_t i = 0; i < pool->n; i++)
                if (pool->conns[i] == db)
                        pool->busy[i] = false;
        pthread_cond_signal(&pool->freed);
        pthread_mutex_unlock(&pool->lock);
}

int api_exec(struct request *req, const char *sql, int n, const char *const *params,
             struct store_result **out) {
        if (!req->db)
                return -EINVAL;
        return store_exec(req->db, sql, n, params, out);
}

int api_fetch_one(struct request *req, const char *sql, int n, const char *const *params,
                  struct store_result **out) {
        struct store_result *res = NULL;
        int r = api_exec(req, sql, n, params, &res);

        if (r < 0)
                return r;
        if (store_rows(res) == 0) {
                store_result_free(res);
                *out = NULL;
                return 0;
        }
        *out = res;
        return 1;
}
