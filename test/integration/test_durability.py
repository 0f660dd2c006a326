"""Crash safety (issue acceptance 4): kill -9 the router after a create and
during a chunked body upload; after restart the transaction, its finalized
blobs and the uploaded prefix are intact, and the upload resumes with
Content-Range."""
import json
import socket
import time
import unittest

from harness import Router, path_of, request

MiB = 1024 * 1024


def pattern(n, seed=0):
    block = bytes((i * 7 + seed) % 251 for i in range(65536))
    out = bytearray()
    while len(out) < n:
        out += block
    return bytes(out[:n])


class DurabilityTest(unittest.TestCase):
    def setUp(self):
        self.r = Router(chunk_size=256 * 1024)
        self.r.start()

    def tearDown(self):
        self.r.stop()

    def restart(self):
        self.r.kill9()
        self.r.start()

    def test_create_survives_kill9(self):
        inline = self.r.create({"mail_from": {"m": "a@example.com"}, "rcpt_to": [{"m": "b@example.com"}],
                                "body": {"inline": "Subject: kept\r\n\r\nstill here\r\n"}})
        self.assertEqual(inline.status, 201, inline)
        pending = self.r.create({"mail_from": {"m": "a@example.com"}, "rcpt_to": [{"m": "c@example.com"}]})
        self.assertEqual(pending.status, 201)
        before = {p: self.r.request("GET", p) for p in (path_of(inline.header("location")),
                                                       path_of(pending.header("location")))}
        self.restart()
        for p, b in before.items():
            after = self.r.request("GET", p)
            self.assertEqual(after.status, 200, after)
            self.assertEqual(after.json(), b.json())
            self.assertEqual(after.header("etag"), b.header("etag"))
        # the finalized inline body can still be reused after the restart
        reuse = self.r.create({"mail_from": {"m": "a@example.com"}, "rcpt_to": [{"m": "d@example.com"}],
                               "body": {"reuse_uri": path_of(inline.header("location")) + "/body"}})
        self.assertEqual(reuse.status, 201, reuse)
        self.assertTrue(reuse.json()["body"]["blob_status"]["finalized"])

    def test_upload_resumes_after_kill9(self):
        total = 6 * MiB
        data = pattern(total)
        resp = self.r.create({"mail_from": {"m": "a@example.com"}, "rcpt_to": [{"m": "b@example.com"}]})
        path = path_of(resp.header("location"))
        uri = self.r.session_uri + path + "/body"
        # two complete ranged pieces
        for off in (0, MiB):
            r = request("PUT", uri, data[off:off + MiB],
                        {"content-range": "bytes %d-%d/*" % (off, off + MiB - 1)})
            self.assertEqual(r.status, 200, r)
        # a third piece of 3 MiB sent only partly, then the router is killed
        off, n = 2 * MiB, 3 * MiB
        s = socket.create_connection(("127.0.0.1", self.r.port))
        s.sendall(("PUT %s HTTP/1.1\r\nhost: x\r\ncontent-length: %d\r\n"
                   "content-range: bytes %d-%d/*\r\n\r\n" % (path + "/body", n, off, off + n - 1)).encode())
        sent = 0
        while sent < 2 * MiB:
            s.sendall(data[off + sent:off + sent + 64 * 1024])
            sent += 64 * 1024
        time.sleep(0.5)  # let the router commit what it has read
        self.r.kill9()
        s.close()
        self.r.start()
        # transaction intact, body not finalized
        g = self.r.request("GET", path)
        self.assertEqual(g.status, 200, g)
        self.assertNotIn("finalized", g.json()["body"]["blob_status"])
        # ask where to resume: a piece beyond the end gets 416 + what is stored
        probe = request("PUT", uri, b"x", {"content-range": "bytes %d-%d/*" % (total - 1, total - 1)})
        self.assertEqual(probe.status, 416, probe)
        cr = probe.header("content-range")
        self.assertTrue(cr.startswith("bytes 0-") and cr.endswith("/*"), cr)
        stored = int(cr[len("bytes 0-"):-2]) + 1
        # the two complete pieces survived, and whatever of the third was
        # committed is a whole multiple of the router's chunk size
        self.assertGreaterEqual(stored, 2 * MiB)
        self.assertLessEqual(stored, 4 * MiB)
        self.assertEqual((stored - 2 * MiB) % (256 * 1024), 0)
        # resume from there to the end in one ranged PUT with the total
        r = request("PUT", uri, data[stored:], {"content-range": "bytes %d-%d/%d" % (stored, total - 1, total)})
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.header("content-range"), "bytes 0-%d/%d" % (total - 1, total))
        g = self.r.request("GET", path).json()
        self.assertTrue(g["body"]["blob_status"]["finalized"])
        # the stored bytes are exactly the uploaded ones (checked in the DB)
        self.assertEqual(self.r.read_body_from_db(path.rsplit("/", 1)[1]), data)


if __name__ == "__main__":
    unittest.main()
