/*
 * PostgreSQL through libpq. Every statement is parameterised: values never
 * become part of SQL text. Failures are logged here once, with the SQLSTATE,
 * and passed up as negative errno values. Arrays travel as PostgreSQL's
 * text form (many rows in one parameter), written and parsed at the end.
 */
#include "store/store.h"

#include <assert.h>
#include <dirent.h>
#include <errno.h>
#include <libpq-fe.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "base/hash.h"
#include "base/log.h"

/* A statement sent in a pipeline, its answer not read yet. */
struct store_sent {
        const char *sql; /* for the log; the caller's, alive until the end */
        struct store_result **out;
        int prepared; /* a PREPARE of prepared[prepared]; -1: a statement */
};

/*
 * The statements prepared on the connection, by their text, for pipelines:
 * parsed and planned once per connection, not once per batch. `sent`: its
 * PREPARE is in the pipeline under way, not yet answered.
 */
#define STORE_PREPARED_MAX 64

struct store_prepared {
        uint64_t hash;
        char *sql;
        unsigned serial; /* its name: homing_<serial>, never reused on a connection */
        bool sent;
};

struct store {
        PGconn *conn;
        char *dsn;
        char timeout[48]; /* "-c statement_timeout=N", or "" */
        char error[320];  /* the last failure: "SQLSTATE message" */
        bool pipelining;
        bool synced;        /* the pipeline's end is sent: only answers to read */
        int pipeline_error; /* the first failure to send, reported at the end */
        struct store_sent *sent;
        size_t n_sent, cap_sent;
        struct store_prepared prepared[STORE_PREPARED_MAX];
        size_t n_prepared;
        unsigned next_serial;
};

struct store_result {
        PGresult *res;
};

/* Server notices ("already exists, skipping") are for debugging, not for operators. */
static void on_notice(void *arg, const char *message) {
        log_debug("store", "%.*s", (int)strcspn(message, "\n"), message);
}

/*
 * libpq's arrays are read in order and a later value wins, so the defaults
 * go before the operator's conninfo (expanded from "dbname"): a
 * connect_timeout or options the DSN sets are the ones used.
 */
static PGconn *open_connection(const char *dsn, const char *options) {
        const char *const keys[] = { "connect_timeout", "options", "dbname", NULL };
        const char *const values[] = { STORE_CONNECT_TIMEOUT_S, options, dsn, NULL };
        PGconn *conn = PQconnectdbParams(keys, values, 1);

        if (PQstatus(conn) != CONNECTION_OK) {
                char msg[256];
                snprintf(msg, sizeof(msg), "%s", PQerrorMessage(conn));
                msg[strcspn(msg, "\n")] = '\0';
                log_error("store", "cannot connect to PostgreSQL: %s", msg);
                PQfinish(conn);
                return NULL;
        }
        PQsetNoticeProcessor(conn, on_notice, NULL);
        return conn;
}

int store_connect(const char *dsn, struct store **out) {
        return store_connect_with_timeout(dsn, 0, out);
}

int store_connect_with_timeout(const char *dsn, long statement_timeout_ms, struct store **out) {
        struct store *s = calloc(1, sizeof(*s));

        if (!s || !(s->dsn = strdup(dsn))) {
                free(s);
                return -ENOMEM;
        }
        if (statement_timeout_ms > 0)
                snprintf(s->timeout, sizeof(s->timeout), "-c statement_timeout=%ld",
                         statement_timeout_ms);
        s->conn = open_connection(dsn, s->timeout);
        if (!s->conn) {
                free(s->dsn);
                free(s);
                return -ECONNREFUSED;
        }
        *out = s;
        return 0;
}

/* A new connection has none of the old one's prepared statements. */
static void forget_prepared(struct store *s) {
        for (size_t i = 0; i < s->n_prepared; i++)
                free(s->prepared[i].sql);
        s->n_prepared = 0;
}

static void close_connection(struct store *s) {
        PQfinish(s->conn);
        s->conn = NULL;
        forget_prepared(s);
}

struct store *store_free(struct store *s) {
        if (!s)
                return NULL;
        close_connection(s);
        free(s->dsn);
        free(s->sent);
        free(s);
        return NULL;
}

/*
 * Whether an idle connection still stands: it reads what the server sent
 * meanwhile (libpq's socket never blocks). A server that was stopped said
 * goodbye (57P01) and closed: the first read takes the goodbye, the second
 * meets the end of the stream.
 */
static bool still_connected(PGconn *conn) {
        for (int i = 0; i < 2; i++)
                if (PQstatus(conn) != CONNECTION_OK || !PQconsumeInput(conn))
                        return false;
        return PQstatus(conn) == CONNECTION_OK;
}

/*
 * Re-opens a broken connection, but never inside a transaction: its work is
 * lost. Checked before each statement outside a transaction, so a restarted
 * server costs no failed statement.
 */
static int ensure_connected(struct store *s) {
        if (s->conn && still_connected(s->conn))
                return 0;
        close_connection(s);
        s->conn = open_connection(s->dsn, s->timeout);
        return s->conn ? 0 : -ECONNREFUSED;
}

/*
 * What a failure says about trying again. The data's own fault (a
 * constraint, a cardinality or data exception, a trigger's RAISE: -EIO)
 * comes back the same for the same input. A statement that does not fit the
 * database (a missing table, a permission: -EPROTO) fails for every input
 * until someone repairs it. A lost connection, a server shutting down or
 * short of resources (-ECONNRESET) and a conflict or timeout (-EAGAIN) may
 * pass by themselves.
 */
static int failure_class(PGconn *conn, const char *state) {
        static const char *const data_classes[] = { "21", "22", "23", "27", "P0" };

        if (PQstatus(conn) != CONNECTION_OK || !state)
                return -ECONNRESET;
        if (!strncmp(state, "08", 2) || !strncmp(state, "53", 2) || !strncmp(state, "58", 2) ||
            !strncmp(state, "57P", 3))
                return -ECONNRESET;
        if (!strcmp(state, STORE_SQLSTATE_STALE))
                return -ESTALE;
        if (!strcmp(state, "40001") || !strcmp(state, "40P01") || !strcmp(state, "55P03") ||
            !strcmp(state, "57014"))
                return -EAGAIN;
        for (size_t i = 0; i < sizeof(data_classes) / sizeof(data_classes[0]); i++)
                if (!strncmp(state, data_classes[i], 2))
                        return -EIO;
        return -EPROTO;
}

/* Records a failed statement's answer: its class, the message, one log line. */
static int failed(struct store *s, const char *sql, const PGresult *res) {
        const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
        int r = failure_class(s->conn, state);
        char msg[256];

        assert(r < 0); /* callers read *out after a 0 */
        snprintf(msg, sizeof(msg), "%s", res ? PQresultErrorMessage(res) : PQerrorMessage(s->conn));
        msg[strcspn(msg, "\n")] = '\0';
        snprintf(s->error, sizeof(s->error), "%s %s", state ? state : "none", msg);
        log_line(r == -EIO ? LOG_ERROR : LOG_WARN, "store", NULL, "%.60s: %s (SQLSTATE %s)", sql,
                 msg, state ? state : "none");
        return r;
}

/* Room for one more answer to wait for. Returns 0 or -ENOMEM. */
static int sent_room(struct store *s) {
        if (s->n_sent == s->cap_sent) {
                size_t cap = s->cap_sent ? 2 * s->cap_sent : 16;
                struct store_sent *grown = realloc(s->sent, cap * sizeof(*grown));
                if (!grown)
                        return -ENOMEM;
                s->sent = grown;
                s->cap_sent = cap;
        }
        return 0;
}

/*
 * Whether `sql` has a name on this connection ("homing_<serial>", into `name`),
 * its PREPARE sent first when it is new; false when there is no room for
 * more (the statement then goes unnamed) or the PREPARE could not be sent.
 */
static bool prepared_name(struct store *s, const char *sql, int n_params, char name[32]) {
        uint64_t hash = hash_fnv1a(sql);
        size_t i;

        for (i = 0; i < s->n_prepared; i++)
                if (s->prepared[i].hash == hash && !strcmp(s->prepared[i].sql, sql))
                        break;
        if (i < s->n_prepared) {
                snprintf(name, 32, "homing_%u", s->prepared[i].serial);
                return true;
        }
        if (i == STORE_PREPARED_MAX || sent_room(s) < 0 || !(s->prepared[i].sql = strdup(sql)))
                return false;
        s->prepared[i].serial = s->next_serial++;
        snprintf(name, 32, "homing_%u", s->prepared[i].serial);
        if (!PQsendPrepare(s->conn, name, sql, n_params, NULL)) {
                free(s->prepared[i].sql);
                return false;
        }
        s->prepared[i].hash = hash;
        s->prepared[i].sent = true;
        s->sent[s->n_sent++] = (struct store_sent){ sql, NULL, (int)i };
        s->n_prepared++;
        return true;
}

/* Sends a statement in the pipeline; a failure to send is kept for the end. */
static int pipeline_send(struct store *s, const char *sql, int n_params, const char *const *params,
                         struct store_result **out) {
        char name[32];
        bool named;
        int sent;

        if (s->synced)
                return -EBUSY; /* after the end was sent: nothing more goes in */
        if (s->pipeline_error)
                return 0;
        named = prepared_name(s, sql, n_params, name);
        if (sent_room(s) < 0) {
                s->pipeline_error = -ENOMEM;
                return 0;
        }
        sent = named ? PQsendQueryPrepared(s->conn, name, n_params, params, NULL, NULL, 0)
                     : PQsendQueryParams(s->conn, sql, n_params, NULL, params, NULL, NULL, 0);
        if (!sent) {
                s->pipeline_error = failed(s, sql, NULL);
                return 0;
        }
        s->sent[s->n_sent++] = (struct store_sent){ sql, out, -1 };
        return 0;
}

int store_pipeline_begin(struct store *s) {
        int r;

        if (s->pipelining)
                return -EBUSY;
        if (PQtransactionStatus(s->conn) == PQTRANS_IDLE || PQstatus(s->conn) != CONNECTION_OK)
                if ((r = ensure_connected(s)) < 0) {
                        snprintf(s->error, sizeof(s->error), "08006 cannot connect");
                        return r;
                }
        if (!PQenterPipelineMode(s->conn))
                return failed(s, "pipeline", NULL);
        s->pipelining = true;
        s->synced = false;
        s->pipeline_error = 0;
        s->n_sent = 0;
        return 0;
}

/* The next answer of the pipeline that is not a statement's end (NULL). */
static PGresult *next_result(PGconn *conn) {
        PGresult *res = PQgetResult(conn);
        return res ? res : PQgetResult(conn);
}

int store_pipeline_send(struct store *s) {
        if (!s->pipelining || s->synced)
                return -EINVAL;
        s->synced = true;
        if (!PQpipelineSync(s->conn) && s->pipeline_error == 0)
                s->pipeline_error = failed(s, "pipeline sync", NULL);
        return 0;
}

int store_pipeline_end(struct store *s) {
        int r;
        PGresult *res;

        if (!s->pipelining)
                return -EINVAL;
        if (!s->synced)
                (void)store_pipeline_send(s);
        r = s->pipeline_error;
        s->pipelining = false;
        /* Every answer is read, even after a failure: the connection goes on. */
        for (size_t i = 0; i < s->n_sent; i++) {
                ExecStatusType status;

                res = next_result(s->conn);
                if (!res) {
                        if (r == 0)
                                r = failed(s, s->sent[i].sql, NULL);
                        break;
                }
                status = PQresultStatus(res);
                if (s->sent[i].prepared >= 0 && status == PGRES_COMMAND_OK)
                        s->prepared[s->sent[i].prepared].sent = false;
                if (status == PGRES_COMMAND_OK || status == PGRES_TUPLES_OK) {
                        struct store_result *out = s->sent[i].out ? malloc(sizeof(*out)) : NULL;
                        if (out) {
                                out->res = res;
                                *s->sent[i].out = out;
                                continue;
                        }
                        if (s->sent[i].out && r == 0)
                                r = -ENOMEM;
                } else if (status != PGRES_PIPELINE_ABORTED && r == 0) {
                        r = failed(s, s->sent[i].sql, res);
                }
                PQclear(res);
        }
        /* Then the last statement's end and the sync's answer, if it comes. */
        for (int nulls = 0; nulls < 2 && PQstatus(s->conn) == CONNECTION_OK;) {
                res = PQgetResult(s->conn);
                if (!res) {
                        nulls++;
                        continue;
                }
                nulls = 0;
                if (PQresultStatus(res) == PGRES_PIPELINE_SYNC) {
                        PQclear(res);
                        break;
                }
                PQclear(res);
        }
        if (!PQexitPipelineMode(s->conn)) {
                /* Answers still due: the connection is of no further use. */
                if (r == 0)
                        r = failed(s, "pipeline end", NULL);
                close_connection(s);
        }
        /* A PREPARE that did not run (the pipeline failed before it) is not there. */
        for (size_t i = 0; i < s->n_prepared;) {
                if (s->prepared[i].sent) {
                        free(s->prepared[i].sql);
                        s->prepared[i] = s->prepared[--s->n_prepared];
                } else {
                        i++;
                }
        }
        if (r < 0)
                for (size_t i = 0; i < s->n_sent; i++)
                        if (s->sent[i].out)
                                *s->sent[i].out = store_result_free(*s->sent[i].out);
        s->n_sent = 0;
        return r;
}

int store_exec(struct store *s, const char *sql, int n_params, const char *const *params,
               struct store_result **out) {
        PGresult *res;
        ExecStatusType status;
        int r;

        if (s->pipelining)
                return pipeline_send(s, sql, n_params, params, out);
        if (PQtransactionStatus(s->conn) == PQTRANS_IDLE || PQstatus(s->conn) != CONNECTION_OK)
                if ((r = ensure_connected(s)) < 0) {
                        snprintf(s->error, sizeof(s->error), "08006 cannot connect");
                        return r;
                }

        res = PQexecParams(s->conn, sql, n_params, NULL, params, NULL, NULL, 0);
        status = PQresultStatus(res);
        if (status == PGRES_COMMAND_OK || status == PGRES_TUPLES_OK) {
                if (out) {
                        *out = malloc(sizeof(**out));
                        if (!*out) {
                                PQclear(res);
                                return -ENOMEM;
                        }
                        (*out)->res = res;
                } else {
                        PQclear(res);
                }
                return 0;
        }

        r = failed(s, sql, res);
        PQclear(res);
        return r;
}

int store_run(struct store *s, const char *sql) {
        return store_exec(s, sql, 0, NULL, NULL);
}

int store_begin(struct store *s) {
        return store_run(s, "BEGIN");
}

int store_commit(struct store *s) {
        return store_run(s, "COMMIT");
}

void store_rollback(struct store *s) {
        if (s->conn && PQtransactionStatus(s->conn) != PQTRANS_IDLE)
                PQclear(PQexec(s->conn, "ROLLBACK"));
}

const char *store_error(const struct store *s) {
        return s->error;
}

bool store_ping(struct store *s) {
        return store_run(s, "SELECT 1") == 0;
}

size_t store_rows(const struct store_result *r) {
        return (size_t)PQntuples(r->res);
}

long store_changed(const struct store_result *r) {
        return strtol(PQcmdTuples(r->res), NULL, 10);
}

const char *store_text(const struct store_result *r, size_t row, int col) {
        if (PQgetisnull(r->res, (int)row, col))
                return NULL;
        return PQgetvalue(r->res, (int)row, col);
}

int64_t store_int(const struct store_result *r, size_t row, int col) {
        const char *v = store_text(r, row, col);
        return v ? strtoll(v, NULL, 10) : 0;
}

double store_double(const struct store_result *r, size_t row, int col) {
        const char *v = store_text(r, row, col);
        return v ? strtod(v, NULL) : 0.0;
}

bool store_bool(const struct store_result *r, size_t row, int col) {
        const char *v = store_text(r, row, col);
        return v && v[0] == 't';
}

struct store_result *store_result_free(struct store_result *r) {
        if (r) {
                PQclear(r->res);
                free(r);
        }
        return NULL;
}

/* ---- migrations ---- */

struct migration {
        int version;
        char name[256];
};

static int migration_cmp(const void *a, const void *b) {
        return ((const struct migration *)a)->version - ((const struct migration *)b)->version;
}

/* Lists NNN_name.sql files in order. Returns the count or <0. */
static int migrations_list(const char *dir, struct migration **out) {
        DIR *d = opendir(dir);
        struct dirent *e;
        struct migration *list = NULL;
        int n = 0, cap = 0;

        if (!d) {
                int err = errno; /* before logging, which may change it */
                log_error("store", "cannot open migrations folder %s: %s", dir, strerror(err));
                return err == ENOENT ? -ENOENT : -EIO; /* constants the analyzer sees below 0 */
        }
        while ((e = readdir(d))) {
                char *end;
                long version = strtol(e->d_name, &end, 10);
                size_t len = strlen(e->d_name);

                if (end == e->d_name || *end != '_' || len < 5 ||
                    strcmp(e->d_name + len - 4, ".sql") != 0 || len >= sizeof(list->name))
                        continue;
                if (n == cap) {
                        struct migration *grown;
                        cap = cap ? cap * 2 : 16;
                        grown = realloc(list, (size_t)cap * sizeof(*list));
                        if (!grown) {
                                free(list);
                                closedir(d);
                                return -ENOMEM;
                        }
                        list = grown;
                }
                list[n].version = (int)version;
                strcpy(list[n].name, e->d_name);
                n++;
        }
        closedir(d);
        if (n == 0) {
                log_error("store", "no migrations (NNN_name.sql) in %s", dir);
                free(list);
                return -ENOENT;
        }
        qsort(list, (size_t)n, sizeof(*list), migration_cmp);
        for (int i = 1; i < n; i++) {
                if (list[i].version == list[i - 1].version) {
                        log_error("store", "migrations %s and %s share a number", list[i - 1].name,
                                  list[i].name);
                        free(list);
                        return -EINVAL;
                }
        }
        *out = list;
        return n;
}

static char *read_file(const char *path) {
        FILE *f = fopen(path, "rb");
        char *text = NULL;
        long size;

        if (!f)
                return NULL;
        if (fseek(f, 0, SEEK_END) == 0 && (size = ftell(f)) >= 0 && fseek(f, 0, SEEK_SET) == 0 &&
            (text = malloc((size_t)size + 1))) {
                if (fread(text, 1, (size_t)size, f) != (size_t)size) {
                        free(text);
                        text = NULL;
                } else {
                        text[size] = '\0';
                }
        }
        fclose(f);
        return text;
}

/* Applies one migration inside the caller's transaction. */
static int migration_apply(struct store *s, const char *dir, const struct migration *m) {
        char path[4096], version[16];
        const char *params[2] = { version, m->name };
        char *sql;
        PGresult *res;
        int r = 0;

        snprintf(path, sizeof(path), "%s/%s", dir, m->name);
        sql = read_file(path);
        if (!sql) {
                log_error("store", "cannot read %s", path);
                return -EIO;
        }
        /* PQexec runs a file's several statements; parameters are not needed here. */
        res = PQexec(s->conn, sql);
        if (PQresultStatus(res) != PGRES_COMMAND_OK && PQresultStatus(res) != PGRES_TUPLES_OK) {
                char msg[256];
                snprintf(msg, sizeof(msg), "%s", PQresultErrorMessage(res));
                msg[strcspn(msg, "\n")] = '\0';
                log_error("store", "migration %s failed: %s", m->name, msg);
                r = -EIO;
        }
        PQclear(res);
        free(sql);
        if (r < 0)
                return r;
        snprintf(version, sizeof(version), "%d", m->version);
        return store_exec(s, "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)", 2,
                          params, NULL);
}

int store_migrate(struct store *s, const char *dir) {
        struct migration *list = NULL;
        struct store_result *applied = NULL;
        int n, r, unlocked, count = 0;

        n = migrations_list(dir, &list);
        if (n < 0)
                return n;

        /* One migrator at a time, across processes. */
        r = store_run(s, "SELECT pg_advisory_lock(727001)");
        if (r < 0)
                goto out;
        r = store_run(s, "CREATE TABLE IF NOT EXISTS schema_migrations ("
                         " version integer PRIMARY KEY,"
                         " name text NOT NULL,"
                         " applied_at timestamptz NOT NULL DEFAULT now())");
        if (r < 0)
                goto unlock;
        r = store_exec(s, "SELECT version FROM schema_migrations", 0, NULL, &applied);
        if (r < 0)
                goto unlock;

        for (int i = 0; i < n; i++) {
                bool done = false;
                for (size_t j = 0; j < store_rows(applied) && !done; j++)
                        done = store_int(applied, j, 0) == list[i].version;
                if (done)
                        continue;
                if ((r = store_begin(s)) < 0)
                        goto unlock;
                r = migration_apply(s, dir, &list[i]);
                if (r < 0) {
                        store_rollback(s);
                        goto unlock;
                }
                if ((r = store_commit(s)) < 0)
                        goto unlock;
                log_info("store", "applied migration %s", list[i].name);
                count++;
        }
        r = count;
unlock:
        /* Logged if it fails; a lost connection has released the lock with it. */
        if ((unlocked = store_run(s, "SELECT pg_advisory_unlock(727001)")) < 0 && r >= 0)
                r = unlocked;
out:
        store_result_free(applied);
        free(list);
        return r;
}

int store_migrations_check(struct store *s, const char *dir) {
        struct migration *list = NULL;
        struct store_result *applied = NULL;
        bool exists;
        int n, r, differ = 0;

        n = migrations_list(dir, &list);
        if (n < 0)
                return n;
        /* Before the first migration there is no table: nothing is applied. */
        r = store_exec(s, "SELECT to_regclass('schema_migrations') IS NOT NULL", 0, NULL, &applied);
        if (r < 0)
                goto out;
        exists = store_bool(applied, 0, 0);
        applied = store_result_free(applied);
        r = store_exec(s,
                       exists ? "SELECT version, name FROM schema_migrations ORDER BY version"
                              : "SELECT 0, '' WHERE false",
                       0, NULL, &applied);
        if (r < 0)
                goto out;
        for (int i = 0; i < n; i++) {
                bool done = false;
                for (size_t j = 0; j < store_rows(applied) && !done; j++)
                        done = store_int(applied, j, 0) == list[i].version;
                if (!done) {
                        log_warn("store", "migration %s is not applied", list[i].name);
                        differ++;
                }
        }
        for (size_t j = 0; j < store_rows(applied); j++) {
                bool known = false;
                for (int i = 0; i < n && !known; i++)
                        known = store_int(applied, j, 0) == list[i].version;
                if (!known) {
                        log_warn("store", "migration %s is applied but unknown to this homing",
                                 store_text(applied, j, 1));
                        differ++;
                }
        }
        r = differ;
out:
        store_result_free(applied);
        free(list);
        return r;
}

int store_schema_version(struct store *s, int *applied) {
        struct store_result *res = NULL;
        int r = store_exec(s, "SELECT coalesce(max(version), 0) FROM schema_migrations", 0, NULL,
                           &res);
        if (r == 0)
                *applied = (int)store_int(res, 0, 0);
        store_result_free(res);
        return r;
}

/* ---- array literals ---- */

void store_array_init(struct store_array *a) {
        *a = (struct store_array){ 0 };
}

void store_array_fini(struct store_array *a) {
        free(a->buf);
        *a = (struct store_array){ 0 };
}

static void array_reserve(struct store_array *a, size_t more) {
        char *grown;
        size_t cap;

        if (a->failed || a->len + more + 3 <= a->cap)
                return;
        cap = a->cap ? a->cap : 256;
        while (cap < a->len + more + 3)
                cap *= 2;
        grown = realloc(a->buf, cap);
        if (!grown) {
                a->failed = true;
                return;
        }
        a->buf = grown;
        a->cap = cap;
}

/* Starts an element: the opening brace or a comma. */
static void array_next(struct store_array *a) {
        array_reserve(a, 1);
        if (!a->failed)
                a->buf[a->len++] = a->n++ ? ',' : '{';
}

static void array_append(struct store_array *a, const char *fmt, ...)
        __attribute__((format(printf, 2, 3)));

/* Formats once into the room there is (a number fits nearly always), and
 * again only after growing when it did not: printf of a double is dear. */
static void array_append(struct store_array *a, const char *fmt, ...) {
        va_list ap;
        size_t room;
        int n;

        array_reserve(a, 32);
        if (a->failed)
                return;
        room = a->cap - a->len - 3; /* the spare that array_reserve keeps */
        va_start(ap, fmt);
        n = vsnprintf(a->buf + a->len, room + 1, fmt, ap);
        va_end(ap);
        if (n < 0) {
                a->failed = true;
                return;
        }
        if ((size_t)n > room) {
                array_reserve(a, (size_t)n);
                if (a->failed)
                        return;
                va_start(ap, fmt);
                vsnprintf(a->buf + a->len, a->cap - a->len, fmt, ap);
                va_end(ap);
        }
        a->len += (size_t)n;
}

void store_array_add_text(struct store_array *a, const char *value) {
        array_next(a);
        if (!value) {
                array_append(a, "NULL");
                return;
        }
        array_reserve(a, strlen(value) * 2 + 2);
        if (a->failed)
                return;
        a->buf[a->len++] = '"';
        for (; *value; value++) {
                if (*value == '"' || *value == '\\')
                        a->buf[a->len++] = '\\';
                a->buf[a->len++] = *value;
        }
        a->buf[a->len++] = '"';
}

void store_array_add_int(struct store_array *a, int64_t value) {
        array_next(a);
        array_append(a, "%lld", (long long)value);
}

void store_array_add_double(struct store_array *a, double value) {
        array_next(a);
        if (isfinite(value))
                array_append(a, "%.17g", value);
        else
                array_append(a, "NULL");
}

void store_array_add_double_text(struct store_array *a, double value, const char *text,
                                 size_t len) {
        /* 0 and subnormals are printed: "-0" or "1e-320" may not read back alike. */
        bool plain = isnormal(value) && text && len > 0 && len < 64;

        for (size_t i = 0; plain && i < len; i++)
                plain = (text[i] >= '0' && text[i] <= '9') || text[i] == '.' || text[i] == '-' ||
                        text[i] == '+' || text[i] == 'e' || text[i] == 'E';
        if (!plain) {
                store_array_add_double(a, value);
                return;
        }
        array_next(a);
        array_reserve(a, len);
        if (a->failed)
                return;
        memcpy(a->buf + a->len, text, len);
        a->len += len;
}

const char *store_array_text(struct store_array *a) {
        if (a->n == 0) {
                array_reserve(a, 2);
                if (!a->failed) {
                        a->buf[0] = '{';
                        a->len = 1;
                }
        }
        array_reserve(a, 1);
        if (a->failed)
                return NULL;
        a->buf[a->len] = '}';
        a->buf[a->len + 1] = '\0';
        return a->buf;
}

/* ---- array parsing ---- */

char **store_array_items_free(char **items, size_t n) {
        for (size_t i = 0; items && i < n; i++)
                free(items[i]);
        free(items);
        return NULL;
}

/*
 * One element from *p on, up to the ',' or '}' that ends it (left at *p).
 * Unquoted elements lose surrounding blanks and may be NULL; backslash
 * escapes the next character in both forms. Sets *out (NULL for NULL).
 */
static int parse_element(const char **p, char **out) {
        const char *s = *p;
        size_t cap = strlen(s) + 1, len = 0, kept = 0;
        bool quoted = false, any_quoted = false, escaped_any = false;
        char *buf;

        while (*s == ' ' || *s == '\t' || *s == '\n')
                s++;
        buf = malloc(cap);
        if (!buf)
                return -ENOMEM;
        for (;; s++) {
                char c = *s;
                if (c == '\0')
                        goto bad;
                if (c == '\\') {
                        if (!s[1] || (!quoted && any_quoted))
                                goto bad;
                        buf[len++] = *++s;
                        kept = len;
                        escaped_any = true;
                } else if (c == '"') {
                        /* A quote opens only at the start and must close at the end. */
                        if (!quoted && (len > 0 || any_quoted))
                                goto bad;
                        quoted = !quoted;
                        any_quoted = true;
                        kept = len;
                } else if (quoted) {
                        buf[len++] = c;
                        kept = len;
                } else if (c == ',' || c == '}') {
                        break;
                } else if (c == '{' || (any_quoted && c != ' ' && c != '\t' && c != '\n')) {
                        goto bad; /* nested, or text after a closing quote */
                } else {
                        buf[len++] = c;
                        if (c != ' ' && c != '\t' && c != '\n')
                                kept = len;
                }
        }
        len = kept;
        buf[len] = '\0';
        *p = s;
        if (!any_quoted && !escaped_any && !strcasecmp(buf, "NULL")) {
                free(buf);
                *out = NULL;
                return 0;
        }
        if (!any_quoted && len == 0)
                goto bad; /* "{a,,b}": PostgreSQL writes an empty string as "" */
        *out = buf;
        return 0;
bad:
        free(buf);
        return -EINVAL;
}

int store_array_parse(const char *text, char ***items, size_t *n) {
        char **v = NULL;
        size_t count = 0, cap = 0;
        const char *p = text;
        int r = 0;

        if (!text || *p != '{')
                return -EINVAL;
        p++;
        while (*p == ' ')
                p++;
        if (*p == '}') {
                p++;
        } else {
                for (;;) {
                        char *item;
                        if (count == cap) {
                                char **grown = realloc(v, (cap = cap ? cap * 2 : 4) * sizeof(*v));
                                if (!grown) {
                                        r = -ENOMEM;
                                        break;
                                }
                                v = grown;
                        }
                        r = parse_element(&p, &item);
                        if (r < 0)
                                break;
                        v[count++] = item;
                        if (*p++ == '}')
                                break;
                }
        }
        if (r == 0 && *p != '\0')
                r = -EINVAL;
        if (r < 0) {
                store_array_items_free(v, count);
                return r;
        }
        *items = v;
        *n = count;
        return 0;
}

/* ---- columns ---- */

void store_columns_init(struct store_columns *c, size_t n) {
        c->n = n < STORE_COLUMNS_MAX ? n : STORE_COLUMNS_MAX;
        for (size_t i = 0; i < STORE_COLUMNS_MAX; i++)
                store_array_init(&c->col[i]);
}

void store_columns_fini(struct store_columns *c) {
        for (size_t i = 0; i < STORE_COLUMNS_MAX; i++)
                store_array_fini(&c->col[i]);
}

int store_exec_columns(struct store *s, const char *sql, struct store_columns *c, int n_extra,
                       const char *const *extra, struct store_result **out) {
        const char *params[2 * STORE_COLUMNS_MAX];
        int r = 0;

        if (n_extra < 0 || n_extra > STORE_COLUMNS_MAX) {
                r = -E2BIG;
                goto out;
        }
        for (size_t i = 0; i < c->n; i++)
                if (!(params[i] = store_array_text(&c->col[i])))
                        r = -ENOMEM;
        for (int i = 0; i < n_extra; i++)
                params[c->n + (size_t)i] = extra[i];
        if (r == 0)
                r = store_exec(s, sql, (int)c->n + n_extra, params, out);
out:
        store_columns_fini(c);
        return r;
}
