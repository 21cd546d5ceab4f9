#!/usr/bin/env python3
"""Reproducer for memcached's CVE-2026-47783/47784 fix (SASL password database).

The vulnerable sasl_server_userdb_checkpass stops at the first line naming the user (the early
exit that leaks valid user names through timing); the fix scans the whole file. Observable from
outside: with a database that names the user twice, `USER:old` then `USER:PASSWORD`, PLAIN
authentication with PASSWORD fails before the fix and succeeds after it.

Usage: memcached-sasl-repro.py PORT USER PASSWORD
Exit 1 and "repro: bug ..." when the vulnerable code answered, 0 and "repro: fixed" otherwise,
2 on any other error.
"""
import socket, struct, sys

port, user, password = int(sys.argv[1]), sys.argv[2], sys.argv[3]
try:
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    key = b"PLAIN"
    value = b"\0" + user.encode() + b"\0" + password.encode()
    # Binary protocol request: magic, opcode SASL_AUTH (0x21), key length, extras, data type,
    # vbucket, body length, opaque, cas.
    s.sendall(struct.pack(">BBHBBHIIQ", 0x80, 0x21, len(key), 0, 0, 0, len(key) + len(value), 0, 0)
              + key + value)
    head = b""
    while len(head) < 24:
        chunk = s.recv(24 - len(head))
        if not chunk:
            raise ConnectionError("connection closed by server")
        head += chunk
    magic, opcode, _, _, _, status, _, _, _ = struct.unpack(">BBHBBHIIQ", head)
    if magic != 0x81 or opcode != 0x21:
        raise ValueError(f"unexpected reply header {head!r}")
except Exception as e:
    print(f"repro: error: {e}")
    sys.exit(2)
if status == 0:
    print("repro: fixed (authenticated against the second entry of the user)")
    sys.exit(0)
if status == 0x20:
    print("repro: bug (authentication refused: the check stopped at the user's first entry)")
    sys.exit(1)
print(f"repro: error: SASL status {status:#x}")
sys.exit(2)
