-- Sub-scenarios (the same change in migrations/sqlite and migrations/postgres): an execution
-- started by `scenario-service:CallSubscenario` records the execution that called it and the
-- calling module, so history and the console link the two ways (the callee names its caller;
-- the caller's called executions are found by the index).
-- The chain of callers (for the depth limit and cycles) is walked through these links.
ALTER TABLE executions ADD COLUMN parent_execution TEXT;
ALTER TABLE executions ADD COLUMN parent_module BIGINT;
CREATE INDEX executions_by_parent ON executions (parent_execution) WHERE parent_execution IS NOT NULL;
