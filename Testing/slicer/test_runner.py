"""Background process plumbing: progress parsing, OOM detection, environment, exit codes."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from D24FADSlicer import checkpoint_checksum_text
from D24FADSlicerLib import runner


def test_progress_lines_are_told_apart_from_log_lines():
    assert runner.parse_progress_line('{"event": "progress", "stage": "scoring", "done": 3, "total": 40}\n') == {
        "event": "progress", "stage": "scoring", "done": 3, "total": 40}
    assert runner.parse_progress_line('{"event":"done","stage":"scoring"}') == {"event": "done", "stage": "scoring"}
    for line in ("INFO d24fad: loading model", '{"no_event": 1}', "{not json}", "", "[1, 2]"):
        assert runner.parse_progress_line(line) is None


def test_out_of_memory_is_recognised_only_from_gpu_memory_messages():
    assert runner.looks_like_out_of_memory(["Traceback ...", "torch.OutOfMemoryError: CUDA out of memory."])
    assert runner.looks_like_out_of_memory(["RuntimeError: MPS backend out of memory (MPS allocated: 1 GB)"])
    assert not runner.looks_like_out_of_memory(["d24fad: error: cannot read input.nrrd", "MemoryView"])


def test_child_runs_this_python_with_the_shipped_engine_first_on_the_path():
    import d24fad

    assert runner.engine_python_executable() == sys.executable
    env = runner.engine_environment({"PYTHONPATH": "/elsewhere"})
    first, rest = env["PYTHONPATH"].split(os.pathsep, 1)
    assert Path(first) == Path(d24fad.__file__).resolve().parent.parent and rest == "/elsewhere"


def test_background_process_reports_events_messages_and_exit_status():
    script = ("import sys, json\n"
              "print('hello on stdout', flush=True)\n"
              "sys.stderr.write(json.dumps({'event': 'progress', 'done': 1, 'total': 2}) + '\\n')\n"
              "sys.stderr.write('d24fad: error: broken\\n')\n"
              "sys.exit(3)\n")
    process = runner.BackgroundProcess([sys.executable, "-c", script]).start()
    events = []
    while process.returncode is None:
        events += process.poll()
        time.sleep(0.01)
    events += process.poll()
    assert process.returncode == 3
    assert events == [{"event": "progress", "done": 1, "total": 2}]
    assert sorted(process.messages) == ["d24fad: error: broken", "hello on stdout"]


def test_checkpoint_checksum_shown_for_a_chosen_file(tmp_path):
    import hashlib

    model = tmp_path / "model.safetensors"
    model.write_bytes(b"weights")
    assert checkpoint_checksum_text(str(model)) == "SHA256 " + hashlib.sha256(b"weights").hexdigest()
    model.write_bytes(b"other weights!")  # a new version of the file is hashed again
    assert checkpoint_checksum_text(str(model)) == "SHA256 " + hashlib.sha256(b"other weights!").hexdigest()
    assert checkpoint_checksum_text("") == "default model shipped with the extension"
    assert "not found" in checkpoint_checksum_text(str(tmp_path / "absent.safetensors"))
