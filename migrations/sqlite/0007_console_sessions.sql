-- The web console's sign-in sessions: the session id is only ever stored as its SHA-256
-- (hex), so a copy of the database signs nobody in; each session has its own CSRF token and
-- an expiry (milliseconds since the epoch).
CREATE TABLE console_sessions (
    id_sha256 TEXT PRIMARY KEY,
    csrf_token TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
);
CREATE INDEX console_sessions_expiry ON console_sessions (expires_at);
