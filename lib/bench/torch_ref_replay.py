#!/usr/bin/python3
"""Plain-PyTorch CPU reference for DER++ and ER-ACE on class-incremental SplitFMNIST.

The companion of ../shared/bench/torch_ref.py for the two rehearsal strategies whose step is not
"one minibatch, one criterion": the same workload, data loading, model, timing and JSON output,
so that `deno task bench --torch` compares ours with what a researcher would run in PyTorch.

Benchmark: Fashion-MNIST, 5 experiences of 2 classes each, fixed class
order [0..9] (exp k = classes {2k, 2k+1}), inputs scaled to [0,1] then
normalized with mean 0.2860 / std 0.3530 (Avalanche's SplitFMNIST default).
Model: MLP 784-400-400-10, ReLU. SGD lr 0.01 momentum 0.9, batch 128,
1 epoch per experience. After each experience, accuracy on the test set of
every experience (eval batch 256).

Strategies (--strategies, comma separated):
  derpp   DER++ as Mammoth's derpp.observe(): a reservoir buffer of 500
          samples with the logits the model gave them when they were
          trained on (sample s of the stream fills slot s while the buffer
          is not full, else replaces slot randint(0, s) when that is < 500),
          filled after every step with the minibatch and its outputs of
          that step's forward pass (before the update). Once the buffer
          holds a sample, each step's loss is CE(model(x), y) +
          alpha * MSE(model(x1), z1) + beta * CE(model(x2), y2), where
          (x1, z1) and (x2, y2) are two independent draws of min(128, size)
          distinct buffer samples; alpha 0.1, beta 0.5.
  erace   ER-ACE as Avalanche 0.6's ER_ACE with the memory of perennial's
          ERACEPlugin: a reservoir memory of 500 samples (each sample of an
          experience gets a uniform random weight before the experience is
          trained, as Avalanche's non-online ER_ACE; the 500 largest weights
          of old and new samples stay); from the 2nd experience on, each
          minibatch of 128 new samples is concatenated with 128 memory
          samples drawn by cycling through shuffled passes over the memory
          in full chunks (a pass's short rest is skipped: drop_last), one
          forward pass; loss = (CE of the new samples over the classes
          present in them + CE of the memory samples over all classes) / 2;
          plain CE while nothing is replayed.

Counting: samples_seen counts the samples of each training minibatch (new
and concatenated memory samples), as torch_ref.py and perennial's bench do;
DER++'s buffer minibatches are extra forward passes, not part of the
minibatch, and are counted apart in buffer_forward_samples.

Threads: as torch_ref.py (--threads default leaves torch and OpenBLAS as
they start; --threads N sets both to N).

--train-limit N / --test-limit N keep the first N samples of each
experience (a quick run, for tests; the figures are not comparable).

Output: one JSON object on stdout, with the fields of torch_ref.py.

Example:
  /usr/bin/python3 torch_ref_replay.py --strategies derpp,erace --data ../shared/datasets/fashion-mnist
"""
import argparse
import gzip
import json
import os
import random
import struct
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

DATA_DIR = os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "shared", "datasets", "fashion-mnist"
)
MEAN, STD = 0.2860, 0.3530
N_EXP, CLASSES_PER_EXP = 5, 2


# ----------------------------------------------------------------- data ----
def read_idx_gz(path):
    """Read an IDX file (gzip-compressed) into a numpy array."""
    with gzip.open(path, "rb") as f:
        raw = f.read()
    zero, dtype_code, ndim = struct.unpack(">HBB", raw[:4])
    if zero != 0 or dtype_code != 0x08:
        raise ValueError(f"{path}: unsupported IDX header")
    dims = struct.unpack(">" + "I" * ndim, raw[4:4 + 4 * ndim])
    arr = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    return arr.reshape(dims)


def load_fmnist(data_dir):
    def part(prefix):
        x = read_idx_gz(os.path.join(data_dir, f"{prefix}-images-idx3-ubyte.gz"))
        y = read_idx_gz(os.path.join(data_dir, f"{prefix}-labels-idx1-ubyte.gz"))
        x = torch.from_numpy(x.astype(np.float32) / 255.0).reshape(len(x), -1)
        x = (x - MEAN) / STD
        return x.contiguous(), torch.from_numpy(y.astype(np.int64))
    return part("train"), part("t10k")


def split_by_class(x, y, limit=None):
    """Experience k gets classes [2k, 2k+1] (fixed order 0..9); `limit` keeps the first ones."""
    exps = []
    for k in range(N_EXP):
        cls = torch.arange(k * CLASSES_PER_EXP, (k + 1) * CLASSES_PER_EXP)
        mask = (y.unsqueeze(1) == cls.unsqueeze(0)).any(1)
        idx = mask.nonzero().squeeze(1)[:limit]
        exps.append((x[idx].contiguous(), y[idx].contiguous(), cls.tolist()))
    return exps


# ---------------------------------------------------------------- model ----
def make_mlp():
    return nn.Sequential(
        nn.Linear(784, 400), nn.ReLU(),
        nn.Linear(400, 400), nn.ReLU(),
        nn.Linear(400, 10),
    )


def minibatches(n, batch, gen, shuffle=True):
    order = torch.randperm(n, generator=gen) if shuffle else torch.arange(n)
    for s in range(0, n, batch):
        yield order[s:s + batch]


class FullChunkCycler:
    """Endless chunks of `batch` indices over a memory of n samples: shuffled passes cut into full
    chunks, a pass's short rest skipped (a cycled DataLoader with shuffle and drop_last)."""

    def __init__(self, n, batch, gen):
        self.n, self.batch, self.gen = n, batch, gen
        self.order, self.pos = torch.empty(0, dtype=torch.int64), 0

    def next(self):
        if self.pos + self.batch > len(self.order):
            self.order, self.pos = torch.randperm(self.n, generator=self.gen), 0
        chunk = self.order[self.pos:self.pos + self.batch]
        self.pos += self.batch
        return chunk


# ------------------------------------------------------------ strategies ----
class DERpp:
    """Mammoth's DER++: Buffer (reservoir of examples, labels, logits) and observe()."""
    name = "derpp"

    def __init__(self, model, opt, args, gen):
        self.model, self.opt, self.args, self.gen = model, opt, args, gen
        cap = args.mem_size
        self.examples = torch.empty(cap, 784)
        self.labels = torch.empty(cap, dtype=torch.int64)
        self.logits = torch.empty(cap, 10)
        self.seen = 0
        self.rand = random.Random(args.seed)
        self.buffer_forward = 0

    def before_exp(self, k, xtr, ytr):
        pass

    def after_exp(self, k, xtr, ytr, classes):
        pass

    def get_data(self, size):
        """min(size, held) distinct buffer slots (Mammoth: np.random.choice(..., replace=False))."""
        held = min(self.seen, self.args.mem_size)
        return torch.randperm(held, generator=self.gen)[:min(size, held)]

    def add_data(self, x, y, out):
        # Mammoth's reservoir(), sample by sample; the slots are then written in one indexed copy
        # (a later sample of the minibatch drawing the same slot wins, as in the sequential loop).
        cap = self.args.mem_size
        slot_of = {}
        for i in range(len(x)):
            if self.seen < cap:
                slot = self.seen
            else:
                slot = self.rand.randint(0, self.seen)
            self.seen += 1
            if slot < cap:
                slot_of[slot] = i
        if slot_of:
            slots = torch.tensor(list(slot_of.keys()), dtype=torch.int64)
            rows = torch.tensor(list(slot_of.values()), dtype=torch.int64)
            self.examples[slots] = x[rows]
            self.labels[slots] = y[rows]
            self.logits[slots] = out[rows]

    def step(self, x, y):
        """One observe(); returns the samples of the minibatch and of concatenated memory (0)."""
        self.opt.zero_grad(set_to_none=True)
        out = self.model(x)
        loss = F.cross_entropy(out, y)
        if self.seen > 0:
            idx = self.get_data(self.args.batch_mem)
            buf_out = self.model(self.examples[idx])
            loss = loss + self.args.der_alpha * F.mse_loss(buf_out, self.logits[idx])
            idx = self.get_data(self.args.batch_mem)
            buf_out = self.model(self.examples[idx])
            loss = loss + self.args.der_beta * F.cross_entropy(buf_out, self.labels[idx])
            self.buffer_forward += 2 * len(idx)
        loss.backward()
        self.opt.step()
        self.add_data(x, y, out.detach())
        return 0


class ERACE:
    """ER-ACE: Avalanche 0.6's ACECriterion on a reservoir memory replayed by concatenation."""
    name = "erace"

    def __init__(self, model, opt, args, gen):
        self.model, self.opt, self.args, self.gen = model, opt, args, gen
        self.mem_x = torch.empty(0, 784)
        self.mem_y = torch.empty(0, dtype=torch.int64)
        self.weights = torch.empty(0)
        self.cycler = None

    def before_exp(self, k, xtr, ytr):
        # Avalanche's ER_ACE (not online): the experience enters the memory before it is trained,
        # so its classes are replayed too; replay starts with the second experience.
        # Avalanche's ReservoirSamplingBuffer: new weights uniform, keep the largest mem_size.
        w = torch.cat([torch.rand(len(xtr), generator=self.gen), self.weights])
        order = w.sort(descending=True).indices[:self.args.mem_size]
        x, y = torch.cat([xtr, self.mem_x]), torch.cat([ytr, self.mem_y])
        self.mem_x, self.mem_y, self.weights = x[order], y[order], w[order]
        n = len(self.mem_x)
        self.cycler = FullChunkCycler(n, self.args.batch_mem, self.gen) \
            if n >= self.args.batch_mem and k > 0 else None

    def after_exp(self, k, xtr, ytr, classes):
        self.cycler = None

    def step(self, x, y):
        """One iteration; returns the number of memory samples concatenated to the minibatch."""
        self.opt.zero_grad(set_to_none=True)
        if self.cycler is None:
            loss = F.cross_entropy(self.model(x), y)
            m = 0
        else:
            idx = self.cycler.next()
            n, m = len(x), len(idx)
            out = self.model(torch.cat([x, self.mem_x[idx]]))
            out_in, out_mem = out[:n], out[n:]
            # Only the classes present among the new samples enter their softmax.
            present = torch.unique(y)
            local = torch.searchsorted(present, y)
            current = F.cross_entropy(out_in[:, present], local)
            memory = F.cross_entropy(out_mem, self.mem_y[idx])
            loss = (current + memory) / 2
        loss.backward()
        self.opt.step()
        return m


STRATEGIES = {c.name: c for c in (DERpp, ERACE)}


# ------------------------------------------------------------------- run ----
@torch.no_grad()
def evaluate(model, test_exps, batch):
    model.eval()
    accs = []
    for xte, yte, _ in test_exps:
        correct = 0
        for s in range(0, len(xte), batch):
            correct += (model(xte[s:s + batch]).argmax(1) == yte[s:s + batch]).sum().item()
        accs.append(correct / len(xte))
    model.train()
    return accs


def seed_all(seed):
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def run_strategy(name, train_exps, test_exps, args):
    seed_all(args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    model = make_mlp()
    opt = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=args.momentum)
    strat = STRATEGIES[name](model, opt, args, gen)
    train_time = eval_time = 0.0
    new_seen = replay_seen = steps = 0
    acc_matrix = []
    for k, (xtr, ytr, classes) in enumerate(train_exps):
        t0 = time.perf_counter()
        strat.before_exp(k, xtr, ytr)
        model.train()
        for _ in range(args.epochs):
            for idx in minibatches(len(xtr), args.batch, gen):
                new_seen += len(idx)
                replay_seen += strat.step(xtr[idx], ytr[idx])
                steps += 1
        strat.after_exp(k, xtr, ytr, classes)
        train_time += time.perf_counter() - t0
        t0 = time.perf_counter()
        acc_matrix.append(evaluate(model, test_exps, args.eval_batch))
        eval_time += time.perf_counter() - t0
    total_seen = new_seen + replay_seen
    res = {
        "strategy": name,
        "train_wall_s": round(train_time, 3),
        "train_samples_per_s": round(total_seen / train_time, 1),
        "new_samples_per_s": round(new_seen / train_time, 1),
        "samples_seen": total_seen,
        "new_samples_seen": new_seen,
        "replayed_samples_seen": replay_seen,
        "optimizer_steps": steps,
        "eval_wall_s": round(eval_time, 3),
        "eval_samples": len(train_exps) * sum(len(t[0]) for t in test_exps),
        "final_avg_acc": round(sum(acc_matrix[-1]) / len(acc_matrix[-1]), 4),
        "acc_matrix": [[round(a, 4) for a in row] for row in acc_matrix],
    }
    if name == "derpp":
        res["buffer_forward_samples"] = strat.buffer_forward
    return res


def set_threads(spec):
    info = {}
    if spec != "default":
        n = int(spec)
        torch.set_num_threads(n)
        try:
            import threadpoolctl
            threadpoolctl.threadpool_limits(limits=n, user_api="blas")
        except ImportError:
            info["warning"] = "threadpoolctl missing: BLAS pool not limited (set OPENBLAS_NUM_THREADS)"
    info["torch_num_threads"] = torch.get_num_threads()
    try:
        import threadpoolctl
        info["blas_pools"] = [
            {"lib": d.get("internal_api"), "threads": d.get("num_threads"), "arch": d.get("architecture")}
            for d in threadpoolctl.threadpool_info() if d.get("user_api") == "blas"
        ]
    except ImportError:
        pass
    return info


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--strategies", default="derpp,erace")
    ap.add_argument("--threads", default="default", help="'default' or an integer")
    ap.add_argument("--data", default=DATA_DIR)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--lr", type=float, default=0.01)
    ap.add_argument("--momentum", type=float, default=0.9)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--eval-batch", type=int, default=256)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--mem-size", type=int, default=500)
    ap.add_argument("--batch-mem", type=int, default=128)
    ap.add_argument("--der-alpha", type=float, default=0.1)
    ap.add_argument("--der-beta", type=float, default=0.5)
    ap.add_argument("--train-limit", type=int, default=None)
    ap.add_argument("--test-limit", type=int, default=None)
    args = ap.parse_args()
    names = [n.strip() for n in args.strategies.split(",") if n.strip()]
    unknown = [n for n in names if n not in STRATEGIES]
    if unknown or not names:
        ap.error(f"unknown strategies {unknown}: choose among {', '.join(STRATEGIES)}")

    thread_info = set_threads(args.threads)
    t0 = time.perf_counter()
    (xtr, ytr), (xte, yte) = load_fmnist(args.data)
    load_s = time.perf_counter() - t0
    train_exps = split_by_class(xtr, ytr, args.train_limit)
    test_exps = split_by_class(xte, yte, args.test_limit)

    out = {
        "torch": torch.__version__,
        "python": sys.version.split()[0],
        "threads_arg": args.threads,
        **thread_info,
        "data_load_s": round(load_s, 3),
        "train_sizes": [len(e[0]) for e in train_exps],
        "test_sizes": [len(e[0]) for e in test_exps],
        "results": [],
    }
    for name in names:
        out["results"].append(run_strategy(name, train_exps, test_exps, args))
        print(f"[done] {name}: {out['results'][-1]['train_wall_s']} s", file=sys.stderr)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
