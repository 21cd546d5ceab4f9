#!/usr/bin/env python3
"""Reproducer for memcached's CVE-2023-46853 fix (proxy off-by-one when \\r is missing).

The vulnerable proxy parser assumes every request ends with "\\r\\n" and cuts two bytes off a
request that ends with a bare "\\n": the last character of its last key is lost (and read past
where a longer request would have been). With the route of memcached-proxy-route.lua, which
answers every get with the key it parsed, `get abc def\\n` shows it: the vulnerable code answers
for keys `abc` and `de`, the fixed code for `abc` and `def`.

Usage: memcached-proxy-newline-repro.py PORT
Exit 1 and "repro: bug ..." when the vulnerable code answered, 0 and "repro: fixed" otherwise,
2 on any other error.
"""
import socket, sys

port = int(sys.argv[1])
try:
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    s.sendall(b"get abc def\n")
    reply = b""
    while not reply.endswith(b"END\r\n") and not reply.endswith(b"ERROR\r\n"):
        chunk = s.recv(4096)
        if not chunk:
            raise ConnectionError(f"connection closed by server after {reply!r}")
        reply += chunk
except Exception as e:
    print(f"repro: error: {e}")
    sys.exit(2)
keys = [line.split()[1] for line in reply.split(b"\r\n") if line.startswith(b"VALUE ")]
if keys == [b"abc", b"def"]:
    print("repro: fixed (get abc def ending in a bare \\n: keys abc, def)")
    sys.exit(0)
if keys == [b"abc", b"de"]:
    print("repro: bug (get abc def ending in a bare \\n: keys abc, de: the last byte is cut off)")
    sys.exit(1)
print(f"repro: error: unexpected reply {reply!r}")
sys.exit(2)
