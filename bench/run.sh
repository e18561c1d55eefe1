#!/usr/bin/env bash
# Side-by-side benchmark of authzd (REST and gRPC) and OPA's own server
# (`opa run --server`) making the same decision on loopback. See
# BENCHMARKS.md and docs/bench.md.
#
#   bash bench/run.sh                 # the comparison table (make bench)
#   bash bench/run.sh --soak          # a million decisions, RSS sampled
#   bash bench/run.sh --duration 5s --levels "1 32"
#
# Tokens and the signing key are kept in bench/out and reused; every cell of
# the table gets a freshly started server, so its caches start cold.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
OUT=$ROOT/bench/out
DURATION=10s
LEVELS="1 8 32"
DISTINCT=40000
REPEATED=16
SETS="distinct repeated"
SERVERS="rest grpc opa grpc-unshared"
SOAK=0
SOAK_REQUESTS=1000000
SOAK_CONC=8
ISSUER=https://idp.bench.invalid/

while [ $# -gt 0 ]; do
	case $1 in
	--soak) SOAK=1 ;;
	--soak-requests) SOAK_REQUESTS=$2; shift ;;
	--duration) DURATION=$2; shift ;;
	--levels) LEVELS=$2; shift ;;
	--distinct) DISTINCT=$2; shift ;;
	--sets) SETS=$2; shift ;;
	--servers) SERVERS=$2; shift ;;
	-h | --help) sed -n '2,11p' "$0"; exit 0 ;;
	*) echo "run.sh: unknown argument $1" >&2; exit 2 ;;
	esac
	shift
done

mkdir -p "$OUT/bin" "$OUT/logs"
PIDS=()
cleanup() {
	for p in "${PIDS[@]}"; do
		kill "$p" 2>/dev/null || true
	done
	wait 2>/dev/null || true
}
trap cleanup EXIT

log() { echo "bench: $*" >&2; }

# Binaries: authzd (make bench builds it first), OPA pinned by tools/go.mod,
# and the harness's own programs.
[ -x bin/authzd ] || make build
OPA=$ROOT/.tools/bin/opa
if [ ! -x "$OPA" ]; then
	OPA=$OUT/bin/opa
	if [ ! -x "$OPA" ]; then
		log "building OPA from tools/go.mod"
		(cd tools && CGO_ENABLED=0 go build -o "$OPA" github.com/open-policy-agent/opa)
	fi
fi
go build -o "$OUT/bin/fixture" ./bench/fixture
go build -o "$OUT/bin/loadgen" ./bench/loadgen
FIXTURE=$OUT/bin/fixture
LOADGEN=$OUT/bin/loadgen

"$FIXTURE" mint -out "$OUT" -issuer "$ISSUER" -distinct "$DISTINCT" -repeated "$REPEATED"

read -r JWKS_PORT < <("$FIXTURE" ports 1)
"$FIXTURE" jwks -addr "127.0.0.1:$JWKS_PORT" -file "$OUT/jwks.json" 2>"$OUT/logs/jwks.log" &
PIDS+=($!)

cat >"$OUT/authzd.yaml" <<EOF
# Written by bench/run.sh.
grpc_addr: 127.0.0.1:9090
http_addr: 127.0.0.1:8080
clock_skew: 60s
policy:
  dir: $ROOT/policies
issuers:
  - issuer: $ISSUER
    audiences: [superset]
    jwks_url: http://127.0.0.1:$JWKS_PORT/jwks.json
    algorithms: [RS256]
    groups_claim: groups
decision_log:
  output: "off"
EOF

# wait_ok URL: poll until the URL answers 200, for up to 30 seconds.
wait_ok() {
	local deadline=$((SECONDS + 30))
	until curl -fsS -o /dev/null "$1" 2>/dev/null; do
		if [ $SECONDS -ge $deadline ]; then
			log "$1 did not become ready in 30s"
			return 1
		fi
		sleep 0.1
	done
}

# start_server KIND: starts a fresh server; sets SERVER_PID and ADDR.
start_server() {
	local kind=$1 ports http grpc
	mapfile -t ports < <("$FIXTURE" ports 2)
	http=127.0.0.1:${ports[0]} grpc=127.0.0.1:${ports[1]}
	case $kind in
	rest | grpc | grpc-unshared)
		# grpc-unshared turns off the policy results shared between
		# people with the same groups and mapped claims (docs/policy.md).
		local shared=10000
		if [ "$kind" = grpc-unshared ]; then shared=0; fi
		AUTHZD_POLICY_RESULT_CACHE_SIZE=$shared bin/authzd serve --config "$OUT/authzd.yaml" \
			--http-addr "$http" --grpc-addr "$grpc" --log-level warn 2>>"$OUT/logs/authzd.log" &
		SERVER_PID=$!
		wait_ok "http://$http/readyz"
		if [ "$kind" = rest ]; then ADDR=$http; else ADDR=$grpc; fi
		;;
	opa)
		"$OPA" run --server --addr "$http" --log-level error --skip-version-check \
			"$ROOT/bench/opa" "$ROOT/policies" "$OUT/opa-data" 2>>"$OUT/logs/opa.log" >/dev/null &
		SERVER_PID=$!
		wait_ok "http://$http/health"
		ADDR=$http
		;;
	esac
	PIDS+=("$SERVER_PID")
}

stop_server() {
	kill "$SERVER_PID" 2>/dev/null || true
	wait "$SERVER_PID" 2>/dev/null || true
}

label() {
	case $1 in
	rest) echo "authzd REST" ;;
	grpc) echo "authzd gRPC" ;;
	grpc-unshared) echo "authzd gRPC, sharing off" ;;
	opa) echo "OPA REST" ;;
	esac
}

machine() {
	echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC')"
	echo "- machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), $(awk '/MemTotal/ {printf "%.1f GiB RAM", $2/1048576}' /proc/meminfo)"
	echo "- load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
	echo "- $(go version)"
	echo "- $(bin/authzd version 2>/dev/null | head -1), OPA $("$OPA" version | awk '/^Version/ {print $2}')"
}

if [ "$SOAK" = 1 ]; then
	RESULTS=$OUT/soak.jsonl
	: >"$RESULTS"
	log "soak: $SOAK_REQUESTS decisions over $DISTINCT distinct tokens, $SOAK_CONC connections, authzd gRPC"
	start_server grpc
	"$LOADGEN" run -kind grpc -addr "$ADDR" -tokens "$OUT/tokens-distinct.txt" -c "$SOAK_CONC" \
		-requests "$SOAK_REQUESTS" -pid "$SERVER_PID" -label "authzd gRPC" -set distinct \
		-rss-every 1s >>"$RESULTS"
	stop_server
	{
		echo "# authzd soak"
		echo
		machine
		echo "- command: bash bench/run.sh --soak"
		echo
		"$LOADGEN" report "$RESULTS"
	} >"$OUT/soak.md"
	cat "$OUT/soak.md"
	exit 0
fi

RESULTS=$OUT/results.jsonl
: >"$RESULTS"
MACHINE=$(machine)
for set in $SETS; do
	for c in $LEVELS; do
		for kind in $SERVERS; do
			# The repeated set is answered by the decision cache alone.
			if [ "$set" = repeated ] && [ "$kind" = grpc-unshared ]; then continue; fi
			start_server "$kind"
			"$LOADGEN" run -kind "${kind%-unshared}" -series "$kind" -addr "$ADDR" -tokens "$OUT/tokens-$set.txt" -c "$c" \
				-duration "$DURATION" -pid "$SERVER_PID" -label "$(label "$kind")" -set "$set" >>"$RESULTS"
			stop_server
		done
	done
done

{
	echo "# authzd vs OPA, side by side"
	echo
	echo "$MACHINE"
	echo "- command: make bench (bash bench/run.sh --duration $DURATION --levels \"$LEVELS\"), $DISTINCT distinct tokens, $REPEATED repeated"
	echo
	"$LOADGEN" report "$RESULTS"
} >"$OUT/results.md"
cat "$OUT/results.md"
