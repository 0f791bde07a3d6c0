"""Running a Python snippet in its own process group and interrupting it as a terminal would.

A terminal's Ctrl-C sends SIGINT to the whole foreground process group: the script and every
worker process it started. :func:`interrupt_group` does that and reports whether the group
emptied in time; a hang is turned into a failure (and the group killed), never a stuck test.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import alexnet_ext

# The children import the alexnet_ext this test process imported.
REPO_PYTHON = str(Path(alexnet_ext.__file__).resolve().parent.parent)


def start_group(code: str, *args, cwd=None) -> subprocess.Popen:
    """``python -c code args...`` as the leader of a new process group (stdout/stderr piped)."""
    env = os.environ.copy()
    env["PYTHONPATH"] = REPO_PYTHON + os.pathsep + env.get("PYTHONPATH", "")
    # On a hang, SIGUSR1 makes the leader print every thread's stack to stderr.
    code = ("import faulthandler, signal\n"
            "faulthandler.register(signal.SIGUSR1, all_threads=True)\n" + code)
    return subprocess.Popen([sys.executable, "-c", code, *map(str, args)], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)


def wait_for_line(proc: subprocess.Popen, marker: str, timeout: float) -> bool:
    """Read the child's stdout until a line starting with ``marker`` (False on EOF/timeout)."""
    import selectors

    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if not sel.select(max(0.0, deadline - time.monotonic())):
                continue
            line = proc.stdout.readline()
            if not line:
                return False
            if line.startswith(marker):
                return True
        return False
    finally:
        sel.close()


def group_alive(pgid: int) -> bool:
    """Whether a live (not zombie) process is in group ``pgid``. Reads /proc where there is one:
    orphaned zombies stay in the group until some init reaps them, which a container may not."""
    if not os.path.isdir("/proc/self"):
        try:
            os.killpg(pgid, 0)
            return True
        except ProcessLookupError:
            return False
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        # "pid (comm) state ppid pgrp ...": comm may hold spaces, so split after its ")".
        fields = stat[stat.rfind(")") + 2:].split()
        if int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return False


def interrupt_group(proc: subprocess.Popen, timeout: float) -> tuple[bool, str]:
    """SIGINT to the child's process group; wait up to ``timeout`` s for the leader to exit and
    the group to empty. Returns ``(exited_cleanly_in_time, stderr)``; on a hang, the group is
    killed (SIGKILL) and the first value is False."""
    pgid = proc.pid
    os.killpg(pgid, signal.SIGINT)
    deadline = time.monotonic() + timeout
    ok = True
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        ok = False
    while ok and group_alive(pgid) and time.monotonic() < deadline:
        time.sleep(0.05)
    if group_alive(pgid):
        ok = False
    if not ok:
        if proc.poll() is None:  # the leader hangs: ask for its stacks (see start_group)
            os.kill(proc.pid, signal.SIGUSR1)
            time.sleep(2.0)
        try:
            os.killpg(pgid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(10)
    err = proc.stderr.read()
    proc.stdout.close()
    proc.stderr.close()
    return ok, err


# Module-level functions for map_ordered tests (spawned workers import them by name).
def square_or_fail(x):
    """x*x; raises KeyError for x == -1; exits the process for x == -2."""
    if x == -1:
        raise KeyError("minus one")
    if x == -2:
        os._exit(3)
    return x * x
