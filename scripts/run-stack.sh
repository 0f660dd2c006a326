#!/usr/bin/env bash
# The README's run command: installs what it needs, builds (release), and runs
# the local stack (router on 127.0.0.1:8000 with SQLite) in the foreground.
# Ctrl-C stops it.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
BUILD=${KOUKAN_BUILD:-$ROOT/build}
CONFIG=${1:-config/router-local.yaml}

scripts/install-deps.sh
cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DKOUKAN_BUILD_TESTS=OFF >/dev/null
ninja -C "$BUILD" koukan-router

pids=()
stop() { for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done; wait; }
trap stop EXIT INT TERM
"$BUILD/router/koukan-router" "$CONFIG" &
pids+=($!)
wait -n
