"""Training-step throughput of P3M-Net (forward + full P3M loss + backward + Adam step), images/s.

Synthetic random tensors, no dataset: runs on a bare GPU box with only torch installed::

    PYTHONPATH=src python benchmarks/bench_train.py                       # CPU: fp32, bf16+channels_last
    PYTHONPATH=src python benchmarks/bench_train.py --device cuda --compile --json out.json

Modes: fp32; bf16 (autocast); bf16+cl (autocast + channels_last); bf16+cl+compile (torch.compile, with
--compile). For each mode the step time is split into forward, loss and backward+optimizer (synchronised
timings of separate steps) to show what limits it. All numbers are measured in this one run.
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from p3m import models  # noqa: E402
from p3m.train.losses import p3m_loss  # noqa: E402


def synthetic_batch(batch: int, size: int, device: torch.device, channels_last: bool) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    image = torch.randn(batch, 3, size, size, generator=g)
    alpha = torch.rand(batch, 1, size, size, generator=g)
    trimap = torch.tensor([0.0, 128.0, 255.0])[torch.randint(0, 3, (batch, 1, size, size), generator=g)]
    fg, bg = torch.randn_like(image), torch.randn_like(image)
    out = {"image": image, "alpha": alpha, "trimap": trimap, "fg": fg, "bg": bg}
    out = {k: v.to(device) for k, v in out.items()}
    if channels_last:
        out["image"] = out["image"].contiguous(memory_format=torch.channels_last)
    return out


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bench_mode(args, mode: str, device: torch.device) -> dict:
    bf16 = "bf16" in mode
    channels_last = "cl" in mode
    compiled = "compile" in mode
    torch.manual_seed(0)
    kwargs = {"width": args.width} if args.width else {}
    model = models.create(args.arch, **kwargs).to(device).train()
    for name in ("resnet.fc", "encoder.head"):
        try:
            model.get_submodule(name).requires_grad_(False)
        except AttributeError:
            pass
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    net = torch.compile(model) if compiled else model
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-5)
    batch = synthetic_batch(args.batch, args.size, device, channels_last)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16)

    def step(split: dict | None = None) -> torch.Tensor:
        t0 = time.perf_counter()
        with autocast:
            out = net(batch["image"])
        if split is not None:
            sync(device)
            t1 = time.perf_counter()
        loss = p3m_loss(out, batch["alpha"], batch["trimap"], batch["image"], batch["fg"], batch["bg"]).total
        if split is not None:
            sync(device)
            t2 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if split is not None:
            sync(device)
            t3 = time.perf_counter()
            split["forward"] += t1 - t0
            split["loss"] += t2 - t1
            split["backward+adam"] += t3 - t2
        return loss

    t_compile = time.perf_counter()
    for _ in range(args.warmup):
        step()
    sync(device)
    warmup_s = time.perf_counter() - t_compile
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    t0 = time.perf_counter()
    for _ in range(args.steps):
        loss = step()
    sync(device)
    elapsed = time.perf_counter() - t0
    split = {"forward": 0.0, "loss": 0.0, "backward+adam": 0.0}
    n_split = max(1, min(args.steps, 3))
    for _ in range(n_split):
        step(split)
    total_split = sum(split.values())
    profile_table = None
    if args.profile:
        # where a step's time goes, kernel by kernel (the issue asks what limits the throughput)
        from torch.profiler import ProfilerActivity, profile

        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
        with profile(activities=activities) as prof:
            for _ in range(2):
                step()
            sync(device)
        sort = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
        profile_table = prof.key_averages().table(sort_by=sort, row_limit=args.profile, max_name_column_width=60)
        print(f"# profile of 2 training steps, mode {mode}, sorted by {sort}\n{profile_table}", flush=True)
    result = {
        "mode": mode,
        "images_per_s": args.batch * args.steps / elapsed,
        "step_ms": 1000 * elapsed / args.steps,
        "warmup_s": warmup_s,
        "share": {k: v / total_split for k, v in split.items()},
        "loss": float(loss.detach()),
    }
    if device.type == "cuda":
        result["peak_mem_gib"] = torch.cuda.max_memory_allocated(device) / 2**30
    if profile_table is not None:
        result["profile"] = profile_table
    del net, model, opt, batch
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
    parser.add_argument("--modes", default=None, help="comma list of fp32,bf16,bf16+cl,bf16+cl+compile")
    parser.add_argument("--compile", action="store_true", help="add the bf16+cl+compile mode")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--json", default=None, metavar="OUT", help="write the results as JSON (after each mode)")
    parser.add_argument("--profile", type=int, default=0, metavar="N",
                        help="also profile 2 steps per mode and print the N most expensive operators")
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
    args.warmup = args.warmup if args.warmup is not None else (5 if gpu else 1)
    modes = args.modes.split(",") if args.modes else (["fp32", "bf16", "bf16+cl"] if gpu else ["fp32", "bf16+cl"])
    if args.compile and "bf16+cl+compile" not in modes:
        modes.append("bf16+cl+compile")
    info = {
        "device": torch.cuda.get_device_name(device) if gpu else f"CPU ({platform.processor() or platform.machine()}, "
                                                                  f"{torch.get_num_threads()} threads)",
        "torch": torch.__version__, "arch": args.arch, "width": args.width or 64, "batch": args.batch,
        "size": args.size, "steps": args.steps, "warmup": args.warmup, "tf32": gpu, "results": [],
    }
    print(f"{info['device']}  torch {info['torch']}  {args.arch} width {info['width']}  batch {args.batch}  "
          f"{args.size}x{args.size}  {args.steps} timed steps after {args.warmup} warm-up", flush=True)
    for mode in modes:
        try:
            r = bench_mode(args, mode, device)
        except Exception as exc:  # one failing mode (e.g. compile) must not lose the others
            r = {"mode": mode, "error": f"{exc.__class__.__name__}: {str(exc).splitlines()[0][:300]}"}
            print(f"  {mode:16s} failed: {r['error']}", flush=True)
        else:
            share = ", ".join(f"{k} {100 * v:.0f}%" for k, v in r["share"].items())
            mem = f"  peak {r['peak_mem_gib']:.1f} GiB" if "peak_mem_gib" in r else ""
            print(f"  {mode:16s} {r['images_per_s']:8.2f} images/s  {r['step_ms']:8.1f} ms/step  "
                  f"(warm-up {r['warmup_s']:.1f} s; {share}){mem}", flush=True)
        info["results"].append(r)
        if args.json:
            Path(args.json).write_text(json.dumps(info, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
