#!/usr/bin/python3
"""Plain-PyTorch CPU reference for the vision speed workload of `deno task bench --model`.

The work: Avalanche's SlimResNet18 (nf 20, BasicBlocks [2, 2, 2, 2], 3x3 stem, batch norm,
4x4 average pool, linear head of 10) or iCaRL's ResNet-32 on Split CIFAR-10-shaped inputs
(3x32x32 float32, labels in 0..9), trained with SGD lr 0.01 momentum 0.9 and cross-entropy
(forward, backward, step; batch norm in train mode), then evaluated (forward in eval mode, no
gradient). Inputs are seeded Gaussian noise: the speed of these layers does not depend on the
values, and CIFAR cannot be downloaded on the machines this runs on.

For each batch size (--batches, default 10,128) the script trains --train-samples samples (after
--warmup iterations not timed) and evaluates --eval-samples samples at --eval-batch, for each
thread count of --threads (default 1,2: torch.set_num_threads AND OpenBLAS's pool through
threadpoolctl when present), and reports every setting and the best one per batch size.

Output: one JSON object on stdout.

Example:
  /usr/bin/python3 torch_ref_resnet.py --model slimresnet18 --batches 10,128 --threads 1,2
"""
import argparse
import json
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


def conv3x3(cin, cout, stride=1):
    return nn.Conv2d(cin, cout, kernel_size=3, stride=stride, padding=1, bias=False)


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, cin, planes, stride=1, option="B"):
        super().__init__()
        self.conv1 = conv3x3(cin, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = nn.Sequential()
        self.option = option
        self.pad = 0
        if stride != 1 or cin != planes:
            if option == "A":
                # iCaRL / PyCIL CIFAR ResNet: subsample and zero-pad the channels.
                self.pad = planes - cin
                self.stride = stride
            else:
                self.shortcut = nn.Sequential(
                    nn.Conv2d(cin, planes, kernel_size=1, stride=stride, bias=False),
                    nn.BatchNorm2d(planes),
                )

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.option == "A" and self.pad:
            sc = x[:, :, :: self.stride, :: self.stride]
            sc = F.pad(sc, (0, 0, 0, 0, self.pad // 2, self.pad - self.pad // 2))
        else:
            sc = self.shortcut(x)
        return F.relu(out + sc)


class SlimResNet18(nn.Module):
    """Avalanche's models/slim_resnet18.py ResNet(BasicBlock, [2, 2, 2, 2], nf=20)."""

    def __init__(self, num_classes=10, nf=20):
        super().__init__()
        self.in_planes = nf
        self.conv1 = conv3x3(3, nf)
        self.bn1 = nn.BatchNorm2d(nf)
        self.layer1 = self._layer(nf, 2, 1)
        self.layer2 = self._layer(nf * 2, 2, 2)
        self.layer3 = self._layer(nf * 4, 2, 2)
        self.layer4 = self._layer(nf * 8, 2, 2)
        self.linear = nn.Linear(nf * 8, num_classes)

    def _layer(self, planes, n, stride):
        layers = []
        for s in [stride] + [1] * (n - 1):
            layers.append(BasicBlock(self.in_planes, planes, s))
            self.in_planes = planes
        return nn.Sequential(*layers)

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer4(self.layer3(self.layer2(self.layer1(out))))
        out = F.avg_pool2d(out, 4)
        return self.linear(out.view(out.size(0), -1))


class ResNet32(nn.Module):
    """iCaRL's CIFAR ResNet-32: 3 stages of 5 BasicBlocks, 16/32/64 channels, option-A shortcuts."""

    def __init__(self, num_classes=10):
        super().__init__()
        self.in_planes = 16
        self.conv1 = conv3x3(3, 16)
        self.bn1 = nn.BatchNorm2d(16)
        self.layer1 = self._layer(16, 5, 1)
        self.layer2 = self._layer(32, 5, 2)
        self.layer3 = self._layer(64, 5, 2)
        self.linear = nn.Linear(64, num_classes)

    def _layer(self, planes, n, stride):
        layers = []
        for s in [stride] + [1] * (n - 1):
            layers.append(BasicBlock(self.in_planes, planes, s, option="A"))
            self.in_planes = planes
        return nn.Sequential(*layers)

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer3(self.layer2(self.layer1(out)))
        out = F.adaptive_avg_pool2d(out, 1)
        return self.linear(out.view(out.size(0), -1))


MODELS = {"slimresnet18": SlimResNet18, "resnet32": ResNet32}


def set_threads(n):
    torch.set_num_threads(n)
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(n)
    except Exception:  # threadpoolctl absent: torch's own pool only
        pass


def measure(model_name, batch, train_samples, eval_samples, eval_batch, warmup, seed):
    torch.manual_seed(seed)
    model = MODELS[model_name]()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    g = torch.Generator().manual_seed(seed)
    n_train = max(train_samples, batch * (warmup + 1))
    x = torch.randn(n_train, 3, 32, 32, generator=g)
    y = torch.randint(0, 10, (n_train,), generator=g)
    xe = torch.randn(eval_samples, 3, 32, 32, generator=g)

    def step(i):
        xb, yb = x[i * batch:(i + 1) * batch], y[i * batch:(i + 1) * batch]
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(xb), yb)
        loss.backward()
        opt.step()
        return loss

    model.train()
    for i in range(warmup):
        step(i)
    iters = train_samples // batch
    t0 = time.perf_counter()
    for i in range(iters):
        loss = step(i)
    loss.item()
    train_s = time.perf_counter() - t0
    model.eval()
    with torch.no_grad():
        model(xe[:eval_batch])
        t0 = time.perf_counter()
        for i in range(0, eval_samples, eval_batch):
            model(xe[i:i + eval_batch])
        eval_s = time.perf_counter() - t0
    return {
        "train_samples": iters * batch,
        "train_s": round(train_s, 4),
        "train_samples_per_s": round(iters * batch / train_s, 1),
        "eval_samples": eval_samples,
        "eval_s": round(eval_s, 4),
        "eval_samples_per_s": round(eval_samples / eval_s, 1),
        "parameters": sum(p.numel() for p in model.parameters()),
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="slimresnet18", choices=sorted(MODELS))
    ap.add_argument("--batches", default="10,128")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--train-samples", type=int, default=1280)
    ap.add_argument("--eval-samples", type=int, default=2560)
    ap.add_argument("--eval-batch", type=int, default=256)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    runs = []
    for threads in [int(t) for t in a.threads.split(",")]:
        set_threads(threads)
        for batch in [int(b) for b in a.batches.split(",")]:
            r = measure(a.model, batch, a.train_samples, a.eval_samples, a.eval_batch, a.warmup, a.seed)
            r.update({"threads": threads, "batch": batch})
            runs.append(r)
    best = {}
    for r in runs:
        b = str(r["batch"])
        if b not in best or r["train_samples_per_s"] > best[b]["train_samples_per_s"]:
            best[b] = r
    print(json.dumps({
        "reference": "torch",
        "model": a.model,
        "torch": torch.__version__,
        "runs": runs,
        "best": best,
    }))


if __name__ == "__main__":
    main()
