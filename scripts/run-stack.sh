#!/usr/bin/env bash
# The README's run command: installs what it needs, builds (release), and runs
# the local stack in the foreground:
#   koukan-router   127.0.0.1:8000 (SQLite in /tmp)   config/router-local.yaml
#   koukan-gateway  SMTP 1025 / 1587 (STARTTLS+AUTH) / 1465 (TLS), REST 8001
#                                                     config/gateway-local.yaml
# Outbound mail goes to an SMTP server on 127.0.0.1:2525 (run any sink there).
# Ctrl-C stops both.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
BUILD=${KOUKAN_BUILD:-$ROOT/build}
ROUTER_CONFIG=${1:-config/router-local.yaml}
GATEWAY_CONFIG=${2:-config/gateway-local.yaml}

scripts/install-deps.sh
cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DKOUKAN_BUILD_TESTS=OFF >/dev/null
ninja -C "$BUILD" koukan-router koukan-gateway

# Throw-away TLS identity and AUTH secret for the local listeners.
LOCAL=/tmp/koukan-local
mkdir -p "$LOCAL"
if [ ! -s "$LOCAL/cert.pem" ]; then
  openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj /CN=localhost \
    -keyout "$LOCAL/key.pem" -out "$LOCAL/cert.pem" 2>/dev/null
fi
if [ ! -s "$LOCAL/secret" ]; then
  head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n' > "$LOCAL/secret"
fi
SECRET=$(cat "$LOCAL/secret")
printf '{"local-user": "%s"}\n' "$(printf '%s' "$SECRET" | sha256sum | cut -d' ' -f1)" > "$LOCAL/secrets.json"
echo "run-stack: SMTP AUTH user local-user, secret $SECRET (after STARTTLS on 1587, or on 1465)"

pids=()
stop() { for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done; wait; }
trap stop EXIT INT TERM
"$BUILD/router/koukan-router" "$ROUTER_CONFIG" &
pids+=($!)
"$BUILD/gateway/koukan-gateway" "$GATEWAY_CONFIG" &
pids+=($!)
wait -n
