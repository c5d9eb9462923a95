#!/usr/bin/env python3
"""Drive a running Postern with Python's imaplib, as a real client would.

Usage: imap_client.py HOST IMAP_PORT IMAPS_PORT SMTP_PORT USER PASSWORD

It first delivers two messages with smtplib to the SMTP port, then checks
STARTTLS (LOGINDISABLED before it), LOGIN, LIST, SELECT, FETCH, SEARCH,
STORE, COPY, MOVE, APPEND and EXPUNGE over IMAPS, and finally IDLE: while
idling, it delivers a third message with smtplib and waits for EXISTS.
Adapted from internal/imapd/testdata/imaplib_e2e.py.

It prints one JSON document: {"ok": true, "steps": [...], "idle_ms": n}
or {"ok": false, "error": "...", "steps": [...]} with the steps passed.
"""
import imaplib
import json
import smtplib
import ssl
import sys
import time
import traceback
from email import policy
from email.message import EmailMessage
from email.utils import formatdate

host, imap_port, imaps_port, smtp_port, user, password = sys.argv[1:7]
imap_port, imaps_port, smtp_port = int(imap_port), int(imaps_port), int(smtp_port)
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
steps = []
result = {"ok": False, "steps": steps}


def ok(res):
    typ, data = res
    assert typ == "OK", (typ, data)
    return data


def step(name):
    steps.append(name)


def deliver(subject, body):
    m = EmailMessage()
    m["From"] = "bob@example.org"
    m["To"] = user
    m["Subject"] = subject
    m["Date"] = formatdate(localtime=False)
    m.set_content(body)
    with smtplib.SMTP(host, smtp_port, timeout=30) as s:
        s.ehlo("client.example.org")
        s.sendmail("bob@example.org", [user], m.as_bytes(policy=policy.SMTP))


def run():
    deliver("Hello there", "the quick brown fox\njumps over the lazy dog\n")
    deliver("Second", "a second message\n")
    step("smtp")

    # STARTTLS on the plain port: LOGINDISABLED first.
    m = imaplib.IMAP4(host, imap_port)
    assert "LOGINDISABLED" in m.capabilities, m.capabilities
    try:
        m.login(user, password)
        raise AssertionError("login accepted before TLS")
    except imaplib.IMAP4.error:
        pass
    ok(m.starttls(ssl_context=ctx))
    ok(m.login(user, password))
    caps = ok(m.capability())[0].decode().upper().split()
    for cap in ("IMAP4REV2", "IMAP4REV1", "IDLE", "MOVE", "UIDPLUS", "SPECIAL-USE", "LITERAL+"):
        assert cap in caps, (cap, caps)
    m.logout()
    step("starttls")

    m = imaplib.IMAP4_SSL(host, imaps_port, ssl_context=ctx)
    try:
        m.login(user, "wrong password")
        raise AssertionError("wrong password accepted")
    except imaplib.IMAP4.error:
        pass
    ok(m.login(user, password))
    step("login")

    typ, data = m.list()
    names = b"\n".join(data)
    for want in (b"INBOX", b"\\Sent", b"\\Trash", b"\\Drafts", b"\\Junk", b"\\Archive"):
        assert want in names, (want, data)
    step("list")

    n = int(ok(m.select("INBOX"))[0])
    assert n == 2, n
    step("select")

    data = ok(m.fetch("1", "(UID FLAGS RFC822.SIZE BODY.PEEK[HEADER.FIELDS (SUBJECT)])"))
    assert b"Subject: Hello there" in data[0][1], data
    assert b"\\Seen" not in data[0][0], data
    data = ok(m.fetch("1", "(RFC822)"))
    assert b"the quick brown fox" in data[0][1], data
    assert b"Received: " in data[0][1], data
    data = ok(m.fetch("1", "(FLAGS)"))
    assert b"\\Seen" in data[0], data
    data = ok(m.fetch("1:2", "(BODY.PEEK[TEXT]<4.5>)"))
    assert data[0][1] == b"quick", data
    step("fetch")

    assert ok(m.search(None, "ALL"))[0] == b"1 2"
    assert ok(m.search(None, "UNSEEN"))[0] == b"2"
    assert ok(m.search(None, 'FROM "bob@example.org"'))[0] == b"1 2"
    assert ok(m.search(None, 'BODY "lazy dog"'))[0] == b"1"
    assert ok(m.search(None, 'SUBJECT "nothing like this"'))[0] == b""
    assert ok(m.uid("SEARCH", None, "UID 2:*"))[0] == b"2"
    step("search")

    data = ok(m.store("2", "+FLAGS", "(\\Flagged $Important)"))
    assert b"\\Flagged" in data[0] and b"$Important" in data[0], data
    assert ok(m.search(None, "FLAGGED"))[0] == b"2"
    assert ok(m.search(None, "KEYWORD $Important"))[0] == b"2"
    data = ok(m.store("2", "-FLAGS", "(\\Flagged)"))
    assert b"\\Flagged" not in data[0], data
    step("store")

    typ, data = m.copy("1", "Archive")
    assert typ == "OK" and b"COPYUID" in data[0], (typ, data)
    step("copy")
    res = m.uid("MOVE", "2", "Trash")
    assert res[0] == "OK", res
    assert int(ok(m.select("Trash"))[0]) == 1
    assert int(ok(m.select("Archive"))[0]) == 1
    assert int(ok(m.select("INBOX"))[0]) == 1
    step("move")

    # APPEND with flags and an internal date, then find it again.
    msg = b"From: carol@example.org\r\nSubject: Appended\r\n\r\nAppended by imaplib.\r\n"
    when = imaplib.Time2Internaldate(time.mktime((2021, 5, 6, 7, 8, 9, 0, 0, -1)))
    typ, data = m.append("Drafts", "(\\Draft)", when, msg)
    assert typ == "OK" and b"APPENDUID" in data[0], data
    ok(m.select("Drafts"))
    data = ok(m.fetch("1", "(FLAGS INTERNALDATE BODY.PEEK[])"))
    assert b"\\Draft" in data[0][0] and b"6-May-2021" in data[0][0], data
    assert data[0][1] == msg, data
    step("append")

    # EXPUNGE.
    ok(m.select("INBOX"))
    ok(m.store("1", "+FLAGS.SILENT", "(\\Deleted)"))
    typ, data = m.expunge()
    assert typ == "OK" and data == [b"1"], data
    assert int(ok(m.select("INBOX"))[0]) == 0
    step("expunge")

    # IDLE (imaplib before 3.14 has no idle(): speak it), then a delivery
    # over SMTP; EXISTS must arrive within a second of the start of the
    # SMTP session.
    tag = m._new_tag().decode()
    m.send(("%s IDLE\r\n" % tag).encode())
    line = m.readline()
    assert line.startswith(b"+"), line
    start = time.monotonic()
    deliver("Live", "delivered during IDLE\n")
    m.sock.settimeout(10)
    while True:
        line = m.readline()
        assert line, "connection closed during IDLE"
        if line.rstrip().endswith(b"EXISTS"):
            assert line.rstrip() == b"* 1 EXISTS", line
            break
    elapsed = time.monotonic() - start
    m.send(b"DONE\r\n")
    while True:
        line = m.readline()
        if line.startswith(tag.encode()):
            assert b"OK" in line, line
            break
    result["idle_ms"] = round(elapsed * 1000)
    assert elapsed < 1.0, elapsed
    data = ok(m.fetch("1", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])"))
    assert b"Subject: Live" in data[0][1], data
    step("idle")
    m.logout()
    step("logout")
    result["ok"] = True


try:
    run()
except Exception:
    result["error"] = traceback.format_exc()
json.dump(result, sys.stdout)
print()
