"""The disk cache users can see: ``python -m fastbp cache`` (listed, pruned, cleared) and ``python -m fastbp info``."""

import json
import os
import pickle
import shutil
import subprocess
import sys
import textwrap
import time

import numba
import numpy as np
import pytest

import fastbp
from fastbp import cache, cli
from fastbp._jit import PACKAGE, source_hash
from fastbp.kernels.compiled import SOURCES_LINE

OLD = "0" * 64  # the sources of a fastbp no longer installed


def _index(folder, name, sources, kernels):
    """A Numba index file stamped for ``sources`` (as fastbp's locator stamps it) and ``kernels`` data files."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / f"{name}.py311.nbi", "wb") as f:
        pickle.dump(numba.__version__, f)
        f.write(pickle.dumps((sources + "f" * 64, {})))
    for i in range(1, kernels + 1):
        (folder / f"{name}.py311.{i}.nbc").write_bytes(b"x" * 100)


def _module(root, key, sources):
    generated = root / "generated"
    generated.mkdir(parents=True, exist_ok=True)
    (generated / f"fastbp_net_{key}.py").write_text(f"{SOURCES_LINE}{sources}\n\"\"\"a generated module\"\"\"\n")
    for suffix in (".lock", ".serial.built"):
        (generated / f"fastbp_net_{key}{suffix}").touch()


def _plan(root, name, sources, version):
    (root / "plans").mkdir(parents=True, exist_ok=True)
    (root / "plans" / f"{name}.json").write_text(json.dumps({"key": {"sources": sources, "fastbp": version},
                                                             "times": {}}))


@pytest.fixture
def root(monkeypatch, tmp_path):
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache" / "fastbp"


def test_the_cache_is_listed_per_state_of_the_sources_and_pruned_of_what_no_installation_uses(root, tmp_path):
    """Three states of the sources: this installation's, another installation's (a package elsewhere holding other
    sources, which noted itself), and one no installation computes any more. The listing counts each one's kernels,
    plans and bytes; --prune removes the third only (and its note), leaving the other two's files byte for byte;
    --clear removes everything."""
    other_package = tmp_path / "other" / "fastbp"
    shutil.copytree(PACKAGE, other_package, ignore=shutil.ignore_patterns("__pycache__"))
    with open(other_package / "config.py", "a") as f:
        f.write("\n# another version\n")
    other = source_hash(other_package, numba.__version__)
    assert other != source_hash()
    cache.mark_used.cache_clear()
    cache.mark_used()
    (root / "versions" / f"{other[:24]}.json").write_text(json.dumps(
        {"sources": other, "fastbp": "0.0.9", "numba": numba.__version__, "package": str(other_package)}))
    (root / "versions" / f"{OLD[:24]}.json").write_text(json.dumps(
        {"sources": OLD, "fastbp": "0.0.1", "numba": numba.__version__, "package": str(tmp_path / "gone")}))
    for sources, kernels, tag in ((source_hash(), 3, "a"), (other, 2, "b"), (OLD, 4, "c")):
        _index(root / "numba" / f"kernels_{tag}", "generic.train_step-10", sources, kernels)
        _module(root, tag * 24, sources)
        _plan(root, tag, sources, {"a": fastbp.__version__, "b": "0.0.9", "c": "0.0.1"}[tag])
    groups = cache.summary()
    assert set(groups) == {source_hash(), other, OLD}
    assert [(groups[s]["kernels"], groups[s]["plans"], groups[s]["installed"], groups[s]["this"])
            for s in (source_hash(), other, OLD)] == [(3, 1, True, True), (2, 1, True, False), (4, 1, False, False)]
    assert groups[other]["fastbp"] == "0.0.9" and groups[OLD]["fastbp"] == "0.0.1"
    assert all(g["bytes"] > 0 for g in groups.values())
    listing = cache.report()
    assert str(root) in listing and "this installation" in listing and "unused: --prune removes it" in listing

    kept = {path: path.read_bytes() for path, _, sources, *_ in cache.scan() if sources in (source_hash(), other)}
    removed = [path for path, _, sources, *_ in cache.scan() if sources == OLD]
    assert cli.main(["cache", "--prune"]) == 0
    assert not any(path.exists() for path in removed) and len(removed) == 5 + 3 + 1
    assert all(path.read_bytes() == data for path, data in kept.items())
    assert set(cache.summary()) == {source_hash(), other}
    assert not (root / "versions" / f"{OLD[:24]}.json").exists()

    assert cli.main(["cache", "--clear"]) == 0
    assert not root.exists() and cache.summary() == {}


def test_a_file_no_state_claims_is_listed_as_unknown_and_pruned(root):
    """A Numba index that does not unpickle, a generated module without the sources line: unknown, pruned."""
    (root / "numba" / "x").mkdir(parents=True)
    (root / "numba" / "x" / "f-1.py311.nbi").write_bytes(b"not a pickle")
    (root / "generated").mkdir()
    (root / "generated" / "fastbp_net_old.py").write_text('"""an older generated module"""\n')
    assert set(cache.summary()) == {None}
    assert cache.prune() == (2, len(b"not a pickle") + len('"""an older generated module"""\n'))
    assert cache.summary() == {}


def test_clearing_the_cache_while_another_process_compiles_makes_it_rebuild_not_fail(root):
    """A process compiling a network's kernels (written, cached and loaded from the cache) while the cache is cleared
    every 50 ms: it finishes with the right losses; the next process finds the cache working."""
    script = textwrap.dedent("""
        import numpy as np, fastbp
        X, Y = np.ones((4, 3)), np.ones((4, 2))
        net = fastbp.Network([3, 5, 2], hidden="tanh", output="identity", loss="mse", seed=0, compiled=True)
        print(repr(float(net.train_step(X, Y))))
    """)
    expected = fastbp.Network([3, 5, 2], hidden="tanh", output="identity", loss="mse", seed=0,
                              compiled=False).train_step(np.ones((4, 3)), np.ones((4, 2)))
    env = {**os.environ, "NUMBA_CACHE_DIR": str(root.parent)}
    proc = subprocess.Popen([sys.executable, "-c", script], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    clears = 0
    while proc.poll() is None:
        cache.clear()
        clears += 1
        time.sleep(0.05)
    out, err = proc.communicate()
    assert proc.returncode == 0, err
    assert abs(float(out) - expected) < 1e-12 and clears > 10
    again = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0 and abs(float(again.stdout) - expected) < 1e-12, again.stderr


def test_info_prints_what_a_bug_report_needs(root, capsys):
    assert cli.main(["info"]) == 0
    out = capsys.readouterr().out
    for expected in (f"fastbp {fastbp.__version__}", f"numba {numba.__version__}", "numpy ", "CPU: ",
                     f"threads: numba {numba.config.NUMBA_NUM_THREADS}", f"cache: {root}", "background builds: 0 running"):
        assert expected in out, (expected, out)
