-- Paged, summarised execution history (GET /api/executions/{id}?module=M&offset=O&limit=L).
-- migrations/postgres/0002_module_pages.sql is the same change for PostgreSQL.

-- Module data keyed by module first: one module's stored bundles of one execution, in order,
-- are a range of the primary key (a page reads that range), and an execution's data, written
-- in module order, is appended at the end of its range instead of being spread over one
-- index page per module at every commit (the data of a large execution is committed in
-- parts). `seq` is still the position in the execution's log.
CREATE TABLE execution_modules_by_module (
    execution_id TEXT    NOT NULL REFERENCES executions (id) ON DELETE CASCADE,
    module_id    INTEGER NOT NULL,
    seq          INTEGER NOT NULL,
    output       TEXT    NOT NULL,
    truncated    INTEGER NOT NULL DEFAULT 0 CHECK (truncated IN (0, 1)),
    PRIMARY KEY (execution_id, module_id, seq)
) STRICT;
INSERT INTO execution_modules_by_module (execution_id, module_id, seq, output, truncated)
    SELECT execution_id, module_id, seq, output, truncated FROM execution_modules;
DROP TABLE execution_modules;
ALTER TABLE execution_modules_by_module RENAME TO execution_modules;

-- The per-module summary written with the finish: `[{module, runs, bundles, stored, omitted,
-- errors, filtered, truncated}]` in order of first run. NULL for executions finished before
-- it existed (or without a run): readers then count the stored rows.
ALTER TABLE executions ADD COLUMN modules TEXT;
