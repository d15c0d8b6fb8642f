"""Future-beam prediction on DeepSense 6G beam data (the BP-LLM task): past beam powers -> the
best beam ``horizon`` steps ahead.

Samples are windows of one trajectory: the ``context`` beam-power vectors up to step ``t`` (and
the vehicle's GPS at ``t``) -> ``best_beam[t + horizon]``, scored with the beam powers at
``t + horizon``. Trajectories, never samples, are split (``trajectory_split``): a seeded
permutation of trajectory indices, 70 / 10 / 20 % for train / val / test, so no trajectory
contributes to two splits.

Predictors give class scores ``[N, 64]``:

- ``persistence``: the current beam powers (the best beam now, then the next strongest);
- ``position-knn``: the future best beams of the ``k`` nearest training samples by the vehicle's
  position (east/north metres from its base station, same scenario only), votes weighted by
  ``1 / rank`` (Morais & Alkhateeb's position-aided look-up);
- ``lstm`` / ``gru``: a recurrent classifier trained from scratch on the training trajectories,
  its input each window's beam powers divided by the window's largest power (scale-free).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from wfm.data.errors import DataError

SPLIT_SHARES = (0.7, 0.1, 0.2)
NEEDED = ("beam_power", "best_beam", "vehicle_gps", "bs_gps", "scenario")


def trajectory_split(n: int, seed: int = 0, shares: tuple[float, float, float] = SPLIT_SHARES) -> dict[str, np.ndarray]:
    """Disjoint sorted trajectory indices for train / val / test (a seeded permutation)."""
    perm = np.random.default_rng(seed).permutation(n)
    n_test = max(1, int(round(shares[2] * n))) if n >= 3 else 0
    n_val = max(1, int(round(shares[1] * n))) if n >= 3 else 0
    n_train = n - n_val - n_test
    return {"train": np.sort(perm[:n_train]), "val": np.sort(perm[n_train:n_train + n_val]),
            "test": np.sort(perm[n_train + n_val:])}


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


def load_beam_windows(root: str | Path, context: int, horizon: int, seed: int = 0,
                      task: str = "future-beam") -> dict[str, BeamWindows]:
    """The train / val / test windows of a ``beam`` dataset, split by trajectory."""
    from wfm.data.geometry import gps_to_local
    from wfm.tasks.data import open_dataset

    ds = open_dataset(root, "beam", task)
    missing = [f for f in NEEDED if f not in ds.specs]
    if missing:
        raise DataError(f"{root}: task {task} needs field(s) {', '.join(missing)}, which this dataset lacks")
    block = ds.read_range(0, len(ds), list(NEEDED))
    ds.close()
    splits = trajectory_split(len(ds), seed)
    out = {}
    for name, idx in splits.items():
        parts: dict[str, list[Any]] = {k: [] for k in ("past", "label", "future_power", "position", "scenario", "trajectory")}
        for i in idx:
            pw = np.asarray(block["beam_power"][i], dtype=np.float32)
            L = len(pw)
            ts = np.arange(context - 1, L - horizon)
            if len(ts) == 0:
                continue
            pos = gps_to_local(np.asarray(block["vehicle_gps"][i]), np.asarray(block["bs_gps"][i]))
            win = np.stack([pw[t - context + 1:t + 1] for t in ts])
            parts["past"].append(win)
            parts["label"].append(np.asarray(block["best_beam"][i])[ts + horizon])
            parts["future_power"].append(pw[ts + horizon])
            parts["position"].append(pos[ts].astype(np.float32))
            parts["scenario"].append(np.full(len(ts), int(block["scenario"][i])))
            parts["trajectory"].append(np.full(len(ts), int(i)))
        if not parts["past"]:
            raise DataError(f"{root}: no trajectory in the {name} split is longer than context + horizon "
                            f"({context} + {horizon})")
        out[name] = BeamWindows(*(torch.from_numpy(np.concatenate(parts[k])) for k in
                                  ("past", "label", "future_power", "position", "scenario", "trajectory")))
    return out


def persistence_scores(w: BeamWindows) -> Tensor:
    return w.past[:, -1].float()


def knn_scores(train: BeamWindows, test: BeamWindows, k: int = 5) -> Tensor:
    """Position-aided look-up (module doc): ``[N, B]`` vote scores."""
    beams = train.future_power.shape[1]
    scores = torch.zeros(len(test), beams)
    for s in torch.unique(test.scenario).tolist():
        te = (test.scenario == s).nonzero()[:, 0]
        tr = (train.scenario == s).nonzero()[:, 0]
        if len(tr) == 0:
            continue  # an unseen scenario: no neighbours, all-zero scores
        d = torch.cdist(test.position[te].double(), train.position[tr].double())
        kk = min(k, len(tr))
        nn_idx = d.topk(kk, largest=False).indices  # [n, kk], nearest first
        labels = train.label[tr][nn_idx]
        weights = 1.0 / torch.arange(1, kk + 1, dtype=torch.float32)
        scores[te] = torch.zeros(len(te), beams).scatter_add_(1, labels, weights.expand(len(te), -1))
    return scores


class BeamRNN(nn.Module):
    """LSTM/GRU over the (max-normalised) past beam powers -> scores of every beam."""

    reinit = True

    def __init__(self, beams: int = 64, hidden: int = 128, cell: str = "lstm") -> None:
        super().__init__()
        self.rnn = (nn.LSTM if cell == "lstm" else nn.GRU)(beams, hidden, batch_first=True)
        self.head = nn.Linear(hidden, beams)

    def forward(self, past: Tensor) -> Tensor:
        x = past / past.amax(dim=(1, 2), keepdim=True).clamp_min(1e-12)
        y, _ = self.rnn(x)
        return self.head(y[:, -1])

    def fit(self, train: BeamWindows, val: BeamWindows | None = None, steps: int = 600, lr: float = 2e-3,
            batch_size: int = 256, seed: int = 0) -> "BeamRNN":
        """Cross-entropy on the training windows; keeps the best validation top-1 (every 100 steps)."""
        import copy

        torch.manual_seed(seed)
        if self.reinit:  # from scratch: the initial weights follow the seed too
            for m in self.modules():
                if m is not self and hasattr(m, "reset_parameters"):
                    m.reset_parameters()
        gen = torch.Generator().manual_seed(seed)
        opt = torch.optim.AdamW(self.parameters(), lr=lr, weight_decay=1e-4)
        best, state = -1.0, None
        for step in range(steps):
            self.train()
            idx = torch.randint(0, len(train), (min(batch_size, len(train)),), generator=gen)
            loss = nn.functional.cross_entropy(self(train.past[idx]), train.label[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if val is not None and ((step + 1) % 100 == 0 or step + 1 == steps):
                acc = float((self.scores(val).argmax(1) == val.label).float().mean())
                if acc > best:
                    best, state = acc, copy.deepcopy(self.state_dict())
        if state is not None:
            self.load_state_dict(state)
        return self.eval()

    @torch.no_grad()
    def scores(self, w: BeamWindows) -> Tensor:
        self.eval()
        return torch.cat([self(w.past[a:a + 4096]) for a in range(0, len(w), 4096)])


class BeamMAE(nn.Module):
    """A pretrained CSI MAE encoder fine-tuned (``full``) on beam-power windows.

    The past ``[C, 64]`` powers become a real "CSI" ``[C, 4, 16]`` of amplitudes ``sqrt(P)``
    (beams in rows of 16; ``C`` a multiple of the patch's time size), divided by the window's
    largest amplitude; the encoder's mean-pooled features go through a linear head to the 64
    beam scores. A foreign modality for a CSI model: this measures whether CSI pretraining
    transfers, next to the same encoder from random weights.
    """

    reinit = False  # fit keeps the pretrained encoder

    def __init__(self, mae: nn.Module, beams: int = 64) -> None:
        super().__init__()
        from wfm.tasks.models import MAEFeatures

        self.features = MAEFeatures(mae)
        self.head = nn.Linear(self.features.out_dim, beams)
        self.beams = beams

    def forward(self, past: Tensor) -> Tensor:
        amp = past.clamp_min(0).sqrt()
        amp = amp / amp.amax(dim=(1, 2), keepdim=True).clamp_min(1e-12)
        x = amp.reshape(len(past), past.shape[1], 4, self.beams // 4).to(torch.complex64)
        return self.head(self.features(x))

    fit = BeamRNN.fit
    scores = BeamRNN.scores
