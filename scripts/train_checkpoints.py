"""Train the checkpoints that ship in data/checkpoints (``make checkpoints``).

Chapter 4's PGD-trained network cannot converge within the chapter's 3-minute CPU budget, so it is
trained here, once, by the chapter's own function
(:func:`advcourse.experiments.ch04_pgd_saddle_point.train_robust`) with the recorded recipe
``CHECKPOINT_RECIPE``, and written with its metadata (recipe, seed, versions, training time, training
curves and final metrics). After a retrain, pin the printed SHA-256 in ``CHECKPOINT_SHA256`` of the
chapter's module: the chapter refuses weights whose checksum differs.

    python scripts/train_checkpoints.py [--out FOLDER] [--scale 4] [--epochs 40] [--steps 10]
"""

from __future__ import annotations

import argparse
import os
import pathlib
import platform
import sys
import time

import torch

import advcourse
from advcourse import checkpoint, data
from advcourse.attacks import pgd, robust_accuracy
from advcourse.evaluate import accuracy
from advcourse.experiments import ch04_pgd_saddle_point as sp

N_VAL = 500  # held-out test digits for the curves: the last of sp.test_subset's order, never attacked by the chapter


def main(argv=None) -> int:
    recipe = dict(sp.CHECKPOINT_RECIPE)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=pathlib.Path, default=checkpoint.checkpoint_dir(), help="output folder")
    parser.add_argument("--name", default="ch04_pgd_mnist", help="checkpoint name")
    for key in ("scale", "epochs", "steps", "seed"):
        parser.add_argument(f"--{key}", type=int, default=recipe[key], help=f"recipe override (default {recipe[key]})")
    parser.add_argument("--lr", type=float, default=recipe["lr"], help=f"recipe override (default {recipe['lr']})")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    args = parser.parse_args(argv)
    recipe.update(scale=args.scale, epochs=args.epochs, steps=args.steps, seed=args.seed, lr=args.lr)

    run = advcourse.start("fast", recipe["seed"], cpu_threads=1)  # one thread, as the chapter
    mnist = data.mnist(full=False)
    x_all, y_all = sp.test_subset(mnist, len(mnist.x_test))
    x_val, y_val = x_all[-N_VAL:], y_all[-N_VAL:]
    start = time.perf_counter()
    model, history = sp.train_robust(mnist.x_train, mnist.y_train, **recipe, x_val=x_val, y_val=y_val,
                                     progress=not args.no_progress, log=lambda line: print(line, flush=True))
    seconds = time.perf_counter() - start
    for epoch, (nat, adv) in enumerate(zip(history["natural"], history["pgd"]), 1):
        print(f"epoch {epoch:3d}: natural {100 * nat:.1f}%, PGD-40 {100 * adv:.1f}%", flush=True)
    gen = torch.Generator().manual_seed(recipe["seed"] + 3)
    metrics = {"natural": accuracy(model, x_val, y_val),
               "pgd40": robust_accuracy(model, x_val, y_val, pgd, eps=recipe["eps"], alpha=0.01, steps=40,
                                        early_stop=True, generator=gen)}
    meta = checkpoint.save(model, args.name, {
        "trained_by": "advcourse.experiments.ch04_pgd_saddle_point.train_robust (scripts/train_checkpoints.py)",
        "recipe": recipe, "seed": recipe["seed"],
        "data": f"{mnist.source} MNIST, {len(mnist.x_train):,} training digits",
        "validation": f"the last {N_VAL} test digits of test_subset's order (not attacked by the chapter)",
        "threads": torch.get_num_threads(), "hardware": f"{platform.machine()} CPU, {os.cpu_count()} cores (shared)",
        "device": str(run.device), "train_seconds": seconds, "metrics": metrics,
        "curves": {k: history[k] for k in ("loss", "train_acc", "natural", "pgd")},
        "adv_loss": history["adv_loss"], "eps_used": history["eps_used"]}, folder=args.out)
    print(checkpoint.provenance(meta))
    print(f"SHA-256: {meta['weights_sha256']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
