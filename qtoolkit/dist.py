"""torch.distributed plumbing for the training and calibration stages, launched by `torchrun`.

A stage calls `init(device)` once it knows its device. Launched by `torchrun` (WORLD_SIZE > 1 in
the environment), that joins the process group (gloo on CPU, NCCL on CUDA, each rank on the GPU
of its LOCAL_RANK) and silences stdout, notices and library warnings on every rank but 0; run
plainly, it does nothing and every helper here is a cheap no-op for a world of one.

Errors: a rank that fails prints its own one-line error (`failure_line`). A rank that only
noticed a peer dying (a collective or DDP's gradient all-reduce failing) raises `PeerFailure`,
which prints nothing, so one failure gives one line however many ranks there are.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any, TypeVar

from qtoolkit.errors import QtoolError

__all__ = [
    "PeerFailure",
    "all_gather_object",
    "all_reduce",
    "barrier",
    "batch_share",
    "broadcast_object",
    "defer_to_main",
    "failure_line",
    "global_count",
    "init",
    "is_main",
    "launched",
    "main_only",
    "peer_errors",
    "rank",
    "shard_rows",
    "step_share",
    "unwrap",
    "world_size",
    "wrap_model",
]

T = TypeVar("T")

# How long a rank waits in a collective (e.g. for rank 0 evaluating) before giving up.
TIMEOUT_ENV = "QTOOL_DIST_TIMEOUT_S"
# What a collective raises when a peer process died (gloo); timeouts are not among them, so a
# hung run still prints its error on every rank.
_PEER_SIGNS = ("connection closed by peer", "connection reset by peer", "broken pipe")


class PeerFailure(QtoolError):
    """Another rank stopped; its own error line says why."""


def launched() -> bool:
    """Started by torchrun (or anything that sets WORLD_SIZE > 1)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def _initialized() -> bool:
    import torch.distributed as tdist

    return tdist.is_available() and tdist.is_initialized()


def init(device: str) -> None:
    """Join the process group when launched by torchrun; idempotent, a no-op otherwise."""
    if not launched() or _initialized():
        return
    import torch
    import torch.distributed as tdist

    for key in ("RANK", "MASTER_ADDR", "MASTER_PORT"):
        if key not in os.environ:
            raise QtoolError(f"WORLD_SIZE is set but {key} is not: launch with torchrun")
    cuda = device.startswith("cuda")
    if cuda:
        # Every later "cuda" tensor of this process lands on its own GPU.
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    timeout = timedelta(seconds=float(os.environ.get(TIMEOUT_ENV, "1800")))
    tdist.init_process_group("nccl" if cuda else "gloo", timeout=timeout)
    if not is_main():
        _quiet()


def _quiet() -> None:
    """Rank 0 alone talks: progress bars and notices check the rank themselves (qtoolkit.ui)."""
    import warnings

    from qtoolkit import ui

    ui.console.quiet = True
    warnings.simplefilter("ignore")
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
    except ImportError:  # pragma: no cover - transformers is a dependency
        pass


def rank() -> int:
    if _initialized():
        import torch.distributed as tdist

        return tdist.get_rank()
    return int(os.environ.get("RANK", "0")) if launched() else 0


def world_size() -> int:
    if _initialized():
        import torch.distributed as tdist

        return tdist.get_world_size()
    return 1


def is_main() -> bool:
    return rank() == 0


def failure_line(exc: BaseException, message: str | None = None) -> str | None:
    """The error line this rank prints for `exc` (`message`, default str(exc)), or None when a
    peer's failure caused it (the peer prints the line). In a distributed run it names the rank."""
    if isinstance(exc, PeerFailure) or (world_size() > 1 and _is_peer_error(exc)):
        return None
    message = str(exc) if message is None else message
    if launched():
        message = f"rank {rank()} of {os.environ.get('WORLD_SIZE')}: {message}"
    return message


def defer_to_main() -> None:
    """On ranks other than 0 of a launch, wait a moment before reporting an error: an error every
    rank hits (a bad recipe) is then reported by rank 0 alone, since torchrun stops the other
    ranks as soon as one exits; an error of this rank alone is still reported, just later.
    Before the process group exists the ranks may be seconds apart (imports), so wait longer."""
    if launched() and rank() != 0:
        import time

        time.sleep(2.0 if _initialized() else 10.0)


def _is_peer_error(exc: BaseException) -> bool:
    import torch.distributed as tdist

    if isinstance(exc, getattr(tdist, "DistNetworkError", ())):
        return True
    return isinstance(exc, RuntimeError) and any(s in str(exc).lower() for s in _PEER_SIGNS)


@contextlib.contextmanager
def peer_errors() -> Iterator[None]:
    """Inside the block, a failed collective (a peer died) becomes PeerFailure."""
    try:
        yield
    except Exception as exc:
        if world_size() > 1 and _is_peer_error(exc):
            raise PeerFailure("another rank stopped (its error is above)") from None
        raise


def _comm_device():
    import torch
    import torch.distributed as tdist

    if tdist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def barrier() -> None:
    if world_size() > 1:
        import torch.distributed as tdist

        with peer_errors():
            tdist.barrier()


def all_reduce(tensor, op: str = "sum"):
    """Reduce `tensor` over ranks in place ('sum' or 'max') and return it."""
    if world_size() == 1:
        return tensor
    import torch.distributed as tdist

    red = {"sum": tdist.ReduceOp.SUM, "max": tdist.ReduceOp.MAX}[op]
    moved = tensor.to(_comm_device())
    with peer_errors():
        tdist.all_reduce(moved, red)
    if moved is not tensor:
        tensor.copy_(moved)
    return tensor


def broadcast_object(obj: T, src: int = 0) -> T:
    """`obj` as rank `src` has it, on every rank (any picklable object)."""
    if world_size() == 1:
        return obj
    import torch.distributed as tdist

    box = [_pack(obj)]
    with peer_errors():
        tdist.broadcast_object_list(box, src=src, device=_comm_device())
    return _unpack(box[0])


def all_gather_object(obj: T) -> list[T]:
    """Every rank's `obj`, in rank order."""
    if world_size() == 1:
        return [obj]
    import torch.distributed as tdist

    out: list[Any] = [None] * world_size()
    with peer_errors():
        tdist.all_gather_object(out, _pack(obj))
    return [_unpack(x) for x in out]


def _pack(obj: Any) -> bytes:
    # torch.save, not plain pickle: objects holding tensors (RNG states, a training state) come
    # back intact; torch 2.13's object collectives fail to unpickle some tensor storages.
    import io

    import torch

    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def _unpack(data: bytes) -> Any:
    import io

    import torch

    return torch.load(io.BytesIO(data), map_location="cpu", weights_only=False)


def main_only(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """`fn` run on rank 0 alone; its result is handed to every rank."""
    result = fn(*args, **kwargs) if is_main() else None
    return broadcast_object(result)


def wrap_model(model, device: str):
    """DistributedDataParallel around `model` in a distributed run, else `model` itself.

    Gradients of every trainable parameter (learned amax included) are averaged over ranks.
    Buffers (weight amax) are the same on every rank and stay put."""
    if world_size() == 1:
        return model
    import inspect

    import torch
    from torch.nn.parallel import DistributedDataParallel

    ids = [torch.cuda.current_device()] if device.startswith("cuda") else None
    # Newer torch renamed the switch (the old name warns); either way no per-step buffer sync.
    names = inspect.signature(DistributedDataParallel.__init__).parameters
    quiet = "forward_sync_buffers" if "forward_sync_buffers" in names else "broadcast_buffers"
    with peer_errors():
        return DistributedDataParallel(model, device_ids=ids, **{quiet: False})


# This rank's share of the current training step's global batch (examples), set by the loop.
_SHARE: contextvars.ContextVar[float] = contextvars.ContextVar("qtoolkit_step_share", default=1.0)


@contextlib.contextmanager
def step_share(share: float) -> Iterator[None]:
    """Inside the block, `batch_share()` is `share` (the loop wraps each step's forward)."""
    token = _SHARE.set(share)
    try:
        yield
    finally:
        _SHARE.reset(token)


def batch_share() -> float:
    """This rank's fraction of the examples of the global batch being trained on (1.0 alone;
    0.0 for a rank that only runs a stand-in example at loss factor 0)."""
    return _SHARE.get()


def global_count(local):
    """For a loss that is a mean over `local` items (e.g. real tokens) of this rank's part of a
    step: what to divide by instead, so that the ranks' losses, scaled and averaged as the loop
    and DDP do, are the mean over the whole global batch (one all-reduce; `local` alone in a
    single process)."""
    if world_size() == 1:
        return local
    import torch

    share = batch_share()
    mine = local.detach().double().clone() if share > 0 else torch.zeros((), dtype=torch.float64)
    total = all_reduce(mine).to(local.dtype)
    return total * share if share > 0 else total  # a stand-in's loss is scaled by 0 anyway


def unwrap(model):
    return getattr(model, "module", model)


def shard_rows(num_rows: int, where: tuple[int, int] | None = None) -> tuple[slice, float, float]:
    """This rank's rows of a global batch: (rows, loss factor, share of the examples).

    Every rank builds the same global batch (the seeded order, padding and any random masks of
    one process) and trains on a contiguous slice of its rows. DDP averages gradients over
    ranks; scaling each rank's mean loss by world * n_rank / n_batch makes that average the
    gradient of the global batch's mean, even when the batch does not split evenly. A rank
    with no row of a (last, short) batch still takes part in the all-reduce: it runs row 0 at
    factor 0 (share 0). `where`: (rank, world size), default this process's."""
    me, world = where if where is not None else (rank(), world_size())
    lo, hi = me * num_rows // world, (me + 1) * num_rows // world
    if lo == hi:
        return slice(0, 1), 0.0, 0.0
    return slice(lo, hi), world * (hi - lo) / num_rows, (hi - lo) / num_rows
