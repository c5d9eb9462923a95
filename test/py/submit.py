#!/usr/bin/env python3
"""Submit one message to a Postern submission listener with smtplib.

--mode ssl connects with implicit TLS (port 465 style, SMTP_SSL),
--mode starttls upgrades with STARTTLS first (587 style). With --user the
client authenticates (--mech PLAIN or LOGIN; smtplib sends LOGIN with the
user name as initial response). Every reply is printed as one JSON document
so that the Go tests can assert codes and texts.
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


def tls_context():
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE  # Postern's generated cert is self-signed
    return ctx


class Banner:
    """Keeps the greeting, which the SMTP constructors swallow."""

    def connect(self, *args, **kwargs):
        self.banner = super().connect(*args, **kwargs)
        return self.banner


class SMTP(Banner, smtplib.SMTP):
    pass


class SMTPS(Banner, smtplib.SMTP_SSL):
    pass


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--mode", choices=["ssl", "starttls", "plain"], default="ssl")
    p.add_argument("--helo", default="client.example.org")
    p.add_argument("--user")
    p.add_argument("--password")
    p.add_argument("--mech", choices=["PLAIN", "LOGIN"], default="PLAIN")
    p.add_argument("--from", dest="sender", required=True)
    p.add_argument("--header-from")
    p.add_argument("--to", action="append", default=[])
    p.add_argument("--subject", default="test message")
    p.add_argument("--message-id")
    p.add_argument("--body", default="Hello from smtplib.\n")
    a = p.parse_args()

    m = EmailMessage()
    m["From"] = a.header_from or a.sender
    m["To"] = ", ".join(a.to)
    m["Subject"] = a.subject
    m["Date"] = formatdate(localtime=False)
    if a.message_id:
        m["Message-ID"] = "<%s>" % a.message_id
    m.set_content(a.body)
    data = m.as_bytes(policy=policy.SMTP)

    out = {"rcpt": []}
    try:
        if a.mode == "ssl":
            s = SMTPS(a.host, a.port, local_hostname=a.helo, timeout=20, context=tls_context())
        else:
            s = SMTP(a.host, a.port, local_hostname=a.helo, timeout=20)
        out["banner"] = reply(s.banner)
        out["ehlo"] = reply(s.ehlo())
        if a.mode == "starttls":
            out["starttls"] = reply(s.starttls(context=tls_context()))
            out["ehlo_tls"] = reply(s.ehlo())
        if a.mode != "plain":
            out["tls"] = {"version": s.sock.version(), "cipher": s.sock.cipher()[0]}
        if a.user:
            s.user, s.password = a.user, a.password
            obj = s.auth_plain if a.mech == "PLAIN" else s.auth_login
            try:
                out["auth"] = reply(s.auth(a.mech, obj))
            except smtplib.SMTPAuthenticationError as e:
                out["auth"] = reply((e.smtp_code, e.smtp_error))
        out["mail"] = reply(s.mail(a.sender))
        if out["mail"]["code"] == 250:
            for r in a.to:
                out["rcpt"].append(reply(s.rcpt(r)))
            if any(r["code"] in (250, 251) for r in out["rcpt"]):
                try:
                    out["data"] = reply(s.data(data))
                except smtplib.SMTPDataError as e:
                    out["data"] = reply((e.smtp_code, e.smtp_error))
        s.quit()
    except (smtplib.SMTPException, OSError) as e:
        out["error"] = "%s: %s" % (type(e).__name__, e)
    json.dump(out, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
