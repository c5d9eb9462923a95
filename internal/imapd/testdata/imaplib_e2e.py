"""Drive Postern's IMAP server with Python's imaplib, as a real client would.

Usage: imaplib_e2e.py HOST PLAIN_PORT TLS_PORT USER PASSWORD
The Go test delivers a message when this script prints IDLE-READY.
Any failed assertion exits non-zero with a traceback.
"""
import imaplib
import ssl
import sys
import time

host, plain_port, tls_port, user, password = sys.argv[1:6]
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE


def ok(res):
    typ, data = res
    assert typ == "OK", (typ, data)
    return data


# STARTTLS on the plain port: LOGINDISABLED first.
m = imaplib.IMAP4(host, int(plain_port))
assert "LOGINDISABLED" in m.capabilities, m.capabilities
try:
    m.login(user, password)
    raise AssertionError("login accepted before TLS")
except imaplib.IMAP4.error:
    pass
ok(m.starttls(ssl_context=ctx))
ok(m.login(user, password))
caps = ok(m.capability())[0].decode().upper().split()
for cap in ("IMAP4REV2", "IDLE", "MOVE", "UIDPLUS", "SPECIAL-USE"):
    assert cap in caps, (cap, caps)
m.logout()

m = imaplib.IMAP4_SSL(host, int(tls_port), ssl_context=ctx)
try:
    m.login(user, "wrong password")
    raise AssertionError("wrong password accepted")
except imaplib.IMAP4.error:
    pass
ok(m.login(user, password))

typ, data = m.list()
names = b"\n".join(data)
for want in (b"INBOX", b"\\Sent", b"\\Trash", b"\\Drafts", b"\\Junk", b"\\Archive"):
    assert want in names, (want, data)

n = int(ok(m.select("INBOX"))[0])
assert n == 2, n
data = ok(m.fetch("1", "(UID FLAGS RFC822.SIZE BODY.PEEK[HEADER.FIELDS (SUBJECT)])"))
assert b"Subject: Hello there" in data[0][1], data
data = ok(m.fetch("1", "(RFC822)"))
assert b"the quick brown fox" in data[0][1], data
data = ok(m.fetch("1", "(FLAGS)"))
assert b"\\Seen" in data[0], data

assert ok(m.search(None, "ALL"))[0] == b"1 2"
assert ok(m.search(None, "UNSEEN"))[0] == b"2"
assert ok(m.search(None, 'FROM "bob@example.org"'))[0] == b"1 2"
assert ok(m.search(None, 'SUBJECT "nothing like this"'))[0] == b""
assert ok(m.uid("SEARCH", None, "UID 2:*"))[0] == b"2"

data = ok(m.store("2", "+FLAGS", "(\\Flagged $Important)"))
assert b"\\Flagged" in data[0] and b"$Important" in data[0], data
assert ok(m.search(None, "FLAGGED"))[0] == b"2"
assert ok(m.search(None, "KEYWORD $Important"))[0] == b"2"

typ, data = m.copy("1", "Archive")
assert typ == "OK", data
res = m.uid("MOVE", "2", "Trash")
assert res[0] == "OK", res
assert int(ok(m.select("Trash"))[0]) == 1
ok(m.select("INBOX"))

# APPEND with flags and an internal date, then find it again.
msg = b"From: carol@example.org\r\nSubject: Appended\r\n\r\nAppended by imaplib.\r\n"
when = imaplib.Time2Internaldate(time.mktime((2021, 5, 6, 7, 8, 9, 0, 0, -1)))
typ, data = m.append("Drafts", "(\\Draft)", when, msg)
assert typ == "OK" and b"APPENDUID" in data[0], data
ok(m.select("Drafts"))
data = ok(m.fetch("1", "(FLAGS INTERNALDATE BODY.PEEK[])"))
assert b"\\Draft" in data[0][0] and b"6-May-2021" in data[0][0], data
assert data[0][1] == msg, data

# EXPUNGE.
ok(m.select("INBOX"))
ok(m.store("1", "+FLAGS.SILENT", "(\\Deleted)"))
typ, data = m.expunge()
assert typ == "OK" and data == [b"1"], data
assert int(ok(m.select("INBOX"))[0]) == 0

# IDLE: the Go test delivers a message over the store when told; EXISTS
# must arrive within a second (imaplib in 3.11 has no idle(): speak it).
tag = m._new_tag().decode()
m.send(("%s IDLE\r\n" % tag).encode())
line = m.readline()
assert line.startswith(b"+"), line
print("IDLE-READY", flush=True)
start = time.monotonic()
while True:
    line = m.readline()
    assert line, "connection closed during IDLE"
    if line.rstrip().endswith(b"EXISTS"):
        break
elapsed = time.monotonic() - start
m.send(b"DONE\r\n")
while True:
    line = m.readline()
    if line.startswith(tag.encode()):
        assert b"OK" in line, line
        break
assert elapsed < 1.0, elapsed
data = ok(m.fetch("1", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])"))
assert b"Subject: Live" in data[0][1], data
m.logout()
print("ALL-OK elapsed=%.3f" % elapsed, flush=True)
