#!/usr/bin/env python3
"""Reproducer for memcached's CVE-2023-46852 fix (proxy multiget with many spaces).

The vulnerable proxy_process_command copies everything before the first key of a multiget into
a stack buffer sized for a key plus a short prefix: many spaces after `get` overflow it. A
bounded probe shows it without smashing the stack: with 25 spaces the vulnerable code serves
the key (the route's answer), the fixed code answers `malformed request`.

Usage: memcached-proxy-repro.py PORT
Exit 1 and "repro: bug ..." when the vulnerable code answered, 0 and "repro: fixed" otherwise,
2 on any other error.
"""
import socket, sys

port = int(sys.argv[1])
try:
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    s.sendall(b"get" + b" " * 25 + b"k l\r\n")
    reply = b""
    while not reply.endswith(b"END\r\n") and not reply.endswith(b"ERROR\r\n"):
        chunk = s.recv(4096)
        if not chunk:
            raise ConnectionError(f"connection closed by server after {reply!r}")
        reply += chunk
except Exception as e:
    print(f"repro: error: {e}")
    sys.exit(2)
if b"malformed request" in reply:
    print("repro: fixed (get with a 28-byte prefix refused: malformed request)")
    sys.exit(0)
if reply.startswith(b"VALUE k "):
    print("repro: bug (get with a 28-byte prefix served: the prefix is copied unchecked)")
    sys.exit(1)
print(f"repro: error: unexpected reply {reply!r}")
sys.exit(2)
