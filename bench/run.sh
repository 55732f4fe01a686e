#!/usr/bin/env bash
# bench/run.sh quick|full — sealgate against nginx, HAProxy and Caddy on one
# machine: same certificate, upstream, TLS settings and cores, alternating
# rounds. Writes bench/results/<date>-<host>.{md,png,tsv} and prints the table.
# bench/run.sh profile keeps CPU and allocation profiles of the engine;
# bench/run.sh floor measures nginx, sealgate and two Go reference relays side
# by side (see floor_run); bench/run.sh pair REV compares this tree's engine
# with the one at git revision REV (see pair_run).
#
# Fairness: each proxy runs on core $PROXY_CPU (taskset) with one worker
# (nginx worker_processes 1, HAProxy nbthread 1, Caddy and sealgate
# GOMAXPROCS=1); the load generators and the upstream (one nginx worker
# serving static files) share core $LOAD_CPU. TLS 1.3 only,
# TLS_AES_128_GCM_SHA256, X25519, one ECDSA P-256 certificate, keep-alive.
set -euo pipefail

MODE=${1:-quick}
case "$MODE" in
quick) ROUNDS=1 DUR=2 WARM=500ms IDLE_CONNS=1000 IDLE_SETTLE=1s ;;
full) ROUNDS=3 DUR=4 WARM=1s IDLE_CONNS=10000 IDLE_SETTLE=2s ;;
profile) ROUNDS=1 DUR=10 WARM=1s IDLE_CONNS=0 IDLE_SETTLE=0s ;;
floor) ROUNDS=${FLOOR_ROUNDS:-5} DUR=5 WARM=1s IDLE_CONNS=0 IDLE_SETTLE=0s ;;
pair)
	ROUNDS=${PAIR_ROUNDS:-7} DUR=5 WARM=1s IDLE_CONNS=0 IDLE_SETTLE=0s
	BASE_REV=${2:?usage: $0 pair GIT-REVISION}
	;;
*)
	echo "usage: $0 quick|full|profile|floor|pair REV" >&2
	exit 2
	;;
esac

ROOT=$(cd "$(dirname "$0")/.." && pwd)
if [ "$MODE" = pair ] && ! git -C "$ROOT" rev-parse --verify --quiet "$BASE_REV^{commit}" >/dev/null; then
	echo "$0 pair: $BASE_REV is not a git revision of $ROOT" >&2
	exit 2
fi
RESULTS=${BENCH_RESULTS:-$ROOT/bench/results}
TEMPLATES=$ROOT/bench/templates
WORK=$(mktemp -d /tmp/sealgate-bench.XXXXXX)
chmod 755 "$WORK" # nginx workers run unprivileged and read www/
LOAD_CPU=0
PROXY_CPU=1
if [ "$(nproc)" -lt 2 ]; then
	echo "warning: fewer than 2 cores; proxy and load share core 0, figures are not comparable to the published ones" >&2
	PROXY_CPU=0
fi
UPPORT=18080
declare -A PORT=([nginx]=18443 [haproxy]=18444 [caddy]=18445 [sealgate]=18446)
POLICY_PORT=18447
STEER_LISTEN=18448
STEER_PORT=18449
PEERS=(nginx haproxy caddy sealgate)

declare -A PID=()
STARTED=()

log() { printf '%s bench: %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

cleanup() {
	local rc=$?
	for p in "${STARTED[@]}"; do
		kill "$p" 2>/dev/null || true
	done
	for p in "${STARTED[@]}"; do
		wait "$p" 2>/dev/null || true
	done
	if [ "${KEEP_WORK:-0}" = 1 ]; then
		log "work directory kept: $WORK"
	else
		rm -rf "$WORK"
	fi
	exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

install_deps() {
	local need=()
	command -v nginx >/dev/null || need+=(nginx)
	command -v haproxy >/dev/null || need+=(haproxy)
	command -v caddy >/dev/null || need+=(caddy)
	command -v h2load >/dev/null || need+=(nghttp2-client)
	command -v wrk >/dev/null || need+=(wrk)
	command -v taskset >/dev/null || need+=(util-linux)
	command -v curl >/dev/null || need+=(curl)
	command -v openssl >/dev/null || need+=(openssl)
	if [ ${#need[@]} -gt 0 ]; then
		log "installing ${need[*]}"
		apt-get update -qq
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
	fi
}

# render TEMPLATE OUT KEY=VALUE... substitutes @KEY@ placeholders.
render() {
	local in=$1 out=$2
	shift 2
	local args=()
	for kv in "$@"; do
		args+=(-e "s|@${kv%%=*}@|${kv#*=}|g")
	done
	sed "${args[@]}" -e "s|@WORK@|$WORK|g" -e "s|@UPPORT@|$UPPORT|g" -e "s|@NOFILE@|$NOFILE|g" -e "s|@HAPROXY_MAXCONN@|$HAPROXY_MAXCONN|g" "$in" >"$out"
}

# wait_https PORT waits until the proxy answers GET /json with 200.
wait_https() {
	local port=$1 extra=${2:-}
	for _ in $(seq 1 200); do
		if [ "$(curl -sk -o /dev/null -w '%{http_code}' ${extra:+-H "$extra"} "https://127.0.0.1:$port/json")" = 200 ]; then
			return 0
		fi
		sleep 0.1
	done
	return 1
}

# start NAME LOGS(on|off) starts one peer on the proxy core.
start() {
	local name=$1 logs=$2 port=${PORT[$1]}
	local out=$WORK/$name.out
	case "$name" in
	nginx)
		mkdir -p "$WORK/nginx-tmp"
		local acc=off
		[ "$logs" = on ] && acc="$WORK/nginx-access.log"
		render "$TEMPLATES/nginx.conf" "$WORK/nginx.conf" "PORT=$port" "NGINX_ACCESS=$acc"
		taskset -c $PROXY_CPU nginx -p "$WORK" -c "$WORK/nginx.conf" >"$out" 2>&1 &
		;;
	haproxy)
		local gl="" dl=""
		if [ "$logs" = on ]; then
			gl="    log stdout format raw local0"
			dl="    log global
    option httplog"
		fi
		render "$TEMPLATES/haproxy.cfg" "$WORK/haproxy.cfg" "PORT=$port" "HAPROXY_GLOBAL_LOG=$gl"
		# multi-line value: replace with awk
		awk -v dl="$dl" '{ if ($0 == "@HAPROXY_DEFAULTS_LOG@") print dl; else print }' "$WORK/haproxy.cfg" >"$WORK/haproxy.cfg.tmp"
		mv "$WORK/haproxy.cfg.tmp" "$WORK/haproxy.cfg"
		taskset -c $PROXY_CPU haproxy -db -f "$WORK/haproxy.cfg" >"$WORK/haproxy-access.log" 2>"$out" &
		;;
	caddy)
		local cl=""
		[ "$logs" = on ] && cl="    log {
        output file $WORK/caddy-access.log
    }"
		render "$TEMPLATES/Caddyfile" "$WORK/Caddyfile" "PORT=$port"
		awk -v cl="$cl" '{ if ($0 == "@CADDY_LOG@") print cl; else print }' "$WORK/Caddyfile" >"$WORK/Caddyfile.tmp"
		mv "$WORK/Caddyfile.tmp" "$WORK/Caddyfile"
		XDG_DATA_HOME=$WORK/caddy-xdg XDG_CONFIG_HOME=$WORK/caddy-xdg HOME=$WORK GOMAXPROCS=1 \
			taskset -c $PROXY_CPU caddy run --config "$WORK/Caddyfile" --adapter caddyfile >"$out" 2>&1 &
		;;
	sealgate)
		local acc=off
		[ "$logs" = on ] && acc=stdout
		render "$TEMPLATES/sealgate.toml" "$WORK/sealgate.toml" "PORT=$port" "SEALGATE_ACCESS=$acc"
		GOMAXPROCS=1 taskset -c $PROXY_CPU "$ROOT/bin/sealgate" run --config "$WORK/sealgate.toml" >"$WORK/sealgate-access.log" 2>"$out" &
		;;
	esac
	PID[$name]=$!
	STARTED+=($!)
	if ! wait_https "$port"; then
		log "$name did not come up on port $port; its output:"
		tail -20 "$out" >&2
		exit 1
	fi
}

stop() {
	local name=$1
	kill "${PID[$name]}" 2>/dev/null || true
	wait "${PID[$name]}" 2>/dev/null || true
	unset "PID[$name]"
}

# pids NAME prints the peer's process and its children, comma-separated.
pids() {
	local p=${PID[$1]}
	local kids
	kids=$(pgrep -P "$p" | paste -sd, || true)
	echo "$p${kids:+,$kids}"
}

# Load generators run on the load core with the client TLS settings pinned
# the same way for every peer.
load() { OPENSSL_CONF=$WORK/openssl-client.cnf taskset -c $LOAD_CPU "$@"; }

url() {
	if [ "$1" = upstream ]; then echo "http://127.0.0.1:$UPPORT$2"; else echo "https://127.0.0.1:${PORT[$1]}$2"; fi
}

# record ROUND SCENARIO PEER TOOL FILE appends parsed figures to raw.tsv.
record() {
	"$SGBENCH" parse -tool "$4" -in "$5" -prefix "$1	$2	$3" >>"$WORK/raw.tsv" || {
		log "$3 $2: no result:"
		tail -5 "$5" >&2
	}
}

# last_error FILE prints the last error line of a sealgate output, without
# the work directory's path.
last_error() {
	{ grep -E '"level":"ERROR"|^[^{]' "$1" || tail -1 "$1"; } | tail -1 | sed "s|$WORK/||g" | tr '\t' ' ' | cut -c1-240
}

na() { printf '%s\t%s\t%s\n' "$1" "$2" "$3" >>"$WORK/na.tsv"; }

# rotate ROUND prints the peers starting at a different one each round.
rotate() {
	local r=$1 n=${#PEERS[@]}
	for i in $(seq 0 $((n - 1))); do
		echo "${PEERS[$(((i + r) % n))]}"
	done
}

# cpu_ticks PID,PID... prints the user+system CPU ticks the processes used.
cpu_ticks() {
	local total=0 p
	for p in ${1//,/ }; do
		[ -r "/proc/$p/stat" ] || continue
		total=$((total + $(sed 's/.*) //' "/proc/$p/stat" | awk '{print $12 + $13}')))
	done
	echo $total
}

# The proxy's CPU use during a measurement: its share of one core
# (cpu_util), so the report can state throughput per core used, which the
# other work on a shared machine does not distort as much as wall-clock
# throughput.
measure_start() {
	MEASURE_PIDS=""
	[ -n "${PID[$1]:-}" ] && MEASURE_PIDS=$(pids "$1")
	MEASURE_T0=$(date +%s.%N)
	MEASURE_C0=$(cpu_ticks "$MEASURE_PIDS")
}

measure_end() { # ROUND SCENARIO PEER
	[ -n "$MEASURE_PIDS" ] || return 0
	local c1 t1
	c1=$(cpu_ticks "$MEASURE_PIDS")
	t1=$(date +%s.%N)
	awk -v r="$1" -v s="$2" -v p="$3" -v c=$((c1 - MEASURE_C0)) -v hz="$CLK_TCK" -v t0="$MEASURE_T0" -v t1="$t1" \
		'BEGIN { printf "%s\t%s\t%s\tcpu_util\t%.4f\n", r, s, p, (c / hz) / (t1 - t0) }' >>"$WORK/raw.tsv"
}

run_h1() { # ROUND SCENARIO PEER PATH CONNS [extra wrk args]
	local out=$WORK/out.$1.$2.$3
	measure_start "$3"
	load wrk -t1 -c"$5" -d"${DUR}s" --timeout 10s --latency "${@:6}" "$(url "$3" "$4")" >"$out" 2>&1 || true
	measure_end "$1" "$2" "${REC_AS:-$3}"
	record "$1" "$2" "${REC_AS:-$3}" wrk "$out"
}

run_h2() { # ROUND PEER
	local out=$WORK/out.$1.s2_h2.$2
	measure_start "$2"
	load h2load -t1 -c8 -m8 -D "$DUR" --warm-up-time "$WARM" "$(url "$2" /json)" >"$out" 2>&1 || true
	measure_end "$1" s2_h2 "$2"
	record "$1" s2_h2 "$2" h2load "$out"
}

run_fixed() { # ROUND PEER RATE
	load env GOMAXPROCS=1 "$SGBENCH" rate -url "$(url "$2" /json)" -ca "$WORK/cert.pem" -rate "$3" \
		-duration "${DUR}s" -warmup "$WARM" -conns 64 -prefix "$1	s5_fixed	$2" >>"$WORK/raw.tsv" ||
		log "$2 s5_fixed: fixed-rate client failed"
}

median_of() { # ROUND SCENARIO PEER METRIC
	awk -F'\t' -v r="$1" -v s="$2" -v p="$3" -v m="$4" '$1==r && $2==s && $3==p && $4==m {print $5}' "$WORK/raw.tsv" | tail -1
}

setup() {
	install_deps
	# 10,000 idle connections need as many descriptors in the proxy and the
	# client; take the hard limit (up to 65536).
	local hard
	hard=$(ulimit -Hn)
	[ "$hard" = unlimited ] && hard=65536
	NOFILE=$((hard < 65536 ? hard : 65536))
	ulimit -n "$NOFILE"
	# HAProxy reserves two descriptors per connection (client and server).
	HAPROXY_MAXCONN=$(((NOFILE - 200) / 2))
	if [ "$HAPROXY_MAXCONN" -lt $((IDLE_CONNS + 100)) ]; then
		IDLE_CONNS=$((HAPROXY_MAXCONN - 100))
		log "warning: open-file hard limit $hard; scenario 7 uses $IDLE_CONNS connections"
	fi
	log "building sealgate and the bench helper"
	if ! (cd "$ROOT" && make -s build); then
		[ -x "$ROOT/bin/sealgate" ] || exit 1
		log "warning: make build failed; measuring the existing bin/sealgate"
	fi
	CLK_TCK=$(getconf CLK_TCK)
	SGBENCH=$WORK/sgbench
	(cd "$ROOT" && go build -o "$SGBENCH" ./bench/cmd/sgbench)
	"$SGBENCH" cert -dir "$WORK"
	cat "$WORK/cert.pem" "$WORK/key.pem" >"$WORK/haproxy.pem"
	cat >"$WORK/openssl-client.cnf" <<-EOF
		openssl_conf = openssl_init
		[openssl_init]
		ssl_conf = ssl_sect
		[ssl_sect]
		system_default = system_default_sect
		[system_default_sect]
		MinProtocol = TLSv1.3
		Ciphersuites = TLS_AES_128_GCM_SHA256
		Groups = X25519
	EOF
	mkdir -p "$WORK/www" "$WORK/upstream-tmp" "$RESULTS"
	: >"$WORK/raw.tsv"
	: >"$WORK/na.tsv"
	# 1 KiB JSON (exactly 1024 bytes) and a 1 MiB file.
	python3 - "$WORK/www/small.json" <<-'EOF'
		import json, sys
		items = []
		doc = {"id": "c-1001", "name": "Ada Lovelace", "plan": "team", "items": items}
		while len(json.dumps(doc, separators=(",", ":"))) < 1000:
		    items.append({"sku": "A-%d" % len(items), "qty": 1, "price": "9.99"})
		s = json.dumps(doc, separators=(",", ":"))
		s = s[:-1] + ',"pad":"' + "x" * (1024 - len(s) - 9) + '"}'
		assert len(s) == 1024, len(s)
		open(sys.argv[1], "w").write(s)
	EOF
	head -c 1048576 /dev/urandom >"$WORK/www/1m.bin"
	render "$TEMPLATES/upstream-nginx.conf" "$WORK/upstream.conf"
	taskset -c $LOAD_CPU nginx -p "$WORK" -c "$WORK/upstream.conf" >"$WORK/upstream.out" 2>&1 &
	STARTED+=($!)
	for _ in $(seq 1 50); do
		curl -sf -o /dev/null "http://127.0.0.1:$UPPORT/json" && break
		sleep 0.1
	done
	curl -sf -o /dev/null "http://127.0.0.1:$UPPORT/json" || {
		log "upstream did not start:"
		cat "$WORK/upstream.out" "$WORK/upstream.err" >&2 || true
		exit 1
	}
}

meta() {
	local m=$WORK/meta.md
	{
		echo "## Machine and versions"
		echo
		echo "- mode: \`$MODE\` ($ROUNDS round(s), ${DUR}s per measurement, warm-up $WARM for h2load and the fixed-rate client; scenario 7 with $IDLE_CONNS connections)"
		echo "- host: $(hostname), kernel $(uname -r), $(nproc) cores: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')"
		echo "- proxy core: $PROXY_CPU; load generators and upstream core: $LOAD_CPU"
		echo "- load average at start: $(cut -d' ' -f1-3 /proc/loadavg); at end: @LOADEND@ (other work on the machine shows up as spread)"
		echo "- sealgate: $("$ROOT/bin/sealgate" version 2>/dev/null | head -1) (git $(cd "$ROOT" && git rev-parse --short HEAD)), $(go version | cut -d' ' -f3)"
		echo "- nginx: $(nginx -v 2>&1 | cut -d/ -f2); HAProxy: $(haproxy -v | head -1 | cut -d' ' -f3); Caddy: $(caddy version | cut -d' ' -f1)"
		echo "- wrk: $(wrk -v 2>&1 | head -1 | cut -d' ' -f2); h2load: $(h2load --version | cut -d/ -f2); $(openssl version)"
		echo
		echo "## Settings"
		echo
		echo "- Certificate: one self-signed ECDSA P-256 for 127.0.0.1 (generated per run)."
		echo "- TLS: 1.3 only; TLS_AES_128_GCM_SHA256 (nginx/HAProxy configured; Go's crypto/tls picks it on AES-NI for Caddy and sealgate; the OpenSSL clients offer only it); X25519 (clients offer only it)."
		echo "- Workers: nginx \`worker_processes 1\`, HAProxy \`nbthread 1\`, Caddy and sealgate \`GOMAXPROCS=1\` (default GOGC); all pinned with \`taskset -c $PROXY_CPU\`."
		echo "- Keep-alive to clients and to the upstream for all (nginx \`keepalive 128\` upstream pool; HAProxy and Caddy and sealgate pool by default)."
		echo "- Upstream: nginx 1 worker on core $LOAD_CPU serving a 1024-byte JSON file and a 1 MiB file over HTTP/1.1; measured alone in the \`upstream\` rows (sharing its core with the load generator, so those rows are a floor, not its ceiling)."
		echo "- Access logs off, except scenario 1b (each proxy writes one line per request to a file)."
		echo "- Load: scenario 1 \`wrk -t1 -c64 --latency\`; 1b same; 2 \`h2load -t1 -c8 -m8\`; 3 \`wrk -t1 -c64 -H 'Connection: close'\` (wrk does not resume sessions: full handshake each); 4 \`wrk -t1 -c16\` on /1m (MB/s of 10^6 bytes incl. headers); 5 \`sgbench rate\` (Go, open loop, latency from the scheduled start, 64 conns) at 50% of nginx's scenario-1 rate of the same round; 6a wrk with an API key; 6b \`sgbench sealed\` (client SDK, 64 workers, h2); 7 \`sgbench idle\` (one request on each connection, then idle; PSS of the proxy's processes), 7b the same with \`-h2\` (one stream on each h2 connection)."
		echo
		echo "## Negotiated TLS per peer"
		echo
		for p in "${PEERS[@]}"; do
			local s
			s=$(OPENSSL_CONF=$WORK/openssl-client.cnf openssl s_client -connect "127.0.0.1:${PORT[$p]}" -alpn http/1.1 </dev/null 2>/dev/null |
				grep -E '^(New, |Server Temp Key|Peer signature type)' | tr '\n' ';' | sed 's/;$//')
			echo "- $p: $s"
		done
		echo
		echo "Raw figures: the \`.tsv\` beside this page (round, scenario, peer, metric, value)."
	} >"$m"
}

scenario6() {
	# The steered instance starts now so its start-up overlaps 6a and 6b.
	render "$TEMPLATES/sealgate-steer.toml" "$WORK/sealgate-steer.toml" "PORT=$STEER_LISTEN" "STEERPORT=$STEER_PORT"
	GOMAXPROCS=1 taskset -c $PROXY_CPU "$ROOT/bin/sealgate" run --config "$WORK/sealgate-steer.toml" >"$WORK/steer.out" 2>&1 &
	local sp=$!
	STARTED+=($sp)
	PID[sealgate-steered]=$sp

	# 6a: policy pipeline and DLP.
	local key sum out
	key=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
	sum=$(printf '%s' "$key" | sha256sum | cut -d' ' -f1)
	render "$TEMPLATES/sealgate-policy.toml" "$WORK/sealgate-policy.toml" "PORT=$POLICY_PORT" "APIKEY_SHA256=$sum"
	GOMAXPROCS=1 taskset -c $PROXY_CPU "$ROOT/bin/sealgate" run --config "$WORK/sealgate-policy.toml" >"$WORK/policy.out" 2>&1 &
	local pp=$!
	STARTED+=($pp)
	PID[sealgate-policy]=$pp
	if wait_https $POLICY_PORT "X-API-Key: $key"; then
		local denied
		denied=$(curl -sk -o /dev/null -w '%{http_code}' "https://127.0.0.1:$POLICY_PORT/json")
		if [ "$denied" = 401 ] || [ "$denied" = 403 ]; then
			for r in $(seq 1 "$ROUNDS"); do
				REC_AS=sealgate run_h1 "$r" s6_policy sealgate-policy /json 64 -H "X-API-Key: $key"
			done
		else
			na s6_policy sealgate "the policy stage did not refuse a request without an API key (status $denied): the route.auth keys are not wired"
		fi
	else
		local code
		code=$(curl -sk -o /dev/null -w '%{http_code}' -H "X-API-Key: $key" "https://127.0.0.1:$POLICY_PORT/json" || true)
		if [ "$code" != 000 ]; then
			na s6_policy sealgate "the policy route answered $code to a request with a valid API key"
		else
			na s6_policy sealgate "$(last_error "$WORK/policy.out")"
		fi
	fi
	kill $pp 2>/dev/null || true
	wait $pp 2>/dev/null || true

	# 6b: sealed requests through the client SDK.
	local rc=0
	for r in $(seq 1 "$ROUNDS"); do
		measure_start sealgate
		load "$SGBENCH" sealed -url "$(url sealgate /json)" -ca "$WORK/cert.pem" -duration "${DUR}s" -c 64 \
			-prefix "$r	s6_sealed	sealgate" >>"$WORK/raw.tsv" 2>"$WORK/sealed.err" || rc=$?
		if [ $rc -ne 0 ]; then
			na s6_sealed sealgate "$(tail -1 "$WORK/sealed.err" | sed 's/^sealed requests: //' | cut -c1-240)"
			break
		fi
		measure_end "$r" s6_sealed sealgate
	done

	# 6c: an eBPF-steered port (started above).
	if wait_https $STEER_LISTEN; then
		if wait_https $STEER_PORT; then
			PORT[sealgate-steered]=$STEER_PORT
			for r in $(seq 1 "$ROUNDS"); do
				REC_AS=sealgate run_h1 "$r" s6_steered sealgate-steered /json 64
			done
			unset "PORT[sealgate-steered]"
		else
			local why
			why=$("$ROOT/bin/sealgate" status --socket "$WORK/sealgate-steer-admin.sock" --json 2>/dev/null | jq -r '.steering.reason // empty' || true)
			na s6_steered sealgate "${why:-port $STEER_PORT is not steered to the listener}"
		fi
	else
		na s6_steered sealgate "$(last_error "$WORK/steer.out")"
	fi
	kill $sp 2>/dev/null || true
	wait $sp 2>/dev/null || true
}

# profile_engine runs the engine in-process (bench/cmd/sgprofile) under the
# scenario 1, 2 and 4 loads and keeps CPU and allocation profiles in
# bench/results/profiles/ (PROFILE_TAG names them; default: the git commit).
profile_engine() {
	local tag=${PROFILE_TAG:-$(cd "$ROOT" && git rev-parse --short HEAD)}
	local dir=$RESULTS/profiles
	mkdir -p "$dir"
	(cd "$ROOT" && go build -o "$WORK/sgprofile" ./bench/cmd/sgprofile)
	local summary=$dir/$tag-summary.txt
	: >"$summary"
	for scen in s1_h1 s2_h2 s4_bulk s1_h1_log; do
		local flags=()
		[ $scen = s1_h1_log ] && flags=(-access-log)
		GOMAXPROCS=1 taskset -c $PROXY_CPU "$WORK/sgprofile" -listen "127.0.0.1:${PORT[sealgate]}" \
			-upstream "http://127.0.0.1:$UPPORT" -cert "$WORK/cert.pem" -key "$WORK/key.pem" "${flags[@]}" \
			-wait 1s -duration $((DUR - 2))s -cpuprofile "$dir/$tag-$scen-cpu.pprof" \
			-allocprofile "$dir/$tag-$scen-allocs.pprof" 2>"$WORK/sgprofile.out" &
		local pp=$!
		STARTED+=($pp)
		wait_https "${PORT[sealgate]}" || {
			cat "$WORK/sgprofile.out" >&2
			exit 1
		}
		case $scen in
		s1_h1 | s1_h1_log) run_h1 1 $scen sealgate /json 64 ;;
		s2_h2) run_h2 1 sealgate ;;
		s4_bulk) run_h1 1 $scen sealgate /1m 16 ;;
		esac
		kill $pp
		wait $pp 2>/dev/null || true
		{
			echo "== $scen: $(grep -E 'Requests/sec|finished in' "$WORK/out.1.$scen.sealgate")"
			go tool pprof -top -nodecount=35 "$dir/$tag-$scen-cpu.pprof" 2>/dev/null | tail -n +5
			echo "-- allocations (alloc_space)"
			go tool pprof -top -nodecount=20 -sample_index=alloc_space "$dir/$tag-$scen-allocs.pprof" 2>/dev/null | tail -n +5
			echo
		} >>"$summary"
	done
	log "profiles in $dir ($tag-*)"
}

# side_by_side KIND TAG PEER... loads every peer at the same time, each
# with its own client on the load core (KIND: wrk's connection count, or h2
# for h2load -c4 -m8), and prints "PEER<TAB>requests per CPU second<TAB>CPU
# used" for each peer that answered without errors.
side_by_side() {
	local kind=$1 tag=$2 p
	shift 2
	declare -A c0=() lp=()
	for p in "$@"; do c0[$p]=$(cpu_ticks "$(pids "$p")"); done
	for p in "$@"; do
		case $kind in
		h2) load h2load -t1 -c4 -m8 -D "$DUR" --warm-up-time "$WARM" "$(url "$p" /json)" ;;
		*) load wrk -t1 -c"$kind" -d"${DUR}s" --timeout 10s "$(url "$p" /json)" ;;
		esac >"$WORK/$tag.$p" 2>&1 &
		lp[$p]=$!
	done
	for p in "$@"; do wait "${lp[$p]}" || true; done
	for p in "$@"; do
		local c1 rps
		c1=$(cpu_ticks "$(pids "$p")")
		rps=$(awk '/^Requests\/sec/ {print $2} /^finished in/ {print $4}' "$WORK/$tag.$p")
		if grep -qE 'Non-2xx|status codes: [0-9]+ 2xx, [0-9]+ 3xx, [1-9]' "$WORK/$tag.$p"; then
			log "$p answered errors ($tag)"
			continue
		fi
		awk -v p="$p" -v rps="${rps:-0}" -v c=$((c1 - ${c0[$p]})) -v hz="$CLK_TCK" -v d="$DUR" \
			'BEGIN { if (rps > 0 && c > 0) printf "%s\t%.0f\t%.3f\n", p, rps * d / (c / hz), (c / hz) / d }'
	done
}

# floor_run answers "how far could the engine go on this runtime": nginx,
# sealgate and two Go reference relays (sgbench relay) serve scenario 1's
# load at the same time, all on the proxy core, one wrk each on the load
# core. Running them together rather than in turn gives every one the same
# machine state, so the ratios hold even when the machine's speed drifts
# between rounds (at the cost of each proxy having only part of the core).
# relay-bytes terminates TLS and copies bytes (no HTTP); relay-fasthttp is
# fasthttp's server and client with nothing of the engine's work. Each round
# then serves scenario 2's h2 load to nginx and sealgate side by side.
floor_run() {
	PORT[relay-fasthttp]=18463
	PORT[relay-bytes]=18464
	local peers=(nginx sealgate relay-fasthttp relay-bytes) p m r logs=off relays=(fasthttp bytes) suffix=""
	# FLOOR_LOG=1: nginx and sealgate with their access logs on (scenario
	# 1b), without the relays, which have none.
	if [ "${FLOOR_LOG:-0}" = 1 ]; then
		logs=on relays=() suffix=-log
		peers=(nginx sealgate)
	fi
	start nginx $logs
	start sealgate $logs
	for m in "${relays[@]}"; do
		GOMAXPROCS=1 taskset -c $PROXY_CPU "$SGBENCH" relay -mode $m -listen "127.0.0.1:${PORT[relay-$m]}" \
			-upstream "127.0.0.1:$UPPORT" -cert "$WORK/cert.pem" -key "$WORK/key.pem" 2>"$WORK/relay-$m.out" &
		PID[relay-$m]=$!
		STARTED+=($!)
		wait_https "${PORT[relay-$m]}" || {
			tail -5 "$WORK/relay-$m.out" >&2
			exit 1
		}
	done
	local tsv=$WORK/floor.tsv h2tsv=$WORK/floor-h2.tsv
	: >"$tsv"
	: >"$h2tsv"
	for r in $(seq 1 "$ROUNDS"); do
		log "floor round $r/$ROUNDS"
		side_by_side 16 "floor.$r" "${peers[@]}" | awk -v r="$r" '{ print r "\t" $0 }' >>"$tsv"
		# Scenario 2's load, nginx and sealgate only (the relays speak
		# HTTP/1.1).
		side_by_side h2 "floor-h2.$r" nginx sealgate | awk -v r="$r" '{ print r "\t" $0 }' >>"$h2tsv"
	done
	local out
	out=$RESULTS/$(date -u +%Y-%m-%d)-$(hostname)-floor$suffix.md
	{
		echo "# Floor: sealgate against Go reference relays ($(date -u +%Y-%m-%d), $(hostname))"
		echo
		echo "Scenario 1's request (1 KiB JSON, HTTP/1.1 keep-alive) served by ${#peers[@]} processes at the same time on"
		echo "core $PROXY_CPU, one \`wrk -t1 -c16\` each on core $LOAD_CPU, $ROUNDS rounds of ${DUR}s; per core = requests /"
		echo "CPU seconds of the process; ratios to nginx per round, then the median (min–max)."
		if [ $logs = on ]; then
			echo "Access logs on: nginx's combined format to a file, sealgate's JSON lines on stdout to a file."
		fi
		echo
		echo "| Process | What it does | req/s per core (median) | CPU used | ratio to nginx |"
		echo "|---|---|---:|---:|---:|"
		floor_table "$tsv" "${peers[@]}"
		echo
		echo "The same side by side over h2 (scenario 2's request; \`h2load -t1 -c4 -m8\` each), nginx and sealgate only:"
		echo
		echo "| Process | What it does | req/s per core (median) | CPU used | ratio to nginx |"
		echo "|---|---|---:|---:|---:|"
		floor_table "$h2tsv" nginx sealgate
		echo
		echo "- $(nginx -v 2>&1); $(go version | cut -d' ' -f3); $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'); kernel $(uname -r)"
	} >"$out"
	cat "$out"
	log "wrote $out"
}

# floor_table TSV PEER... prints a table row per peer from side_by_side's
# rounds (round, peer, requests per CPU second, CPU used): the medians and
# the per-round ratio to nginx.
floor_table() {
	local tsv=$1
	shift
	awk -F'\t' -v peers="$*" '
		{ pc[$2, $1] = $3; cpu[$2, $1] = $4; rounds[$1] = 1 }
		function med(a, n,   i, j, t) { for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }; return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2 }
		END {
			what["nginx"] = "the reference proxy (worker_processes 1)"
			what["sealgate"] = "the engine, fast path (no stages)"
			what["relay-fasthttp"] = "fasthttp server + HostClient, nothing else"
			what["relay-bytes"] = "TLS termination + byte copy, no HTTP"
			np = split(peers, ps, " ")
			for (k = 1; k <= np; k++) {
				p = ps[k]; n = 0; m = 0; delete v; delete q; delete u
				for (r in rounds) {
					if ((p, r) in pc) { v[++n] = pc[p, r]; u[n] = cpu[p, r] }
					if ((p, r) in pc && ("nginx", r) in pc) q[++m] = pc[p, r] / pc["nginx", r]
				}
				if (n == 0) { printf "| %s | %s | – | – | – |\n", p, what[p]; continue }
				lo = 1e9; hi = 0; for (i = 1; i <= m; i++) { if (q[i] < lo) lo = q[i]; if (q[i] > hi) hi = q[i] }
				printf "| %s | %s | %.0f | %.2f | **%.2f** (%.2f–%.2f) |\n", p, what[p], med(v, n), med(u, n), med(q, m), lo, hi
			}
		}' "$tsv"
}

# pair_run judges an engine change: this tree's sealgate and the one built
# at $BASE_REV serve at the same time on the proxy core, each loaded by its
# own client on the load core (scenario 1: wrk -c32; scenario 2: h2load -c4
# -m8), for $ROUNDS rounds; the ratio of requests per CPU second, this tree
# over the base, is taken per round. Both see the same machine state, so a
# change of 2 % shows, where sequential rounds on a shared machine drift by
# ±10 %.
pair_run() {
	local base=$WORK/base rev p r
	rev=$(cd "$ROOT" && git rev-parse --short "$BASE_REV")
	log "building the engine at $rev"
	(cd "$ROOT" && git worktree add -q --detach "$base" "$rev")
	(cd "$base" && go build -o "$WORK/sealgate-base" ./cmd/sealgate) || {
		(cd "$ROOT" && git worktree remove --force "$base")
		exit 1
	}
	(cd "$ROOT" && git worktree remove --force "$base")
	PORT[base]=18465
	# PAIR_LOG=1: both with the access log on (scenario 1b).
	local logs=off acc=off
	[ "${PAIR_LOG:-0}" = 1 ] && logs=on acc=stdout
	start sealgate $logs
	render "$TEMPLATES/sealgate.toml" "$WORK/base.toml" "PORT=${PORT[base]}" "SEALGATE_ACCESS=$acc"
	sed -i -e 's|sealgate-state|sealgate-base-state|' -e 's|sealgate-admin.sock|sealgate-base-admin.sock|' "$WORK/base.toml"
	GOMAXPROCS=1 taskset -c $PROXY_CPU "$WORK/sealgate-base" run --config "$WORK/base.toml" >"$WORK/base-access.log" 2>"$WORK/base.out" &
	PID[base]=$!
	STARTED+=($!)
	wait_https "${PORT[base]}" || {
		tail -5 "$WORK/base.out" >&2
		exit 1
	}
	local tsv=$WORK/pair.tsv scen
	: >"$tsv"
	for scen in s1_h1 s2_h2; do
		for r in $(seq 1 "$ROUNDS"); do
			log "pair $scen round $r/$ROUNDS"
			local kind=32
			[ $scen = s2_h2 ] && kind=h2
			side_by_side $kind "pair.$scen.$r" sealgate base |
				awk -v s=$scen -v r="$r" '{ print s "\t" r "\t" $1 "\t" $2 }' >>"$tsv"
		done
	done
	local out
	out=$RESULTS/$(date -u +%Y-%m-%d)-$(hostname)-pair.md
	{
		echo "# Paired run: this tree ($(cd "$ROOT" && git rev-parse --short HEAD)$(cd "$ROOT" && git diff --quiet HEAD -- . || echo ', modified')) against $rev ($(date -u +%Y-%m-%d), $(hostname))"
		echo
		echo "Both engines on core $PROXY_CPU at the same time, one client each on core $LOAD_CPU, $ROUNDS rounds of ${DUR}s, access log $logs;"
		echo "per core = requests / CPU seconds; the ratio this tree / base per round, then the median (min–max)."
		echo
		echo "| Scenario | this tree, req/s per core (median) | base | ratio |"
		echo "|---|---:|---:|---:|"
		awk -F'\t' '
			{ v[$1, $2, $3] = $4; rounds[$2] = 1; scens[$1] = 1 }
			function med(a, n,   i, j, t) { for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }; return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2 }
			END {
				name["s1_h1"] = "1. 1 KiB JSON, HTTP/1.1 (wrk -c32 each)"; name["s2_h2"] = "2. the same over h2 (h2load -c4 -m8 each)"
				split("s1_h1 s2_h2", ss, " ")
				for (k = 1; k <= 2; k++) {
					s = ss[k]; n = 0; delete a; delete b; delete q
					for (r in rounds) if ((s, r, "sealgate") in v && (s, r, "base") in v) {
						n++; a[n] = v[s, r, "sealgate"]; b[n] = v[s, r, "base"]; q[n] = a[n] / b[n]
					}
					if (n == 0) { printf "| %s | – | – | – |\n", name[s]; continue }
					lo = 1e9; hi = 0; for (i = 1; i <= n; i++) { if (q[i] < lo) lo = q[i]; if (q[i] > hi) hi = q[i] }
					printf "| %s | %.0f | %.0f | **%.3f** (%.3f–%.3f) |\n", name[s], med(a, n), med(b, n), med(q, n), lo, hi
				}
			}' "$tsv"
	} >"$out"
	cat "$out"
	log "wrote $out"
}

# BENCH_ONLY=6 or BENCH_ONLY=7 runs just that scenario (for development).
main() {
	setup
	if [ "$MODE" = profile ]; then
		profile_engine
		return
	fi
	if [ "$MODE" = floor ]; then
		floor_run
		return
	fi
	if [ "$MODE" = pair ]; then
		pair_run
		return
	fi
	for p in "${PEERS[@]}"; do start "$p" off; done
	meta
	local t0=$SECONDS
	[ -n "${BENCH_ONLY:-}" ] && for p in "${PEERS[@]}"; do stop "$p"; done
	[ -z "${BENCH_ONLY:-}" ] && for r in $(seq 1 "$ROUNDS"); do
		log "round $r/$ROUNDS"
		run_h1 "$r" s1_h1 upstream /json 64
		for p in $(rotate "$r"); do run_h1 "$r" s1_h1 "$p" /json 64; done
		for p in $(rotate "$r"); do run_h2 "$r" "$p"; done
		for p in $(rotate "$r"); do run_h1 "$r" s3_newconn "$p" /json 64 -H "Connection: close"; done
		run_h1 "$r" s4_bulk upstream /1m 16
		for p in $(rotate "$r"); do run_h1 "$r" s4_bulk "$p" /1m 16; done
		local max rate
		max=$(median_of "$r" s1_h1 nginx rps)
		rate=$(awk -v m="${max:-0}" 'BEGIN { printf "%d", m / 2 }')
		if [ "$rate" -gt 0 ]; then
			run_fixed "$r" upstream "$rate"
			for p in $(rotate "$r"); do run_fixed "$r" "$p" "$rate"; done
		fi
	done
	if [ -z "${BENCH_ONLY:-}" ]; then
		log "scenario 1b: access logs on"
		for p in "${PEERS[@]}"; do stop "$p"; done
		for p in "${PEERS[@]}"; do start "$p" on; done
		for r in $(seq 1 "$ROUNDS"); do
			for p in $(rotate "$r"); do run_h1 "$r" s1_h1_log "$p" /json 64; done
		done
		for p in "${PEERS[@]}"; do stop "$p"; done
	fi
	if [ -z "${BENCH_ONLY:-}" ] || [ "$BENCH_ONLY" = 6 ]; then
		log "scenario 6: sealgate only"
		PORT[sealgate-policy]=$POLICY_PORT
		start sealgate off
		scenario6
		stop sealgate
	fi
	[ -z "${BENCH_ONLY:-}" ] || [ "$BENCH_ONLY" = 7 ] || IDLE_CONNS=0
	[ "$IDLE_CONNS" -gt 0 ] && log "scenario 7: $IDLE_CONNS idle connections, each peer freshly started"
	[ "$IDLE_CONNS" -gt 0 ] && for p in "${PEERS[@]}"; do
		start "$p" off
		load "$SGBENCH" idle -settle "$IDLE_SETTLE" -addr "127.0.0.1:${PORT[$p]}" -ca "$WORK/cert.pem" -n "$IDLE_CONNS" -pids "$(pids "$p")" \
			-prefix "1	s7_idle	$p" >>"$WORK/raw.tsv" 2>"$WORK/idle.err" ||
			na s7_idle "$p" "$(tail -1 "$WORK/idle.err" | cut -c1-200)"
		stop "$p"
		start "$p" off
		load "$SGBENCH" idle -settle "$IDLE_SETTLE" -h2 -addr "127.0.0.1:${PORT[$p]}" -ca "$WORK/cert.pem" -n "$IDLE_CONNS" -pids "$(pids "$p")" \
			-prefix "1	s7_idle_h2	$p" >>"$WORK/raw.tsv" 2>"$WORK/idle.err" ||
			na s7_idle_h2 "$p" "$(tail -1 "$WORK/idle.err" | cut -c1-200)"
		stop "$p"
	done
	log "measured in $((SECONDS - t0))s"
	sed -i "s|@LOADEND@|$(cut -d' ' -f1-3 /proc/loadavg); measured in $((SECONDS - t0))s|" "$WORK/meta.md"
	local stem
	stem=$RESULTS/$(date -u +%Y-%m-%d)-$(hostname)
	[ "$MODE" = quick ] && stem=$stem-quick
	cp "$WORK/raw.tsv" "$stem.tsv"
	"$SGBENCH" report -raw "$WORK/raw.tsv" -na "$WORK/na.tsv" -meta "$WORK/meta.md" -md "$stem.md" -png "$stem.png" \
		-title "sealgate vs nginx, HAProxy, Caddy ($MODE, $(date -u +%Y-%m-%d), $(hostname))"
	log "wrote $stem.md and $stem.png"
}

main
