"""The engine of the pixel metrics: one class's maps in bounded memory, reduced exactly, chunk by chunk.

Every pixel metric is computed here, for maps held in memory (``metrics.pixel``) and for one class's
buffer during evaluation alike. Evaluation at Real-IAD's scale holds one class at a time
(docs/metrics-and-protocols.md): 7,600 test images at 224 px are 381 million pixels.
``ClassMaps`` keeps them as one tensor
(float32 during evaluation: 4 bytes a pixel, on the evaluation device, so CUDA maps never visit the
host) and the ground-truth masks bit-packed on the host (1/8 byte a pixel). ``ClassMaps.pixel_metrics``
then adds only a copy of the anomalous pixels' scores and temporaries of one chunk: no float64 or
int64 array of the class's size, and no argsort of it, is ever made. The steps:

1. Partition: chunk by chunk the anomalous scores are copied out (in C order) and the normal ones
   are compacted to the front of the maps tensor, in place.
2. The normal scores are sorted in place: numpy's sort on the CPU (no index array), ``torch.sort``
   on other devices (the device has room for its indices). With ``normal_pixel_budget`` a seeded
   sample of them replaces them.
3. The region pass (metrics that need ``regions``: AUPRO): per chunk of images, each anomalous
   pixel's region (labelled image by image on the host, ``scipy.ndimage.label``, 8-connectivity,
   where the masks already are) and the normal pixels above / at or above its score (``RegionChunk``).
4. The ranked pass (the others): the anomalous scores are sorted in place; per chunk of them, binary
   searches give the normal pixels below / tied with each, and TP, FP at ``score >= s`` (``RankedChunk``).

Each metric's reducer (its row in ``metrics.registry``) reads the chunks of its pass.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
import torch
from scipy import ndimage

from metrics.inputs import binary_masks, check_normal_pixel_budget, subsample
from metrics.registry import metric, resolve_metrics

__all__ = ["ClassMaps", "PixelCounts", "RankedChunk", "RegionChunk", "sort_scores"]

NAN = float("nan")
_STRUCTURE = np.ones((3, 3), dtype=bool)  # 8-connectivity, as the MVTec AD reference evaluation code
#: pixels per chunk of the partition and region passes, and anomalous scores per chunk of the ranked pass
_CHUNK = 1 << 22


@dataclass(frozen=True)
class PixelCounts:
    """What a reducer is made with: the class's counts and the options of the evaluation."""

    n_pos: int  # anomalous pixels (>= 1: a class without any gets nan without a pass)
    n_neg: int  # normal pixels used: all of them, or the subsample's size
    scale: float  # normal pixels each used one stands for (1 unless subsampled)
    fpr_limit: float  # AUPRO's integration limit


class RankedChunk:
    """A chunk of the ranked pass: ``scores`` (ascending anomalous scores), the normal pixels ``below``
    and ``at_or_below`` each (int64), and at ``score >= s`` the float64 ``tp`` and (scaled) ``fp``."""

    def __init__(self, scores: torch.Tensor, below: torch.Tensor, at_or_below: torch.Tensor,
                 pos: torch.Tensor, counts: PixelCounts):
        self.scores, self.below, self.at_or_below = scores, below, at_or_below
        self._pos, self._counts = pos, counts

    @cached_property
    def tp(self) -> torch.Tensor:  # anomalous pixels >= s (>= 1)
        return (self._counts.n_pos - torch.searchsorted(self._pos, self.scores, right=False)).double()

    @cached_property
    def fp(self) -> torch.Tensor:
        return (self._counts.n_neg - self.below).double() * self._counts.scale


@dataclass(frozen=True)
class RegionChunk:
    """A chunk of the region pass: per anomalous pixel its ``region`` (0 .. ``n_regions`` - 1 within the
    chunk, whose images hold whole regions) and the normal pixels scoring ``above`` it and ``at_or_above``
    it (float64)."""

    region: torch.Tensor
    n_regions: int
    above: torch.Tensor
    at_or_above: torch.Tensor


def _on_host(values: torch.Tensor) -> bool:
    """Whether ``values`` take the host path (numpy on its memory) rather than the device's torch ops."""
    return values.device.type == "cpu"


def sort_scores(values: torch.Tensor) -> torch.Tensor:
    """``values`` (1-D) sorted ascending, NaN last.

    On the host the tensor's own memory is sorted in place by numpy (torch.sort would allocate an
    int64 index per element: 8 bytes a pixel); on a device, ``torch.sort(values).values``.
    """
    if _on_host(values):
        values.numpy().sort()
        return values
    return torch.sort(values).values


def _as_images(array):
    """An N x H x W view of an N x H x W, N x 1 x H x W or H x W array or tensor."""
    if array.ndim == 4 and array.shape[1] == 1:
        array = array[:, 0]
    return array[None] if array.ndim == 2 else array


def _scores(maps) -> torch.Tensor:
    """``maps`` as a tensor in a precision with the same order and ties: float16 as float32, integers as
    int64; anything not a real number raises ``ValueError``."""
    maps_t = maps if isinstance(maps, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(maps))
    if maps_t.dtype.is_complex or maps_t.dtype == torch.bool:
        raise ValueError(f"maps must be real numbers, got dtype {maps_t.dtype}")
    if maps_t.dtype.is_floating_point:
        return maps_t if maps_t.dtype in (torch.float32, torch.float64) else maps_t.float()
    return maps_t.long()


class ClassMaps:
    """The anomaly maps (on ``device``) and masks (bit-packed, host) of ``n_images`` images.

    Fill with ``add`` batch by batch in test-set order; ``pixel_metrics`` reorders the maps in place,
    so it is called once.
    """

    def __init__(self, n_images: int, height: int, width: int, device: str | torch.device = "cpu",
                 dtype: torch.dtype = torch.float32):
        self.shape = (int(n_images), int(height), int(width))
        self.device = torch.device(device)
        self.maps = torch.empty(self.shape, dtype=dtype, device=self.device)
        self.packed = np.zeros((self.shape[0], (self.shape[1] * self.shape[2] + 7) // 8), dtype=np.uint8)
        self.n_pos_image = np.zeros(self.shape[0], dtype=np.int64)  # anomalous pixels per image
        self.filled = 0
        self._used = False

    @classmethod
    def from_arrays(cls, masks, maps, device: str | torch.device | None = None) -> ClassMaps:
        """A filled ``ClassMaps`` of N x H x W (or H x W, N x 1 x H x W) masks and maps, the maps kept in
        their own precision (``_scores``) on their own device unless ``device`` is given."""
        if isinstance(maps, np.ndarray) and maps.dtype.kind not in "fiu":
            raise ValueError(f"maps must be numeric, got dtype {maps.dtype}")
        maps_t = _as_images(_scores(maps))
        if maps_t.ndim != 3:
            raise ValueError(f"maps must be N x H x W, got shape {tuple(maps_t.shape)}")
        m = masks if isinstance(masks, torch.Tensor) else np.asarray(masks)
        out = cls(*maps_t.shape, device=maps_t.device if device is None else device, dtype=maps_t.dtype)
        out.add(maps_t, _as_images(m))
        return out

    def add(self, maps, masks) -> None:
        """Append a batch: ``maps`` k x H x W (or k x 1 x H x W) scores, ``masks`` bool or 0/1 of that shape."""
        maps_t = maps if isinstance(maps, torch.Tensor) else torch.from_numpy(np.asarray(maps))
        m = masks.detach().cpu().numpy() if isinstance(masks, torch.Tensor) else np.asarray(masks)
        if maps_t.ndim == 4 and maps_t.shape[1] == 1:
            maps_t = maps_t[:, 0]
        if m.ndim == maps_t.ndim + 1 and m.shape[1] == 1:
            m = m[:, 0]
        if m.ndim == 2 and maps_t.ndim == 2:
            maps_t, m = maps_t[None], m[None]
        k = maps_t.shape[0] if maps_t.ndim == 3 else -1
        if maps_t.ndim != 3 or tuple(m.shape) != tuple(maps_t.shape) or tuple(maps_t.shape[1:]) != self.shape[1:]:
            raise ValueError(f"masks and maps must be k x {self.shape[1]} x {self.shape[2]} of equal shapes, "
                             f"got {tuple(m.shape)} and {tuple(maps_t.shape)}")
        if self.filled + k > self.shape[0]:
            raise ValueError(f"more images than the {self.shape[0]} this class was sized for")
        if maps_t.dtype.is_complex or maps_t.dtype == torch.bool:
            raise ValueError(f"maps must be real numbers, got dtype {maps_t.dtype}")
        m = binary_masks(m)
        i = self.filled
        self.maps[i : i + k].copy_(maps_t)
        flat = m.reshape(k, -1)
        self.packed[i : i + k] = np.packbits(flat, axis=1)
        self.n_pos_image[i : i + k] = np.count_nonzero(flat, axis=1)
        self.filled += k

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """(masks, maps) as N x H x W host arrays (copies: for metrics over a subset of the images)."""
        if self._used:
            raise RuntimeError("the maps were reordered by pixel_metrics")
        masks = self._masks(0, self.filled).reshape(self.filled, *self.shape[1:])
        return masks, self.maps[: self.filled].cpu().numpy().copy()

    # ------------------------------------------------------------------------------------------

    @property
    def n_pos(self) -> int:
        return int(self.n_pos_image[: self.filled].sum())

    @property
    def n_neg(self) -> int:
        return self.filled * self.shape[1] * self.shape[2] - self.n_pos

    def undefined_reason(self, name: str, labels=None) -> str:
        """Why pixel metric ``name`` is undefined (nan) for this class (``labels``: the images' 0/1 labels)."""
        if self.n_pos == 0:
            n_anomalous = int(np.count_nonzero(np.asarray(labels))) if labels is not None else 0
            if n_anomalous:
                return f"no anomalous pixel: the masks of its {n_anomalous} anomalous images are all zero"
            return "no anomalous pixel: the class has no anomalous test image"
        if self.n_neg == 0:
            return "no normal pixel"
        return "not a number"

    def _masks(self, i: int, j: int) -> np.ndarray:
        """Masks of images i..j-1 as a (j - i) x (H W) bool array."""
        hw = self.shape[1] * self.shape[2]
        return np.unpackbits(self.packed[i:j], axis=1, count=hw).view(bool)

    def _chunks(self):
        per = max(1, _CHUNK // (self.shape[1] * self.shape[2]))
        for i in range(0, self.shape[0], per):
            yield i, min(self.shape[0], i + per)

    def _partition(self) -> torch.Tensor:
        """Anomalous scores in C order (a new tensor); the normal ones end up in ``maps[:n_neg]`` (C order)."""
        hw = self.shape[1] * self.shape[2]
        flat = self.maps.view(-1)
        pos = torch.empty(self.n_pos, dtype=self.maps.dtype, device=self.device)
        n_p = n_n = 0
        for i, j in self._chunks():
            m = self._masks(i, j).reshape(-1)
            vals = flat[i * hw : j * hw]
            p = _select(vals, m)
            pos[n_p : n_p + p.numel()] = p
            n_p += p.numel()
            q = _select(vals, ~m)  # a copy: the write below may overlap vals
            flat[n_n : n_n + q.numel()] = q
            n_n += q.numel()
        return pos

    def pixel_metrics(self, names, *, normal_pixel_budget: int | None = None, seed: int = 0,
                      fpr_limit: float = 0.3) -> dict[str, float]:
        """The pixel metrics among ``names`` (anything ``resolve_metrics`` accepts), exactly.

        nan for all when there is no anomalous pixel. ``normal_pixel_budget`` (int, default None =
        exact): when the class has more normal pixels than this, a uniform sample of exactly that many
        (without replacement, ``np.random.default_rng(seed)``) replaces them, with ALL anomalous pixels;
        in AP and F1-max each sampled normal pixel stands for ``n_normal / budget`` (false positives
        scaled back, so precision is not biased upwards); AUPRO's regions keep all their pixels.
        ``pixel_aupro`` integrates to ``fpr_limit``.
        """
        names = [n for n in resolve_metrics(names) if metric(n).level == "pixel"]
        budget = check_normal_pixel_budget(normal_pixel_budget)
        if not 0.0 < fpr_limit <= 1.0:
            raise ValueError(f"fpr_limit must be in (0, 1], got {fpr_limit}")
        if self.filled != self.shape[0]:
            raise ValueError(f"the class holds {self.filled} of its {self.shape[0]} images")
        if self._used:
            raise RuntimeError("pixel_metrics reorders the maps in place: call it once per ClassMaps")
        if not names:
            return {}
        self._used = True
        n_neg = self.n_neg
        if self.n_pos == 0:
            return dict.fromkeys(names, NAN)
        pos = self._partition()
        if bool(torch.isnan(pos).any()):
            raise ValueError("maps contain NaN")
        neg = self.maps.view(-1)[:n_neg]
        scale = 1.0
        if budget is not None and n_neg > budget:
            neg = torch.from_numpy(subsample(neg.cpu().numpy(), budget, seed)).to(self.device)
            scale = n_neg / budget
        neg = sort_scores(neg)
        if neg.numel() and bool(torch.isnan(neg[-1])):  # NaN sorts last
            raise ValueError("maps contain NaN")
        counts = PixelCounts(n_pos=pos.numel(), n_neg=neg.numel(), scale=scale, fpr_limit=fpr_limit)
        reducers = {n: metric(n).reducer(counts) for n in names}
        by_pass = {p: [reducers[n] for n in names if metric(n).needs == p] for p in ("regions", "ranked")}
        if by_pass["regions"]:  # first: it reads the anomalous scores in C order
            for chunk in self._region_chunks(pos, neg):
                for reducer in by_pass["regions"]:
                    reducer.update(chunk)
        if by_pass["ranked"]:
            for chunk in _ranked_chunks(sort_scores(pos), neg, counts):
                for reducer in by_pass["ranked"]:
                    reducer.update(chunk)
        return {name: reducers[name].result() for name in names}

    def _region_chunks(self, pos: torch.Tensor, neg: torch.Tensor):
        """The region pass: a ``RegionChunk`` per chunk of images holding anomalous pixels."""
        n_s = neg.numel()
        offset = 0
        for i, j in self._chunks():
            count = int(self.n_pos_image[i:j].sum())
            if not count:
                continue
            masks = self._masks(i, j)
            ids = np.empty(count, dtype=np.int64)
            filled = k = 0
            for row in np.flatnonzero(self.n_pos_image[i:j]):
                img = masks[row].reshape(self.shape[1:])
                lab, n = ndimage.label(img, structure=_STRUCTURE)
                img_ids = lab[img]
                ids[filled : filled + img_ids.size] = img_ids + (k - 1)
                filled += img_ids.size
                k += n
            scores, order = torch.sort(pos[offset : offset + count])  # sorted queries search faster
            offset += count
            region = torch.from_numpy(ids).to(self.device)[order]
            left, right = _below(neg, scores)
            yield RegionChunk(region, k, (n_s - right).double(), (n_s - left).double())


def _ranked_chunks(pos: torch.Tensor, neg: torch.Tensor, counts: PixelCounts):
    """The ranked pass over the sorted anomalous scores ``pos`` against the sorted normal ``neg``."""
    for a in range(0, pos.numel(), _CHUNK):
        s = pos[a : a + _CHUNK]
        left, right = _below(neg, s)
        yield RankedChunk(s, left, right, pos, counts)


def _select(values: torch.Tensor, keep: np.ndarray) -> torch.Tensor:
    """``values[keep]`` (``keep`` a host bool array); numpy's boolean indexing on the CPU (many times
    torch's there)."""
    if _on_host(values):
        return torch.from_numpy(values.numpy()[keep])
    return values[torch.from_numpy(keep).to(values.device)]


def _below(neg: torch.Tensor, scores: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Normal scores below each score (``left``) and at or below it (``right``), as int64.

    ``neg`` sorted ascending, ``scores`` ascending (sorted queries search faster); the second
    binary search is made only for scores that tie with a normal one.
    """
    if neg.numel() == 0:
        zero = torch.zeros(scores.shape, dtype=torch.int64, device=scores.device)
        return zero, zero
    left = torch.searchsorted(neg, scores, right=False)
    right = left.clone()
    tied = neg[left.clamp(max=neg.numel() - 1)] == scores
    if bool(tied.any()):
        right[tied] = torch.searchsorted(neg, scores[tied], right=True)
    return left, right
