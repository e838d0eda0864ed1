"""Training checkpoints: everything trainnet needs to continue exactly where it stopped,
written atomically (a temporary file in the same folder, fsync, then os.replace).

A checkpoint is a zip archive (stored) holding `checkpoint.json` (format, version, iteration,
epoch, the RNG state, the shuffle order, the options hash, the names of the buffers),
`buffers.npz` (the TrainStep's flat parameter and optimizer-state buffers, the network State
values, the history so far) and, when the network holds no Python code, `network.lgc` (the
network in lgc.save's format, so `load_checkpoint(path).net` is the trained network at that
epoch). Nothing in it is unpickled.
"""

from __future__ import annotations

import glob
import io
import json
import os
import re
import tempfile
import zipfile
from dataclasses import dataclass, field

import numpy as np

from ..errors import LgcError
from ..io import write_zip_atomically

FORMAT = "lgc-checkpoint"
VERSION = 1
_NAME = re.compile(r"^net_checkpoint__(\d+)__epoch(\d+)\.lgcckpt$")


class CheckpointError(LgcError):
    """A checkpoint cannot be read, or does not fit the training it should resume."""


@dataclass
class Checkpoint:
    iteration: int
    epoch: int
    buffers: list[np.ndarray]
    state_values: list[np.ndarray]
    rng_state: dict
    order: np.ndarray
    options_hash: str
    num_observations: int
    history: dict[str, np.ndarray]
    elapsed: float
    net: object = None
    meta: dict = field(default_factory=dict)


def checkpoint_name(iteration: int, epoch: int) -> str:
    """MATLAB names checkpoints net_checkpoint__<iteration>__<date>.mat; lgc puts the epoch
    where the date was, so names sort and compare without a clock."""
    return f"net_checkpoint__{iteration}__epoch{epoch}.lgcckpt"


def save_checkpoint(folder: str, ck: Checkpoint, net=None) -> str:
    """Write `ck` into `folder` atomically; returns the file's path."""
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, checkpoint_name(ck.iteration, ck.epoch))
    arrays = {f"buffer{k}": b for k, b in enumerate(ck.buffers)}
    arrays.update({f"state{k}": v for k, v in enumerate(ck.state_values)})
    arrays.update({f"history_{k}": np.asarray(v, np.float64) for k, v in ck.history.items()})
    arrays["order"] = np.asarray(ck.order, np.int64)
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    meta = {"format": FORMAT, "version": VERSION, "iteration": ck.iteration, "epoch": ck.epoch,
            "n_buffers": len(ck.buffers), "n_state": len(ck.state_values),
            "history": list(ck.history), "rng_state": ck.rng_state,
            "options_hash": ck.options_hash, "num_observations": ck.num_observations,
            "elapsed": ck.elapsed, **ck.meta}
    entries = [("checkpoint.json", json.dumps(meta)), ("buffers.npz", buf.getvalue())]
    if net is not None and (net_bytes := _network_bytes(folder, net)) is not None:
        entries.append(("network.lgc", net_bytes))
    write_zip_atomically(path, entries)
    return path


def _network_bytes(folder: str, net) -> bytes | None:
    """The network in lgc.save's format, or None when it holds code (functionLayer, ...)."""
    from ..io import NetworkFileError, save

    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".network.", suffix=".tmp")
    os.close(fd)
    try:
        save(tmp, net)
        with open(tmp, "rb") as f:
            return f.read()
    except NetworkFileError:
        return None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def load_checkpoint(path: str) -> Checkpoint:
    """Read a checkpoint written by trainnet (CheckpointPath). `.net` is the network at that
    point when it could be stored (no Python code in it), else None."""
    path = os.fspath(path)
    try:
        with zipfile.ZipFile(path) as z:
            meta = json.loads(z.read("checkpoint.json"))
            npz = np.load(io.BytesIO(z.read("buffers.npz")), allow_pickle=False)
            net_bytes = z.read("network.lgc") if "network.lgc" in z.namelist() else None
    except (zipfile.BadZipFile, KeyError, OSError, EOFError, ValueError) as e:
        raise CheckpointError(f"load_checkpoint: {path} is not a readable lgc checkpoint "
                              f"({type(e).__name__}: {e})") from None
    if meta.get("format") != FORMAT or not isinstance(meta.get("version"), int) or \
            meta["version"] > VERSION:
        raise CheckpointError(f"load_checkpoint: {path} is not an lgc checkpoint of a version "
                              f"this lgc reads (format {meta.get('format')!r}, version "
                              f"{meta.get('version')!r})")
    net = None
    if net_bytes is not None:
        from ..io import load

        fd, tmp = tempfile.mkstemp(prefix=".network.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(net_bytes)
            net = load(tmp)
        finally:
            os.unlink(tmp)
    known = {"format", "version", "iteration", "epoch", "n_buffers", "n_state", "history",
             "rng_state", "options_hash", "num_observations", "elapsed"}
    return Checkpoint(
        iteration=meta["iteration"], epoch=meta["epoch"],
        buffers=[npz[f"buffer{k}"] for k in range(meta["n_buffers"])],
        state_values=[npz[f"state{k}"] for k in range(meta["n_state"])],
        rng_state=meta["rng_state"], order=npz["order"], options_hash=meta["options_hash"],
        num_observations=meta["num_observations"],
        history={k: npz[f"history_{k}"] for k in meta["history"]}, elapsed=meta["elapsed"],
        net=net, meta={k: v for k, v in meta.items() if k not in known})


def checkpoint_files(folder: str) -> list[str]:
    """The checkpoints in `folder`, oldest (lowest iteration) first."""
    found = []
    for p in glob.glob(os.path.join(glob.escape(folder), "net_checkpoint__*.lgcckpt")):
        m = _NAME.match(os.path.basename(p))
        if m:
            found.append((int(m.group(1)), p))
    return [p for _, p in sorted(found)]


def latest_checkpoint(folder: str) -> str | None:
    """The newest checkpoint in `folder` (highest iteration), or None."""
    files = checkpoint_files(folder)
    return files[-1] if files else None
