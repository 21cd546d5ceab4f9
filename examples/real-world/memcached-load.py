#!/usr/bin/env python3
"""Bounded memcached load: CONNS connections doing set/get on 127.0.0.1:PORT for SECONDS.

Every reply is checked; any error, wrong value or dropped connection fails the run (exit 1).
Prints one summary line: ops, errors, max latency.
"""
import socket, sys, threading, time

port, seconds, conns = int(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3])
deadline = time.monotonic() + seconds
lock = threading.Lock()
stats = {"ops": 0, "errors": [], "max_ms": 0.0}


def read_line(f):
    line = f.readline()
    if not line:
        raise ConnectionError("connection closed by server")
    return line


def worker(n):
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        f = s.makefile("rb")
        i = 0
        while time.monotonic() < deadline:
            key, value = f"k{n}-{i % 100}", f"v{n}-{i}".encode()
            t0 = time.monotonic()
            s.sendall(b"set %s 0 0 %d\r\n%s\r\n" % (key.encode(), len(value), value))
            if read_line(f) != b"STORED\r\n":
                raise ValueError(f"set {key}: unexpected reply")
            s.sendall(b"get %s\r\n" % key.encode())
            head = read_line(f)
            body = read_line(f)
            end = read_line(f)
            if not head.startswith(b"VALUE ") or body != value + b"\r\n" or end != b"END\r\n":
                raise ValueError(f"get {key}: got {head!r} {body!r} {end!r}")
            ms = (time.monotonic() - t0) * 1000
            with lock:
                stats["ops"] += 2
                stats["max_ms"] = max(stats["max_ms"], ms)
            i += 1
        s.close()
    except Exception as e:  # any failure is a finding for the run
        with lock:
            stats["errors"].append(f"conn {n}: {e}")


threads = [threading.Thread(target=worker, args=(n,)) for n in range(conns)]
for t in threads:
    t.start()
for t in threads:
    t.join()
print(f"load: {stats['ops']} ops on {conns} connections, {len(stats['errors'])} errors, "
      f"max latency {stats['max_ms']:.1f} ms")
for e in stats["errors"]:
    print("load error:", e)
sys.exit(1 if stats["errors"] or stats["ops"] == 0 else 0)
