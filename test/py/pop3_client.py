#!/usr/bin/env python3
"""Drive a Postern POP3 listener with Python's poplib.

Usage: pop3_client.py HOST PORT TLSPORT USER PASSWORD

Session 1 (plain port): CAPA, USER before STLS (must fail), STLS, CAPA,
USER/PASS, STAT, LIST, UIDL, TOP 1 0, RETR of every message, DELE 1, QUIT.
Session 2 (implicit TLS): STAT, UIDL, QUIT.
Everything seen is printed as one JSON document for the Go test to check.
"""
import json
import poplib
import ssl
import sys


def text(b):
    return b.decode("utf-8", "replace") if isinstance(b, bytes) else b


def lines(resp):
    return [text(l) for l in resp[1]]


def main():
    host, port, tls_port, user, password = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5]
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    out = {}

    p = poplib.POP3(host, port, timeout=30)
    out["welcome"] = text(p.getwelcome())
    out["capa_plain"] = sorted(p.capa().keys())
    try:
        p.user(user)
        out["user_before_tls"] = "accepted"
    except poplib.error_proto as e:
        out["user_before_tls"] = text(e.args[0])
    p.stls(context=ctx)
    out["capa_tls"] = sorted(p.capa().keys())
    p.user(user)
    out["pass"] = text(p.pass_(password))
    out["stat"] = list(p.stat())
    out["list"] = lines(p.list())
    out["uidl"] = lines(p.uidl())
    out["top0"] = lines(p.top(1, 0))
    out["messages"] = []
    for i in range(1, len(out["list"]) + 1):
        out["messages"].append("\r\n".join(lines(p.retr(i))))
    out["dele"] = text(p.dele(1))
    out["quit"] = text(p.quit())

    p = poplib.POP3_SSL(host, tls_port, timeout=30, context=ctx)
    p.user(user)
    p.pass_(password)
    out["stat_after"] = list(p.stat())
    out["uidl_after"] = lines(p.uidl())
    p.quit()
    print(json.dumps(out))


if __name__ == "__main__":
    main()
