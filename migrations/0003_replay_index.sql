-- Replay (src/eventlog/EventLog.ts, `replay`) reads every event of a stream in order, but the
-- fold needs little of a MessageAccepted payload: ref, sha256 and messageId, not the summary
-- and text body that make up most of the log. This index holds, per event, exactly what the
-- replay query selects (the expression is repeated there, character for character), so replay
-- reads this index alone, in stream order, and never the events table: the body is cut out
-- once at append time instead of being read and parsed at every start.
--
-- It is an optimisation only: without it (or with a query that no longer matches it) SQLite
-- computes the same values from the table. A fold that reads another field of MessageAccepted
-- needs a new migration that replaces this index (test/eventlog/replay.test.ts checks both).
-- SQLite only: json_object and -> on a TEXT column (Postgres would use a jsonb expression).
CREATE INDEX events_replay ON events (
  stream,
  version,
  type,
  at,
  (CASE type WHEN 'MessageAccepted' THEN json_object('ref', payload -> 'ref', 'sha256', payload -> 'sha256', 'messageId', payload -> 'messageId') ELSE payload END)
);
