-- The event log (DESIGN.md, "The processing protocol"): the source of truth.
-- Written as SQL that Postgres also accepts, except for the position column
-- (SQLite's INTEGER PRIMARY KEY is the rowid; Postgres would use BIGSERIAL).

-- Every event, in one global order. (stream, version) is unique: the optimistic
-- concurrency check of an append.
CREATE TABLE events (
  position INTEGER PRIMARY KEY,
  stream   TEXT    NOT NULL,
  version  INTEGER NOT NULL,
  type     TEXT    NOT NULL,
  payload  TEXT    NOT NULL,
  at       TEXT    NOT NULL,
  UNIQUE (stream, version)
);
CREATE INDEX events_type_at ON events (type, at);
CREATE INDEX events_at ON events (at);

-- The current version of every stream (one stream per mailbox).
CREATE TABLE streams (
  stream  TEXT    PRIMARY KEY,
  version INTEGER NOT NULL
);

-- Raw messages, content-addressed by sha256, written in the same transaction as the
-- MessageRetrieved event that names them.
CREATE TABLE blobs (
  sha256  TEXT    PRIMARY KEY,
  size    INTEGER NOT NULL,
  content BLOB    NOT NULL
);

-- Projection kept in the append transaction: a message (sha256 + Message-ID) is accepted
-- at most once per mailbox, enforced by the database as well as by the mailbox actor.
CREATE TABLE accepted_messages (
  stream     TEXT    NOT NULL,
  sha256     TEXT    NOT NULL,
  message_id TEXT    NOT NULL,
  ref        TEXT    NOT NULL,
  position   INTEGER NOT NULL,
  PRIMARY KEY (stream, sha256, message_id)
);

-- When each mailbox last polled. Not an event: an idle poll appends nothing.
CREATE TABLE mailbox_heartbeats (
  stream      TEXT PRIMARY KEY,
  last_poll_at TEXT NOT NULL
);
