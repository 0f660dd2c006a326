#!/usr/bin/env bash
# The README's test command: installs what it needs, builds everything with
# ASan/UBSan (Debug: -O0 keeps Beast compiles short), starts a throw-away PostgreSQL, runs unit + integration tests.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
BUILD=${KOUKAN_TEST_BUILD:-$ROOT/build-test}

scripts/install-deps.sh

export CCACHE_DIR=${CCACHE_DIR:-$HOME/.cache/ccache}
cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Debug -DKOUKAN_SANITIZE=ON >/dev/null
ninja -C "$BUILD" -j"$(nproc)"

PGDIR=$(mktemp -d /tmp/koukan-test-pg.XXXXXX)
PGPORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cleanup() { "$ROOT/scripts/pg-test-server.sh" stop "$PGDIR" || true; rm -rf "$PGDIR"; }
trap cleanup EXIT
export KOUKAN_TEST_PG_URL=$(scripts/pg-test-server.sh start "$PGDIR" "$PGPORT")
echo "test PostgreSQL: $KOUKAN_TEST_PG_URL"

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
cd "$BUILD"
ctest --output-on-failure -j2 "$@"
