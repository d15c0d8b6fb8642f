"""The dataset summary that ``wfm data generate``, ``inspect`` and every ``import`` print."""

from __future__ import annotations

# wfm.data.generate (numpy, h5py) is imported inside print_summary: `wfm --help` imports this module.
from wfm.console import print_table


def print_summary(manifest: dict) -> dict:
    """Print a dataset's summary and field tables; return them as one dict (for ``--json``)."""
    from wfm.data.generate import summarize

    summary = summarize(manifest)
    print_table([summary], title=f"dataset {manifest['name']}")
    rows = [{"field": k, "dtype": v["dtype"], "shape": v["shape"],
             "mean": _mean(manifest["stats"].get(k, {})), "std": manifest["stats"].get(k, {}).get("std")}
            for k, v in manifest["fields"].items()]
    print_table(rows, title="fields")
    return {**summary, "fields": manifest["fields"], "attrs": manifest["attrs"], "stats": manifest["stats"]}


def _mean(st: dict) -> object:
    m = st.get("mean")
    return complex(*m) if isinstance(m, list) else m
