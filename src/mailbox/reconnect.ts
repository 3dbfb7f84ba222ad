/**
 * Reconnect backoff: from the configured interval, ×1.5 per failed attempt, capped at ten
 * times the interval, jittered ±20 % so that many mailboxes of a restarted server do not
 * log in all at once. The attempt count resets only after a connection stayed healthy for
 * `HEALTHY_AFTER`, so a flapping server cannot cause a login storm.
 */
import { Duration } from "effect"

export const GROWTH = 1.5
export const CAP_FACTOR = 10
export const JITTER = 0.2
export const HEALTHY_AFTER = Duration.minutes(3)

/**
 * The delay before reconnect attempt `attempt` (1 for the first retry). `random` is uniform
 * in [0, 1): the result lies within [0.8, 1.2] × min(base × 1.5^(attempt-1), 10 × base).
 */
export const reconnectDelay = (baseSeconds: number, attempt: number, random: number): Duration.Duration => {
  const raw = Math.min(baseSeconds * GROWTH ** Math.max(0, attempt - 1), baseSeconds * CAP_FACTOR)
  const factor = 1 - JITTER + 2 * JITTER * random
  return Duration.millis(Math.round(raw * factor * 1000))
}
