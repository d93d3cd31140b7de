"""Run the engine's command line in a child process that can be watched and stopped.

The GUI polls :meth:`BackgroundProcess.poll` from a timer, a console caller polls it in
a loop: both read the same machine-readable progress lines (``--progress json``) and
both stop the whole process tree on cancel (PyTorch may start worker processes).
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Mapping, Optional, Sequence

# Seconds a cancelled process gets to exit on SIGTERM before the whole group is killed.
TERMINATE_GRACE_SECONDS = 3.0
# Non-progress output lines kept for error reports (the end of a traceback matters most).
KEPT_MESSAGE_LINES = 200

_OUT_OF_MEMORY_MARKERS = ("out of memory", "outofmemoryerror", "cuda error: out of memory")


def parse_progress_line(line: str) -> Optional[dict]:
    """The JSON event on a line, or None when the line is ordinary log output."""
    text = line.strip()
    if not (text.startswith("{") and text.endswith("}")):
        return None
    try:
        event = json.loads(text)
    except ValueError:
        return None
    return event if isinstance(event, dict) and "event" in event else None


def looks_like_out_of_memory(messages: Sequence[str]) -> bool:
    """True when a failed run's output reports a GPU (CUDA / MPS) out-of-memory error."""
    text = "\n".join(messages).lower()
    return any(marker in text for marker in _OUT_OF_MEMORY_MARKERS)


def engine_python_executable() -> str:
    """The interpreter that runs ``-m d24fad``: PythonSlicer inside Slicer, else this Python.

    Inside the Slicer application ``sys.executable`` is the application itself, which
    cannot run ``-m``; Slicer puts its ``PythonSlicer`` launcher on PATH (the way
    ``slicer.util.executePythonModule`` finds it). Under PythonSlicer or a plain Python,
    ``sys.executable`` is already right.
    """
    import shutil

    slicer_module = sys.modules.get("slicer")
    if slicer_module is not None and hasattr(slicer_module, "app"):
        found = shutil.which("PythonSlicer")
        if found:
            return found
        beside = Path(sys.executable).with_name("PythonSlicer.exe" if os.name == "nt" else "PythonSlicer")
        if beside.is_file():
            return str(beside)
    return sys.executable


def engine_environment(base: Optional[Mapping[str, str]] = None) -> dict[str, str]:
    """Environment for the child: this process's environment (as Slicer's own
    ``executePythonModule`` uses) with the folder holding the ``d24fad`` package first on
    PYTHONPATH, so the child runs the engine shipped with this module."""
    import d24fad

    env = dict(os.environ if base is None else base)
    package_parent = str(Path(d24fad.__file__).resolve().parent.parent)
    existing = env.get("PYTHONPATH", "")
    env["PYTHONPATH"] = package_parent + (os.pathsep + existing if existing else "")
    env["PYTHONUNBUFFERED"] = "1"
    return env


class BackgroundProcess:
    """A child process whose stderr progress events and messages are read by threads."""

    def __init__(self, command: Sequence[str], env: Optional[Mapping[str, str]] = None, cwd=None):
        self.command = [str(part) for part in command]
        self._env = dict(env) if env is not None else None
        self._cwd = cwd
        self._process: Optional[subprocess.Popen] = None
        self._events: "queue.Queue[dict]" = queue.Queue()
        self._messages: list[str] = []
        self._messages_lock = threading.Lock()
        self._readers: list[threading.Thread] = []
        self.cancelled = False

    @property
    def pid(self) -> Optional[int]:
        return self._process.pid if self._process is not None else None

    def start(self) -> "BackgroundProcess":
        options = {}
        if os.name == "nt":
            options["creationflags"] = subprocess.CREATE_NEW_PROCESS_GROUP | getattr(subprocess, "CREATE_NO_WINDOW", 0)
        else:
            # Own session = own process group, so cancel can signal every descendant.
            options["start_new_session"] = True
        self._process = subprocess.Popen(
            self.command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            env=self._env, cwd=self._cwd, text=True, encoding="utf-8", errors="replace", bufsize=1, **options)
        for stream in (self._process.stdout, self._process.stderr):
            reader = threading.Thread(target=self._read_lines, args=(stream,), daemon=True)
            reader.start()
            self._readers.append(reader)
        return self

    def _read_lines(self, stream) -> None:
        for line in stream:
            event = parse_progress_line(line)
            if event is not None:
                self._events.put(event)
            elif line.strip():
                with self._messages_lock:
                    self._messages.append(line.rstrip())
                    del self._messages[:-KEPT_MESSAGE_LINES]
        stream.close()

    def poll(self) -> list[dict]:
        """Progress events received since the last call (never blocks)."""
        events = []
        while True:
            try:
                events.append(self._events.get_nowait())
            except queue.Empty:
                return events

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def returncode(self) -> Optional[int]:
        if self._process is None or self._process.poll() is None:
            return None
        # The exit status is only final for callers once every output line is read.
        for reader in self._readers:
            reader.join()
        return self._process.returncode

    @property
    def messages(self) -> list[str]:
        with self._messages_lock:
            return list(self._messages)

    def cancel(self) -> None:
        """Stop the process and everything it started; returns once they are gone."""
        if self._process is None:
            return
        self.cancelled = True
        kill_process_tree(self._process)
        for reader in self._readers:
            reader.join(timeout=TERMINATE_GRACE_SECONDS)


def kill_process_tree(process: subprocess.Popen) -> None:
    """Terminate ``process`` and its descendants (started with its own process group)."""
    if os.name == "nt":
        subprocess.run(["taskkill", "/F", "/T", "/PID", str(process.pid)],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
        process.wait()
        return
    group = process.pid
    _signal_group(group, signal.SIGTERM)
    try:
        process.wait(timeout=TERMINATE_GRACE_SECONDS)
    except subprocess.TimeoutExpired:
        pass
    # Descendants may outlive the leader (or ignore SIGTERM): kill what is left.
    _signal_group(group, signal.SIGKILL)
    process.wait()


def _signal_group(group: int, signal_number: int) -> None:
    try:
        os.killpg(group, signal_number)
    except (ProcessLookupError, PermissionError):
        pass
