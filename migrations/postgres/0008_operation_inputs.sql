-- The execution inspector's inputs: besides its output bundles, an execution's module data
-- keeps the input of each module's first operations (the mapper, evaluated), as rows of the
-- same table flagged `input`, after the outputs in `seq` order. Readers of outputs skip them.
-- migrations/sqlite/0008_operation_inputs.sql is the same change for SQLite.
ALTER TABLE execution_modules ADD COLUMN input BOOLEAN NOT NULL DEFAULT FALSE;
