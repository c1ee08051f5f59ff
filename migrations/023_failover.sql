-- Failover: a datacenter declared down gives up its active snapshots at
-- once. Each one with a warm replica at a site that is not down is
-- activated there, most urgent level first (the replica's copy becomes the
-- active placement, so the epoch advances and the fence of 019 lets the
-- replica site's agent power it on while the dead site cannot answer); the
-- versions the replica lacked are lost and recorded, with the replica's lag
-- (seconds, bytes) at that moment as the data lost. The others are
-- unrecoverable until the site returns. The dead site's copy stays as a
-- cached one: the seed of a delta failback, which an operator starts once
-- the site is back. See README, "Failover".

-- One failover per declaration of a site down; it ends when the site is
-- active (or draining) again.
CREATE TABLE failovers (
    id            bigserial PRIMARY KEY,
    datacenter_id text NOT NULL REFERENCES datacenters (id) ON DELETE CASCADE,
    created_at    timestamptz NOT NULL DEFAULT now(),
    ended_at      timestamptz
);
CREATE INDEX failovers_by_datacenter ON failovers (datacenter_id, id DESC);

-- What became of each snapshot that was active at the site: failed over to
-- a replica (its version, the newest known, what was lost) or unrecoverable
-- (recovered_at: when the site returned with it).
CREATE TABLE failover_items (
    failover_id    bigint NOT NULL REFERENCES failovers (id) ON DELETE CASCADE,
    snapshot_id    text NOT NULL REFERENCES snapshots (id) ON DELETE CASCADE,
    priority       integer NOT NULL CHECK (priority BETWEEN 1 AND 5),
    outcome        text NOT NULL CHECK (outcome IN ('failed_over', 'unrecoverable')),
    from_dc        text NOT NULL,
    to_dc          text,
    epoch          bigint,
    version        bigint,
    newest_version bigint NOT NULL,
    versions_lost  bigint NOT NULL DEFAULT 0 CHECK (versions_lost >= 0),
    lost           jsonb NOT NULL DEFAULT '[]',
    lag_s          double precision NOT NULL DEFAULT 0,
    bytes_behind   bigint NOT NULL DEFAULT 0,
    recovered_at   timestamptz,
    -- the move back to from_dc, once an operator asked for it
    failback_transfer_id bigint REFERENCES transfers (id) ON DELETE SET NULL,
    created_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (failover_id, snapshot_id),
    CHECK ((outcome = 'failed_over') = (to_dc IS NOT NULL AND epoch IS NOT NULL
                                        AND version IS NOT NULL))
);
CREATE INDEX failover_items_by_snapshot ON failover_items (snapshot_id, failover_id DESC);

-- Declares p_dc's failover: activates every snapshot active there from its
-- best warm replica (a verified copy at a site not down, the most current
-- first), level 1 first, and lists the rest as unrecoverable; one audit
-- event per snapshot on p_topic, carrying p_actor. Open transfers of a
-- snapshot failed over end cancelled: they came from the dead site or
-- refreshed the copy that is now active. The versions the replica lacked
-- are unregistered (kept in the item's `lost`), so that the new active site
-- numbers its next version after the replica's, and copies of them are
-- marked evicted: no transfer takes them for a copy of a version registered
-- later under the same number. Returns the failover's id.
CREATE FUNCTION homing_failover(p_dc text, p_topic text, p_actor jsonb) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    f bigint;
    a record;
    best record;
    lost jsonb;
    n_lost bigint;
    new_epoch bigint;
    new_size bigint;
    data jsonb;
BEGIN
    INSERT INTO failovers (datacenter_id) VALUES (p_dc) RETURNING id INTO f;
    FOR a IN
        SELECT p.id AS placement_id, p.snapshot_id, s.priority, s.version AS newest,
               s.size_bytes
        FROM placements p JOIN snapshots s ON s.id = p.snapshot_id
        WHERE p.datacenter_id = p_dc AND p.active
        ORDER BY s.priority, s.id
        FOR UPDATE OF p, s
    LOOP
        SELECT l.datacenter_id, l.lag_s, l.bytes_behind, c.id AS copy_id, c.version
        INTO best
        FROM replica_lag l
        JOIN replicas r ON r.snapshot_id = l.snapshot_id AND r.datacenter_id = l.datacenter_id
        JOIN placements c ON c.id = r.placement_id
        JOIN datacenters d ON d.id = l.datacenter_id
        WHERE l.snapshot_id = a.snapshot_id AND d.status <> 'down' AND c.evicted_at IS NULL
          AND NOT c.active
        ORDER BY c.version DESC, l.lag_s, l.datacenter_id
        LIMIT 1;
        IF NOT FOUND THEN
            INSERT INTO failover_items (failover_id, snapshot_id, priority, outcome, from_dc,
                                        newest_version)
            VALUES (f, a.snapshot_id, a.priority, 'unrecoverable', p_dc, a.newest);
            data := jsonb_build_object('failover_id', f, 'snapshot_id', a.snapshot_id,
                                       'priority', a.priority, 'datacenter_id', p_dc,
                                       'newest_version', a.newest, 'actor', p_actor);
            INSERT INTO outbox (topic, key, payload)
            VALUES (p_topic, a.snapshot_id,
                    homing_cloudevent('api-' || gen_random_uuid(), '/homing/api',
                                      'io.homing.snapshot.unrecoverable', now(), a.snapshot_id,
                                      data));
            CONTINUE;
        END IF;

        PERFORM homing_transfer_ended(t.id, 'cancelled', 'failover of ' || p_dc)
        FROM transfers t
        WHERE t.snapshot_id = a.snapshot_id AND t.state IN ('queued', 'running');

        SELECT coalesce(jsonb_agg(jsonb_build_object('version', v.version, 'content_sha256',
                                                     v.content_sha256, 'size_bytes', v.size_bytes,
                                                     'datacenter_id', v.datacenter_id,
                                                     'created_at', homing_time(v.created_at))
                                  ORDER BY v.version), '[]'::jsonb),
               count(*)
        INTO lost, n_lost
        FROM snapshot_versions v
        WHERE v.snapshot_id = a.snapshot_id AND v.version > best.version;
        DELETE FROM disk_diffs
        WHERE snapshot_id = a.snapshot_id
          AND (from_version > best.version OR to_version > best.version);
        DELETE FROM snapshot_versions
        WHERE snapshot_id = a.snapshot_id AND version > best.version;

        -- The switch: the dead site's copy becomes a cached one, the
        -- replica's the active one (the trigger of 019 advances the epoch).
        DELETE FROM replicas WHERE snapshot_id = a.snapshot_id AND datacenter_id = best.datacenter_id;
        UPDATE placements SET active = false, deactivated_at = now() WHERE id = a.placement_id;
        UPDATE placements SET evicted_at = now()
        WHERE snapshot_id = a.snapshot_id AND version > best.version AND NOT active
          AND evicted_at IS NULL;
        UPDATE placements SET active = true, deactivated_at = NULL WHERE id = best.copy_id;

        SELECT coalesce(v.size_bytes, a.size_bytes) INTO new_size
        FROM (SELECT 1) one
        LEFT JOIN snapshot_versions v ON v.snapshot_id = a.snapshot_id AND v.version = best.version;
        UPDATE snapshots SET version = best.version, size_bytes = new_size, updated_at = now()
        WHERE id = a.snapshot_id
        RETURNING epoch INTO new_epoch;
        UPDATE datacenters SET used_bytes = used_bytes + new_size, updated_at = now()
        WHERE id = best.datacenter_id;
        UPDATE datacenters SET used_bytes = greatest(used_bytes - a.size_bytes, 0),
                               updated_at = now()
        WHERE id = p_dc;

        INSERT INTO failover_items (failover_id, snapshot_id, priority, outcome, from_dc, to_dc,
                                    epoch, version, newest_version, versions_lost, lost, lag_s,
                                    bytes_behind)
        VALUES (f, a.snapshot_id, a.priority, 'failed_over', p_dc, best.datacenter_id, new_epoch,
                best.version, a.newest, n_lost, lost, best.lag_s, best.bytes_behind);
        data := jsonb_build_object('failover_id', f, 'snapshot_id', a.snapshot_id,
                                   'priority', a.priority, 'from_dc', p_dc,
                                   'to_dc', best.datacenter_id, 'epoch', new_epoch,
                                   'version', best.version, 'newest_version', a.newest,
                                   'versions_lost', n_lost, 'data_loss_s', best.lag_s,
                                   'data_loss_bytes', best.bytes_behind, 'actor', p_actor);
        INSERT INTO outbox (topic, key, payload)
        VALUES (p_topic, a.snapshot_id,
                homing_cloudevent('api-' || gen_random_uuid(), '/homing/api',
                                  'io.homing.snapshot.failed_over', now(), a.snapshot_id, data));
    END LOOP;
    RETURN f;
END $$;

-- The site is back (active or draining): its open failovers end, and the
-- snapshots that could not fail over are recovered where they were.
CREATE FUNCTION homing_failover_end(p_dc text) RETURNS void
LANGUAGE sql AS $$
    UPDATE failover_items i SET recovered_at = now()
    FROM failovers f
    WHERE f.id = i.failover_id AND f.datacenter_id = p_dc AND f.ended_at IS NULL
      AND i.outcome = 'unrecoverable';
    UPDATE failovers SET ended_at = now() WHERE datacenter_id = p_dc AND ended_at IS NULL;
$$;

-- Failback: moves back to the returned site every snapshot of failover
-- p_failover still active where the failover put it (it has not been
-- active anywhere else since; new versions there are fine) and with no
-- move open, level 1 first. Ordinary moves (reason
-- 'failback'): the site's cached copy, demoted when it was down or found
-- there by its agent, is what the target builds from, so only the
-- difference travels. Each job goes to p_topic like every transfer's; a
-- second call queues only what is not queued yet. Returns how many.
CREATE FUNCTION homing_failback(p_failover bigint, p_topic text) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    n bigint;
BEGIN
    WITH due AS (
        SELECT i.snapshot_id, i.from_dc, i.to_dc, s.template_id, s.priority, s.size_bytes,
               tpl.size_bytes AS template_bytes,
               EXISTS (SELECT 1 FROM template_replicas r WHERE r.template_id = s.template_id
                       AND r.datacenter_id = i.from_dc) AS present
        FROM failover_items i
        JOIN snapshots s ON s.id = i.snapshot_id
        JOIN templates tpl ON tpl.id = s.template_id
        JOIN placements p ON p.snapshot_id = s.id AND p.active AND p.datacenter_id = i.to_dc
        WHERE i.failover_id = p_failover AND i.outcome = 'failed_over'
          AND NOT EXISTS (SELECT 1 FROM placements q WHERE q.snapshot_id = s.id
                          AND q.datacenter_id <> i.to_dc AND q.epoch > i.epoch)),
    t AS (
        INSERT INTO transfers (snapshot_id, from_dc, to_dc, template_id, template_present,
                               priority, reason, idempotency_key, bytes_total)
        SELECT d.snapshot_id, d.to_dc, d.from_dc, d.template_id, d.present, d.priority,
               'failback', 'failback/' || p_failover || '/' || d.snapshot_id,
               d.size_bytes + CASE WHEN d.present THEN 0 ELSE d.template_bytes END
        FROM due d ORDER BY d.priority, d.snapshot_id
        ON CONFLICT DO NOTHING
        RETURNING *),
    reserve AS (
        UPDATE datacenters d SET reserved_bytes = d.reserved_bytes + x.bytes, updated_at = now()
        FROM (SELECT to_dc, sum(bytes_total) AS bytes FROM t GROUP BY to_dc) x
        WHERE d.id = x.to_dc),
    mark AS (
        UPDATE failover_items i SET failback_transfer_id = t.id
        FROM t WHERE i.failover_id = p_failover AND i.snapshot_id = t.snapshot_id),
    job AS (
        INSERT INTO outbox (topic, key, payload)
        SELECT p_topic, t.snapshot_id, jsonb_build_object(
            'transfer_id', t.id, 'snapshot_id', t.snapshot_id, 'from_dc', t.from_dc,
            'to_dc', t.to_dc, 'template_id', t.template_id,
            'template_present', t.template_present, 'priority', t.priority,
            'reason', t.reason, 'bytes_total', t.bytes_total,
            'idempotency_key', t.idempotency_key, 'kind', t.kind)
        FROM t)
    SELECT count(*) INTO n FROM t;
    RETURN n;
END $$;

-- Test failover, the rehearsal: throwaway copies of a site's snapshots
-- started at their replica sites, isolated — a VM of their own name
-- (fotest-<id>) on a throwaway overlay of the replica's copy — while the
-- real placements, epochs and power records stay as they are. An operator
-- starts one, reads what came up, and cleans it up: the agents power the
-- copies off and delete their overlays; then it is `cleaned`.
CREATE TABLE failover_tests (
    id            bigserial PRIMARY KEY,
    datacenter_id text NOT NULL REFERENCES datacenters (id) ON DELETE CASCADE,
    state         text NOT NULL DEFAULT 'running'
                  CHECK (state IN ('running', 'cleaning', 'cleaned')),
    created_at    timestamptz NOT NULL DEFAULT now(),
    cleanup_at    timestamptz,
    cleaned_at    timestamptz
);

-- One throwaway VM per snapshot: where (the replica site), from which
-- version, and what its agent reported.
CREATE TABLE failover_test_vms (
    id            bigserial PRIMARY KEY,
    test_id       bigint NOT NULL REFERENCES failover_tests (id) ON DELETE CASCADE,
    snapshot_id   text NOT NULL REFERENCES snapshots (id) ON DELETE CASCADE,
    datacenter_id text NOT NULL REFERENCES datacenters (id) ON DELETE CASCADE,
    priority      integer NOT NULL,
    version       bigint NOT NULL,
    state         text NOT NULL DEFAULT 'pending'
                  CHECK (state IN ('pending', 'powered_on', 'failed', 'powered_off')),
    reason        text CHECK (length(reason) <= 1024),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    UNIQUE (test_id, snapshot_id)
);
CREATE INDEX failover_test_vms_by_datacenter ON failover_test_vms (datacenter_id, state);

-- Starts a rehearsal of p_dc's failover: a throwaway VM for each snapshot
-- active there with a warm replica at a site that is not down (the most
-- current, as a failover would choose). Nothing real changes. Returns its id.
CREATE FUNCTION homing_failover_test(p_dc text) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    t bigint;
BEGIN
    INSERT INTO failover_tests (datacenter_id) VALUES (p_dc) RETURNING id INTO t;
    INSERT INTO failover_test_vms (test_id, snapshot_id, datacenter_id, priority, version)
    SELECT DISTINCT ON (a.snapshot_id) t, a.snapshot_id, r.datacenter_id, s.priority, c.version
    FROM placements a
    JOIN snapshots s ON s.id = a.snapshot_id
    JOIN replicas r ON r.snapshot_id = a.snapshot_id
    JOIN placements c ON c.id = r.placement_id AND NOT c.active AND c.evicted_at IS NULL
    JOIN datacenters d ON d.id = r.datacenter_id AND d.status <> 'down'
    WHERE a.datacenter_id = p_dc AND a.active
    ORDER BY a.snapshot_id, c.version DESC, r.datacenter_id;
    RETURN t;
END $$;

-- A rehearsal being cleaned up is cleaned once none of its VMs runs.
CREATE FUNCTION homing_failover_test_settle(p_test bigint) RETURNS boolean
LANGUAGE sql AS $$
    UPDATE failover_tests SET state = 'cleaned', cleaned_at = now()
    WHERE id = p_test AND state = 'cleaning'
      AND NOT EXISTS (SELECT 1 FROM failover_test_vms v WHERE v.test_id = p_test
                      AND v.state = 'powered_on')
    RETURNING true;
$$;
