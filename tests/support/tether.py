#!/usr/bin/env python3
"""Runs a command so that it can never outlive the test that started it.

Usage: tether.py LOGFILE -- COMMAND ARGS...

Starts COMMAND in a new process group with stdout and stderr appended to
LOGFILE, then waits for either of two things:
  * its own standard input closes (the test process exited, crashed or was
    killed): the whole process group gets SIGTERM, then SIGKILL after 5 s —
    so grandchildren (Envoy started by Envoy Gateway through func-e) go too;
  * COMMAND exits: tether exits with its status, after killing what is left
    of the group.
Used for etcd, kube-apiserver, the ESO controller and Envoy Gateway.
"""

import os
import signal
import subprocess
import sys
import threading


def kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGTERM)
    except ProcessLookupError:
        return
    for _ in range(50):
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return
        threading.Event().wait(0.1)
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def main() -> int:
    if len(sys.argv) < 4 or sys.argv[2] != "--":
        print(__doc__, file=sys.stderr)
        return 2
    log = open(sys.argv[1], "ab", buffering=0)
    child = subprocess.Popen(
        sys.argv[3:], stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True
    )
    pgid = child.pid

    def watch_stdin() -> None:
        try:
            sys.stdin.buffer.read()
        finally:
            kill_group(pgid)

    threading.Thread(target=watch_stdin, daemon=True).start()
    status = child.wait()
    kill_group(pgid)
    return status if status >= 0 else 128 - status


if __name__ == "__main__":
    sys.exit(main())
