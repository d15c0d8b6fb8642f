"""Pieces every loader shares: reading CSV tables with line numbers, writing a dataset."""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from wfm.data.errors import DataError
from wfm.data.shards import MANIFEST, FieldSpec, check_empty_output, write_dataset


#: Cells read as a missing value (besides an empty one).
MISSING = ("nan", "na", "null")


@dataclass
class CSVTable:
    """A CSV file as columns of strings, with the file line of every row (header = line 1)."""

    path: Path
    header: list[str]
    rows: list[list[str]]
    lines: np.ndarray

    def column(self, name: str) -> list[str]:
        if name not in self.header:
            raise DataError(f"{self.path}: missing column {name!r} (columns: {', '.join(self.header)})")
        j = self.header.index(name)
        return [r[j] for r in self.rows]

    def is_text(self, name: str) -> bool:
        """True where no non-empty cell of the column reads as a number (labels, names, ids as text)."""
        cells = [c.strip() for c in self.column(name)]
        filled = [c for c in cells if c and c.lower() not in MISSING]
        for c in filled:
            try:
                float(c)
                return False
            except ValueError:
                pass
        return bool(filled)

    def numbers(self, name: str, allow_empty: bool = True, hint: str = "") -> np.ndarray:
        """A column as float64; empty cells become NaN (missing), other text is an error (``hint``
        added to it), and so is an infinite value."""
        out = np.empty(len(self.rows), dtype=np.float64)
        for i, cell in enumerate(self.column(name)):
            cell = cell.strip()
            if cell == "" or cell.lower() in MISSING:
                if not allow_empty:
                    raise DataError(f"{self.path}: line {self.lines[i]}: column {name!r} is empty")
                out[i] = math.nan
                continue
            try:
                out[i] = float(cell)
            except ValueError:
                raise DataError(f"{self.path}: line {self.lines[i]}: column {name!r} value {cell!r} "
                                f"is not a number{hint}") from None
            if not math.isfinite(out[i]):  # 'inf', or a number past float64's range
                raise DataError(f"{self.path}: line {self.lines[i]}: column {name!r} value {cell!r} is not finite "
                                "(leave a missing value empty or write nan)")
        return out


def read_csv(path: str | Path, default_header: Sequence[str] | None = None,
             require_final_newline: bool = False) -> CSVTable:
    """Read a delimited text file (comma, tab or semicolon, sniffed from the first line).

    A file whose first row is all numbers has no header: ``default_header`` names its
    columns when the count matches (e.g. the raw Telecom Italia TSV files), else it is an error.
    Every row must have the header's number of fields. With ``require_final_newline`` a last
    line without its newline is refused as a truncated record: a download cut at ``139.3`` of
    ``139.30`` parses as a number, and nothing else would tell.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (UnicodeDecodeError, OSError) as e:
        raise DataError(f"{path}: cannot read as text ({e})") from None
    lines_text = text.splitlines()
    if not lines_text or not lines_text[0].strip():
        raise DataError(f"{path}: empty file")
    if require_final_newline and not text.endswith(("\n", "\r")) and lines_text[-1].strip():
        raise DataError(f"{path}: line {len(lines_text)}: the last line has no newline, so the file looks "
                        "truncated (a value may be cut mid-number); fetch the file again, or end the line "
                        "with a newline if it is complete")
    first = lines_text[0]
    delimiter = max(("\t", ",", ";"), key=first.count)
    if first.count(delimiter) == 0 and len(first.split()) > 1:
        delimiter = " "
    reader = csv.reader(lines_text, delimiter=delimiter, skipinitialspace=delimiter == " ")
    raw = [(i + 1, r) for i, r in enumerate(reader) if r and any(c.strip() for c in r)]
    head = [c.strip() for c in raw[0][1]]
    if all(_is_number(c) for c in head if c):
        if default_header is None or len(head) != len(default_header):
            raise DataError(f"{path}: line 1 has no column names (a header row is needed)")
        header, body = list(default_header), raw
    else:
        header, body = head, raw[1:]
    rows, lines = [], []
    for k, (line, r) in enumerate(body):
        if len(r) != len(header):
            cut = "; the file looks truncated" if k == len(body) - 1 and len(r) < len(header) else ""
            raise DataError(f"{path}: line {line}: {len(r)} fields, header has {len(header)}{cut}")
        rows.append(r)
        lines.append(line)
    if not rows:
        raise DataError(f"{path}: no data rows")
    return CSVTable(path, header, rows, np.array(lines, dtype=np.int64))


def _is_number(s: str) -> bool:
    try:
        float(s)
        return True
    except ValueError:
        return False


def prepare_out(out: str | Path) -> Path:
    """An output folder that is new or empty: imports never mix with earlier data. What a
    failed or killed import leaves (the lock file, ``.NAME.tmp-PID`` temporaries) does not count.
    An early check, before a long parse or download; :func:`write_dataset` checks again with
    the folder locked, which is the check that holds against a concurrent import."""
    out = Path(out)
    check_empty_output(out)
    return out


def write_samples(out: str | Path, name: str, kind: str, specs: Mapping[str, FieldSpec],
                  samples: Mapping[str, Any], attrs: Mapping[str, Any], source: Mapping[str, Any],
                  shard_size: int = 256) -> Path:
    """Write field arrays (dense arrays or lists of ragged rows) as a dataset, in shards."""
    if isinstance(shard_size, bool) or not isinstance(shard_size, int) or shard_size < 1:
        raise DataError(f"shard size must be an integer >= 1, got {shard_size!r}")
    out = prepare_out(out)
    n = len(next(iter(samples.values())))
    if n == 0:
        raise DataError(f"{source.get('source', name)}: nothing to import (no samples)")
    shards = []
    for a in range(0, n, shard_size):
        shards.append({k: (v[a:a + shard_size] if isinstance(v, list) else np.asarray(v)[a:a + shard_size])
                       for k, v in samples.items()})
    return write_dataset(out, name, kind, specs, shards, attrs, recipe={"import": dict(source)})


def dataset_exists(out: str | Path) -> bool:
    return (Path(out) / MANIFEST).is_file()
