"""One writer per output folder: a lock file with the holder's pid, host and start time.

`dprepro run` takes `<out>/<name>/v<version>/.lock` (and the same in the log folder when that is
elsewhere) before it writes anything there, and removes it when it ends, however it ends short of
a kill. A second run for the same folder stops at once, naming the holder. A lock left by a dead
process of this host (checked by pid and the process's start time, so a reused pid is not taken for
the holder) is taken over, and the takeover is said; a lock from another host is never taken over
(its process cannot be checked from here): remove the file by hand when that run is gone.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from pathlib import Path

FILE = ".lock"


class Busy(Exception):
    """Another live process holds the lock. The message is one line; the CLI exits with 3."""

    exit_code = 3


def process_start(pid: int) -> str | None:
    """The start time of process `pid` in clock ticks since boot (/proc), None if it does not exist."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def alive(holder: dict) -> bool:
    """Whether the process that wrote `holder` still runs (same host assumed)."""
    start = process_start(holder.get("pid", -1))
    return start is not None and start == holder.get("pid_start")


class RunLock:
    """Context manager holding the lock files of `folders` (deduplicated) for one run."""

    def __init__(self, folders, what: str):
        self.paths = list(dict.fromkeys(Path(f).resolve() / FILE for f in folders))
        self.what = what
        self.held: list[Path] = []
        self.made: list[Path] = []   # folders created for the locks, removed again if left empty

    def __enter__(self):
        me = {"pid": os.getpid(), "pid_start": process_start(os.getpid()), "host": socket.gethostname(),
              "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "command": ["dprepro", *sys.argv[1:]],
              "what": self.what}
        try:
            for path in self.paths:
                self.take(path, me)
        except BaseException:
            self.release()
            raise
        return self

    def __exit__(self, *exc):
        self.release()

    def take(self, path: Path, me: dict) -> None:
        missing = [p for p in [path.parent, *path.parent.parents] if not p.exists()]
        path.parent.mkdir(parents=True, exist_ok=True)
        self.made += missing
        for _ in range(2):
            try:
                fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                holder = self.read(path)
                if holder is None:            # being written this instant, or empty: wait and look again
                    time.sleep(0.2)
                    holder = self.read(path) or {}
                if holder.get("pid") == me["pid"] and holder.get("host") == me["host"]:
                    return                    # held by this process already (the CLI locks before the pipeline)
                if holder.get("host") == me["host"] and not alive(holder):
                    print(f"dprepro: taking over the stale lock {path} of pid {holder.get('pid')} "
                          f"(no longer running; started {holder.get('started')})", file=sys.stderr)
                    path.unlink(missing_ok=True)
                    continue
                raise Busy(f"{path}: {holder.get('what', 'this folder')} is being written by another dprepro run "
                           f"(pid {holder.get('pid')} on {holder.get('host')}, since {holder.get('started')}: "
                           f"{' '.join(holder.get('command', []))}); wait for it, or use another --out/--logdir"
                           + ("" if holder.get("host") == me["host"] else
                              "; if that run is gone, delete the lock file")) from None
            with os.fdopen(fd, "w") as f:   # not an output: the lock, created exclusively (O_EXCL)
                json.dump(me, f)
            self.held.append(path)
            return
        raise Busy(f"{path}: could not take the lock (another run took it over first)")

    @staticmethod
    def read(path: Path) -> dict | None:
        try:
            return json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            return None

    def release(self) -> None:
        for path in self.held:
            holder = self.read(path)
            if holder and holder.get("pid") == os.getpid():
                path.unlink(missing_ok=True)
        self.held = []
        for folder in sorted(self.made, key=lambda p: -len(p.parts)):   # deepest first: nothing written, nothing left
            try:
                folder.rmdir()
            except OSError:
                pass
        self.made = []
