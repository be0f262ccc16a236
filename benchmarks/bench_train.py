"""Training-step throughput of P3M-Net (forward + full P3M loss + backward + Adam step), images/s.

Synthetic random tensors, no dataset: runs on a bare GPU box with only torch installed::

    PYTHONPATH=src python -m benchmarks.bench_train                       # CPU: fp32, bf16+cl
    PYTHONPATH=src python -m benchmarks.bench_train --device cuda --compile --json out.json

The step is `p3m.train.step.TrainStep`, the one the trainer runs. A mode is "+"-joined options:
fp32 or bf16 (autocast), cl (channels_last), fused (fused Adam), graph (the whole step as one CUDA graph; implies
fused + capturable Adam), compile / compile-ro / compile-ma (torch.compile of network and loss, mode default /
reduce-overhead / max-autotune-no-cudagraphs). Experiments (not in the library until they prove faster):
unpool-nhwc (max-unpooling as a scatter over channels_last memory, no layout round trips; self-checked against
F.max_unpool2d). For eager modes the step time is also split into forward, loss and backward+optimizer
(synchronised timings of separate steps) to show what limits it. All numbers are measured in this one run.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import platform
import sys
import time
from pathlib import Path

import torch

from p3m import models
from p3m.train.step import TrainStep, make_optimizer


def synthetic_batch(batch: int, size: int, device: torch.device) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    image = torch.randn(batch, 3, size, size, generator=g)
    alpha = torch.rand(batch, 1, size, size, generator=g)
    trimap = torch.tensor([0.0, 128.0, 255.0])[torch.randint(0, 3, (batch, 1, size, size), generator=g)]
    fg, bg = torch.randn_like(image), torch.randn_like(image)
    out = {"image": image, "alpha": alpha, "trimap": trimap, "fg": fg, "bg": bg}
    return {k: v.to(device) for k, v in out.items()}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


COMPILE_TOKENS = {"compile": "default", "compile-ro": "reduce-overhead", "compile-ma": "max-autotune-no-cudagraphs"}
KNOWN_TOKENS = {"fp32", "bf16", "cl", "fused", "graph", "unpool-nhwc", *COMPILE_TOKENS}


def unpool_nhwc(x: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
    """max_unpool2d(kernel 2, stride 2) as a scatter along the flattened pixels of channels_last memory:
    [B,C,h,w] -> [B,C,2h,2w] channels_last. F.max_unpool2d works in NCHW, so with channels_last it pays layout
    copies of input, indices and output (the `copy_` share of the H100 profile). Duplicate indices (overlapping
    3x3/2 pools) keep one of the candidates, as max_unpool2d does on the GPU."""
    b, c, h, w = x.shape
    src = x.permute(0, 2, 3, 1).reshape(b, h * w, c)  # a view for channels_last x
    idx = indices.permute(0, 2, 3, 1).reshape(b, h * w, c)
    out = x.new_zeros(b, 4 * h * w, c).scatter(1, idx, src)
    return out.view(b, 2 * h, 2 * w, c).permute(0, 3, 1, 2)


def check_unpool_nhwc(device: torch.device) -> None:
    """Equal to F.max_unpool2d where indices are unique (2x2/2 pooling), values, gradients and layout."""
    import torch.nn.functional as F

    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 8, 16, 12, generator=g).to(device).contiguous(memory_format=torch.channels_last)
    pooled, idx = F.max_pool2d(x, 2, 2, return_indices=True)
    a = pooled.detach().clone().requires_grad_()
    b_ = pooled.detach().clone().requires_grad_()
    want, got = F.max_unpool2d(a, idx, 2, 2), unpool_nhwc(b_, idx)
    grad = torch.randn(want.shape, generator=g).to(device)
    (want * grad).sum().backward()
    (got * grad).sum().backward()
    if not (
        torch.equal(want, got) and torch.equal(a.grad, b_.grad) and got.is_contiguous(memory_format=torch.channels_last)
    ):
        raise RuntimeError("unpool-nhwc differs from F.max_unpool2d")


def parse_mode(mode: str) -> dict:
    tokens = set(mode.split("+"))
    unknown = tokens - KNOWN_TOKENS
    if unknown:
        raise ValueError(
            f"unknown mode option(s) {', '.join(sorted(unknown))} (known: {', '.join(sorted(KNOWN_TOKENS))})"
        )
    compile_modes = [COMPILE_TOKENS[t] for t in tokens if t in COMPILE_TOKENS]
    graph = "graph" in tokens
    return {
        "bf16": "bf16" in tokens,
        "channels_last": "cl" in tokens,
        "fused": "fused" in tokens or graph,
        "graph": graph,
        "compile_mode": compile_modes[0] if compile_modes else None,
        "unpool_nhwc": "unpool-nhwc" in tokens,
    }


def bench_mode(args, mode: str, device: torch.device) -> dict:
    opts = parse_mode(mode)
    from p3m.models import blocks

    original_unpool = blocks.unpool
    if opts["unpool_nhwc"]:
        check_unpool_nhwc(device)
        blocks.unpool = unpool_nhwc
    try:
        return _bench_mode(args, mode, opts, device)
    finally:
        blocks.unpool = original_unpool


def _bench_mode(args, mode: str, opts: dict, device: torch.device) -> dict:
    torch.manual_seed(0)
    kwargs = {"width": args.width} if args.width else {}
    model = models.create(args.arch, **kwargs).to(device).train()
    for name in ("resnet.fc", "encoder.head"):
        with contextlib.suppress(AttributeError):
            model.get_submodule(name).requires_grad_(False)
    if opts["channels_last"]:
        model = model.to(memory_format=torch.channels_last)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = make_optimizer(params, lr=1e-5, fused=opts["fused"], capturable=opts["graph"], device=device)
    step = TrainStep(
        model,
        opt,
        params=params,
        amp_dtype=torch.bfloat16 if opts["bf16"] else None,
        channels_last=opts["channels_last"],
        cuda_graph=opts["graph"],
        compile_mode=opts["compile_mode"],
    )
    batch = synthetic_batch(args.batch, args.size, device)

    t_warm = time.perf_counter()
    for _ in range(args.warmup):
        step(batch, 1e-5)
    sync(device)
    warmup_s = time.perf_counter() - t_warm
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    t0 = time.perf_counter()
    for _ in range(args.steps):
        parts = step(batch, 1e-5)
    sync(device)
    elapsed = time.perf_counter() - t0
    loss = float(parts["total"])
    share = None
    if not opts["graph"] and opts["compile_mode"] != "reduce-overhead":
        split = {"forward": 0.0, "loss": 0.0, "backward+optimizer": 0.0}
        last = [0.0]

        def mark(phase: str) -> None:
            sync(device)
            now = time.perf_counter()
            split[phase] += now - last[0]
            last[0] = now

        for _ in range(max(1, min(args.steps, 3))):
            opt.zero_grad(set_to_none=True)
            sync(device)
            last[0] = time.perf_counter()
            step.compute(batch, mark)
        total_split = sum(split.values())
        share = {k: v / total_split for k, v in split.items()}
    profile_table = None
    if args.profile:
        # where a step's time goes, kernel by kernel (the issue asks what limits the throughput)
        from torch.profiler import ProfilerActivity, profile

        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
        with profile(activities=activities) as prof:
            for _ in range(2):
                step(batch, 1e-5)
            sync(device)
        sort = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
        profile_table = prof.key_averages().table(sort_by=sort, row_limit=args.profile, max_name_column_width=60)
        print(f"# profile of 2 training steps, mode {mode}, sorted by {sort}\n{profile_table}", flush=True)
    result = {
        "mode": mode,
        "images_per_s": args.batch * args.steps / elapsed,
        "step_ms": 1000 * elapsed / args.steps,
        "warmup_s": warmup_s,
        "loss": loss,
    }
    if share is not None:
        result["share"] = share
    if opts["graph"]:
        result["graph_replays"] = step.replays  # 0 means the capture failed and the steps ran eagerly
    if device.type == "cuda":
        result["peak_mem_gib"] = torch.cuda.max_memory_allocated(device) / 2**30
    if profile_table is not None:
        result["profile"] = profile_table
    del step, model, opt, batch
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    parser.add_argument("--arch", default="p3m-r34")
    parser.add_argument("--width", type=int, default=None, help="R34 width (default 64 = published)")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--steps", type=int, default=None, help="timed steps (default 2 on CPU, 20 on GPU)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed steps (default 1 on CPU, 5 on GPU)")
    parser.add_argument(
        "--modes",
        default=None,
        help="comma list of modes, e.g. fp32,bf16+cl,bf16+cl+graph (options: see the module doc)",
    )
    parser.add_argument(
        "--compile", action="store_true", help="add the bf16+cl+fused+compile and bf16+cl+fused+compile-ro modes"
    )
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--json", default=None, metavar="OUT", help="write the results as JSON (after each mode)")
    parser.add_argument(
        "--profile",
        type=int,
        default=0,
        metavar="N",
        help="also profile 2 steps per mode and print the N most expensive operators",
    )
    args = parser.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            print("bench_train: CUDA is not available", file=sys.stderr)
            return 2
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    if args.threads:
        torch.set_num_threads(args.threads)
    gpu = device.type == "cuda"
    args.steps = args.steps or (20 if gpu else 2)
    args.warmup = args.warmup if args.warmup is not None else (6 if gpu else 1)  # graph: 3 eager, capture, 2 replays
    default_modes = ["fp32", "bf16", "bf16+cl", "bf16+cl+fused", "bf16+cl+graph"] if gpu else ["fp32", "bf16+cl"]
    modes = args.modes.split(",") if args.modes else default_modes
    if args.compile:
        modes += [m for m in ("bf16+cl+fused+compile", "bf16+cl+fused+compile-ro") if m not in modes]
    for mode in modes:
        try:
            parse_mode(mode)
        except ValueError as exc:
            print(f"bench_train: mode {mode!r}: {exc}", file=sys.stderr)
            return 2
    info = {
        "device": torch.cuda.get_device_name(device)
        if gpu
        else f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)",
        "torch": torch.__version__,
        "arch": args.arch,
        "width": args.width or 64,
        "batch": args.batch,
        "size": args.size,
        "steps": args.steps,
        "warmup": args.warmup,
        "tf32": gpu,
        "results": [],
    }
    print(
        f"{info['device']}  torch {info['torch']}  {args.arch} width {info['width']}  batch {args.batch}  "
        f"{args.size}x{args.size}  {args.steps} timed steps after {args.warmup} warm-up",
        flush=True,
    )
    for mode in modes:
        try:
            r = bench_mode(args, mode, device)
        except Exception as exc:  # one failing mode (e.g. compile) must not lose the others
            r = {"mode": mode, "error": f"{exc.__class__.__name__}: {str(exc).splitlines()[0][:300]}"}
            print(f"  {mode:16s} failed: {r['error']}", flush=True)
        else:
            share = "; " + ", ".join(f"{k} {100 * v:.0f}%" for k, v in r["share"].items()) if "share" in r else ""
            graph = f"; {r['graph_replays']} graph replays" if "graph_replays" in r else ""
            mem = f"  peak {r['peak_mem_gib']:.1f} GiB" if "peak_mem_gib" in r else ""
            print(
                f"  {mode:24s} {r['images_per_s']:8.2f} images/s  {r['step_ms']:8.1f} ms/step  "
                f"(warm-up {r['warmup_s']:.1f} s{share}{graph}){mem}",
                flush=True,
            )
        info["results"].append(r)
        if args.json:
            Path(args.json).write_text(json.dumps(info, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
