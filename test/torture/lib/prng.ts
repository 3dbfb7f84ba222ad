/**
 * A small seeded PRNG (mulberry32) for the torture suite: every random choice (when to kill
 * the daemon, where to cut a connection, which hostile message to generate) comes from a
 * seed that is printed with the results, so a failing run can be replayed exactly.
 */
export interface Prng {
  /** Uniform in [0, 1). */
  next(): number
  /** Uniform integer in [min, max] (both included). */
  int(min: number, max: number): number
  chance(p: number): boolean
  pick<T>(items: ReadonlyArray<T>): T
  /** A new independent generator derived from this one and a label. */
  fork(label: string): Prng
  readonly seed: number
}

const hashLabel = (label: string): number => {
  let h = 2166136261
  for (let i = 0; i < label.length; i++) h = Math.imul(h ^ label.charCodeAt(i), 16777619)
  return h >>> 0
}

export const prng = (seed: number): Prng => {
  let state = seed >>> 0
  const next = (): number => {
    state = (state + 0x6d2b79f5) >>> 0
    let t = state
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
  const self: Prng = {
    seed,
    next,
    int: (min, max) => min + Math.floor(next() * (max - min + 1)),
    chance: (p) => next() < p,
    pick: (items) => {
      if (items.length === 0) throw new Error("pick from an empty list")
      return items[Math.floor(next() * items.length)]!
    },
    fork: (label) => prng((seed ^ hashLabel(label)) >>> 0)
  }
  return self
}
