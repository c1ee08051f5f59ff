-- The truth about where snapshots live: the catalog, the placements, the
-- transfers that move them, what devices reported, and the scheduler's
-- consumed offsets and outbox (committed with its effects, in one
-- transaction).

CREATE TABLE datacenters (
    id             text PRIMARY KEY CHECK (id ~ '^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$'),
    name           text NOT NULL,
    provider       text,
    city           text,
    country_code   text CHECK (country_code ~ '^[A-Z]{2}$'),
    lat            double precision NOT NULL CHECK (lat BETWEEN -90 AND 90),
    lon            double precision NOT NULL CHECK (lon BETWEEN -180 AND 180),
    status         text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'draining', 'down')),
    capacity_bytes bigint NOT NULL DEFAULT 0 CHECK (capacity_bytes >= 0),
    used_bytes     bigint NOT NULL DEFAULT 0 CHECK (used_bytes >= 0),
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE templates (
    id         text PRIMARY KEY,
    name       text NOT NULL,
    size_bytes bigint NOT NULL CHECK (size_bytes >= 0),
    created_at timestamptz NOT NULL DEFAULT now()
);

-- Which datacenters hold a copy of a template.
CREATE TABLE template_replicas (
    template_id   text NOT NULL REFERENCES templates (id) ON DELETE CASCADE,
    datacenter_id text NOT NULL REFERENCES datacenters (id),
    created_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (template_id, datacenter_id)
);

CREATE TABLE snapshots (
    id          text PRIMARY KEY,
    user_id     text NOT NULL,
    template_id text NOT NULL REFERENCES templates (id),
    size_bytes  bigint NOT NULL CHECK (size_bytes >= 0),
    priority    integer NOT NULL DEFAULT 0,
    version     bigint NOT NULL DEFAULT 1,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX snapshots_by_user ON snapshots (user_id);

-- Every copy a snapshot has had. At most one is active: the database says so.
CREATE TABLE placements (
    id             bigserial PRIMARY KEY,
    snapshot_id    text NOT NULL REFERENCES snapshots (id) ON DELETE CASCADE,
    datacenter_id  text NOT NULL REFERENCES datacenters (id),
    version        bigint NOT NULL,
    active         boolean NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now(),
    deactivated_at timestamptz
);
CREATE UNIQUE INDEX placements_one_active ON placements (snapshot_id) WHERE active;

CREATE TABLE transfers (
    id               bigserial PRIMARY KEY,
    snapshot_id      text NOT NULL REFERENCES snapshots (id) ON DELETE CASCADE,
    from_dc          text REFERENCES datacenters (id),
    to_dc            text NOT NULL REFERENCES datacenters (id),
    template_id      text NOT NULL REFERENCES templates (id),
    template_present boolean NOT NULL,
    priority         integer NOT NULL DEFAULT 0,
    reason           text NOT NULL,
    state            text NOT NULL DEFAULT 'queued'
                     CHECK (state IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')),
    idempotency_key  text NOT NULL UNIQUE,
    attempts         integer NOT NULL DEFAULT 0,
    bytes_total      bigint NOT NULL DEFAULT 0,
    bytes_done       bigint NOT NULL DEFAULT 0,
    error            text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now()
);
-- A snapshot has at most one transfer in flight.
CREATE UNIQUE INDEX transfers_one_open ON transfers (snapshot_id) WHERE state IN ('queued', 'running');
CREATE INDEX transfers_by_state ON transfers (state, created_at);

-- Why each move happened (and, later, why a stay).
CREATE TABLE decisions (
    id            bigserial PRIMARY KEY,
    snapshot_id   text NOT NULL REFERENCES snapshots (id) ON DELETE CASCADE,
    user_id       text NOT NULL,
    device_id     text NOT NULL,
    outcome       text NOT NULL,
    reason        text NOT NULL,
    from_dc       text,
    to_dc         text,
    from_distance_m double precision,
    to_distance_m   double precision,
    report_lat    double precision NOT NULL,
    report_lon    double precision NOT NULL,
    report_ts     timestamptz NOT NULL,
    transfer_id   bigint REFERENCES transfers (id),
    created_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX decisions_by_snapshot ON decisions (snapshot_id, id DESC);

-- The last credible location of each device.
CREATE TABLE device_locations (
    device_id   text PRIMARY KEY,
    user_id     text NOT NULL,
    lat         double precision NOT NULL,
    lon         double precision NOT NULL,
    accuracy_m  double precision NOT NULL,
    reported_at timestamptz NOT NULL,
    received_at timestamptz NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX device_locations_by_user ON device_locations (user_id);

CREATE TABLE zones (
    id         text PRIMARY KEY,
    name       text NOT NULL,
    geojson    jsonb NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- Rows to publish to Kafka, written in the same transaction as the change
-- they describe; the relay marks them sent.
CREATE TABLE outbox (
    id         bigserial PRIMARY KEY,
    topic      text NOT NULL,
    key        text NOT NULL,
    payload    jsonb NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    sent_at    timestamptz
);
CREATE INDEX outbox_unsent ON outbox (id) WHERE sent_at IS NULL;

-- Where each consumer group stands in each partition: the next offset to
-- read. Advanced in the transaction that holds the effects of the messages.
CREATE TABLE consumer_offsets (
    group_id    text NOT NULL,
    topic       text NOT NULL,
    partition   integer NOT NULL,
    next_offset bigint NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (group_id, topic, partition)
);
