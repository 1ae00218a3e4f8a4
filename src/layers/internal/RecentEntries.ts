/**
 * The decoded entries a storage keeps in memory: the most recently put or read, bounded by count
 * and by memory (an entry counts twice its encoded size: its bytes and its decoded data), the oldest
 * dropped first; one larger than an eighth of the budget is not kept.
 */
import type { StoredEntry } from "../../core/Entry.js"

/**
 * Decoded entries, oldest first, bounded by count and by memory (each counting twice its encoded size); a hit is not
 * moved up (only a put or a read from the file refreshes an entry).
 */
export class RecentEntries {
  private readonly entries = new Map<string, StoredEntry>()
  private held = 0
  private readonly largest: number

  constructor(readonly maxEntries: number, readonly maxBytes: number) {
    this.largest = maxBytes / 8
  }

  /** How many entries are kept. */
  get size(): number {
    return this.entries.size
  }

  /** The memory they count for (twice their encoded bytes). */
  get bytes(): number {
    return this.held
  }

  /** Drop every entry. */
  clear(): void {
    this.entries.clear()
    this.held = 0
  }

  get(id: string): StoredEntry | undefined {
    return this.entries.get(id)
  }

  /** Keep an entry as the newest, dropping the oldest ones past either bound. */
  remember(e: StoredEntry): void {
    const weight = e.bytes.length * 2
    if (weight > this.largest) return
    if (this.entries.delete(e.id)) this.held -= weight
    this.entries.set(e.id, e)
    this.held += weight
    while (this.entries.size > this.maxEntries || this.held > this.maxBytes) {
      const [id, old] = this.entries.entries().next().value!
      this.entries.delete(id)
      this.held -= old.bytes.length * 2
    }
  }
}
