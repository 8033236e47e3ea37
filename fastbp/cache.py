"""What fastbp keeps on disk (:func:`fastbp._jit.cache_dir`), listed, pruned and cleared: ``python -m fastbp cache``.

Every file in the cache belongs to one state of fastbp's compiled sources (:func:`fastbp._jit.source_hash`, which
also covers the Numba version): Numba's kernel files (``numba/``, each index stamped with it), the generated modules
of compiled networks and their build markers (``generated/``, a first line naming it), and the plans (``plans/``,
their key naming it and the fastbp version). Each installation that uses the cache leaves a note of its sources, its
package's path and its Numba version in ``versions/``, touched once per process (its last use). A state of the sources
is in use while an installation computes it from its files: this one, or one whose note names a package that still
holds those sources. ``--prune`` removes the rest; ``--clear`` removes everything.

Removing is safe while other processes run: a kernel whose cache file is gone compiles again, a missing generated
module is written again, a missing plan is measured again, and every file fastbp and Numba write is written to a
temporary name and renamed, so nothing reads part of one.
"""

import functools
import json
import os
import pathlib
import pickle
import shutil
import time

import numba

from . import __version__
from ._jit import PACKAGE, cache_dir, source_hash
from .kernels.compiled import SOURCES_LINE


def _note_path(sources):
    return cache_dir() / "versions" / f"{sources[:24]}.json"


@functools.cache
def mark_used():
    """Note (once per process) that this installation uses the cache: its sources, version, package and Numba."""
    path = _note_path(source_hash())
    try:
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            text = json.dumps({"sources": source_hash(), "fastbp": __version__, "numba": numba.__version__,
                               "package": str(PACKAGE)})
            tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
            tmp.write_text(text)
            os.replace(tmp, path)
        os.utime(path)
    except OSError:  # a read-only or vanished cache: caching is an optimisation, never an error
        pass


def _notes(root):
    """{sources: note} of every installation that noted itself."""
    notes = {}
    for path in (root / "versions").glob("*.json"):
        try:
            note = json.loads(path.read_text())
            notes[note["sources"]] = {**note, "used": path.stat().st_mtime}
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return notes


def _installed(notes):
    """The sources some installation computes from its files now: this one's, and each noted one whose package
    still holds the sources it noted."""
    found = {source_hash()}
    for sources, note in notes.items():
        package = pathlib.Path(note.get("package", ""))
        if package.is_dir() and sources != source_hash():
            try:
                if source_hash(package, note["numba"]) == sources:
                    found.add(sources)
            except (OSError, KeyError):
                pass
    return found


def _index_sources(path):
    """The sources a Numba index file was written for, or None if it cannot be read."""
    try:
        with open(path, "rb") as f:
            pickle.load(f)  # Numba's version (the stamp covers it)
            stamp, _ = pickle.loads(f.read())
        return stamp[:64] if isinstance(stamp, str) else None
    except Exception:  # noqa: BLE001 (truncated, another format: unknown)
        return None


def _generated_sources(path):
    try:
        with open(path) as f:
            line = f.readline()
    except (OSError, UnicodeDecodeError):
        return None
    return line[len(SOURCES_LINE):].strip() if line.startswith(SOURCES_LINE) else None


def scan(root=None):
    """Every file in the cache as ``(path, kind, sources or None, bytes, mtime)``; kind is ``"kernel"`` (a Numba
    index or data file), ``"generated"`` (a generated module, its lock and markers), ``"plan"`` or ``"other"``."""
    root = pathlib.Path(root or cache_dir())
    files = []

    def add(path, kind, sources):
        try:
            st = path.stat()
        except OSError:  # removed meanwhile
            return
        files.append((path, kind, sources, st.st_size, st.st_mtime))

    numba_dir, generated, plans = root / "numba", root / "generated", root / "plans"
    for folder in sorted(numba_dir.glob("*")):
        indexes = {path.name[:-len(".nbi")]: _index_sources(path) for path in folder.glob("*.nbi")}
        for path in sorted(folder.iterdir()):
            base = path.name[:-len(".nbi")] if path.suffix == ".nbi" else path.name.split(".nbc")[0].rsplit(".", 1)[0]
            add(path, "kernel", indexes.get(base))
    for path in sorted(generated.glob("*.py")):
        sources = _generated_sources(path)
        for member in sorted(generated.glob(path.stem + ".*")):
            add(member, "generated", sources)
    for path in sorted(plans.glob("*.json")):
        try:
            sources = json.loads(path.read_text())["key"]["sources"]
        except (OSError, ValueError, KeyError, TypeError):
            sources = None
        add(path, "plan", sources)
    seen = {path for path, *_ in files}
    for path in sorted(root.rglob("*")):
        if path.is_file() and path not in seen:
            add(path, "other", None)
    return files


def summary(root=None):
    """Per state of the sources (None: files no state claims), a dict: ``fastbp`` (its version, if known),
    ``kernels`` (Numba data files), ``plans``, ``bytes``, ``last_use`` (a time), ``installed`` (whether an
    installation uses it) and ``this`` (whether it is this installation's)."""
    root = pathlib.Path(root or cache_dir())
    notes, groups = _notes(root), {}
    installed = _installed(notes)
    for path, kind, sources, size, mtime in scan(root):
        if kind == "other":
            continue
        group = groups.setdefault(sources, {"fastbp": notes.get(sources, {}).get("fastbp"), "kernels": 0, "plans": 0,
                                            "bytes": 0, "last_use": notes.get(sources, {}).get("used", 0.0),
                                            "installed": sources in installed, "this": sources == source_hash()})
        group["bytes"] += size
        group["last_use"] = max(group["last_use"], mtime)
        group["kernels"] += kind == "kernel" and path.suffix == ".nbc"
        group["plans"] += kind == "plan"
        if kind == "plan" and group["fastbp"] is None:
            try:
                group["fastbp"] = json.loads(path.read_text())["key"]["fastbp"]
            except (OSError, ValueError, KeyError, TypeError):
                pass
    return groups


def prune(root=None):
    """Remove the files no installation can use (:func:`summary`'s groups not ``installed``, and files no state of
    the sources claims); returns (files, bytes) removed."""
    root = pathlib.Path(root or cache_dir())
    installed = _installed(_notes(root))
    count = total = 0
    for path, kind, sources, size, _ in scan(root):
        if kind == "other" or sources in installed:
            continue
        try:
            path.unlink()
        except OSError:
            continue
        count, total = count + 1, total + size
    for path in (root / "versions").glob("*.json"):  # notes of installations gone or changed
        try:
            if json.loads(path.read_text())["sources"] not in installed:
                path.unlink()
        except (OSError, ValueError, KeyError, TypeError):
            pass
    return count, total


def clear(root=None):
    """Remove the whole cache; returns (files, bytes) removed."""
    root = pathlib.Path(root or cache_dir())
    files = [(path, path.stat().st_size) for path in root.rglob("*") if path.is_file()] if root.exists() else []
    shutil.rmtree(root, ignore_errors=True)
    return len(files), sum(size for _, size in files)


def format_size(n):
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000


def report(root=None):
    """The listing ``python -m fastbp cache`` prints."""
    root = pathlib.Path(root or cache_dir())
    groups = summary(root)
    total = sum(size for *_, size, _ in scan(root))
    lines = [f"fastbp cache: {root} ({format_size(total)})"]
    if not groups:
        return "\n".join(lines + ["empty"])
    lines.append(f"{'fastbp':<10}{'sources':<15}{'kernels':>8}{'plans':>7}{'size':>11}  {'last use':<17} state")
    for sources, g in sorted(groups.items(), key=lambda kv: -kv[1]["last_use"]):
        state = "this installation" if g["this"] else ("installed" if g["installed"] else "unused: --prune removes it")
        used = time.strftime("%Y-%m-%d %H:%M", time.localtime(g["last_use"])) if g["last_use"] else "-"
        lines.append(f"{g['fastbp'] or '?':<10}{(sources or 'unknown')[:12]:<15}{g['kernels']:>8}{g['plans']:>7}"
                     f"{format_size(g['bytes']):>11}  {used:<17} {state}")
    return "\n".join(lines)

