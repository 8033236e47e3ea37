"""The background builds across processes: at most ``build_processes()`` compile at once on the machine."""

import os
import pathlib
import subprocess
import sys
import textwrap
import time
import uuid

import numpy as np
import pytest

import fastbp
from fastbp import builder, dispatch
from fastbp.kernels import build, codegen
from fastbp.kernels import compiled as compiled_kernels

fcntl = pytest.importorskip("fcntl")

SCRIPT = textwrap.dedent("""
    import sys, numpy as np, fastbp
    width, wait = int(sys.argv[1]), sys.argv[2] == "prepare"
    net = fastbp.Network([3, width, 2], hidden="tanh", output="identity", loss="mse", seed=0)
    assert net.dispatch.mode == "background"
    net.train_step(np.ones((8, 3)), np.ones((8, 2)))
    if wait:
        net.prepare(8)
""")


def _builds(token):
    """{pid: peak resident kB} of the build children started under ``token`` (their environment carries it)."""
    found = {}
    for proc in pathlib.Path("/proc").iterdir():
        try:
            if b"fastbp.kernels.build import main" not in (proc / "cmdline").read_bytes():
                continue
            if f"FASTBP_TEST_TOKEN={token}".encode() not in (proc / "environ").read_bytes().split(b"\0"):
                continue
            status = (proc / "status").read_text()
        except OSError:  # not a process, or it ended while read
            continue
        found[int(proc.name)] = int(next(line.split()[1] for line in status.splitlines()
                                         if line.startswith("VmHWM")))
    return found


@pytest.mark.skipif(not pathlib.Path("/proc/self/environ").exists(), reason="needs Linux's /proc")
def test_eight_processes_meeting_eight_new_architectures_build_at_most_n_at_once():
    """Eight processes started together, each a network of a new architecture (a sweep): at most FASTBP_BUILDS=2 of
    their build children are alive at any moment; the two that wait for their kernels (prepare()) get them, the
    six that end at once leave each build finished or not started, never half written; no slot stays held."""
    widths = list(range(11, 19))
    generated = fastbp._jit.cache_dir() / "generated"
    for width in widths:  # a new architecture: its markers, lock and module go (Numba's own cache may still hold it)
        key = compiled_kernels.key(codegen.signature([3, width, 2], "tanh", "identity", "mse", np.float64))
        for path in generated.glob(f"fastbp_net_{key}.*"):
            path.unlink()
    for kernel, argtypes in dispatch.generic_signatures(np.float64):  # what every process and build runs, compiled
        if kernel.__name__.startswith("train_step"):                  # once here, not in each of them
            kernel.compile(argtypes)
    token = uuid.uuid4().hex
    env = {**os.environ, dispatch.ENVIRONMENT: "background", "FASTBP_BUILDS": "2", "FASTBP_TEST_TOKEN": token}
    procs = [subprocess.Popen([sys.executable, "-c", SCRIPT, str(width), "prepare" if i % 4 == 3 else "end"], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for i, width in enumerate(widths)]
    most, memory, seen, deadline = 0, {}, set(), time.monotonic() + 900
    while time.monotonic() < deadline:
        alive = _builds(token)
        most, seen = max(most, len(alive)), seen | set(alive)
        memory.update(alive)
        if all(proc.poll() is not None for proc in procs) and not alive:
            break
        time.sleep(0.02)
    outputs = [proc.communicate() for proc in procs]
    assert all(proc.returncode == 0 for proc in procs), [err for _, err in outputs]
    assert 1 <= most <= 2, most
    assert len(seen) >= 2  # every waiting process's build ran
    print(f"build children: {len(seen)}, at most {most} at once, peak resident {max(memory.values()) / 1024:.0f} MB")
    for i in range(2):  # every slot free again (a build whose parent ended as it started it may still be running)
        with open(fastbp._jit.cache_dir() / "builds" / f"slot-{i}.lock") as slot:
            while True:
                most = max(most, len(_builds(token)))
                try:
                    fcntl.flock(slot, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    assert time.monotonic() < deadline, f"slot {i} still held"
                    time.sleep(0.05)
    assert most <= 2, most
    for i, width in enumerate(widths):
        sig = codegen.signature([3, width, 2], "tanh", "identity", "mse", np.float64)
        files = sorted(path.name.split(".", 1)[1] for path in generated.glob(f"fastbp_net_{compiled_kernels.key(sig)}.*"))
        if i % 4 == 3:
            assert build.is_built(sig, "serial"), files
        assert files in (["lock", "py", "serial.built"], ["py"], []), files  # built, or never started


def test_the_number_of_builds_at_once_is_a_positive_integer(monkeypatch):
    """FASTBP_BUILDS: a positive integer, else a clear error naming it; unset, half the cores, at least 1."""
    monkeypatch.delenv("FASTBP_BUILDS", raising=False)
    assert builder.build_processes() == max(1, (os.cpu_count() or 2) // 2)
    monkeypatch.setenv("FASTBP_BUILDS", "3")
    assert builder.build_processes() == 3
    for bad in ("0", "-1", "two", "1.5", ""):
        monkeypatch.setenv("FASTBP_BUILDS", bad)
        with pytest.raises(ValueError, match="FASTBP_BUILDS must be a positive integer"):
            builder.build_processes()


@pytest.mark.parametrize("hidden", ["tanh", ("silu", "tanh")])
def test_a_signature_reaches_the_build_child_unchanged(hidden):
    """The child names what it builds by the signature's repr: a tuple of hidden activations must come back a tuple
    (as a list, the child would build kernels under a key the network never looks up)."""
    sig = codegen.signature([3, 4, 5, 2], hidden, "identity", "mse", np.float32)
    back = build.decode(build.encode(sig))
    assert back == sig and compiled_kernels.key(back) == compiled_kernels.key(sig)
