/**
 * A raw message as the event log stores it, read straight from the database (better-sqlite3):
 * in `blobs.content`, or, for a large one (migration 0002), in its `blob_chunks` in order.
 */
import type Database from "better-sqlite3"

export const storedBlob = (db: Database.Database, sha256: string): Buffer | undefined => {
  const row = db.prepare("SELECT content, chunks FROM blobs WHERE sha256 = ?").get(sha256) as
    | { content: Buffer; chunks: number }
    | undefined
  if (row === undefined) return undefined
  if (row.chunks === 0) return row.content
  const chunks = db.prepare("SELECT content FROM blob_chunks WHERE sha256 = ? ORDER BY seq").all(sha256) as Array<{ content: Buffer }>
  return Buffer.concat(chunks.map((chunk) => chunk.content))
}
