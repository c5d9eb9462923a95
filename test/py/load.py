#!/usr/bin/env python3
"""Concurrent SMTP load for the kill -9 durability test.

--workers threads each send messages over smtplib, a few per connection,
until --max-per-worker messages, --duration seconds, or the server goes away
(a refused connection). Every message has a unique id used in its Subject,
its Message-ID and its trailer line, and declares its body line count in
X-Load-Lines, so a truncated copy can be recognised.

For each message acknowledged with 250 after DATA, one line is printed and
flushed at once:   ACK <id> <rcpt,rcpt...> <reply text>
At the end:        DONE acked=N failed=N
"""
import argparse
import smtplib
import sys
import threading
import time

lock = threading.Lock()


def emit(line):
    with lock:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


def message(mid, rcpts, nlines):
    head = [
        "From: load@example.org",
        "To: " + ", ".join(rcpts),
        "Subject: load " + mid,
        "Message-ID: <" + mid + "@load.example.org>",
        "X-Load-Lines: %d" % nlines,
        "",
    ]
    body = ["line %04d of %s %s" % (i, mid, "y" * 40) for i in range(nlines)]
    body.append("END-OF-MESSAGE " + mid)
    return ("\r\n".join(head + body) + "\r\n").encode("ascii")


def worker(w, a, deadline, counts):
    targets = a.rcpt_sets
    i = 0
    while i < a.max_per_worker and time.monotonic() < deadline:
        try:
            s = smtplib.SMTP("127.0.0.1", a.port, local_hostname="load.example.org", timeout=10)
        except OSError:
            return  # the server is gone: stop
        try:
            s.ehlo()
            for _ in range(a.per_connection):
                if i >= a.max_per_worker or time.monotonic() >= deadline:
                    break
                mid = "%s-w%02d-m%04d" % (a.prefix, w, i)
                rcpts = targets[(w + i) % len(targets)].split(",")
                nlines = 5 + (w * 31 + i * 17) % 200
                i += 1
                code, _ = s.mail("load@example.org")
                if code != 250:
                    counts[w][1] += 1
                    s.rset()
                    continue
                ok = all(s.rcpt(r)[0] == 250 for r in rcpts)
                if not ok:
                    counts[w][1] += 1
                    s.rset()
                    continue
                code, text = s.data(message(mid, rcpts, nlines))
                if code == 250:
                    counts[w][0] += 1
                    emit("ACK %s %s %s" % (mid, ",".join(rcpts), text.decode("utf-8", "replace")))
                else:
                    counts[w][1] += 1
            s.quit()
        except (smtplib.SMTPException, OSError):
            counts[w][1] += 1
            try:
                s.close()
            except OSError:
                pass


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--prefix", default="r1", help="prefix of message ids, one per run")
    p.add_argument("--workers", type=int, default=12)
    p.add_argument("--per-connection", type=int, default=4)
    p.add_argument("--max-per-worker", type=int, default=2000)
    p.add_argument("--duration", type=float, default=15.0)
    p.add_argument("--rcpt-set", dest="rcpt_sets", action="append", required=True,
                   help="comma-separated recipients; messages cycle through the sets")
    a = p.parse_args()
    deadline = time.monotonic() + a.duration
    counts = [[0, 0] for _ in range(a.workers)]
    ts = [threading.Thread(target=worker, args=(w, a, deadline, counts)) for w in range(a.workers)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    emit("DONE acked=%d failed=%d" % (sum(c[0] for c in counts), sum(c[1] for c in counts)))


if __name__ == "__main__":
    main()
