#!/usr/bin/env bash
# Delivery benchmark (issue 3, acceptance 7): "REST create -> delivered to a
# receiver". Prints figures; not a timed test. In one run, same client:
#  - direct: delivery_load drives echo_receiver itself, doing the protocol
#    steps a router's rest_output does (create, PUT body, GET data_response):
#    the no-router baseline, our HTTP stack alone;
#  - koukan-router on SQLite (and PostgreSQL when KOUKAN_BENCH_PG_URL is set,
#    in a fresh database): POST create with an inline ~2 KB body, long-poll
#    until final_attempt_reason; the router delivers through
#    router -> rest_output to the same echo_receiver.
# c=1 runs N/4 messages, c=32 runs N.
# Usage: bench/delivery_bench.sh [N]   (default 2000)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
N=${1:-2000}
N1=$(( N / 4 > 0 ? N / 4 : 1 ))
CONC=${KOUKAN_BENCH_CONC:-32}
BUILD=${KOUKAN_BENCH_BUILD:-$ROOT/build-bench}
scripts/install-deps.sh >/dev/null
cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release -DKOUKAN_BUILD_TESTS=OFF >/dev/null
ninja -C "$BUILD" koukan-router echo_receiver delivery_load >/dev/null

WORK=$(mktemp -d /tmp/koukan-dbench.XXXXXX)
pids=()
PGDB=""
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if [ -n "$PGDB" ]; then
    psql "$KOUKAN_BENCH_PG_URL" -qc "DROP DATABASE IF EXISTS $PGDB WITH (FORCE)" >/dev/null 2>&1 || true
  fi
  if [ -n "${KOUKAN_BENCH_KEEP:-}" ]; then echo "kept $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_http() { for _ in $(seq 200); do curl -s -o /dev/null "$1" && return 0; sleep 0.05; done; echo "no answer from $1" >&2; return 1; }

router_config() {  # port storage_url receiver_port
  cat <<YAML
global:
  rest_id_entropy: 16
  executor:
    output: {max_inflight: 200}
rest_listener:
  addr: ["127.0.0.1", $1]
  session_uri: http://127.0.0.1:$1
storage: {url: "$2"}
sender:
- {name: bench, output_chain: bench}
rest_endpoint:
- name: receiver
  endpoint: "http://127.0.0.1:$3/senders/router/transactions"
  sender: router
endpoint:
- name: bench
  output_handler: {downstream_timeout: 60, upstream_refresh: 30}
  chain:
  - filter: router
    destination: {endpoint: receiver}
  - filter: rest_output
    rcpt_timeout: 30
    data_timeout: 60
logging: {level: ${KOUKAN_BENCH_LOG_LEVEL:-warning}}
YAML
}

start_router() {  # name storage_url -> sets RPORT RPID
  RPORT=$(free_port)
  router_config "$RPORT" "$2" "$EPORT" > "$WORK/$1.yaml"
  "$BUILD/router/koukan-router" "$WORK/$1.yaml" > "$WORK/$1.log" 2>&1 &
  RPID=$!; pids+=("$RPID")
  wait_http "http://127.0.0.1:$RPORT/healthz"
}

stop_router() {
  kill "$RPID"; wait "$RPID" 2>/dev/null || true
  local n; n=$(grep -c . "$WORK/$1.log" || true)
  if [ "$n" -gt 0 ]; then
    echo "  router log ($1): $n lines, first ones:"; head -5 "$WORK/$1.log" | sed 's/^/    /'
  fi
}

declare -A RES
load() {  # key label base_url sender mode
  for c in 1 "$CONC"; do
    local n=$N; [ "$c" = 1 ] && n=$N1
    local before after out
    before=$(delivered)
    # CPU time of the router (if running) and of the receiver over the run.
    local rcpu0 ecpu0; rcpu0=$(cpu_ticks "${RPID_LIVE:-}"); ecpu0=$(cpu_ticks "$EPID")
    out=$("$BUILD/bench/delivery_load" "$3" "$4" "$n" "$c" "$5" 2>"$WORK/load.err") || true
    local rcpu1 ecpu1; rcpu1=$(cpu_ticks "${RPID_LIVE:-}"); ecpu1=$(cpu_ticks "$EPID")
    sleep 0.2
    after=$(delivered)
    printf '%-24s c=%-3s n=%-5s %s receiver+%s cpu(router %ss, receiver %ss)\n' "$2" "$c" "$n" "$out" \
      "$((after - before))" "$(ticks_s $((rcpu1 - rcpu0)))" "$(ticks_s $((ecpu1 - ecpu0)))"
    [ -s "$WORK/load.err" ] && sed 's/^/    /' "$WORK/load.err"
    RES[$1,$c]=$out
  done
}

# utime+stime of a pid in clock ticks (0 if none).
cpu_ticks() { if [ -n "$1" ] && [ -r "/proc/$1/stat" ]; then awk '{print $14+$15}' "/proc/$1/stat"; else echo 0; fi; }
ticks_s() { python3 -c "print('%.1f' % ($1 / $(getconf CLK_TCK)))"; }
# The receiver's counters: "delivered N created M cancelled C bad_requests B".
delivered() { curl -s "http://127.0.0.1:$EPORT/stats" | awk '{print $2}'; }

echo "== REST create -> delivered, ~2 KB messages, N=$N (c=1: $N1), $(nproc) cores, $(date -I) =="
EPORT=$(free_port)
"$BUILD/bench/echo_receiver" "$EPORT" > "$WORK/receiver.log" 2>&1 &
EPID=$!; pids+=("$EPID")
wait_http "http://127.0.0.1:$EPORT/stats"
RPID_LIVE=""
load direct "direct (no router)" "http://127.0.0.1:$EPORT" router direct

start_router sqlite "sqlite://$WORK/bench.db"
RPID_LIVE=$RPID
load sqlite "router sqlite" "http://127.0.0.1:$RPORT" bench router
stop_router sqlite
RPID_LIVE=""

if [ -n "${KOUKAN_BENCH_PG_URL:-}" ]; then
  PGDB=koukan_dbench_$$
  psql "$KOUKAN_BENCH_PG_URL" -v ON_ERROR_STOP=1 -qc "CREATE DATABASE $PGDB" >/dev/null
  PGURL=$(python3 -c 'import sys, urllib.parse as u; p = u.urlsplit(sys.argv[1]); print(u.urlunsplit((p.scheme, p.netloc, "/" + sys.argv[2], p.query, "")))' \
    "$KOUKAN_BENCH_PG_URL" "$PGDB")
  start_router pg "$PGURL"
  RPID_LIVE=$RPID
  load pg "router postgresql" "http://127.0.0.1:$RPORT" bench router
  stop_router pg
  RPID_LIVE=""
fi

echo
echo "| path | c=1 msg/s | c=1 p50/p99 ms | c=$CONC msg/s | c=$CONC p50/p99 ms | failed |"
echo "|---|---|---|---|---|---|"
row() {  # key label
  local a=${RES[$1,1]:-} b=${RES[$1,$CONC]:-}
  [ -z "$a$b" ] && return 0
  f() { sed -n "s#.*$1=\([^ ]*\).*#\1#p" <<<"$2"; }
  printf '| %s | %s | %s / %s | %s | %s / %s | %s + %s |\n' "$2" \
    "$(f msgs/s "$a")" "$(f p50_ms "$a")" "$(f p99_ms "$a")" \
    "$(f msgs/s "$b")" "$(f p50_ms "$b")" "$(f p99_ms "$b")" "$(f failed "$a")" "$(f failed "$b")"
}
row direct "direct to echo_receiver (baseline)"
row sqlite "koukan-router, SQLite"
row pg "koukan-router, PostgreSQL"
