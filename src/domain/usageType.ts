import type { UsageType } from "./config.js"

/** Whether a configuration may run on this server (settings screen: "Usage type"). */
export type UsageVerdict =
  | { readonly _tag: "Runs" }
  | { readonly _tag: "Mismatch"; readonly message: string }

const shown = (usage: UsageType) => (usage === "" ? "(blank)" : usage)

/**
 * A configuration runs when its usage type equals the server's. A blank usage type is what
 * configurations written before the setting existed carry; they may run only on a Production
 * server (the upgrade rule of the source document).
 */
export const usageVerdict = (server: UsageType, configuration: UsageType): UsageVerdict => {
  if (configuration === server) {
    return configuration === "" && server === ""
      ? { _tag: "Mismatch", message: "the server usage type is blank: set server.usageType (or MAILINTAKE_USAGE_TYPE) to Production, Test, Development or Training" }
      : { _tag: "Runs" }
  }
  if (configuration === "") {
    return server === "Production"
      ? { _tag: "Runs" }
      : {
        _tag: "Mismatch",
        message: `configuration usage type is blank and the server usage type is ${shown(server)}: a blank usage type runs only on a Production server; set the configuration's usageType to "${server}"`
      }
  }
  return {
    _tag: "Mismatch",
    message: `configuration usage type ${shown(configuration)} does not match the server usage type ${shown(server)}`
  }
}
