"""Training throughput on a feature cache: steps/s and crops/s of the training loop, with the
time split between making batches and the model step. On the CPU the times are CPU seconds of
this process (wall time on a shared machine says more about the neighbours); on CUDA, wall time.
No checkpoints are written.

    python scripts/train_throughput.py CACHE [CACHE ...] [--recipe tiny] [--steps 20] [--device cuda]
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from midialign.training.data import load_cache
from midialign.training.train import RECIPES, model_loss, sample_batch
from midialign.training.model import CRNN


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("cache", nargs="+")
    ap.add_argument("--recipe", default="tiny")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1: the machine is shared)")
    ap.add_argument("--device", default="cpu", help="cpu or cuda")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    dev = torch.device(args.device)
    clock = time.process_time if dev.type == "cpu" else time.perf_counter
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    recipe = RECIPES[args.recipe]
    t0 = time.time()
    recs = [r for c in args.cache for r in load_cache(Path(c), feature_cfg=recipe.features)]
    load_s = time.time() - t0
    weights = np.array([r.features.shape[1] for r in recs], dtype=np.float64)
    weights /= weights.sum()
    model = CRNN(recipe.model).to(dev)
    opt = torch.optim.Adam(model.parameters(), lr=recipe.train.lr)
    rng = np.random.default_rng(0)
    data_s = model_s = 0.0
    for step in range(args.steps + 2):
        if step == 2:  # the first steps warm up allocators
            data_s = model_s = 0.0
        t = clock()
        x, f, y, o, m = (a.to(dev) for a in sample_batch(recs, weights, recipe, rng))
        t_data = clock()
        loss = model_loss(model(x, f), y, o, m, recipe.train)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sync()
        data_s += t_data - t
        model_s += clock() - t_data
    total = data_s + model_s
    bs = recipe.train.batch_size
    print(f"recipe {args.recipe} (batch {bs} x {recipe.train.segment_s:g} s), {len(recs)} recordings loaded in {load_s:.1f} s, "
          f"{args.steps} steps on {dev.type}: {args.steps / total:.2f} steps/s, {args.steps * bs / total:.1f} crops/s "
          f"({'CPU' if dev.type == 'cpu' else 'wall'} time); "
          f"batches {1000 * data_s / args.steps:.0f} ms/step, model {1000 * model_s / args.steps:.0f} ms/step")


if __name__ == "__main__":
    main()
