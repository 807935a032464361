"""Training-data throughput: the Ray Data stream on ingested H.264 clips vs a per-sample JPEG loader.

    python benchmarks/data_throughput.py                      # ~5 min on 2 cores
    python benchmarks/data_throughput.py --samples 256 --sequences 8 --frames 100

Both loaders produce the same samples (same specs: frames, jittered crop boxes, augmentation draws) and
the same crops (`processing.process_sample`); they differ only in where frames come from:
- JPEG loader: what pytracking-style loaders do, one sample at a time: open each of the sample's frames
  from the original JPEG folder with PIL, decode it whole, crop. 1 CPU = a plain loop; 2 CPUs = a torch
  DataLoader with 2 worker processes.
- Ray Data stream: `build_training_stream` over the ingested clips (local folder, then a local S3
  endpoint: a moto server process on 127.0.0.1), a pool of `cpus` decode actors.
A JPEG row reading one object per frame from the same S3 endpoint shows what clips save on requests.
A last table times getting one frame, single-threaded, the ways the loaders do: PIL decoding a JPEG,
decord reaching a random frame of a clip (a seek to the keyframe before it, then decoding up to it),
and decord decoding a clip front to back: the decode cost every stream row starts from.
samples/s is measured from the first batch to the last (start-up excluded for both), best of
--repeats runs (the machine may be shared); CPU ms/sample is the user+system time the loader's
processes spent per sample (steadier than wall time when other work competes for the cores); peak
memory is the peak summed PSS of the driver and its loader processes (Ray: every `ray::` worker, its
service actors included; DataLoader: its workers), sampled every 0.2 s. PSS counts shared pages once.
"""
from __future__ import annotations

import argparse
import io
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

import numpy as np
from PIL import Image

from stark.platform import storage
from stark.platform.experiment import load_config
from stark.platform.ingest.config import IngestConfig
from stark.platform.data.stream import build_training_stream, crop_geometry
from stark.platform.data.frame_index import load_frame_index
from stark.platform.ingest.run import ingest
from stark.platform.ingest.manifest import read_records
from stark.platform.data.processing import process_sample
from stark.platform.data.sampling import make_sample_spec
from stark.platform.ingest.sources import read_image
from stark.platform.storage import StorageConfig
from stark.platform.ingest.synthetic import write_demo_dataset

SEED, EPOCH, STAGE = 0, 0, 1


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


def ray_workers() -> list[int]:
    """Ray's worker processes (actors and tasks show as `ray::...`), not its raylet/GCS/dashboard."""
    found = []
    for pid in descendants():
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if f.read().startswith(b"ray::"):
                    found.append(pid)
        except OSError:
            pass
    return found


class PeakMemory:
    """Peak of the summed PSS of this process and the processes `select()` names, sampled in a thread."""

    def __init__(self, select):
        self.select, self.peak, self._stop = select, 0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, sum(pss_bytes(pid) for pid in [os.getpid()] + self.select()))
            self._stop.wait(0.2)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


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


def timed(batches, select) -> tuple[int, float, float]:
    """(samples after the first batch, wall seconds from the first batch to the last, CPU seconds spent
    meanwhile by this process and the processes `select()` names)."""
    iterator = iter(batches)
    next(iterator)
    cpu_start = cpu_seconds([os.getpid()] + select())
    cpu_end = dict(cpu_start)
    start, count = time.perf_counter(), 0
    for batch in iterator:
        count += len(batch["label"])
        cpu_end.update(cpu_seconds([os.getpid()] + select()))  # workers may exit once the last batch is out
    seconds = time.perf_counter() - start
    return count, seconds, sum(t - cpu_start.get(pid, 0.0) for pid, t in cpu_end.items())


# --- the JPEG-folder loader --------------------------------------------------------------------------
class JpegSamples:
    """A torch map-style dataset: sample i = the same spec the stream makes, frames read from JPEG files
    (a local folder, or one GET per frame from an S3 prefix)."""

    def __init__(self, index, cfg, geometry, folders: dict[str, str], storage: StorageConfig | None = None):
        self.index, self.cfg, self.geometry, self.folders, self.storage = index, cfg, geometry, folders, storage

    def __len__(self) -> int:
        return self.cfg.samples_per_epoch

    def __getitem__(self, i: int) -> dict:
        spec = make_sample_spec(self.index, i, self.cfg, self.geometry, STAGE, SEED, EPOCH)
        frames = {}
        for crop in (*spec.templates, spec.search):
            path = f"{self.folders[self.index.sequence_names[crop.sequence]]}/{crop.frame + 1:08d}.jpg"
            if path.startswith("s3://"):
                with Image.open(io.BytesIO(storage.read_bytes(path, self.storage))) as image:
                    frames[(crop.sequence, crop.frame)] = np.asarray(image.convert("RGB"))
            else:
                frames[(crop.sequence, crop.frame)] = read_image(path)
        return process_sample(spec, frames, self.geometry)


def run_jpeg_loader(dataset: JpegSamples, cpus: int, batch_size: int) -> tuple[float, float, float]:
    import torch

    torch.set_num_threads(1)
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, num_workers=cpus if cpus > 1 else 0,
                                         persistent_workers=False)
    with PeakMemory(descendants) as memory:
        count, seconds, cpu = timed(loader, descendants)
    return count / seconds, memory.peak, cpu / count


def run_stream(manifest: str, cfg, cpus: int, batch_size: int, storage: StorageConfig | None
               ) -> tuple[float, float, float]:
    import ray

    ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=False)
    try:
        cfg.data.decode_actors = cpus
        ds = build_training_stream([manifest], cfg.data, cfg.model, STAGE, EPOCH, SEED, storage)
        with PeakMemory(ray_workers) as memory:
            count, seconds, cpu = timed(ds.iter_torch_batches(batch_size=batch_size), ray_workers)
        return count / seconds, memory.peak, cpu / count
    finally:
        ray.shutdown()


# --- what one frame costs ------------------------------------------------------------------------------
def frame_access_costs(index, data_cfg, geometry, folders: dict[str, str], samples: int = 48) -> dict[str, float]:
    """Median ms per frame over the frames of the first `samples` samples, one way of reading each."""
    import decord

    from stark.platform.ingest.clips import open_clip, decode_clip_frames

    wanted = []
    for i in range(samples):
        spec = make_sample_spec(index, i, data_cfg, geometry, STAGE, SEED, EPOCH)
        wanted += [(c.sequence, c.frame) for c in (*spec.templates, spec.search)]

    def median_ms(read, prepare=lambda seq, frame: None) -> float:
        times = []
        for seq, frame in wanted:
            prepare(seq, frame)
            start = time.perf_counter()
            read(seq, frame)
            times.append(time.perf_counter() - start)
        return float(np.median(times) * 1000)

    readers = {}

    def reader_of(seq, frame):
        uri, in_clip = index.clip_of(seq, frame)
        if uri not in readers:
            readers[uri] = open_clip(uri)
        return readers[uri], in_clip

    def come_from_elsewhere(seq, frame):  # the reader was last used at another place in the clip
        reader, in_clip = reader_of(seq, frame)
        reader.seek(0 if in_clip > len(reader) // 2 else len(reader) - 1)

    def decord_random(seq, frame):
        reader, in_clip = reader_of(seq, frame)
        decode_clip_frames(reader, [in_clip], int(index.seq_width[seq]), int(index.seq_height[seq]))

    costs = {
        "PIL, decode one JPEG (the JPEG loader)": median_ms(
            lambda seq, frame: read_image(f"{folders[index.sequence_names[seq]]}/{frame + 1:08d}.jpg")),
        "decord, one random frame of an open clip (the stream)": median_ms(decord_random, come_from_elsewhere),
    }
    uri, _ = index.clip_of(*wanted[0])
    reader = decord.VideoReader(uri, num_threads=1)
    start = time.perf_counter()
    reader.get_batch(list(range(len(reader)))).asnumpy()
    costs["decord, a whole clip in order (for comparison)"] = (time.perf_counter() - start) / len(reader) * 1000
    return costs


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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sequences", type=int, default=12)
    parser.add_argument("--frames", type=int, default=120)
    parser.add_argument("--size", default="640x480", help="frame WIDTHxHEIGHT")
    parser.add_argument("--samples", type=int, default=384, help="samples per run")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--config", default="stark_st50", help="preset whose crop sizes and data settings to use")
    parser.add_argument("--repeats", type=int, default=2, help="runs per row; the best is kept (shared machines)")
    parser.add_argument("--workdir", default=None, help="keep the generated data here (default: a temp dir)")
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.split("x"))
    work = args.workdir or tempfile.mkdtemp(prefix="stark-bench-")
    cfg = load_config(args.config, [f"data.samples_per_epoch={args.samples}"])
    ingest_cfg = IngestConfig(**{**cfg.ingest.__dict__})

    import ray

    src, local = os.path.join(work, "got10k"), os.path.join(work, "clips")
    print(f"generating {args.sequences} sequences x {args.frames} frames of {width}x{height} in {src}", flush=True)
    if not os.path.isdir(src):
        write_demo_dataset(src, "got10k", num_sequences=args.sequences, num_frames=args.frames,
                           size=(width, height), num_test=0, seed=1)
    s3_process, endpoint = start_s3()
    try:
        import boto3

        boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="bench",
                     aws_secret_access_key="bench").create_bucket(Bucket="bench")
        s3 = StorageConfig(endpoint_url=endpoint, region="us-east-1", key="bench", secret="bench")
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
        quiet = io.StringIO()
        local_report = ingest(src, local, ingest_cfg, out=quiet)
        s3_report = ingest(src, "s3://bench/got10k", ingest_cfg, s3, out=quiet)
        ray.shutdown()
        fs, _ = storage.filesystem("s3://bench", s3)
        fs.put(os.path.join(src, "train"), "bench/jpeg/train", recursive=True)  # the JPEG folders, one object a frame
        jpeg_bytes = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(src) for f in fs
                         if f.endswith(".jpg"))
        print(f"ingested in {local_report.seconds:.0f}s: {local_report.clips} clips, "
              f"{local_report.clip_bytes / 1e6:.1f} MB (JPEG folders: {jpeg_bytes / 1e6:.1f} MB)", flush=True)

        index = load_frame_index([local_report.manifest_uri], cfg.data, cfg.model.num_templates)
        folders = {f"{r.dataset}/{r.split}/{r.sequence_id}": r.source_path
                   for r in read_records(local_report.manifest_uri)}
        jpeg = JpegSamples(index, cfg.data, crop_geometry(cfg.model), folders)
        s3_folders = {k: v.replace(os.path.join(src, "train"), "s3://bench/jpeg/train") for k, v in folders.items()}
        jpeg_s3 = JpegSamples(index, cfg.data, crop_geometry(cfg.model), s3_folders, s3)
        access = frame_access_costs(index, cfg.data, crop_geometry(cfg.model), folders)
        rows = []
        for cpus in (1, 2):
            for name, run in (
                    ("JPEG folders, per-sample PIL loader", lambda: run_jpeg_loader(jpeg, cpus, args.batch_size)),
                    ("Ray Data stream, local clips",
                     lambda: run_stream(local_report.manifest_uri, cfg, cpus, args.batch_size, None)),
                    ("JPEG per-sample loader, S3 (127.0.0.1)",
                     lambda: run_jpeg_loader(jpeg_s3, cpus, args.batch_size)),
                    ("Ray Data stream, S3 clips (127.0.0.1)",
                     lambda: run_stream(s3_report.manifest_uri, cfg, cpus, args.batch_size, s3))):
                runs = [run() for _ in range(args.repeats)]
                rate = max(r[0] for r in runs)
                rows.append((name, cpus, rate, max(r[1] for r in runs), min(r[2] for r in runs)))
                print(f"  {name}, {cpus} CPU: {rate:.1f} samples/s ({[round(r[0], 1) for r in runs]})", flush=True)
    finally:
        s3_process.terminate()
        s3_process.wait()
        if not args.workdir:
            shutil.rmtree(work, ignore_errors=True)

    m = cfg.model
    print("\none frame, single-threaded (ms per frame, median of the sample frames):")
    for name, ms in access.items():
        print(f"  {name:<58}{ms:>7.2f}")
    print(f"\n{args.samples} samples of STARK-{m.variant} (templates {m.num_templates}x{m.template_size}px, search "
          f"{m.search_size}px), stage {STAGE}, from {args.sequences} sequences x {args.frames} frames of "
          f"{width}x{height}; crf {ingest_cfg.crf}, keyframe interval {ingest_cfg.keyframe_interval}, "
          f"decode batch {cfg.data.decode_batch_size}")
    print(f"| {'loader':<40} | CPUs | samples/s | CPU ms/sample | peak memory (PSS) | vs JPEG loader |")
    print(f"|{'-' * 42}|------|-----------|---------------|-------------------|----------------|")
    baseline = {cpus: rate for name, cpus, rate, _, _ in rows if name.startswith("JPEG folders")}
    for name, cpus, rate, peak, cpu in rows:
        print(f"| {name:<40} | {cpus:>4} | {rate:>9.1f} | {cpu * 1000:>13.1f} | {peak / 2**20:>14.0f} MB "
              f"| {rate / baseline[cpus]:>13.2f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
