"""Memory-restricted multi-scale DTW (MrMsDTW) in plain numpy.

The scheme of synctoolbox's ``sync_via_mrmsdtw`` (Prätzlich et al. 2016), without numba or scipy:

* Levels: the chroma of both sequences is smoothed with a Hann window and downsampled per
  level (``win_len_smooth`` / ``downsamp_smooth``), then l2-normalised; the coarsest level
  aligns the whole matrix.
* Constraint: each finer level aligns only inside the rectangles synctoolbox would use, built
  on the previous level's path projected onto the new rate: rectangles of at most
  ``threshold_rec`` cells between anchors on that path, plus the rectangles between the
  anchors' midpoints that synctoolbox's refinement pass uses. Their union is one band
  (a column range per row, both ends non-decreasing), solved as one DTW, so the path need
  not pass through the anchors.
* Cost: cosine chroma distance scaled to [1, 2]; at the finest level, when onset features are
  given, ``alpha`` * that + (1 - alpha) * the Euclidean distance of the DLNCO features.
* Steps (1, 0), (0, 1), (1, 1) with ``step_weights`` multiplying the local cost; D[0, 0] = C[0, 0].

The accumulated cost is computed row by row: vertical and diagonal steps are elementwise,
the horizontal chain within a row is a cumulative minimum of A[k] - S[k], plus S[j], with S the
running sum of the weighted row cost. Step choices are kept as bits (2 per band cell).
"""
from __future__ import annotations

import numpy as np

ROW_BLOCK = 64  # rows whose cost is computed at once (a rectangle around their band)
CHROMA_NORM_THRESHOLD = 0.001  # synctoolbox's chroma_norm_threshold: quieter frames become uniform


def smooth_downsample(f: np.ndarray, *, win_len: int, downsamp: int) -> np.ndarray:
    """(d, ceil(N / downsamp)) features: (d, N) `f` filtered with a Hann window of win_len frames, decimated.

    synctoolbox's ``smooth_downsample_feature`` (scipy's upfirdn) with only the kept outputs computed.
    """
    f = np.asarray(f, dtype=np.float64)
    if win_len == 1 and downsamp == 1:
        return f
    window = np.hanning(win_len + 2)[1:-1]
    window /= np.sum(window)
    n = f.shape[1]
    stat_num = int(np.ceil(n / downsamp))
    cut = (win_len - 1) // (2 * downsamp)
    # Full-convolution sample t sits at padded[t : t + win_len]; keep t = (cut + k) * downsamp.
    t = (cut + np.arange(stat_num)) * downsamp
    t = t[t < n + win_len - 1]
    padded = np.pad(f, ((0, 0), (win_len - 1, win_len - 1)))
    windows = np.lib.stride_tricks.sliding_window_view(padded, win_len, axis=1)[:, t]
    return windows @ window[::-1]


def normalize_columns(f: np.ndarray, *, threshold: float = CHROMA_NORM_THRESHOLD) -> np.ndarray:
    """(d, N) `f` with unit l2 columns; columns with norm below threshold become the uniform unit vector."""
    d = f.shape[0]
    norms = np.linalg.norm(f, axis=0)
    low = norms < threshold
    out = f / np.where(low, 1.0, norms)[None, :]
    out[:, low] = 1.0 / np.sqrt(d)
    return out


def cost_block(c1: np.ndarray, c2: np.ndarray, o1: np.ndarray | None = None, o2: np.ndarray | None = None,
               *, alpha: float = 0.5) -> np.ndarray:
    """(n, m) local cost of (12, n) vs (12, m) normalised chroma, plus DLNCO (L, n) vs (L, m) when given.

    Cosine part 2 - c1.c2 (in [1, 2] for non-negative unit vectors); with onsets
    alpha * cosine + (1 - alpha) * Euclidean DLNCO distance, as synctoolbox's high-resolution cost.
    """
    cos = 2.0 - c1.T @ c2
    if o1 is None or o2 is None:
        return cos
    sq = -2.0 * (o1.T @ o2)
    sq += np.einsum("ij,ij->j", o1, o1)[:, None]
    sq += np.einsum("ij,ij->j", o2, o2)[None, :]
    np.maximum(sq, 0.0, out=sq)
    return alpha * cos + (1.0 - alpha) * np.sqrt(sq)


def band_dtw(c1: np.ndarray, c2: np.ndarray, lo: np.ndarray, hi: np.ndarray, *, step_weights=(1.0, 1.0, 1.0),
             o1: np.ndarray | None = None, o2: np.ndarray | None = None, alpha: float = 0.5) -> np.ndarray:
    """(2, K) int warping path from (0, 0) to (N-1, M-1) through the band lo[i] <= j <= hi[i].

    c1 (d, N), c2 (d, M): normalised chroma; o1 (L, N), o2 (L, M): optional onset features (see
    cost_block). lo, hi: (N,) int, non-decreasing, lo[0] == 0, hi[-1] == M - 1, each row's range
    reachable from the previous one (lo[i] <= hi[i-1] + 1). step_weights multiply the local cost
    of the vertical (i-1, j), horizontal (i, j-1) and diagonal (i-1, j-1) steps.
    """
    n, m = c1.shape[1], c2.shape[1]
    lo = np.asarray(lo, dtype=np.int64)
    hi = np.asarray(hi, dtype=np.int64)
    if lo.shape != (n,) or hi.shape != (n,) or lo[0] != 0 or hi[-1] != m - 1 or (lo > hi).any():
        raise ValueError("band must cover (0, 0) and (N-1, M-1) with lo <= hi in every row")
    if (np.diff(lo) < 0).any() or (np.diff(hi) < 0).any() or (lo[1:] > hi[:-1] + 1).any():
        raise ValueError("band ends must be non-decreasing and each row reachable from the previous one")
    w_vert, w_hor, w_diag = (float(w) for w in step_weights)
    widths = hi - lo + 1
    # D of the previous row at column j sits at prev[j + 1]; prev[lo[i]] (column lo[i] - 1) is kept inf.
    prev = np.full(m + 1, np.inf)
    blocks = []  # per row block: (first row, row offsets, packed diagonal bits, packed horizontal bits)
    for b0 in range(0, n, ROW_BLOCK):
        b1 = min(b0 + ROW_BLOCK, n)
        c0, c_end = int(lo[b0]), int(hi[b1 - 1]) + 1
        cost = cost_block(c1[:, b0:b1], c2[:, c0:c_end],
                          None if o1 is None else o1[:, b0:b1], None if o2 is None else o2[:, c0:c_end], alpha=alpha)
        # Everything relative to the running sum of the horizontal step cost along the row, so the
        # horizontal chain is one cumulative minimum; any constant offset per row cancels.
        run = np.cumsum(w_hor * cost, axis=1)
        vert_rel, diag_rel = w_vert * cost - run, w_diag * cost - run
        offsets = np.concatenate([[0], np.cumsum(widths[b0:b1])])
        diag_bits = np.empty(offsets[-1], dtype=bool)
        hor_bits = np.empty(offsets[-1], dtype=bool)
        for i in range(b0, b1):
            r, a, b = i - b0, int(lo[i]), int(hi[i]) + 1
            s, e = a - c0, b - c0
            band = prev[a:b + 1]  # columns a-1 .. b-1 of the previous row
            vert = band[1:] + vert_rel[r, s:e]
            diag = band[:-1] + diag_rel[r, s:e]
            if i == 0:
                vert[0] = cost[0, 0] - run[0, 0]  # the start: D[0, 0] = C[0, 0]
            np.less(diag, vert, out=diag_bits[offsets[r]:offsets[r + 1]])  # ties go to the vertical step
            best = np.minimum(vert, diag)
            low = np.minimum.accumulate(best)
            np.less(low, best, out=hor_bits[offsets[r]:offsets[r + 1]])
            np.add(low, run[r, s:e], out=prev[a + 1:b + 1])
            prev[a] = np.inf
        blocks.append((b0, offsets, np.packbits(diag_bits), np.packbits(hor_bits), len(diag_bits)))
    return _backtrack(blocks, lo, n, m)


def _backtrack(blocks: list, lo: np.ndarray, n: int, m: int) -> np.ndarray:
    """The (2, K) path read back from the packed step choices of band_dtw, from (n-1, m-1) to (0, 0)."""
    rows, cols = [], []
    i, j = n - 1, m - 1
    k = len(blocks) - 1
    b0, offsets, diag_bits, hor_bits = _unpack(blocks[k])
    while True:
        rows.append(i)
        cols.append(j)
        if i == 0 and j == 0:
            break
        at = offsets[i - b0] + j - lo[i]
        if hor_bits[at]:
            j -= 1
        elif diag_bits[at]:
            i, j = i - 1, j - 1
        else:
            i -= 1
        if i < 0 or j < 0:  # cannot happen with a valid band
            raise RuntimeError("DTW backtracking left the matrix")
        if i < b0:
            k -= 1
            b0, offsets, diag_bits, hor_bits = _unpack(blocks[k])
    return np.array([rows[::-1], cols[::-1]], dtype=np.int64)


def _unpack(block: tuple) -> tuple:
    b0, offsets, diag, hor, count = block
    return b0, offsets, np.unpackbits(diag, count=count), np.unpackbits(hor, count=count)


# ---------------------------------------------------------------- levels

def project_path(path: np.ndarray, *, factor: float, size_old: tuple[int, int], size_new: tuple[int, int]) -> np.ndarray:
    """(2, K) path of one level moved onto the next level's frame grid (synctoolbox's projection)."""
    projected = np.round(path * factor)
    if np.array_equal(path[:, 0], [0, 0]):
        projected[:, 0] = 0
    if np.array_equal(path[:, -1], np.asarray(size_old) - 1):
        projected[:, -1] = np.asarray(size_new) - 1
    projected[0] = np.clip(projected[0], 0, size_new[0] - 1)
    projected[1] = np.clip(projected[1], 0, size_new[1] - 1)
    return projected.astype(np.int64)


def anchor_indices(path: np.ndarray, threshold: int) -> list[int]:
    """Indices into the (2, K) `path` of synctoolbox's anchors: the path halved recursively until
    the rectangle between consecutive anchors has at most `threshold` cells (or two points remain)."""
    def area(a: int, b: int) -> int:
        return int((path[0, b] - path[0, a] + 1) * (path[1, b] - path[1, a] + 1))

    def split(a: int, b: int) -> list[int]:  # anchors in [a, b], both ends included
        if area(a, b) <= threshold or b - a + 1 <= 2:
            return [a, b]
        centre = a + (b - a + 1) // 2  # synctoolbox: floor(L / 2 + 1), 1-based
        left = split(a, centre) if area(a, centre) > threshold else [a, centre]
        right = split(centre, b) if area(centre, b) > threshold else [centre, b]
        return left + right[1:]

    return split(0, path.shape[1] - 1)


def band_from_path(path: np.ndarray, *, threshold: int, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """(lo, hi) column range per row of the union of synctoolbox's rectangles around the (2, K) projected path.

    The anchor rectangles (at most `threshold` cells each) and the rectangles between their
    midpoints on the path, which synctoolbox's refinement pass aligns in; `shape` is (N, M).
    """
    n, m = shape
    idx = anchor_indices(path, threshold)
    mids = [(a + b) // 2 for a, b in zip(idx[:-1], idx[1:])]
    corners = [(idx[k], idx[k + 1]) for k in range(len(idx) - 1)] + [(mids[k], mids[k + 1]) for k in range(len(mids) - 1)]
    lo = np.full(n, m, dtype=np.int64)
    hi = np.full(n, -1, dtype=np.int64)
    for a, b in corners:
        r0, r1, q0, q1 = path[0, a], path[0, b], path[1, a], path[1, b]
        lo[r0:r1 + 1] = np.minimum(lo[r0:r1 + 1], q0)
        hi[r0:r1 + 1] = np.maximum(hi[r0:r1 + 1], q1)
    # The union is already a monotone, connected staircase; this only widens it where rounding did not.
    return _connected(lo, hi, m)


def tube_around(path: np.ndarray, *, radius: int, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """(lo, hi) per row of the cells within `radius` rows and columns of the (2, K) monotone path; shape (N, M)."""
    n, m = shape
    first = np.full(n, m, dtype=np.int64)
    last = np.full(n, -1, dtype=np.int64)
    np.minimum.at(first, path[0], path[1])
    np.maximum.at(last, path[0], path[1])
    # Rows the path jumps over take the columns it spans across them.
    first = np.minimum.accumulate(first[::-1])[::-1]
    last = np.maximum.accumulate(last)
    rows = np.arange(n)
    lo = np.maximum(first[np.maximum(rows - radius, 0)] - radius, 0)
    hi = np.minimum(last[np.minimum(rows + radius, n - 1)] + radius, m - 1)
    return lo, hi


def _connected(lo: np.ndarray, hi: np.ndarray, m: int) -> tuple[np.ndarray, np.ndarray]:
    """The band widened where needed so every row is reachable from the previous one, (0, 0) to (N-1, M-1)."""
    lo, hi = lo.copy(), hi.copy()
    lo[0], hi[-1] = 0, m - 1
    lo = np.minimum.accumulate(lo[::-1])[::-1]
    hi = np.maximum.accumulate(hi)
    lo = np.minimum(lo, np.concatenate([[0], hi[:-1] + 1]))
    hi = np.maximum(hi, lo)
    return lo, hi


def mrmsdtw(chroma1: np.ndarray, chroma2: np.ndarray, *, onset1: np.ndarray | None = None, onset2: np.ndarray | None = None,
            step_weights=(1.0, 1.0, 1.0), threshold_rec: int = 10_000, win_len_smooth=(201, 101, 21, 1),
            downsamp_smooth=(50, 25, 5, 1), alpha: float = 0.5, tube: int | None = None) -> np.ndarray:
    """(2, K) int warping path [frame of sequence 1, frame of sequence 2] from (0, 0) to (N-1, M-1).

    chroma1 (12, N), chroma2 (12, M): chroma features at one rate; onset1 (L, N), onset2 (L, M):
    optional DLNCO features, used with weight 1 - alpha at the finest level. Levels, threshold_rec
    and step weights as synctoolbox's ``sync_via_mrmsdtw``; the last level must be (1, 1).
    tube: if given, the finest level keeps only the cells within that many frames of the previous
    level's projected path (inside synctoolbox's rectangles too).
    """
    win_len_smooth, downsamp_smooth = list(win_len_smooth), list(downsamp_smooth)
    if len(win_len_smooth) != len(downsamp_smooth) or win_len_smooth[-1] != 1 or downsamp_smooth[-1] != 1:
        raise ValueError("the levels' window lengths and factors must match and end at (1, 1)")
    if (onset1 is None) != (onset2 is None):
        raise ValueError("give onset features for both sequences or neither")
    if onset1 is not None and (onset1.shape[1] != chroma1.shape[1] or onset2.shape[1] != chroma2.shape[1]):
        raise ValueError("chroma and onset features must be of the same length")
    n, m = chroma1.shape[1], chroma2.shape[1]
    last = len(win_len_smooth) - 1
    # Small problems go straight to the finest level, as in synctoolbox.
    first = last if n * m < threshold_rec else 0
    path, size_old, down_old = None, None, None
    for level in range(first, last + 1):
        win, down = int(win_len_smooth[level]), int(downsamp_smooth[level])
        f1 = normalize_columns(smooth_downsample(chroma1, win_len=win, downsamp=down))
        f2 = normalize_columns(smooth_downsample(chroma2, win_len=win, downsamp=down))
        size = (f1.shape[1], f2.shape[1])
        if path is None:
            lo, hi = np.zeros(size[0], dtype=np.int64), np.full(size[0], size[1] - 1, dtype=np.int64)
        else:
            projected = project_path(path, factor=down_old / down, size_old=size_old, size_new=size)
            lo, hi = band_from_path(projected, threshold=threshold_rec, shape=size)
            if tube is not None and level == last:
                t_lo, t_hi = tube_around(projected, radius=tube, shape=size)
                lo, hi = _connected(np.maximum(lo, t_lo), np.minimum(hi, t_hi), size[1])
        fine = level == last and onset1 is not None
        path = band_dtw(f1, f2, lo, hi, step_weights=step_weights, o1=onset1 if fine else None,
                        o2=onset2 if fine else None, alpha=alpha)
        size_old, down_old = size, down
    return path
