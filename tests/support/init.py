#!/usr/bin/env python3
"""PID 1 of the node tests' PID namespace (tests/k8s/main.rs).

Usage: init.py COMMAND ARGS...

Runs COMMAND, reaps every orphan re-parented to it meanwhile (containerd's
shims daemonize, so they end up here), and exits with COMMAND's status.
When it exits the kernel kills whatever is left in the namespace: kubelet,
containerd, its shims and every container, even after a failed test.
"""

import os
import signal
import subprocess
import sys


def main() -> int:
    child = subprocess.Popen(sys.argv[1:])
    # Forward the signals a user or CI sends to the tests.
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda s, _f: child.send_signal(s))
    while True:
        try:
            pid, status = os.waitpid(-1, 0)
        except ChildProcessError:
            return 1
        except InterruptedError:
            continue
        if pid == child.pid:
            return os.waitstatus_to_exitcode(status)


if __name__ == "__main__":
    code = main()
    sys.exit(code if code >= 0 else 128 - code)
