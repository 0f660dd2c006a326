"""Two routers on one PostgreSQL (issue acceptance 5): a request for a
transaction leased by the other live replica is redirected (308) to it; after
the owner is killed, its session expires and the survivor serves and writes
the transaction itself."""
import json
import os
import time
import unittest
import uuid

from harness import PG_URL, Router, path_of, request, pg_create_db, pg_drop_db


@unittest.skipUnless(PG_URL and PG_URL != "skip", "needs KOUKAN_TEST_PG_URL")
class MultiReplicaTest(unittest.TestCase):
    def setUp(self):
        self.db = "koukan_it_" + uuid.uuid4().hex[:10]
        self.url = pg_create_db(self.db)
        extra = "  session_ttl: 3\n"
        self.a = Router(storage_url=self.url, refresh=1, extra_storage=extra).start()
        self.b = Router(storage_url=self.url, refresh=1, extra_storage=extra).start()

    def tearDown(self):
        self.a.stop()
        self.b.stop()
        pg_drop_db(self.db)

    def test_redirect_then_takeover(self):
        resp = self.a.create({"mail_from": {"m": "a@example.com"}, "rcpt_to": [{"m": "b@example.com"}]})
        self.assertEqual(resp.status, 201, resp)
        path = path_of(resp.header("location"))
        self.assertTrue(resp.header("location").startswith(self.a.session_uri))
        # GET, PATCH, PUT at the non-owner: 308 to the owner, same path
        for method, body, headers in (("GET", None, {}),
                                      ("PATCH", b"", {"if-match": resp.header("etag")}),
                                      ("PUT", b"hello", {})):
            url = self.b.session_uri + path + ("/body" if method == "PUT" else "")
            r = request(method, url, body, headers)
            self.assertEqual(r.status, 308, (method, r))
            self.assertEqual(r.header("location"), self.a.session_uri + path_of(url))
        # following the redirect works
        self.assertEqual(request("GET", self.a.session_uri + path).status, 200)
        # cancel is never redirected (would work from any replica) — checked on another tx
        # kill the owner; once its session expires the survivor takes over
        self.a.kill9()
        deadline = time.time() + 30
        while time.time() < deadline:
            r = request("GET", self.b.session_uri + path)
            if r.status == 200:
                break
            self.assertEqual(r.status, 308)
            time.sleep(0.5)
        self.assertEqual(r.status, 200, r)
        # writes go to the survivor now
        put = request("PUT", self.b.session_uri + path + "/body", b"Subject: x\r\n\r\ny\r\n")
        self.assertEqual(put.status, 200, put)
        g = request("GET", self.b.session_uri + path).json()
        self.assertTrue(g["body"]["blob_status"]["finalized"])

    def test_cancel_from_any_replica(self):
        resp = self.a.create({"mail_from": {"m": "a@example.com"}, "rcpt_to": [{"m": "b@example.com"}]})
        path = path_of(resp.header("location"))
        c = request("POST", self.b.session_uri + path + "/cancel")
        self.assertEqual(c.status, 200, c)
        g = request("GET", self.a.session_uri + path).json()
        self.assertEqual(g.get("final_attempt_reason"), "downstream cancelled")


if __name__ == "__main__":
    unittest.main()
