"""One writer per output folder: an OS lock on a file that names the holder (pid, host, start time).

`dprepro run` takes `<out>/<name>/v<version>/.lock` (and the same in the log folder when that is
elsewhere) before it writes anything there, and removes it when it ends. The lock itself is the
kernel's (`fcntl.flock`, exclusive, on the open file): it is released when the holder's process dies,
however it dies, so there is no stale lock to take over and no window in which two processes can
both take one (each unlinking the other's, as a lock by O_EXCL creation alone allowed). After taking
the lock a process checks that the path still names the file it locked (a holder releasing it
unlinks the file), else it tries again. The file's content is only the holder's details, for the
message a second run stops with; a file left by a process that died is said when it is reused. A
file naming another host is never reused (its process cannot be checked from here, and a network
file system may not carry the lock): remove the file by hand when that run is gone.
"""

from __future__ import annotations

import fcntl
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


class RunLock:
    """Context manager holding the lock files of `folders` (deduplicated) for one run."""

    def __init__(self, folders, what: str):
        self.paths = list(dict.fromkeys(Path(f).resolve() / FILE for f in folders))
        self.what = what
        self.held: list[Path] = []
        self.fds: dict[Path, int] = {}    # the open, locked file of each held path
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
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            from dprepro.files import write_failed
            raise write_failed(e, path.parent) from None
        self.made += missing
        for _ in range(20):
            fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                holder = self.read(path)
                if holder is None:            # being written this instant, or empty: wait and look again
                    time.sleep(0.2)
                    holder = self.read(path) or {}
                if holder.get("pid") == me["pid"] and holder.get("host") == me["host"]:
                    return                    # held by this process already (the CLI locks before the pipeline)
                raise Busy(self.busy(path, holder, me)) from None
            try:
                if os.fstat(fd).st_ino != os.stat(path).st_ino:
                    raise FileNotFoundError   # released (unlinked) between our open and our lock: again
            except FileNotFoundError:
                os.close(fd)
                continue
            holder = self.read(path) or {}
            if holder and holder.get("host") != me["host"]:
                os.close(fd)
                raise Busy(self.busy(path, holder, me))
            if holder:
                print(f"dprepro: taking over the stale lock {path} of pid {holder.get('pid')} "
                      f"(no longer running; started {holder.get('started')})", file=sys.stderr)
            os.ftruncate(fd, 0)
            os.write(fd, json.dumps(me).encode("utf-8"))   # not an output: the holder's details
            self.fds[path] = fd
            self.held.append(path)
            return
        raise Busy(f"{path}: could not take the lock (other runs kept taking it first)")

    @staticmethod
    def busy(path: Path, holder: dict, me: dict) -> str:
        return (f"{path}: {holder.get('what', 'this folder')} is being written by another dprepro run "
                f"(pid {holder.get('pid')} on {holder.get('host')}, since {holder.get('started')}: "
                f"{' '.join(holder.get('command', []))}); wait for it, or use another --out/--logdir"
                + ("" if holder.get("host") == me["host"] else "; if that run is gone, delete the lock file"))

    @staticmethod
    def read(path: Path) -> dict | None:
        try:
            return json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            return None

    def release(self) -> None:
        for path in self.held:
            path.unlink(missing_ok=True)     # still under our lock: whoever opened it before tries again
            os.close(self.fds.pop(path))
        self.held = []
        for folder in sorted(self.made, key=lambda p: -len(p.parts)):   # deepest first: nothing written, nothing left
            try:
                folder.rmdir()
            except OSError:
                pass
        self.made = []
