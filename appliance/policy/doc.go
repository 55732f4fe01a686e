// Package policy composes a route's access-control stages into one
// pipeline: authentication (authn), authorization (authz) and rate limiting
// (ratelimit), in that order, in front of the route's handler. It owns the
// route-level policy config ([route.auth], [[route.authz.rule]],
// [route.rate_limit]), the 401/403/429 answers and their problem bodies, the
// denial metric, the recorded identity and decision, and escalation of
// persistent rate-limit offenders to the blocklist. Token, key and claim
// values never leave the stages: responses, logs and reqctx carry only who
// was identified and which rule or reason decided.
package policy
