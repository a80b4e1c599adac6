"""Rebuild ``data/movie_reviews.npz`` from the ``vaderSentiment`` 3.3.2 sdist (MIT).

``additional_resources/hutto_ICWSM_2014.tar.gz`` in the source distribution holds
``movieReviewSnippets_GroundTruth.txt``: 10,605 movie-review snippets, each with
the mean sentiment rating of 20 human raters on a -4..+4 scale (Hutto & Gilbert,
ICWSM 2014). We keep every snippet with its rating and make a fixed 80/20 split.

Usage::

    cd "$(mktemp -d)" && pip download --no-deps --no-binary :all: vaderSentiment==3.3.2 -d .
    tar xzf vaderSentiment-3.3.2.tar.gz
    python data/scripts/make_movie_reviews.py <that-dir>/vaderSentiment-3.3.2
"""

import io
import pathlib
import sys
import tarfile

import numpy as np
from _common import save_npz

MEMBER = "hutto_ICWSM_2014/movieReviewSnippets_GroundTruth.txt"


def read_snippets(sdist_dir: pathlib.Path):
    with tarfile.open(sdist_dir / "additional_resources" / "hutto_ICWSM_2014.tar.gz") as tar:
        raw = tar.extractfile(MEMBER).read()
    texts, ratings = [], []
    for n, line in enumerate(io.TextIOWrapper(io.BytesIO(raw), encoding="utf-8", errors="strict")):
        line = line.rstrip("\r\n")
        if not line:
            continue
        fields = line.split("\t")
        if len(fields) != 3:
            raise ValueError(f"line {n + 1}: expected id, rating, text; got {len(fields)} fields")
        ratings.append(float(fields[1]))
        texts.append(fields[2].strip())
    return np.asarray(texts), np.asarray(ratings, dtype=np.float32)


def main(sdist_dir: str) -> None:
    texts, ratings = read_snippets(pathlib.Path(sdist_dir))
    order = np.random.default_rng(0).permutation(len(texts))
    n_test = len(texts) // 5
    test, train = np.sort(order[:n_test]), np.sort(order[n_test:])
    digest = save_npz(
        "movie_reviews.npz",
        text_train=texts[train].astype("U"), rating_train=ratings[train],
        text_test=texts[test].astype("U"), rating_test=ratings[test],
    )
    print(f"movie_reviews.npz: {len(train)} train, {len(test)} test, sha256 {digest}")


if __name__ == "__main__":
    main(sys.argv[1])
