-- The durable store (src/store/), SQLite dialect. migrations/postgres/0001_store.sql is the
-- same schema for PostgreSQL: keep the two files in step.
--
-- Conventions shared by both dialects:
-- - ids are lowercase hex generated in Rust (32 chars; hook ids 64 chars);
-- - timestamps are UTC milliseconds since the Unix epoch (INTEGER here, BIGINT there);
-- - JSON documents are TEXT here and JSONB there; scenario blueprints are TEXT on both, kept
--   byte for byte as submitted;
-- - flags are INTEGER 0/1 here and BOOLEAN there.
-- Tables are STRICT so a wrongly typed value is an error, not a silent conversion.

CREATE TABLE scenarios (
    id          TEXT    NOT NULL PRIMARY KEY,
    name        TEXT    NOT NULL,
    version     INTEGER NOT NULL CHECK (version >= 1),
    active      INTEGER NOT NULL DEFAULT 0 CHECK (active IN (0, 1)),
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
) STRICT;

CREATE TABLE scenario_versions (
    scenario_id TEXT    NOT NULL REFERENCES scenarios (id) ON DELETE CASCADE,
    version     INTEGER NOT NULL CHECK (version >= 1),
    blueprint   TEXT    NOT NULL,
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (scenario_id, version)
) STRICT;

-- A webhook endpoint: one per (scenario, trigger module), kept across edits so its URL never
-- changes. `active` is false when the module left the scenario; the hook also stops when the
-- scenario is inactive (the store joins the two).
CREATE TABLE hooks (
    id          TEXT    NOT NULL PRIMARY KEY,
    scenario_id TEXT    NOT NULL REFERENCES scenarios (id) ON DELETE CASCADE,
    module_id   INTEGER NOT NULL,
    active      INTEGER NOT NULL DEFAULT 1 CHECK (active IN (0, 1)),
    created_at  INTEGER NOT NULL,
    UNIQUE (scenario_id, module_id)
) STRICT;

CREATE TABLE executions (
    id           TEXT    NOT NULL PRIMARY KEY,
    scenario_id  TEXT    NOT NULL,
    version      INTEGER NOT NULL,
    status       TEXT    NOT NULL
                 CHECK (status IN ('queued', 'running', 'success', 'error', 'incomplete')),
    source       TEXT    NOT NULL CHECK (source IN ('webhook', 'schedule', 'manual', 'retry')),
    payload      TEXT,
    operations   INTEGER NOT NULL DEFAULT 0,
    cycles       INTEGER NOT NULL DEFAULT 0,
    report       TEXT,
    error        TEXT,
    attempt      INTEGER NOT NULL DEFAULT 0,
    worker_id    TEXT,
    created_at   INTEGER NOT NULL,
    started_at   INTEGER,
    heartbeat_at INTEGER,
    finished_at  INTEGER,
    FOREIGN KEY (scenario_id, version)
        REFERENCES scenario_versions (scenario_id, version) ON DELETE CASCADE
) STRICT;
CREATE INDEX executions_scenario_created ON executions (scenario_id, created_at, id);
CREATE INDEX executions_created ON executions (created_at, id);
CREATE INDEX executions_status_created ON executions (status, created_at, id);
CREATE INDEX executions_finished ON executions (finished_at);

CREATE TABLE execution_modules (
    execution_id TEXT    NOT NULL REFERENCES executions (id) ON DELETE CASCADE,
    seq          INTEGER NOT NULL,
    module_id    INTEGER NOT NULL,
    output       TEXT    NOT NULL,
    truncated    INTEGER NOT NULL DEFAULT 0 CHECK (truncated IN (0, 1)),
    PRIMARY KEY (execution_id, seq)
) STRICT;

-- Keyed webhook deliveries, for duplicate detection. They go with their execution, so a key
-- is remembered as long as the execution is retained.
CREATE TABLE webhook_deliveries (
    hook_id      TEXT    NOT NULL REFERENCES hooks (id) ON DELETE CASCADE,
    dedupe_key   TEXT    NOT NULL,
    execution_id TEXT    NOT NULL REFERENCES executions (id) ON DELETE CASCADE,
    received_at  INTEGER NOT NULL,
    PRIMARY KEY (hook_id, dedupe_key)
) STRICT;
CREATE INDEX webhook_deliveries_execution ON webhook_deliveries (execution_id);

-- Polling cursors, keyed by a stable trigger identity rather than the scenario version.
CREATE TABLE trigger_state (
    scenario_id TEXT    NOT NULL REFERENCES scenarios (id) ON DELETE CASCADE,
    trigger_key TEXT    NOT NULL,
    cursor      TEXT,
    seen_ids    TEXT    NOT NULL,
    updated_at  INTEGER NOT NULL,
    PRIMARY KEY (scenario_id, trigger_key)
) STRICT;

CREATE TABLE incomplete_executions (
    id              TEXT    NOT NULL PRIMARY KEY,
    execution_id    TEXT    NOT NULL REFERENCES executions (id) ON DELETE CASCADE,
    scenario_id     TEXT    NOT NULL,
    version         INTEGER NOT NULL,
    module_id       INTEGER NOT NULL,
    bundle          TEXT    NOT NULL,
    error           TEXT,
    retry           TEXT,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER,
    status          TEXT    NOT NULL CHECK (status IN ('pending', 'resolved', 'failed')),
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL,
    FOREIGN KEY (scenario_id, version)
        REFERENCES scenario_versions (scenario_id, version) ON DELETE CASCADE
) STRICT;
CREATE INDEX incomplete_due ON incomplete_executions (status, next_attempt_at);
CREATE INDEX incomplete_scenario ON incomplete_executions (scenario_id, created_at, id);
CREATE INDEX incomplete_execution ON incomplete_executions (execution_id);

-- One row per schedule occurrence that some scheduler claimed; the primary key makes the
-- claim exclusive across processes.
CREATE TABLE schedule_ticks (
    scenario_id  TEXT    NOT NULL REFERENCES scenarios (id) ON DELETE CASCADE,
    tick_at      INTEGER NOT NULL,
    execution_id TEXT    REFERENCES executions (id) ON DELETE SET NULL,
    claimed_at   INTEGER NOT NULL,
    PRIMARY KEY (scenario_id, tick_at)
) STRICT;
CREATE INDEX schedule_ticks_tick ON schedule_ticks (tick_at);
CREATE INDEX schedule_ticks_execution ON schedule_ticks (execution_id);

CREATE TABLE api_tokens (
    id         TEXT    NOT NULL PRIMARY KEY,
    hash       TEXT    NOT NULL,
    created_at INTEGER NOT NULL
) STRICT;
