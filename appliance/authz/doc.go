// Package authz owns the authorization stage of the policy pipeline: route
// rules matched with Go ServeMux patterns ("GET /api/customers/{id}") that
// require scopes or roles, object-level ownership checks against broken
// object-level authorization (a path variable must equal or be listed in a
// claim of the identity), and attribute rules in CEL compiled and
// type-checked at config load. A protected route denies what no rule
// matches. It decides only; answering the client is the policy package's job.
package authz
