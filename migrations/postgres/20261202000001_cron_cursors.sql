-- Cron cursors: the newest cron tick the reconciler has handled, per asset. They lived in
-- `cairn_meta` as `cron_handled:<asset>` (RFC 3339 text, one query per asset per tick);
-- a table of their own is read in one query and written in the tick's transaction.
CREATE TABLE cron_cursors (
    asset      TEXT PRIMARY KEY,
    handled_at BIGINT NOT NULL
);

INSERT INTO cron_cursors (asset, handled_at)
SELECT substr(key, length('cron_handled:') + 1),
       (extract(epoch FROM value::timestamptz) * 1000000)::bigint
FROM cairn_meta
WHERE key LIKE 'cron_handled:%';

DELETE FROM cairn_meta WHERE key LIKE 'cron_handled:%';
