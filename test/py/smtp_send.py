#!/usr/bin/env python3
"""Send one message to a Postern SMTP listener with smtplib.

Every server reply (EHLO, STARTTLS, MAIL, each RCPT, DATA) is printed as one
JSON document on stdout so that the Go tests can assert codes and texts.
The DATA step runs only if at least one recipient was accepted.
"""
import argparse
import json
import smtplib
import ssl
import sys
from email.message import EmailMessage
from email import policy
from email.utils import formatdate


def reply(r):
    code, msg = r
    if isinstance(msg, bytes):
        msg = msg.decode("utf-8", "replace")
    return {"code": code, "text": msg}


class SMTP(smtplib.SMTP):
    """smtplib.SMTP that keeps the greeting (the constructor connects, and
    connecting through it also sets the server name STARTTLS needs)."""

    def connect(self, *args, **kwargs):
        self.banner = super().connect(*args, **kwargs)
        return self.banner


def build(a):
    m = EmailMessage()
    m["From"] = a.sender or "<>"
    m["To"] = ", ".join(a.to)
    m["Subject"] = a.subject
    m["Date"] = formatdate(localtime=False)
    if a.message_id:
        m["Message-ID"] = "<%s>" % a.message_id
    body = a.body
    if a.pad:
        line = "x" * 70 + "\n"
        body += line * (a.pad // len(line) + 1)
    body += a.trailer + "\n"
    m.set_content(body)
    return m.as_bytes(policy=policy.SMTP)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--helo", default="client.example.org")
    p.add_argument("--from", dest="sender", default="sender@example.org")
    p.add_argument("--to", action="append", default=[])
    p.add_argument("--subject", default="test message")
    p.add_argument("--message-id")
    p.add_argument("--body", default="Hello from smtplib.\n")
    p.add_argument("--trailer", default="-- end of test message --")
    p.add_argument("--pad", type=int, default=0, help="append about this many bytes of body")
    p.add_argument("--starttls", action="store_true")
    p.add_argument("--size-param", action="store_true", help="declare SIZE= on MAIL FROM")
    a = p.parse_args()

    data = build(a)
    out = {"size": len(data), "rcpt": []}
    try:
        s = SMTP("127.0.0.1", a.port, local_hostname=a.helo, timeout=20)
        out["banner"] = reply(s.banner)
        out["ehlo"] = reply(s.ehlo())
        if a.starttls:
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE  # Postern's generated cert is self-signed
            out["starttls"] = reply(s.starttls(context=ctx))
            out["tls"] = {"version": s.sock.version(), "cipher": s.sock.cipher()[0]}
            out["ehlo_tls"] = reply(s.ehlo())
        opts = ["SIZE=%d" % len(data)] if a.size_param else []
        out["mail"] = reply(s.mail(a.sender, opts))
        if out["mail"]["code"] == 250:
            for r in a.to:
                out["rcpt"].append(reply(s.rcpt(r)))
            if any(r["code"] in (250, 251) for r in out["rcpt"]):
                out["data"] = reply(s.data(data))
        s.quit()
    except (smtplib.SMTPException, OSError) as e:
        out["error"] = "%s: %s" % (type(e).__name__, e)
    json.dump(out, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
