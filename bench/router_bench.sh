#!/usr/bin/env bash
# Router benchmark (issue 2, acceptance 7). Prints figures; not a timed test.
#  1. create+GET throughput: rest_load against an empty HTTP handler (the
#     baseline: our HTTP stack alone) and against koukan-router on SQLite
#     (and PostgreSQL when KOUKAN_BENCH_PG_URL is set), same run, same client.
#  2. a 100 MB body uploaded in one PUT: the router's peak RSS (VmHWM).
# Usage: bench/router_bench.sh [N] ; N create+GET pairs per run (default 2000)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
N=${1:-2000}
BUILD=${KOUKAN_BENCH_BUILD:-$ROOT/build-bench}
scripts/install-deps.sh >/dev/null
cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release -DKOUKAN_BUILD_TESTS=OFF >/dev/null
ninja -C "$BUILD" koukan-router empty_http_server rest_load >/dev/null

WORK=$(mktemp -d /tmp/koukan-bench.XXXXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_http() { for _ in $(seq 200); do curl -s -o /dev/null "$1" && return 0; sleep 0.05; done; echo "no answer from $1" >&2; return 1; }

router_config() {  # port storage_url
  cat <<YAML
global: {rest_id_entropy: 16, dequeue: false}
rest_listener:
  addr: ["127.0.0.1", $1]
  session_uri: http://127.0.0.1:$1
storage: {url: "$2"}
sender:
- {name: bench, output_chain: bench}
rest_endpoint:
- {name: sink, endpoint: "http://127.0.0.1:1/senders/router/transactions", sender: router}
endpoint:
- name: bench
  chain:
  - {filter: rest_output}
logging: {level: warning}
YAML
}

start_router() {  # name storage_url -> sets RPORT RPID
  RPORT=$(free_port)
  router_config "$RPORT" "$2" > "$WORK/$1.yaml"
  "$BUILD/router/koukan-router" "$WORK/$1.yaml" > "$WORK/$1.log" 2>&1 &
  RPID=$!; pids+=("$RPID")
  wait_http "http://127.0.0.1:$RPORT/healthz"
}

load() {  # label base_url
  for c in 1 16; do
    printf '%-28s c=%-3s ' "$1" "$c"
    "$BUILD/bench/rest_load" "$2" bench "$N" "$c"
  done
}

echo "== create+GET throughput, $N pairs per run, $(nproc) cores =="
EPORT=$(free_port)
"$BUILD/bench/empty_http_server" "$EPORT" > "$WORK/empty.log" &
pids+=($!)
wait_http "http://127.0.0.1:$EPORT/"
load "baseline (empty handler)" "http://127.0.0.1:$EPORT"

start_router sqlite "sqlite://$WORK/bench.db"
load "koukan-router sqlite" "http://127.0.0.1:$RPORT"
kill "$RPID"; wait "$RPID" 2>/dev/null || true

if [ -n "${KOUKAN_BENCH_PG_URL:-}" ]; then
  start_router pg "$KOUKAN_BENCH_PG_URL"
  load "koukan-router postgresql" "http://127.0.0.1:$RPORT"
  kill "$RPID"; wait "$RPID" 2>/dev/null || true
fi

echo "== 100 MB body upload, router peak RSS =="
start_router upload "sqlite://$WORK/upload.db"
head -c $((100 * 1024 * 1024)) /dev/urandom > "$WORK/body.bin"
LOC=$(curl -s -D - -o /dev/null -X POST "http://127.0.0.1:$RPORT/senders/bench/transactions" \
  -H 'content-type: application/json' \
  -d '{"mail_from":{"m":"a@example.com"},"rcpt_to":[{"m":"b@example.com"}]}' | tr -d '\r' | awk 'tolower($1)=="location:"{print $2}')
rss_before=$(awk '/VmRSS/{print $2}' /proc/$RPID/status)
t0=$(date +%s.%N)
curl -s -o /dev/null -w 'PUT status %{http_code}, ' -X PUT -T "$WORK/body.bin" "$LOC/body"
t1=$(date +%s.%N)
hwm=$(awk '/VmHWM/{print $2}' /proc/$RPID/status)
python3 - "$t0" "$t1" "$hwm" "$rss_before" <<'PY'
import sys
t0, t1, hwm, before = float(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
print("%.1f MB/s; router RSS before %.1f MB, peak (VmHWM) %.1f MB (target < 64 MB)" % (
    100 / (t1 - t0), before / 1024, hwm / 1024))
PY
curl -s "$LOC" ; echo
