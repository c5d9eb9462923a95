#!/usr/bin/env python3
"""Check the per-IP connection limit of an SMTP listener.

Opens --limit connections and reads their banners, then one more, whose
first line and whether the server then closes it are recorded. Then one held
connection is closed with QUIT and a new connection is tried (polling a
bounded number of times) until it gets its banner. Prints JSON.
"""
import argparse
import json
import socket
import sys
import time


def first_line(s):
    buf = b""
    while not buf.endswith(b"\n"):
        chunk = s.recv(1)
        if not chunk:
            break
        buf += chunk
    return buf.decode("utf-8", "replace").rstrip("\r\n")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--limit", type=int, required=True)
    a = p.parse_args()
    addr = ("127.0.0.1", a.port)
    out = {}
    held = []
    for _ in range(a.limit):
        s = socket.create_connection(addr, timeout=10)
        held.append(s)
    out["held"] = [first_line(s) for s in held]

    over = socket.create_connection(addr, timeout=10)
    out["over"] = first_line(over)
    try:
        out["over_closed"] = over.recv(1024) == b""
    except ConnectionResetError:
        out["over_closed"] = True
    except socket.timeout:
        out["over_closed"] = False
    over.close()

    s = held.pop()
    s.sendall(b"QUIT\r\n")
    out["quit"] = first_line(s)
    s.close()

    out["after_release"] = None
    for attempt in range(1, 101):
        s = socket.create_connection(addr, timeout=10)
        line = first_line(s)
        s.close()
        out["attempts"] = attempt
        if line.startswith("220"):
            out["after_release"] = line
            break
        time.sleep(0.02)
    for s in held:
        s.close()
    json.dump(out, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
