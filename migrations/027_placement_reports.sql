-- Placement reports: what `homing replay --json` measured (each policy's
-- restore distances, transfers and bytes), kept under a name so that
-- operators can compare runs on the dashboard's "Placement quality" page
-- (issue 13). `homing replay --publish NAME` or POST /v1/placement-reports
-- stores one; the API checks the report's shape before it is stored, and
-- keeps a small summary beside it so that a list never reads the reports.
CREATE TABLE placement_reports (
    id         bigserial PRIMARY KEY,
    name       text NOT NULL CHECK (char_length(name) BETWEEN 1 AND 128),
    created_at timestamptz NOT NULL DEFAULT now(),
    created_by text NOT NULL,
    report     jsonb NOT NULL CHECK (jsonb_typeof(report) = 'object'),
    summary    jsonb NOT NULL CHECK (jsonb_typeof(summary) = 'object')
);
