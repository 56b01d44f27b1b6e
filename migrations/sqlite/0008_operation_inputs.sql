-- The execution inspector's inputs: besides its output bundles, an execution's module data
-- keeps the input of each module's first operations (the mapper, evaluated), as rows of the
-- same table flagged `input`, after the outputs in `seq` order. Readers of outputs skip them.
-- migrations/postgres/0008_operation_inputs.sql is the same change for PostgreSQL.
ALTER TABLE execution_modules ADD COLUMN input INTEGER NOT NULL DEFAULT 0 CHECK (input IN (0, 1));
