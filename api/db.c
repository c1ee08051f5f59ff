/*
 * The API's PostgreSQL: a small pool of connections (operators' requests
 * run concurrently on the HTTP threads; each takes one connection for the
 * request and gives it back), and the audit events every operator action
 * writes to the outbox in its own transaction. The scheduler's relay
 * publishes them to the audit topic.
 */
#include <errno.h>
#include <jansson.h>
#include <stdlib.h>

#include "api/internal.h"
#include "base/config.h"
#include "store/store.h"

int api_pool_init(struct api_pool *pool, const char *dsn, size_t n) {
        int r;

        pthread_mutex_init(&pool->lock, NULL);
        pthread_cond_init(&pool->freed, NULL);
        pool->conns = calloc(n, sizeof(*pool->conns));
        pool->busy = calloc(n, sizeof(*pool->busy));
        if (!pool->conns || !pool->busy)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                r = store_connect(dsn, &pool->conns[i]);
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

struct store *api_db_acquire(struct api *a) {
        struct api_pool *pool = &a->pool;
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

void api_db_release(struct api *a, struct store *db) {
        struct api_pool *pool = &a->pool;

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

int api_audit(struct request *req, const char *type, const char *subject, json_t *data) {
        char *text;
        int r;

        if (!data)
                return -ENOMEM;
        json_object_set_new(data, "actor", api_actor_json(req));
        text = json_dumps(data, JSON_COMPACT | JSON_REAL_PRECISION(15));
        json_decref(data);
        if (!text)
                return -ENOMEM;
        {
                const char *params[4] = { req->api->cfg->topic_audit, subject, type, text };
                /* The id is drawn once, here, and travels with the row: a resend by the
                 * relay carries the same id, so consumers can drop duplicates. */
                r = api_exec(req,
                             "INSERT INTO outbox (topic, key, payload)"
                             " SELECT $1, $2, jsonb_build_object('specversion', '1.0',"
                             "  'id', 'api-' || gen_random_uuid(), 'source', '/homing/api',"
                             "  'type', $3::text, 'time', homing_time(now()), 'subject', $2::text,"
                             "  'datacontenttype', 'application/json', 'data', $4::jsonb)",
                             4, params, NULL);
        }
        free(text);
        return r;
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
