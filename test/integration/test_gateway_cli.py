"""koukan-gateway command line: --check-config (config, certificates and
auth secrets, without binding the ports) and start-up failures."""
import json
import os
import subprocess
import tempfile
import unittest

import gw_harness
import harness


def write_config(workdir, **kw):
    cert, key, secrets = gw_harness.make_tls(workdir)
    values = dict(rest_port=harness.free_port(), mx_port=harness.free_port(),
                  msa_port=harness.free_port(), smtps_port=harness.free_port(), cert=cert,
                  key=key, secrets=secrets, router_url="http://127.0.0.1:1", bdat="true",
                  log_level="info")
    values.update(kw)
    path = os.path.join(workdir, "gateway.yaml")
    with open(path, "w") as f:
        f.write(gw_harness.GATEWAY_YAML.format(**values))
    return path, values


def run(*args):
    return subprocess.run([gw_harness.GATEWAY_BIN] + list(args), capture_output=True, text=True,
                          timeout=20)


class GatewayCliTest(unittest.TestCase):
    def setUp(self):
        self.workdir = tempfile.mkdtemp(prefix="koukan-gwcli-")

    def test_check_config_ok_even_while_the_ports_are_taken(self):
        path, v = write_config(self.workdir)
        import socket
        s = socket.socket()
        s.bind(("127.0.0.1", v["msa_port"]))
        s.listen(1)
        try:
            p = run("--check-config", path)
            self.assertEqual(p.returncode, 0, p.stderr)
            self.assertIn(": ok", p.stdout)
            # Serving needs the port: a clear start-up error naming it.
            p = run(path)
            self.assertNotEqual(p.returncode, 0)
            self.assertIn("127.0.0.1:%d" % v["msa_port"], p.stderr + p.stdout)
        finally:
            s.close()

    def test_missing_certificate_and_bad_secrets_are_reported(self):
        path, v = write_config(self.workdir, cert="/nonexistent/cert.pem")
        p = run("--check-config", path)
        self.assertEqual(p.returncode, 2)
        self.assertIn("/nonexistent/cert.pem", p.stderr)
        with open(v["secrets"], "w") as f:
            json.dump([["app", "00"]], f)  # the list form the original's comment described
        path, v2 = write_config(self.workdir)
        with open(v2["secrets"], "w") as f:
            json.dump([["app", "00"]], f)
        p = run("--check-config", path)
        self.assertEqual(p.returncode, 2)
        self.assertIn(v2["secrets"], p.stderr)

    def test_invalid_yaml_and_unknown_keys(self):
        path = os.path.join(self.workdir, "bad.yaml")
        with open(path, "w") as f:
            f.write("rest_listener:\n  addr: [\"127.0.0.1\", 1]\n  session_uri: http://x\n  bogus: 1\n")
        p = run("--check-config", path)
        self.assertEqual(p.returncode, 2)
        self.assertIn("rest_listener.bogus", p.stderr)
        p = run()
        self.assertEqual(p.returncode, 2)
        self.assertIn("usage", p.stderr)


if __name__ == "__main__":
    unittest.main()
