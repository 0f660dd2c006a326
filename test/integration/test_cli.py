"""koukan-router command line: config errors are reported with their YAML
paths and exit 2 before any port is bound; --check-config, --print-config,
--init-db; SIGTERM drains and exits 0."""
import os
import socket
import subprocess
import tempfile
import unittest

from harness import ROUTER_BIN, Router, free_port


def run(*args):
    return subprocess.run([ROUTER_BIN, *args], capture_output=True, text=True, timeout=30)


class CliTest(unittest.TestCase):
    def test_every_config_error_named_and_no_port_bound(self):
        port = free_port()
        d = tempfile.mkdtemp(prefix="koukan-cli-")
        bad = os.path.join(d, "bad.yaml")
        with open(bad, "w") as f:
            f.write("""
rest_listener:
  addr: ["127.0.0.1", %d]
  session_uri: http://127.0.0.1:%d
  colour: blue
storage:
  url: sqlite://%s/r.db
  gc_ttl: soon
sender:
- name: s
  output_chain: nowhere
endpoint:
- name: e
  chain:
  - filter: no_such_filter
""" % (port, port, d))
        r = run(bad)
        self.assertEqual(r.returncode, 2, r)
        for needle in ("rest_listener.colour", "storage.gc_ttl", "sender[0].output_chain",
                       "endpoint[0].chain[0].filter", "no_such_filter"):
            self.assertIn(needle, r.stderr)
        # nothing was bound: the port is still free
        s = socket.socket()
        s.bind(("127.0.0.1", port))
        s.close()
        self.assertFalse(os.path.exists(os.path.join(d, "r.db")))
        r = run("--check-config", bad)
        self.assertEqual(r.returncode, 2)

    def test_check_print_init(self):
        rt = Router()
        r = run("--check-config", rt.config_path)
        self.assertEqual(r.returncode, 0, r.stderr)
        r = run("--print-config", rt.config_path)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("session_refresh_interval", r.stdout)  # defaults filled in
        printed = os.path.join(rt.workdir, "printed.yaml")
        with open(printed, "w") as f:
            f.write(r.stdout)
        self.assertEqual(run("--check-config", printed).returncode, 0)
        r = run("--init-db", rt.config_path)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertTrue(os.path.exists(rt.storage_url[len("sqlite://"):]))
        self.assertEqual(run("--bogus", rt.config_path).returncode, 2)
        self.assertEqual(run().returncode, 2)

    def test_sigterm_drains_and_exits_zero(self):
        rt = Router().start()
        self.assertEqual(rt.request("GET", "/healthz").status, 200)
        self.assertEqual(rt.stop(), 0)
        self.assertIn("stopped", rt.read_log())


if __name__ == "__main__":
    unittest.main()
