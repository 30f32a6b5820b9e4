"""Prepared datasets: fetched by package name at set-up time, split deterministically.

`rt-sentiment`: the 10,605 Rotten Tomatoes sentences of Hutto & Gilbert (ICWSM 2014), the pool
SST-2 was built from, shipped in the vaderSentiment 3.3.2 source distribution (MIT). Label 1 if
the mean rating is > 0, 0 if < 0; sentences rated exactly 0 are dropped.
"""

from __future__ import annotations

import hashlib
import io
import json
import random
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

from qtoolkit.artifacts import Kind, check_output_dir, write_manifest, writing_dir
from qtoolkit.errors import QtoolError

__all__ = ["DATASETS", "prepare_dataset", "RT_SPLITS"]

SDIST = "vaderSentiment==3.3.2"
INNER = "additional_resources/hutto_ICWSM_2014.tar.gz"
MOVIES = "movieReviewSnippets"  # hutto_ICWSM_2014/<name>_GroundTruth.txt in INNER
# Disjoint splits, taken in this order from one seeded shuffle.
RT_SPLITS = {"train": 6000, "dev": 1000, "calib": 512, "test": 2000}


@dataclass
class Prepared:
    output_dir: Path
    counts: dict[str, int]
    seed: int

    def summary(self) -> str:
        counts = ", ".join(f"{k} {v}" for k, v in self.counts.items())
        return f"wrote {self.output_dir}: {counts} (seed {self.seed})"


def _fetch_sdist(cache: Path) -> Path:
    found = sorted(cache.glob("vaderSentiment-3.3.2.tar.gz"))
    if found:
        return found[0]
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--no-binary",
        ":all:",
        "-q",
        "-d",
        str(cache),
        SDIST,
    ]
    result = subprocess.run(cmd, capture_output=True, text=True)
    found = sorted(cache.glob("vaderSentiment-3.3.2.tar.gz"))
    if result.returncode != 0 or not found:
        last = (result.stderr.strip().splitlines() or ["no output"])[-1]
        raise QtoolError(f"could not download {SDIST} with pip: {last}")
    return found[0]


def read_movie_sentences(sdist: Path) -> list[tuple[str, str, float]]:
    """(id, text, mean rating) for every line of the movie-review ground truth."""
    return read_ground_truth(sdist, MOVIES)


def read_ground_truth(sdist: Path, name: str) -> list[tuple[str, str, float]]:
    """(id, text, mean rating) for every line of one of the package's rated sets (`name`:
    movieReviewSnippets, amazonReviewSnippets, nytEditorialSnippets or tweets); a truncated or
    foreign package (a cached download cut short) is named, with what to do."""
    try:
        return _ground_truth_rows(sdist, name)
    except (tarfile.TarError, EOFError, OSError, KeyError, ValueError, UnicodeDecodeError) as exc:
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0].rstrip(":")
        raise QtoolError(
            f"{sdist}: not a readable {SDIST} source package ({reason}); delete it and run "
            "again to download it afresh"
        ) from None


def _ground_truth_rows(sdist: Path, name: str) -> list[tuple[str, str, float]]:
    with tarfile.open(sdist) as outer:
        member = next((m for m in outer.getmembers() if m.name.endswith(INNER)), None)
        if member is None:
            raise QtoolError(f"{sdist} does not contain {INNER}")
        inner_bytes = outer.extractfile(member).read()
    with tarfile.open(fileobj=io.BytesIO(inner_bytes)) as inner:
        raw = inner.extractfile(f"hutto_ICWSM_2014/{name}_GroundTruth.txt").read().decode("utf-8")
    rows = []
    for line in raw.splitlines():
        parts = line.split("\t")
        if len(parts) >= 3 and parts[2].strip():
            rows.append((parts[0], parts[2].strip(), float(parts[1])))
    return rows


def prepare_rt_sentiment(out_dir: Path, seed: int, cache: Path | None) -> Prepared:
    with tempfile.TemporaryDirectory() as tmp:
        sdist = _fetch_sdist(Path(cache) if cache else Path(tmp))
        digest = hashlib.sha256(sdist.read_bytes()).hexdigest()
        rows = read_movie_sentences(sdist)
    labelled = [(i, text, int(r > 0)) for i, text, r in rows if r != 0]
    need = sum(RT_SPLITS.values())
    if len(labelled) < need:
        raise QtoolError(f"expected at least {need} rated sentences, found {len(labelled)}")
    random.Random(seed).shuffle(labelled)
    counts, start = {}, 0
    with writing_dir(out_dir, Kind.DATASET, inputs=(cache,)) as tmp_dir:
        for split, n in RT_SPLITS.items():
            part = labelled[start : start + n]
            start += n
            with (tmp_dir / f"{split}.jsonl").open("w", encoding="utf-8") as f:
                for sid, text, label in part:
                    f.write(json.dumps({"id": sid, "text": text, "label": label}) + "\n")
            counts[split] = len(part)
        manifest = {
            "dataset": "rt-sentiment",
            "source": SDIST,
            "source_sha256": digest,
            "file": MOVIES,
            "seed": seed,
            "rated_sentences": len(rows),
            "dropped_neutral": len(rows) - len(labelled),
            "counts": counts,
            "unused": len(labelled) - start,
            "labels": {"0": "negative (mean rating < 0)", "1": "positive (mean rating > 0)"},
            "credit": "C.J. Hutto and E. Gilbert, VADER, ICWSM 2014 (MIT licence)",
        }
        write_manifest(tmp_dir, Kind.DATASET, **manifest)
    return Prepared(out_dir, counts, seed)


DATASETS = {"rt-sentiment": prepare_rt_sentiment}


def prepare_dataset(
    name: str, out_dir: Path, seed: int = 13, cache: Path | None = None
) -> Prepared:
    if name not in DATASETS:
        raise QtoolError(f"unknown dataset '{name}' (available: {', '.join(DATASETS)})")
    check_output_dir(out_dir, Kind.DATASET, inputs=(cache,))  # before the download
    return DATASETS[name](Path(out_dir), seed, cache)
