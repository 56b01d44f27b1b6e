-- OAuth2 integrations and secrets (`src/connections/oauth.rs`): a connection made through an
-- integration (`serve --integrations`) names it by `alias`, says whether it belongs to the bot
-- or to one end user (`context`, `subject`), whether it still works (`status`: `connected` or
-- `needs_reauth`) and when its access token expires (`expires_at`, ms). `refresh_lease` is the
-- time until which one process holds the right to refresh the token, so many executions (in
-- any worker) refresh it once. Tokens themselves stay in the sealed blob.
-- An authorization in progress is an `oauth_states` row: the SHA-256 of its `state` (the
-- state itself is only in the user's browser), the PKCE verifier sealed like a connection,
-- single use (taken by DELETE … RETURNING) and expiring.
-- migrations/postgres/0006_oauth.sql is the same change for PostgreSQL.
ALTER TABLE connections ADD COLUMN alias TEXT;
ALTER TABLE connections ADD COLUMN context TEXT;
ALTER TABLE connections ADD COLUMN subject TEXT;
ALTER TABLE connections ADD COLUMN status TEXT NOT NULL DEFAULT 'connected';
ALTER TABLE connections ADD COLUMN expires_at INTEGER;
ALTER TABLE connections ADD COLUMN refresh_lease INTEGER;
CREATE INDEX connections_by_subject ON connections (subject) WHERE subject IS NOT NULL;

CREATE TABLE oauth_states (
    state_hash TEXT    NOT NULL PRIMARY KEY,
    alias      TEXT    NOT NULL,
    subject    TEXT,
    key_id     TEXT    NOT NULL,
    sealed     BLOB    NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
) STRICT;
