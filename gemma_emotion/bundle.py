"""Building the bundled copy of dair-ai/emotion (gemma_emotion/assets/emotion/) from a folder of JSONL splits.

One zstd Parquet file a split, the same rows in the same order, and `fingerprints.json` (each split's rows
and the hash of its (text, label) rows, what the tests check). The bytes depend only on the rows (and the
pyarrow version), so a rebuild can be compared with the shipped files. `scripts/bundle_emotion.py` runs it.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from gemma_emotion import data, paths
from gemma_emotion.files import atomic_write_bytes, atomic_write_json
from gemma_emotion.sources import BUNDLED_SPLITS, FINGERPRINTS_FILE


def bundle_emotion(source: str | os.PathLike, out: str | os.PathLike = paths.BUNDLED_DATA) -> dict[str, dict]:
    """Write the splits of a folder of JSONL files as zstd Parquet (same rows, same order) plus their
    fingerprints; returns {split: {rows, bytes, fingerprint}}. What scripts/bundle_emotion.py runs."""
    out = Path(out)
    written: dict[str, dict] = {}
    for split in BUNDLED_SPLITS:
        ds = data.load_split(Path(source) / f"{split}.jsonl", split)
        table = pa.table(
            {"text": pa.array(ds["text"], pa.string()), "label": pa.array(ds["label"], pa.int8())}
        )
        buf = io.BytesIO()
        pq.write_table(table, buf, compression="zstd", compression_level=19, use_dictionary=False)
        atomic_write_bytes(out / f"{split}.parquet", buf.getvalue())
        written[split] = {"rows": len(ds), "bytes": len(buf.getvalue()), "fingerprint": data.fingerprint(ds)}
    atomic_write_json(out / FINGERPRINTS_FILE, {s: {"rows": w["rows"], "fingerprint": w["fingerprint"]}
                                                for s, w in written.items()})  # fmt: skip
    return written
