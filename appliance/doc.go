// Package appliance is sealgate's user-space engine: it terminates TLS on the
// listeners it is handed, routes requests by host and path, runs each route's
// policy stages, and forwards clean traffic to the real API through a pooled
// reverse proxy, reporting numbers to Prometheus families and one access-log
// line per request.
//
// The engine knows nothing of eBPF or config files: the daemon gives it
// net.Listeners (steered by eBPF or not) and Specs decoded from whatever
// source, and can apply a new Spec at any time (reload) without dropping open
// connections.
package appliance
