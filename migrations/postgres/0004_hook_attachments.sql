-- What an instant trigger's `attach` returned when its scenario was activated (the service's
-- id for the hook, as JSON text), handed back to `detach`. NULL while nothing is registered.
ALTER TABLE hooks ADD COLUMN attachment TEXT;
