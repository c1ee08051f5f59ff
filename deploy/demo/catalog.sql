-- Loads the demo catalog: datacenters at real places (public-cloud regions,
-- city-level coordinates), three templates replicated at a few hubs, and one
-- snapshot for each of the 300 users of the simulated fleet (u-000000 to
-- u-000299, as homing simulate names them) and for u-0001, the user whose
-- reports README's first five minutes posts by hand, each placed at a
-- datacenter of its own. Idempotent: run it again and nothing changes.
-- Expects psql's :csv variable.
BEGIN;

CREATE TEMP TABLE dc_in (id text, name text, provider text, city text, country_code text,
                         lat double precision, lon double precision, capacity_bytes bigint);
\set copy '\\copy dc_in FROM ' :'csv' ' WITH (FORMAT csv, HEADER true)'
:copy

INSERT INTO datacenters (id, name, provider, city, country_code, lat, lon, capacity_bytes)
SELECT id, name, provider, city, country_code, lat, lon, capacity_bytes FROM dc_in
ON CONFLICT (id) DO NOTHING;

INSERT INTO templates (id, name, size_bytes) VALUES
    ('tpl-win11-vdi', 'Windows 11 virtual desktop', 40 * 1024::bigint ^ 3),
    ('tpl-ubuntu-dev', 'Ubuntu 24.04 developer workstation', 12 * 1024::bigint ^ 3),
    ('tpl-rhel-ops', 'RHEL 9 operations console', 18 * 1024::bigint ^ 3)
ON CONFLICT (id) DO NOTHING;

-- Every template lives at the first region of each provider, plus a few more.
INSERT INTO template_replicas (template_id, datacenter_id)
SELECT t.id, d.id FROM templates t
JOIN datacenters d ON d.id IN ('aws-us-east-1', 'aws-eu-west-1', 'aws-ap-southeast-1',
                               'gcp-europe-west3', 'azure-westeurope', 'aws-ap-northeast-1',
                               'aws-sa-east-1', 'azure-australiaeast')
ON CONFLICT DO NOTHING;

INSERT INTO snapshots (id, user_id, template_id, size_bytes, priority)
SELECT 'snap-' || u, u, (ARRAY['tpl-win11-vdi', 'tpl-ubuntu-dev', 'tpl-rhel-ops'])[1 + i % 3],
       (2 + i % 7) * 1024::bigint ^ 3, 1 + i % 5
FROM (SELECT i, 'u-' || lpad(i::text, 6, '0') FROM generate_series(0, 299) AS i
      UNION ALL SELECT 1, 'u-0001') AS fleet (i, u)
ON CONFLICT (id) DO NOTHING;

-- Each snapshot starts at a datacenter picked by a hash: the same on every run.
INSERT INTO placements (snapshot_id, datacenter_id, version, active)
SELECT s.id, (SELECT d.id FROM datacenters d ORDER BY md5(s.id || d.id) LIMIT 1), s.version, true
FROM snapshots s
WHERE NOT EXISTS (SELECT 1 FROM placements p WHERE p.snapshot_id = s.id);

COMMIT;
