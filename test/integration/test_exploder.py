"""Exploder (issue 3 acceptance 3): the spec/router.md §12.5 response table
for msa (submission) and ingress (MX) exploders, through the real router:
an incremental REST transaction is fanned out into one upstream per
recipient, each delivered by rest_output to a scripted receiver."""
import time
import unittest

import harness
from receiver import Receiver
from test_delivery import poll, start_router

BODY = "Subject: fan-out\r\n\r\nhello\r\n"
SF_RCPT = "RCPT ok (AsyncFilterWrapper store&forward)"
SF_DATA = "DATA ok (AsyncFilterWrapper store&forward)"


def run_tx(router, tag, rcpts, body=BODY):
    """An SMTP-like client over REST: MAIL + RCPTs, then DATA if any RCPT
    was accepted. Returns the sender-side view at the end."""
    r = router.create({"mail_from": {"m": "alice@example.com"},
                       "rcpt_to": [{"m": x} for x in rcpts],
                       "sender": {"tag": tag}}, sender="smtp")
    assert r.status == 201, r
    path = harness.path_of(r.header("location"))
    tx = poll(router, path, lambda t: "mail_response" in t and
              len(t.get("rcpt_response", [])) == len(rcpts))
    if not any(x["code"] // 100 == 2 for x in tx["rcpt_response"]):
        return tx
    put = router.request("PUT", path + "/body", body.encode())
    assert put.status == 200, put
    return poll(router, path, lambda t: "data_response" in t)


class ExploderTableTest(unittest.TestCase):
    def setUp(self):
        self.recv = Receiver().start()
        self.addCleanup(self.recv.stop)
        self.dsn = Receiver().start()
        self.addCleanup(self.dsn.stop)
        self.router = start_router(self, self.recv, self.dsn, min_attempt_time=1,
                                   rcpt_timeout=8)

    def script(self, rcpt, *seq):
        self.recv.responses[rcpt] = list(seq)

    def delivered_to(self, rcpt):
        return [t for t in self.recv.delivered() if t.rcpts == [rcpt]]

    def check(self, tag, rcpt, seq, rcpt_code, data_code=None, rcpt_msg=None, data_msg=None):
        self.script(rcpt, *seq)
        tx = run_tx(self.router, tag, [rcpt])
        self.assertEqual(tx["mail_response"], {"code": 250, "message": "MAIL ok (exploder noop)"})
        got = tx["rcpt_response"][0]
        self.assertEqual(got["code"], rcpt_code, (tag, rcpt, tx))
        if rcpt_msg:
            self.assertIn(rcpt_msg, got["message"])
        if data_code is not None:
            self.assertEqual(tx["data_response"]["code"], data_code, (tag, rcpt, tx))
            if data_msg:
                self.assertIn(data_msg, tx["data_response"]["message"])
        return tx

    # --- msa: true ----------------------------------------------------------
    def test_msa_rows(self):
        self.check("msa", "ok@m.example", [(250, 250, 250)], 250, 250, "rcpt 250", "data 250")
        self.check("msa", "mailperm@m.example", [(550, None, None)], 550)
        self.check("msa", "rcptperm@m.example", [(250, 550, None)], 550, None, "rcpt 550")
        self.check("msa", "dataperm@m.example", [(250, 250, 550)], 250, 550, None, "data 550")
        # temp / timeout -> store&forward 250, and the upstream is retried
        self.check("msa", "mailtemp@m.example", [(450, None, None), (250, 250, 250)], 250, 250,
                   SF_RCPT, SF_DATA)
        self.check("msa", "rcpttemp@m.example", [(250, 450, None), (250, 250, 250)], 250, 250,
                   SF_RCPT, SF_DATA)
        self.check("msa", "rcpttimeout@m.example", [(250, None, None), (250, 250, 250)], 250, 250,
                   SF_RCPT, SF_DATA)
        self.check("msa", "datatemp@m.example", [(250, 250, 450), (250, 250, 250)], 250, 250,
                   None, SF_DATA)
        self.check("msa", "datatimeout@m.example", [(250, 250, None), (250, 250, 250)], 250, 250,
                   None, SF_DATA)
        for r in ["mailtemp", "rcpttemp", "rcpttimeout", "datatemp", "datatimeout"]:
            rcpt = r + "@m.example"
            self.assertTrue(self.recv.wait_for(lambda rv: len(self.delivered_to(rcpt)) == 1, 40),
                            "%s not retried to success\n%s" % (rcpt, self.router.read_log()))

    # --- msa: false (ingress) -----------------------------------------------
    def test_ingress_rows(self):
        self.check("mx", "ok@x.example", [(250, 250, 250)], 250, 250, "rcpt 250", "data 250")
        self.check("mx", "mailperm@x.example", [(550, None, None)], 550)
        self.check("mx", "mailtemp@x.example", [(450, None, None)], 450)
        self.check("mx", "rcpttimeout@x.example", [(250, None, None)], 450, None,
                   "upstream timeout")
        self.check("mx", "rcpttemp@x.example", [(250, 450, None)], 450, None, "rcpt 450")
        self.check("mx", "rcptperm@x.example", [(250, 550, None)], 550, None, "rcpt 550")
        self.check("mx", "datatimeout@x.example", [(250, 250, None)], 250, 450, None,
                   "upstream timeout")
        self.check("mx", "datatemp@x.example", [(250, 250, 450)], 250, 450, None, "data 450")
        self.check("mx", "dataperm@x.example", [(250, 250, 550)], 250, 550, None, "data 550")
        time.sleep(3)
        self.assertEqual(self.delivered_to("datatemp@x.example"), [],
                         "ingress: a temp DATA answered verbatim is not stored and forwarded")

    # --- ours: upstreams are stored only for store&forward (docs/compat.md) --
    def upstreams_of(self, rcpt):
        return [(rid, j, reason) for rid, j, reason in self.router.stored_transactions()
                if j.get("rcpt_to") == [{"m": rcpt}] and j.get("sender", {}).get("tag") != "msa"
                and j.get("sender", {}).get("tag") != "mx"]

    def test_upstreams_are_stored_only_for_store_and_forward(self):
        before = len(self.router.stored_transactions())
        self.check("msa", "direct@st.example", [(250, 250, 250)], 250, 250, "rcpt 250", "data 250")
        # Delivered by the in-memory upstream: only the downstream tx is stored.
        self.assertEqual(len(self.router.stored_transactions()), before + 1)
        self.assertEqual(self.upstreams_of("direct@st.example"), [])
        self.assertEqual(len(self.delivered_to("direct@st.example")), 1)

        # A temp DATA failure: store&forward stores the upstream (retry and
        # notification on) before the 250, and its retry delivers.
        self.check("msa", "stored@st.example", [(250, 250, 450), (250, 250, 250)], 250, 250,
                   None, SF_DATA)
        ups = self.upstreams_of("stored@st.example")
        self.assertEqual(len(ups), 1, self.router.stored_transactions())
        rid, j, _ = ups[0]
        self.assertIn("retry", j)
        self.assertIn("notification", j)
        self.assertEqual(len(self.router.stored_transactions()), before + 3)
        self.assertTrue(self.recv.wait_for(lambda rv: len(self.delivered_to("stored@st.example")) == 1, 40),
                        self.router.read_log())
        deadline = time.time() + 20
        while time.time() < deadline and self.upstreams_of("stored@st.example")[0][2] is None:
            time.sleep(0.1)
        self.assertEqual(self.upstreams_of("stored@st.example")[0][2], "upstream response success")

    def test_cancel_reaches_the_in_memory_upstream(self):
        # The upstream never answers the RCPT; a cancel of the downstream
        # transaction is passed on: the receiver's transaction is cancelled
        # and nothing is stored for the upstream.
        rcpt = "stuck@cancel.example"
        self.script(rcpt, (250, None, None))
        r = self.router.create({"mail_from": {"m": "alice@example.com"},
                                "rcpt_to": [{"m": rcpt}], "sender": {"tag": "mx"}}, sender="smtp")
        self.assertEqual(r.status, 201, r)
        path = harness.path_of(r.header("location"))
        self.assertTrue(self.recv.wait_for(lambda rv: any(
            t.create.get("rcpt_to") == [{"m": rcpt}] for t in rv.txs.values()), 10))
        self.assertEqual(self.router.request("POST", path + "/cancel").status, 200)
        self.assertTrue(self.recv.wait_for(lambda rv: any(
            t.cancelled for t in rv.txs.values() if t.create.get("rcpt_to") == [{"m": rcpt}]), 20),
            self.router.read_log())
        self.assertEqual(self.upstreams_of(rcpt), [])
        tx = poll(self.router, path, lambda t: t.get("cancelled"))
        self.assertTrue(tx["cancelled"])

    def test_heartbeats_reach_the_in_memory_upstream(self):
        # Between RCPT and DATA the downstream attempt's heartbeat passes
        # (upstream_refresh: 1 s here) reach the upstream: its rest_output
        # sends heartbeat PATCHes to the receiver, keeping that hop alive.
        rcpt = "slowclient@hb.example"
        r = self.router.create({"mail_from": {"m": "alice@example.com"},
                                "rcpt_to": [{"m": rcpt}], "sender": {"tag": "msa"}}, sender="smtp")
        self.assertEqual(r.status, 201, r)
        path = harness.path_of(r.header("location"))
        poll(self.router, path, lambda t: len(t.get("rcpt_response", [])) == 1)

        def heartbeats(rv):
            return sum(len(t.patches) for t in rv.txs.values() if t.create.get("rcpt_to") == [{"m": rcpt}])
        self.assertTrue(self.recv.wait_for(lambda rv: heartbeats(rv) >= 2, 8), self.router.read_log())
        # The transaction goes on normally afterwards.
        put = self.router.request("PUT", path + "/body", BODY.encode())
        self.assertEqual(put.status, 200, put)
        tx = poll(self.router, path, lambda t: "data_response" in t)
        self.assertEqual(tx["data_response"]["code"], 250, tx)

    # --- several recipients ---------------------------------------------------
    def test_same_major_code_is_reported_once(self):
        for tag in ("msa", "mx"):
            a, b = "a-%s@s.example" % tag, "b-%s@s.example" % tag
            self.script(a, (250, 250, 250))
            self.script(b, (250, 250, 251))
            tx = run_tx(self.router, tag, [a, b])
            self.assertEqual([x["code"] for x in tx["rcpt_response"]], [250, 250])
            self.assertEqual(tx["data_response"],
                             {"code": 250, "message": "data 250 (Exploder same response)"})

    def test_mixed_results_store_and_forward(self):
        # Ingress: 250 + 450 disagree -> store&forward 250; the 450 one is
        # made durable and retried to success.
        a, b = "good@mix.example", "later@mix.example"
        self.script(a, (250, 250, 250))
        self.script(b, (250, 250, 450), (250, 250, 250))
        tx = run_tx(self.router, "mx", [a, b])
        self.assertEqual(tx["data_response"],
                         {"code": 250, "message": "DATA ok (Exploder store&forward)"}, tx)
        self.assertTrue(self.recv.wait_for(lambda rv: len(self.delivered_to(b)) == 1, 40),
                        "%s not retried\n%s" % (b, self.router.read_log()))
        self.assertEqual(len(self.delivered_to(a)), 1)

    def test_msa_mixed_temp_is_upgraded_first(self):
        # msa: the wrapper turns the 450 into a store&forward 250 before the
        # Exploder compares, so both agree; the 450 one is still retried.
        a, b = "good@msamix.example", "later@msamix.example"
        self.script(a, (250, 250, 250))
        self.script(b, (250, 250, 450), (250, 250, 250))
        tx = run_tx(self.router, "msa", [a, b])
        self.assertEqual(tx["data_response"],
                         {"code": 250, "message": "data 250 (Exploder same response)"}, tx)
        self.assertTrue(self.recv.wait_for(lambda rv: len(self.delivered_to(b)) == 1, 40),
                        "%s not retried\n%s" % (b, self.router.read_log()))

    def test_mixed_with_perm_failure_sends_late_dsn(self):
        # 250 + 550 (both modes): store&forward 250 downstream; the 550
        # upstream already ended, so the notification turned on afterwards
        # produces a late DSN for it.
        for n, tag in enumerate(("mx", "msa"), start=1):
            a, b = "fine-%s@dsn.example" % tag, "gone-%s@dsn.example" % tag
            self.script(a, (250, 250, 250))
            self.script(b, (250, 250, 550))
            tx = run_tx(self.router, tag, [a, b])
            self.assertEqual(tx["data_response"]["message"], "DATA ok (Exploder store&forward)")
            self.assertTrue(self.dsn.wait_for(lambda rv: len(rv.delivered()) == n, 30),
                            self.router.read_log())
            self.assertRegex(bytes(self.dsn.delivered()[-1].body).decode(),
                             r"Final-Recipient: rfc822; ?" + b)


class QuickAnswerTest(unittest.TestCase):
    """A create or an added recipient on a transaction the router delivers
    itself waits a few milliseconds for the answer (docs/compat.md): with
    the exploder's noop MAIL and a receiver that answers at once, the 201
    and the PATCH response carry mail_response / rcpt_response."""

    def setUp(self):
        self.recv = Receiver().start()
        self.addCleanup(self.recv.stop)
        self.dsn = Receiver().start()
        self.addCleanup(self.dsn.stop)
        from test_delivery import DELIVERY_YAML
        # A generous wait: the answer crosses the upstream and the Python
        # receiver, slow under the sanitizers.
        yaml = DELIVERY_YAML.replace("  chunk_size: {chunk_size}\n",
                                     "  chunk_size: {chunk_size}\n  first_answer_wait_ms: 5000\n")
        self.assertNotEqual(yaml, DELIVERY_YAML)
        self.router = start_router(self, self.recv, self.dsn, yaml=yaml)

    def test_create_and_patch_carry_the_first_answers(self):
        r = self.router.create({"mail_from": {"m": "alice@example.com"},
                                "sender": {"tag": "msa"}}, sender="smtp")
        self.assertEqual(r.status, 201, r)
        self.assertEqual(r.json()["mail_response"],
                         {"code": 250, "message": "MAIL ok (exploder noop)"})
        # Ours: the Exploder's MAIL answer is stored with the create itself
        # (version 1, +1 for the attempt it starts), not by a later write of
        # the output that the create would wait for.
        self.assertEqual(r.header("etag"), "2")
        path = harness.path_of(r.header("location"))
        time.sleep(0.3)
        self.assertEqual(self.router.request("GET", path).header("etag"), "2")
        p = self.router.request("PATCH", path,
                                b'{"rcpt_to": [{"m": "ok@m.example"}], "rcpt_to_list_offset": 0}',
                                {"content-type": "application/json",
                                 "if-match": r.header("etag")})
        self.assertEqual(p.status, 200, p)
        self.assertEqual(p.json()["rcpt_response"][0]["code"], 250, p.json())
        # The answer is durable: a plain GET shows the same version.
        g = self.router.request("GET", path)
        self.assertEqual(g.header("etag"), p.header("etag"))


class ExploderConfigTest(unittest.TestCase):
    def test_fan_out_into_itself_is_a_startup_error(self):
        # Without upstream_tag the upstream defaults to the same sender/tag,
        # whose chain is the exploder again (the original looped forever).
        import subprocess
        from test_delivery import DELIVERY_YAML
        text = DELIVERY_YAML.replace(
            "    output_chain: msa_exploder\n    upstream_sender: submission\n"
            "    upstream_tag: msa-upstream\n", "    output_chain: msa_exploder\n")
        self.assertNotEqual(text, DELIVERY_YAML)
        workdir = harness.tempfile.mkdtemp(prefix="koukan-it-")
        cfg = harness.os.path.join(workdir, "router.yaml")
        with open(cfg, "w") as f:
            f.write(text.format(port=harness.free_port(), session_uri="http://127.0.0.1:1",
                                service_uri="http://127.0.0.1:1", chunk_size=1048576,
                                storage_url="sqlite://" + workdir + "/r.db", refresh=30,
                                extra_storage="", max_inflight=10,
                                receiver_url="http://127.0.0.1:1/senders/router/transactions",
                                dsn_url="http://127.0.0.1:1/senders/router/transactions",
                                archive_url="http://127.0.0.1:1/senders/router/transactions",
                                max_attempts=3, min_attempt_time=1, rcpt_timeout=5))
        p = subprocess.run([harness.ROUTER_BIN, "--check-config", cfg], capture_output=True,
                           text=True, timeout=20)
        self.assertEqual(p.returncode, 2, p)
        self.assertIn("would explode again", p.stderr)
        self.assertIn("sender[", p.stderr)


if __name__ == "__main__":
    unittest.main()
