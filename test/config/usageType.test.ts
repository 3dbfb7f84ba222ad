/**
 * Issue 5, usage type: every configuration usage type against every server usage type, decided
 * by the rule of the settings screen — equal runs; a blank configuration runs only on a
 * Production server; a blank server runs nothing — and the MAILINTAKE_USAGE_TYPE override.
 */
import { describe, expect, it } from "vitest"
import { configFile, configuration, imapMailbox, planOf, problemsOf } from "./support.js"

type Usage = "Production" | "Test" | "Development" | "Training" | ""

const shown = (usage: Usage) => (usage === "" ? "(blank)" : usage)

/** [server, configuration, verdict]: the whole matrix, written out. */
const MATRIX: ReadonlyArray<readonly [Usage, Usage, "runs" | "mismatch"]> = [
  ["Production", "Production", "runs"],
  ["Production", "Test", "mismatch"],
  ["Production", "Development", "mismatch"],
  ["Production", "Training", "mismatch"],
  ["Production", "", "runs"],
  ["Test", "Production", "mismatch"],
  ["Test", "Test", "runs"],
  ["Test", "Development", "mismatch"],
  ["Test", "Training", "mismatch"],
  ["Test", "", "mismatch"],
  ["Development", "Production", "mismatch"],
  ["Development", "Test", "mismatch"],
  ["Development", "Development", "runs"],
  ["Development", "Training", "mismatch"],
  ["Development", "", "mismatch"],
  ["Training", "Production", "mismatch"],
  ["Training", "Test", "mismatch"],
  ["Training", "Development", "mismatch"],
  ["Training", "Training", "runs"],
  ["Training", "", "mismatch"],
  ["", "Production", "mismatch"],
  ["", "Test", "mismatch"],
  ["", "Development", "mismatch"],
  ["", "Training", "mismatch"],
  ["", "", "mismatch"]
]

/** The message a person reads for a mismatch: both values, and for a blank one, the fix. */
const expectedMessage = (server: Usage, configurationUsage: Usage): string => {
  if (server === "") {
    return `the server usage type is blank (configuration usage type ${shown(configurationUsage)}): ` +
      "set server.usageType or MAILINTAKE_USAGE_TYPE to Production, Test, Development or Training"
  }
  if (configurationUsage === "") {
    return `configuration usage type is blank and the server usage type is ${server}: a blank usage type runs only ` +
      `on a Production server; set this configuration's usageType to "${server}"`
  }
  return `configuration usage type ${configurationUsage} does not match the server usage type ${server}: ` +
    "its mailboxes are not polled on this server"
}

describe("usage type matrix", () => {
  it("covers every pair of the five usage types", () => {
    expect(new Set(MATRIX.map(([server, configurationUsage]) => `${server}/${configurationUsage}`)).size).toBe(25)
  })

  it.each(MATRIX)("server %j, configuration %j: %s", async (server, configurationUsage, verdict) => {
    const plan = await planOf(configFile(
      [configuration({ usageType: configurationUsage, mailboxes: [imapMailbox("a"), imapMailbox("b")] })],
      { server: { usageType: server } }
    ))
    const expected = verdict === "runs"
      ? { _tag: "Runs" }
      : { _tag: "Mismatch", message: expectedMessage(server, configurationUsage) }
    expect(plan.serverUsageType).toBe(server)
    expect(plan.configurations.map((c) => c.usage)).toEqual([expected])
    // Every mailbox of the configuration carries the verdict: the daemon stops them all.
    expect(plan.mailboxes.map((mailbox) => [mailbox.id, mailbox.usage])).toEqual([["a", expected], ["b", expected]])
    if (verdict === "mismatch") {
      // Both values are named; a blank one as "blank", with the field to set.
      const message = (expected as { message: string }).message
      for (const usage of [server, configurationUsage]) expect(message).toContain(usage === "" ? "blank" : usage)
      if (server === "") expect(message).toContain("set server.usageType or MAILINTAKE_USAGE_TYPE to")
      else if (configurationUsage === "") expect(message).toContain(`set this configuration's usageType to "${server}"`)
    }
  })

  it("a configuration without usageType is blank, and a file without server.usageType is Production", async () => {
    const { usageType: _omitted, ...withoutUsage } = configuration()
    const plan = await planOf({ defaults: configFile().defaults, configurations: [withoutUsage] })
    expect(plan.serverUsageType).toBe("Production")
    expect(plan.configurations[0]).toMatchObject({ usageType: "", usage: { _tag: "Runs" } })
  })

  it("a mismatch is not a configuration error: the other configurations run", async () => {
    const plan = await planOf(configFile([
      configuration({ name: "live", usageType: "Production", mailboxes: [imapMailbox("live")] }),
      configuration({ name: "training", usageType: "Training", mailboxes: [imapMailbox("training")] })
    ]))
    expect(plan.mailboxes.map((mailbox) => [mailbox.id, mailbox.usage._tag])).toEqual([["live", "Runs"], ["training", "Mismatch"]])
  })
})

describe("MAILINTAKE_USAGE_TYPE", () => {
  const twoConfigurations = configFile([
    configuration({ name: "live", usageType: "Production", mailboxes: [imapMailbox("live")] }),
    configuration({ name: "test", usageType: "Test", mailboxes: [imapMailbox("test")] })
  ], { server: { usageType: "Production" } })

  it("overrides the server usage type of the file", async () => {
    const plan = await planOf(twoConfigurations, { env: { MAILINTAKE_USAGE_TYPE: "Test" } })
    expect(plan.serverUsageType).toBe("Test")
    expect(plan.serverUsageTypeSource).toBe("environment")
    expect(plan.configurations.map((c) => [c.name, c.usage._tag])).toEqual([["live", "Mismatch"], ["test", "Runs"]])
    expect(plan.configurations[0]!.usage).toEqual({
      _tag: "Mismatch",
      message: expectedMessage("Test", "Production")
    })
  })

  it("lets a blank server run through the override", async () => {
    const plan = await planOf(configFile(undefined, { server: { usageType: "" } }), { env: { MAILINTAKE_USAGE_TYPE: "Production" } })
    expect(plan.configurations[0]!.usage).toEqual({ _tag: "Runs" })
  })

  it("counts an empty variable as unset", async () => {
    const plan = await planOf(twoConfigurations, { env: { MAILINTAKE_USAGE_TYPE: "" } })
    expect(plan.serverUsageType).toBe("Production")
    expect(plan.serverUsageTypeSource).toBe("file")
  })

  it.each([
    ["prod", '"prod" is not a usage type: use Production, Test, Development or Training'],
    ["test", '"test" is not a usage type (did you mean "Test"?): use Production, Test, Development or Training'],
    ["Staging", '"Staging" is not a usage type: use Production, Test, Development or Training']
  ])("refuses %j, naming the variable", async (value, message) => {
    expect(await problemsOf(twoConfigurations, { env: { MAILINTAKE_USAGE_TYPE: value } }))
      .toEqual([{ path: "MAILINTAKE_USAGE_TYPE", message }])
  })

  it("is reported together with the problems of the file", async () => {
    const problems = await problemsOf(
      configFile([configuration({ pollingIntervalSeconds: 0 })]),
      { env: { MAILINTAKE_USAGE_TYPE: "prod" } }
    )
    expect(problems.map((problem) => problem.path)).toEqual(["MAILINTAKE_USAGE_TYPE", "configurations[0].pollingIntervalSeconds"])
  })

  it("refuses a usage type in the file that is not one, suggesting the spelling", async () => {
    expect(await problemsOf(configFile([configuration({ usageType: "production" })]))).toEqual([{
      path: "configurations[0].usageType",
      message: 'expected one of "Production", "Test", "Development", "Training", "", got "production" (did you mean "Production"?)'
    }])
  })
})
