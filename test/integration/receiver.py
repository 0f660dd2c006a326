"""A REST receiver speaking Koukan's receiver protocol (spec/rest-api.md
§9.4), for the delivery tests: it accepts transactions from a router's
rest_output, answers with scripted SMTP-like responses, stores the delivered
bytes, and lets a test inspect everything.

Script: `responses` maps a recipient address to a list of (mail, rcpt, data)
code tuples consumed one per transaction (the last one repeats), e.g.
  {"bob@example.com": [(250, 450, None), (250, 250, 250)]}
None means "no response yet" (the router must wait / time out)."""
import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

RANGE_RE = re.compile(r"^bytes (\d+)-(\d+)/(\d+|\*)$")


class Tx:
    def __init__(self, rest_id, create_json):
        self.rest_id = rest_id
        self.created_at = time.time()
        self.create = create_json
        self.version = 1
        self.rcpts = [r["m"] for r in create_json.get("rcpt_to", [])]
        self.mail_response = None
        self.rcpt_response = []
        self.data_response = None
        self.body = bytearray()
        self.body_total = None
        self.cancelled = False
        self.patches = []
        self.finalized_at = None
        self.cond = threading.Condition()

    @property
    def finalized(self):
        return self.body_total is not None and len(self.body) == self.body_total


class Receiver:
    def __init__(self, responses=None, default=(250, 250, 250), data_delay=0.0):
        # data_delay: seconds between the last body byte and the data
        # response (a slow receiver; GETs long-poll meanwhile).
        self.data_delay = data_delay
        self.responses = {k: list(v) for k, v in (responses or {}).items()}
        self.default = default
        self.txs = {}
        self.order = []
        self.lock = threading.Lock()
        self.next_id = 0
        ThreadingHTTPServer.request_queue_size = 4096  # many concurrent connects
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self.server.daemon_threads = True
        # A client that gave up (timeout) closes its socket: not an error here.
        self.server.handle_error = lambda request, client_address: None
        self.port = self.server.server_address[1]
        self.base = "http://127.0.0.1:%d" % self.port
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def start(self):
        self.thread.start()
        return self

    def stop(self):
        self.server.shutdown()
        self.server.server_close()

    def endpoint(self, sender="router"):
        return "%s/senders/%s/transactions" % (self.base, sender)

    def script_for(self, rcpt):
        with self.lock:
            seq = self.responses.get(rcpt)
            if not seq:
                return self.default
            return seq.pop(0) if len(seq) > 1 else seq[0]

    def delivered(self):
        """Transactions whose body was finalized and data accepted."""
        with self.lock:
            return [t for t in (self.txs[i] for i in self.order)
                    if t.finalized and t.data_response and t.data_response[0] // 100 == 2]

    def wait_for(self, pred, timeout=30):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if pred(self):
                return True
            time.sleep(0.05)
        return False

    # -- wire ---------------------------------------------------------------
    def read_json(self, tx):
        out = {}
        c = tx.create
        if "remote_host" in c:
            out["remote_host"] = c["remote_host"]
        if "local_host" in c:
            out["local_host"] = c["local_host"]
        if "mail_from" in c:
            out["mail_from"] = {}
        if tx.mail_response:
            out["mail_response"] = {"code": tx.mail_response[0], "message": tx.mail_response[1]}
        if tx.rcpts:
            out["rcpt_to"] = [{} for _ in tx.rcpts]
        if tx.rcpt_response:
            out["rcpt_response"] = [{"code": c_, "message": m} for c_, m in tx.rcpt_response]
        if tx.data_response:
            out["data_response"] = {"code": tx.data_response[0], "message": tx.data_response[1]}
        bs = {"uri": "%s/transactions/%s/body" % (self.base, tx.rest_id)}
        if tx.finalized:
            bs["finalized"] = True
        out["body"] = {"blob_status": bs}
        if "sender" in c:
            out["sender"] = {}
        return out

    def _respond_envelope(self, tx):
        script = self.script_for(tx.rcpts[0] if tx.rcpts else "")
        mail, rcpt, data = script
        tx.script = script
        if mail is not None:
            tx.mail_response = (mail, "mail %d" % mail)
        if rcpt is not None and tx.rcpts:
            tx.rcpt_response = [(rcpt, "rcpt %d" % rcpt) for _ in tx.rcpts]

    def _maybe_data_response(self, tx):
        if tx.finalized and tx.data_response is None and tx.finalized_at is None:
            tx.finalized_at = time.time()
            data = tx.script[2]
            if data is None:
                return
            if self.data_delay:
                def later():
                    with tx.cond:
                        tx.data_response = (data, "data %d" % data)
                        tx.version += 1
                        tx.cond.notify_all()
                t = threading.Timer(self.data_delay, later)
                t.daemon = True
                t.start()
            else:
                tx.data_response = (data, "data %d" % data)

    def _handler_class(self):
        recv = self

        class H(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def _send(self, status, obj=None, headers=None):
                body = b"" if obj is None else json.dumps(obj, separators=(",", ":")).encode()
                self.send_response(status)
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                if obj is not None:
                    self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _body(self):
                n = int(self.headers.get("content-length") or 0)
                return self.rfile.read(n) if n else b""

            def _tx(self, rest_id):
                with recv.lock:
                    return recv.txs.get(rest_id)

            def do_POST(self):
                parts = self.path.split("/")
                data = self._body()
                if len(parts) == 4 and parts[1] == "senders" and parts[3] == "transactions":
                    c = json.loads(data)
                    with recv.lock:
                        recv.next_id += 1
                        rid = "T%d" % recv.next_id
                        tx = Tx(rid, c)
                        recv.txs[rid] = tx
                        recv.order.append(rid)
                    recv._respond_envelope(tx)
                    self._send(201, recv.read_json(tx), {
                        "location": "%s/transactions/%s" % (recv.base, rid),
                        "etag": str(tx.version)})
                    return
                if len(parts) == 4 and parts[1] == "transactions" and parts[3] == "cancel":
                    tx = self._tx(parts[2])
                    if not tx:
                        return self._send(404, {"error": "unknown tx"})
                    with tx.cond:
                        tx.cancelled = True
                        tx.version += 1
                        tx.cond.notify_all()
                    return self._send(200)
                self._send(404, {"error": "no route"})

            def do_GET(self):
                parts = self.path.split("/")
                if len(parts) != 3 or parts[1] != "transactions":
                    return self._send(404, {"error": "no route"})
                tx = self._tx(parts[2])
                if not tx:
                    return self._send(404, {"error": "unknown tx"})
                inm = self.headers.get("if-none-match")
                timeout = min(int(self.headers.get("request-timeout") or 5), 5)
                with tx.cond:
                    if inm is not None and inm.strip('"') == str(tx.version):
                        tx.cond.wait_for(lambda: str(tx.version) != inm.strip('"'), timeout)
                    if inm is not None and inm.strip('"') == str(tx.version):
                        return self._send(304, None, {"etag": inm})
                    return self._send(200, recv.read_json(tx), {"etag": str(tx.version)})

            def do_PATCH(self):
                parts = self.path.split("/")
                tx = self._tx(parts[2]) if len(parts) == 3 else None
                if not tx:
                    return self._send(404, {"error": "unknown tx"})
                data = self._body()
                with tx.cond:
                    tx.patches.append(data)
                    if data:
                        d = json.loads(data)
                        if set(d) - {"filter_output"}:
                            return self._send(400, {"error": "only filter_output"})
                    tx.version += 1
                    tx.cond.notify_all()
                    return self._send(200, recv.read_json(tx), {"etag": str(tx.version)})

            def do_PUT(self):
                parts = self.path.split("/")
                tx = self._tx(parts[2]) if len(parts) == 4 and parts[3] == "body" else None
                if not tx:
                    return self._send(404, {"error": "unknown tx"})
                data = self._body()
                cr = self.headers.get("content-range")
                fin = self.headers.get("x-finalize-blob-length")
                with tx.cond:
                    if fin is not None:
                        tx.body_total = int(fin)
                    elif cr:
                        m = RANGE_RE.match(cr)
                        if not m:
                            return self._send(400, {"error": "bad range"})
                        first, total = int(m.group(1)), m.group(3)
                        if first > len(tx.body):
                            return self._send(416, {"error": "range"}, {
                                "content-range": "bytes 0-%d/*" % (len(tx.body) - 1)})
                        tx.body[first:] = data
                        if total != "*":
                            tx.body_total = int(total)
                    else:
                        tx.body[:] = data
                        tx.body_total = len(data)
                    recv._maybe_data_response(tx)
                    tx.version += 1
                    tx.cond.notify_all()
                    stored = len(tx.body)
                    total = "*" if tx.body_total is None else str(tx.body_total)
                    rng = "bytes 0-%d/%s" % (stored - 1, total) if stored else "bytes */%s" % total
                    return self._send(200, {}, {"content-range": rng})

        return H
