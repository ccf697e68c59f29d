"""Pipeline cost per image against the bare model forward passes, and batched against one-by-one throughput.

Run from the repository root:  .venv/bin/python benchmarks/pipeline.py [--sizes 0.3 3 12] [--repeats 7]
Photos are skimage's real photographs upscaled to each size and saved as JPEG (quality 90).
The first table sets the runtimes' bare passes side by side (native OpenCV DNN + TorchScript,
OpenVINO f32 and bf16), with a worker's start-up time and peak memory on each. The per-image
tables run the default runtime on labels alone; the last table times the worker's whole job path, storage
writes to a local moto endpoint included, against the default runtime's bare passes. A last table gives
the CPU per image of each feature (labels, text, faces, properties, moderation) on the recognition
benchmark's photos and the 3 MP ones (`--features-only` prints just that).

`run_pipeline_benchmark(sizes, repeats)` returns the figures as a dict and prints nothing,
so the worker's benchmark can extend it (e.g. with S3/DynamoDB writes) and reuse `make_photos`.
"""
from __future__ import annotations

import argparse
import dataclasses
import io
import json
import logging
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from PIL import Image  # noqa: E402
from skimage import data  # noqa: E402
from tqdm import tqdm  # noqa: E402

from app_tier.pipeline import ImageInput, Pipeline, PipelineSettings  # noqa: E402
from sightfleet.features import FEATURES, LABELS  # noqa: E402
from sightfleet.procs import die_with_parent  # noqa: E402

PHOTOS = ("chelsea", "coffee", "astronaut", "rocket", "stereo_motorcycle")
BATCH_SIZES = (1, 4, 10)
STAGES = ("format", "exif", "decode", "thumbnail", "detect", "classify", "merge", "annotate", "total")


def make_photos(megapixels: float) -> list[bytes]:
    """Each skimage photo upscaled (bicubic) to about `megapixels` and encoded as JPEG."""
    photos = []
    for name in PHOTOS:
        pixels = getattr(data, name)()
        image = Image.fromarray(pixels[0] if name == "stereo_motorcycle" else pixels).convert("RGB")
        scale = (megapixels * 1e6 / (image.width * image.height)) ** 0.5
        image = image.resize((round(image.width * scale), round(image.height * scale)), Image.Resampling.BICUBIC)
        out = io.BytesIO()
        image.save(out, "JPEG", quality=90)
        photos.append(out.getvalue())
    return photos


def _inputs(photos: list[bytes], features: tuple[str, ...] = (LABELS,)) -> list[ImageInput]:
    """The photos as inputs asking for `features` (labels alone: the tables below time the label pipeline)."""
    return [ImageInput(id=f"bench-{i}", data=d, filename=f"bench-{i}.jpg", features=features)
            for i, d in enumerate(photos)]


def recognition_photos() -> list[bytes]:
    """The recognition benchmark's labelled photos that are installed here, as JPEG."""
    from benchmarks.recognition import jpeg, load_image, read_photos
    return [jpeg(image) for image in map(load_image, read_photos()) if image is not None]


def measure_feature_cpu(pipeline: Pipeline, photos: list[bytes], repeats: int) -> dict:
    """Per feature: this process's CPU ms per image that asking for it adds (its preparation, model and answer),
    over an image asking for nothing (format, decode, thumbnail, annotation); median, 90th percentile, max."""
    asked = {"none": (), **{feature: (feature,) for feature in FEATURES}}
    cpu: dict[str, list[list[float]]] = {name: [[] for _ in photos] for name in asked}
    for _ in tqdm(range(repeats), desc="CPU per feature", leave=False):
        for name, features in asked.items():
            for index, item in enumerate(_inputs(photos, features)):
                cpu[name][index].append(_one_image(pipeline, item)[0].cpu_ms)
    base = [statistics.median(samples) for samples in cpu["none"]]
    results = {}
    for name in FEATURES:
        extra = sorted(statistics.median(samples) - b for samples, b in zip(cpu[name], base))
        results[name] = {"median_ms": statistics.median(extra), "p90_ms": extra[int(0.9 * (len(extra) - 1))],
                         "max_ms": extra[-1]}
    return {"photos": len(photos), "base_ms": statistics.median(base), "features": results}


def format_feature_cpu(found: dict) -> list[str]:
    lines = [f"CPU per image of each feature over {found['photos']} photos (ms this process spends beyond an image "
             f"asking for nothing, {found['base_ms']:.1f} ms: format, decode, thumbnail, annotation)",
             "  feature       median      p90      max"]
    lines += [f"  {name:<12} {row['median_ms']:7.1f} {row['p90_ms']:8.1f} {row['max_ms']:8.1f}"
              for name, row in found["features"].items()]
    return lines


class _Clock:
    """Wall and CPU milliseconds of a block; CPU time is what other people's load on the machine spares."""

    def __enter__(self):
        self._wall, self._cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc):
        self.wall_ms = (time.perf_counter() - self._wall) * 1000
        self.cpu_ms = (time.process_time() - self._cpu) * 1000


def bare_forward(pipeline: Pipeline) -> _Clock:
    """Detector plus classifier forward passes for one image, on blobs made beforehand."""
    return bare_passes(pipeline)[2]


def bare_passes(pipeline: Pipeline) -> tuple[_Clock, _Clock, _Clock]:
    """The detector's, the classifier's and both forward passes for one image, on blobs made beforehand."""
    pixels = data.chelsea()
    blob = pipeline.detector.blob([pipeline.detector.prepare(pixels)])
    batch = pipeline.classifier.batch([pipeline.classifier.prepare(pixels)])
    with _Clock() as both:
        with _Clock() as detect:
            pipeline.detector.forward(blob)
        with _Clock() as classify:
            pipeline.classifier.forward(batch)
    return detect, classify, both


# The runtimes compared side by side: (name, PipelineSettings changes).
RUNTIMES = (("native", {"inference": "native"}), ("openvino f32", {"inference": "openvino", "inference_precision": "f32"}),
            ("openvino bf16", {"inference": "openvino", "inference_precision": "bf16"}))


def measure_runtimes(repeats: int = 30) -> dict:
    """Median bare pass times per runtime, interleaved so that load drifts hit all alike, and each one's start-up."""
    pipelines = {name: Pipeline(PipelineSettings(**changes)) for name, changes in RUNTIMES}
    samples = {name: ([], [], [], []) for name in pipelines}
    for _ in tqdm(range(repeats), desc="bare passes by runtime", leave=False):
        for name, pipeline in pipelines.items():
            detect, classify, pair = bare_passes(pipeline)
            for series, ms in zip(samples[name], (detect.wall_ms, classify.wall_ms, pair.wall_ms, pair.cpu_ms)):
                series.append(ms)
    return {name: {"detect_ms": statistics.median(detect), "classify_ms": statistics.median(classify),
                   "pair_ms": statistics.median(pair), "pair_cpu_ms": statistics.median(pair_cpu),
                   "runtime": pipelines[name].runtime, **measure_startup(changes)}
            for (name, changes), (detect, classify, pair, pair_cpu) in zip(RUNTIMES, samples.values())}


# A worker's start as `python -m app_tier` makes it (import, load and warm both models), then one photo.
_STARTUP_CHILD = """
import json, sys
from app_tier.pipeline import ImageInput, Pipeline, PipelineSettings
pipeline = Pipeline(PipelineSettings(**json.loads(sys.argv[1])))
print("loaded", flush=True)
outcome, = pipeline.process([ImageInput(id="startup", data=sys.stdin.buffer.read(), filename="startup.jpg")])
assert outcome.status == "SUCCEEDED", outcome.error
peak_kib = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:"))
print(json.dumps({"torch_imported": "torch" in sys.modules, "peak_rss_mib": peak_kib / 1024}))
"""


def peak_rss_mib() -> float:
    """This process's peak resident set (VmHWM, which exec resets), in MiB."""
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmHWM:")) / 1024


def measure_startup(changes: dict) -> dict:
    """A fresh process's wall time from launch to loaded models, and its peak memory after one 3 MP photo.

    The peak resident set is the child's VmHWM (/proc), which exec resets: getrusage's maxrss
    would carry over the benchmark's own, as Linux keeps it across fork and exec.
    torch_imported says whether torch was loaded at all.
    """
    photo = make_photos(3)[0]
    started = time.perf_counter()
    child = subprocess.Popen([sys.executable, "-c", _STARTUP_CHILD, json.dumps(changes)], cwd=REPO,
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=False, preexec_fn=die_with_parent)
    assert child.stdout.readline().strip() == b"loaded"
    startup_s = time.perf_counter() - started
    child.stdin.write(photo)
    child.stdin.close()
    out = child.stdout.read()
    if child.wait():
        raise RuntimeError(f"the start-up child failed (exit {child.returncode})")
    return {**json.loads(out.decode().splitlines()[-1]), "startup_s": startup_s}


def _one_image(pipeline: Pipeline, item: ImageInput) -> tuple[_Clock, dict]:
    with _Clock() as clock:
        outcome, = pipeline.process([item])
    assert outcome.status == "SUCCEEDED", outcome.error
    return clock, outcome.timings


def measure_sizes(pipeline: Pipeline, sizes, repeats: int) -> dict:
    """Per size: median stage timings, median wall and CPU time per image, and their ratios to the bare passes.

    Bare passes are measured right before each image, so load from other processes hits both alike.
    """
    inputs = {size: _inputs(make_photos(size)) for size in tqdm(sizes, desc="making photos", leave=False)}
    samples = {size: {"wall": [], "cpu": [], "bare_wall": [], "bare_cpu": []} for size in sizes}
    stages = {size: {stage: [] for stage in STAGES} for size in sizes}
    for _ in tqdm(range(repeats), desc="per-image pipeline", leave=False):
        for size in sizes:
            for item in inputs[size]:
                bare = bare_forward(pipeline)
                full, timings = _one_image(pipeline, item)
                for key, value in (("wall", full.wall_ms), ("cpu", full.cpu_ms),
                                   ("bare_wall", bare.wall_ms), ("bare_cpu", bare.cpu_ms)):
                    samples[size][key].append(value)
                for stage in STAGES:
                    stages[size][stage].append(timings.get(stage, 0.0))
    return {size: _size_row(samples[size], stages[size], inputs[size]) for size in sizes}


def _size_row(samples: dict, stages: dict, inputs: list[ImageInput]) -> dict:
    median = {key: statistics.median(values) for key, values in samples.items()}
    return {**{f"{key}_ms": value for key, value in median.items()},
            "ratio_wall": median["wall"] / median["bare_wall"], "ratio_cpu": median["cpu"] / median["bare_cpu"],
            "stages_ms": {s: statistics.median(v) for s, v in stages.items()},
            "jpeg_bytes": statistics.median(len(i.data) for i in inputs)}


def measure_batching(pipeline: Pipeline, megapixels: float, repeats: int) -> dict:
    """Images per wall second and per CPU second of one process() call over n images,
    the models run one image at a time or as one batch of n."""
    photos = make_photos(megapixels)
    results = {}
    for n in tqdm(BATCH_SIZES, desc="batching", leave=False):
        inputs = _inputs([photos[i % len(photos)] for i in range(n)])
        runners = {mode: pipeline.with_settings(dataclasses.replace(
            pipeline.settings, detector_batch_size=size, classifier_batch_size=size))
            for mode, size in (("one_by_one", 1), ("batched", n))}
        clocks = {mode: [] for mode in runners}
        for _ in range(repeats):
            for mode, runner in runners.items():       # interleaved, so load drifts hit both
                with _Clock() as clock:
                    runner.process(inputs)
                clocks[mode].append(clock)
        results[n] = {mode: {"wall": 1000 * n / statistics.median(c.wall_ms for c in got),
                             "cpu": 1000 * n / statistics.median(c.cpu_ms for c in got)}
                      for mode, got in clocks.items()}
    return results


def measure_service(pipeline: Pipeline, megapixels: float = 3, images: int = 120, runs: int = 5) -> dict:
    """Per-image wall time of a real worker process (as `python -m app_tier`) on a local moto endpoint, `runs` times.

    Each run queues `images` jobs through the web tier's Submitter, then runs the worker until
    every job is acknowledged: receive, claim (PROCESSING write), original to the input bucket,
    pipeline, thumbnail + annotated + result JSON to the output bucket, final DynamoDB write,
    response message, delete. Bare forward passes are measured before and after each run.
    The worker's own start (heartbeat, first poll, first calls of each client) is in the time,
    spread over the run's jobs.
    """
    photos = make_photos(megapixels)
    rows = [_service_run(pipeline, photos, images) for _ in tqdm(range(runs), desc="worker job path", leave=False)]
    return {"megapixels": megapixels, "images": images, "runs": rows}


def _service_run(pipeline: Pipeline, photos: list[bytes], images: int) -> dict:
    """Queue the jobs on a fresh local endpoint and run one worker process over them, bare passes around it."""
    from sightfleet.config import Settings
    from sightfleet.resources import Resources, provision
    from testkit.procs import unique_prefix
    from testkit.stack import start_moto
    from web_tier.submit import Submitter, Upload

    proc, url = start_moto()  # a fresh emulator each run: moto slows as it fills up
    try:
        settings = Settings(endpoint_url=url, prefix=unique_prefix("bench"))
        provision(settings)
        resources = Resources.connect(settings)
        submitter = Submitter(resources, settings.max_upload_bytes)
        for i in range(images):
            submitter.submit(Upload(photos[i % len(photos)], f"photo-{i}.jpg"))
        bare = [bare_forward(pipeline).wall_ms for _ in range(10)]
        child = subprocess.run([sys.executable, __file__, "--service-worker", url, settings.prefix, str(images),
                                str(proc.pid)], capture_output=True, text=True, preexec_fn=die_with_parent)
        if child.returncode:
            raise RuntimeError(f"the worker process failed:\n{child.stderr[-3000:]}")
        row = json.loads(child.stdout.splitlines()[-1])
        bare += [bare_forward(pipeline).wall_ms for _ in range(10)]
        done = resources.results.completed_since("2000")
        assert len(done) == images and all(r["status"] == "SUCCEEDED" for r in done)
        return {**row, "bare_ms": statistics.median(bare)}
    finally:
        proc.terminate()
        proc.wait(10)


def _service_worker(endpoint_url: str, prefix: str, images: int, emulator_pid: int) -> None:
    """Child of _service_run: a worker process as `python -m app_tier` runs it, timed from its first poll
    until `images` jobs are done; prints its figures as JSON."""
    from app_tier.__main__ import load_pipeline
    from app_tier.worker import Worker
    from sightfleet.config import Settings
    from sightfleet.resources import Resources
    from testkit.procs import tree_cpu_ms

    settings = Settings(endpoint_url=endpoint_url, prefix=prefix)
    pipeline = load_pipeline(settings, threading.get_native_id())   # this thread feeds the models, as in production
    resources = Resources.connect(settings)
    worker = Worker(resources, lambda: pipeline, "i-bench", can_terminate=False)
    emulator_cpu_ms = tree_cpu_ms(emulator_pid)
    worker.counters = _StopWhenCounted(images)
    with _Clock() as clock, _ForwardTimer(pipeline) as forward, _StorageTimer(resources) as storage:
        worker.work()   # in this thread, as in production
    emulator_cpu_ms = tree_cpu_ms(emulator_pid) - emulator_cpu_ms
    sys.stdout.write(json.dumps({"per_image_ms": clock.wall_ms / images, "in_run_forward_ms": forward.ms / images,
                                 "worker_cpu_ms": clock.cpu_ms / images,
                                 "emulator_cpu_ms": emulator_cpu_ms / images, "storage": storage.calls,
                                 "peak_rss_mib": peak_rss_mib()}) + "\n")


class _StorageTimer:
    """Adds up the calls and wall time of each storage call the worker makes while active, by resource and method.

    The worker makes most of them on its storage threads, beside the models, so their times
    overlap the pipeline's: what they cost the critical path is the job path's ratio, not their sum.
    """

    CALLS = {"requests": ("receive", "delete_batch", "set_visibility"), "responses": ("send_batch", "send"),
             "inputs": ("put", "get"), "outputs": ("put",), "results": ("start", "get", "finish", "get_many"),
             "fleet_log": ("put",)}

    def __init__(self, resources):
        self._resources = resources
        self._lock = threading.Lock()
        self.calls: dict[str, list[float]] = {}     # "outputs.put image/jpeg": [calls, total ms]

    def __enter__(self):
        for name, methods in self.CALLS.items():
            store = getattr(self._resources, name)
            for method in methods:
                setattr(store, method, self._timed(f"{name}.{method}", getattr(store, method)))
        return self

    def __exit__(self, *exc):
        for name, methods in self.CALLS.items():
            for method in methods:
                delattr(getattr(self._resources, name), method)   # back to the class's method

    def _timed(self, key: str, call):
        def timed(*args, **kwargs):
            started = time.perf_counter()
            try:
                return call(*args, **kwargs)
            finally:
                label = f"{key} {args[2]}" if key.endswith("s.put") and len(args) > 2 else key
                with self._lock:
                    count, ms = self.calls.get(label, (0, 0.0))
                    self.calls[label] = [count + 1, ms + (time.perf_counter() - started) * 1000]
        return timed


class _ForwardTimer:
    """Adds up the wall time of the pipeline's own detector and classifier forward passes while active.

    These are the bare passes timed inside the run, under the same machine conditions as the
    run, so drift between a run and the bare passes around it cannot move their ratio.
    """

    def __init__(self, pipeline: Pipeline):
        self._models = (pipeline.detector, pipeline.classifier)
        self.ms = 0.0

    def __enter__(self):
        for model in self._models:
            model.forward = self._timed(model.forward)
        return self

    def __exit__(self, *exc):
        for model in self._models:
            del model.forward   # back to the class's method

    def _timed(self, forward):
        def timed(*args):
            started = time.perf_counter()
            try:
                return forward(*args)
            finally:
                self.ms += (time.perf_counter() - started) * 1000
        return timed


class _StopWhenCounted(Counter):
    """A worker's counts that SIGTERM this process, as a stop is asked of a worker, once `images` jobs are counted."""

    def __init__(self, images: int):
        super().__init__()
        self._images = images

    def __setitem__(self, key, value):
        super().__setitem__(key, value)
        if self["succeeded"] + self["failed"] == self._images:
            os.kill(os.getpid(), signal.SIGTERM)


def run_pipeline_benchmark(sizes=(0.3, 3, 12), repeats: int = 5, batch_megapixels: float = 0.3) -> dict:
    """Every figure of this benchmark as a dict (nothing printed)."""
    pipeline = Pipeline(PipelineSettings())
    return {"load_s": pipeline.load_seconds, "runtime": pipeline.runtime, "settings": dataclasses.asdict(pipeline.settings),
            "sizes": measure_sizes(pipeline, sizes, repeats),
            "batching": {"megapixels": batch_megapixels,
                         "images_per_s": measure_batching(pipeline, batch_megapixels, repeats)}}


def measure_threads(images: int = 20, megapixels: float = 3) -> dict:
    """Aggregate images/s for (processes x threads each) layouts, each process running its own pipeline."""
    layouts = [(1, 1), (1, 2), (2, 1), (2, 2)]
    results = {}
    for processes, threads in tqdm(layouts, desc="threads", leave=False):
        command = [sys.executable, __file__, "--worker", str(threads), str(images), str(megapixels)]
        started = time.perf_counter()
        workers = [subprocess.Popen(command, stdout=subprocess.PIPE, text=True) for _ in range(processes)]
        busy = [float(w.communicate()[0].split()[-1]) for w in workers]
        results[(processes, threads)] = processes * images / max(busy)
        logging.debug("layout %sx%s wall %.1f s", processes, threads, time.perf_counter() - started)
    return results


def _thread_worker(threads: int, images: int, megapixels: float) -> None:
    """Child of measure_threads: load, then time `images` single-image process() calls; prints seconds."""
    pipeline = Pipeline(PipelineSettings(torch_threads=threads, opencv_threads=threads))
    inputs = _inputs(make_photos(megapixels))
    started = time.perf_counter()
    for i in range(images):
        pipeline.process([inputs[i % len(inputs)]])
    sys.stdout.write(f"{time.perf_counter() - started}\n")


def format_runtimes(runtimes: dict) -> list[str]:
    """The bare passes of each runtime side by side, their ratio to native, and each one's worker start-up."""
    native = runtimes["native"]
    lines = ["bare forward passes by runtime (one image, one thread each; medians in ms, interleaved)",
             "  runtime          detect  classify    pair  pair/native | pair CPU  /native | start-up s  peak RSS MiB"
             "  torch loaded"]
    for name, row in runtimes.items():
        lines.append(f"  {name:<15} {row['detect_ms']:7.1f} {row['classify_ms']:9.1f} {row['pair_ms']:7.1f} "
                     f"{row['pair_ms'] / native['pair_ms']:12.2f} | {row['pair_cpu_ms']:8.1f} "
                     f"{row['pair_cpu_ms'] / native['pair_cpu_ms']:8.2f} | {row['startup_s']:10.2f} "
                     f"{row['peak_rss_mib']:13.0f}  {row['torch_imported']!s:>12}")
    return lines + ["  (goal: the new pair at most 0.3x native; start-up = launch to loaded and warmed models,",
                    "   peak RSS after one 3 MP photo; each runtime in a fresh process)", ""]


def format_report(results: dict) -> str:
    lines = format_runtimes(results["runtimes"]) if "runtimes" in results else []
    lines += [f"models loaded on {results['runtime']} in {results['load_s']:.2f} s; "
              f"torch threads {results['settings']['torch_threads']}, "
              f"OpenCV/OpenVINO threads {results['settings']['opencv_threads']}", "",
             "per image, medians in ms",
             "size    JPEG   " + " ".join(f"{s:>9}" for s in STAGES)
             + "  | wall  bare  ratio |  cpu  bare  ratio"]
    for size, row in results["sizes"].items():
        cells = " ".join(f"{row['stages_ms'][s]:9.1f}" for s in STAGES)
        lines.append(f"{size:>4g} MP {row['jpeg_bytes'] / 1e6:4.1f} MB {cells}  | {row['wall_ms']:4.0f} "
                     f"{row['bare_wall_ms']:5.0f} {row['ratio_wall']:6.2f} | {row['cpu_ms']:4.0f} "
                     f"{row['bare_cpu_ms']:5.0f} {row['ratio_cpu']:6.2f}")
    if "runtimes" in results:
        old_pair, old_cpu = (results["runtimes"]["native"][key] for key in ("pair_ms", "pair_cpu_ms"))
        lines += ["", "whole pipeline per image (timings total) / native bare pair: "
                  + ", ".join(f"{size:g} MP {row['stages_ms']['total'] / old_pair:.2f}"
                              for size, row in results["sizes"].items()) + " (goal: at most 0.5)",
                  "  the same by CPU time (process([one image]) / native pair): "
                  + ", ".join(f"{size:g} MP {row['cpu_ms'] / old_cpu:.2f}" for size, row in results["sizes"].items())]
    lines += ["", "ratio = time of process([one image]) / time of detector + classifier forward on ready blobs,",
              "as wall time and as this process's CPU time (the latter unmoved by other people's load);",
              "stage columns are the pipeline's own wall-time figures; detect/classify include each image's",
              "preprocessing, and batched passes are shared evenly among the images of the batch", "",
              f"throughput at {results['batching']['megapixels']:g} MP: models one by one vs one batch",
              "               images/wall s  one-by-one  batched  gain | images/CPU s  one-by-one  batched  gain"]
    for n, row in results["batching"]["images_per_s"].items():
        one, batched = row["one_by_one"], row["batched"]
        lines.append(f"  {n:>2} images                  {one['wall']:10.2f} {batched['wall']:8.2f} "
                     f"{batched['wall'] / one['wall']:5.2f} |               {one['cpu']:10.2f} "
                     f"{batched['cpu']:8.2f} {batched['cpu'] / one['cpu']:5.2f}")
    if "service" in results:
        service = results["service"]
        lines += ["", f"the worker's job path per image at {service['megapixels']:g} MP, {service['images']} jobs a run, "
                  "a fresh local moto endpoint each run", "(receive .. delete, every S3/DynamoDB/SQS write included; "
                  "CPU columns: the worker process's and moto's CPU ms per image)",
                  "  run   per image ms   bare models ms   ratio | forward in run ms   ratio | worker CPU   moto CPU | worker peak RSS MiB"]
        for number, row in enumerate(service["runs"], 1):
            lines.append(f"  {number:>3}   {row['per_image_ms']:12.1f}   {row['bare_ms']:14.1f}   "
                         f"{row['per_image_ms'] / row['bare_ms']:5.2f} | {row['in_run_forward_ms']:17.1f}   "
                         f"{row['per_image_ms'] / row['in_run_forward_ms']:5.2f} | {row['worker_cpu_ms']:10.1f}   "
                         f"{row['emulator_cpu_ms']:8.1f} | {row['peak_rss_mib']:19.0f}")
        for label, key in (("bare passes around each run", "bare_ms"), ("forward passes inside it", "in_run_forward_ms")):
            ratios = [row["per_image_ms"] / row[key] for row in service["runs"]]
            lines.append(f"  median ratio to the {label}: {statistics.median(ratios):.2f} (goal: at most 1.5)")
        # No schedule can beat the CPU the worker and the emulator spend per image over the cores they share.
        cores = os.cpu_count() or 1
        floors = [(row["worker_cpu_ms"] + row["emulator_cpu_ms"]) / cores for row in service["runs"]]
        lines.append(f"  CPU floor: (worker CPU + moto CPU) / {cores} cores = {statistics.median(floors):.1f} ms per image,"
                     f" {statistics.median(f / row['bare_ms'] for f, row in zip(floors, service['runs'])):.2f}x the bare"
                     f" passes (median); the runs took"
                     f" {statistics.median(row['per_image_ms'] / f for f, row in zip(floors, service['runs'])):.2f}x it")
        lines += ["  (the first ratio includes what the storage threads and the emulator take from the models"
                  " on shared cores,", "   but moves with drift on a noisy machine; the second is immune"
                  " to drift but counts that contention as model time)"]
        lines += ["", "storage calls per image, all runs (wall ms; most on the storage threads, overlapping the models)",
                  "  call                                     calls/image   ms/call   ms/image"]
        jobs = service["images"] * len(service["runs"])
        totals: dict[str, list[float]] = {}
        for row in service["runs"]:
            for label, (count, ms) in row["storage"].items():
                totals[label] = [a + b for a, b in zip(totals.get(label, (0, 0.0)), (count, ms))]
        for label, (count, ms) in sorted(totals.items(), key=lambda item: -item[1][1]):
            lines.append(f"  {label:<40} {count / jobs:11.2f} {ms / count:9.1f} {ms / jobs:10.1f}")
    if "threads" in results:
        lines += ["", "aggregate images/s by processes x threads (3 MP, one image per process() call)"]
        lines += [f"  {p} x {t}: {ips:6.2f}" for (p, t), ips in results["threads"].items()]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=float, nargs="+", default=[0.3, 3, 12], help="megapixels")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", action="store_true", help="also compare processes x threads layouts")
    parser.add_argument("--no-service", action="store_true", help="skip the worker-with-storage measurement")
    parser.add_argument("--runs", type=int, default=5, help="worker-with-storage runs, each on a fresh emulator")
    parser.add_argument("--jobs", type=int, default=120, help="jobs per worker-with-storage run")
    parser.add_argument("--bare-repeats", type=int, default=30, help="bare passes per runtime in the first table")
    parser.add_argument("--features-only", action="store_true",
                        help="only the CPU per image of each feature (recognition photos and 3 MP photos)")
    args = parser.parse_args()
    features = measure_feature_cpu(Pipeline(PipelineSettings()), recognition_photos() + make_photos(3), args.repeats)
    if args.features_only:
        print("\n".join(format_feature_cpu(features)))
        return
    results = {"runtimes": measure_runtimes(args.bare_repeats), **run_pipeline_benchmark(args.sizes, args.repeats)}
    if not args.no_service:
        results["service"] = measure_service(Pipeline(PipelineSettings()), images=args.jobs, runs=args.runs)
    if args.threads:
        results["threads"] = measure_threads()
    print(format_report(results) + "\n\n" + "\n".join(format_feature_cpu(features)))


if __name__ == "__main__":
    if sys.argv[1:2] == ["--worker"]:
        _thread_worker(int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]))
    elif sys.argv[1:2] == ["--service-worker"]:
        _service_worker(sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]))
    else:
        main()
