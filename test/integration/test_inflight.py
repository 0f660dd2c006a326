"""Issue 3 acceptance 5: 1000 transactions in flight at once against a slow
receiver, with bounded threads and memory. Prints the router's peak RSS and
thread count (figures for a release build are in bench/README.md)."""
import json
import os
import threading
import time
import unittest

import harness
from receiver import Receiver
from test_delivery import DELIVERY_YAML

N = int(os.environ.get("KOUKAN_INFLIGHT_N", "1000"))


def proc_status(pid):
    out = {}
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            k, _, v = line.partition(":")
            out[k] = v.strip()
    return out


class InflightTest(unittest.TestCase):
    def test_1000_in_flight_against_a_slow_receiver(self):
        recv = Receiver(data_delay=8.0).start()
        self.addCleanup(recv.stop)
        dsn = Receiver().start()
        self.addCleanup(dsn.stop)
        router = harness.Router(yaml=DELIVERY_YAML, max_inflight=N + 100,
                                receiver_url=recv.endpoint(), dsn_url=dsn.endpoint(),
                                archive_url=dsn.endpoint(),
                                max_attempts=3, min_attempt_time=60, rcpt_timeout=60,
                                log_level="warning")
        router.start()
        self.addCleanup(router.stop)
        pid = router.proc.pid
        body = "Subject: slow\r\n\r\n" + "x" * 2000 + "\r\n"
        created = []
        lock = threading.Lock()

        def client(k):
            import http.client
            conn = http.client.HTTPConnection("127.0.0.1", router.port, timeout=60)
            for i in range(k, N, 8):
                tx = {"mail_from": {"m": "a@example.com"}, "rcpt_to": [{"m": "r%d@example.com" % i}],
                      "body": {"inline": body}}
                conn.request("POST", "/senders/submission/transactions", json.dumps(tx),
                             {"content-type": "application/json"})
                r = conn.getresponse()
                r.read()
                with lock:
                    created.append(r.status)
            conn.close()

        threads = [threading.Thread(target=client, args=(k,)) for k in range(8)]
        t0 = time.time()
        for t in threads:
            t.start()
        peak_threads = 0
        peak_open = 0
        while any(t.is_alive() for t in threads) or len(recv.delivered()) < N:
            st = proc_status(pid)
            peak_threads = max(peak_threads, int(st["Threads"]))
            with recv.lock:
                open_now = sum(1 for t in recv.txs.values()
                               if t.finalized and t.data_response is None)
            peak_open = max(peak_open, open_now)
            if time.time() - t0 > 240:
                break
            time.sleep(0.2)
        elapsed = time.time() - t0
        st = proc_status(pid)
        rss_kb = int(st["VmHWM"].split()[0])
        print("\n%d transactions: %d delivered in %.1fs; peak %d waiting on the receiver at "
              "once; router peak RSS %.1f MB, peak threads %d" % (
                  N, len(recv.delivered()), elapsed, peak_open, rss_kb / 1024.0, peak_threads))
        self.assertEqual(created, [201] * N)
        self.assertEqual(len(recv.delivered()), N, router.read_log())
        # Really concurrent: most were waiting for their (8 s late) data
        # response at the same time.
        self.assertGreater(peak_open, N // 2)
        # Bounded: threads do not grow with the number of transactions
        # (I/O thread + blocking pool + sanitizer/runtime threads).
        self.assertLess(peak_threads, 32)
        # Generous bound that also holds under ASan.
        self.assertLess(rss_kb, 768 * 1024)


if __name__ == "__main__":
    unittest.main()
