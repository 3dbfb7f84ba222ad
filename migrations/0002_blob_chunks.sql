-- Large raw messages are stored in pieces. One INSERT of a 200 MB value makes the driver and
-- SQLite each hold a copy of it (and reading it back one more); pieces of 1 MiB cost a piece.
-- blobs.chunks = 0: the message is in blobs.content, as before. Otherwise blobs.content is
-- empty and the message is the blob_chunks of its sha256, seq 0 to chunks - 1, in order,
-- written in the same transaction as the blobs row.
ALTER TABLE blobs ADD COLUMN chunks INTEGER NOT NULL DEFAULT 0;

CREATE TABLE blob_chunks (
  sha256  TEXT    NOT NULL,
  seq     INTEGER NOT NULL,
  content BLOB    NOT NULL,
  PRIMARY KEY (sha256, seq)
);
