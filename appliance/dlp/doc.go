// Package dlp owns response data-loss prevention: it scans HTTP response
// bodies as they stream from the upstream to the client, finds payment card
// numbers, US social security numbers, IBANs, e-mail addresses, E.164 phone
// numbers, secrets (cloud keys, private keys, JWTs, API tokens) and the values
// of configured JSON fields, and then logs, redacts in place, or withholds the
// response.
//
// The engine builds one [Policy] per route with [New] and wraps the route's
// handler with [Policy.Wrap]. The scan is a single pass over the bytes with a
// cheap trigger table; precise validators (Luhn, issuer prefixes, IBAN
// mod-97, SSN area rules, country codes) run only at candidate positions.
// Matches that straddle Write calls are found because a bounded tail of
// undecided bytes is held back; nothing else is buffered except, for the
// block action, up to max_block_buffer bytes so the whole response can still
// be replaced.
//
// The package never logs, counts or alerts with a matched value: only its
// kind, its byte offset in the body and its length.
//
// It knows nothing of listeners, TLS, sealing or routing: the engine calls it
// with plaintext responses before sealing.
package dlp
