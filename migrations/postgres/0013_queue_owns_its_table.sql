-- The job queue is the executions table itself (src/queue/work.rs): a `queued` execution is
-- a job, a claim (compare-and-set on its status and attempt) is its delivery, its end is its
-- acknowledgement. The schema apalis kept for jobs and workers, and apalis's own migration
-- book, are no longer used: every execution their jobs pointed to is still `queued` (or
-- `running`, taken over once its heartbeats stop), so nothing is lost by dropping them.
DROP SCHEMA IF EXISTS apalis CASCADE;
DROP TABLE IF EXISTS _sqlx_migrations;

-- Idle workers LISTEN on `switchyard_executions`: every statement that makes an execution
-- `queued` notifies them when its transaction commits (PostgreSQL folds the identical
-- notifications of one transaction into one), so a queued execution waits for no poll.
CREATE OR REPLACE FUNCTION switchyard_execution_queued() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('switchyard_executions', '');
    RETURN NULL;
END
$$;

DROP TRIGGER IF EXISTS executions_queued ON executions;
CREATE TRIGGER executions_queued
    AFTER INSERT OR UPDATE OF status ON executions
    FOR EACH ROW WHEN (NEW.status = 'queued')
    EXECUTE FUNCTION switchyard_execution_queued();
