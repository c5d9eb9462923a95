"""Signs or verifies a message on stdin with dkimpy (Debian's python3-dkim).

  dkimpy.py verify RECORDS.json        prints one line per signature: pass or fail
  dkimpy.py sign SELECTOR DOMAIN KEYFILE ed25519-sha256|rsa-sha256
                                       prints the DKIM-Signature field

RECORDS.json maps DNS names (without the final dot) to TXT record texts.
"""
import json
import sys

import dkim

msg = sys.stdin.buffer.read()
if sys.argv[1] == "verify":
    with open(sys.argv[2]) as f:
        records = json.load(f)

    def dnsfunc(name, timeout=5):
        if isinstance(name, bytes):
            name = name.decode()
        return records.get(name.rstrip("."), "").encode()

    d = dkim.DKIM(msg)
    n = sum(1 for k, _ in d.headers if k.lower() == b"dkim-signature")
    for i in range(n):
        try:
            ok = d.verify(idx=i, dnsfunc=dnsfunc)
        except dkim.DKIMException:
            ok = False
        print("pass" if ok else "fail")
else:
    selector, domain, keyfile, algo = sys.argv[2:6]
    with open(keyfile, "rb") as f:
        key = f.read()
    sig = dkim.sign(msg, selector.encode(), domain.encode(), key,
                    signature_algorithm=algo.encode(),
                    include_headers=[b"from", b"to", b"subject", b"date"])
    sys.stdout.buffer.write(sig)
