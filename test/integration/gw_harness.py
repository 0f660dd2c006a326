"""End-to-end harness: koukan-router + koukan-gateway + an SMTP sink + a REST
receiver on 127.0.0.1 free ports, with a throw-away TLS certificate and an
auth_secrets file (user "app", secret "s3cret-for-tests")."""
import hashlib
import json
import os
import subprocess
import tempfile
import time

import harness

GATEWAY_BIN = os.path.join(harness.BUILD_DIR, "gateway", "koukan-gateway")
AUTH_USER = "app"
AUTH_SECRET = "s3cret-for-tests"

E2E_ROUTER_YAML = """
global:
  rest_id_entropy: 8
  mailer_daemon_mailbox: mailer-daemon@router.test
  executor:
    output:
      max_inflight: 200
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
  notification: output_chain
  tag:
  - name: smtp-msa
    output_chain: msa_exploder
    upstream_tag: smtp-msa-upstream
    retry: null
    notification: null
  - name: smtp-msa-upstream
    retry: null
    notification: null
  - name: dsn
    output_chain: dsn
    notification: null
- name: ingress
  output_chain: ingress
  retry: output_chain
  tag:
  - name: smtp-mx
    output_chain: mx_exploder
    upstream_tag: smtp-mx-upstream
    retry: null
  - name: smtp-mx-upstream
    retry: null
rest_endpoint:
- name: gateway
  endpoint: {gateway_url}/senders/router/transactions
  sender: router
  tag: outbound
- name: mailbox
  endpoint: {mailbox_url}
  sender: router
endpoint:
- name: msa_exploder
  output_handler:
    downstream_timeout: 30
    upstream_refresh: 1
  chain:
  - filter: exploder
    msa: true
    rcpt_timeout: 5
    data_timeout: 10
- name: submission
  output_handler:
    downstream_timeout: 30
    upstream_refresh: 1
    retry_params:
      max_attempts: {max_attempts}
      min_attempt_time: 1
      max_attempt_time: 5
      backoff_factor: 2
    notification:
      sender: submission
      tag: dsn
  chain:
  - filter: router
    destination:
      endpoint: gateway
      host_list:
      - host: 127.0.0.1
        port: {sink_port}
  - filter: rest_output
    rcpt_timeout: 20
    data_timeout: 60
    chunk_size: 1048576
- name: mx_exploder
  output_handler:
    downstream_timeout: 30
    upstream_refresh: 1
  chain:
  - filter: exploder
    msa: false
    rcpt_timeout: 5
    data_timeout: 10
- name: dsn
  output_handler:
    downstream_timeout: 30
    upstream_refresh: 1
    retry_params:
      max_attempts: 3
      min_attempt_time: 1
  chain:
  - filter: router
    destination:
      endpoint: mailbox
  - filter: rest_output
    rcpt_timeout: 20
    data_timeout: 60
- name: ingress
  output_handler:
    downstream_timeout: 30
    upstream_refresh: 1
    retry_params:
      max_attempts: 3
      min_attempt_time: 1
  chain:
  - filter: router
    destination:
      endpoint: mailbox
  - filter: rest_output
    rcpt_timeout: 20
    data_timeout: 60
logging:
  level: {log_level}
"""

GATEWAY_YAML = """
rest_listener:
  addr: ["127.0.0.1", {rest_port}]
  session_uri: http://127.0.0.1:{rest_port}
  gc_interval: 1
  gc_tx_ttl: 60
  gc_done_ttl: 5
smtp_output:
  hosts:
    outbound:
      ehlo_host: gw.test
      enable_bdat: {bdat}
smtp_listener:
  services:
  - addr: ["127.0.0.1", {mx_port}]
    endpoint: mx
    sender: ingress
    tag: smtp-mx
    hostname: mx.gw.test
  - addr: ["127.0.0.1", {msa_port}]
    endpoint: msa
    sender: submission
    tag: smtp-msa
    hostname: msa.gw.test
    cert: {cert}
    key: {key}
    auth_secrets: {secrets}
  - addr: ["127.0.0.1", {smtps_port}]
    endpoint: msa
    sender: submission
    tag: smtp-msa
    hostname: smtps.gw.test
    smtps: true
    cert: {cert}
    key: {key}
    auth_secrets: {secrets}
rest_output:
- name: mx
  endpoint: {router_url}/senders/ingress/transactions
  rcpt_timeout: 15
  data_timeout: 60
  refresh_interval: 2
- name: msa
  endpoint: {router_url}/senders/submission/transactions
  rcpt_timeout: 15
  data_timeout: 60
  refresh_interval: 2
logging:
  level: {log_level}
"""


def make_tls(workdir):
    cert = os.path.join(workdir, "cert.pem")
    key = os.path.join(workdir, "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", "/CN=localhost", "-keyout", key, "-out", cert],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    secrets = os.path.join(workdir, "secrets.json")
    with open(secrets, "w") as f:
        json.dump({AUTH_USER: hashlib.sha256(AUTH_SECRET.encode()).hexdigest()}, f)
    return cert, key, secrets


class Gateway:
    def __init__(self, workdir, router_url, bdat="true", log_level="info", rest_port=None):
        self.workdir = workdir
        self.rest_port = rest_port or harness.free_port()
        self.mx_port = harness.free_port()
        self.msa_port = harness.free_port()
        self.smtps_port = harness.free_port()
        self.url = "http://127.0.0.1:%d" % self.rest_port
        cert, key, secrets = make_tls(workdir)
        self.config_path = os.path.join(workdir, "gateway.yaml")
        with open(self.config_path, "w") as f:
            f.write(GATEWAY_YAML.format(rest_port=self.rest_port, mx_port=self.mx_port,
                                        msa_port=self.msa_port, smtps_port=self.smtps_port,
                                        cert=cert, key=key, secrets=secrets,
                                        router_url=router_url, bdat=bdat, log_level=log_level))
        self.log_path = os.path.join(workdir, "gateway.log")
        self.proc = None

    def start(self, timeout=20):
        self.log = open(self.log_path, "ab")
        self.proc = harness.start_daemon([GATEWAY_BIN, self.config_path], self.log,
                                         self.url + "/healthz", "gateway", self.read_log,
                                         timeout)
        return self

    def read_log(self):
        return harness.read_tail(self.log_path)

    def pid(self):
        return self.proc.pid

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if getattr(self, "log", None):
            self.log.close()
            self.log = None


def start_stack(testcase, sink, mailbox, max_attempts=3, bdat="true", log_level="info"):
    """Router (SQLite) + gateway wired to `sink` (SMTP) and `mailbox` (REST)."""
    workdir = tempfile.mkdtemp(prefix="koukan-e2e-")
    gw_rest_port = harness.free_port()
    router = harness.Router(workdir=workdir, yaml=E2E_ROUTER_YAML, log_level=log_level,
                            gateway_url="http://127.0.0.1:%d" % gw_rest_port,
                            mailbox_url=mailbox.endpoint(), sink_port=sink.port,
                            max_attempts=max_attempts)
    router.start()
    testcase.addCleanup(router.stop)
    gw = Gateway(workdir, router.session_uri, bdat=bdat, log_level=log_level,
                 rest_port=gw_rest_port)
    gw.start()
    testcase.addCleanup(gw.stop)
    return router, gw


def swaks(*args, timeout=60):
    """Runs swaks; returns (exit code, transcript)."""
    p = subprocess.run(["swaks", "--hide-informational", "--timeout", "30"] + list(args),
                       capture_output=True, text=True, timeout=timeout)
    return p.returncode, p.stdout + p.stderr
