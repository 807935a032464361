"""Training-data throughput: the Ray Data stream on ingested H.264 clips vs a per-sample JPEG loader.

    python benchmarks/data_throughput.py                      # both sizes, 3 repeats + a steady run: ~1.5 h on 2 cores
    python benchmarks/data_throughput.py --sizes 640x480 --repeats 2 --long-samples 3072   # ~25 min
    python benchmarks/data_throughput.py --quick              # smoke run: small data, one size, ~1-2 min
    python benchmarks/data_throughput.py --sizes 1280x720 --samples 2048 --repeats 5

Loaders, side by side for each frame size, with 1 and 2 CPUs, local and from an S3 endpoint (a moto
server process on 127.0.0.1):
- JPEG loader: what pytracking-style loaders do, one sample at a time with the official per-sample
  sampler: open each of the sample's frames from the original JPEG folder with PIL (or one GET per
  frame from S3), decode it whole, crop as STARK's loader does (`sample_target`: cv2.copyMakeBorder of
  the window, cv2.resize), then the photometric augmentation and ImageNet normalisation on the CPU,
  shipping float crops. 1 CPU = a plain loop;
  2 CPUs = a torch DataLoader with 2 worker processes. This is the baseline every ratio is against.
- JPEG loader, uint8 out: the same, but shipping the stream's uint8 batch format (normalisation left
  to the training device): how much of the stream's win is decoding, not the batch format.
- Ray Data stream: `build_training_stream` over the ingested clips, `cpus` decode workers (Ray tasks):
  window sampling, each window decoded once in order, crops cut from YUV planes, uint8 out.

How a figure is taken: each repeat builds a fresh loader (Ray: a fresh stream) and times from the first
batch requested to the last consumed: start-up is inside (the `first batch` column says how much of it).
The stream rows share one Ray instance per CPU count, started after the JPEG rows, as a training job
builds its streams on a running instance (one per stage, one per restart of its workers). The first
stream of an instance is timed apart and printed below the table (`first stream`): starting Ray itself
(GCS, raylet, dashboard agent) is the cluster's cost, but Ray Data's coordinator actors and the decode
worker processes start inside it, which a job pays once: Ray reuses the decode workers for the
streams that follow (`--cold-ray` runs every repeat on a fresh instance instead). CPU-s is the
user+system time over that interval of this process and every process below it (Ray's raylet and GCS included; the S3 server excluded), less what
the benchmark's own bookkeeping threads spent reading /proc for these figures (measured per thread; the
memory sampler's reads alone cost over a CPU-second a run). Rows give the median over --repeats and the
spread (min-max) of samples per CPU-second. A fresh stream pays a fixed start-up (Ray Data planning and
scheduling it, the first unit decoded before the first batch), so short runs understate what a long
training run pays per sample. The `long run` columns are the one fresh run of --long-samples per row, whole (start-up
inside, timed the same way): closer to a training stage, which streams tens of thousands of samples
through one stream. A steady figure from the consumer's side is not measurable (the stream decodes ahead);
the `steady` columns take it from one more fresh run of --long-samples per row instead: its extra
samples over the short runs' median, per extra CPU-second (the start-up is in both, so it cancels). A
row whose CPU time per sample is below what decoding its frames alone costs (distinct frames x the
single-threaded decode cost measured below) is flagged IMPOSSIBLE instead of being believed. Peak
memory: the largest PSS of any one loader process (a decode worker, a DataLoader worker) and the peak
summed PSS of them all with the driver, sampled every 0.2 s.
Batch diversity: distinct sequences per training batch (the official
sampler draws every sample's sequence afresh; the stream mixes `data.windows_in_flight` windows).
"""
from __future__ import annotations

import argparse
import dataclasses
import io
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass

import numpy as np
from PIL import Image

from ceiling import ceiling_line
from stark.platform import storage
from stark.platform.crop import crop_padding_mask, crop_window, window_pixels
from stark.platform.data.decode import decode_in_order
from stark.platform.data.device_images import network_images
from stark.platform.data.frame_index import load_frame_index
from stark.platform.data.processing import empty_batch, fill_fields, search_box_in_crop
from stark.platform.data.sampling import CropSpec, make_sample_spec
from stark.platform.data.stream import build_training_stream, crop_geometry, unit_bytes
from stark.platform.data.windows import draw_unit
from stark.platform.experiment import load_config
from stark.platform.ingest.config import IngestConfig
from stark.platform.ingest.manifest import read_records
from stark.platform.ingest.run import ingest
from stark.platform.ingest.sources import read_image
from stark.platform.ingest.synthetic import write_demo_dataset
from stark.platform.storage import StorageConfig

SEED, EPOCH, STAGE = 0, 0, 1
EXCLUDED: set[int] = set()  # the S3 server: storage, not loader


def pss_bytes(pid: int) -> int:
    """Proportional set size of a process (Linux /proc): shared pages split among their users."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def descendants() -> list[int]:
    """Every process below this one (ppid chain read from /proc)."""
    parent_of = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    parent_of[int(entry)] = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                pass
    found, frontier = [], [os.getpid()]
    while frontier:
        children = [pid for pid, ppid in parent_of.items() if ppid in frontier]
        found += children
        frontier = children
    return found


def cpu_seconds(pids: list[int]) -> dict[int, float]:
    """user + system CPU seconds of each process so far (/proc/PID/stat)."""
    ticks = os.sysconf("SC_CLK_TCK")
    out = {}
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            out[pid] = (int(fields[11]) + int(fields[12])) / ticks
        except (OSError, IndexError, ValueError):
            pass
    return out


def loader_processes() -> list[int]:
    return [pid for pid in descendants() if pid not in EXCLUDED]


class PeakMemory:
    """Peak PSS of each process `select()` names and the peak of their sum with this process's, sampled
    in a thread every 0.2 s. `cpu_seconds`: what the sampling itself cost (reading smaps_rollup walks a
    process's page tables, charged to this thread: over a second per run), which is not the loader's."""

    def __init__(self, select):
        self.select, self.peak_total, self.peak_each, self._stop = select, 0, {}, threading.Event()
        self.cpu_seconds = 0.0
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            sizes = {pid: pss_bytes(pid) for pid in self.select()}
            for pid, size in sizes.items():
                self.peak_each[pid] = max(self.peak_each.get(pid, 0), size)
            self.peak_total = max(self.peak_total, pss_bytes(os.getpid()) + sum(sizes.values()))
            self.cpu_seconds = time.thread_time()  # this thread's CPU so far
            self._stop.wait(0.2)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def ray_decode_workers() -> list[int]:
    """The decode workers' processes while they run a task (`ray::MapBatches(make_in_worker)`), not Ray's
    own services."""
    found = []
    for pid in descendants():
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if b"MapBatches(" in f.read():
                    found.append(pid)
        except OSError:
            pass
    return found


@dataclass
class Run:
    samples: int
    seconds: float
    cpu_seconds: float
    first_batch_s: float
    peak_each: int  # bytes: the largest loader process
    peak_total: int
    distinct_per_batch: float

    @property
    def per_cpu_second(self) -> float:
        return self.samples / self.cpu_seconds


def timed_run(make_batches, select_each) -> Run:
    """Consume one fresh loader: (samples, seconds and CPU-seconds from the first batch requested to the
    last consumed, time to the first batch, memory, distinct sequences per batch)."""
    bookkeeping = 0.0  # CPU this thread spends reading /proc for the figures: the benchmark's, not the loader's

    def read_cpu() -> dict[int, float]:
        nonlocal bookkeeping
        begin = time.thread_time()
        now = cpu_seconds([os.getpid()] + loader_processes())
        bookkeeping += time.thread_time() - begin
        return now

    with PeakMemory(select_each) as memory:
        cpu_start = read_cpu()
        cpu_end = dict(cpu_start)
        start = time.perf_counter()
        first, count, distinct = None, 0, []
        for batch in make_batches():
            if first is None:
                first = time.perf_counter() - start
            count += len(batch["label"])
            distinct.append(len(set(np.asarray(batch["sequence"]).tolist())))
            cpu_end.update(read_cpu())  # workers may exit at the end
        seconds = time.perf_counter() - start
    cpu_end.update(read_cpu())
    cpu = sum(t - cpu_start.get(pid, 0.0) for pid, t in cpu_end.items()) - memory.cpu_seconds - bookkeeping
    return Run(count, seconds, cpu, first or 0.0, max(memory.peak_each.values(), default=0), memory.peak_total,
               float(np.mean(distinct)))


# --- the JPEG-folder loader --------------------------------------------------------------------------
class JpegSamples:
    """A torch map-style dataset: sample i by the official per-sample sampler, frames read from JPEG files
    (a local folder, or one GET per frame from an S3 prefix), cropped as the tracker crops; float
    normalised crops as pytracking ships them, or the stream's uint8 format (`uint8=True`)."""

    def __init__(self, index, cfg, geometry, folders: dict[str, str], storage_cfg: StorageConfig | None = None,
                 uint8: bool = False):
        self.index, self.cfg, self.geometry, self.folders = index, cfg, geometry, folders
        self.storage, self.uint8 = storage_cfg, uint8

    def __len__(self) -> int:
        return self.cfg.samples_per_epoch

    def __getitem__(self, i: int) -> dict:
        import torch

        spec = make_sample_spec(self.index, i, self.cfg, self.geometry, STAGE, SEED, EPOCH)
        frames = {}
        for crop in (*spec.templates, spec.search):
            path = f"{self.folders[self.index.sequence_names[crop.sequence]]}/{crop.frame + 1:08d}.jpg"
            if path.startswith("s3://"):
                with Image.open(io.BytesIO(storage.read_bytes(path, self.storage))) as image:
                    frames[(crop.sequence, crop.frame)] = np.asarray(image.convert("RGB"))
            else:
                frames[(crop.sequence, crop.frame)] = read_image(path)
        batch = empty_batch(1, self.geometry)
        g = self.geometry
        for k, c in enumerate(spec.templates):
            batch["template"][0, k], batch["template_mask"][0, k] = sample_target(
                frames[(c.sequence, c.frame)], c, g.template_factor, g.template_size)
        batch["search"][0], batch["search_mask"][0] = sample_target(
            frames[(spec.search.sequence, spec.search.frame)], spec.search, g.search_factor, g.search_size)
        fill_fields(batch, 0, spec, search_box_in_crop(spec, g))
        sample = {k: torch.from_numpy(np.asarray(v[0])) for k, v in batch.items()}
        if self.uint8:
            return sample
        batch = network_images({k: v[None] for k, v in sample.items()})  # on this CPU, as pytracking does
        return {k: v[0] for k, v in batch.items()}


def sample_target(frame: np.ndarray, crop: CropSpec, factor: float, out_size: int) -> tuple[np.ndarray, np.ndarray]:
    """One crop as STARK's loader cuts it (lib/train/data/processing_utils.py `sample_target`): the window
    zero-padded into a canvas (cv2.copyMakeBorder there, `window_pixels` here), cv2.resize (bilinear) to
    out_size; the padding mask as the stream's; mirrored when the sample is flipped. -> (CHW uint8, mask)."""
    import cv2

    window = crop_window(crop.crop_box_xywh, factor, out_size)
    pixels = cv2.resize(window_pixels(frame, window, 0), (out_size, out_size), interpolation=cv2.INTER_LINEAR)
    mask = crop_padding_mask(window, out_size, *frame.shape[:2])
    if crop.flip:
        pixels, mask = pixels[:, ::-1], mask[:, ::-1]
    return pixels.transpose(2, 0, 1), mask


def jpeg_loader(dataset: JpegSamples, cpus: int, batch_size: int):
    import cv2
    import torch

    torch.set_num_threads(1)
    cv2.setNumThreads(1)  # one core per loader process, as the decode workers
    return lambda: torch.utils.data.DataLoader(dataset, batch_size=batch_size, num_workers=cpus if cpus > 1 else 0,
                                               persistent_workers=False)


def stream_loader(manifest: str, cfg, batch_size: int, storage_cfg: StorageConfig | None, data_cfg=None):
    data_cfg = data_cfg or cfg.data

    def batches():
        ds = build_training_stream([manifest], data_cfg, cfg.model, STAGE, EPOCH, SEED, storage_cfg)
        return ds.iter_torch_batches(batch_size=batch_size)
    return batches


# --- what frames cost, and the floor a figure cannot beat --------------------------------------------
def frame_costs(index, cfg, geometry, folders: dict[str, str], samples: int = 32) -> dict[str, float]:
    """Median ms per frame, single-threaded, over the frames of the first `samples` samples."""
    from stark.platform.ingest.clips import decode_clip_frames, open_clip

    wanted = []
    for i in range(samples):
        spec = make_sample_spec(index, i, cfg.data, geometry, STAGE, SEED, EPOCH)
        wanted += [(c.sequence, c.frame) for c in (*spec.templates, spec.search)]

    def median_ms(read) -> float:
        times = []
        for seq, frame in wanted:
            start = time.perf_counter()
            read(seq, frame)
            times.append(time.perf_counter() - start)
        return float(np.median(times) * 1000)

    readers = {}

    def decord_random(seq, frame):
        uri, in_clip = index.clip_of(seq, frame)
        readers.setdefault(uri, open_clip(uri))
        reader = readers[uri]
        reader.seek(0 if in_clip > len(reader) // 2 else len(reader) - 1)  # last used elsewhere in the clip
        decode_clip_frames(reader, [in_clip], int(index.seq_width[seq]), int(index.seq_height[seq]))

    costs = {"jpeg": median_ms(lambda seq, frame: read_image(f"{folders[index.sequence_names[seq]]}/{frame + 1:08d}.jpg")),
             "decord_random": median_ms(decord_random)}
    uri, _ = index.clip_of(*wanted[0])
    data = storage.read_bytes(uri)
    frames = _all_frames(data)
    start = time.perf_counter()
    for _ in decode_in_order(data, frames):
        pass
    costs["yuv_in_order"] = (time.perf_counter() - start) / len(frames) * 1000
    return costs


def _all_frames(data: bytes) -> list[int]:
    import av

    with av.open(io.BytesIO(data)) as container:
        return list(range(container.streams.video[0].frames))


def stream_floor_ms(index, cfg, geometry, samples: int, decode_ms: float) -> tuple[float, float]:
    """(ms per sample that decoding the stream's distinct frames alone costs, distinct frames per sample)."""
    per_unit = cfg.data.samples_per_unit
    distinct = 0
    for number in range((samples + per_unit - 1) // per_unit):
        unit = draw_unit(index, EPOCH, number, cfg.data, geometry, STAGE, SEED)
        kept = unit.samples[:max(0, min(per_unit, samples - number * per_unit))]
        distinct += len({(c.sequence, c.frame) for s in kept for c in (*s.templates, s.search)})
    return distinct * decode_ms / samples, distinct / samples


# --- a local S3 endpoint -----------------------------------------------------------------------------
def start_s3() -> tuple[subprocess.Popen, str]:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = shutil.which("moto_server")
    command = [server] if server else [sys.executable, "-m", "moto.server"]
    process = subprocess.Popen(command + ["-H", "127.0.0.1", "-p", str(port)], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            urllib.request.urlopen(url, timeout=1).close()
            return process, url
        except OSError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError("moto_server did not start")


def prepare(work: str, size: tuple[int, int], args, cfg, ingest_cfg, s3: StorageConfig) -> dict:
    import ray

    width, height = size
    tag = f"{width}x{height}"
    src, local = os.path.join(work, f"got10k-{tag}"), os.path.join(work, f"clips-{tag}")
    print(f"[{tag}] generating {args.sequences} sequences x {args.frames} frames", flush=True)
    write_demo_dataset(src, "got10k", num_sequences=args.sequences, num_frames=args.frames, size=size,
                       num_test=0, seed=1)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    quiet = io.StringIO()
    local_report = ingest(src, local, ingest_cfg, out=quiet)
    s3_report = ingest(src, f"s3://bench/clips-{tag}", ingest_cfg, s3, out=quiet)
    ray.shutdown()
    fs, _ = storage.filesystem("s3://bench", s3)
    fs.put(os.path.join(src, "train"), f"bench/jpeg-{tag}/train", recursive=True)  # one object a frame
    jpeg_bytes = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs_ in os.walk(src) for f in fs_ if f.endswith(".jpg"))
    print(f"[{tag}] ingested {local_report.clips} clips, {local_report.clip_bytes / 1e6:.1f} MB "
          f"(JPEG folders: {jpeg_bytes / 1e6:.1f} MB)", flush=True)
    folders = {f"{r.dataset}/{r.split}/{r.sequence_id}": r.source_path for r in read_records(local_report.manifest_uri)}
    return {"tag": tag, "src": src, "local": local_report.manifest_uri, "s3": s3_report.manifest_uri,
            "folders": folders, "clip_bytes": local_report.clip_bytes, "jpeg_bytes": jpeg_bytes}


def measure_size(data: dict, args, cfg, s3: StorageConfig) -> tuple[list[tuple], dict]:
    import ray

    geometry = crop_geometry(cfg.model)
    index = load_frame_index([data["local"]], cfg.data, cfg.model.num_templates)
    folders = data["folders"]
    s3_folders = {k: v.replace(os.path.join(data["src"], "train"), f"s3://bench/jpeg-{data['tag']}/train")
                  for k, v in folders.items()}
    costs = frame_costs(index, cfg, geometry, folders)
    stream_floor, stream_frames = stream_floor_ms(index, cfg, geometry, args.samples, costs["yuv_in_order"])
    jpeg_floor = costs["jpeg"] * (cfg.model.num_templates + 1)  # every frame of a sample is decoded
    rows, first_streams = [], {}
    for cpus in args.cpus:
        cfg.data.decode_actors = cpus

        def sized(samples: int):  # the data config of a run of `samples` samples
            return dataclasses.replace(cfg.data, samples_per_epoch=samples)

        # (name, storage, floor, loader of a run of n samples, its processes)
        loaders = [
            ("JPEG folders, per-sample PIL loader", "local", jpeg_floor,
             lambda n: jpeg_loader(JpegSamples(index, sized(n), geometry, folders), cpus, args.batch_size),
             loader_processes),
            ("JPEG folders, PIL loader, uint8 out", "local", jpeg_floor,
             lambda n: jpeg_loader(JpegSamples(index, sized(n), geometry, folders, uint8=True), cpus, args.batch_size),
             loader_processes),
            ("Ray Data stream, clips", "local", stream_floor,
             lambda n: stream_loader(data["local"], cfg, args.batch_size, None, sized(n)), ray_decode_workers),
            ("JPEG per-sample PIL loader", "S3", jpeg_floor,
             lambda n: jpeg_loader(JpegSamples(index, sized(n), geometry, s3_folders, s3), cpus, args.batch_size),
             loader_processes),
            ("Ray Data stream, clips", "S3", stream_floor,
             lambda n: stream_loader(data["s3"], cfg, args.batch_size, s3, sized(n)), ray_decode_workers)]
        # the JPEG rows first, with no Ray running (its idle processes would be counted); then the stream rows
        loaders.sort(key=lambda loader: loader[0].startswith("Ray"))
        warm = False  # a Ray instance is up and has run one stream
        for name, where, floor_ms, loader_of, select in loaders:
            is_ray = name.startswith("Ray")
            if is_ray and not warm and not args.cold_ray:
                ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=False)
                # timed apart: Ray Data's coordinator actors and the decode workers start with the first stream
                first_streams[(data["tag"], cpus)] = timed_run(
                    stream_loader(data["local"], cfg, args.batch_size, None, sized(args.samples)), ray_decode_workers)
                warm = True

            def fresh_run(samples: int) -> Run:
                if is_ray and args.cold_ray:
                    ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=False)
                try:
                    return timed_run(loader_of(samples), select)
                finally:
                    if is_ray and args.cold_ray:
                        ray.shutdown()

            runs = [fresh_run(args.samples) for _ in range(args.repeats)]
            long_run = fresh_run(args.long_samples) if args.long_samples > args.samples else None
            rows.append((data["tag"], name, where, cpus, runs, floor_ms, long_run))
            rates = [round(r.per_cpu_second, 1) for r in runs]
            steady = f", steady {steady_rate(runs, long_run):.1f}" if long_run else ""
            print(f"  [{data['tag']}] {name}, {where}, {cpus} CPU: samples per CPU-s {rates}{steady}, "
                  f"samples/s {[round(r.samples / r.seconds, 1) for r in runs]}", flush=True)
        if warm:
            ray.shutdown()
    info = {"first_streams": first_streams, "costs": costs, "stream_frames": stream_frames,
            "stream_floor": stream_floor, "jpeg_floor": jpeg_floor,
            "s3_bytes_per_sample_stream": s3_bytes_per_sample(index, cfg, geometry, args.samples),
            "s3_bytes_per_sample_jpeg": data["jpeg_bytes"] / max(1, int(index.seq_num_frames.sum()))
            * (cfg.model.num_templates + 1)}
    return rows, info


def steady_rate(runs: list[Run], long_run: Run | None, short_cpu=statistics.median) -> float:
    """Samples per CPU-second once started: what the long run's extra samples cost beyond the short runs'
    CPU time (their median; min or max for the range), (N2 - N1) / (CPU(N2) - CPU(N1)); both runs pay the
    same start-up, so it cancels, up to how much the start-up varies. NaN without a long run."""
    if long_run is None:
        return float("nan")
    extra_cpu = long_run.cpu_seconds - short_cpu([r.cpu_seconds for r in runs])
    extra_samples = long_run.samples - statistics.median(r.samples for r in runs)
    return extra_samples / extra_cpu if extra_cpu > 0 else float("inf")


def steady_range(runs: list[Run], long_run: Run | None) -> tuple[float, float]:
    """(low, high) of the steady figure over the short runs' spread of CPU time: how much a start-up that
    varies between fresh loaders can move it."""
    return steady_rate(runs, long_run, min), steady_rate(runs, long_run, max)  # less short CPU: more extra


def s3_bytes_per_sample(index, cfg, geometry, samples: int) -> float:
    """Bytes the stream GETs per sample: each clip a unit touches, once (open_clip_cache not counted)."""
    sizes = {}
    per_unit, total = cfg.data.samples_per_unit, 0
    for number in range((samples + per_unit - 1) // per_unit):
        unit = draw_unit(index, EPOCH, number, cfg.data, geometry, STAGE, SEED)
        for uri in {index.clip_of(c.sequence, c.frame)[0] for s in unit.samples for c in (*s.templates, s.search)}:
            sizes.setdefault(uri, os.path.getsize(uri))
            total += sizes[uri]
    return total / samples


def print_tables(all_rows: list[tuple], infos: dict, args, cfg, ingest_cfg) -> None:
    m, d = cfg.model, cfg.data
    print()
    print(ceiling_line())
    print(f"{args.samples} samples of STARK-{m.variant} (templates {m.num_templates}x{m.template_size}px, search "
          f"{m.search_size}px), stage {STAGE}, {args.sequences} sequences x {args.frames} frames; crf {ingest_cfg.crf}, "
          f"keyframe interval {ingest_cfg.keyframe_interval}; stream: windows of {d.window_frames} frames, "
          f"{d.samples_per_window} samples x {d.windows_in_flight} windows per unit "
          f"({unit_bytes(d, crop_geometry(m)) / 2**20:.0f} MB of crops per decode worker), batch {args.batch_size}; "
          f"median of {args.repeats} (spread min-max); long run: {args.long_samples} samples, one run")
    for tag, info in infos.items():
        c = info["costs"]
        print(f"\n[{tag}] one frame, single-threaded: PIL JPEG {c['jpeg']:.2f} ms, decord random access "
              f"{c['decord_random']:.2f} ms, PyAV in order to YUV {c['yuv_in_order']:.2f} ms; the stream decodes "
              f"{info['stream_frames']:.2f} distinct frames per sample (JPEG loader: {m.num_templates + 1}); "
              f"S3 bytes per sample: stream {info['s3_bytes_per_sample_stream'] / 1e3:.0f} kB (whole clips, once per "
              f"unit), JPEG {info['s3_bytes_per_sample_jpeg'] / 1e3:.0f} kB")
    print()
    print("| frames | loader | storage | CPUs | samples per CPU-s | spread | vs JPEG loader | long run per CPU-s | "
          "long run vs JPEG | steady per CPU-s | steady range | steady vs JPEG (low) | samples/s | first batch | "
          "peak per process | peak total | seqs/batch | check |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    baseline, steady_baseline, long_baseline = {}, {}, {}
    for tag, name, where, cpus, runs, floor_ms, long_run in all_rows:
        if name.startswith("JPEG") and "uint8" not in name:
            baseline[(tag, where, cpus)] = statistics.median(r.per_cpu_second for r in runs)
            steady_baseline[(tag, where, cpus)] = steady_rate(runs, long_run)
            long_baseline[(tag, where, cpus)] = long_run.per_cpu_second if long_run else float("nan")
    for tag, name, where, cpus, runs, floor_ms, long_run in all_rows:
        rates = [r.per_cpu_second for r in runs]
        rate = statistics.median(rates)
        base = baseline.get((tag, where, cpus)) or baseline.get((tag, "local", cpus))
        steady = steady_rate(runs, long_run)
        steady_base = steady_baseline.get((tag, where, cpus)) or steady_baseline.get((tag, "local", cpus))
        fastest_ms = 1000 / max([*rates, *([steady] if np.isfinite(steady) else [])])
        check = "ok" if fastest_ms >= 0.8 * floor_ms else f"IMPOSSIBLE: {fastest_ms:.1f} ms < decode {floor_ms:.1f} ms"
        low, high = steady_range(runs, long_run)
        steady_cells = (f"{steady:.1f} | {low:.0f}-{high:.0f} | {steady / steady_base:.2f}x ({low / steady_base:.2f}x)"
                        if np.isfinite(steady) and steady_base and np.isfinite(steady_base) else "- | - | -")
        long_base = long_baseline.get((tag, where, cpus)) or long_baseline.get((tag, "local", cpus))
        long_cells = (f"{long_run.per_cpu_second:.1f} | {long_run.per_cpu_second / long_base:.2f}x"
                      if long_run and long_base and np.isfinite(long_base) else "- | -")
        print(f"| {tag} | {name} | {where} | {cpus} | {rate:.1f} | {min(rates):.1f}-{max(rates):.1f} | "
              f"{rate / base:.2f}x | {long_cells} | {steady_cells} | "
              f"{statistics.median(r.samples / r.seconds for r in runs):.1f} | "
              f"{statistics.median(r.first_batch_s for r in runs):.1f} s | "
              f"{max(r.peak_each for r in runs) / 2**20:.0f} MB | {max(r.peak_total for r in runs) / 2**20:.0f} MB | "
              f"{statistics.median(r.distinct_per_batch for r in runs):.1f} | {check} |")
    for tag, info in infos.items():
        for (_, cpus), run in info["first_streams"].items():
            base = baseline.get((tag, "local", cpus))
            print(f"\n[{tag}] first stream of the Ray instance, local, {cpus} CPU (Ray Data's coordinator actors and "
                  f"the decode workers start inside; Ray reuses the workers for the streams above): "
                  f"{run.per_cpu_second:.1f} samples per CPU-s ({run.per_cpu_second / base:.2f}x the JPEG loader), "
                  f"first batch {run.first_batch_s:.1f} s, peak per process {run.peak_each / 2**20:.0f} MB")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: small data, one size, 2 repeats")
    parser.add_argument("--sizes", default="640x480,1280x720", help="frame sizes WIDTHxHEIGHT, comma-separated")
    parser.add_argument("--cpus", default="1,2", help="CPU counts, comma-separated")
    parser.add_argument("--sequences", type=int, default=12)
    parser.add_argument("--frames", type=int, default=120)
    parser.add_argument("--samples", type=int, default=1536, help="samples per run")
    parser.add_argument("--long-samples", type=int, default=6144,
                        help="samples of one more fresh run per row, for the steady (start-up-free) figure; 0: none")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--config", default="stark_st50", help="preset whose crop sizes and data settings to use")
    parser.add_argument("--repeats", type=int, default=3, help="fresh loaders per row: the median and spread")
    parser.add_argument("--workdir", default=None, help="keep the generated data here (default: a temp dir)")
    parser.add_argument("--cold-ray", action="store_true",
                        help="start a fresh Ray instance for every stream run (its start-up then counts as the loader's)")
    parser.add_argument("overrides", nargs="*", help="config overrides, e.g. data.samples_per_window=32")
    args = parser.parse_args()
    if args.quick:
        args.sizes, args.sequences, args.frames = args.sizes.split(",")[0], 4, 48
        args.samples, args.repeats, args.long_samples = 256, 2, 512
        args.overrides = ["data.samples_per_window=32", "data.windows_in_flight=4", *args.overrides]
    sizes = [tuple(int(v) for v in size.split("x")) for size in args.sizes.split(",")]
    args.cpus = [int(c) for c in args.cpus.split(",")]
    cfg = load_config(args.config, [f"data.samples_per_epoch={args.samples}", *args.overrides])
    ingest_cfg = IngestConfig(**{**cfg.ingest.__dict__})
    work = args.workdir or tempfile.mkdtemp(prefix="stark-bench-")
    s3_process, endpoint = start_s3()
    EXCLUDED.add(s3_process.pid)
    try:
        import boto3

        boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="bench",
                     aws_secret_access_key="bench").create_bucket(Bucket="bench")
        s3 = StorageConfig(endpoint_url=endpoint, region="us-east-1", key="bench", secret="bench")
        all_rows, infos = [], {}
        for size in sizes:
            data = prepare(work, size, args, cfg, ingest_cfg, s3)
            rows, infos[data["tag"]] = measure_size(data, args, cfg, s3)
            all_rows += rows
    finally:
        s3_process.terminate()
        s3_process.wait()
        if not args.workdir:
            shutil.rmtree(work, ignore_errors=True)
    print_tables(all_rows, infos, args, cfg, ingest_cfg)
    return 0


if __name__ == "__main__":
    sys.exit(main())
