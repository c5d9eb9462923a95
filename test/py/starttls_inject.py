#!/usr/bin/env python3
"""Pipeline a plaintext command after STARTTLS (CVE-2011-0411 style).

Sends "STARTTLS\\r\\nMAIL FROM:<injected@example.org>\\r\\n" in one write,
reads the 220, then waits up to --wait seconds to see whether the server
closes the connection or sends anything more in plaintext. If the
connection is still open, it completes the TLS handshake and sends NOOP and
QUIT, recording every reply read inside TLS: a server that executed the
injected command inside TLS sends one reply too many. Prints JSON.
"""
import argparse
import json
import socket
import ssl
import sys


def read_line(s):
    buf = b""
    while not buf.endswith(b"\n"):
        c = s.recv(1)
        if not c:
            break
        buf += c
    return buf.decode("utf-8", "replace").rstrip("\r\n")


def read_reply(s):
    lines = []
    while True:
        line = read_line(s)
        if not line:
            return lines
        lines.append(line)
        if len(line) < 4 or line[3] != "-":
            return lines


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--wait", type=float, default=2.0)
    a = p.parse_args()
    out = {"closed": False, "plaintext_after": None, "tls_replies": []}
    s = socket.create_connection(("127.0.0.1", a.port), timeout=10)
    out["banner"] = read_reply(s)
    s.sendall(b"EHLO inject.example.org\r\n")
    out["ehlo"] = read_reply(s)
    s.sendall(b"STARTTLS\r\nMAIL FROM:<injected@example.org>\r\n")
    out["starttls"] = read_reply(s)
    s.settimeout(a.wait)
    try:
        b = s.recv(1024)
        if b:
            out["plaintext_after"] = b.decode("utf-8", "replace")
        else:
            out["closed"] = True
    except socket.timeout:
        pass
    except ConnectionResetError:
        out["closed"] = True
    if not out["closed"] and out["plaintext_after"] is None:
        s.settimeout(10)
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        t = ctx.wrap_socket(s, server_hostname="localhost")
        for cmd in (b"NOOP\r\n", b"QUIT\r\n"):
            t.sendall(cmd)
            out["tls_replies"].append(read_reply(t))
        while True:  # anything left before the server closes
            r = read_reply(t)
            if not r:
                break
            out["tls_replies"].append(r)
        t.close()
    else:
        s.close()
    json.dump(out, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
