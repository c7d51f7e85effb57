"""Generation speed: a round of samples through the project's batched generator against one
`generate` call per sample, the same tiny GPT-2, with every output checked identical to the
one-by-one greedy output.

Goal on the CPU: at least 8x at batch size 16 and 15x at 64; the fastest batch size sets the default
(`batch_size=32`, docs/benchmarks.md section 2).
Run: python bench/bench_generation.py [--samples 64 --new-tokens 32 --device cpu|cuda]
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch

from bench.common import machine, print_table
from predictions.demo.tiny_model import DEFAULT_ALPHABET, build_tiny_model, build_tokenizer
from predictions.scoring.sample import Sample
from predictions.training.generator import generate

BATCH_SIZES = (8, 16, 32, 64)


def make_samples(count: int, seed: int = 0) -> list[Sample]:
    """Prompts of 8 to 24 characters, so batches really need padding."""
    rng = random.Random(seed)
    letters = DEFAULT_ALPHABET.strip()
    prompts = ["".join(rng.choices(letters, k=rng.randint(8, 24))) for _ in range(count)]
    return [Sample(i, prompt, None) for i, prompt in enumerate(prompts)]


def one_by_one(model, tokenizer, samples: list[Sample], options: dict) -> list[str]:
    """The naive loop: one unpadded `generate` call per sample."""
    answers = []
    with torch.inference_mode():
        for sample in samples:
            inputs = tokenizer(sample.prompt, return_tensors="pt", add_special_tokens=True).to(model.device)
            output = model.generate(**inputs, pad_token_id=tokenizer.pad_token_id, **options)
            new_tokens = output[0, inputs["input_ids"].shape[1] :]
            answers.append(tokenizer.decode(new_tokens, skip_special_tokens=True))
    return answers


def timed(run) -> tuple[float, list[str]]:
    run()  # warm-up: first-call allocations and kernel selection
    start = time.perf_counter()
    result = run()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - start, result


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=64)
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    tokenizer = build_tokenizer()
    model = build_tiny_model("gpt2", tokenizer, hidden_size=128, layers=3, heads=4, max_positions=128)
    model.to(args.device).eval()
    params = sum(p.numel() for p in model.parameters()) / 1e6
    samples = make_samples(args.samples)
    # min_new_tokens: every call does the same work, whatever an untrained model's eos does
    options = {"max_new_tokens": args.new_tokens, "min_new_tokens": args.new_tokens, "do_sample": False}
    base_s, expected = timed(lambda: one_by_one(model, tokenizer, samples, options))
    rows, results = [("one generate per sample", base_s, 1.0, "reference")], {"one_by_one_s": base_s}
    for batch_size in BATCH_SIZES:
        seconds, answers = timed(
            lambda b=batch_size: generate(
                model, tokenizer, samples, batch_size=b, max_new_tokens=args.new_tokens,
                generation_kwargs={"min_new_tokens": args.new_tokens},
            )
        )  # fmt: skip
        same = sum(a == e for a, e in zip(answers, expected, strict=True))
        rows.append((f"generator, batch {batch_size}", seconds, base_s / seconds, f"{same}/{len(samples)}"))
        results[f"speedup_{batch_size}"] = base_s / seconds
        results[f"identical_{batch_size}"] = same
    title = (
        f"Generation of {args.samples} samples x {args.new_tokens} new tokens, GPT-2 {params:.2f}M params, "
        f"{args.device} ({machine()})"
    )
    print_table(title, ("path", "seconds", "speedup", "identical outputs"), rows)
    print(
        f"\nspeedup at 16: {results['speedup_16']:.1f}x (goal >= 8x); "
        f"at 64: {results['speedup_64']:.1f}x (goal >= 15x)"
    )
    return results


if __name__ == "__main__":
    main()
