-- Authorizations that connect an app (the same change in migrations/sqlite and
-- migrations/postgres): an `oauth_states` row started for an app's `oauth2` connection type
-- (the console's connect page, `switchyard connections authorize`) names the app and the
-- connection to store under it, so the callback stores an app connection (context `app`)
-- instead of the integration's own. Both are NULL for an integration's own flow.
ALTER TABLE oauth_states ADD COLUMN app TEXT;
ALTER TABLE oauth_states ADD COLUMN connection_name TEXT;
