// Package seal implements sealgate's sealing protocol, both sides, as
// specified in PROTOCOL.md: the RFC 9458 key configuration, session opening
// with HPKE (RFC 9180, crypto/hpke) and the exporter, stateless session
// tickets under rotating ticket keys, the Binary HTTP codec (RFC 9292), the
// record layer (records of at most 16 KiB, nonces from the message sequence
// number and record index, the final record marked in the AAD), the
// RFC 6479-style replay window, and the key store in the state directory.
//
// It is a leaf: it knows nothing of net/http servers, config files or
// metrics. appliance/sealing serves it over HTTP and client wraps it in an
// http.RoundTripper.
package seal
