"""The OpenVINO runtime's choices measured: precision, threads, streams and performance hint, against native.

Run from the repository root:  .venv/bin/python benchmarks/inference.py [--repeats 30] [--no-parity]
First table: per compile configuration of the cached IR (runtime.py), the median wall and CPU
milliseconds of one detector + classifier pass on one photo (configurations interleaved, so load
drifts hit all alike), and, for the configurations with two threads or streams, images per wall
second with two requests in flight (what a single worker process per instance could get).
Second table: how far each precision is from native over the parity tests' photos (the real
photos of ../shared/testdata and skimage's): the largest probability difference, the smallest
box IoU and largest score difference of kept detections, and on how many photos the
classifier's top three classes differ.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
from skimage import data  # noqa: E402

from app_tier.pipeline import runtime  # noqa: E402
from app_tier.pipeline.models import Classifier, Detector  # noqa: E402

# name: (INFERENCE_PRECISION_HINT, INFERENCE_NUM_THREADS, NUM_STREAMS, PERFORMANCE_HINT)
CONFIGURATIONS = {
    "bf16 1 thread latency (default)": ("bf16", 1, 1, "LATENCY"),
    "f32 1 thread latency": ("f32", 1, 1, "LATENCY"),
    "bf16 1 thread throughput": ("bf16", 1, 1, "THROUGHPUT"),
    "bf16 2 threads 1 stream": ("bf16", 2, 1, "LATENCY"),
    "bf16 2 threads 2 streams": ("bf16", 2, 2, "THROUGHPUT"),
}


def compiled_pair(precision: str, threads: int, streams: int, hint: str) -> dict:
    """Both models compiled from the cached IR under one configuration."""
    import openvino
    core = openvino.Core()
    folder = runtime.cache_dir()
    config = {**runtime.compile_config(threads, runtime.precision_for(core, precision)),
              "NUM_STREAMS": streams, "PERFORMANCE_HINT": hint}
    return {name: core.compile_model(str(runtime.cached_ir(name, folder)), "CPU", config) for name in runtime.CONVERTERS}


def model_inputs() -> dict:
    """Each model's prepared input for one photo (the cat)."""
    pixels = data.chelsea()
    return {runtime.DETECTOR: Detector().prepare(pixels)[None],
            runtime.CLASSIFIER: Classifier().prepare(pixels)[None]}


def _timed(run) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    run()
    return (time.perf_counter() - wall) * 1000, (time.process_time() - cpu) * 1000


def measure_configurations(repeats: int) -> dict:
    """Median wall and CPU ms of one pair of passes per configuration, and two-in-flight throughput where it applies."""
    inputs = model_inputs()
    pairs = {name: compiled_pair(*options) for name, options in CONFIGURATIONS.items()}
    requests = {name: {model: compiled.create_infer_request() for model, compiled in pair.items()}
                for name, pair in pairs.items()}
    samples = {name: ([], []) for name in pairs}
    for _ in range(repeats):
        for name, pair in requests.items():
            wall, cpu = _timed(lambda: [request.infer({0: inputs[model]}) for model, request in pair.items()])
            samples[name][0].append(wall)
            samples[name][1].append(cpu)
    results = {name: {"wall_ms": statistics.median(wall), "cpu_ms": statistics.median(cpu)}
               for name, (wall, cpu) in samples.items()}
    for name, options in CONFIGURATIONS.items():
        if options[1] > 1:
            results[name]["two_in_flight_per_s"] = _two_in_flight(pairs[name], inputs, repeats)
    return results


def _two_in_flight(pair: dict, inputs: dict, repeats: int) -> float:
    """Images per wall second with two pairs of passes in flight at once (AsyncInferQueue of two per model)."""
    from openvino import AsyncInferQueue
    queues = {model: AsyncInferQueue(compiled, 2) for model, compiled in pair.items()}
    started = time.perf_counter()
    for _ in range(repeats):
        for model, queue in queues.items():
            queue.start_async({0: inputs[model]})
    for queue in queues.values():
        queue.wait_all()
    return repeats / (time.perf_counter() - started)


def measure_parity() -> dict:
    """Per precision: the largest differences from native over the parity tests' photos."""
    from testkit import parity
    found = {}
    for precision in runtime.PRECISIONS:
        worst = {"probability": 0.0, "iou": 1.0, "score": 0.0, "top3_differ": 0}
        for name in parity.PHOTOS:
            native, other = parity.answer(name, "native"), parity.answer(name, "openvino", precision)
            worst["probability"] = max(worst["probability"], float(np.abs(native.probabilities - other.probabilities).max()))
            worst["top3_differ"] += set(np.argsort(-native.probabilities)[:3]) != set(np.argsort(-other.probabilities)[:3])
            for kept, others in ((native.detections, other.detections), (other.detections, native.detections)):
                for detection in (d for d in kept if d.score >= parity.MIN_SCORE):
                    best = max((d for d in others if d.class_id == detection.class_id),
                               key=lambda d: parity.iou(d.box, detection.box))
                    worst["iou"] = min(worst["iou"], parity.iou(best.box, detection.box))
                    worst["score"] = max(worst["score"], abs(best.score - detection.score))
        found[precision] = worst
    return {"photos": len(parity.PHOTOS), "precisions": found}


def format_report(configurations: dict, parity: dict | None) -> str:
    lines = ["one detector + classifier pass on one photo, medians (interleaved)",
             "  configuration                      wall ms   CPU ms | two in flight, images/s"]
    for name, row in configurations.items():
        extra = f"{row['two_in_flight_per_s']:8.1f}" if "two_in_flight_per_s" in row else "       -"
        lines.append(f"  {name:<33} {row['wall_ms']:8.1f} {row['cpu_ms']:8.1f} | {extra}")
    if parity:
        lines += ["", f"against native over {parity['photos']} photos",
                  "  precision  max probability diff  min box IoU  max score diff  top-3 classes differ"]
        for precision, worst in parity["precisions"].items():
            lines.append(f"  {precision:<9} {worst['probability']:21.4f} {worst['iou']:12.3f} {worst['score']:15.4f} "
                         f"{worst['top3_differ']:21d}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--no-parity", action="store_true", help="skip the comparison with native")
    args = parser.parse_args()
    configurations = measure_configurations(args.repeats)
    print(format_report(configurations, None if args.no_parity else measure_parity()))


if __name__ == "__main__":
    main()
