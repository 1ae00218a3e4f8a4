/** Print one benchmark figure as a JSON line. */
export const report = (bench: string, value: number, unit: string): void => {
  console.log(JSON.stringify({ bench, value: Math.round(value * 100) / 100, unit }))
}

/** The median of some numbers. */
export const median = (xs: ReadonlyArray<number>): number => {
  const s = [...xs].sort((a, b) => a - b)
  return s.length === 0 ? NaN : s.length % 2 === 1 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2
}
