#!/usr/bin/env bash
# bench/steer/run.sh — the eBPF data path benchmarks (issue 3), as root, in network namespaces this
# script creates and removes:
#   1. new TCP connections per second to one listener through its own address, an sk_lookup steered
#      port, an iptables REDIRECT rule, and its own address with the sk_lookup program detached,
#      alternating in one run (connrate);
#   2. the XDP guard: ns/packet from Program.Benchmark (go test -bench in bpf/) and packets per second
#      through a veth with the guard attached natively, passing and dropping (xdpflood).
# Writes bench/steer/results/<date>-<host>.md and prints it. The whole run is bounded by BUDGET
# seconds (default 180). Settings: ROUNDS DURATION WORKERS WARMUP XDP_ROUNDS XDP_DURATION (environment).
set -euo pipefail

ROUNDS=${ROUNDS:-25}
DURATION=${DURATION:-600ms}
WARMUP=${WARMUP:-1s}
WORKERS=${WORKERS:-16}
XDP_ROUNDS=${XDP_ROUNDS:-3}
XDP_DURATION=${XDP_DURATION:-1500ms}
BUDGET=${BUDGET:-180}

if [ "$(id -u)" != 0 ]; then
	echo "run as root (eBPF, network namespaces, iptables): sudo $0" >&2
	exit 1
fi
for tool in ip iptables go; do
	if ! command -v "$tool" >/dev/null; then
		echo "$tool not found; install it (Debian: apt-get install iproute2 iptables; Go from go.dev)" >&2
		exit 1
	fi
done
if ! command -v nft >/dev/null; then
	echo "warning: nft not found (apt-get install nftables): the nat table cannot be removed after the redirect phase, so conntrack stays on for the other paths" >&2
fi

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
RESULTS=${STEER_RESULTS:-$ROOT/bench/steer/results}
WORK=$(mktemp -d /tmp/sealgate-steer.XXXXXX)
TAG=$$
SRV=sgsteer-srv-$TAG
CLI=sgsteer-cli-$TAG
RX=sgsteer-rx-$TAG
TX=sgsteer-tx-$TAG
SERVE_PID=

cleanup() {
	local status=$?
	set +e
	if [ "$status" = 124 ]; then
		echo "bench/steer: a step ran out of the ${BUDGET}s budget; raise BUDGET or lower ROUNDS/DURATION" >&2
	elif [ "$status" != 0 ]; then
		echo "bench/steer: failed (status $status); namespaces and mounts removed" >&2
	fi
	if [ -n "$SERVE_PID" ]; then
		kill "$SERVE_PID" 2>/dev/null && wait "$SERVE_PID" 2>/dev/null
	fi
	for ns in "$SRV" "$CLI" "$RX" "$TX"; do
		ip netns del "$ns" 2>/dev/null
	done
	umount -l "$WORK/bpffs-xdp" 2>/dev/null
	rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# left prints the seconds left in the budget (at least 1) for `timeout`.
left() {
	local s=$((BUDGET - SECONDS))
	if [ "$s" -lt 1 ]; then
		echo "bench/steer: over the ${BUDGET}s budget" >&2
		exit 1
	fi
	echo "$s"
}

LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
echo "== building" >&2
cd "$ROOT"
timeout "$(left)" go build -o "$WORK/connrate" ./bench/steer/cmd/connrate
timeout "$(left)" go build -o "$WORK/xdpflood" ./bench/steer/cmd/xdpflood
timeout "$(left)" go test -c -o "$WORK/bpf.test" ./bpf

# netns_pair NS_A IF_A ADDR_A NS_B IF_B ADDR_B: two namespaces joined by a veth pair, IPv6 off (no
# neighbour discovery or MLD noise in the counters).
netns_pair() {
	ip netns add "$1"
	ip netns add "$4"
	ip link add name "$2" netns "$1" numtxqueues 2 numrxqueues 2 type veth peer name "$5" netns "$4" numtxqueues 2 numrxqueues 2
	for x in "$1:$2:$3" "$4:$5:$6"; do
		IFS=: read -r ns dev addr <<<"$x"
		ip netns exec "$ns" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
		ip -n "$ns" addr add "$addr/24" dev "$dev"
		ip -n "$ns" link set lo up
		ip -n "$ns" link set "$dev" up
	done
}

echo "== connection rate: direct vs sk_lookup steered vs iptables REDIRECT vs no sk_lookup" >&2
netns_pair "$CLI" c0 192.0.2.2 "$SRV" s0 192.0.2.1
ip netns exec "$CLI" sysctl -qw net.ipv4.ip_local_port_range="1024 65535"
ip netns exec "$SRV" "$WORK/connrate" serve -listen 192.0.2.1:8080 -steer 192.0.2.1:443 -bpffs "$WORK/bpffs-steer" >"$WORK/serve.out" 2>&1 &
SERVE_PID=$!
for _ in $(seq 100); do
	grep -q '^ready' "$WORK/serve.out" && break
	kill -0 "$SERVE_PID" 2>/dev/null || break
	sleep 0.1
done
if ! grep -q '^ready' "$WORK/serve.out"; then
	echo "connrate serve did not start:" >&2
	cat "$WORK/serve.out" >&2
	exit 1
fi
timeout "$(left)" ip netns exec "$CLI" "$WORK/connrate" load \
	-direct 192.0.2.1:8080 -steered 192.0.2.1:443 -redirect 192.0.2.1:80 -server-netns "$SRV" \
	-workers "$WORKERS" -rounds "$ROUNDS" -duration "$DURATION" -warmup "$WARMUP" \
	-json "$WORK/connrate.json" >"$WORK/connrate.md"
kill "$SERVE_PID"
wait "$SERVE_PID" || true
SERVE_PID=
ip netns del "$CLI"
ip netns del "$SRV"

echo "== XDP guard: Program.Benchmark" >&2
(cd "$ROOT/bpf" && timeout "$(left)" "$WORK/bpf.test" -test.run '^$' -test.bench '^(BenchmarkGuardXDP|BenchmarkSteeredConnect)$' -test.benchtime 1s) >"$WORK/gobench.txt"
# Turn `BenchmarkX/sub-2  N  123 ns/op  45.6 ns/packet  0 B/op ...` lines into table rows.
awk '/^Benchmark/ {
	name = $1; sub(/-[0-9]+$/, "", name); m = ""
	for (i = 3; i < NF; i += 2) {
		if ($(i+1) == "ns/op" || $(i+1) == "B/op" || $(i+1) == "allocs/op") continue
		m = m (m == "" ? "" : ", ") $i " " $(i+1)
		if ($(i+1) == "ns/packet") m = m sprintf(" (≈ %.1f Mpps per core)", 1000 / $i)
	}
	printf "| %s | %s |\n", name, m
}' "$WORK/gobench.txt" >"$WORK/gobench.md"
if [ ! -s "$WORK/gobench.md" ]; then
	echo "no benchmark lines in the go test output:" >&2
	cat "$WORK/gobench.txt" >&2
	exit 1
fi

echo "== XDP guard: packets per second on a veth" >&2
netns_pair "$TX" t0 192.0.2.2 "$RX" r0 192.0.2.1
timeout "$(left)" "$WORK/xdpflood" -tx-netns "/run/netns/$TX" -tx-if t0 -rx-netns "/run/netns/$RX" -rx-if r0 \
	-src 192.0.2.2 -dst 192.0.2.1 -bpffs "$WORK/bpffs-xdp" -mode native -rounds "$XDP_ROUNDS" -duration "$XDP_DURATION" \
	-json "$WORK/xdp.json" >"$WORK/xdp.md" 2>"$WORK/xdp.err" || {
	cat "$WORK/xdp.err" >&2
	exit 1
}
ip netns del "$TX"
ip netns del "$RX"

HOST=$(hostname -s)
DATE=$(date -u +%Y-%m-%d)
mkdir -p "$RESULTS"
OUT="$RESULTS/$DATE-$HOST.md"
{
	echo "# sealgate eBPF benchmarks — $DATE on $HOST"
	echo
	echo "Command: \`sudo bench/steer/run.sh\` (ROUNDS=$ROUNDS DURATION=$DURATION WARMUP=$WARMUP WORKERS=$WORKERS XDP_ROUNDS=$XDP_ROUNDS XDP_DURATION=$XDP_DURATION), $SECONDS s in all."
	echo
	echo "- Kernel: $(uname -srm)"
	echo "- CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), $(nproc) cores; load average (1, 5, 15 min) at the start: $LOAD_BEFORE, at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
	echo "- Go: $(go env GOVERSION); commit $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)"
	echo "- iptables: $(iptables -V)"
	echo
	echo "## 1. New connections per second: direct vs sk_lookup steered vs iptables REDIRECT"
	echo
	echo "Client and server in two network namespaces joined by a veth pair (192.0.2.2 → 192.0.2.1)."
	echo "The server (\`connrate serve\`) is one plain TCP listener on 192.0.2.1:8080 (MPTCP off); no TLS,"
	echo "so the cost of the path is not drowned by the handshake. Each connection: connect, send"
	echo "\`PING\\n\`, read \`PONG\\n\`, the client closes with a reset (SO_LINGER 0), the server closes."
	echo "Neither side keeps TIME_WAIT: with it, direct and redirect (which both end on port 8080) keep"
	echo "meeting their own earlier connections' TIME_WAIT sockets and the steered port does not, which"
	echo "skewed a first run by far more than the paths differ. $WORKERS concurrent clients (one Go process"
	echo "in the client namespace). Paths to the same socket:"
	echo "**direct** 192.0.2.1:8080; **steered** 192.0.2.1:443, an sk_lookup binding 192.0.2.1/32:443 →"
	echo "the listener (bpf.OpenSteering, SetBindings, RegisterSocket); **redirect** 192.0.2.1:80 with"
	echo "\`iptables -t nat -A PREROUTING -p tcp -d 192.0.2.1 --dport 80 -j REDIRECT --to-ports 8080\`,"
	echo "installed for the redirect phase only and removed with the whole nat table afterwards, so"
	echo "conntrack runs only while it is measured; **direct_no_sk_lookup** 192.0.2.1:8080 with the"
	echo "sk_lookup program detached from the namespace for that phase (bpf.Cleanup; checked: :443 then"
	echo "refuses). Otherwise the program stays attached, as on a host with steering on, so direct and"
	echo "redirect connections run it too (a miss); steered ones add the hit and bpf_sk_assign."
	echo "The conntrack column counts the entries whose original destination port is the path's at the"
	echo "end of each phase (max over rounds; entries of reset connections live 10 s): 0 means the"
	echo "path's connections were not tracked."
	echo "$ROUNDS rounds of $DURATION per path after a $WARMUP warm-up of each, the order rotating every round;"
	echo "median over rounds, spread = (max − min) / median, ratios to direct computed per round (phases"
	echo "seconds apart, so background load drifts less between them), then their median (p25–p75;"
	echo "min–max). Short phases and many rounds because the machine is shared: the ratios are the"
	echo "figures to read, not the absolute rates. Latency (µs) is connect → close, over all rounds."
	echo
	cat "$WORK/connrate.md"
	echo
	echo "## 2. XDP guard"
	echo
	echo "### Program.Benchmark (BPF_PROG_TEST_RUN, 1000 repeats per call)"
	echo
	echo "\`go test -run '^\$' -bench '^(BenchmarkGuardXDP|BenchmarkSteeredConnect)\$' -benchtime 1s ./bpf/\`;"
	echo "the guard has 10001 blocklist entries, port 443 protected, a SYN bucket of 10⁶/s."
	echo "BenchmarkSteeredConnect is connect+close over loopback in one namespace (steered vs direct, alternating)."
	echo
	echo "| Benchmark | Metrics |"
	echo "|---|---|"
	cat "$WORK/gobench.md"
	echo
	echo "### Packets per second through a veth, guard attached natively"
	echo
	cat "$WORK/xdp.md"
	echo
	echo "Every phase runs on the same $(nproc) cores as the generator: on a veth the receive side (XDP"
	echo "or the stack) runs in the sender's softirq context, so with counted ≈ sent these rates are"
	echo "bounded by generator + veth + verdict cost together, not by the guard alone; the per-packet"
	echo "cost of the guard itself is the Program.Benchmark figure above. \"pass\" packets go on to the"
	echo "stack (UDP to a port without socket, ICMP rate-limited), \"drop\" packets end in XDP. With any"
	echo "XDP program attached, veth turns each sk_buff into an XDP buffer (copying it when it lacks the"
	echo "256-byte headroom, as AF_PACKET frames do) and back for XDP_PASS, so on a veth \"pass\" costs more"
	echo "than no program at all; a NIC driver hands XDP its DMA buffer and has no such conversion."
} >"$OUT"
cat "$OUT"
echo "written: $OUT" >&2
