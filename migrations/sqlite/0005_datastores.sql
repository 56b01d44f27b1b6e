-- Data stores (Make's `datastore:*` modules, `src/store/datastores.rs`): a store has a unique
-- name, a data structure (JSON: [{"name", "type", "required"}]) and a size limit; its records are
-- keyed by text within the store. `size_bytes` and `record_count` are kept by every write in the
-- same transaction that changes the records, and the store's row is the lock a write takes, so
-- the limit holds under concurrent writers.
-- migrations/postgres/0005_datastores.sql is the same change for PostgreSQL.
CREATE TABLE datastores (
    id             TEXT    NOT NULL PRIMARY KEY,
    name           TEXT    NOT NULL UNIQUE,
    structure      TEXT    NOT NULL,
    max_size_bytes INTEGER NOT NULL,
    size_bytes     INTEGER NOT NULL DEFAULT 0,
    record_count   INTEGER NOT NULL DEFAULT 0,
    created_at     INTEGER NOT NULL
) STRICT;

CREATE TABLE datastore_records (
    store_id   TEXT    NOT NULL REFERENCES datastores (id) ON DELETE CASCADE,
    key        TEXT    NOT NULL,
    data       TEXT    NOT NULL,
    size       INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (store_id, key)
) STRICT, WITHOUT ROWID;
