-- The job queue is the executions table itself (src/queue/work.rs): a `queued` execution is
-- a job, a claim (compare-and-set on its status and attempt) is its delivery, its end is its
-- acknowledgement. The tables apalis kept for jobs and workers, and apalis's own migration
-- book, are no longer used: every execution their jobs pointed to is still `queued` (or
-- `running`, taken over once its heartbeats stop), so nothing is lost by dropping them.
-- Workers read by status and age: executions_status_created (0001) serves them.
DROP TABLE IF EXISTS Jobs;
DROP TABLE IF EXISTS Workers;
DROP TABLE IF EXISTS _sqlx_migrations;
