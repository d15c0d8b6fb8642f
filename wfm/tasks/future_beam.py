"""Future-beam prediction on DeepSense 6G beam data (the BP-LLM task): past beam powers -> the
best beam ``horizon`` steps ahead.

Samples are windows of one trajectory: the ``context`` beam-power vectors up to step ``t`` (and
the vehicle's GPS at ``t``) -> ``best_beam[t + horizon]``, scored with the beam powers at
``t + horizon``. The first ``context - 1`` steps of every trajectory have no full context and
are never scored. Trajectories, never windows, are split (``plan_beam``), one of two ways:

- ``trajectory``: a seeded permutation of the trajectories, 70 / 10 / 20 % for train / val /
  test (``trajectory_split``). In some scenarios every trajectory's best beam drifts the same
  way, so this split flatters learned models: the test trajectories resemble the training ones;
- ``scenario``: whole scenarios (``scenario_split``: the last ~20 % of the scenario numbers
  test, the one before validates, the rest train): a test on scenarios no model trained on.
  The default when the data hold several scenarios.

With ``--train`` / ``--test`` folders the test folders are scored whole, and the training
folders are split into train and validation (by scenario where they hold several, else 90 / 10
by trajectory).

Predictors give class scores ``[N, 64]``:

- ``persistence``: the current beam powers (the best beam now, then the next strongest);
- ``position-knn`` (``PositionKNN``): the future best beams of the ``k`` nearest training samples
  by the vehicle's position (east/north metres from its base station, same scenario only), votes
  weighted by ``1 / rank`` (Morais & Alkhateeb's position-aided look-up); it has nothing to say
  on a scenario it has no training positions for, and says so;
- ``lstm`` / ``gru``: a recurrent classifier trained from scratch on the training trajectories,
  its input each window's beam powers divided by the window's largest power (scale-free);
- a foundation model (``BeamMAE``): an MAE encoder fine-tuned on the beam powers, its scores
  anchored on persistence's and read in the codebook as seen from the current best beam, so that
  it starts as persistence and learns how the best beam moves rather than where it lies.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from wfm.data.errors import DataError
from wfm.data.geometry import gps_to_local
from wfm.hub import mae_arch
from wfm.tasks.backbones import MAEEncoder
from wfm.tasks.csi_data import open_dataset
from wfm.tasks.significance import beats_beyond_noise
from wfm.training.fit_select import fit_and_select

SPLIT_SHARES = (0.7, 0.1, 0.2)
NEEDED = ("beam_power", "best_beam", "vehicle_gps", "bs_gps", "scenario")
FIELDS = ("past", "label", "future_power", "position", "scenario", "trajectory")


def trajectory_split(n: int, seed: int = 0, shares: tuple[float, float, float] = SPLIT_SHARES) -> dict[str, np.ndarray]:
    """Disjoint sorted trajectory indices for train / val / test (a seeded permutation)."""
    perm = np.random.default_rng(seed).permutation(n)
    n_test = (max(1, int(round(shares[2] * n))) if shares[2] > 0 else 0) if n >= 3 else 0
    n_val = (max(1, int(round(shares[1] * n))) if shares[1] > 0 else 0) if n >= 3 else 0
    if n == 2 and shares[1] > 0 and shares[2] == 0:
        n_val = 1
    n_train = n - n_val - n_test
    return {"train": np.sort(perm[:n_train]), "val": np.sort(perm[n_train:n_train + n_val]),
            "test": np.sort(perm[n_train + n_val:])}


def scenario_split(scenarios: Sequence[int], with_test: bool = True) -> dict[str, list[int]]:
    """Whole scenarios per split: the last ~20 % (at least one) test, the one (~10 %) before
    validates where three or more are given, the rest train. ``with_test=False`` (a training
    set of its own): the last ~10 % (at least one, of two or more) validate."""
    s = sorted(set(int(x) for x in scenarios))
    n = len(s)
    n_test = max(1, int(round(0.2 * n))) if with_test else 0
    n_val = max(1, int(round(0.1 * n))) if (n >= 3 or (not with_test and n >= 2)) else 0
    n_train = n - n_test - n_val
    return {"train": s[:n_train], "val": s[n_train:n_train + n_val], "test": s[n_train + n_val:]}


@dataclass
class BeamWindows:
    """Stacked windows: ``past`` [N, C, B] powers, ``label`` [N], ``future_power`` [N, B],
    ``position`` [N, 2] (m), ``scenario`` [N], ``trajectory`` [N]."""

    past: Tensor
    label: Tensor
    future_power: Tensor
    position: Tensor
    scenario: Tensor
    trajectory: Tensor

    def __len__(self) -> int:
        return len(self.label)

    def subset(self, idx: Tensor) -> "BeamWindows":
        return BeamWindows(*(getattr(self, f)[idx] for f in FIELDS))

    @property
    def trajectories(self) -> int:
        return int(len(torch.unique(self.trajectory)))


def load_beam_trajectories(root: str | Path, context: int, horizon: int, task: str = "future-beam",
                           id_offset: int = 0) -> list[dict[str, Any]]:
    """Every trajectory of a ``beam`` dataset as its windows (``FIELDS`` as arrays) plus
    ``scenario``, ``sequence_id`` and ``windows``; trajectories shorter than ``context +
    horizon`` have no windows (``windows`` 0). Trajectory ids start at ``id_offset``."""
    ds = open_dataset(root, "beam", task)
    missing = [f for f in NEEDED if f not in ds.specs]
    if missing:
        raise DataError(f"{root}: task {task} needs field(s) {', '.join(missing)}, which this dataset lacks")
    fields = list(NEEDED) + (["sequence_id"] if "sequence_id" in ds.specs else [])
    block = ds.read_range(0, len(ds), fields)
    n = len(ds)
    ds.close()
    return [trajectory_windows(block["beam_power"][i], block["best_beam"][i], block["vehicle_gps"][i],
                               block["bs_gps"][i], int(block["scenario"][i]), context, horizon,
                               int(block["sequence_id"][i]) if "sequence_id" in block else i, id_offset + i, i)
            for i in range(n)]


def trajectory_windows(beam_power: np.ndarray, best_beam: np.ndarray, vehicle_gps: np.ndarray, bs_gps: np.ndarray,
                       scenario: int, context: int, horizon: int, sequence_id: int, trajectory: int,
                       index: int = 0) -> dict[str, Any]:
    """One trajectory's windows (``FIELDS`` as arrays, ``scenario_w`` for ``scenario``) plus
    ``scenario``, ``sequence_id``, ``index`` and ``windows`` (0, and no arrays, when it is shorter
    than ``context + horizon``): every step ``t`` with a full context, ``t + horizon`` in the trajectory."""
    pw = np.asarray(beam_power, dtype=np.float32)
    ts = np.arange(context - 1, len(pw) - horizon)
    t: dict[str, Any] = {"scenario": scenario, "windows": len(ts), "index": index, "sequence_id": sequence_id}
    if len(ts):
        pos = gps_to_local(np.asarray(vehicle_gps), np.asarray(bs_gps))
        t.update(past=np.stack([pw[s - context + 1:s + 1] for s in ts]),
                 label=np.asarray(best_beam)[ts + horizon], future_power=pw[ts + horizon],
                 position=pos[ts].astype(np.float32), scenario_w=np.full(len(ts), scenario),
                 trajectory=np.full(len(ts), trajectory))
    return t


def stack_trajectories(trajs: Sequence[dict[str, Any]]) -> BeamWindows | None:
    """The windows of ``trajs`` stacked (``None`` when none has a window)."""
    trajs = [t for t in trajs if t["windows"]]
    if not trajs:
        return None
    key = {"scenario": "scenario_w"}
    return BeamWindows(*(torch.from_numpy(np.concatenate([t[key.get(f, f)] for t in trajs])) for f in FIELDS))


def _scen(xs: Sequence[int]) -> str:
    return ",".join(str(x) for x in sorted(set(xs))) or "none"


def plan_beam(train_roots: Sequence[str], test_roots: Sequence[str], within: bool, context: int, horizon: int,
              split: str = "auto", seed: int = 0, task: str = "future-beam") -> dict[str, Any]:
    """Train / val windows and the test windows of each test set (module doc).

    Returns ``train``, ``val`` (``BeamWindows`` or ``None``), ``tests`` (``[(name, windows)]``),
    ``split`` (``"scenario"``, ``"trajectory"`` or ``"train/test"``), ``description`` (a sentence for the output)
    and ``warnings`` (test trajectories also in the training data)."""
    if split not in ("auto", "scenario", "trajectory"):
        raise DataError(f"--split {split}: task {task} splits DeepSense data by scenario or by trajectory")
    short = f"{context} + {horizon}"
    if within:
        root = train_roots[0]
        trajs = load_beam_trajectories(root, context, horizon, task)
        scen = sorted({t["scenario"] for t in trajs})
        kind = split if split != "auto" else ("scenario" if len(scen) > 1 else "trajectory")
        if kind == "scenario":
            if len(scen) < 2:
                raise DataError(f"{root}: --split scenario needs two or more scenarios, this dataset holds "
                                f"{_scen(scen)}; split by trajectory (--split trajectory) or give a test "
                                "folder of another scenario (--train DIR --test DIR)")
            parts = scenario_split(scen)
            sel = {k: [t for t in trajs if t["scenario"] in v] for k, v in parts.items()}
            desc = (f"split by scenario: train on scenario(s) {_scen(parts['train'])}, validate on "
                    f"{_scen(parts['val']) if parts['val'] else 'none (no validation split)'}, test on "
                    f"{_scen(parts['test'])}")
        else:
            idx = trajectory_split(len(trajs), seed)
            sel = {k: [trajs[i] for i in v] for k, v in idx.items()}
            desc = (f"split by trajectory (seed {seed}): {len(sel['train'])} / {len(sel['val'])} / "
                    f"{len(sel['test'])} of {len(trajs)} trajectories of scenario(s) {_scen(scen)} train / "
                    "validate / test" + ("; within-scenario test: learned models look better than on an unseen "
                                         "scenario (--split scenario)" if len(scen) > 1 else ""))
        train, val, test = (stack_trajectories(sel[k]) for k in ("train", "val", "test"))
        if train is None or test is None:
            raise DataError(f"{root}: no {'training' if train is None else 'test'} trajectory is longer than "
                            f"context + horizon ({short}) in a split by {kind}; lower --context / --horizon")
        tests = [(Path(root).name, test)]
        warnings: list[str] = []
    else:
        trajs = []
        for j, root in enumerate(train_roots):
            trajs += load_beam_trajectories(root, context, horizon, task, id_offset=j * 10_000_000)
        scen = sorted({t["scenario"] for t in trajs})
        kind = split if split != "auto" else ("scenario" if len(scen) > 1 else "trajectory")
        if kind == "scenario" and len(scen) > 1:
            parts = scenario_split(scen, with_test=False)
            tr = [t for t in trajs if t["scenario"] in parts["train"]]
            va = [t for t in trajs if t["scenario"] in parts["val"]]
            how = f"validate on scenario(s) {_scen(parts['val'])}"
        else:
            idx = trajectory_split(len(trajs), seed, (0.9, 0.1, 0.0))
            tr, va = [trajs[i] for i in idx["train"]], [trajs[i] for i in idx["val"]]
            how = f"validate on {len(va)} of its {len(trajs)} trajectories (seed {seed})"
        train, val = stack_trajectories(tr), stack_trajectories(va)
        if train is None and train_roots:
            raise DataError(f"{', '.join(map(str, train_roots))}: no training trajectory is longer than context + "
                            f"horizon ({short}); lower --context / --horizon")
        seen = {(t["scenario"], t["sequence_id"]) for t in trajs}
        tests, warnings, tested = [], [], []
        for j, root in enumerate(test_roots):
            tt = load_beam_trajectories(root, context, horizon, task, id_offset=(len(train_roots) + j) * 10_000_000)
            w = stack_trajectories(tt)
            if w is None:
                raise DataError(f"{root}: no trajectory is longer than context + horizon ({short}); lower "
                                "--context / --horizon")
            tests.append((Path(root).name, w))
            tested += [t["scenario"] for t in tt]
            both = [t for t in tt if (t["scenario"], t["sequence_id"]) in seen]
            if both:
                warnings.append(f"{root}: {len(both)} of its {len(tt)} trajectories (scenario(s) "
                                f"{_scen([t['scenario'] for t in both])}) are also in the training data: the test "
                                "leaks; test on scenarios the training folders do not hold")
        kind = "train/test" if train_roots else "test only"
        trained_on = (f"train on {', '.join(Path(r).name for r in train_roots)} (scenario(s) {_scen(scen)}; {how})"
                      if train_roots else "no training data (models scored as they are)")
        desc = (f"{trained_on}, test on every trajectory of {', '.join(Path(r).name for r in test_roots)} "
                f"(scenario(s) {_scen(tested)})")
    desc += f"; the first {context - 1} steps of every trajectory have no full context and are not scored"
    return {"train": train, "val": val, "tests": tests, "split": kind, "description": desc, "warnings": warnings}


def load_beam_windows(root: str | Path, context: int, horizon: int, seed: int = 0,
                      task: str = "future-beam") -> dict[str, BeamWindows]:
    """The train / val / test windows of a ``beam`` dataset, split by trajectory."""
    p = plan_beam([str(root)], [str(root)], True, context, horizon, "trajectory", seed, task)
    if p["val"] is None:
        raise DataError(f"{root}: no validation trajectory is longer than context + horizon ({context} + {horizon})")
    return {"train": p["train"], "val": p["val"], "test": p["tests"][0][1]}


def persistence_scores(w: BeamWindows) -> Tensor:
    return w.past[:, -1].float()


class LinearPredictionBeams:
    """Linear prediction of the beam powers (``ar``, a classical baseline): one recursion per window
    fitted on its past sweeps, pooled over the beams (:mod:`wfm.models.linear_prediction`), run
    ``horizon`` sweeps ahead; the scores are the predicted powers (so the best beam is their argmax)."""

    def __init__(self, horizon: int = 1) -> None:
        if horizon < 1:
            raise ValueError(f"horizon must be >= 1, got {horizon}")
        self.horizon = horizon

    def scores(self, w: BeamWindows) -> Tensor:
        return self.scores_of(w.past)

    def scores_of(self, past: Tensor) -> Tensor:
        """The predicted powers ``[N, B]`` from past sweeps ``[N, C, B]``."""
        from wfm.models.linear_prediction import ar_forecast

        return ar_forecast(past.double().transpose(1, 2), self.horizon)[..., -1].float()


def knn_scores(train: BeamWindows, test: BeamWindows, k: int = 5) -> Tensor:
    """Position-aided look-up (module doc): ``[N, B]`` vote scores (all zero for a test window of
    a scenario without training positions)."""
    return PositionKNN(train.position, train.label, train.scenario, train.future_power.shape[1], k).scores(test)


class PositionKNN:
    """The position-aided k-NN as an object (``scores``, ``covered``), so it can be saved and
    loaded like the trained models (its "weights" are the training positions and labels)."""

    def __init__(self, position: Tensor, label: Tensor, scenario: Tensor, beams: int, k: int = 5) -> None:
        self.position, self.label, self.scenario = position.float(), label.long(), scenario.long()
        self.beams, self.k = int(beams), int(k)

    @classmethod
    def empty(cls, k: int, beams: int) -> "PositionKNN":
        return cls(torch.zeros(0, 2), torch.zeros(0, dtype=torch.long), torch.zeros(0, dtype=torch.long), beams, k)

    @classmethod
    def fit(cls, train: BeamWindows, k: int = 5) -> "PositionKNN":
        return cls(train.position, train.label, train.scenario, train.future_power.shape[1], k)

    def tensors(self) -> dict[str, Tensor]:
        return {"position": self.position, "label": self.label, "scenario": self.scenario}

    def load_tensors(self, state: dict[str, Tensor], where: str = "position-knn") -> None:
        if set(state) != {"position", "label", "scenario"} or state["position"].ndim != 2 \
                or state["position"].shape[1:] != (2,) or not len(state["label"]) == len(state["scenario"]) \
                == len(state["position"]):
            raise DataError(f"{where}: not a position k-NN table (position [N, 2], label [N], scenario [N])")
        if len(state["label"]) and int(state["label"].max()) >= self.beams:
            raise DataError(f"{where}: a label is >= the {self.beams} beams")
        self.position, self.label, self.scenario = (state["position"].float(), state["label"].long(),
                                                    state["scenario"].long())

    def covered(self, test: BeamWindows) -> Tensor:
        """Bool ``[N]``: test windows of a scenario the table has positions for."""
        return torch.isin(test.scenario.long(), torch.unique(self.scenario))

    def scores(self, test: BeamWindows) -> Tensor:
        scores = torch.zeros(len(test), self.beams)
        for s in torch.unique(test.scenario).tolist():
            te = (test.scenario == s).nonzero()[:, 0]
            tr = (self.scenario == s).nonzero()[:, 0]
            if len(tr) == 0:
                continue  # an unseen scenario: no neighbours, all-zero scores (see covered)
            d = torch.cdist(test.position[te].double(), self.position[tr].double())
            kk = min(self.k, len(tr))
            nn_idx = d.topk(kk, largest=False).indices  # [n, kk], nearest first
            labels = self.label[tr][nn_idx]
            weights = 1.0 / torch.arange(1, kk + 1, dtype=torch.float32)
            scores[te] = torch.zeros(len(te), self.beams).scatter_add_(1, labels, weights.expand(len(te), -1))
        return scores


#: Beam-power ratios below this (-60 dB under the window's strongest beam) count as this in the
#: persistence prior's log, so that a dead beam has a finite score.
PRIOR_FLOOR = 1e-6
#: ``BeamMAE``'s priors: ``persistence`` (the current beam powers, what the persistence baseline
#: scores) or ``none`` (the head alone, as fine-tuned models were saved before the prior).
BEAM_PRIORS = ("persistence", "none")


def persistence_logits(past: Tensor) -> Tensor:
    """``log`` of the last beam powers over the strongest ``[N, B]`` (floored at ``PRIOR_FLOOR``):
    a monotone map of the persistence baseline's scores, so its ranking of the beams is theirs."""
    last = past[:, -1].clamp_min(0)
    return (last / last.amax(dim=1, keepdim=True).clamp_min(1e-30)).clamp_min(PRIOR_FLOOR).log()


def _shift_beams(x: Tensor, shift: Tensor) -> Tensor:
    """``x`` ``[N, C, B]`` with beam ``j`` of row ``n`` taken from beam ``j + shift[n]`` (0 past the
    codebook's ends: it is a line of beams, not a ring)."""
    b = x.shape[-1]
    src = torch.arange(b, device=x.device)[None, :] + shift[:, None]  # [N, B]
    ok = (src >= 0) & (src < b)
    out = torch.gather(x, 2, src.clamp(0, b - 1)[:, None, :].expand(-1, x.shape[1], -1))
    return out * ok[:, None, :].to(x.dtype)


class AnchoredBeamScores:
    """Beam scores anchored on persistence, optionally in the codebook seen from the current best
    beam (module doc; ``BeamMAE`` uses both by default, ``BeamRNN`` neither, as the standard
    baseline it is). A subclass sets ``head`` (its last ``nn.Linear``) and implements
    ``_features_scores(past)`` on the (possibly shifted) powers."""

    head: nn.Linear

    #: Added to the current best beam's score (``wfm calibrate``, :func:`calibrate_beam_biases`): how
    #: much more it takes to move off it than the scores trained on generated sweeps say. 0: none.
    stay_bias: float = 0.0
    #: Added to the score of the beam that linear prediction of the powers puts first
    #: (:class:`LinearPredictionBeams`, ``wfm calibrate`` chooses it with the stay bias). 0: none.
    ar_bias: float = 0.0
    #: Sweeps ahead the model predicts (its task's ``horizon``; what linear prediction runs).
    horizon: int = 1

    def _init_anchor(self, prior: str, relative: bool) -> None:
        if prior not in BEAM_PRIORS:
            raise ValueError(f"prior must be one of {', '.join(BEAM_PRIORS)}; got {prior!r}")
        self.prior, self.relative = prior, bool(relative)
        self.check_start = prior != "none"  # the start is persistence itself: a result to keep or beat
        if prior != "none":
            self.prior_log_scale = nn.Parameter(torch.zeros(()))
            self.zero_head()

    def zero_head(self) -> None:
        """Start the correction at zero (the anchored model is then persistence)."""
        if getattr(self, "prior", "none") != "none":
            nn.init.zeros_(self.head.weight)
            nn.init.zeros_(self.head.bias)

    def _features_scores(self, past: Tensor) -> Tensor:
        raise NotImplementedError

    def forward(self, past: Tensor) -> Tensor:
        shift = past[:, -1].argmax(dim=1) - past.shape[2] // 2 if self.relative else None
        out = self._features_scores(past if shift is None else _shift_beams(past, shift))
        if shift is not None:
            out = _shift_beams(out[:, None], -shift)[:, 0]
        if self.prior == "persistence":
            out = out + self.prior_log_scale.exp() * persistence_logits(past)
        if self.stay_bias:
            out = out + self.stay_bias * nn.functional.one_hot(past[:, -1].argmax(dim=1), out.shape[1]).to(out.dtype)
        if self.ar_bias:
            ahead = LinearPredictionBeams(self.horizon).scores_of(past).argmax(dim=1)
            out = out + self.ar_bias * nn.functional.one_hot(ahead, out.shape[1]).to(out.dtype)
        return out


class BeamRNN(AnchoredBeamScores, nn.Module):
    """LSTM/GRU over the (max-normalised) past beam powers -> scores of every beam. As a baseline
    it is the plain classifier (``prior="none"``, the absolute codebook); ``prior`` and
    ``relative`` give it ``BeamMAE``'s anchor and frame, to tell the design from the encoder."""

    reinit = True

    def __init__(self, beams: int = 64, hidden: int = 128, cell: str = "lstm", prior: str = "none",
                 relative: bool = False) -> None:
        super().__init__()
        self.rnn = (nn.LSTM if cell == "lstm" else nn.GRU)(beams, hidden, batch_first=True)
        self.head = nn.Linear(hidden, beams)
        self._init_anchor(prior, relative)

    def _features_scores(self, past: Tensor) -> Tensor:
        x = past / past.amax(dim=(1, 2), keepdim=True).clamp_min(1e-12)
        y, _ = self.rnn(x)
        return self.head(y[:, -1])

    def fit(self, train: BeamWindows, val: BeamWindows | None = None, steps: int = 600, lr: float = 2e-3,
            batch_size: int = 256, seed: int = 0, progress: Callable[[int, Any], None] | None = None,
            eval_every: int = 100) -> "BeamRNN":
        """Cross-entropy on the training windows; with ``val``, keeps the weights of the best
        validation top-1 (checked every ``eval_every`` steps and at the end, and before the first
        step for a model whose start is a result, ``check_start``: one anchored on persistence),
        else the last weights. ``selection`` says which were kept; ``progress(step, loss)`` after
        each step."""
        torch.manual_seed(seed)
        if self.reinit:  # from scratch: the initial weights follow the seed too
            for m in self.modules():
                if m is not self and hasattr(m, "reset_parameters"):
                    m.reset_parameters()
            self.zero_head()
        gen = torch.Generator().manual_seed(seed)
        opt = torch.optim.AdamW(self.parameters(), lr=lr, weight_decay=1e-4)

        def train_step(step: int) -> Tensor:
            idx = torch.randint(0, len(train), (min(batch_size, len(train)),), generator=gen)
            loss = nn.functional.cross_entropy(self(train.past[idx]), train.label[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            return loss

        def val_top1() -> float:
            return float((self.scores(val).argmax(1) == val.label).float().mean())

        fit_and_select(self, train_step, steps, val_top1 if val is not None and len(val) else None, eval_every,
                       maximize=True, score_name="val_top1", progress=progress,
                       check_start=getattr(self, "check_start", False))
        return self

    @torch.no_grad()
    def scores(self, w: BeamWindows) -> Tensor:
        self.eval()
        return torch.cat([self(w.past[a:a + 4096]) for a in range(0, len(w), 4096)])


class BeamMAE(AnchoredBeamScores, nn.Module):
    """A pretrained CSI MAE encoder fine-tuned (``full``) on beam-power windows.

    The past ``[C, 64]`` powers become a real "CSI" ``[C, 4, 16]`` of amplitudes ``sqrt(P)``
    (beams in rows of 16; ``C`` a multiple of the patch's time size), divided by the window's
    largest amplitude; the encoder's mean-pooled features go through a linear head to the 64
    beam scores. A foreign modality for a CSI model: this measures whether CSI pretraining
    transfers, next to the same encoder from random weights.

    ``prior="persistence"`` (the default) anchors the scores on the classical baseline, as the
    foundation models' forecasts are: scores = ``s * log(P_last / max P_last)`` +
    ``head(features)``, with a learned ``s`` (``prior_log_scale``, starting at 1) and the head
    starting at zero, so that before any training the model ranks the beams exactly as
    persistence does, and ``fit`` keeps that start unless a validation check beats it
    (``check_start``). ``prior="none"``: the head alone (the models saved before the prior).

    ``relative=True`` (the default) shows the encoder the codebook as seen from the current best
    beam, moved to the centre (``_shift_beams``; beams past the codebook's ends read as 0), and
    moves the head's scores back: the correction learns how the best beam moves from where it is
    (the drift the context shows), which carries to another site, instead of where the best beams
    of the training sites lie, which does not. ``False``: the absolute codebook (saved models
    before it).
    """

    reinit = False  # fit keeps the pretrained encoder

    def __init__(self, mae: nn.Module, beams: int = 64, prior: str = "persistence", relative: bool = True) -> None:
        super().__init__()
        self.features = MAEEncoder(mae)
        self.head = nn.Linear(self.features.out_dim, beams)
        self.beams = beams
        self._init_anchor(prior, relative)
        self.mae_arch = mae_arch(mae)  # to save and rebuild it (wfm.tasks.saved)
        self.mae_name = getattr(mae, "registry_name", None)

    def _features_scores(self, past: Tensor) -> Tensor:
        amp = past.clamp_min(0).sqrt()
        amp = amp / amp.amax(dim=(1, 2), keepdim=True).clamp_min(1e-12)
        x = amp.reshape(len(past), past.shape[1], 4, self.beams // 4).to(torch.complex64)
        return self.head(self.features(x).mean(dim=1))

    fit = BeamRNN.fit
    scores = BeamRNN.scores


#: The stay biases :func:`calibrate_beam_biases` tries (log-score units), and the biases on linear
#: prediction's best beam it tries with each.
STAY_BIASES = tuple(round(0.05 * i, 2) for i in range(41))
AR_BIASES = tuple(round(0.1 * i, 1) for i in range(21))


@torch.no_grad()
def calibrate_beam_biases(model: AnchoredBeamScores, w: BeamWindows,
                        biases: Sequence[float] = STAY_BIASES, ar_biases: Sequence[float] = (0.0,)) -> dict[str, Any]:
    """Choose ``model.stay_bias`` (and with ``ar_biases``, ``model.ar_bias``) on labelled windows
    ``w`` of the user's own sites (``wfm calibrate``).

    A model trained on generated sweeps moves off the current best beam as readily as those sweeps
    taught it; on real sites where the best beam flickers between neighbours for no reason the last
    sweeps show, that costs it (finetune/README.md, "Why it loses on the steadiest sites"). Each
    bias is scored by the top-1 of ``log_softmax(scores) + bias`` on the current best beam (the
    network runs once); the best that beats the model's current bias beyond noise
    (:func:`wfm.tasks.significance.beats_beyond_noise` over whole trajectories) replaces it. With
    ``ar_biases`` each stay bias is tried with each bonus on linear prediction's best beam
    (``ar_bias``), and the pair is chosen the same way. The weights are not touched. Returns
    ``{"rows", "choice", "current", "windows", "trajectories"}`` (``choice``/``current``: the stay
    bias; ``ar_choice``/``ar_current``: the other) and sets the model's biases to the choice."""
    if not len(w):
        raise DataError("no windows to calibrate on")
    current = (float(model.stay_bias), float(model.ar_bias))
    model.stay_bias, model.ar_bias = 0.0, 0.0
    try:
        logp = torch.log_softmax(model.scores(w).double(), dim=1)
    finally:
        model.stay_bias, model.ar_bias = current
    here = nn.functional.one_hot(w.past[:, -1].argmax(dim=1), logp.shape[1]).double()
    ahead = nn.functional.one_hot(LinearPredictionBeams(model.horizon).scores(w).argmax(dim=1),
                                  logp.shape[1]).double()
    grid = sorted({(float(b), float(a)) for b in biases for a in ar_biases} | {current})
    misses = {g: ((logp + g[0] * here + g[1] * ahead).argmax(dim=1) != w.label).double() for g in grid}
    # The best pair by top-1 that beats the current one beyond noise (a pair can gain on the long
    # drives and lose on many short ones: then the next best is tried).
    ranked = sorted(grid, key=lambda g: (float(misses[g].mean()), abs(g[0] - current[0]) + abs(g[1] - current[1])))
    choice = next((g for g in ranked if float(misses[g].mean()) < float(misses[current].mean())
                   and beats_beyond_noise(misses[current], misses[g], w.trajectory)), current)
    model.stay_bias, model.ar_bias = choice
    rows = [{"stay_bias": g[0], **({"ar_bias": g[1]} if len(ar_biases) > 1 or g[1] else {}),
             "top1": float(1 - misses[g].mean()),
             "note": ("chosen" if g == choice else "") + (" (current)" if g == current else "")} for g in grid]
    if len(rows) > 60:  # a joint grid: the chosen and current pairs and the best of each stay bias
        keep = {current, choice} | {min((g for g in grid if g[0] == b), key=lambda g: float(misses[g].mean()))
                                    for b in {g[0] for g in grid}}
        rows = [r for r, g in zip(rows, grid) if g in keep]
    return {"rows": rows, "choice": choice[0], "current": current[0], "ar_choice": choice[1], "ar_current": current[1],
            "windows": len(w), "trajectories": w.trajectories}
