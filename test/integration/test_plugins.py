"""The plugin example config (issue 3 acceptance 6): config/router-plugins.yaml
loads the three example plugins; a transaction passes through the hello
filter (its filter_output reaches the receiver); a missing plugin file
stops start-up with a message naming it."""
import os
import subprocess
import time
import unittest

import harness
from receiver import Receiver

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
EXAMPLE = os.path.join(ROOT, "config", "router-plugins.yaml")
PLUGINS = os.path.join(os.path.abspath(harness.BUILD_DIR), "plugins")


def example_config(port, db, receiver_url, plugin_dir=PLUGINS):
    text = open(EXAMPLE).read()
    text = text.replace("build/plugins/", plugin_dir + "/")
    text = text.replace('addr: ["127.0.0.1", 8000]', 'addr: ["127.0.0.1", %d]' % port)
    text = text.replace("session_uri: http://127.0.0.1:8000", "session_uri: http://127.0.0.1:%d" % port)
    text = text.replace("sqlite:///tmp/koukan-router-plugins.db", "sqlite://" + db)
    text = text.replace("http://127.0.0.1:8002/senders/router/transactions", receiver_url)
    return text


class PluginExampleTest(unittest.TestCase):
    def test_example_config_delivers_through_hello_filter(self):
        recv = Receiver().start()
        self.addCleanup(recv.stop)
        workdir = harness.tempfile.mkdtemp(prefix="koukan-it-")
        port = harness.free_port()
        cfg = os.path.join(workdir, "router.yaml")
        with open(cfg, "w") as f:
            f.write(example_config(port, os.path.join(workdir, "r.db"), recv.endpoint()))
        log = open(os.path.join(workdir, "log"), "wb")
        proc = subprocess.Popen([harness.ROUTER_BIN, cfg], stdout=log, stderr=subprocess.STDOUT)
        self.addCleanup(proc.wait)
        self.addCleanup(proc.terminate)
        base = "http://127.0.0.1:%d" % port
        deadline = time.time() + 20
        while time.time() < deadline:
            try:
                if harness.request("GET", base + "/healthz", timeout=2).status == 200:
                    break
            except OSError:
                time.sleep(0.05)
        import json
        r = harness.request("POST", base + "/senders/submission/transactions", json.dumps({
            "mail_from": {"m": "alice@example.com"}, "rcpt_to": [{"m": "bob@example.com"}],
            "body": {"inline": "Subject: plugins\r\n\r\nhi\r\n"}}).encode(),
            {"content-type": "application/json"})
        self.assertEqual(r.status, 201, r)
        self.assertTrue(recv.wait_for(lambda rv: len(rv.delivered()) == 1, 20),
                        open(os.path.join(workdir, "log")).read())
        got = recv.delivered()[0]
        self.assertEqual(got.create.get("filter_output", {}).get("hello"),
                         {"greeting": "hi from a plugin"})
        self.assertEqual(bytes(got.body), b"Subject: plugins\r\n\r\nhi\r\n")

    def test_missing_plugin_file_fails_startup_naming_it(self):
        workdir = harness.tempfile.mkdtemp(prefix="koukan-it-")
        cfg = os.path.join(workdir, "router.yaml")
        text = example_config(harness.free_port(), os.path.join(workdir, "r.db"),
                              "http://127.0.0.1:1/senders/router/transactions")
        text = text.replace(PLUGINS + "/hello_policy.so", "/nonexistent/hello_policy.so")
        with open(cfg, "w") as f:
            f.write(text)
        p = subprocess.run([harness.ROUTER_BIN, cfg], capture_output=True, text=True, timeout=20)
        self.assertEqual(p.returncode, 2, p)
        self.assertIn("modules.recipient_router_policy.hello", p.stderr)
        self.assertIn("/nonexistent/hello_policy.so", p.stderr)
        p = subprocess.run([harness.ROUTER_BIN, "--check-config", cfg], capture_output=True,
                           text=True, timeout=20)
        self.assertEqual(p.returncode, 2, p)
        self.assertIn("/nonexistent/hello_policy.so", p.stderr)


if __name__ == "__main__":
    unittest.main()
