import type { UsageType } from "./config.js"

/** Whether a configuration may run on this server (settings screen: "Usage type"). */
export type UsageVerdict =
  | { readonly _tag: "Runs" }
  | { readonly _tag: "Mismatch"; readonly message: string }

export const shownUsageType = (usage: UsageType): string => (usage === "" ? "(blank)" : usage)

const RUNS: UsageVerdict = { _tag: "Runs" }

const mismatch = (message: string): UsageVerdict => ({ _tag: "Mismatch", message })

/**
 * A configuration runs when its usage type equals the server's. A blank usage type is what
 * configurations written before the setting existed carry; they may run only on a Production
 * server (the upgrade rule of the source document). A server with a blank usage type runs nothing:
 * it has not said what it is.
 */
export const usageVerdict = (server: UsageType, configuration: UsageType): UsageVerdict => {
  if (server === "") {
    return mismatch(
      `the server usage type is blank (configuration usage type ${shownUsageType(configuration)}): ` +
        "set server.usageType or MAILINTAKE_USAGE_TYPE to Production, Test, Development or Training"
    )
  }
  if (configuration === server) return RUNS
  if (configuration === "") {
    return server === "Production"
      ? RUNS
      : mismatch(
        `configuration usage type is blank and the server usage type is ${server}: a blank usage type ` +
          `runs only on a Production server; set this configuration's usageType to "${server}"`
      )
  }
  return mismatch(
    `configuration usage type ${configuration} does not match the server usage type ${server}: ` +
      `its mailboxes are not polled on this server`
  )
}
