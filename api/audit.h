/*
 * audit — the events of operators' and agents' writes, into the outbox in
 * the write's transaction.
 */
#pragma once

struct json_t;
struct request;

/*
 * Queues an audit event (CloudEvents 1.0, structured JSON) in the outbox, in
 * the caller's transaction on req->db: type "io.homing.<what>", subject the
 * entity id (also the Kafka key), `data` (taken) gains "actor". 0 or <0.
 */
int api_audit(struct request *req, const char *type, const char *subject, struct json_t *data);

/* The principal as {"kind", "token_id", "name", "role"} (or the agent's, the device's). */
struct json_t *api_actor_json(const struct request *req);
