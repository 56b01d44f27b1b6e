-- Parked bundles (the same change in migrations/sqlite and migrations/postgres): the bundles an
-- execution parks are written in the transaction that finishes it, each numbered by its
-- position (`seq`), so that an execution's parked bundles are stored once even if its finish
-- is written again. Rows stored before are numbered in the order of their ids.
ALTER TABLE incomplete_executions ADD COLUMN seq INTEGER NOT NULL DEFAULT 0;
UPDATE incomplete_executions SET seq = (
    SELECT COUNT(*) FROM incomplete_executions AS earlier
    WHERE earlier.execution_id = incomplete_executions.execution_id
      AND earlier.id < incomplete_executions.id
);
CREATE UNIQUE INDEX incomplete_execution_seq ON incomplete_executions (execution_id, seq);
DROP INDEX incomplete_execution;
