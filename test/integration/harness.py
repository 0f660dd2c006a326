"""Integration test harness: starts the real koukan-router binary on
127.0.0.1 with a temp SQLite file (or the test PostgreSQL) and talks HTTP to
it with the standard library only."""
import http.client
import json
import os
import signal
import socket
import subprocess
import tempfile
import time
import urllib.parse

BUILD_DIR = os.environ.get(
    "KOUKAN_BUILD_DIR",
    os.path.join(os.path.dirname(__file__), "..", "..", "build-test"))
ROUTER_BIN = os.path.join(BUILD_DIR, "router", "koukan-router")
PG_URL = os.environ.get("KOUKAN_TEST_PG_URL", "")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


ROUTER_YAML = """
global:
  rest_id_entropy: 8
  mailer_daemon_mailbox: mailer-daemon@example.com
  dequeue: false
  executor:
    output:
      max_inflight: 0
rest_listener:
  addr: ["127.0.0.1", {port}]
  session_uri: {session_uri}
  service_uri: {service_uri}
  chunk_size: {chunk_size}
storage:
  url: {storage_url}
  session_refresh_interval: {refresh}
{extra_storage}
sender:
- name: submission
  output_chain: submission
  retry: output_chain
  tag:
  - name: smtp-msa
    output_chain: submission_exploder
    upstream_tag: smtp-msa-upstream
    retry: null
  - name: smtp-msa-upstream
    retry: null
  - name: notification
- name: ingress
  output_chain: ingress
  tag:
  - name: smtp-mx
    output_chain: ingress_exploder
    upstream_tag: smtp-mx-upstream
  - name: smtp-mx-upstream
rest_endpoint:
- name: gateway
  endpoint: http://127.0.0.1:1/senders/router/transactions
  sender: router
  tag: outbound
endpoint:
- name: submission_exploder
  output_handler:
    downstream_timeout: 5
    upstream_refresh: 1
  chain:
  - filter: exploder
    msa: true
    rcpt_timeout: 10
    data_timeout: 10
- name: submission
  output_handler:
    downstream_timeout: 5
    upstream_refresh: 1
    retry_params:
      max_attempts: 3
    notification:
      sender: submission
      tag: notification
  chain:
  - filter: router
    policy:
      name: dest_domain
      destination:
        endpoint: gateway
  - filter: rest_output
    rcpt_timeout: 10
    data_timeout: 10
- name: ingress_exploder
  output_handler:
    downstream_timeout: 5
    upstream_refresh: 1
  chain:
  - filter: exploder
    msa: false
    rcpt_timeout: 10
    data_timeout: 10
- name: ingress
  chain:
  - filter: rest_output
    rcpt_timeout: 10
    data_timeout: 10
logging:
  level: {log_level}
"""


class Response:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = {k.lower(): v for k, v in headers}
        self.body = body

    def json(self):
        return json.loads(self.body)

    def header(self, name):
        return self.headers.get(name.lower())

    def __repr__(self):
        return "<Response %d %r %r>" % (self.status, self.headers, self.body[:300])


class Router:
    """One koukan-router process."""

    def __init__(self, workdir=None, storage_url=None, port=None,
                 service_uri=None, chunk_size=1048576, refresh=30,
                 extra_storage="", log_level="info", extra_yaml="",
                 yaml=None, **fmt):
        self.workdir = workdir or tempfile.mkdtemp(prefix="koukan-it-")
        self.port = port or free_port()
        self.session_uri = "http://127.0.0.1:%d" % self.port
        self.service_uri = service_uri or self.session_uri
        self.storage_url = storage_url or (
            "sqlite://" + os.path.join(self.workdir, "router.db"))
        self.config_path = os.path.join(self.workdir, "router-%d.yaml" % self.port)
        with open(self.config_path, "w") as f:
            # yaml: a whole config template instead of ROUTER_YAML (same
            # placeholders, plus any given in **fmt).
            f.write((yaml or ROUTER_YAML).format(
                port=self.port, session_uri=self.session_uri,
                service_uri=self.service_uri, chunk_size=chunk_size,
                storage_url=self.storage_url, refresh=refresh,
                extra_storage=extra_storage, log_level=log_level, **fmt) + extra_yaml)
        self.proc = None
        self.log_path = os.path.join(self.workdir, "router-%d.log" % self.port)

    def start(self, timeout=20):
        self.log = open(self.log_path, "ab")
        self.proc = start_daemon([ROUTER_BIN, self.config_path], self.log,
                                 self.url("/healthz"), "router", self.read_log, timeout)
        return self

    def read_log(self):
        return read_tail(self.log_path)

    def _close_log(self):
        if getattr(self, "log", None):
            self.log.close()
            self.log = None

    def kill9(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()
        self._close_log()

    def stop(self, timeout=10):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._close_log()
        if self.proc:
            rc = self.proc.returncode
            self.proc = None
            return rc
        return None

    def read_body_from_db(self, tx_rest_id, blob_name="__internal_tx_body"):
        """The stored bytes of a transaction's blob, read straight from the
        SQLite file (what survives a restart)."""
        import sqlite3
        assert self.storage_url.startswith("sqlite://")
        db = sqlite3.connect(self.storage_url[len("sqlite://"):])
        try:
            rows = db.execute(
                "SELECT c.data FROM TransactionBlobRefs r JOIN BlobChunks c ON c.blob_id = r.blob_id "
                "WHERE r.tx_rest_id = ? AND r.rest_id = ? ORDER BY c.chunk_offset",
                (tx_rest_id, blob_name)).fetchall()
            return b"".join(bytes(r[0]) for r in rows)
        finally:
            db.close()

    def stored_transactions(self):
        """Every stored transaction as (rest_id, json dict,
        final_attempt_reason), straight from the SQLite file."""
        import sqlite3
        assert self.storage_url.startswith("sqlite://")
        db = sqlite3.connect(self.storage_url[len("sqlite://"):])
        try:
            rows = db.execute("SELECT rest_id, json, final_attempt_reason FROM Transactions ORDER BY id").fetchall()
            return [(r[0], json.loads(r[1]), r[2]) for r in rows]
        finally:
            db.close()

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def url(self, path):
        return self.session_uri + path

    def request(self, method, path_or_url, body=None, headers=None, timeout=30):
        return request(method, path_or_url if "://" in path_or_url
                       else self.url(path_or_url), body, headers, timeout)

    def create(self, tx, sender="submission"):
        return self.request("POST", "/senders/%s/transactions" % sender,
                            json.dumps(tx).encode(),
                            {"content-type": "application/json"})


def read_tail(path, n=8000):
    """The last n characters of a log file ("" if it does not exist)."""
    try:
        with open(path, "rb") as f:
            return f.read().decode("utf-8", "replace")[-n:]
    except OSError:
        return ""


def start_daemon(argv, log, health_url, what, read_log, timeout=20):
    """Starts a koukan daemon logging to `log` and waits until GET
    health_url answers 200; raises with its log if it exits or times out."""
    proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("%s exited %d:\n%s" % (what, proc.returncode, read_log()))
        try:
            if request("GET", health_url, timeout=2).status == 200:
                return proc
        except OSError:
            pass
        time.sleep(0.05)
    raise RuntimeError("%s did not become ready:\n%s" % (what, read_log()))


def request(method, url, body=None, headers=None, timeout=30):
    u = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=timeout)
    target = u.path + ("?" + u.query if u.query else "")
    try:
        conn.request(method, target, body=body, headers=headers or {})
        r = conn.getresponse()
        data = r.read()
        return Response(r.status, r.getheaders(), data)
    finally:
        conn.close()


def path_of(url):
    return urllib.parse.urlsplit(url).path


def _pg_admin(sql):
    subprocess.run(["psql", PG_URL, "-v", "ON_ERROR_STOP=1", "-qc", sql],
                   check=True, stdout=subprocess.DEVNULL)


def pg_create_db(name):
    _pg_admin("CREATE DATABASE %s" % name)
    u = urllib.parse.urlsplit(PG_URL)
    return urllib.parse.urlunsplit((u.scheme, u.netloc, "/" + name, u.query, ""))


def pg_drop_db(name):
    try:
        _pg_admin("DROP DATABASE IF EXISTS %s WITH (FORCE)" % name)
    except subprocess.CalledProcessError:
        pass
