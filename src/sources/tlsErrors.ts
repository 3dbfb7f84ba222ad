/**
 * The error codes of a TLS failure (Node's `tls` and OpenSSL): a certificate that does not
 * verify, a name that does not match, or a peer that does not speak TLS at all. The sources
 * report them as `tls` errors, so an operator reads "certificate" rather than "connection
 * reset", and nothing is retried as if the network had hiccupped.
 */
export const TLS_ERROR_CODES: ReadonlySet<string> = new Set([
  "DEPTH_ZERO_SELF_SIGNED_CERT",
  "SELF_SIGNED_CERT_IN_CHAIN",
  "UNABLE_TO_VERIFY_LEAF_SIGNATURE",
  "UNABLE_TO_GET_ISSUER_CERT",
  "UNABLE_TO_GET_ISSUER_CERT_LOCALLY",
  "CERT_HAS_EXPIRED",
  "CERT_NOT_YET_VALID",
  "CERT_REVOKED",
  "ERR_TLS_CERT_ALTNAME_INVALID",
  "ERR_SSL_WRONG_VERSION_NUMBER",
  "EPROTO"
])
