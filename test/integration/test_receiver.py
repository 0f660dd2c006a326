"""Self-test of the test receiver (receiver.py): it must speak the receiver
protocol of spec/rest-api.md §9.4 correctly before delivery tests rely on
it."""
import json
import unittest

from harness import request
from receiver import Receiver

JSON = {"content-type": "application/json"}


class ReceiverTest(unittest.TestCase):
    def setUp(self):
        self.r = Receiver(responses={"temp@example.com": [(250, 450, None)],
                                     "later@example.com": [(250, 250, None), (250, 250, 250)]}).start()

    def tearDown(self):
        self.r.stop()

    def create(self, rcpt):
        return request("POST", self.r.endpoint(), json.dumps({
            "remote_host": ["198.51.100.7", 25], "mail_from": {"m": "a@example.org"},
            "rcpt_to": [{"m": rcpt}], "sender": {"name": "router", "tag": "t"}}).encode(), JSON)

    def test_accepting_flow_ranged_upload(self):
        c = self.create("bob@example.com")
        self.assertEqual(c.status, 201)
        self.assertTrue(c.header("location").startswith(self.r.base + "/transactions/"))
        j = c.json()
        self.assertEqual(j["remote_host"], ["198.51.100.7", 25])
        self.assertEqual(j["rcpt_to"], [{}])
        self.assertEqual(j["mail_response"]["code"], 250)
        uri = j["body"]["blob_status"]["uri"]
        r1 = request("PUT", uri, b"Subject: x\r\n", {"content-range": "bytes 0-11/*"})
        self.assertEqual(r1.header("content-range"), "bytes 0-11/*")
        r2 = request("PUT", uri, b"\r\nhi\r\n", {"content-range": "bytes 12-17/18"})
        self.assertEqual(r2.header("content-range"), "bytes 0-17/18")
        g = request("GET", c.header("location"), headers={"if-none-match": c.header("etag")}).json()
        self.assertEqual(g["data_response"]["code"], 250)
        self.assertTrue(g["body"]["blob_status"]["finalized"])
        self.assertEqual(bytes(self.r.delivered()[0].body), b"Subject: x\r\n\r\nhi\r\n")

    def test_scripted_failures_and_sequence(self):
        c = self.create("temp@example.com")
        self.assertEqual(c.json()["rcpt_response"][0]["code"], 450)
        # first transaction to later@ gets no data response, the second 250
        for expect in (None, 250):
            c = self.create("later@example.com")
            put = request("PUT", c.json()["body"]["blob_status"]["uri"], b"x")
            self.assertEqual(put.status, 200)
            g = request("GET", c.header("location")).json()
            self.assertEqual(g.get("data_response", {}).get("code"), expect)

    def test_long_poll_304_and_heartbeat(self):
        c = self.create("bob@example.com")
        loc, etag = c.header("location"), c.header("etag")
        g = request("GET", loc, headers={"if-none-match": etag, "request-timeout": "1"})
        self.assertEqual((g.status, g.header("etag")), (304, etag))
        p = request("PATCH", loc, b"", {"if-match": etag})
        self.assertEqual(p.status, 200)
        self.assertEqual(int(p.header("etag")), int(etag) + 1)
        self.assertEqual(request("POST", loc + "/cancel").status, 200)


if __name__ == "__main__":
    unittest.main()
