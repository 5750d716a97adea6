#!/usr/bin/env python3
"""Runs moto's Secrets Manager API server on 127.0.0.1 for the test harness.

Prints "READY <port>" once listening, and stops when its standard input
closes, so it can never outlive the test process that started it.
"""

import sys

from moto.server import ThreadedMotoServer


def main() -> int:
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 0
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    _, bound = server.get_host_and_port()
    print(f"READY {bound}", flush=True)
    try:
        sys.stdin.read()  # returns at EOF: the parent exited or closed the pipe
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
