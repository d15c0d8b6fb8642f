"""``torch.compile`` through the complex attention and the causal blocks (issue 18, item 2).

The Triton kernels are the custom ops ``wfm::complex_attention_fwd``/``_bwd`` (fake tensor
implementations and an autograd formula), so Dynamo records each attention as one graph node: a
complex-attention block traces as one graph with no break, for the PyTorch reference path and
for the Triton path (here in the CPU interpreter), and the compiled block matches eager.

As in ``tests/test_kernels.py``, ``TRITON_INTERPRET=1`` is set at import when there is no CUDA,
before anything imports triton; if another module imported triton first, the Triton cases skip
here and ``test_triton_cases_in_subprocess`` reruns them in a fresh interpreter.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

_HAS_CUDA = torch.cuda.is_available()
if not _HAS_CUDA and "triton" not in sys.modules:
    os.environ["TRITON_INTERPRET"] = "1"
_TRITON_IN_PROCESS = _HAS_CUDA or os.environ.get("TRITON_INTERPRET") == "1"

from wfm.nn.blocks import ComplexBlock  # noqa: E402

DEVICE = "cuda" if _HAS_CUDA else "cpu"
VARIANTS = ("real", "magnitude", "phase")
BACKENDS = ("reference", "triton")
needs_triton = pytest.mark.skipif(
    not _TRITON_IN_PROCESS, reason="triton was imported without TRITON_INTERPRET=1; see the subprocess test")

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(autouse=True)
def _fresh_dynamo():
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


def _params(backend: str):
    return [pytest.param(backend, marks=needs_triton) if backend == "triton" else backend]


def _block(variant: str, backend: str, seed: int = 0) -> ComplexBlock:
    """A complex block of width 128 (64 complex features, 2 heads of 32: a Triton head dim)."""
    torch.manual_seed(seed)
    blk = ComplexBlock(128, 2, 2.0, variant=variant).to(DEVICE)
    blk.attn.backend = backend  # "triton": the kernels (interpreted on CPU); "reference": PyTorch
    return blk


def _run(fn, x: torch.Tensor, module: torch.nn.Module):
    """Output, input grad and parameter grads of ``fn(x)`` under a fixed random cotangent."""
    module.zero_grad(set_to_none=True)
    x = x.detach().clone().requires_grad_()
    out = fn(x)
    out.backward(torch.randn(out.shape, generator=torch.Generator().manual_seed(1)).to(out.device))
    return [out.detach(), x.grad] + [p.grad.clone() for p in module.parameters()]


def _assert_matches(actual: list, expected: list, tol: float) -> None:
    for i, (a, e) in enumerate(zip(actual, expected)):
        scale = e.abs().max().clamp_min(1e-6)
        err = ((a - e).abs().max() / scale).item()
        assert err < tol, f"tensor {i}: relative error {err:.1e} >= {tol:.0e}"


def _x(n: int = 11, seed: int = 2) -> torch.Tensor:
    return torch.randn(2, n, 128, generator=torch.Generator().manual_seed(seed)).to(DEVICE)


@pytest.mark.parametrize("backend", [p for b in BACKENDS for p in _params(b)])
@pytest.mark.parametrize("variant", VARIANTS)
def test_complex_block_traces_without_graph_breaks(variant: str, backend: str) -> None:
    blk = _block(variant, backend)
    explained = torch._dynamo.explain(blk)(_x())
    assert explained.graph_break_count == 0, [str(r.reason) for r in explained.break_reasons]
    assert explained.graph_count == 1
    if backend == "triton" and variant != "real":  # the kernels are one node each way
        ops = [str(n.target) for g in explained.graphs for n in g.graph.nodes if n.op == "call_function"]
        assert "wfm.complex_attention_fwd" in ops


@pytest.mark.parametrize("backend", [p for b in BACKENDS for p in _params(b)])
@pytest.mark.parametrize("variant", VARIANTS)
def test_fullgraph_compiled_block_matches_eager(variant: str, backend: str) -> None:
    """Dynamo + AOTAutograd (fake tensors, the ops' autograd) with ``fullgraph=True``: forward and
    every gradient as in eager (aot_eager runs the same kernels, so only summation order differs)."""
    blk = _block(variant, backend)
    eager = _run(blk, _x(), blk)
    compiled = _run(torch.compile(blk, backend="aot_eager", fullgraph=True), _x(), blk)
    _assert_matches(compiled, eager, 1e-5)


@pytest.mark.slow  # a cold Inductor start is 20-70 s on 2 busy cores
@pytest.mark.parametrize("backend", [p for b in BACKENDS for p in _params(b)])
def test_inductor_compiled_block_matches_eager(backend: str) -> None:
    """The default ``torch.compile`` (Inductor) of a phase-attention block, as ``compile: true``
    in a training config does, against eager."""
    blk = _block("phase", backend)
    eager = _run(blk, _x(), blk)
    compiled = _run(torch.compile(blk), _x(), blk)
    _assert_matches(compiled, eager, 1e-4)


@needs_triton
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("phase", [False, True])
def test_kernel_custom_ops_pass_opcheck(phase: bool, causal: bool) -> None:
    """torch.library.opcheck: schema, fake tensors, autograd registration, AOT dispatch."""
    from wfm.kernels.triton_attention import complex_attention_fwd  # noqa: F401 (registers the ops)

    gen = torch.Generator().manual_seed(3)
    qkv = [torch.randn(1, 2, 17, 32, generator=gen).to(DEVICE).requires_grad_() for _ in range(6)]
    args = (*qkv, phase, causal, 32 ** -0.5, 1e-3, "ieee")
    torch.library.opcheck(torch.ops.wfm.complex_attention_fwd.default, args)


def test_causal_block_with_rotary_positions_traces_without_graph_breaks() -> None:
    """The causal model's blocks (what ``compile: true`` compiles) with per-row rotary positions."""
    from wfm.models.causal import CausalForecaster, rotary_angles

    torch.manual_seed(0)
    model = CausalForecaster(patch_len=4, dim=32, depth=2, num_heads=2, max_context=64).to(DEVICE)
    values = torch.randn(3, 32).to(DEVICE)
    observed = torch.ones(3, 32, dtype=torch.bool, device=DEVICE)
    observed[0, :13] = False  # padded tokens: sorted behind the valid ones, no mask
    x = torch.randn(3, 8, 32).to(DEVICE)
    cos, sin = rotary_angles(torch.arange(8, device=DEVICE).expand(3, 8), 16)
    explained = torch._dynamo.explain(model.blocks[0])(x, rope=(cos[:, None], sin[:, None]))
    assert explained.graph_break_count == 0 and explained.graph_count == 1
    torch._dynamo.reset()
    eager = model(values, observed, torch.ones(3, device=DEVICE)).ahead
    for blk in model.blocks:
        blk.compile(backend="aot_eager", fullgraph=True)
    compiled = model(values, observed, torch.ones(3, device=DEVICE)).ahead
    torch.testing.assert_close(compiled, eager, rtol=1e-5, atol=1e-5)


def _mae(variant: str, backend: str):
    from wfm.models.mae import MaskedAutoencoder
    from wfm.models.masking import make_mask

    torch.manual_seed(0)
    model = MaskedAutoencoder(patch_size=(2, 2, 2), dim=128, depth=1, num_heads=2, decoder_depth=1,
                              attention=f"complex-{variant}").to(DEVICE)
    for blk in [*model.blocks, *model.decoder_blocks]:
        blk.attn.backend = backend
    csi = torch.randn(2, 4, 2, 8, dtype=torch.complex64, generator=torch.Generator().manual_seed(4)).to(DEVICE)
    mask = make_mask("random", 2, model.grid_for(csi.shape), 0.5, generator=torch.Generator().manual_seed(5))
    return model, csi, mask


def _mae_step(model, csi, mask, fn=None) -> list[torch.Tensor]:
    model.zero_grad(set_to_none=True)
    out = (model if fn is None else fn)(csi, mask)
    out.loss.backward()
    return [out.loss.detach(), out.pred.detach()] + [p.grad.clone() for p in model.parameters() if p.grad is not None]


@pytest.mark.slow
@pytest.mark.parametrize("backend", [p for b in BACKENDS for p in _params(b)])
def test_compiled_mae_breaks_only_outside_the_attention(backend: str) -> None:
    """``torch.compile`` of a whole complex-attention MAE (Inductor) matches eager. Its graph breaks
    are the mask bookkeeping's host reads in ``MaskedAutoencoder.forward`` (which is why training
    compiles the blocks only: ``compile_blocks``); none is in the attention or the blocks."""
    model, csi, mask = _mae("phase", backend)
    eager = _mae_step(model, csi, mask)
    explained = torch._dynamo.explain(model)(csi, mask)
    frames = [f.filename for r in explained.break_reasons for f in r.user_stack]
    assert frames and all(f.endswith("wfm/models/mae.py") for f in frames), frames
    torch._dynamo.reset()
    _assert_matches(_mae_step(model, csi, mask, torch.compile(model)), eager, 1e-4)


def test_mae_compile_blocks_matches_eager() -> None:
    """What ``compile: true`` does in a MAE config (``compile_blocks``), complex magnitude attention
    (AOTAutograd here; Inductor on whole blocks is the slow test above: minutes on 2 busy cores)."""
    model, csi, mask = _mae("magnitude", "auto")
    eager = _mae_step(model, csi, mask)
    model.compile_blocks(backend="aot_eager")
    _assert_matches(_mae_step(model, csi, mask), eager, 1e-4)


@pytest.mark.skipif(_TRITON_IN_PROCESS, reason="the Triton cases already ran in this process")
def test_triton_cases_in_subprocess() -> None:
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "TRITON_INTERPRET": "1",
           "PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", str(Path(__file__).resolve()), "-q", "-x", "-p", "no:cacheprovider",
         "-m", "not gpu and not slow", "-k", "triton"],
        cwd=root, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert " passed" in proc.stdout
