"""One writer per folder (lock.py): the kernel's lock, so that processes racing for a lock left by a
dead run end with exactly one holder (issue 34, finding 2)."""

import json
import os
import subprocess
import sys
import time

import pytest

from conftest import ROOT

RACER = """
import json, sys, time
from pathlib import Path
sys.path.insert(0, {src!r})
from dprepro.lock import Busy, RunLock
folder, start, hold = Path(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3])
while time.time() < start:
    pass
try:
    with RunLock([folder], "race"):
        print("held", flush=True)
        time.sleep(hold)
except Busy:
    print("busy", flush=True)
"""


def stale_lock(folder):
    """A lock file as a run that died left it (pid of a finished process, this host)."""
    dead = subprocess.Popen(["true"])
    dead.wait()
    (folder / ".lock").write_text(json.dumps({"pid": dead.pid, "pid_start": "1", "host": os.uname().nodename,
                                              "started": "then", "command": ["dprepro", "run"]}))


@pytest.mark.full
def test_racers_on_a_stale_lock_find_exactly_one_holder(tmp_path):
    """8 processes start at the same instant on a lock left by a dead process, 30 rounds (~30 s: full
    tier): each round exactly one holds it (the holder keeps it 0.5 s, longer than the others take to
    try). The lock by O_EXCL creation and unlink-to-take-over (main before issue 34) had two holders in
    2 of 15 rounds of this race, measured, and this test failed on it in its third round."""
    script = tmp_path / "racer.py"
    script.write_text(RACER.format(src=str(ROOT / "src")))
    for round_ in range(30):
        folder = tmp_path / f"round-{round_}"
        folder.mkdir()
        stale_lock(folder)
        start = time.time() + 0.5
        racers = [subprocess.Popen([sys.executable, str(script), str(folder), str(start), "0.5"],
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(8)]
        said = [r.communicate(timeout=60)[0].strip() for r in racers]
        assert sorted(said) == ["busy"] * 7 + ["held"], (round_, said)
        assert not (folder / ".lock").exists()          # the holder removed it on release


def test_a_killed_holder_releases_the_lock_at_once(tmp_path):
    """The kernel releases the lock with the process: a run killed with SIGKILL leaves its file, and the
    next run takes the lock (saying so) without waiting or checking pids."""
    script = tmp_path / "racer.py"
    script.write_text(RACER.format(src=str(ROOT / "src")))
    holder = subprocess.Popen([sys.executable, str(script), str(tmp_path), "0", "60"], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    second = subprocess.run([sys.executable, str(script), str(tmp_path), "0", "0"], capture_output=True, text=True)
    assert second.stdout.strip() == "busy"
    holder.kill()
    holder.wait()
    assert (tmp_path / ".lock").exists()
    third = subprocess.run([sys.executable, str(script), str(tmp_path), "0", "0"], capture_output=True, text=True)
    assert third.stdout.strip() == "held" and "taking over the stale lock" in third.stderr
