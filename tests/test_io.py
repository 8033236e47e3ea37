"""Model files: atomic, crash-safe saves; every corrupted, truncated, newer or hand-edited file refused clearly."""

import io
import os
import pickle
import signal
import subprocess
import sys
import textwrap
import time
import zipfile

import numpy as np
import pytest

import fastbp


def model(seed=0):
    return fastbp.Network([4, 6, 3], hidden="tanh", output="softmax", loss="cross_entropy",
                          optimizer=fastbp.Adam(lr=0.01), seed=seed)


def assert_same(a, b):
    assert repr(a) == repr(b) and a.flat.tobytes() == b.flat.tobytes() and a.hyper.tobytes() == b.hyper.tobytes()


def test_corrupted_files_are_refused(tmp_path):
    """Every single-byte flip and every truncation at k/16 of the file: a ValueError, or (a flip in bytes the
    format does not use, such as a zip timestamp) the same model. Never a wrong model, never another error."""
    net = model()
    path = tmp_path / "m.npz"
    net.save(path)
    data = path.read_bytes()
    rng = np.random.default_rng(0)
    positions = sorted(set(rng.integers(0, len(data), 300).tolist()))
    corrupted = []
    for pos in positions:
        flipped = bytearray(data)
        flipped[pos] ^= 1 << int(rng.integers(8))
        corrupted.append(bytes(flipped))
    corrupted += [data[:len(data) * k // 16] for k in range(16)]
    refused = 0
    for i, blob in enumerate(corrupted):
        bad = tmp_path / f"bad{i}.npz"
        bad.write_bytes(blob)
        try:
            loaded = fastbp.Network.load(bad)
        except ValueError as exc:
            assert str(bad) in str(exc)
            refused += 1
        else:
            assert_same(loaded, net)
    print(f"{len(corrupted)} corrupted files ({len(positions)} flips, 16 truncations): {refused} refused, "
          f"{len(corrupted) - refused} flips in unused bytes loaded the same model")
    assert refused >= len(corrupted) * 0.8


def test_per_layer_activations_saved_pickled_and_loaded(tmp_path):
    """A network with an activation per hidden layer: format 2, its names as an array, loaded and unpickled the same;
    one activation for all keeps format 1 (what fastbp read before per-layer activations)."""
    net = fastbp.Network([4, 6, 5, 3], hidden=["gelu", "elu"], output="softmax", loss="cross_entropy",
                         optimizer=fastbp.Adam(lr=0.01), seed=0)
    net.train_step(np.ones((2, 4)), np.array([0, 2]))
    net.save(tmp_path / "mixed.npz")
    model().save(tmp_path / "one.npz")
    with np.load(tmp_path / "mixed.npz") as mixed, np.load(tmp_path / "one.npz") as one:
        assert (int(mixed["format"]), mixed["hidden"].tolist()) == (2, ["gelu", "elu"])
        assert (int(one["format"]), one["hidden"].shape, str(one["hidden"])) == (1, (), "tanh")
    for back in (fastbp.Network.load(tmp_path / "mixed.npz"), pickle.loads(pickle.dumps(net))):
        assert_same(back, net)
        assert back.hidden == ("gelu", "elu") and back.activations == ("gelu", "elu", "softmax")
        np.testing.assert_array_equal(back.spec, net.spec)


def rewrite(path, **changes):
    """The saved file with some entries changed, added (value given) or removed (value None)."""
    with np.load(path, allow_pickle=False) as f:
        arrays = {k: f[k] for k in f.files}
    for key, value in changes.items():
        if value is None:
            arrays.pop(key)
        else:
            arrays[key] = value
    np.savez(path, **arrays)


@pytest.mark.parametrize("changes, match", [
    ({"format": np.int64(3)}, "newer fastbp .* upgrade"),
    ({"format": None}, "not a fastbp model file"),
    ({"format": np.int64(0)}, "not a fastbp model file of format 2"),  # below the first format
    ({"format": np.array([1])}, "not a fastbp model file of format 2"),  # not a scalar
    ({"format": np.float64(1.0)}, "not a fastbp model file of format 2"),  # not an integer
    # hyper is float64, whatever the network's dtype
    ({"hyper": fastbp.Adam(lr=0.01).hyper().astype(np.float32)}, "do not fit"),
    ({"hyper": fastbp.Adam(lr=0.01).hyper().astype(np.longdouble)}, "do not fit"),
    ({"sizes": np.array([4, 7, 3])}, "do not fit"),
    ({"hidden": np.str_("swish")}, "describes no valid network"),
    ({"hidden": np.array(["swish"])}, "describes no valid network"),
    ({"hidden": np.array(["relu", "tanh"])}, "describes no valid network"),  # one name per hidden layer: 1 here
    ({"hidden": np.array([["relu", "tanh"]])}, "describes no valid network"),
    ({"flat": np.full((4, 51), np.nan)}, "NaN or infinity"),
    ({"flat": np.zeros((4, 51), np.float32)}, "do not fit"),
    ({"extra": np.zeros(3)}, "not a fastbp model file of format 2"),
    ({"hyper": None}, "not a fastbp model file of format 2"),
])
def test_hand_edited_files_are_refused(tmp_path, changes, match):
    path = tmp_path / "m.npz"
    model().save(path)
    rewrite(path, **changes)
    with pytest.raises(ValueError, match=match):
        fastbp.Network.load(path)


def test_pickled_content_is_refused(tmp_path):
    path = tmp_path / "m.npz"
    model().save(path)
    with np.load(path, allow_pickle=False) as f:
        arrays = {k: f[k] for k in f.files}
    arrays["sizes"] = np.array([4, 6, 3], dtype=object)  # an object array is stored pickled
    np.savez(path, **arrays)
    with pytest.raises(ValueError, match="not a readable fastbp model"):
        fastbp.Network.load(path)


def test_files_record_the_version_and_no_pickle(tmp_path):
    path = tmp_path / "m.npz"
    model().save(path)
    with zipfile.ZipFile(path) as z:
        for name in z.namelist():
            header = z.read(name)[:128]
            assert b"'O'" not in header and b"|O" not in header  # no object (pickled) arrays
    with np.load(path, allow_pickle=False) as f:
        assert str(f["fastbp_version"]) == fastbp.__version__ and int(f["format"]) == 1


def test_missing_and_directory_paths(tmp_path):
    with pytest.raises(FileNotFoundError):
        fastbp.Network.load(tmp_path / "absent.npz")
    with pytest.raises(ValueError):
        fastbp.Network.load(io.BytesIO(b"PK\x03\x04 truncated"))


WRITER = textwrap.dedent("""
    import sys, numpy as np, fastbp
    net = fastbp.Network([256, 2048, 1024], seed=0)  # ~2.4 M parameters: a save takes tens of milliseconds
    print("ready", flush=True)
    k = 0
    while True:
        k += 1
        net.params[0] = k  # marks the version
        net.save(sys.argv[1])
""")


def test_killed_writer_leaves_a_whole_file(tmp_path):
    """A process killed (SIGKILL) mid-save leaves the previous file whole: the rename is atomic."""
    path = tmp_path / "m.npz"
    rng = np.random.default_rng(0)
    kills = 0
    for _ in range(8):
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path)], stdout=subprocess.PIPE, text=True)
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(0.3 + rng.random() * 0.4)  # several saves in, and most likely in the middle of one
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
        kills += 1
        net = fastbp.Network.load(path)  # whole, and one of the versions written
        assert net.params[0] >= 1 and net.params[0] == int(net.params[0])
    leftovers = [p for p in os.listdir(tmp_path) if p.endswith(".fastbp-tmp")]
    print(f"{kills} writers killed mid-run; every file loaded; {len(leftovers)} temporary files left behind")
    (tmp_path / ".other.npz.1.fastbp-tmp").write_bytes(b"")  # another path's: not ours to remove
    net.save(path)  # the next save removes the dead writers' files
    assert sorted(os.listdir(tmp_path)) == [".other.npz.1.fastbp-tmp", "m.npz"]


def test_save_keeps_live_writers_files_and_removes_dead_ones(tmp_path):
    """Whatever order the folder lists them in: five files of a live writer (as if other threads of this process
    were saving) and five of a writer that has exited."""
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    live = [tmp_path / f".m.npz.{os.getpid()}.{k}.fastbp-tmp" for k in range(5)]
    gone = [tmp_path / f".m.npz.{dead.stdout.strip()}.{k}.fastbp-tmp" for k in range(5)]
    for path in live + gone:
        path.write_bytes(b"")
    model().save(tmp_path / "m.npz")
    assert all(path.exists() for path in live) and not any(path.exists() for path in gone)


def test_save_keeps_the_file_of_another_users_writer(tmp_path, monkeypatch):
    """A writer this process may not signal (another user's: os.kill raises PermissionError) counts as alive."""
    other = tmp_path / ".m.npz.1.abc.fastbp-tmp"  # pid 1: not ours to signal when not root, so simulate it
    other.write_bytes(b"")

    def kill(pid, signal):
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(fastbp.io.os, "kill", kill)
    model().save(tmp_path / "m.npz")
    assert other.exists()


@pytest.mark.parametrize("seed", [None, 0, 1])
def test_the_seed_survives_a_file(tmp_path, seed):
    """None is written as -1 and read back as None; every seed, 0 and 1 included, as itself."""
    fastbp.Network([2, 3, 1], seed=seed).save(tmp_path / "m.npz")
    assert fastbp.Network.load(tmp_path / "m.npz").seed == seed


def test_a_negative_seed_in_a_file_is_refused(tmp_path):
    """Only -1 stands for None; any other negative seed is a corrupt file."""
    path = tmp_path / "m.npz"
    model().save(path)
    rewrite(path, seed=np.array(-5))
    with pytest.raises(ValueError, match="seed must be a non-negative integer"):
        fastbp.Network.load(path)


def test_a_float32_network_refuses_float64_parameters(tmp_path):
    path = tmp_path / "m.npz"
    net = fastbp.Network([4, 6, 3], dtype=np.float32, seed=0)
    net.save(path)
    rewrite(path, flat=net.flat.astype(np.float64))  # the right shape, the wrong dtype
    with pytest.raises(ValueError, match="do not fit"):
        fastbp.Network.load(path)


def test_a_save_that_fails_leaves_the_old_file_and_no_temporary_one(tmp_path, monkeypatch):
    path = tmp_path / "m.npz"
    model(seed=1).save(path)
    before = path.read_bytes()

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(fastbp.io.np, "savez", broken)
    with pytest.raises(OSError, match="disk full"):
        model(seed=2).save(path)
    assert path.read_bytes() == before and os.listdir(tmp_path) == ["m.npz"]
