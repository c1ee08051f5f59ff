-- Announced trips: a device tells homing of a booked trip ahead of time
-- (POST /v1/trips), so the scheduler can keep a warm copy of the user's
-- snapshots at the datacenter nearest the destination before the user
-- lands there, and drop it after (README, "Pre-staging"). A trip belongs to
-- the user its device token names; return_at is optional (then the trip
-- ends when no report comes near the destination for a while).
CREATE TABLE trips (
    id          bigserial PRIMARY KEY,
    user_id     text NOT NULL CHECK (length(user_id) BETWEEN 1 AND 64),
    device_id   text NOT NULL CHECK (length(device_id) BETWEEN 1 AND 64),
    lat         double precision NOT NULL CHECK (lat BETWEEN -90 AND 90),
    lon         double precision NOT NULL CHECK (lon BETWEEN -180 AND 180),
    arrive_at   timestamptz NOT NULL,
    return_at   timestamptz CHECK (return_at > arrive_at),
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX trips_by_user ON trips (user_id, arrive_at);
CREATE INDEX trips_by_arrival ON trips (arrive_at);
