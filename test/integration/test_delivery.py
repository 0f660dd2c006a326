"""Delivery (issue 3 acceptance 1, 2, 4, 6): REST app -> koukan-router ->
rest_output -> a REST receiver (receiver.py), with retries, DSNs and
restart recovery, against the real binary."""
import email
import email.policy
import json
import os
import time
import unittest

import harness
from receiver import Receiver

DELIVERY_YAML = """
global:
  rest_id_entropy: 8
  mailer_daemon_mailbox: mailer-daemon@router.example
  executor:
    output:
      max_inflight: {max_inflight}
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
  - name: dsn
    output_chain: dsn
    notification: null
  - name: oneshot
    retry: null
    notification: null
  - name: msa-upstream
    retry: null
    notification: null
- name: archive
  output_chain: archive
  retry: output_chain
- name: copy
  output_chain: copy
  tag:
  - name: stored
    output_chain: copy_stored
- name: smtp
  tag:
  - name: msa
    output_chain: msa_exploder
    upstream_sender: submission
    upstream_tag: msa-upstream
  - name: mx
    output_chain: mx_exploder
    upstream_sender: submission
    upstream_tag: msa-upstream
rest_endpoint:
- name: receiver
  endpoint: {receiver_url}
  sender: router
  tag: outbound
- name: dsn_receiver
  endpoint: {dsn_url}
  sender: router
- name: archive_receiver
  endpoint: {archive_url}
  sender: router
  tag: archive
endpoint:
- name: copy
  output_handler:
    downstream_timeout: 10
    upstream_refresh: 1
  chain:
  - filter: add_route
    sender: archive
  - filter: router
    destination:
      endpoint: receiver
  - filter: rest_output
    rcpt_timeout: 5
    data_timeout: 10
- name: copy_stored
  output_handler:
    downstream_timeout: 10
    upstream_refresh: 1
  chain:
  - filter: add_route
    sender: archive
    store_and_forward: true
  - filter: router
    destination:
      endpoint: receiver
  - filter: rest_output
    rcpt_timeout: 5
    data_timeout: 10
- name: archive
  output_handler:
    downstream_timeout: 10
    upstream_refresh: 1
    retry_params:
      max_attempts: 5
      min_attempt_time: 1
  chain:
  - filter: router
    destination:
      endpoint: archive_receiver
  - filter: rest_output
    rcpt_timeout: 5
    data_timeout: 10
- name: submission
  output_handler:
    downstream_timeout: 10
    upstream_refresh: 1
    retry_params:
      max_attempts: {max_attempts}
      min_attempt_time: {min_attempt_time}
      max_attempt_time: 30
      backoff_factor: 2
    notification:
      sender: submission
      tag: dsn
  chain:
  - filter: router
    destination:
      endpoint: receiver
  - filter: rest_output
    rcpt_timeout: {rcpt_timeout}
    data_timeout: 10
    chunk_size: 65536
- name: msa_exploder
  output_handler:
    downstream_timeout: 10
    upstream_refresh: 1
  chain:
  - filter: exploder
    msa: true
    rcpt_timeout: 2
    data_timeout: 3
- name: mx_exploder
  output_handler:
    downstream_timeout: 10
    upstream_refresh: 1
  chain:
  - filter: exploder
    msa: false
    rcpt_timeout: 2
    data_timeout: 3
- name: dsn
  output_handler:
    downstream_timeout: 10
    upstream_refresh: 1
    retry_params:
      max_attempts: 3
      min_attempt_time: 1
  chain:
  - filter: router
    destination:
      endpoint: dsn_receiver
  - filter: rest_output
    rcpt_timeout: 5
    data_timeout: 10
logging:
  level: info
"""


def start_router(testcase, recv, dsn_recv, workdir=None, storage_url=None, refresh=30,
                 extra_storage="", yaml=DELIVERY_YAML, **kw):
    fmt = dict(max_inflight=100, receiver_url=recv.endpoint(), dsn_url=dsn_recv.endpoint(),
               archive_url=kw.pop("archive_url", dsn_recv.endpoint()),
               max_attempts=3, min_attempt_time=2, rcpt_timeout=5)
    fmt.update(kw)
    r = harness.Router(workdir=workdir, storage_url=storage_url, yaml=yaml,
                       refresh=refresh, extra_storage=extra_storage, **fmt)
    r.start()
    testcase.addCleanup(r.stop)
    return r


def tx_json(rcpt, body, sender_tag=None):
    tx = {"mail_from": {"m": "alice@example.com"}, "rcpt_to": [{"m": rcpt}],
          "body": {"inline": body}}
    if sender_tag:
        tx["sender"] = {"tag": sender_tag}
    return tx


def poll(router, path, pred, timeout=30):
    """Long-polls a sender-side transaction until pred(its JSON) holds."""
    deadline = time.time() + timeout
    etag = None
    last = None
    while time.time() < deadline:
        hdrs = {"request-timeout": "3"}
        if etag:
            hdrs["if-none-match"] = etag
        r = router.request("GET", path, headers=hdrs, timeout=10)
        if r.status == 200:
            etag = r.header("etag")
            last = r.json()
            if pred(last):
                return last
        elif r.status != 304:
            raise AssertionError("GET %s: %r" % (path, r))
    raise AssertionError("condition not reached within %ds; last %r\n%s" % (
        timeout, last, router.read_log()))


def wait_final(router, path, timeout=60):
    """Long-polls until final_attempt_reason."""
    return poll(router, path, lambda t: "final_attempt_reason" in t, timeout)


class DeliveryTest(unittest.TestCase):
    def setUp(self):
        self.recv = Receiver().start()
        self.addCleanup(self.recv.stop)
        self.dsn = Receiver().start()
        self.addCleanup(self.dsn.stop)

    def test_delivers_exact_bytes_and_reports_on_long_poll(self):
        router = start_router(self, self.recv, self.dsn)
        body = ("Subject: hello\r\nMessage-ID: <m1@example.com>\r\n\r\n" +
                "line of text\r\n" * 20000)  # ~300 KB: several 64 KiB PUTs
        r = router.create(tx_json("bob@example.com", body))
        self.assertEqual(r.status, 201, r)
        path = harness.path_of(r.header("location"))
        final = wait_final(router, path)
        self.assertEqual(final["final_attempt_reason"], "upstream response success")
        self.assertEqual(final["mail_response"]["code"], 250)
        self.assertEqual([x["code"] for x in final["rcpt_response"]], [250])
        self.assertEqual(final["data_response"]["code"], 250)
        self.assertEqual(final["attempt_count"], 1)
        self.assertTrue(self.recv.wait_for(lambda rv: len(rv.delivered()) == 1, 10))
        got = self.recv.delivered()[0]
        self.assertEqual(bytes(got.body), body.encode())
        self.assertEqual(got.create["mail_from"], {"m": "alice@example.com"})
        self.assertEqual(got.create["rcpt_to"], [{"m": "bob@example.com"}])
        self.assertEqual(got.create["sender"], {"name": "router", "tag": "outbound"})
        self.assertFalse(self.dsn.txs, "no DSN for a success")

    def test_temp_failures_are_retried_with_backoff(self):
        self.recv.responses = {"carol@example.com": [(250, 250, 450), (250, 250, 450),
                                                     (250, 250, 250)]}
        router = start_router(self, self.recv, self.dsn, max_attempts=5)
        r = router.create(tx_json("carol@example.com", "Subject: t\r\n\r\nretry me\r\n"))
        self.assertEqual(r.status, 201, r)
        final = wait_final(router, harness.path_of(r.header("location")), 60)
        self.assertEqual(final["final_attempt_reason"], "upstream response success")
        self.assertEqual(final["attempt_count"], 3)
        txs = [self.recv.txs[i] for i in self.recv.order]
        self.assertEqual(len(txs), 3)
        gaps = [b.created_at - a.created_at for a, b in zip(txs, txs[1:])]
        # min_attempt_time 2, factor 2: ~2 s then ~4 s (+-10% jitter, whole
        # seconds, plus up to 1 s of dequeue polling).
        self.assertTrue(1.0 <= gaps[0] <= 4.5, gaps)
        self.assertTrue(3.0 <= gaps[1] <= 6.5, gaps)
        self.assertGreater(gaps[1], gaps[0])
        self.assertEqual(len(self.recv.delivered()), 1)
        self.assertFalse(self.dsn.txs, "no DSN after an eventual success")

    def test_perm_failure_sends_one_dsn(self):
        self.recv.responses = {"dave@example.com": [(250, 250, 550)]}
        router = start_router(self, self.recv, self.dsn)
        r = router.create(tx_json("dave@example.com",
                                  "Subject: doomed\r\nMessage-ID: <orig@example.com>\r\n\r\nx\r\n"))
        self.assertEqual(r.status, 201, r)
        final = wait_final(router, harness.path_of(r.header("location")))
        self.assertEqual(final["final_attempt_reason"], "upstream response permfail")
        self.assertEqual(final["attempt_count"], 1)
        self.assertTrue(self.dsn.wait_for(lambda rv: len(rv.delivered()) == 1, 30),
                        router.read_log())
        self.assertEqual(len(self.recv.txs), 1, "a 5xx is not retried")
        d = self.dsn.delivered()[0]
        self.assertEqual(d.create["mail_from"], {"m": ""})
        self.assertEqual(d.create["rcpt_to"], [{"m": "alice@example.com"}])
        msg = email.message_from_bytes(bytes(d.body), policy=email.policy.default)
        self.assertEqual(msg.get_content_type(), "multipart/report")
        self.assertEqual(msg.get_param("report-type"), "delivery-status")
        self.assertTrue(msg["Message-ID"].startswith("<") and msg["Message-ID"].endswith(">"))
        self.assertEqual(msg["In-Reply-To"], "<orig@example.com>")
        parts = list(msg.iter_parts())
        status = [p for p in parts if p.get_content_type() == "message/delivery-status"]
        self.assertEqual(len(status), 1)
        text = bytes(d.body).decode()
        self.assertRegex(text, r"Final-Recipient: rfc822; ?dave@example.com")
        self.assertIn("Action: failed", text)
        self.assertRegex(text, r"Status: 5\.\d+\.\d+")
        self.assertRegex(text, r"Diagnostic-Code: smtp; ?550")
        time.sleep(1.5)
        self.assertEqual(len(self.dsn.txs), 1, "exactly one DSN")

    def test_rcpt_perm_failure_no_upload(self):
        self.recv.responses = {"erin@example.com": [(250, 550, None)]}
        router = start_router(self, self.recv, self.dsn)
        r = router.create(tx_json("erin@example.com", "Subject: x\r\n\r\nx\r\n", "oneshot"))
        final = wait_final(router, harness.path_of(r.header("location")))
        self.assertEqual(final["final_attempt_reason"], "upstream rcpt_response permfail")
        self.assertEqual(final["rcpt_response"][0]["code"], 550)
        self.assertNotIn("data_response", final)
        self.assertEqual(bytes(self.recv.txs[self.recv.order[0]].body), b"")

    def test_max_attempts_then_dsn(self):
        self.recv.responses = {"frank@example.com": [(250, 250, 451)]}
        router = start_router(self, self.recv, self.dsn, max_attempts=2, min_attempt_time=1)
        r = router.create(tx_json("frank@example.com", "Subject: x\r\n\r\nx\r\n"))
        final = wait_final(router, harness.path_of(r.header("location")), 60)
        self.assertEqual(final["final_attempt_reason"], "retry policy max attempts")
        self.assertEqual(final["attempt_count"], 2)
        self.assertTrue(self.dsn.wait_for(lambda rv: len(rv.delivered()) == 1, 30))
        self.assertRegex(bytes(self.dsn.delivered()[0].body).decode(), r"Status: 4\.\d+\.\d+")

    def test_cancel_stops_delivery(self):
        # The receiver never answers DATA: the attempt waits; cancel ends it.
        self.recv.responses = {"gina@example.com": [(250, 250, None)]}
        router = start_router(self, self.recv, self.dsn)
        r = router.create(tx_json("gina@example.com", "Subject: x\r\n\r\nx\r\n"))
        path = harness.path_of(r.header("location"))
        self.assertTrue(self.recv.wait_for(lambda rv: len(rv.txs) == 1, 10))
        c = router.request("POST", path + "/cancel")
        self.assertEqual(c.status, 200, c)
        final = wait_final(router, path)
        self.assertEqual(final["final_attempt_reason"], "downstream cancelled")

    def test_kill9_with_50_waiting_for_retry(self):
        # Every first attempt fails temporarily; the router dies while all 50
        # wait for their retry; a new process delivers each exactly once.
        n = 50
        self.recv.responses = {"r%d@example.com" % i: [(250, 250, 450), (250, 250, 250)]
                               for i in range(n)}
        workdir = harness.tempfile.mkdtemp(prefix="koukan-it-")
        router = harness.Router(workdir=workdir, yaml=DELIVERY_YAML, max_inflight=100,
                                archive_url=self.dsn.endpoint(),
                                receiver_url=self.recv.endpoint(), dsn_url=self.dsn.endpoint(),
                                max_attempts=5, min_attempt_time=4, rcpt_timeout=5)
        router.start()
        paths = []
        for i in range(n):
            r = router.create(tx_json("r%d@example.com" % i, "Subject: %d\r\n\r\nbody %d\r\n" % (i, i)))
            self.assertEqual(r.status, 201, r)
            paths.append(harness.path_of(r.header("location")))
        self.assertTrue(self.recv.wait_for(lambda rv: len(rv.txs) == n, 30), router.read_log())
        time.sleep(0.5)  # let the attempts write their retry times
        router.kill9()
        router2 = harness.Router(workdir=workdir, port=router.port, yaml=DELIVERY_YAML,
                                 archive_url=self.dsn.endpoint(),
                                 max_inflight=100, receiver_url=self.recv.endpoint(),
                                 dsn_url=self.dsn.endpoint(), max_attempts=5,
                                 min_attempt_time=4, rcpt_timeout=5)
        router2.start()
        self.addCleanup(router2.stop)
        self.assertTrue(self.recv.wait_for(lambda rv: len(rv.delivered()) >= n, 60),
                        router2.read_log())
        time.sleep(2)
        per_rcpt = {}
        for t in self.recv.delivered():
            per_rcpt[t.rcpts[0]] = per_rcpt.get(t.rcpts[0], 0) + 1
        self.assertEqual(sorted(per_rcpt), sorted("r%d@example.com" % i for i in range(n)))
        dups = sum(c - 1 for c in per_rcpt.values())
        print("kill -9 recovery: %d delivered, %d duplicates" % (len(per_rcpt), dups))
        self.assertEqual(dups, 0)
        for p in paths:
            f = wait_final(router2, p, 30)
            self.assertEqual(f["final_attempt_reason"], "upstream response success")


@unittest.skipIf(harness.PG_URL == "skip", "KOUKAN_TEST_PG_URL=skip")
class PostgresDeliveryTest(unittest.TestCase):
    """The same delivery path with PostgreSQL storage."""

    def setUp(self):
        if not harness.PG_URL:
            self.fail("KOUKAN_TEST_PG_URL is not set (scripts/run-tests.sh starts a server)")
        self.db = "koukan_delivery_%d" % os.getpid()
        harness.pg_drop_db(self.db)
        self.url = harness.pg_create_db(self.db)
        self.addCleanup(harness.pg_drop_db, self.db)
        self.recv = Receiver().start()
        self.addCleanup(self.recv.stop)
        self.dsn = Receiver().start()
        self.addCleanup(self.dsn.stop)

    def test_deliver_retry_and_dsn_on_postgres(self):
        self.recv.responses = {"t@example.com": [(250, 250, 450), (250, 250, 250)],
                               "p@example.com": [(250, 250, 550)]}
        router = start_router(self, self.recv, self.dsn, storage_url=self.url,
                              min_attempt_time=1)
        body = "Subject: pg\r\n\r\n" + "pg line\r\n" * 10000
        paths = {}
        for rcpt in ("ok@example.com", "t@example.com", "p@example.com"):
            r = router.create(tx_json(rcpt, body))
            self.assertEqual(r.status, 201, r)
            paths[rcpt] = harness.path_of(r.header("location"))
        self.assertEqual(wait_final(router, paths["ok@example.com"])["final_attempt_reason"],
                         "upstream response success")
        t = wait_final(router, paths["t@example.com"], 60)
        self.assertEqual((t["final_attempt_reason"], t["attempt_count"]),
                         ("upstream response success", 2))
        self.assertEqual(wait_final(router, paths["p@example.com"])["final_attempt_reason"],
                         "upstream response permfail")
        self.assertTrue(self.dsn.wait_for(lambda rv: len(rv.delivered()) == 1, 30))
        for d in self.recv.delivered():
            self.assertEqual(bytes(d.body), body.encode())
        self.assertEqual(sorted(d.rcpts[0] for d in self.recv.delivered()),
                         ["ok@example.com", "t@example.com"])

    def test_other_replica_takes_over_after_a_crash(self):
        # Replica A takes the transaction, its first attempt fails
        # temporarily, A dies; B reaps A's session and delivers the retry.
        self.recv.responses = {"x@example.com": [(250, 250, 450), (250, 250, 250)]}
        ttl = "  session_ttl: 3"
        a = start_router(self, self.recv, self.dsn, storage_url=self.url, min_attempt_time=2,
                         refresh=1, extra_storage=ttl)
        b = start_router(self, self.recv, self.dsn, storage_url=self.url, min_attempt_time=2,
                         refresh=1, extra_storage=ttl)
        r = a.create(tx_json("x@example.com", "Subject: takeover\r\n\r\nx\r\n"))
        self.assertEqual(r.status, 201, r)
        path = harness.path_of(r.header("location"))
        self.assertTrue(self.recv.wait_for(lambda rv: len(rv.txs) == 1, 10))
        time.sleep(0.5)
        a.kill9()
        self.assertTrue(self.recv.wait_for(lambda rv: len(rv.delivered()) == 1, 30), b.read_log())
        f = wait_final(b, path, 20)
        self.assertEqual((f["final_attempt_reason"], f["attempt_count"]),
                         ("upstream response success", 2))
        self.assertIn("attempt 2", b.read_log())


class AddRouteTest(unittest.TestCase):
    def setUp(self):
        self.recv = Receiver().start()
        self.addCleanup(self.recv.stop)
        self.dsn = Receiver().start()
        self.addCleanup(self.dsn.stop)
        self.archive = Receiver().start()
        self.addCleanup(self.archive.stop)
        self.router = start_router(self, self.recv, self.dsn,
                                   archive_url=self.archive.endpoint())

    def test_copy_is_delivered_in_step(self):
        body = "Subject: copy me\r\n\r\nbody\r\n"
        r = self.router.create(tx_json("bob@example.com", body), sender="copy")
        self.assertEqual(r.status, 201, r)
        final = wait_final(self.router, harness.path_of(r.header("location")))
        self.assertEqual(final["final_attempt_reason"], "upstream response success")
        self.assertEqual(bytes(self.recv.delivered()[0].body), body.encode())
        self.assertTrue(self.archive.wait_for(lambda rv: len(rv.delivered()) == 1, 10))
        a = self.archive.delivered()[0]
        self.assertEqual(bytes(a.body), body.encode())
        self.assertEqual(a.create["sender"], {"name": "router", "tag": "archive"})

    def test_copy_failure_fails_the_main_transaction(self):
        self.archive.responses = {"bob@example.com": [(250, 550, None)]}
        r = self.router.create(tx_json("bob@example.com", "Subject: x\r\n\r\nx\r\n"),
                               sender="copy")
        final = wait_final(self.router, harness.path_of(r.header("location")))
        self.assertEqual(final["rcpt_response"][0]["code"], 550)
        self.assertIn("(AddRouteFilter upstream)", final["rcpt_response"][0]["message"])
        self.assertEqual(self.recv.delivered(), [], "main delivery stopped by the copy's error")

    def test_stored_copy_is_retried_independently(self):
        self.archive.responses = {"bob@example.com": [(250, 250, 450), (250, 250, 250)]}
        body = "Subject: stored copy\r\n\r\nbody\r\n"
        r = self.router.create(tx_json("bob@example.com", body, "stored"), sender="copy")
        final = wait_final(self.router, harness.path_of(r.header("location")))
        self.assertEqual(final["final_attempt_reason"], "upstream response success")
        self.assertTrue(self.archive.wait_for(lambda rv: len(rv.delivered()) == 1, 30),
                        self.router.read_log())
        self.assertEqual(bytes(self.archive.delivered()[0].body), body.encode())
        self.assertEqual(len(self.archive.txs), 2, "one failed attempt, one retry")


if __name__ == "__main__":
    unittest.main()
