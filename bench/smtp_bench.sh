#!/usr/bin/env bash
# SMTP benchmark (issue acceptance 7 and 4). Prints figures; not a timed test.
# In one run, ~2 KB messages from Postfix's smtp-source, counted at smtp-sink:
#  (a) smtp-source -> smtp-sink directly (no MTA: the limit);
#  (b) smtp-source -> a private Postfix relay on loopback -> smtp-sink;
#  (c) smtp-source -> koukan-gateway (submission, plain SMTP) -> koukan-router
#      on SQLite (msa exploder -> submission chain) -> koukan-gateway (REST ->
#      SMTP) -> smtp-sink;
#  (d) the same with the router on PostgreSQL (a throw-away cluster);
# each at concurrency 1 and C (default 20). A path's rate is messages counted
# at the sink / time from the first connection until the sink has them all.
# Then (e): one 50 MiB message through gateway -> router (SQLite) -> gateway ->
# a byte-counting sink; peak RSS (VmHWM) of the gateway and the router.
#
# Usage: bench/smtp_bench.sh [N1 [NC]]   (messages at c=1, default 500; at
#        c=C, default 2000). KOUKAN_BENCH_CONC=20, KOUKAN_BENCH_KEEP=1 keeps
#        the work dir (configs, logs), KOUKAN_BENCH_LOG_LEVEL=info logs every
#        transaction, KOUKAN_BENCH_NO_PG=1 skips PostgreSQL,
#        KOUKAN_BENCH_BIG_MB=50 sets the big message's size.
# Installs Debian's postfix package if smtp-source is missing, with debconf
# "No configuration" and a policy-rc.d that refuses service starts, and makes
# sure no system Postfix is left running; the private Postfix and PostgreSQL
# instances are started and stopped by this script.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
N1=${1:-500}
NC=${2:-2000}
CONC=${KOUKAN_BENCH_CONC:-20}
BIG_MB=${KOUKAN_BENCH_BIG_MB:-50}
LOG_LEVEL=${KOUKAN_BENCH_LOG_LEVEL:-warning}
BUILD=${KOUKAN_BENCH_BUILD:-$ROOT/build-bench}
PGDIR=/tmp/pgsmtpbench
PGPORT=55434
SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo

# --- Postfix tools, without a system Postfix --------------------------------
install_postfix() {
  if command -v smtp-source >/dev/null && command -v smtp-sink >/dev/null && [ -x /usr/sbin/postfix ]; then
    return 0
  fi
  echo "installing postfix (debconf: No configuration; no service is started)"
  echo "postfix postfix/main_mailer_type select No configuration" | $SUDO debconf-set-selections
  local made_policy=""
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
    $SUDO chmod +x /usr/sbin/policy-rc.d
    made_policy=1
  fi
  local rc=0
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq || rc=$?
  if [ "$rc" -eq 0 ]; then
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postfix >/dev/null || rc=$?
  fi
  if [ -n "$made_policy" ]; then $SUDO rm -f /usr/sbin/policy-rc.d; fi
  return "$rc"
}
# A system Postfix (default config, /var/spool/postfix) must not be running.
stop_system_postfix() {
  local pidf=/var/spool/postfix/pid/master.pid pid
  [ -r "$pidf" ] || return 0
  pid=$(tr -d ' \n' < "$pidf")
  if [ -n "$pid" ] && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = master ]; then
    echo "a system Postfix is running (master pid $pid): stopping it"
    $SUDO postfix stop >/dev/null 2>&1 || $SUDO kill "$pid" || true
  fi
}
install_postfix
stop_system_postfix
scripts/install-deps.sh >/dev/null
cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release -DKOUKAN_BUILD_TESTS=OFF >/dev/null
ninja -C "$BUILD" koukan-router koukan-gateway >/dev/null

WORK=$(mktemp -d /tmp/koukan-sbench.XXXXXX)
chmod 755 "$WORK"   # the private Postfix's daemons run as user postfix
pids=()
PF_DIR=""
PG_STARTED=""
cleanup() {
  set +e
  stop_postfix
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
  wait 2>/dev/null
  if [ -n "$PG_STARTED" ]; then bash scripts/pg-test-server.sh stop "$PGDIR"; rm -rf "$PGDIR"; fi
  if [ -n "${KOUKAN_BENCH_KEEP:-}" ]; then echo "kept $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_http() { for _ in $(seq 200); do curl -s -o /dev/null "$1" && return 0; sleep 0.05; done; echo "no answer from $1" >&2; return 1; }
wait_port() { for _ in $(seq 200); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.05; done; echo "nothing listens on $1" >&2; return 1; }

# --- the sink ---------------------------------------------------------------
# smtp-sink -c writes "sess=S quit=Q mesg=M" + CR to stdout after every
# message, session end and QUIT; the last record is the count so far.
SINK_PORT=$(free_port)
smtp-sink -c -u nobody "127.0.0.1:$SINK_PORT" 256 > "$WORK/sink.count" 2> "$WORK/sink.err" &
SINK_PID=$!; pids+=("$SINK_PID")
wait_port "$SINK_PORT"

# Runs smtp-source and follows the sink's counter (python: fine-grained time).
cat > "$WORK/measure.py" <<'PY'
import os, re, subprocess, sys, time
count_file, port, n, c, stall = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])
cpu_pids = [p for p in os.environ.get("CPU_PIDS", "").split() if p]
tck = os.sysconf("SC_CLK_TCK")
def sink_count():
    with open(count_file, "rb") as f:
        f.seek(0, 2); size = f.tell(); f.seek(max(0, size - 256))
        m = re.findall(rb"mesg=(\d+)", f.read())
    return int(m[-1]) if m else 0
def cpu(pid):
    try:
        with open("/proc/%s/stat" % pid) as f: s = f.read().rsplit(")", 1)[1].split()
        return (int(s[11]) + int(s[12])) / tck
    except OSError: return 0.0
before = sink_count(); cpu0 = [cpu(p) for p in cpu_pids]
err = open(os.environ["ERR_FILE"], "w")
t0 = time.monotonic()
src = subprocess.Popen(["smtp-source", "-A", "-l", "2000", "-m", str(n), "-s", str(c), "-M", "localhost",
                        "-f", "a@example.com", "-t", "b@example.net", "127.0.0.1:%s" % port],
                       stdout=subprocess.DEVNULL, stderr=err)
t_src = None; last = before; t_last = t0
while True:
    now = time.monotonic()
    if t_src is None and src.poll() is not None: t_src = now - t0
    k = sink_count()
    if k != last: last, t_last = k, now
    if k - before >= n and t_src is not None: break
    if t_src is not None and now - t_last > stall: break
    if t_src is None and now - t_last > 2 * stall:  # smtp-source hangs
        src.kill(); src.wait(); t_src = now - t0; break
    time.sleep(0.002)
got = last - before; el = t_last - t0
cpus = " ".join("%.1f" % (cpu(p) - c0) for p, c0 in zip(cpu_pids, cpu0))
print("rate=%.1f got=%d n=%d elapsed=%.2f source_s=%.2f source_rate=%.1f src_exit=%d cpu=%s" % (
    got / el if el > 0 else 0, got, n, el, t_src, n / t_src if t_src else 0, src.returncode, cpus or "-"))
PY
declare -A RES
run_load() {  # key label port [cpu pids...]; DIRECT_X multiplies N
  local key=$1 label=$2 port=$3; shift 3
  for c in 1 "$CONC"; do
    local n=$NC; [ "$c" = 1 ] && n=$N1
    n=$(( n * ${DIRECT_X:-1} ))
    local out
    out=$(CPU_PIDS="$*" ERR_FILE="$WORK/source.err" python3 "$WORK/measure.py" "$WORK/sink.count" "$port" "$n" "$c" 30)
    RES[$key,$c]=$out
    printf '%-30s c=%-3s %s\n' "$label" "$c" "$out"
    if [ -s "$WORK/source.err" ]; then
      echo "    smtp-source stderr: $(wc -l < "$WORK/source.err") lines, first ones:"
      sort "$WORK/source.err" | uniq -c | sort -rn | head -5 | sed 's/^/      /'
    fi
  done
}
# 40 messages first, not counted; waits until the sink has them.
warm_up() { ERR_FILE=/dev/null python3 "$WORK/measure.py" "$WORK/sink.count" "$1" 40 4 30 >/dev/null; }

# --- private Postfix ----------------------------------------------------------
PF_FG_PID=""
start_postfix() {  # -> PF_PORT
  PF_DIR=$WORK/postfix
  PF_PORT=$(free_port)
  mkdir -p "$PF_DIR/conf" "$PF_DIR/queue" "$PF_DIR/data"
  $SUDO chown postfix "$PF_DIR/data"
  cat > "$PF_DIR/conf/main.cf" <<CF
compatibility_level = 3.6
queue_directory = $PF_DIR/queue
data_directory = $PF_DIR/data
mail_owner = postfix
setgid_group = postdrop
inet_interfaces = loopback-only
inet_protocols = ipv4
myhostname = postfix-bench.localdomain
mydomain = localdomain
myorigin = \$myhostname
mydestination =
local_recipient_maps =
alias_maps =
alias_database =
mynetworks = 127.0.0.0/8
relayhost = [127.0.0.1]:$SINK_PORT
smtpd_relay_restrictions = permit_mynetworks, reject
smtp_tls_security_level = none
smtpd_tls_security_level = none
maillog_file = $PF_DIR/maillog
maillog_file_prefixes = $WORK
biff = no
CF
  # Debian's services, no chroot, smtpd only on the loopback port.
  cat > "$PF_DIR/conf/master.cf" <<CF
127.0.0.1:$PF_PORT inet n - n - - smtpd
pickup    unix  n - n 60 1 pickup
cleanup   unix  n - n -  0 cleanup
qmgr      unix  n - n 300 1 qmgr
rewrite   unix  - - n -  - trivial-rewrite
bounce    unix  - - n -  0 bounce
defer     unix  - - n -  0 bounce
trace     unix  - - n -  0 bounce
verify    unix  - - n -  1 verify
flush     unix  n - n 1000? 0 flush
proxymap  unix  - - n -  - proxymap
proxywrite unix - - n -  1 proxymap
smtp      unix  - - n -  - smtp
relay     unix  - - n -  - smtp
showq     unix  n - n -  - showq
error     unix  - - n -  - error
retry     unix  - - n -  - error
discard   unix  - - n -  - discard
local     unix  - n n -  - local
anvil     unix  - - n -  1 anvil
scache    unix  - - n -  1 scache
postlog   unix-dgram n - n - 1 postlogd
CF
  $SUDO postfix -c "$PF_DIR/conf" check >"$PF_DIR/check.log" 2>&1 || { cat "$PF_DIR/check.log" >&2; return 1; }
  # plain `postfix start` does not work here (no syslog, no init); start-fg
  # stays in the foreground with master as its child.
  $SUDO postfix -c "$PF_DIR/conf" start-fg > "$PF_DIR/start-fg.log" 2>&1 &
  PF_FG_PID=$!
  wait_port "$PF_PORT"
}
stop_postfix() {
  [ -n "$PF_DIR" ] || return 0
  local mp=""
  [ -r "$PF_DIR/queue/pid/master.pid" ] && mp=$(tr -d ' \n' < "$PF_DIR/queue/pid/master.pid")
  if [ -n "$mp" ] && [ "$(cat "/proc/$mp/comm" 2>/dev/null)" = master ]; then $SUDO kill "$mp" 2>/dev/null || true; fi
  if [ -n "$PF_FG_PID" ]; then
    for _ in $(seq 100); do kill -0 "$PF_FG_PID" 2>/dev/null || break; sleep 0.1; done
    kill "$PF_FG_PID" 2>/dev/null || true
    wait "$PF_FG_PID" 2>/dev/null || true
  fi
  PF_DIR=""; PF_FG_PID=""
}

# --- koukan ---------------------------------------------------------------------
router_config() {  # port storage_url gateway_rest_port destination_smtp_port
  cat <<YAML
global:
  rest_id_entropy: 8
  executor:
    output: {max_inflight: 200}
rest_listener:
  addr: ["127.0.0.1", $1]
  session_uri: http://127.0.0.1:$1
  chunk_size: 1048576
storage: {url: "$2"}
sender:
- name: submission
  output_chain: submission
  retry: output_chain
  tag:
  - name: smtp-msa
    output_chain: msa_exploder
    upstream_tag: smtp-msa-upstream
    retry: null
    notification: null
  - name: smtp-msa-upstream
    retry: null
    notification: null
rest_endpoint:
- name: gateway
  endpoint: http://127.0.0.1:$3/senders/router/transactions
  sender: router
  tag: outbound
endpoint:
- name: msa_exploder
  output_handler: {downstream_timeout: 60, upstream_refresh: 10}
  chain:
  - filter: exploder
    msa: true
    rcpt_timeout: 30
    data_timeout: 300
- name: submission
  output_handler:
    downstream_timeout: 60
    upstream_refresh: 10
    retry_params: {max_attempts: 3, min_attempt_time: 1, max_attempt_time: 5, backoff_factor: 2}
  chain:
  - filter: router
    destination:
      endpoint: gateway
      host_list:
      - {host: 127.0.0.1, port: $4}
  - filter: rest_output
    rcpt_timeout: 30
    data_timeout: 300
    chunk_size: 1048576
logging: {level: $LOG_LEVEL}
YAML
}
gateway_config() {  # rest_port smtp_port router_port
  cat <<YAML
rest_listener:
  addr: ["127.0.0.1", $1]
  session_uri: http://127.0.0.1:$1
  chunk_size: 1048576
smtp_output:
  hosts:
    outbound: {ehlo_host: gw.bench, enable_bdat: true}
smtp_listener:
  services:
  - addr: ["127.0.0.1", $2]
    endpoint: msa
    sender: submission
    tag: smtp-msa
    hostname: msa.gw.bench
    max_message_size: 209715200
rest_output:
- name: msa
  endpoint: http://127.0.0.1:$3/senders/submission/transactions
  rcpt_timeout: 30
  data_timeout: 300
  chunk_size: 1048576
  refresh_interval: 5
logging: {level: $LOG_LEVEL}
YAML
}
start_koukan() {  # name storage_url dest_port -> RPID GPID GW_SMTP
  local rport gport
  rport=$(free_port); gport=$(free_port); GW_SMTP=$(free_port)
  router_config "$rport" "$2" "$gport" "$3" > "$WORK/$1-router.yaml"
  gateway_config "$gport" "$GW_SMTP" "$rport" > "$WORK/$1-gateway.yaml"
  "$BUILD/router/koukan-router" "$WORK/$1-router.yaml" > "$WORK/$1-router.log" 2>&1 &
  RPID=$!; pids+=("$RPID")
  "$BUILD/gateway/koukan-gateway" "$WORK/$1-gateway.yaml" > "$WORK/$1-gateway.log" 2>&1 &
  GPID=$!; pids+=("$GPID")
  wait_http "http://127.0.0.1:$rport/healthz"
  wait_http "http://127.0.0.1:$gport/healthz"
  wait_port "$GW_SMTP"
}
stop_koukan() {  # name
  kill "$RPID" "$GPID" 2>/dev/null || true
  wait "$RPID" "$GPID" 2>/dev/null || true
  local f n
  for f in "$WORK/$1-router.log" "$WORK/$1-gateway.log"; do
    n=$(grep -c . "$f" || true)
    if [ "$n" -gt 0 ]; then
      echo "  $(basename "$f"): $n lines; warnings/errors by kind:"
      grep -iE 'warn|error|crit' "$f" | sed -E 's/^[^]]*\] *//; s/[0-9a-zA-Z_-]{8,}/X/g' | sort | uniq -c | sort -rn | head -5 | sed 's/^/    /' || true
    fi
  done
}

echo "== SMTP, ~2 KB messages (smtp-source -l 2000), c=1: $N1, c=$CONC: $NC; $(nproc) cores, $(date -I) =="
warm_up "$SINK_PORT"
# 5x the messages: at N the direct run is over in ~0.2 s, too short to time.
DIRECT_X=5 run_load direct "smtp-source -> smtp-sink" "$SINK_PORT" "$SINK_PID"

start_postfix
warm_up "$PF_PORT"
run_load postfix "Postfix relay" "$PF_PORT"
stop_postfix

start_koukan sqlite "sqlite://$WORK/bench.db" "$SINK_PORT"
warm_up "$GW_SMTP"
run_load sqlite "koukan SQLite" "$GW_SMTP" "$GPID" "$RPID"
stop_koukan sqlite

if [ -z "${KOUKAN_BENCH_NO_PG:-}" ]; then
  PG_STARTED=1
  PGURL0=$(bash scripts/pg-test-server.sh start "$PGDIR" "$PGPORT")
  PGDB=koukan_sbench_$$
  psql "$PGURL0" -v ON_ERROR_STOP=1 -qc "CREATE DATABASE $PGDB" >/dev/null
  start_koukan pg "${PGURL0%/postgres}/$PGDB" "$SINK_PORT"
  warm_up "$GW_SMTP"
  run_load pg "koukan PostgreSQL" "$GW_SMTP" "$GPID" "$RPID"
  stop_koukan pg
fi

echo
echo "cpu= is CPU seconds of the sink (direct) or of gateway then router during the run."
echo "| path | c=1 msg/s | vs direct | vs Postfix | c=$CONC msg/s | vs direct | vs Postfix | at sink (c=1, c=$CONC) |"
echo "|---|---|---|---|---|---|---|---|"
rate() { sed -n 's/^rate=\([0-9.]*\).*/\1/p' <<<"${RES[$1,$2]:-}"; }
got() { sed -n 's/.* got=\([0-9]*\) n=\([0-9]*\).*/\1\/\2/p' <<<"${RES[$1,$2]:-}"; }
ratio() { python3 -c "import sys; a, b = sys.argv[1], sys.argv[2]; print('%.0f%%' % (100 * float(a) / float(b)) if a and b and float(b) > 0 else '-')" "$1" "$2"; }
row() {  # key label
  [ -n "${RES[$1,1]:-}" ] || return 0
  local a b
  a=$(rate "$1" 1); b=$(rate "$1" "$CONC")
  printf '| %s | %s | %s | %s | %s | %s | %s | %s, %s |\n' "$2" "$a" "$(ratio "$a" "$(rate direct 1)")" \
    "$(ratio "$a" "$(rate postfix 1)")" \
    "$b" "$(ratio "$b" "$(rate direct "$CONC")")" "$(ratio "$b" "$(rate postfix "$CONC")")" \
    "$(got "$1" 1)" "$(got "$1" "$CONC")"
}
row direct "smtp-source -> smtp-sink (no MTA)"
row postfix "Postfix 3.7 relay"
row sqlite "koukan gateway -> router (SQLite) -> gateway"
row pg "koukan gateway -> router (PostgreSQL) -> gateway"
echo
for k in sqlite pg; do
  [ -n "${RES[$k,$CONC]:-}" ] || continue
  python3 - "$k" "$(rate "$k" "$CONC")" "$(rate postfix "$CONC")" "$(rate direct "$CONC")" "$CONC" <<'PY'
import sys
k, r, p, d, c = sys.argv[1], float(sys.argv[2]), float(sys.argv[3] or 0), float(sys.argv[4] or 0), sys.argv[5]
a = "met" if r > p else "MISSED"
b = "met" if d and r >= 0.25 * d else "MISSED"
print("target at c=%s, koukan %s: faster than Postfix (%.0f vs %.0f/s): %s; >= 25%% of direct (%.0f vs %.0f/s): %s"
      % (c, k, r, p, a, r, 0.25 * d, b))
PY
done

# --- (e) one big message: peak RSS ----------------------------------------------
echo
echo "== one ${BIG_MB} MiB message: gateway submission -> router (SQLite) -> gateway -> sink =="
cat > "$WORK/bigsink.py" <<'PY'
# A minimal SMTP sink (no PIPELINING/CHUNKING): counts the dot-unstuffed
# message octets and their SHA-256, writes "size sha256" to argv[2].
import asyncio, hashlib, sys
port, out = int(sys.argv[1]), sys.argv[2]
async def session(r, w):
    w.write(b"220 bigsink\r\n"); await w.drain()
    while True:
        line = await r.readline()
        if not line: break
        cmd = line[:4].upper()
        if cmd == b"DATA":
            w.write(b"354 go\r\n"); await w.drain()
            h = hashlib.sha256(); size = 0
            while True:
                l = await r.readuntil(b"\n")
                if l == b".\r\n": break
                if l.startswith(b"."): l = l[1:]
                h.update(l); size += len(l)
            with open(out, "a") as f: f.write("%d %s\n" % (size, h.hexdigest()))
            w.write(b"250 ok\r\n")
        elif cmd == b"EHLO": w.write(b"250-bigsink\r\n250 8BITMIME\r\n")
        elif cmd == b"QUIT": w.write(b"221 bye\r\n"); await w.drain(); break
        else: w.write(b"250 ok\r\n")
        await w.drain()
    w.close()
async def main():
    s = await asyncio.start_server(session, "127.0.0.1", port, limit=1 << 20)
    async with s: await s.serve_forever()
asyncio.run(main())
PY
cat > "$WORK/bigsend.py" <<'PY'
# Builds a message of exactly argv[2] MiB (headers + 998-octet text lines +
# CRLF; RFC 5321 caps a line at 1000 octets) and sends it with smtplib.
import hashlib, smtplib, sys, time
port, mib = int(sys.argv[1]), int(sys.argv[2])
total = mib << 20
head = b"From: a@example.com\r\nTo: b@example.net\r\nSubject: big\r\nMessage-ID: <big@bench>\r\n\r\n"
line = (b"0123456789abcdefghijklmnopqrstuvwxyz" * 28)[:998] + b"\r\n"
n, rest = divmod(total - len(head), len(line))
if rest == 1:  # no room for a CRLF line: one more octet of header instead
    head = head.replace(b"big", b"bigx"); n, rest = divmod(total - len(head), len(line))
msg = head + line * n + (b"x" * (rest - 2) + b"\r\n" if rest else b"")
assert len(msg) == total, (len(msg), total)
t0 = time.monotonic()
with smtplib.SMTP("127.0.0.1", port, timeout=600) as s:
    s.ehlo("bench")
    s.sendmail("a@example.com", ["b@example.net"], msg)
print("%d %s %.2f" % (len(msg), hashlib.sha256(msg).hexdigest(), time.monotonic() - t0))
PY
BIG_PORT=$(free_port)
python3 "$WORK/bigsink.py" "$BIG_PORT" "$WORK/bigsink.out" > "$WORK/bigsink.log" 2>&1 &
pids+=($!)
wait_port "$BIG_PORT"
start_koukan big "sqlite://$WORK/big.db" "$BIG_PORT"
hwm() { awk '/VmHWM/{print $2}' "/proc/$1/status"; }
rss() { awk '/VmRSS/{print $2}' "/proc/$1/status"; }
echo "idle: gateway RSS $(rss "$GPID") kB (peak $(hwm "$GPID") kB), router RSS $(rss "$RPID") kB (peak $(hwm "$RPID") kB)"
T0=$(date +%s.%N)
sent=$(python3 "$WORK/bigsend.py" "$GW_SMTP" "$BIG_MB") || sent="send failed"
echo "submitted: $sent (size sha256 seconds)"
got=""
for _ in $(seq 600); do [ -s "$WORK/bigsink.out" ] && { got=$(head -1 "$WORK/bigsink.out"); break; }; sleep 0.2; done
T1=$(date +%s.%N)
G_HWM=$(hwm "$GPID"); R_HWM=$(hwm "$RPID")
echo "sink got: ${got:-nothing within 120 s} ($(python3 -c "print('%.1f' % ($T1 - $T0))") s from submission start)"
exact=no; [ -n "$got" ] && [ "${got}" = "$(cut -d' ' -f1,2 <<<"$sent")" ] && exact=yes
python3 - "$G_HWM" "$R_HWM" "$exact" <<'PY'
import sys
g, r, exact = int(sys.argv[1]) / 1024, int(sys.argv[2]) / 1024, sys.argv[3]
ok = lambda v: "ok" if v < 64 else "OVER"
print("peak RSS (VmHWM): gateway %.1f MB (%s), router %.1f MB (%s); target < 64 MB each" % (g, ok(g), r, ok(r)))
print("sink received the exact message (size and SHA-256): %s" % exact)
PY
stop_koukan big
