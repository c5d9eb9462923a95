#!/usr/bin/env python3
"""Sign a message with dkimpy (Debian's python3-dkim) and send it with
smtplib to an SMTP listener, without TLS or AUTH (as a remote MX would).

  --sign SELECTOR:DOMAIN:KEYFILE:ALGORITHM:HEADERCANON/BODYCANON  (repeatable)

KEYFILE holds a PEM RSA key (rsa-sha256) or the base64 Ed25519 seed
(ed25519-sha256), the forms dkimpy reads. Each signature is put on top of
the message signed so far. With --tamper the body is changed after signing.

Prints one JSON document with the replies (as smtp_send.py does) and the
message as sent ("message").
"""
import argparse
import json
import smtplib
import sys
from email.utils import formatdate

import dkim


def reply(r):
    code, msg = r
    if isinstance(msg, bytes):
        msg = msg.decode("utf-8", "replace")
    return {"code": code, "text": msg}


class SMTP(smtplib.SMTP):
    def connect(self, *args, **kwargs):
        self.banner = super().connect(*args, **kwargs)
        return self.banner


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--helo", required=True)
    p.add_argument("--from", dest="sender", required=True, help="envelope sender")
    p.add_argument("--header-from", required=True)
    p.add_argument("--to", required=True)
    p.add_argument("--subject", required=True)
    p.add_argument("--message-id", required=True)
    p.add_argument("--sign", action="append", default=[])
    p.add_argument("--tamper", action="store_true")
    a = p.parse_args()

    body = (b"Hello,\r\n"
            b"\r\n"
            b"  this  line has   runs of spaces and trailing blanks   \r\n"
            b"\ta tab, then a line that starts with a dot:\r\n"
            b".signed by dkimpy\r\n"
            b"\r\n"
            b"\r\n")
    head = ("From: %s\r\nTo: %s\r\nSubject: %s\r\nDate: %s\r\nMessage-ID: <%s>\r\n"
            "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n" % (
                a.header_from, a.to, a.subject, formatdate(localtime=False), a.message_id)).encode()
    msg = head + body
    for spec in a.sign:
        selector, domain, keyfile, algo, canon = spec.split(":")
        hc, bc = canon.split("/")
        with open(keyfile, "rb") as f:
            key = f.read()
        sig = dkim.sign(msg, selector.encode(), domain.encode(), key,
                        signature_algorithm=algo.encode(),
                        canonicalize=(hc.encode(), bc.encode()),
                        include_headers=[b"from", b"to", b"subject", b"date", b"message-id",
                                         b"mime-version", b"content-type"])
        msg = sig + msg
    if a.tamper:
        msg = msg.replace(b"signed by dkimpy", b"changed in transit")

    out = {"rcpt": [], "message": msg.decode("ascii")}
    try:
        s = SMTP(a.host, a.port, local_hostname=a.helo, timeout=20)
        out["banner"] = reply(s.banner)
        out["ehlo"] = reply(s.ehlo())
        out["mail"] = reply(s.mail(a.sender))
        if out["mail"]["code"] == 250:
            out["rcpt"].append(reply(s.rcpt(a.to)))
            if out["rcpt"][0]["code"] == 250:
                try:
                    out["data"] = reply(s.data(msg))
                except smtplib.SMTPDataError as e:
                    out["data"] = reply((e.smtp_code, e.smtp_error))
        s.quit()
    except (smtplib.SMTPException, OSError) as e:
        out["error"] = "%s: %s" % (type(e).__name__, e)
    json.dump(out, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
