"""One class's anomaly maps in bounded memory, and its four pixel metrics computed exactly from them.

Evaluation at Real-IAD's scale holds one class at a time (README "Metrics"): 7,600 test images at
224 px are 381 million pixels. ``ClassMaps`` keeps them as one float32 tensor (4 bytes a pixel, on
the evaluation device, so CUDA maps never visit the host) and the ground-truth masks bit-packed on
the host (1/8 byte a pixel). ``ClassMaps.pixel_metrics`` then adds only a copy of the anomalous
pixels' scores (4 bytes each) and temporaries of one chunk of images: no float64 or int64 array of
the class's size, and no argsort of it, is ever made. The values are those of ``bench.metrics``'
``pixel_auroc``, ``pixel_ap``, ``pixel_f1_max`` and ``pixel_aupro`` on the same float32 maps (equal
to float rounding; tests/test_class_maps.py), by these steps:

1. Partition: chunk by chunk the anomalous scores are copied out (in C order) and the normal ones
   are compacted to the front of the maps tensor, in place.
2. The normal scores are sorted in place: numpy's sort on the CPU (no index array), ``torch.sort``
   on other devices (the device has room for its indices).
3. AUPRO: the trapezoid area under the PRO curve is linear in the region pixels' indicator curves,
   so it is a sum over anomalous pixels. Pixel p of region r weighs ``1 / (R |r|)``; its curve is 0
   until FPR reaches ``a`` = FPR(score > s_p), rises linearly to 1 at ``b`` = FPR(score >= s_p)
   (normal pixels tied with it enter with it: the diagonal step) and stays 1. Its area up to the
   limit L is 0 (L <= a), ``(b - a) / 2 + L - b`` (L >= b), or ``(L - a)^2 / (2 (b - a))``; ``a`` and
   ``b`` are binary searches of s_p among the sorted normal scores. Regions are labelled image by
   image on the host (``scipy.ndimage.label``, 8-connectivity), where the masks already are.
4. The anomalous scores are sorted in place; per anomalous pixel, binary searches give the normal
   pixels below / tied with it (AUROC: the Mann-Whitney count, ties 1/2, summed exactly in int64)
   and TP, FP at the threshold ``score >= s_p`` (AP = mean over anomalous pixels of the precision
   there, F1-max = max of 2 TP / (TP + FP + n_anomalous)), chunk by chunk.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy import ndimage

from bench.metrics import _subsample, binary_masks, check_normal_pixel_budget, resolve_metrics

__all__ = ["ClassMaps", "sort_scores"]

NAN = float("nan")
_STRUCTURE = np.ones((3, 3), dtype=bool)  # 8-connectivity, as bench.metrics.pixel_aupro
#: pixels per chunk of the partition and AUPRO passes, and anomalous scores per chunk of the ranking
_CHUNK = 1 << 22


def _on_host(values: torch.Tensor) -> bool:
    """Whether ``values`` take the host path (numpy on its memory) rather than the device's torch ops."""
    return values.device.type == "cpu"


def sort_scores(values: torch.Tensor) -> torch.Tensor:
    """``values`` (1-D float32) sorted ascending, NaN last.

    On the host the tensor's own memory is sorted in place by numpy (torch.sort would allocate an
    int64 index per element: 8 bytes a pixel); on a device, ``torch.sort(values).values``.
    """
    if _on_host(values):
        values.numpy().sort()
        return values
    return torch.sort(values).values


class ClassMaps:
    """The anomaly maps (float32, on ``device``) and masks (bit-packed, host) of ``n_images`` images.

    Fill with ``add`` batch by batch in test-set order; ``pixel_metrics`` reorders the maps in place,
    so it is called once.
    """

    def __init__(self, n_images: int, height: int, width: int, device: str | torch.device = "cpu"):
        self.shape = (int(n_images), int(height), int(width))
        self.device = torch.device(device)
        self.maps = torch.empty(self.shape, dtype=torch.float32, device=self.device)
        self.packed = np.zeros((self.shape[0], (self.shape[1] * self.shape[2] + 7) // 8), dtype=np.uint8)
        self.n_pos_image = np.zeros(self.shape[0], dtype=np.int64)  # anomalous pixels per image
        self.filled = 0
        self._used = False

    @classmethod
    def from_arrays(cls, masks, maps, device: str | torch.device = "cpu") -> ClassMaps:
        """A filled ``ClassMaps`` of N x H x W (or H x W, N x 1 x H x W) masks and maps."""
        maps_t = torch.as_tensor(np.asarray(maps) if not isinstance(maps, torch.Tensor) else maps)
        if maps_t.ndim == 4 and maps_t.shape[1] == 1:
            maps_t = maps_t[:, 0]
        if maps_t.ndim == 2:
            maps_t = maps_t[None]
        if maps_t.ndim != 3:
            raise ValueError(f"maps must be N x H x W, got shape {tuple(maps_t.shape)}")
        out = cls(*maps_t.shape, device=device)
        out.add(maps_t, masks)
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
        """Why pixel metric ``name`` is undefined for this class (``labels``: the images' 0/1 labels)."""
        if self.n_pos == 0:
            n_anomalous = int(np.count_nonzero(np.asarray(labels))) if labels is not None else 0
            if n_anomalous:
                return f"no anomalous pixel: the masks of its {n_anomalous} anomalous images are all zero"
            return "no anomalous pixel: the class has no anomalous test image"
        if self.n_neg == 0 and name in ("pixel_auroc", "pixel_aupro"):
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
        pos = torch.empty(self.n_pos, dtype=torch.float32, device=self.device)
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

        As ``bench.metrics.class_metrics``: nan for all when there is no anomalous pixel;
        ``normal_pixel_budget`` subsamples that many normal pixels (the same sample as there) with
        false positives scaled back for AP and F1-max; ``pixel_aupro`` integrates to ``fpr_limit``.
        """
        names = [n for n in resolve_metrics(names) if n.startswith("pixel_")]
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
            sample = _subsample(neg.cpu().numpy(), budget, seed)
            neg = torch.from_numpy(sample).to(self.device)
            scale = n_neg / budget
        neg = sort_scores(neg)
        if neg.numel() and bool(torch.isnan(neg[-1])):  # NaN sorts last
            raise ValueError("maps contain NaN")
        out: dict[str, float] = {}
        if "pixel_aupro" in names:
            out["pixel_aupro"] = self._aupro(pos, neg, fpr_limit)
        if any(n != "pixel_aupro" for n in names):
            out.update(_ranked(sort_scores(pos), neg, scale))
        return {name: out[name] for name in names}

    def _aupro(self, pos: torch.Tensor, neg: torch.Tensor, fpr_limit: float) -> float:
        n_s = neg.numel()
        if n_s == 0:
            return NAN
        limit = fpr_limit * n_s  # in normal pixels
        total = torch.zeros((), dtype=torch.float64, device=self.device)
        n_regions = 0
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
            area = _area_to_limit((n_s - right).double(), (n_s - left).double(), limit)
            sums = torch.bincount(region, weights=area, minlength=k)
            sizes = torch.bincount(region, minlength=k)
            total += (sums / sizes).sum()
            n_regions += k
        value = float(total) / (n_regions * n_s * fpr_limit)
        return min(max(value, 0.0), 1.0)


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


def _area_to_limit(gt: torch.Tensor, ge: torch.Tensor, limit: float) -> torch.Tensor:
    """Area (in normal pixels) under one region pixel's PRO indicator curve from FPR 0 to ``limit``.

    ``gt`` / ``ge``: normal pixels scoring above / at or above the pixel; its curve rises from 0 at
    ``gt`` to 1 at ``ge`` (one diagonal step when they differ).
    """
    full = (ge - gt) / 2.0 + (limit - ge)
    cut = (limit - gt).clamp(min=0.0) ** 2 / (2.0 * (ge - gt).clamp(min=1.0))
    return torch.where(limit >= ge, full, torch.where(limit <= gt, torch.zeros_like(gt), cut))


def _ranked(pos: torch.Tensor, neg: torch.Tensor, scale: float) -> dict[str, float]:
    """pixel AUROC, AP and F1-max from the sorted anomalous and (maybe sampled) sorted normal scores."""
    n_pos, n_s = pos.numel(), neg.numel()
    wins2 = torch.zeros((), dtype=torch.int64, device=pos.device)  # 2 x (pairs won + ties / 2)
    precision_sum = torch.zeros((), dtype=torch.float64, device=pos.device)
    f1 = torch.zeros((), dtype=torch.float64, device=pos.device)
    for a in range(0, n_pos, _CHUNK):
        s = pos[a : a + _CHUNK]
        left, right = _below(neg, s)
        wins2 += (left + right).sum()
        tp = (n_pos - torch.searchsorted(pos, s, right=False)).double()  # anomalous pixels >= s (>= 1)
        fp = (n_s - left).double() * scale
        precision_sum += (tp / (tp + fp)).sum()
        f1 = torch.maximum(f1, (2.0 * tp / (tp + fp + n_pos)).max())
    auroc = int(wins2) / (2.0 * n_pos * n_s) if n_s else NAN
    return {"pixel_auroc": auroc, "pixel_ap": float(precision_sum) / n_pos, "pixel_f1_max": float(f1)}
