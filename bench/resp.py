"""Shared by bench/compare.py and bench/soak.py."""

import socket


class Resp:
    """A minimal RESP2 client for the harnesses' own commands (INFO, SET,
    SHUTDOWN): no dependency beyond the standard library."""
    def __init__(self, port, timeout=5.0, error=RuntimeError):
        self.error = error
        self.port = port
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.rf = self.sock.makefile("rb")

    @staticmethod
    def encode(*args):
        parts = [b"*%d\r\n" % len(args)]
        for a in args:
            if not isinstance(a, bytes):
                a = str(a).encode()
            parts.append(b"$%d\r\n%s\r\n" % (len(a), a))
        return b"".join(parts)

    def send(self, cmds):
        self.sock.sendall(b"".join(self.encode(*c) for c in cmds))

    def read(self):
        line = self.rf.readline()
        if not line:
            raise self.error("redis :%d closed the connection" % self.port)
        t, body = line[:1], line[1:-2]
        if t == b"+":
            return body
        if t == b"-":
            raise self.error("redis :%d error: %s" % (self.port, body.decode(errors="replace")))
        if t == b":":
            return int(body)
        if t == b"$":
            n = int(body)
            if n < 0:
                return None
            data = self.rf.read(n + 2)
            return data[:-2]
        if t == b"*":
            n = int(body)
            return None if n < 0 else [self.read() for _ in range(n)]
        raise self.error("redis :%d: unexpected reply %r" % (self.port, line[:40]))

    def call(self, *args):
        self.send([args])
        return self.read()

    def close(self):
        try:
            self.rf.close()
            self.sock.close()
        except OSError:
            pass
