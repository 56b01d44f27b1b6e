-- Paged, summarised execution history (GET /api/executions/{id}?module=M&offset=O&limit=L).
-- migrations/sqlite/0002_module_pages.sql is the same change for SQLite.

-- Module data keyed by module first: one module's stored bundles of one execution, in order,
-- are a range of the primary key (a page reads that range), and an execution's data, written
-- in module order, is appended at the end of its range instead of being spread over one
-- index page per module at every commit (the data of a large execution is committed in
-- parts). `seq` is still the position in the execution's log.
ALTER TABLE execution_modules DROP CONSTRAINT execution_modules_pkey;
ALTER TABLE execution_modules ADD PRIMARY KEY (execution_id, module_id, seq);

-- The per-module summary written with the finish: `[{module, runs, bundles, stored, omitted,
-- errors, filtered, truncated}]` in order of first run. NULL for executions finished before
-- it existed (or without a run): readers then count the stored rows.
ALTER TABLE executions ADD COLUMN modules JSONB;
