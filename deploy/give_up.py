"""supervisord event listener: when a program is given up (FATAL: it kept dying right after
its start), stop supervisord, so that bin/run ends with the reason in its log instead of
serving half a console."""

from __future__ import annotations

import os
import signal
import sys


def main() -> None:
    while True:
        sys.stdout.write("READY\n")
        sys.stdout.flush()
        header = dict(token.split(":", 1) for token in sys.stdin.readline().split())
        payload = sys.stdin.read(int(header.get("len", 0)))
        sys.stdout.write("RESULT 2\nOK")
        sys.stdout.flush()
        if header.get("eventname") == "PROCESS_STATE_FATAL":
            fields = dict(token.split(":", 1) for token in payload.split())
            name = fields.get("processname", "?")
            print(
                f"{name} keeps failing right after its start; stopping. See its log above.",
                file=sys.stderr,
                flush=True,
            )
            os.kill(os.getppid(), signal.SIGTERM)


if __name__ == "__main__":
    main()
