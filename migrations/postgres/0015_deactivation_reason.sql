-- Make's maxErrors (src/catalog/mod.rs, Catalog::deactivate_after_errors): why Switchyard
-- turned a scenario off rather than a person — NULL otherwise, cleared by any (de)activation —
-- and when it was last turned on, so that the consecutive errors are counted afresh from then.
ALTER TABLE scenarios ADD COLUMN deactivated_reason TEXT;
ALTER TABLE scenarios ADD COLUMN activated_at BIGINT;
