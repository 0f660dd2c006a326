"""REST API examples of spec/rest-api.md §7-§9 (router side), over real HTTP
against the running koukan-router binary (SQLite)."""
import json
import threading
import time
import unittest

from harness import Router, path_of, request

JSON = {"content-type": "application/json"}


class RestApiTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        # service_uri differs from session_uri (same port, other host name)
        # so the tests can tell which base each URI uses (rest-api.md §10).
        from harness import free_port
        port = free_port()
        cls.r = Router(port=port, service_uri="http://localhost:%d" % port)
        cls.r.start()
        cls.session = cls.r.session_uri
        cls.service = cls.r.service_uri

    @classmethod
    def tearDownClass(cls):
        cls.r.stop()

    def assertJsonError(self, resp, status):
        self.assertEqual(resp.status, status, resp)
        self.assertEqual(resp.header("content-type"), "application/json", resp)
        self.assertIn("error", resp.json())

    def create(self, tx, sender="submission"):
        return self.r.create(tx, sender)

    def tx_path(self, resp):
        loc = resp.header("location")
        self.assertTrue(loc.startswith(self.session + "/transactions/"), loc)
        return path_of(loc)

    # §7.1 create, body to be uploaded
    def test_create_then_upload(self):
        resp = self.create({"mail_from": {"m": "alice@example.com"},
                            "rcpt_to": [{"m": "bob@example.com"}]})
        self.assertEqual(resp.status, 201, resp)
        self.assertEqual(resp.header("content-type"), "application/json")
        path = self.tx_path(resp)
        self.assertEqual(resp.header("etag"), "1")
        body_uri = self.session + path + "/body"
        self.assertEqual(resp.body.decode(), json.dumps(
            {"mail_from": {}, "rcpt_to": [{}],
             "body": {"blob_status": {"uri": body_uri}},
             "retry": {}, "sender": {}}, separators=(",", ":")))
        # whole PUT finalizes
        data = b"Subject: hi\r\n\r\nhello\r\n"
        put = request("PUT", body_uri, data)
        self.assertEqual(put.status, 200, put)
        self.assertEqual(put.json(), {})
        self.assertEqual(put.header("content-range"), "bytes 0-%d/%d" % (len(data) - 1, len(data)))
        get = self.r.request("GET", path)
        self.assertEqual(get.status, 200)
        self.assertEqual(get.json()["body"], {"blob_status": {
            "uri": self.service + path + "/body", "finalized": True}})
        self.assertGreater(int(get.header("etag")), 1)

    # §7.1 inline body
    def test_create_inline(self):
        resp = self.create({"mail_from": {"m": "alice@example.com"},
                            "rcpt_to": [{"m": "bob@example.com"}],
                            "body": {"inline": "Subject: hi\r\n\r\nhello\r\n"}})
        self.assertEqual(resp.status, 201, resp)
        path = self.tx_path(resp)
        self.assertEqual(resp.json(), {
            "mail_from": {}, "rcpt_to": [{}],
            "body": {"blob_status": {"uri": self.service + path + "/body", "finalized": True}},
            "retry": {}, "sender": {}})

    # §7.1 message builder with one uploaded blob and one inline part
    def test_create_message_builder(self):
        resp = self.create({
            "mail_from": {"m": "alice@example.com"}, "rcpt_to": [{"m": "bob@example.com"}],
            "body": {"message_builder": {
                "headers": [["subject", "hello"]],
                "text_body": [
                    {"content_type": "text/html", "content": {"create_id": "my_html"}},
                    {"content_type": "text/plain", "content": {"inline": "hello"}}]}}})
        self.assertEqual(resp.status, 201, resp)
        path = self.tx_path(resp)
        bs = resp.json()["body"]["message_builder"]["blob_status"]
        self.assertEqual(bs, {
            "my_html": {"uri": self.session + path + "/blob/my_html"},
            "inline1": {"uri": self.service + path + "/blob/inline1", "finalized": True}})
        self.assertNotIn("blob_status", resp.json()["body"])
        put = request("PUT", bs["my_html"]["uri"], b"<b>hi</b>")
        self.assertEqual(put.status, 200, put)
        self.assertEqual(put.header("content-range"), "bytes 0-8/9")
        get = self.r.request("GET", path).json()
        self.assertEqual(get["body"]["message_builder"]["blob_status"]["my_html"],
                         {"uri": self.service + path + "/blob/my_html", "finalized": True})
        # unknown blob
        self.assertJsonError(request("PUT", self.session + path + "/blob/nope", b"x"), 404)
        # body PUT on a message-builder transaction
        self.assertJsonError(request("PUT", self.session + path + "/body", b"x"), 409)
        # unknown transaction
        self.assertJsonError(request("PUT", self.session + "/transactions/doesnotexist/body", b"x"), 404)
        self.assertJsonError(request("PUT", self.session + "/transactions/doesnotexist/blob/b", b"x"), 404)
        # reuse the uploaded blob in a new message-builder transaction
        resp2 = self.create({
            "mail_from": {"m": "alice@example.com"}, "rcpt_to": [{"m": "bob@example.com"}],
            "body": {"message_builder": {"text_body": [
                {"content_type": "text/html",
                 "content": {"reuse_uri": path + "/blob/my_html"}}]}}})
        self.assertEqual(resp2.status, 201, resp2)
        p2 = self.tx_path(resp2)
        self.assertEqual(resp2.json()["body"]["message_builder"]["blob_status"],
                         {"my_html": {"uri": self.service + p2 + "/blob/my_html", "finalized": True}})

    # §7.1 reuse an earlier body, absolute URL and bare path
    def test_reuse_body(self):
        first = self.create({"mail_from": {"m": "a@example.com"}, "rcpt_to": [{"m": "b@example.com"}],
                             "body": {"inline": "Subject: x\r\n\r\nbody\r\n"}})
        p1 = self.tx_path(first)
        for uri in (self.service + p1 + "/body", p1 + "/body"):
            resp = self.create({"mail_from": {"m": "a@example.com"}, "rcpt_to": [{"m": "c@example.com"}],
                                "body": {"reuse_uri": uri}})
            self.assertEqual(resp.status, 201, resp)
            p2 = self.tx_path(resp)
            self.assertNotEqual(p1, p2)
            self.assertEqual(resp.json()["body"], {"blob_status": {
                "uri": self.service + p2 + "/body", "finalized": True}})
        # not finalized source -> 4xx
        pending = self.create({"mail_from": {"m": "a@example.com"}, "rcpt_to": [{"m": "b@example.com"}]})
        resp = self.create({"mail_from": {"m": "a@example.com"}, "rcpt_to": [{"m": "c@example.com"}],
                            "body": {"reuse_uri": self.tx_path(pending) + "/body"}})
        self.assertJsonError(resp, 409)
        resp = self.create({"mail_from": {"m": "a@example.com"}, "rcpt_to": [{"m": "c@example.com"}],
                            "body": {"reuse_uri": "/transactions/doesnotexist/body"}})
        self.assertJsonError(resp, 404)
        resp = self.create({"mail_from": {"m": "a@example.com"}, "rcpt_to": [{"m": "c@example.com"}],
                            "body": {"reuse_uri": "/not/a/blob"}})
        self.assertJsonError(resp, 400)

    # §7.2 / §6.2 GET, long-poll, 304
    def test_get_and_long_poll(self):
        resp = self.create({"mail_from": {"m": "a@example.com"}, "rcpt_to": [{"m": "b@example.com"}]})
        path = self.tx_path(resp)
        etag = resp.header("etag")
        # point read
        g = self.r.request("GET", path)
        self.assertEqual((g.status, g.header("etag")), (200, etag))
        # different etag: immediate 200
        g = self.r.request("GET", path, headers={"if-none-match": "999"})
        self.assertEqual(g.status, 200)
        # same etag, short budget: 304 echoing the client's etag, no body
        t0 = time.time()
        g = self.r.request("GET", path, headers={"if-none-match": '"%s"' % etag, "request-timeout": "1"})
        self.assertEqual(g.status, 304, g)
        self.assertEqual(g.header("etag"), '"%s"' % etag)
        self.assertEqual(g.body, b"")
        self.assertGreaterEqual(time.time() - t0, 0.9)
        # bad request-timeout
        self.assertJsonError(self.r.request("GET", path, headers={
            "if-none-match": etag, "request-timeout": "soon"}), 400)
        # a waiter wakes when the transaction changes
        out = {}

        def waiter():
            out["r"] = self.r.request("GET", path, headers={
                "if-none-match": etag, "request-timeout": "10"})
            out["t"] = time.time()
        th = threading.Thread(target=waiter)
        th.start()
        time.sleep(0.5)
        t_put = time.time()
        put = request("PUT", self.session + path + "/body", b"Subject: x\r\n\r\ny\r\n")
        self.assertEqual(put.status, 200)
        th.join(15)
        self.assertEqual(out["r"].status, 200, out["r"])
        self.assertNotEqual(out["r"].header("etag"), etag)
        self.assertLess(out["t"] - t_put, 3)
        self.assertTrue(out["r"].json()["body"]["blob_status"]["finalized"])
        # unknown id
        self.assertJsonError(self.r.request("GET", "/transactions/nosuchtx"), 404)

    # §7.3 / §9.2 incremental dialect PATCH
    def test_incremental_patch(self):
        resp = self.create({"remote_host": ["203.0.113.5", 41234], "local_host": ["192.0.2.10", 25],
                            "mail_from": {"m": "alice@example.org", "e": [{"k": "SIZE", "p": "2048"}]},
                            "smtp_meta": {"ehlo_host": "mx.example.org", "esmtp": True, "tls": False, "auth": False},
                            "sender": {"name": "ingress", "tag": "smtp-mx"}}, sender="ingress")
        self.assertEqual(resp.status, 201, resp)
        path = self.tx_path(resp)
        j = resp.json()
        self.assertEqual(j["remote_host"], ["203.0.113.5", 41234])
        self.assertEqual(j["local_host"], ["192.0.2.10", 25])
        self.assertEqual(j["mail_from"], {})
        self.assertNotIn("smtp_meta", j)
        self.assertNotIn("rcpt_to", j)
        self.assertEqual(j["body"], {"blob_status": {"uri": self.service + path + "/body"}})
        etag = resp.header("etag")
        p = self.r.request("PATCH", path, json.dumps({"rcpt_to": [{"m": "bob@example.com"}]}),
                           dict(JSON, **{"if-match": etag}))
        self.assertEqual(p.status, 200, p)
        self.assertEqual(p.json()["rcpt_to"], [{}])
        self.assertEqual(p.json()["remote_host"], ["203.0.113.5", 41234])
        e2 = p.header("etag")
        self.assertEqual(int(e2), int(etag) + 1)
        # stale If-Match -> 412 with current etag
        stale = self.r.request("PATCH", path, json.dumps({"rcpt_to": [{"m": "x@example.com"}], "rcpt_to_list_offset": 1}),
                               dict(JSON, **{"if-match": etag}))
        self.assertJsonError(stale, 412)
        self.assertEqual(stale.header("etag"), e2)
        # wrong offset -> 409
        bad = self.r.request("PATCH", path, json.dumps({"rcpt_to": [{"m": "x@example.com"}], "rcpt_to_list_offset": 5}),
                             dict(JSON, **{"if-match": e2}))
        self.assertJsonError(bad, 409)
        # second rcpt with offset
        p = self.r.request("PATCH", path, json.dumps({"rcpt_to": [{"m": "carol@example.com"}], "rcpt_to_list_offset": 1}),
                           dict(JSON, **{"if-match": e2}))
        self.assertEqual(p.status, 200, p)
        self.assertEqual(p.json()["rcpt_to"], [{}, {}])
        e3 = p.header("etag")
        # heartbeat: empty body, no content-type
        hb = self.r.request("PATCH", path, b"", {"if-match": e3})
        self.assertEqual(hb.status, 200, hb)
        self.assertEqual(int(hb.header("etag")), int(e3) + 1)
        e4 = hb.header("etag")
        # missing If-Match
        self.assertJsonError(self.r.request("PATCH", path, json.dumps({"rcpt_to": [{"m": "y@example.com"}],
                                                                        "rcpt_to_list_offset": 2}), JSON), 400)
        # non-JSON content type with a body
        self.assertJsonError(self.r.request("PATCH", path, b"rcpt", {"if-match": e4, "content-type": "text/plain"}), 400)
        # invalid update JSON
        self.assertJsonError(self.r.request("PATCH", path, b"{not json", dict(JSON, **{"if-match": e4})), 400)
        self.assertJsonError(self.r.request("PATCH", path, json.dumps({"mail_response": {"code": 250}}),
                                            dict(JSON, **{"if-match": e4})), 400)
        # first body PUT creates the body: a range above 0 first is 404
        body_uri = self.session + path + "/body"
        self.assertJsonError(request("PUT", body_uri, b"abc", {"content-range": "bytes 5-7/*"}), 404)
        put = request("PUT", body_uri, b"0123456789", {"content-range": "bytes 0-9/*"})
        self.assertEqual(put.status, 200, put)
        self.assertEqual(put.header("content-range"), "bytes 0-9/*")
        put = request("PUT", body_uri, b"abcdefghij", {"content-range": "bytes 10-19/20"})
        self.assertEqual(put.header("content-range"), "bytes 0-19/20")
        g = self.r.request("GET", path).json()
        self.assertEqual(g["body"], {"blob_status": {"uri": self.service + path + "/body", "finalized": True}})
        self.assertEqual(g["rcpt_to"], [{}, {}])

    def test_non_incremental_patch_rejected(self):
        resp = self.create({"mail_from": {"m": "a@example.com"}, "rcpt_to": [{"m": "b@example.com"}]})
        path = self.tx_path(resp)
        p = self.r.request("PATCH", path, json.dumps({"rcpt_to": [{"m": "c@example.com"}], "rcpt_to_list_offset": 1}),
                           dict(JSON, **{"if-match": resp.header("etag")}))
        self.assertJsonError(p, 400)
        # heartbeat is allowed
        hb = self.r.request("PATCH", path, b"", {"if-match": resp.header("etag")})
        self.assertEqual(hb.status, 200, hb)

    # §8 blob upload protocol
    def test_body_ranges(self):
        resp = self.create({"mail_from": {"m": "a@example.com"}, "rcpt_to": [{"m": "b@example.com"}]})
        path = self.tx_path(resp)
        uri = self.session + path + "/body"
        r = request("PUT", uri, b"0123456789", {"content-range": "bytes 0-9/*"})
        self.assertEqual((r.status, r.header("content-range")), (200, "bytes 0-9/*"))
        self.assertIsNone(r.header("x-koukan-tx-etag"))  # input not complete
        # beyond the stored length -> 416 reporting what is stored
        r = request("PUT", uri, b"xx", {"content-range": "bytes 20-21/*"})
        self.assertEqual((r.status, r.header("content-range")), (416, "bytes 0-9/*"))
        # overlapping resend is idempotent
        r = request("PUT", uri, b"56789ABCDE", {"content-range": "bytes 5-14/*"})
        self.assertEqual((r.status, r.header("content-range")), (200, "bytes 0-14/*"))
        # bad ranges
        for bad in ("bytes */20", "bits 0-1/2", "bytes 3-1/*", "bytes x-y/*"):
            self.assertJsonError(request("PUT", uri, b"ab", {"content-range": bad}), 400)
        # Content-Range length disagrees with the body length
        self.assertJsonError(request("PUT", uri, b"abc", {"content-range": "bytes 15-20/*"}), 400)
        # finalize with a body is invalid; finalize with garbage is invalid
        self.assertJsonError(request("PUT", uri, b"abc", {"x-finalize-blob-length": "18"}), 400)
        self.assertJsonError(request("PUT", uri, b"", {"x-finalize-blob-length": "many"}), 400)
        # finalize at a length we do not have yet -> ok (declares total) then complete
        r = request("PUT", uri, b"FGH", {"content-range": "bytes 15-17/18"})
        self.assertEqual((r.status, r.header("content-range")), (200, "bytes 0-17/18"))
        # ours: the PUT that completed the input names the version it made
        # (the pieces before it did not change the version)
        self.assertIsNotNone(r.header("x-koukan-tx-etag"))
        self.assertEqual(r.header("x-koukan-tx-etag"), self.r.request("GET", path).header("etag"))
        # a different total afterwards -> 416
        r = request("PUT", uri, b"", {"x-finalize-blob-length": "30"})
        self.assertEqual(r.status, 416, r)
        self.assertEqual(r.header("content-range"), "bytes 0-17/18")
        g = self.r.request("GET", path).json()
        self.assertTrue(g["body"]["blob_status"]["finalized"])

    def test_finalize_shape_and_zero_length(self):
        resp = self.create({"mail_from": {"m": "a@example.com"}, "rcpt_to": [{"m": "b@example.com"}]})
        uri = self.session + self.tx_path(resp) + "/body"
        r = request("PUT", uri, b"abc", {"content-range": "bytes 0-2/*"})
        self.assertEqual(r.status, 200)
        r = request("PUT", uri, b"", {"x-finalize-blob-length": "3"})
        self.assertEqual((r.status, r.header("content-range")), (200, "bytes 0-2/3"))
        # zero-length message (the original answered 500)
        resp = self.create({"mail_from": {"m": "a@example.com"}, "rcpt_to": [{"m": "b@example.com"}]})
        path = self.tx_path(resp)
        r = request("PUT", self.session + path + "/body", b"", {"x-finalize-blob-length": "0"})
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.header("content-range"), "bytes */0")
        self.assertTrue(self.r.request("GET", path).json()["body"]["blob_status"]["finalized"])

    def test_chunked_transfer_encoding_put(self):
        resp = self.create({"mail_from": {"m": "a@example.com"}, "rcpt_to": [{"m": "b@example.com"}]})
        path = self.tx_path(resp)
        import http.client
        conn = http.client.HTTPConnection("127.0.0.1", self.r.port, timeout=10)
        conn.request("PUT", path + "/body", body=iter([b"hello ", b"chunked ", b"world"]),
                     encode_chunked=True)
        r = conn.getresponse()
        r.read()
        self.assertEqual(r.status, 200)
        self.assertEqual(r.getheader("content-range"), "bytes 0-18/19")
        conn.close()

    # §7.5 cancel
    def test_cancel(self):
        resp = self.create({"mail_from": {"m": "a@example.com"}, "rcpt_to": [{"m": "b@example.com"}]})
        path = self.tx_path(resp)
        c = self.r.request("POST", path + "/cancel")
        self.assertEqual(c.status, 200, c)
        g = self.r.request("GET", path).json()
        self.assertEqual(g["cancelled"], True)
        self.assertEqual(g["final_attempt_reason"], "downstream cancelled")
        # again: no change
        etag = self.r.request("GET", path).header("etag")
        self.assertEqual(self.r.request("POST", path + "/cancel").status, 200)
        self.assertEqual(self.r.request("GET", path).header("etag"), etag)
        self.assertJsonError(self.r.request("POST", "/transactions/nosuchtx/cancel"), 404)

    # §11 bad input: 4xx with a JSON body, the router stays up
    def test_bad_input(self):
        ok_tx = {"mail_from": {"m": "a@example.com"}, "rcpt_to": [{"m": "b@example.com"}]}
        cases = [
            (b"{not json", 400),
            (b"[1,2]", 400),
            (json.dumps(dict(ok_tx, foo=1)).encode(), 400),
            (json.dumps(dict(ok_tx, mail_from=None)).encode(), 400),
            (json.dumps(dict(ok_tx, rcpt_to=[])).encode(), 400),
            (json.dumps(dict(ok_tx, mail_from={"e": []})).encode(), 400),
            (json.dumps(dict(ok_tx, mail_from="a@example.com")).encode(), 400),
            (json.dumps(dict(ok_tx, remote_host={"host": "x"})).encode(), 400),
            (json.dumps(dict(ok_tx, retry={})).encode(), 400),
            (json.dumps(dict(ok_tx, sender={"name": "x", "evil": 1})).encode(), 400),
            (json.dumps(dict(ok_tx, rcpt_to=[{"m": "b@example.com"}, {"m": "c@example.com"}])).encode(), 400),
            (json.dumps({"rcpt_to": [{"m": "b@example.com"}]}).encode(), 400),
            (json.dumps(dict(ok_tx, sender={"tag": "no-such-tag"})).encode(), 400),
        ]
        for body, status in cases:
            r = self.r.request("POST", "/senders/submission/transactions", body, JSON)
            self.assertJsonError(r, status)
        self.assertJsonError(self.r.request("POST", "/senders/nosuchsender/transactions",
                                            json.dumps(ok_tx), JSON), 404)
        self.assertJsonError(self.r.request("GET", "/no/such/route"), 404)
        self.assertJsonError(self.r.request("DELETE", "/transactions/x"), 405)
        self.assertJsonError(request("PUT", self.session + "/transactions/nosuchtx/body", b"x"), 404)
        # oversize JSON body
        big = json.dumps(dict(ok_tx, body={"inline": "x" * (17 * 1024 * 1024)})).encode()
        try:
            r = self.r.request("POST", "/senders/submission/transactions", big, JSON)
            self.assertEqual(r.status, 413, r)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server may close before reading it all
        self.assertEqual(self.r.request("GET", "/healthz").status, 200)
        self.assertTrue(self.r.alive())


if __name__ == "__main__":
    unittest.main()
