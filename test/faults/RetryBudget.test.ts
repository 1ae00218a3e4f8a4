/**
 * A short outage during a burst of commits must not use up the retry schedule (2 s doubling to
 * 64 s, "failed" after 10 failed retries). Each commit is tried at once; before the fix each such
 * failure counted as a retry, so ten commits in a 1.5 s outage ended the timed retries and nothing
 * was delivered after the heal until the next interval (300 s by default) or the next commit.
 */
import { afterEach, expect, it } from "vitest"
import { sleep } from "./FaultProxy.js"
import { captureLogs, type Cluster, expectConverged, expectIdle, startCluster, statuses, write } from "./Cluster.js"

let cluster: Cluster | undefined
let logs: ReturnType<typeof captureLogs> | undefined
afterEach(async () => {
  await cluster?.close()
  logs?.restore()
})

it("a 1.5 s outage with a burst of 12 commits is delivered soon after the heal (default interval)", async () => {
  logs = captureLogs()
  // no intervalSeconds: the default period (300 s), so only the retry schedule can deliver
  cluster = await startCluster({ names: ["A", "B"], links: [["A", "B"], ["B", "A"]], timeoutMs: 1_000 })
  const [a, b] = cluster.nodes as [NonNullable<Cluster["nodes"][0]>, NonNullable<Cluster["nodes"][0]>]
  await expectIdle(cluster.nodes, 10_000)
  await b.proxy.set({ _tag: "refuse" })
  const keys: Array<string> = []
  for (let i = 0; i < 12; i++) {
    keys.push(`burst-${i}`)
    await write(a, `burst-${i}`, String(i))
    await sleep(100)
  }
  const during = await statuses([a])
  await b.proxy.set({ _tag: "pass" })
  // 1.5 s of outage is not "retries exhausted"
  expect(during["A->B"]!.state).not.toBe("failed")
  // the first retry is due about 2 s after the first failed commit: soon after the heal
  await expectConverged(cluster.nodes, keys, 10_000)
  await expectIdle(cluster.nodes, 5_000)
  expect(logs.bad()).toEqual([])
}, 60_000)
