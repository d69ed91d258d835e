-- `/metrics` counts alert deliveries (`alert_sent` events) by channel and outcome at every
-- scrape: a partial index keeps that a read of the deliveries, not a scan of the whole log,
-- and costs nothing when other events are appended.
CREATE INDEX events_alert_sent ON events (id) WHERE kind = 'alert_sent';
