-- How many runs of a mailbox (a start of the daemon, or of the mailbox after a crash of its
-- fiber) started again the decision on a message retrieved before, and did not record it
-- (src/mailbox/MailboxActor.ts, `finishInFlight`). Retries within one run (the event log refused
-- a write, the connection dropped) do not count: only a run that stopped does. A message that brings the daemon down
-- while it is being decided (it runs out of memory, or crashes it) would otherwise be decided
-- again at every start, and with it the daemon would stop at every start: after a few tries it
-- is quarantined as processing-error without being parsed. Not an event, like
-- mailbox_heartbeats: it counts attempts, it decides nothing, and it is written before the
-- attempt, outside any append.
CREATE TABLE decision_attempts (
  stream   TEXT    NOT NULL,
  ref      TEXT    NOT NULL,
  sha256   TEXT    NOT NULL,
  attempts INTEGER NOT NULL,
  -- The run that made the last attempt.
  run      TEXT    NOT NULL,
  PRIMARY KEY (stream, ref, sha256)
);
