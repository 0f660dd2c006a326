"""A small SMTP/LMTP destination for the gateway tests (stdlib only), after
the original's fake_smtpd (spec/gateway.md §7): records every transaction
(EHLO name, MAIL address and params, RCPTs, the exact message bytes) and
answers by magic local parts:

  rcpttemp*  -> RCPT 450 4.2.0 rcpt temp      rcptperm*  -> RCPT 550 5.1.1 rcpt perm
  datatemp*  -> DATA 450 4.3.0 data temp      dataperm*  -> DATA 550 5.6.0 data perm
             (single recipient: its magic decides; several: the first one's)
  otherwise 250.

Supports EHLO (PIPELINING, 8BITMIME, SMTPUTF8, SIZE, CHUNKING, DSN,
ENHANCEDSTATUSCODES), DATA with dot-unstuffing, BDAT, RSET, NOOP, QUIT;
`lmtp=True` answers LHLO and gives one DATA reply per accepted recipient."""
import socket
import threading
import time


class Message:
    def __init__(self):
        self.ehlo = None
        self.mail_from = None
        self.mail_params = []
        self.rcpts = []
        self.data = b""
        self.reply = None
        self.tls = False


class SmtpSink:
    def __init__(self, lmtp=False, host="127.0.0.1"):
        self.lmtp = lmtp
        self.messages = []
        self.connections = 0
        self.lock = threading.RLock()
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, 0))
        self.sock.listen(128)
        self.port = self.sock.getsockname()[1]
        self.stopped = False
        self.thread = threading.Thread(target=self._accept, daemon=True)

    def start(self):
        self.thread.start()
        return self

    def stop(self):
        self.stopped = True
        try:
            # shutdown() wakes the thread blocked in accept(); close() alone
            # would leave the port accepting until then.
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        try:
            self.sock.close()
        except OSError:
            pass

    def wait_for(self, pred, timeout=30):
        deadline = time.time() + timeout
        while time.time() < deadline:
            with self.lock:
                if pred(self):
                    return True
            time.sleep(0.05)
        return False

    def delivered(self):
        with self.lock:
            return [m for m in self.messages if m.reply and m.reply.startswith(b"250")]

    def _accept(self):
        while not self.stopped:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            with self.lock:
                self.connections += 1
            threading.Thread(target=self._serve, args=(c,), daemon=True).start()

    def _serve(self, c):
        f = c.makefile("rb")

        def send(s):
            c.sendall(s.encode() if isinstance(s, str) else s)

        try:
            send("220 sink.example ESMTP koukan test sink\r\n")
            m = Message()
            accepted = []
            while True:
                line = f.readline(4096)
                if not line:
                    return
                cmd = line.rstrip(b"\r\n")
                verb = cmd.split(b" ", 1)[0].upper()
                if verb in (b"EHLO", b"LHLO", b"HELO"):
                    m = Message()
                    m.ehlo = cmd[5:].decode(errors="replace")
                    accepted = []
                    if verb == b"HELO":
                        send("250 sink.example\r\n")
                    else:
                        send("250-sink.example\r\n250-PIPELINING\r\n250-8BITMIME\r\n"
                             "250-SMTPUTF8\r\n250-SIZE 104857600\r\n250-CHUNKING\r\n"
                             "250-DSN\r\n250 ENHANCEDSTATUSCODES\r\n")
                elif verb == b"MAIL":
                    rest = cmd[10:].decode(errors="replace")
                    addr, _, params = rest.partition(" ")
                    m.mail_from = addr.strip("<>")
                    m.mail_params = params.split() if params else []
                    send("250 2.1.0 ok\r\n")
                elif verb == b"RCPT":
                    addr = cmd[8:].decode(errors="replace").split(" ")[0].strip("<>")
                    local = addr.split("@")[0]
                    m.rcpts.append(addr)
                    if local.startswith("rcpttemp"):
                        send("450 4.2.0 rcpt temp\r\n")
                    elif local.startswith("rcptperm"):
                        send("550 5.1.1 rcpt perm\r\n")
                    else:
                        accepted.append(addr)
                        send("250 2.1.5 ok\r\n")
                elif verb == b"DATA":
                    send("354 go ahead\r\n")
                    data = bytearray()
                    while True:
                        l = f.readline(1 << 20)
                        if not l:
                            return
                        if l == b".\r\n":
                            break
                        if l.startswith(b"."):
                            l = l[1:]
                        data += l
                    self._finish(m, bytes(data), accepted, send)
                    m = Message()
                    accepted = []
                elif verb == b"BDAT":
                    parts = cmd.split()
                    n = int(parts[1])
                    chunk = f.read(n)
                    m.data += chunk
                    if len(parts) > 2 and parts[2].upper() == b"LAST":
                        self._finish(m, m.data, accepted, send)
                        m = Message()
                        accepted = []
                    else:
                        send("250 2.0.0 %d octets\r\n" % n)
                elif verb == b"RSET":
                    m = Message()
                    accepted = []
                    send("250 2.0.0 ok\r\n")
                elif verb == b"NOOP":
                    send("250 2.0.0 ok\r\n")
                elif verb == b"QUIT":
                    send("221 2.0.0 bye\r\n")
                    return
                else:
                    send("502 5.5.2 unknown command\r\n")
        except OSError:
            return
        finally:
            c.close()

    def _finish(self, m, data, accepted, send):
        m.data = data
        first = accepted[0].split("@")[0] if accepted else ""
        if first.startswith("datatemp"):
            reply = b"450 4.3.0 data temp\r\n"
        elif first.startswith("dataperm"):
            reply = b"550 5.6.0 data perm\r\n"
        else:
            reply = b"250 2.0.0 accepted\r\n"
        m.reply = reply
        with self.lock:
            self.messages.append(m)
        if self.lmtp:
            send(reply * max(1, len(accepted)))
        else:
            send(reply)
