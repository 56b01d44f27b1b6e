-- Stored connections (`src/connections/`): the credentials scenarios name in
-- `parameters.__IMTCONN__`. Every column but `sealed` is plain metadata; the connection's values
-- (tokens, passwords, keys, base URL …) are one AES-256-GCM blob sealed under the master key
-- `key_id` names, with the row id and the key id as associated data, so a blob cannot be moved to
-- another row. The master key itself is never in the database.
-- migrations/sqlite/0003_connections.sql is the same change for SQLite.
CREATE TABLE connections (
    id         TEXT   NOT NULL PRIMARY KEY,
    name       TEXT   NOT NULL UNIQUE,
    app        TEXT   NOT NULL,
    kind       TEXT   NOT NULL,
    key_id     TEXT   NOT NULL,
    sealed     BYTEA  NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
