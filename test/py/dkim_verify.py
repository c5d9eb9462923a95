#!/usr/bin/env python3
"""Verify every DKIM-Signature of the message on stdin with dkimpy (Debian's
python3-dkim), twice: with dkim.DKIM.verify, reporting the signature's
tags, and with the code of dkimpy's own `dkimverify` tool (its main(), run
once per signature with --index).

Keys are looked up only at the DNS server given with --dns HOST:PORT (the
test's in-process server), through dnspython; the machine's resolver is
never asked: dkimpy's own lookup function is replaced by one that fails.

Prints one JSON document:
  {"signatures": [{"d": ..., "s": ..., "a": ..., "c": ..., "h": ...,
                   "result": "pass"|"fail", "error": ..., "dkimverify": ...}],
   "queries": [names looked up]}
"""
import argparse
import contextlib
import io
import json
import sys

import dkim
import dkim.dkimverify
import dns.flags
import dns.message
import dns.query
import dns.rdatatype


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--dns", required=True, help="HOST:PORT of the DNS server to ask")
    a = p.parse_args()
    host, port = a.dns.rsplit(":", 1)
    port = int(port)
    msg = sys.stdin.buffer.read()
    queries = []

    def dnsfunc(name, timeout=5):
        if isinstance(name, bytes):
            name = name.decode()
        queries.append(name)
        q = dns.message.make_query(name, dns.rdatatype.TXT)
        r = dns.query.udp(q, host, port=port, timeout=5)
        if r.flags & dns.flags.TC:
            r = dns.query.tcp(q, host, port=port, timeout=5)
        for rrset in r.answer:
            if rrset.rdtype == dns.rdatatype.TXT:
                for rd in rrset:
                    return b"".join(rd.strings)
        return None

    def no_resolver(name, *args, **kwargs):
        raise RuntimeError("the machine's resolver was asked for %r" % (name,))

    dkim.get_txt = no_resolver
    dkim.dnsplug.get_txt = no_resolver
    # dkimverify calls d.verify(index) and so uses verify's default dnsfunc.
    dkim.DKIM.verify.__defaults__ = (0, dnsfunc)

    n = sum(1 for k, _ in dkim.DKIM(msg).headers if k.lower() == b"dkim-signature")
    sigs = []
    for i in range(n):
        d = dkim.DKIM(msg)
        out = {"result": "fail"}
        try:
            ok = d.verify(idx=i, dnsfunc=dnsfunc)
            out["result"] = "pass" if ok else "fail"
        except dkim.DKIMException as e:
            out["error"] = "%s: %s" % (type(e).__name__, e)
        for tag in ("d", "s", "a", "c", "h"):
            v = d.signature_fields.get(tag.encode())
            if v is not None:
                out[tag] = v.decode("ascii", "replace")
        out["dkimverify"] = run_dkimverify(msg, i)
        sigs.append(out)
    json.dump({"signatures": sigs, "queries": queries}, sys.stdout)
    sys.stdout.write("\n")


class Stdin:
    """What dkimverify expects of sys.stdin: detach() gives the bytes."""

    def __init__(self, data):
        self.data = data

    def detach(self):
        return io.BytesIO(self.data)


def run_dkimverify(msg, index):
    """Runs dkimverify's main with --index and returns what it printed."""
    saved = sys.argv, sys.stdin
    buf = io.StringIO()
    try:
        sys.argv = ["dkimverify", "--index", str(index)]
        sys.stdin = Stdin(msg)
        with contextlib.redirect_stdout(buf):
            try:
                dkim.dkimverify.main()
            except SystemExit:
                pass
            except dkim.DKIMException as e:
                print("exception: %s" % e)
    finally:
        sys.argv, sys.stdin = saved
    return buf.getvalue().strip()


if __name__ == "__main__":
    main()
