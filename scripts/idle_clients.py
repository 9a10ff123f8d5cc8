#!/usr/bin/env python3
"""Hold N idle keep-alive connections open through a proxy, and report what
they cost the proxy process (threads, RSS) from /proc.

    scripts/idle_clients.py --proxy 127.0.0.1:8002 --pid $(pgrep -f phase2-threadpool) -n 100 500 1000

For each N: open N connections, send one GET on each and read its response
(so each connection has been served once and is now an idle keep-alive
connection), wait a moment, read /proc/PID/status, then check that one more
client is still served, and close everything. Traffic goes to the address
given (use 127.0.0.1 only).
"""
import argparse
import resource
import socket
import time


def proc_status(pid):
    fields = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            fields[key] = value.strip()
    return int(fields["Threads"]), int(fields["VmRSS"].split()[0])


def request(sock, path):
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: idle\r\n\r\n".encode())
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed before a response")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(body) < length:
        body += sock.recv(65536)
    return head.split(b"\r\n")[0].decode()


def one_more_client(host, port, timeout):
    start = time.monotonic()
    try:
        with socket.create_connection((host, port), timeout=timeout) as s:
            s.settimeout(timeout)
            status = request(s, "/bytes/16")
        return f"{status} in {time.monotonic() - start:.3f}s"
    except (OSError, ConnectionError) as e:
        return f"not served within {timeout}s ({e.__class__.__name__})"


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--proxy", required=True, help="HOST:PORT of the proxy (reverse mode)")
    p.add_argument("--pid", type=int, required=True, help="the proxy's process id")
    p.add_argument("-n", type=int, nargs="+", required=True, help="numbers of idle connections")
    p.add_argument("--timeout", type=float, default=3.0)
    args = p.parse_args()
    host, port = args.proxy.rsplit(":", 1)
    port = int(port)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

    threads0, rss0 = proc_status(args.pid)
    print(f"baseline: {threads0} threads, {rss0} KiB RSS")
    print(f"{'idle':>6} {'served':>6} {'threads':>7} {'RSS KiB':>8} {'KiB/conn':>8}  one more client")
    for n in args.n:
        conns, served = [], 0
        for _ in range(n):
            s = socket.create_connection((host, port), timeout=args.timeout)
            s.settimeout(args.timeout)
            conns.append(s)
        for s in conns:
            try:
                request(s, "/bytes/16")
                served += 1
            except (OSError, ConnectionError):
                pass
        time.sleep(0.5)
        threads, rss = proc_status(args.pid)
        per_conn = (rss - rss0) / n if n else 0
        extra = one_more_client(host, port, args.timeout)
        print(f"{n:>6} {served:>6} {threads:>7} {rss:>8} {per_conn:>8.1f}  {extra}")
        for s in conns:
            s.close()
        time.sleep(0.5)


if __name__ == "__main__":
    main()
