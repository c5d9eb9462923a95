#!/usr/bin/env python3
"""Replay a raw SMTP dialogue byte for byte over a plain socket.

Reads {"port": N, "steps": [{"send": STR, "replies": K}, ...]} as JSON on
stdin; each STR is sent as Latin-1 bytes exactly as given (so bare CR or LF
reach the server unaltered), then K replies are read. Prints the banner and
the replies (each a list of lines) as JSON. A closed connection, or no
reply within "timeout" seconds (default 5), ends the run.
"""
import json
import socket
import sys


def read_reply(f):
    lines = []
    while True:
        line = f.readline()
        if not line:
            return lines or None
        line = line.decode("utf-8", "replace").rstrip("\r\n")
        lines.append(line)
        if len(line) < 4 or line[3] != "-":
            return lines


def main():
    req = json.load(sys.stdin)
    out = {"replies": [], "closed": False, "timeout": False}
    with socket.create_connection(("127.0.0.1", req["port"]), timeout=req.get("timeout", 5)) as s:
        f = s.makefile("rb")
        try:
            out["banner"] = read_reply(f)
            for step in req["steps"]:
                s.sendall(step["send"].encode("latin-1"))
                for _ in range(step.get("replies", 1)):
                    r = read_reply(f)
                    if r is None:
                        out["closed"] = True
                        break
                    out["replies"].append(r)
                if out["closed"]:
                    break
        except socket.timeout:
            out["timeout"] = True
    json.dump(out, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
