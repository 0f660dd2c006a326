"""The gateway end to end (issue 4 acceptance 1, 2, 5, 6): real SMTP clients
(swaks, Python's smtplib) -> koukan-gateway -> koukan-router -> koukan-gateway
-> an SMTP sink, and SMTP ingress -> router -> a REST receiver."""
import os
import smtplib
import ssl
import time
import unittest

import gw_harness
import harness
from receiver import Receiver
from smtp_sink import SmtpSink

MSG = ("From: alice@example.com\r\nTo: bob@example.net\r\nSubject: e2e\r\n"
       "Message-ID: <e2e-1@example.com>\r\n\r\nHello from swaks.\r\n.leading dot line\r\n")
# swaks ends --data with CRLF "." CRLF itself: give it the message without
# its last CRLF so that what arrives is exactly MSG.
SWAKS_DATA = MSG[:-2]


def unverified():
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


class GatewayE2ETest(unittest.TestCase):
    def setUp(self):
        self.sink = SmtpSink().start()
        self.addCleanup(self.sink.stop)
        self.mailbox = Receiver().start()
        self.addCleanup(self.mailbox.stop)
        self.router, self.gw = gw_harness.start_stack(self, self.sink, self.mailbox)

    def swaks_msa(self, *extra, to="bob@example.net", data=SWAKS_DATA):
        return gw_harness.swaks("--server", "127.0.0.1", "--port", str(self.gw.msa_port),
                                "--from", "alice@example.com", "--to", to,
                                "--auth", "PLAIN", "--auth-user", gw_harness.AUTH_USER,
                                "--auth-password", gw_harness.AUTH_SECRET,
                                "--data", data, *extra)

    def test_submission_starttls_auth_plain_to_sink(self):
        rc, out = self.swaks_msa("--tls")
        self.assertEqual(rc, 0, out + self.gw.read_log() + self.router.read_log())
        self.assertIn("235 2.7.0", out)
        self.assertTrue(self.sink.wait_for(lambda s: len(s.delivered()) == 1, 30),
                        self.router.read_log())
        m = self.sink.delivered()[0]
        self.assertEqual(m.mail_from, "alice@example.com")
        self.assertEqual(m.rcpts, ["bob@example.net"])
        self.assertEqual(m.ehlo, "gw.test")
        self.assertEqual(m.data, MSG.encode())

    def patches(self):
        text = self.router.request("GET", "/metrics").body.decode()
        for line in text.splitlines():
            if line.startswith('koukan_rest_requests_total{route="patch"}'):
                return int(float(line.split()[-1]))
        return 0

    def test_pipelined_rcpts_go_with_the_create(self):
        # swaks --pipeline sends MAIL, both RCPTs and DATA in one write: the
        # gateway creates the router transaction with both recipients (no
        # PATCH), and the replies are the ones RCPT by RCPT would give.
        before = self.patches()
        rc, out = self.swaks_msa("--tls", "--pipeline", to="p1@example.net,rcptperm@example.net,p2@example.net")
        self.assertEqual(rc, 0, out + self.gw.read_log() + self.router.read_log())
        self.assertIn("PIPELINING", out)
        self.assertIn("550 ", out)  # rcptperm: refused verbatim
        self.assertTrue(self.sink.wait_for(lambda s: len(s.delivered()) == 2, 30), self.router.read_log())
        self.assertEqual(sorted(r for m in self.sink.delivered() for r in m.rcpts),
                         ["p1@example.net", "p2@example.net"])
        for m in self.sink.delivered():
            self.assertEqual(m.data, MSG.encode())
        self.assertEqual(self.patches(), before)

    def test_submission_implicit_tls_465(self):
        rc, out = gw_harness.swaks("--server", "127.0.0.1", "--port", str(self.gw.smtps_port),
                                   "--tls-on-connect", "--from", "alice@example.com",
                                   "--to", "carol@example.net", "--auth", "PLAIN",
                                   "--auth-user", gw_harness.AUTH_USER,
                                   "--auth-password", gw_harness.AUTH_SECRET, "--data", SWAKS_DATA)
        self.assertEqual(rc, 0, out + self.gw.read_log())
        self.assertTrue(self.sink.wait_for(lambda s: len(s.delivered()) == 1, 30))
        self.assertEqual(self.sink.delivered()[0].data, MSG.encode())

    def test_auth_needs_tls_and_right_secret(self):
        rc, out = self.swaks_msa()  # no TLS: AUTH not offered
        self.assertNotEqual(rc, 0)
        rc, out = gw_harness.swaks("--server", "127.0.0.1", "--port", str(self.gw.msa_port),
                                   "--tls", "--from", "a@example.com", "--to", "b@example.net",
                                   "--auth", "PLAIN", "--auth-user", gw_harness.AUTH_USER,
                                   "--auth-password", "wrong")
        self.assertNotEqual(rc, 0)
        self.assertIn("535 5.7.8", out)

    def test_ingress_to_rest_receiver(self):
        with smtplib.SMTP("127.0.0.1", self.gw.mx_port, timeout=30) as s:
            s.ehlo("mx.sender.example")
            refused = s.sendmail("alice@sender.example", ["user@example.com"], MSG.encode())
            self.assertEqual(refused, {})
        self.assertTrue(self.mailbox.wait_for(lambda r: len(r.delivered()) == 1, 30),
                        self.router.read_log())
        got = self.mailbox.delivered()[0]
        self.assertEqual(bytes(got.body), MSG.encode())
        self.assertEqual(got.create["mail_from"]["m"], "alice@sender.example")
        # smtplib sends SIZE: it reaches the router as an esmtp param.
        self.assertEqual(got.create["mail_from"]["e"], [{"k": "SIZE", "p": str(len(MSG))}])

    def test_multi_recipient_msa_one_perm_one_ok(self):
        with smtplib.SMTP("127.0.0.1", self.gw.msa_port, timeout=60) as s:
            s.starttls(context=unverified())
            s.login(gw_harness.AUTH_USER, gw_harness.AUTH_SECRET)
            self.assertEqual(s.mail("alice@example.com")[0], 250)
            code, msg = s.rcpt("rcptperm@example.net")
            self.assertEqual(code, 550, msg)  # RCPT perm: verbatim
            self.assertEqual(s.rcpt("good@example.net")[0], 250)
            code, msg = s.data(MSG.encode())
            self.assertEqual(code, 250, msg)
            self.assertIn(b"Exploder same response", msg)
        self.assertTrue(self.sink.wait_for(lambda k: len(k.delivered()) == 1, 30))
        self.assertEqual(self.sink.delivered()[0].rcpts, ["good@example.net"])

    def test_multi_recipient_msa_mixed_data_is_stored_and_forwarded(self):
        with smtplib.SMTP("127.0.0.1", self.gw.msa_port, timeout=60) as s:
            s.starttls(context=unverified())
            s.login(gw_harness.AUTH_USER, gw_harness.AUTH_SECRET)
            s.mail("alice@example.com")
            self.assertEqual(s.rcpt("good@example.net")[0], 250)
            self.assertEqual(s.rcpt("dataperm@example.net")[0], 250)
            code, msg = s.data(MSG.encode())
            self.assertEqual((code, msg), (250, b"DATA ok (Exploder store&forward)"))
        # The perm failure is final: a DSN to alice reaches the mailbox.
        self.assertTrue(self.mailbox.wait_for(lambda r: len(r.delivered()) == 1, 30),
                        self.router.read_log())
        dsn = self.mailbox.delivered()[0]
        self.assertEqual(dsn.create["rcpt_to"], [{"m": "alice@example.com"}])
        self.assertIn(b"dataperm@example.net", bytes(dsn.body))

    def test_multi_recipient_ingress(self):
        self.mailbox.responses = {"perm@example.com": [(250, 550, None)]}
        with smtplib.SMTP("127.0.0.1", self.gw.mx_port, timeout=60) as s:
            s.ehlo("mx.sender.example")
            s.mail("alice@sender.example")
            code, msg = s.rcpt("perm@example.com")
            self.assertEqual(code, 550, msg)
            self.assertEqual(s.rcpt("ok@example.com")[0], 250)
            code, msg = s.data(MSG.encode())
            self.assertEqual(code, 250, msg)
        self.assertTrue(self.mailbox.wait_for(lambda r: len(r.delivered()) == 1, 30))

    def test_bdat_chunking_to_sink(self):
        with smtplib.SMTP("127.0.0.1", self.gw.msa_port, timeout=60) as s:
            s.starttls(context=unverified())
            s.login(gw_harness.AUTH_USER, gw_harness.AUTH_SECRET)
            self.assertTrue(s.has_extn("chunking"))
            s.mail("alice@example.com")
            s.rcpt("bdat@example.net")
            body = MSG.encode()
            s.send(b"BDAT %d\r\n" % 10 + body[:10])
            self.assertEqual(s.getreply()[0], 250)
            s.send(b"BDAT %d LAST\r\n" % (len(body) - 10) + body[10:])
            code, msg = s.getreply()
            self.assertEqual(code, 250, msg)
        self.assertTrue(self.sink.wait_for(lambda k: len(k.delivered()) == 1, 30))
        self.assertEqual(self.sink.delivered()[0].data, MSG.encode())


class GatewayFailureTest(unittest.TestCase):
    def setUp(self):
        self.sink = SmtpSink().start()
        self.addCleanup(self.sink.stop)
        self.mailbox = Receiver().start()
        self.addCleanup(self.mailbox.stop)

    def test_router_down_gives_4xx_and_recovers(self):
        router, gw = gw_harness.start_stack(self, self.sink, self.mailbox)
        router.stop()
        with smtplib.SMTP("127.0.0.1", gw.mx_port, timeout=30) as s:
            s.ehlo("mx.sender.example")
            code, msg = s.mail("alice@sender.example")
            self.assertTrue(400 <= code < 500, (code, msg))
        self.assertIsNone(gw.proc.poll(), "gateway stays up")
        router.start()
        with smtplib.SMTP("127.0.0.1", gw.mx_port, timeout=30) as s:
            s.ehlo("mx.sender.example")
            self.assertEqual(s.sendmail("alice@sender.example", ["u@example.com"], MSG.encode()),
                             {})
        self.assertTrue(self.mailbox.wait_for(lambda r: len(r.delivered()) == 1, 30))

    def test_destination_down_retries_then_dsn(self):
        self.sink.stop()  # nothing listens on its port any more
        router, gw = gw_harness.start_stack(self, self.sink, self.mailbox, max_attempts=2)
        with smtplib.SMTP("127.0.0.1", gw.msa_port, timeout=60) as s:
            s.starttls(context=unverified())
            s.login(gw_harness.AUTH_USER, gw_harness.AUTH_SECRET)
            s.mail("alice@example.com")
            code, _ = s.rcpt("bob@example.net")
            self.assertEqual(code, 250)  # msa: store&forward
            code, msg = s.data(MSG.encode())
            self.assertEqual(code, 250, msg)
        self.assertTrue(self.mailbox.wait_for(lambda r: len(r.delivered()) == 1, 60),
                        router.read_log())
        dsn = bytes(self.mailbox.delivered()[0].body).decode()
        self.assertIn("Action: failed", dsn)
        self.assertRegex(dsn, r"Final-Recipient: rfc822; ?bob@example.net")
        self.assertIn("attempt 2", router.read_log())


if __name__ == "__main__":
    unittest.main()
