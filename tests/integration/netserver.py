#!/usr/bin/env python3
"""Servers for the network tests, run inside the test's own network
namespace (nettest.py starts it with `ip netns exec`): each listens on one
of the namespace's documentation-range addresses and nowhere else.

  HTTP  ADDR:80 and ADDR:8080  GET /name -> "hello from ADDR:PORT\\n";
        GET /bytes/N -> N bytes of a fixed pattern (benchmarks)
  echo  ADDR:7 (TCP)           sends back what it gets, until EOF
  UDP   ADDR:69                counts datagrams (the count is in the file
                               COUNTS, one line "udp N" per datagram)

Usage: netserver.py READY_FILE COUNTS_FILE ADDR...
The READY_FILE appears once every socket listens.
"""
import http.server
import os
import socket
import socketserver
import sys
import threading

PATTERN = bytes(range(256)) * 256     # 64 KiB


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"

    def log_message(self, fmt, *args):
        pass

    def do_GET(self):
        host, port = self.server.server_address[:2]
        if self.path.startswith("/bytes/"):
            try:
                n = int(self.path[len("/bytes/"):])
            except ValueError:
                self.send_error(400)
                return
            self.send_response(200)
            self.send_header("Content-Length", str(n))
            self.end_headers()
            while n > 0:
                chunk = PATTERN[:min(n, len(PATTERN))]
                self.wfile.write(chunk)
                n -= len(chunk)
            return
        body = ("hello from %s:%d\n" % (host, port)).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class HTTP(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True


class Echo(socketserver.ThreadingMixIn, socketserver.TCPServer):
    daemon_threads = True
    allow_reuse_address = True


class EchoHandler(socketserver.BaseRequestHandler):
    def handle(self):
        while True:
            data = self.request.recv(65536)
            if not data:
                break
            self.request.sendall(data)
        self.request.shutdown(socket.SHUT_WR)


def udp_counter(sock, counts, lock):
    while True:
        sock.recvfrom(65536)
        with lock:
            with open(counts, "a") as f:
                f.write("udp 1\n")


def main():
    ready, counts, addrs = sys.argv[1], sys.argv[2], sys.argv[3:]
    lock = threading.Lock()
    servers = []
    for a in addrs:
        servers.append(HTTP((a, 80), Handler))
        servers.append(HTTP((a, 8080), Handler))
        servers.append(Echo((a, 7), EchoHandler))
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        u.bind((a, 69))
        threading.Thread(target=udp_counter, args=(u, counts, lock),
                         daemon=True).start()
    for s in servers:
        threading.Thread(target=s.serve_forever, daemon=True).start()
    fd = os.open(ready, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW,
                 0o600)
    os.close(fd)
    threading.Event().wait()


if __name__ == "__main__":
    main()
