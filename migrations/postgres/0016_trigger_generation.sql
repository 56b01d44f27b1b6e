-- A polling trigger's reset (src/store/triggers.rs, Store::reset_trigger_state) keeps the row,
-- empties it and bumps its generation; a poll commits its progress only into the generation it
-- read, so a poll in flight during a reset cannot bring back the state the reset forgot.
ALTER TABLE trigger_state ADD COLUMN generation BIGINT NOT NULL DEFAULT 0;
