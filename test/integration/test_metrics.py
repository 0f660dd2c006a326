"""GET /metrics: Prometheus text format with counters that follow traffic."""
import re
import unittest

from harness import Router, path_of, request


def scrape(r):
    resp = r.request("GET", "/metrics")
    assert resp.status == 200, resp
    assert resp.header("content-type").startswith("text/plain"), resp
    values = {}
    for line in resp.body.decode().splitlines():
        if line.startswith("#") or not line:
            continue
        m = re.match(r"^([a-z_]+(?:\{[^}]*\})?) (-?\d+)$", line)
        assert m, line
        values[m.group(1)] = int(m.group(2))
    return values


class MetricsTest(unittest.TestCase):
    def setUp(self):
        self.r = Router().start()

    def tearDown(self):
        self.r.stop()

    def test_counters_follow_requests(self):
        before = scrape(self.r)
        c = self.r.create({"mail_from": {"m": "a@example.com"}, "rcpt_to": [{"m": "b@example.com"}]})
        self.assertEqual(c.status, 201)
        path = path_of(c.header("location"))
        put = request("PUT", self.r.session_uri + path + "/body", b"x" * 1000)
        self.assertEqual(put.status, 200)
        self.assertEqual(self.r.request("GET", "/transactions/nope").status, 404)
        after = scrape(self.r)
        d = lambda k: after.get(k, 0) - before.get(k, 0)
        self.assertEqual(d("koukan_transactions_created_total"), 1)
        self.assertEqual(d('koukan_rest_requests_total{route="create"}'), 1)
        self.assertEqual(d('koukan_rest_requests_total{route="put"}'), 1)
        self.assertEqual(d('koukan_rest_requests_total{route="get"}'), 1)
        self.assertEqual(d("koukan_blob_bytes_appended_total"), 1000)
        self.assertGreaterEqual(d('koukan_rest_responses_total{class="4xx"}'), 1)
        self.assertEqual(after["koukan_long_polls_waiting"], 0)


if __name__ == "__main__":
    unittest.main()
