"""What a GPU would run, checked without one: SDPA kernel choice and host syncs of a step.

* :func:`record_sdpa` records every ``F.scaled_dot_product_attention`` call made while it is
  active (a ``TorchFunctionMode``: shapes, dtype, mask, causal flag, dropout, strides).
* :func:`flash_blockers` applies PyTorch's CUDA rules for FlashAttention-2 that do not depend on
  the card (``sdp::use_flash_attention`` in ``aten/src/ATen/native/transformers/cuda/sdp_utils.cpp``:
  no ``attn_mask``; 4-D dense q, k, v with equal batch and heads (or ``enable_gqa``); one head dim
  ``<= 256``; fp16/bf16; ``is_causal`` only for square attention; non-empty sequences; last-dim
  stride 1) to one recorded call. No blocker means an sm80+ GPU (A100, H100) runs the flash kernel
  unless the user disables it; a blocker such as a mask sends the call to the memory-efficient or
  math kernel. ``torch.backends.cuda.can_use_flash_attention`` itself refuses CPU tensors, so it
  cannot be asked here; on a GPU, ``sdpa_kernel(SDPBackend.FLASH_ATTENTION)`` is the final word
  (the ``gpu``-marked test does that).
* :func:`record_host_syncs` counts the ops that make the host wait for the device when tensors
  live on a GPU: ``aten._local_scalar_dense`` (``.item()``, ``int(t)``, ``float(t)``, ``bool(t)``,
  ``if t:``), ops whose output size depends on the data (``nonzero``, boolean indexing,
  ``masked_select``, ``unique``, ...) and ``torch.tensor(host data)`` (``lift_fresh``: on a GPU a
  blocking copy from pageable memory), with the Python line that issued each (a
  ``TorchDispatchMode``; ``Tensor.tolist()`` bypasses dispatch and is not seen).
"""

from __future__ import annotations

import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode

__all__ = ["SDPACall", "record_sdpa", "flash_blockers", "HostSync", "record_host_syncs"]

_SDPA_ARGS = ("query", "key", "value", "attn_mask", "dropout_p", "is_causal", "scale", "enable_gqa")


@dataclass(frozen=True)
class SDPACall:
    """One ``scaled_dot_product_attention`` call, as the CUDA backend selection sees it."""

    q_shape: tuple[int, ...]
    k_shape: tuple[int, ...]
    v_shape: tuple[int, ...]
    dtypes: tuple[torch.dtype, ...]
    last_strides: tuple[int, ...]
    attn_mask: tuple[int, ...] | None  # the mask's shape, None without one
    dropout_p: float
    is_causal: bool
    enable_gqa: bool


def _sdpa_call(args: tuple, kwargs: dict) -> SDPACall:
    bound = dict(zip(_SDPA_ARGS, args)) | kwargs
    q, k, v = bound["query"], bound["key"], bound["value"]
    mask = bound.get("attn_mask")
    return SDPACall(tuple(q.shape), tuple(k.shape), tuple(v.shape), (q.dtype, k.dtype, v.dtype),
                    (q.stride(-1), k.stride(-1), v.stride(-1)), None if mask is None else tuple(mask.shape),
                    float(bound.get("dropout_p", 0.0)), bool(bound.get("is_causal", False)),
                    bool(bound.get("enable_gqa", False)))


class _SDPARecorder(TorchFunctionMode):
    def __init__(self, calls: list[SDPACall]) -> None:
        super().__init__()
        self.calls = calls

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is F.scaled_dot_product_attention:
            self.calls.append(_sdpa_call(args, kwargs))
        return func(*args, **kwargs)


@contextmanager
def record_sdpa() -> Iterator[list[SDPACall]]:
    """``with record_sdpa() as calls:`` every SDPA call inside lands in ``calls`` (eager code)."""
    calls: list[SDPACall] = []
    with _SDPARecorder(calls):
        yield calls


def flash_blockers(call: SDPACall) -> list[str]:
    """Why CUDA's FlashAttention kernel would refuse ``call`` (empty: it takes it on sm80+)."""
    why = []
    if call.attn_mask is not None:
        why.append(f"an attn_mask {list(call.attn_mask)} (flash takes none: memory-efficient or math kernel)")
    if not (len(call.q_shape) == len(call.k_shape) == len(call.v_shape) == 4):
        why.append(f"q, k, v must be 4-D, got {call.q_shape}, {call.k_shape}, {call.v_shape}")
        return why
    (bq, hq, nq, dq), (bk, hk, nk, dk), (_, _, _, dv) = call.q_shape, call.k_shape, call.v_shape
    if bq != bk or (hq != hk and not call.enable_gqa):
        why.append(f"batch/heads differ between q {call.q_shape} and k {call.k_shape}")
    if not dq == dk == dv or dq > 256:
        why.append(f"head dims {dq}, {dk}, {dv} must be equal and <= 256")
    if any(d not in (torch.float16, torch.bfloat16) for d in call.dtypes):
        why.append(f"dtypes {[str(d) for d in call.dtypes]}: flash needs fp16/bf16 (train with bf16-mixed)")
    if call.is_causal and nq != nk:
        why.append(f"is_causal with {nq} queries and {nk} keys (flash needs square causal attention)")
    if nq == 0 or nk == 0:
        why.append("an empty sequence")
    if any(s != 1 for s in call.last_strides):
        why.append(f"last-dim strides {call.last_strides} must be 1")
    return why


@dataclass
class HostSync:
    """An op that would block the host on a GPU, and the innermost ``wfm`` line that issued it."""

    op: str
    where: str
    stack: list[str] = field(default_factory=list, repr=False)


#: aten ops that read a device value on the host, or size their output by the data.
_SYNC_OPS = ("_local_scalar_dense", "nonzero", "nonzero_static", "masked_select", "_unique", "_unique2",
             "unique_dim", "unique_consecutive", "repeat_interleave", "index.Tensor", "index_put_.default")


def _is_sync(func, args) -> bool:
    name = func.name().split("::")[-1]
    base = name.split(".")[0]
    if base == "lift_fresh":  # torch.tensor(host data): on CUDA a blocking copy from pageable memory
        return True
    if base in ("index", "index_put_", "index_put"):  # boolean-mask indexing syncs; integer indexing does not
        indices = args[1] if len(args) > 1 else []
        return any(t is not None and t.dtype == torch.bool for t in indices)
    if base == "repeat_interleave":
        return True
    return base in _SYNC_OPS


class _SyncRecorder(TorchDispatchMode):
    def __init__(self, syncs: list[HostSync]) -> None:
        super().__init__()
        self.syncs = syncs

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if _is_sync(func, args):
            frames = [f for f in traceback.extract_stack() if "/wfm/" in f.filename.replace("\\", "/")
                      and not f.filename.endswith("kernels/dispatch.py")]
            stack = [f"{f.filename.split('/wfm/')[-1]}:{f.lineno} {f.line}" for f in frames]
            self.syncs.append(HostSync(str(func.name()), stack[-1] if stack else "?", stack))
        return func(*args, **kwargs)


@contextmanager
def record_host_syncs() -> Iterator[list[HostSync]]:
    """``with record_host_syncs() as syncs:`` every host-syncing op inside lands in ``syncs``.

    On the CPU nothing waits, but the same ops on CUDA tensors each stall the host until the GPU
    has caught up; a training step should issue none on device tensors (reads of host tensors,
    e.g. a mask drawn on the CPU, are harmless: check ``where``)."""
    syncs: list[HostSync] = []
    with _SyncRecorder(syncs):
        yield syncs
