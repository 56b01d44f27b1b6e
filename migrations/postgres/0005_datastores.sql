-- Data stores (Make's `datastore:*` modules, `src/store/datastores.rs`): a store has a unique
-- name, a data structure (JSON: [{"name", "type", "required"}]) and a size limit; its records are
-- keyed by text within the store. `size_bytes` and `record_count` are kept by every write in the
-- same transaction that changes the records, and the store's row is the lock a write takes
-- (`SELECT … FOR UPDATE`), so the limit holds and no update is lost under concurrent writers.
-- Record data is TEXT (serialised JSON, key order kept) on both backends.
-- migrations/sqlite/0005_datastores.sql is the same change for SQLite.
CREATE TABLE datastores (
    id             TEXT   NOT NULL PRIMARY KEY,
    name           TEXT   NOT NULL UNIQUE,
    structure      TEXT   NOT NULL,
    max_size_bytes BIGINT NOT NULL,
    size_bytes     BIGINT NOT NULL DEFAULT 0,
    record_count   BIGINT NOT NULL DEFAULT 0,
    created_at     BIGINT NOT NULL
);

CREATE TABLE datastore_records (
    store_id   TEXT   NOT NULL REFERENCES datastores (id) ON DELETE CASCADE,
    key        TEXT   NOT NULL,
    data       TEXT   NOT NULL,
    size       BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (store_id, key)
);
