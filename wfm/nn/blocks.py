"""Pre-norm transformer blocks: timm's ``Block``, real and complex.

Every block here *is* ``timm.models.vision_transformer.Block``
(``x + drop_path(ls1(attn(norm1(x)))); x + drop_path(ls2(mlp(norm2(x))))``), built with
``qkv_bias=True`` and ``nn.LayerNorm(eps=1e-5)``; the variants only inject other layers:

* ``Block`` (``attention="sdpa"``): timm's ``Attention`` (fused QKV, PyTorch
  ``F.scaled_dot_product_attention``: FlashAttention / memory-efficient kernels on GPU) and
  timm's ``Mlp``. Its state-dict keys (``norm1``, ``attn.qkv``, ``attn.proj``, ``norm2``,
  ``mlp.fc1``, ``mlp.fc2``) are those of the MAE checkpoints.
* ``ComplexBlock`` (``attention="complex-*"``): the same block with ``attn_layer``,
  ``mlp_layer`` and ``norm_layer`` that treat a real token of width ``dim`` as a complex token of
  width ``dim/2`` (first half real, second half imaginary): ``ComplexStreamAttention``
  (``ComplexMultiheadAttention`` from ``wfm.nn.complex``, backed by the Triton kernels in
  ``wfm.kernels``), ``ComplexMlp`` (``ComplexLinear``) and ``ComplexStreamLayerNorm``
  (``ComplexLayerNorm``). Keeping the residual stream as a real ``[re | im]`` tensor lets the rest
  of the model (embedding, position code, decoder head) stay identical. Called on an ``(re, im)``
  pair instead, each of these layers returns a pair.
* The causal model's ``CausalBlock`` (``wfm.models.causal``) injects a rotary causal attention.

Options, as in timm (both off by default: no parameter and no key is added):
``drop_path`` (stochastic depth, ``DropPath``; ``drop_path_rates(rate, depth)`` gives timm's
linear per-block schedule) and ``init_values`` (``LayerScale`` with that initial gain; the
complex block uses ``ComplexLayerScale``, a real gain per complex feature, so a global phase
rotation still commutes with the block).
"""

from __future__ import annotations

import re
from functools import partial

import torch
from timm.layers import Attention, DropPath, LayerScale, Mlp, calculate_drop_path_rates
from timm.models.vision_transformer import Block as TimmBlock
from torch import Tensor, nn

from wfm.nn.complex import ComplexLayerNorm, ComplexLinear, ComplexMultiheadAttention, ComplexPair

__all__ = ["ATTENTION_KINDS", "Block", "ComplexBlock", "ComplexMlp", "ComplexStreamAttention",
           "ComplexStreamLayerNorm", "ComplexLayerScale", "LayerNorm", "make_block", "drop_path_rates", "rename_legacy_mlp_keys",
           "DropPath", "LayerScale", "Mlp"]

ATTENTION_KINDS = ("sdpa", "complex-real", "complex-magnitude", "complex-phase")

#: The blocks' norm: PyTorch's default eps (timm's ``LayerNorm`` uses 1e-6).
LayerNorm = partial(nn.LayerNorm, eps=1e-5)


#: Pre-timm causal blocks had an ``nn.Sequential`` MLP (``mlp.0``, GELU, ``mlp.2``).
_LEGACY_MLP = {"0": "fc1", "2": "fc2"}


def rename_legacy_mlp_keys(state: dict, prefix: str | None = None) -> dict:
    """Rename, in place, the MLP keys of pre-timm blocks (``mlp.0.*``/``mlp.2.*``, an
    ``nn.Sequential``) to timm ``Mlp`` keys (``mlp.fc1.*``/``mlp.fc2.*``) and return ``state``.

    With ``prefix`` (a block's prefix, as a load hook gets it) only that block's keys; with
    ``prefix=None`` those of every ``blocks.N.`` of a whole model (for checks that compare a
    file's keys with ``model.state_dict()`` before ``load_state_dict``). Other keys, the order
    and the dict's ``_metadata`` are kept.
    """
    head = re.escape(prefix) if prefix is not None else r"(?:.*\.)?blocks\.\d+\."
    pattern = re.compile(rf"^({head})mlp\.([02])\.")
    def rename(key: str) -> str:
        m = pattern.match(key)
        return f"{m.group(1)}mlp.{_LEGACY_MLP[m.group(2)]}.{key[m.end():]}" if m else key

    if any(pattern.match(k) for k in state):  # rebuilt in place, in the same order
        items = [(rename(k), v) for k, v in state.items()]
        state.clear()
        state.update(items)
    return state


def drop_path_rates(drop_path_rate: float, depth: int) -> list[float]:
    """timm's stochastic-depth schedule: ``depth`` rates rising linearly from 0 to ``drop_path_rate``."""
    if not 0.0 <= drop_path_rate < 1.0:
        raise ValueError(f"drop_path_rate must lie in [0, 1), got {drop_path_rate}")
    return list(calculate_drop_path_rates(float(drop_path_rate), int(depth)))


class Block(TimmBlock):
    """timm's pre-norm ``Block`` with ``qkv_bias=True`` and ``nn.LayerNorm(eps=1e-5)``.

    ``attn_layer``/``mlp_layer``/``norm_layer`` default to timm's ``Attention``/``Mlp`` and
    ``LayerNorm``; ``ComplexBlock`` and the causal model's ``CausalBlock`` inject their own.
    ``forward(x, attn_mask=None, is_causal=False)`` is timm's.
    """

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 2.0, drop_path: float = 0.0,
                 init_values: float | None = None, *, attn_layer: type[nn.Module] = Attention,
                 mlp_layer: type[nn.Module] = Mlp, norm_layer: type[nn.Module] | partial = LayerNorm) -> None:
        if dim % num_heads != 0:
            raise ValueError(f"width {dim} is not divisible by num_heads {num_heads}")
        super().__init__(dim, num_heads, mlp_ratio=mlp_ratio, qkv_bias=True, init_values=init_values,
                         drop_path=drop_path, act_layer=nn.GELU, norm_layer=norm_layer, mlp_layer=mlp_layer,
                         attn_layer=attn_layer)


# ------------------------------------------------------------------ complex layers on [re | im]


def _split(x: Tensor) -> tuple[Tensor, Tensor]:
    return x.chunk(2, dim=-1)


class ComplexStreamLayerNorm(ComplexLayerNorm):
    """``ComplexLayerNorm`` of ``dim/2`` complex features on a real ``[re | im]`` tensor of width ``dim``
    (a timm ``norm_layer``; same parameters and keys as ``ComplexLayerNorm``)."""

    def __init__(self, dim: int, eps: float = 1e-5, device=None, dtype=None) -> None:
        if dim % 2:
            raise ValueError(f"a [re | im] stream needs an even width, got {dim}")
        super().__init__(dim // 2, eps=eps)

    def forward(self, x: Tensor | ComplexPair) -> Tensor | ComplexPair:  # type: ignore[override]
        if isinstance(x, tuple):  # an (re, im) pair in, a pair out
            return super().forward(x)
        return torch.cat(super().forward(_split(x)), dim=-1)


class ComplexStreamAttention(ComplexMultiheadAttention):
    """``ComplexMultiheadAttention`` over ``dim/2`` complex features on a real ``[re | im]`` stream
    (a timm ``attn_layer``; same parameters and keys: ``q_proj``, ``k_proj``, ``v_proj``,
    ``out_proj``). The score variant is the class's ``VARIANT``; use
    ``complex_attention_layer(variant)`` for the class of a variant."""

    VARIANT = "magnitude"

    def __init__(self, dim: int, num_heads: int = 8, qkv_bias: bool = True, qk_norm: bool = False,
                 scale_norm: bool = False, proj_bias: bool = True, attn_drop: float = 0.0,
                 proj_drop: float = 0.0, norm_layer: object = None, device=None, dtype=None, **_: object) -> None:
        if qk_norm or scale_norm or attn_drop or proj_drop or qkv_bias != proj_bias:
            raise ValueError("complex attention supports neither qk/scale norms nor dropout, and needs "
                             "qkv_bias == proj_bias")
        super().__init__(dim // 2, num_heads, self.VARIANT, bias=qkv_bias)

    def forward(self, x: Tensor | ComplexPair, attn_mask: Tensor | None = None,  # type: ignore[override]
                is_causal: bool = False) -> Tensor | ComplexPair:
        if attn_mask is not None or (is_causal and not self.causal):
            raise NotImplementedError("complex attention takes no attn_mask (build it with causal=True)")
        if isinstance(x, tuple):  # an (re, im) pair in, a pair out
            return super().forward(x)
        return torch.cat(super().forward(_split(x)), dim=-1)


class ComplexRealAttention(ComplexStreamAttention):
    """softmax(Re S) V."""

    VARIANT = "real"


class ComplexMagnitudeAttention(ComplexStreamAttention):
    """softmax(|S|) V."""

    VARIANT = "magnitude"


class ComplexPhaseAttention(ComplexStreamAttention):
    """softmax(|S|) * S/|S| V (phase-preserving)."""

    VARIANT = "phase"


_COMPLEX_ATTENTION = {"real": ComplexRealAttention, "magnitude": ComplexMagnitudeAttention,
                      "phase": ComplexPhaseAttention}


def complex_attention_layer(variant: str) -> type[ComplexStreamAttention]:
    """The ``attn_layer`` class of a complex score ``variant`` (real, magnitude or phase)."""
    if variant not in _COMPLEX_ATTENTION:
        raise ValueError(f"variant must be 'real', 'magnitude' or 'phase', got {variant!r}")
    return _COMPLEX_ATTENTION[variant]


class ComplexMlp(nn.Module):
    """Complex MLP on a real ``[re | im]`` stream (a timm ``mlp_layer``): ComplexLinear -> split
    activation (on real and imaginary parts) -> ComplexLinear. Widths are real widths (twice the
    complex features), as timm passes them."""

    def __init__(self, in_features: int, hidden_features: int | None = None, out_features: int | None = None,
                 act_layer: type[nn.Module] = nn.GELU, norm_layer: object = None, bias: bool = True,
                 drop: float = 0.0, device=None, dtype=None) -> None:
        super().__init__()
        hidden_features = hidden_features or in_features
        out_features = out_features or in_features
        if norm_layer is not None or drop:
            raise ValueError("ComplexMlp supports neither a hidden norm nor dropout")
        if in_features % 2 or out_features % 2:
            raise ValueError(f"a [re | im] stream needs even widths, got {in_features} -> {out_features}")
        self.fc1 = ComplexLinear(in_features // 2, hidden_features // 2, bias=bias)
        self.act = act_layer()
        self.fc2 = ComplexLinear(hidden_features // 2, out_features // 2, bias=bias)

    def forward(self, x: Tensor | ComplexPair) -> Tensor | ComplexPair:
        pair = isinstance(x, tuple)  # an (re, im) pair in, a pair out
        re, im = self.fc1(x if pair else _split(x))
        out = self.fc2((self.act(re), self.act(im)))
        return out if pair else torch.cat(out, dim=-1)


class ComplexLayerScale(nn.Module):
    """LayerScale with a real gain per complex feature (``dim/2`` gains, shared by re and im)."""

    def __init__(self, dim: int, init_values: float = 1e-5) -> None:
        super().__init__()
        self.init_values = init_values
        self.gamma = nn.Parameter(torch.empty(dim // 2))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.constant_(self.gamma, self.init_values)

    def forward(self, x: Tensor) -> Tensor:
        return x * torch.cat([self.gamma, self.gamma])


class ComplexBlock(Block):
    """timm's ``Block`` on complex tokens stored as a real ``[re | im]`` stream of width ``dim``.

    The token is ``dim/2`` complex features. ``variant`` is the complex attention score:
    ``real`` (softmax(Re S)), ``magnitude`` (softmax(|S|)) or ``phase`` (softmax(|S|) * S/|S|);
    see ``wfm/kernels``. Norms are ``ComplexLayerNorm`` (they commute with a global phase
    rotation, the natural symmetry of CSI). The fused Triton kernels need a head dim of 32, 64
    or 128 complex features (``dim / 2 / num_heads``: mae_base and mae_large); other sizes run
    the PyTorch reference.
    """

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 2.0, variant: str = "real",
                 drop_path: float = 0.0, init_values: float | None = None) -> None:
        if dim % 2 != 0 or (dim // 2) % num_heads != 0:
            raise ValueError(
                f"complex attention needs width/2 = {dim / 2} divisible by num_heads {num_heads}"
            )
        super().__init__(dim, num_heads, mlp_ratio, drop_path=drop_path, init_values=init_values,
                         attn_layer=complex_attention_layer(variant), mlp_layer=ComplexMlp,
                         norm_layer=ComplexStreamLayerNorm)
        if init_values:  # a real gain per complex feature instead of timm's per-channel gain
            self.ls1 = ComplexLayerScale(dim, init_values)
            self.ls2 = ComplexLayerScale(dim, init_values)


def make_block(dim: int, num_heads: int, mlp_ratio: float, attention: str, drop_path: float = 0.0,
               init_values: float | None = None) -> Block:
    """A ``Block`` for ``attention='sdpa'`` or a ``ComplexBlock`` for ``complex-*``.

    ``drop_path``: stochastic-depth rate of this block (timm ``DropPath``; 0: none).
    ``init_values``: LayerScale initial gain (``None``/0: no LayerScale, no parameters).
    """
    if attention == "sdpa":
        return Block(dim, num_heads, mlp_ratio, drop_path=drop_path, init_values=init_values)
    if attention in ATTENTION_KINDS:
        return ComplexBlock(dim, num_heads, mlp_ratio, variant=attention.removeprefix("complex-"),
                            drop_path=drop_path, init_values=init_values)
    raise ValueError(f"unknown attention {attention!r}; choose one of {', '.join(ATTENTION_KINDS)}")
