"""Decoding a unit's windows in order and cutting every crop the moment its frame comes out.

`UnitDecoder.fill(batch, specs)` gathers the frames the specs need, clip by clip; each clip is read once
(one GET from S3, or one local read) into memory, opened with PyAV, and decoded front to back, each
needed frame from the keyframe before it: a group of pictures without a needed frame is demuxed but not
decoded, and stretches of more than `SEEK_AHEAD` frames nobody needs are sought past. Frames stay YUV
planes (`yuv_crop.py`): only the crops are colour-converted, and a frame is dropped as soon as its crops
are cut, so an actor holds at most one decoded frame, the clips it caches (`data.open_clip_cache`,
compressed) and the batch it fills.

Counters (`DecodeStats`) say what the work cost: clips fetched and their bytes, frames decoded, crops
cut, seeks, the largest clip held.
"""
from __future__ import annotations

import io
from collections import OrderedDict, defaultdict
from dataclasses import dataclass

import cv2
import numpy as np

from ..crop import crop_window
from ..storage import StorageConfig, read_bytes
from .frame_index import FrameIndex
from .processing import fill_fields, search_box_in_crop
from .sampling import CropGeometry, SampleSpec
from .yuv_crop import YuvFrame, cut_crop

SEEK_AHEAD = 24  # frames: beyond this, seek rather than demux (and drop) the packets in between


@dataclass
class DecodeStats:
    clips_fetched: int = 0
    bytes_fetched: int = 0
    frames_decoded: int = 0
    crops_cut: int = 0
    seeks: int = 0
    largest_clip_bytes: int = 0


class ClipBytes:
    """Compressed clips by URI, fetched whole (one request per clip), the last `cache_size` kept."""

    def __init__(self, storage: StorageConfig | None, cache_size: int, stats: DecodeStats):
        self.storage, self.cache_size, self.stats = storage, cache_size, stats
        self.cached: OrderedDict[str, bytes] = OrderedDict()

    def get(self, uri: str) -> bytes:
        if uri in self.cached:
            self.cached.move_to_end(uri)
            return self.cached[uri]
        data = read_bytes(uri, self.storage)
        self.stats.clips_fetched += 1
        self.stats.bytes_fetched += len(data)
        self.stats.largest_clip_bytes = max(self.stats.largest_clip_bytes, len(data))
        if self.cache_size > 0:
            self.cached[uri] = data
            while len(self.cached) > self.cache_size:
                self.cached.popitem(last=False)
        return data


def decode_in_order(data: bytes, frames: list[int], stats: DecodeStats | None = None):
    """Yield (frame number, yuv420p planes [H' * 3 / 2, W'] uint8) for the sorted, distinct clip frame
    numbers `frames`, decoding forward (one thread) only the groups of pictures that hold one of them.

    Packets are demuxed in order and held back from the decoder until a needed frame arrives; a keyframe
    drops the held ones (nobody needs the rest of that group), so a needed frame costs its group's frames
    from the keyframe up to it, never the frames between two needed groups. A jump over more than
    `SEEK_AHEAD` frames seeks instead of demuxing its packets. Clips with reordered frames (B-frames,
    which ingest never writes) are decoded through from the keyframe before the first needed frame."""
    import av

    stats = stats or DecodeStats()
    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.video[0]
        decoder = stream.codec_context
        decoder.thread_count = 1  # one core per actor; frame threads would only add latency
        ticks_per_frame = 1 / (stream.average_rate * stream.time_base)
        wanted = iter(frames)
        target = next(wanted, None)
        position = -1  # the last frame demuxed
        reordered = False  # frames out of order (B-frames): decode every packet from then on
        while target is not None:
            if target - position > SEEK_AHEAD or position < 0:
                container.seek(int(round(target * ticks_per_frame)), stream=stream, backward=True, any_frame=False)
                stats.seeks += 1
                position = -1
            held: list = []  # demuxed packets not yet decoded: the current group's, up to the next needed frame
            for packet in container.demux(stream):
                if packet.pts is None:  # the demuxer's end-of-stream packet, its last
                    continue
                number = int(round(packet.pts / ticks_per_frame))
                reordered = reordered or number <= position
                position = max(position, number)
                if packet.is_keyframe and not reordered:
                    held.clear()  # the rest of the previous group holds no needed frame
                held.append(packet)
                if number < target and not reordered:
                    continue
                for frame in _decode(decoder, held, stats):
                    target = yield from _emit(frame, target, wanted, ticks_per_frame)
                held.clear()
                if target is None or target - position > SEEK_AHEAD:
                    break
            else:  # the clip ended
                for frame in _decode(decoder, [*held, None], stats):  # and the frames the decoder still holds
                    target = yield from _emit(frame, target, wanted, ticks_per_frame)
                if target is not None:
                    raise RuntimeError(f"clip has no frame {target} (it ended at {position})")


def _emit(frame, target: int | None, wanted, ticks_per_frame):
    """Yield (target, planes) if `frame` is the target; return the target still wanted after it."""
    number = int(round(frame.pts / ticks_per_frame))
    if target is None or number < target:
        return target
    if number > target:
        raise RuntimeError(f"clip decoding skipped frame {target} (landed on {number})")
    yield target, frame.to_ndarray(format="yuv420p")
    return next(wanted, None)


def _decode(decoder, packets: list, stats: DecodeStats):
    """The frames `decoder` puts out for `packets` (decode order; None: put out what it still holds)."""
    for packet in packets:
        for frame in decoder.decode(packet):
            stats.frames_decoded += 1
            yield frame


class UnitDecoder:
    """What a decode worker uses to turn specs into a filled batch (see the module docstring)."""

    def __init__(self, index: FrameIndex, storage: StorageConfig | None, cache_size: int):
        cv2.setNumThreads(1)  # one core per actor: OpenCV's thread pool would only contend with the decoder
        self.index = index
        self.stats = DecodeStats()
        self.clips = ClipBytes(storage, cache_size, self.stats)

    def fill(self, batch: dict[str, np.ndarray], specs: list[SampleSpec], geometry: CropGeometry) -> None:
        """Cut every crop of `specs` (row r = specs[r]) into a batch from `processing.empty_batch`."""
        # (clip uri) -> frame in clip -> [(row, slot)]; slot k < T: template k, slot T: the search crop
        jobs: dict[str, dict[int, list[tuple[int, int]]]] = defaultdict(lambda: defaultdict(list))
        for row, spec in enumerate(specs):
            for slot, crop in enumerate((*spec.templates, spec.search)):
                uri, in_clip = self.index.clip_of(crop.sequence, crop.frame)
                jobs[uri][in_clip].append((row, slot))
            fill_fields(batch, row, spec, search_box_in_crop(spec, geometry))
        templates = geometry.num_templates
        for uri in sorted(jobs):
            needed = jobs[uri]
            for in_clip, planes in decode_in_order(self.clips.get(uri), sorted(needed), self.stats):
                row, slot = needed[in_clip][0]
                seq = specs[row].templates[0].sequence if slot < templates else specs[row].search.sequence
                frame = YuvFrame.from_planes(planes, int(self.index.seq_height[seq]), int(self.index.seq_width[seq]))
                for row, slot in needed[in_clip]:
                    spec = specs[row]
                    if slot < templates:
                        crop, factor, size = spec.templates[slot], geometry.template_factor, geometry.template_size
                        pixels, masks = batch["template"][row, slot], batch["template_mask"][row, slot]
                    else:
                        crop, factor, size = spec.search, geometry.search_factor, geometry.search_size
                        pixels, masks = batch["search"][row], batch["search_mask"][row]
                    _, masks[...] = cut_crop(frame, crop_window(crop.crop_box_xywh, factor, size), size, crop.flip,
                                             out_pixels=pixels)
                    self.stats.crops_cut += 1
