#!/usr/bin/env python3
"""The PyTorch reference for `bench/compare.sh`.

Times DiffSynth 2.1.12's own ACE-Step 1.5 classes (`diffsynth.models.ace_step_*`, `AceStepPipeline`) at the
real geometry with random weights, on the same operations and workloads as `retake bench`
(engine/src/bench/), and writes the same JSON schema. On the CPU it runs in f32 on `--threads` threads (with
`--dtype bf16` its modules and inputs in bf16: PyTorch's own oneDNN bf16 path, AMX where the CPU has it); with
`--device cuda` in bf16 (as Retake runs on CUDA), waiting for the GPU before each clock stop, and reports the
peak device memory (`torch.cuda.max_memory_allocated`) beside the RSS. With `--compare RETAKE.json PYTORCH.json` it prints
both tables and the Retake/PyTorch ratios side by side instead; `--merge OUT.json PART.json...` joins reports of
runs on parts of the operations (one engine's) into one.

The workload constants below mirror engine/src/bench/{mod,end_to_end}.rs: keep them in sync.
"""

import argparse
import gc
import json
import math
import os
import statistics
import sys
import time

CAPTION_TOKENS = 70
LYRIC_TOKENS = 229
ENCODER_STATES = LYRIC_TOKENS + 1 + CAPTION_TOKENS
CLIP_SECONDS = 10
LONG_SECONDS = 30
SHIFT = 3.0
STEPS = 8
SAMPLE_RATE = 48_000
HOP = 1920
TEXT_VOCAB = 151_669
SILENCE_FRAMES = 15_000
REPAINT_RANGE = (3.0, 6.0)
CAPTION = (
    "an upbeat synth-pop song with bright analog pads, punchy electronic drums, a warm rolling bass line and airy "
    "female vocals, 120 bpm, glossy modern production"
)
LYRICS = (
    "[Verse]\nCity lights are fading out, I hear the engines hum\nEvery window tells a story of the days to come\n"
    "We were running through the static with our hearts on fire\nChasing every little signal climbing ever higher\n"
    "[Chorus]\nHold on, hold on, the night is young and we are strong\nSing it loud, sing it long, we have waited "
    "for this song\nHold on, hold on, the morning light will take us home\nNever lost, never gone, in the echo we "
    "belong\n[Verse]\nPaper planes and photographs are scattered on the floor\nEvery promise that we made is "
    "knocking at the door\nWe were dancing on the edges of a silver line\nCounting every heartbeat till the stars "
    "align\n[Chorus]\nHold on, hold on, the night is young and we are strong\nSing it loud, sing it long, we have "
    "waited for this song"
)

GROUPS = {
    "text": ["text_encoder"],
    "condition": ["condition_encoder"],
    "dit": ["dit_step_10s", "dit_step_30s", "diffusion_10s"],
    "vae": ["vae_encode_10s", "vae_decode_10s"],
    "end_to_end": ["cover_10s", "repaint_10s"],
}


# ---------------------------------------------------------------------------------------------------- memory


def release_free_memory():
    """glibc's malloc_trim(0), as the Rust side calls it between groups: freed memory leaves the RSS."""
    gc.collect()
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except OSError:
        pass


def reset_peak_rss():
    """Resets VmHWM to the current RSS (Linux >= 4.0), as the Rust side does; False where unavailable."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def status_bytes(field):
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


# ---------------------------------------------------------------------------------------------------- timing


class Target:
    """Where the models run: the device and dtype, with the GPU wait before a clock stops."""

    def __init__(self, device, dtype):
        import torch

        self.device = torch.device(device)
        self.dtype = {"f32": torch.float32, "bf16": torch.bfloat16}[dtype]
        if self.cuda:
            torch.empty(1, device=self.device)  # the allocator's statistics exist once the device is in use

    @property
    def cuda(self):
        return self.device.type == "cuda"

    def floats(self, tensor):
        """A float input on the target device in the target dtype."""
        return tensor.to(self.device, self.dtype)

    def put(self, tensor):
        """An index or mask input on the target device."""
        return tensor.to(self.device)

    def model(self, module):
        return module.to(self.device, self.dtype)

    def synchronize(self):
        if self.cuda:
            import torch

            torch.cuda.synchronize(self.device)


class Timer:
    """One untimed warm-up, then `runs` timed runs per selected operation."""

    def __init__(self, runs, only, target):
        self.runs, self.only, self.target, self.done = runs, only, target, []

    def wants(self, name):
        return self.only is None or self.only in name

    def time(self, name, detail, op):
        if not self.wants(name):
            return
        op()
        self.target.synchronize()
        samples = []
        for _ in range(self.runs):
            start = time.perf_counter()
            op()
            self.target.synchronize()
            samples.append(time.perf_counter() - start)
        ordered = sorted(samples)
        print(f"  {name}: median {statistics.median(ordered):.3f} s", file=sys.stderr, flush=True)
        self.done.append({
            "name": name,
            "detail": detail,
            "median_s": statistics.median(ordered),
            "min_s": ordered[0],
            "max_s": ordered[-1],
            "samples_s": samples,
        })


# ---------------------------------------------------------------------------------------------------- models


def parameters(*modules):
    """Parameters held by the modules, weight-norm pairs counted as stored (Retake counts the same way)."""
    return sum(p.numel() for module in modules for p in module.parameters())


def randomize(module, seed):
    """Uniform +-0.02 weights with norm scales (and weight-norm gains) at 1: Retake's `Weights::random`."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in module.named_parameters():
            if name.endswith("norm.weight") or name.endswith("layernorm.weight") or name.endswith("weight_g"):
                param.fill_(1.0)
            else:
                param.uniform_(-0.02, 0.02, generator=generator)
    return module.eval().requires_grad_(False)


def clip(seconds, variant):
    """Retake's `test_clip`: two partials per channel, a different pitch per variant; [2, N]."""
    import torch

    t = torch.arange(seconds * SAMPLE_RATE, dtype=torch.float32) / SAMPLE_RATE
    pitch = 220.0 + 10.0 * variant

    def channel(phase):
        return 0.5 * torch.sin(2 * math.pi * pitch * t + phase) + 0.2 * torch.sin(2 * math.pi * 3 * pitch * t)

    return torch.stack([channel(0.0), channel(0.5)])


def group_text(timer, seed):
    import torch
    from diffsynth.models.ace_step_text_encoder import AceStepTextEncoder

    target = timer.target
    encoder = target.model(randomize(AceStepTextEncoder(), seed))
    ids = target.put(torch.tensor([[(i * 7919 + 13) % TEXT_VOCAB for i in range(CAPTION_TOKENS)]]))
    mask = torch.ones_like(ids, dtype=torch.bool)
    timer.time("text_encoder", f"{CAPTION_TOKENS} caption tokens", lambda: encoder(ids, mask))
    return parameters(encoder)


def group_condition(timer, seed):
    import torch
    from diffsynth.models.ace_step_conditioner import AceStepConditionEncoder

    target = timer.target
    encoder = target.model(randomize(AceStepConditionEncoder(), seed))
    text = target.floats(torch.randn(1, CAPTION_TOKENS, 1024))
    lyrics = target.floats(torch.randn(1, LYRIC_TOKENS, 1024))
    reference = target.floats(torch.randn(1, 750, 64))
    order = target.put(torch.tensor([0]))
    ones = lambda x: torch.ones(x.shape[:2], dtype=torch.bool, device=target.device)  # noqa: E731
    timer.time(
        "condition_encoder",
        f"{LYRIC_TOKENS} lyric + {CAPTION_TOKENS} caption tokens, 1 reference of 750 frames",
        lambda: encoder(
            text_hidden_states=text,
            text_attention_mask=ones(text),
            lyric_hidden_states=lyrics,
            lyric_attention_mask=ones(lyrics),
            reference_latents=reference,
            refer_audio_order_mask=order,
        ),
    )
    return parameters(encoder)


def group_dit(timer, seed):
    import torch
    from diffsynth.diffusion import FlowMatchScheduler
    from diffsynth.models.ace_step_dit import AceStepDiTModel

    target = timer.target
    dit = target.model(randomize(AceStepDiTModel(), seed))
    states = target.floats(torch.randn(1, ENCODER_STATES, 2048))

    def forward(latents, context, timestep):
        timestep = target.floats(timestep)
        return dit(
            hidden_states=latents,
            timestep=timestep,
            timestep_r=timestep,
            attention_mask=target.floats(torch.ones(latents.shape[:2])),
            encoder_hidden_states=states,
            encoder_attention_mask=target.floats(torch.ones(states.shape[:2])),
            context_latents=context,
        )[0]

    for name, seconds in [("dit_step_10s", CLIP_SECONDS), ("dit_step_30s", LONG_SECONDS)]:
        frames = seconds * SAMPLE_RATE // HOP
        latents, context = target.floats(torch.randn(1, frames, 64)), target.floats(torch.randn(1, frames, 128))
        timestep = torch.tensor([1000.0])
        detail = f"T={frames} frames, L_enc={ENCODER_STATES}, condition K/V recomputed per step"
        timer.time(name, detail, lambda: forward(latents, context, timestep))

    frames = CLIP_SECONDS * SAMPLE_RATE // HOP
    context, noise = target.floats(torch.randn(1, frames, 128)), target.floats(torch.randn(1, frames, 64))
    scheduler = FlowMatchScheduler("ACE-Step")
    scheduler.set_timesteps(num_inference_steps=STEPS, denoising_strength=1.0, shift=SHIFT)

    def diffusion():
        x = noise
        for timestep in scheduler.timesteps:
            timestep = timestep.unsqueeze(0)
            x = scheduler.step(forward(x, context, timestep), timestep, x)
        return x

    timer.time("diffusion_10s", f"{STEPS} steps, T={frames}, L_enc={ENCODER_STATES}", diffusion)
    return parameters(dit)


def vae_model(seed, target):
    """The VAE with weight norm folded, as DiffSynth's pipeline loads it, and its stored parameter count."""
    from diffsynth.models.ace_step_vae import AceStepVAE

    vae = randomize(AceStepVAE(), seed)
    stored = parameters(vae)
    vae.remove_weight_norm()
    return target.model(vae), stored


def group_vae(timer, seed):
    import torch

    target = timer.target
    vae, stored = vae_model(seed, target)
    audio = target.floats(clip(CLIP_SECONDS, 0).unsqueeze(0))
    timer.time("vae_encode_10s", f"{audio.shape[-1]} stereo samples, untiled", lambda: vae.encode(audio))
    frames = CLIP_SECONDS * SAMPLE_RATE // HOP
    latents = target.floats(torch.randn(1, 64, frames))
    timer.time("vae_decode_10s", f"T={frames} frames, untiled", lambda: vae.decode(latents))
    return stored


def group_end_to_end(timer, seed, tokenizer):
    import torch
    from transformers import AutoTokenizer
    from diffsynth.models.ace_step_conditioner import AceStepConditionEncoder
    from diffsynth.models.ace_step_dit import AceStepDiTModel
    from diffsynth.models.ace_step_text_encoder import AceStepTextEncoder
    from diffsynth.models.ace_step_tokenizer import AceStepTokenizer
    from diffsynth.pipelines.ace_step import AceStepPipeline

    target = timer.target
    pipe = AceStepPipeline(device=str(target.device), torch_dtype=target.dtype)
    pipe.text_encoder = target.model(randomize(AceStepTextEncoder(), seed))
    pipe.conditioner = target.model(randomize(AceStepConditionEncoder(), seed))
    pipe.dit = target.model(randomize(AceStepDiTModel(), seed))
    pipe.vae, vae_parameters = vae_model(seed, target)
    pipe.tokenizer_model = target.model(randomize(AceStepTokenizer(), seed))
    pipe.tokenizer = AutoTokenizer.from_pretrained(os.path.dirname(os.path.abspath(tokenizer)))
    pipe.silence_latent = target.floats(torch.zeros(1, SILENCE_FRAMES, 64))
    run = [0]

    def generate(**task):
        run[0] += 1
        return pipe(
            prompt=CAPTION,
            lyrics=LYRICS,
            src_audio=clip(CLIP_SECONDS, run[0]),
            vocal_language="en",
            seed=run[0],
            num_inference_steps=STEPS,
            shift=SHIFT,
            progress_bar_cmd=lambda steps: steps,
            **task,
        )

    what = f"of a {CLIP_SECONDS} s clip, DiffSynth pipeline, {STEPS} steps, VAE encode + decode"
    timer.time("cover_10s", f"cover {what}", lambda: generate(task_type="cover"))
    start, end = REPAINT_RANGE
    timer.time(
        "repaint_10s",
        f"repaint {start:g}–{end:g} s {what}",
        lambda: generate(task_type="repaint", repainting_ranges=[REPAINT_RANGE], repainting_strength=1.0),
    )
    return vae_parameters + parameters(pipe.text_encoder, pipe.conditioner, pipe.dit, pipe.tokenizer_model)


def run(args):
    import torch

    torch.set_num_threads(args.threads)
    target = Target(args.device, args.dtype or ("bf16" if args.device.startswith("cuda") else "f32"))
    bodies = {
        "text": group_text,
        "condition": group_condition,
        "dit": group_dit,
        "vae": group_vae,
        "end_to_end": lambda timer, seed: group_end_to_end(timer, seed, args.tokenizer),
    }
    groups = []
    for name, ops in GROUPS.items():
        if not any(args.only is None or args.only in op for op in ops):
            continue
        report = {
            "name": name,
            "weights_bytes": None,
            "rss_before_bytes": None,
            "peak_rss_bytes": None,
            "peak_device_bytes": None,
            "skipped": None,
            "ops": [],
        }
        if name == "end_to_end" and args.tokenizer is None:
            report["skipped"] = "needs --tokenizer (random weights come without a tokenizer.json)"
            groups.append(report)
            continue
        print(f"[pytorch] {name}", file=sys.stderr, flush=True)
        release_free_memory()
        report["rss_before_bytes"] = status_bytes("VmRSS:")
        per_group = reset_peak_rss()
        if target.cuda:
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(target.device)
        timer = Timer(args.runs, args.only, target)
        with torch.no_grad():
            report["weights_bytes"] = bodies[name](timer, args.seed) * target.dtype.itemsize
        report["ops"] = timer.done
        report["peak_rss_bytes"] = status_bytes("VmHWM:") if per_group else None
        if target.cuda:
            report["peak_device_bytes"] = torch.cuda.max_memory_allocated(target.device)
        groups.append(report)
    return {
        "engine": f"pytorch {torch.__version__} + diffsynth 2.1.12",
        "device": str(target.device),
        "dtype": args.dtype or ("bf16" if target.cuda else "f32"),
        "threads": torch.get_num_threads(),
        "runs": args.runs,
        "groups": groups,
    }


# ---------------------------------------------------------------------------------------------------- tables


def duration(seconds):
    return f"{seconds * 1e3:.1f} ms" if seconds < 1.0 else f"{seconds:.3f} s"


def gigabytes(n):
    return "n/a" if n is None else f"{n / 1e9:.2f} GB"


def table(report):
    lines = [
        f"{report['engine']} on {report['device']} ({report['dtype']}, {report['threads']} threads), "
        f"median/min/max of {report['runs']} runs after one warm-up",
        f"{'operation':<20} {'median':>11} {'min':>11} {'max':>11}  workload",
    ]
    for group in report["groups"]:
        for op in group["ops"]:
            lines.append(
                f"{op['name']:<20} {duration(op['median_s']):>11} {duration(op['min_s']):>11} "
                f"{duration(op['max_s']):>11}  {op['detail']}"
            )
    on_device = any(group.get("peak_device_bytes") for group in report["groups"])
    device_header = f" {'peak device':>11}" if on_device else ""
    lines.append(f"{'group':<20} {'weights':>11} {'RSS before':>11} {'peak RSS':>11}{device_header}")
    for group in report["groups"]:
        if group["skipped"]:
            lines.append(f"{group['name']:<20} {gigabytes(group['weights_bytes']):>11}  skipped: {group['skipped']}")
        else:
            device_peak = f" {gigabytes(group.get('peak_device_bytes')):>11}" if on_device else ""
            lines.append(
                f"{group['name']:<20} {gigabytes(group['weights_bytes']):>11} "
                f"{gigabytes(group['rss_before_bytes']):>11} {gigabytes(group['peak_rss_bytes']):>11}{device_peak}"
            )
    return "\n".join(lines)


def compare(retake, pytorch):
    ops = lambda report: {op["name"]: op for g in report["groups"] for op in g["ops"]}  # noqa: E731
    groups = lambda report: {g["name"]: g for g in report["groups"]}  # noqa: E731
    mine, theirs = ops(retake), ops(pytorch)
    # Each side is named by its engine and weight dtype (Retake f32 against Retake bf16 works too).
    names = {"retake": "Retake", "pytorch": "PyTorch"}
    a, b = (f"{names.get(r['engine'].split()[0], r['engine'])} {r.get('dtype', '')}".strip() for r in (retake, pytorch))
    lines = [
        f"{a} vs {b} (medians; speed-up = {b} time / {a} time, > 1 means {a} is faster)",
        f"{'operation':<20} {a:>14} {b:>14} {'speed-up':>9}",
    ]
    for name in [op for group_ops in GROUPS.values() for op in group_ops]:
        if name in mine and name in theirs:
            r, p = mine[name]["median_s"], theirs[name]["median_s"]
            lines.append(f"{name:<20} {duration(r):>14} {duration(p):>14} {p / r:>8.2f}x")
    mine_groups, their_groups = groups(retake), groups(pytorch)
    on_device = any(g.get("peak_device_bytes") for g in retake["groups"] + pytorch["groups"])
    field = "peak_device_bytes" if on_device else "peak_rss_bytes"
    memory = "peak device memory" if on_device else "peak RSS"
    lines.append(f"{'group':<20} {a:>14} {b:>14} {'ratio':>9}  ({memory}, {a}/{b})")
    for name in GROUPS:
        r, p = mine_groups.get(name, {}).get(field), their_groups.get(name, {}).get(field)
        if r and p:
            lines.append(f"{name:<20} {gigabytes(r):>14} {gigabytes(p):>14} {r / p:>8.2f}x")
    return "\n".join(lines)


def merge(parts):
    """One report from reports of one engine on disjoint operations: a group met twice gets both sets of
    operations and the larger memory peaks."""
    merged = dict(parts[0], groups=[])
    by_name = {}
    for part in parts:
        for group in part["groups"]:
            if group["name"] not in by_name:
                by_name[group["name"]] = dict(group, ops=list(group["ops"]))
                merged["groups"].append(by_name[group["name"]])
                continue
            into = by_name[group["name"]]
            into["ops"] += group["ops"]
            for peak in ("peak_rss_bytes", "peak_device_bytes"):
                if group.get(peak) is not None:
                    into[peak] = max(into.get(peak) or 0, group[peak])
    return merged


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3, help="timed runs per operation after one warm-up")
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (match Retake's)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:N] (the same device Retake ran on)")
    parser.add_argument("--dtype", choices=["f32", "bf16"], help="default: f32 on the CPU, bf16 on CUDA")
    parser.add_argument("--only", help="run only operations whose name contains this")
    parser.add_argument("--tokenizer", help="tokenizer.json for the end-to-end runs (its folder is loaded)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random weights")
    parser.add_argument("--json", help="write the report here")
    parser.add_argument("--compare", nargs=2, metavar=("RETAKE_JSON", "PYTORCH_JSON"),
                        help="print both reports and the ratios instead of running")
    parser.add_argument("--merge", nargs="+", metavar="JSON",
                        help="write the first file as the union of the reports in the others instead of running")
    args = parser.parse_args()
    if args.merge:
        if len(args.merge) < 2:
            parser.error("--merge needs an output file and at least one report")
        parts = []
        for path in args.merge[1:]:
            with open(path) as f:
                parts.append(json.load(f))
        with open(args.merge[0], "w") as f:
            json.dump(merge(parts), f, indent=2)
        return
    if args.compare:
        reports = []
        for path in args.compare:
            with open(path) as f:
                reports.append(json.load(f))
        for report in reports:
            print(table(report) + "\n")
        print(compare(*reports))
        return
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    report = run(args)
    print(table(report))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2)


if __name__ == "__main__":
    main()
