"""Constant-Q magnitudes in numpy and soxr: librosa.cqt's numbers without importing librosa.

Importing librosa takes seconds (and its numba functions compile for much longer on a first run), while
the shipped models were trained on ``np.abs(librosa.cqt(y, sr=..., hop_length=..., fmin=..., n_bins=...,
bins_per_octave=...))`` with every other argument at its default (librosa 0.11: tuning 0, filter_scale 1,
L1-normalised Hann wavelets, sparsity 0.01, scale=True, constant padding, res_type "soxr_hq").
`cqt_magnitude` reproduces that to float rounding, step for step:

* early downsampling of the whole signal when the hop allows it;
* octave by octave, from the top: each octave's 12 wavelets, FFT'd onto n_fft (a power of two)
  frequency bins and sparsified (each row drops its smallest bins holding 1% of its L1 mass);
  the response is that basis applied to a centred, zero-padded STFT (rectangular window);
* after each octave, while the hop is even, the signal is halved with soxr (scaled by sqrt 2) and
  the hop with it;
* the stacked octaves are trimmed to the shortest and divided by sqrt(filter length).

Rather than an STFT followed by the sparse basis, each octave's basis is folded back into a time-domain
kernel, K = fft(basis) over n_fft points, so a frame's response is one real matrix product. The two are
the same linear map: sum_k B[j, k] rfft(x)[k] = sum_n x[n] sum_k B[j, k] exp(-2 pi i k n / n_fft).
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

# librosa.filters.WINDOW_BANDWIDTHS["hann"]: the Hann window's equivalent noise bandwidth in FFT bins.
_HANN_BANDWIDTH = 1.50018310546875
_SPARSITY = 0.01
# Frames per chunk are chosen so a chunk's frame matrix stays near this many float32 values (16 MiB):
# an hour at 16 kHz would otherwise mean 360k frames by up to 512 samples per octave.
_CHUNK_VALUES = 1 << 22


@dataclass(frozen=True)
class _Octave:
    """One octave's pass: hop (samples at this octave's rate), n_fft, the (n_fft, 2 * n_filters) float32
    kernel (real parts, then imaginary parts; length scaling folded in), the output rows it fills, and
    whether the signal is halved after it."""

    hop: int
    n_fft: int
    kernel: np.ndarray
    rows: slice
    halve_after: bool


@dataclass(frozen=True)
class _Plan:
    early_factor: int  # the whole signal is first downsampled by this power of two (1: not at all)
    octaves: tuple[_Octave, ...]


def cqt_magnitude(y: np.ndarray, sample_rate: int, *, hop_length: int, fmin: float, n_bins: int,
                  bins_per_octave: int) -> np.ndarray:
    """(n_bins, frames) float32 |CQT| of mono samples y (n,) at sample_rate Hz: np.abs(librosa.cqt(y, ...)).

    y is taken as float32, as the align path loads it (librosa, given float64, would round differently).
    fmin in Hz. Bin b is centred on fmin * 2 ** (b / bins_per_octave) Hz; frame t is centred on sample t * hop_length.
    frames = 1 + n // hop_length, or fewer when a downsampled octave's hop does not divide its length
    (librosa trims every octave to the shortest).
    """
    y = np.asarray(y, dtype=np.float32)
    if y.ndim != 1:
        raise ValueError(f"y must be (n,), got shape {y.shape}")
    plan = _plan(int(sample_rate), int(hop_length), float(fmin), int(n_bins), int(bins_per_octave))
    if len(y) < plan.early_factor:
        raise ValueError(f"{len(y)} samples are too few for an {len(plan.octaves)}-octave CQT")
    # Each halving keeps ceil(n / 2) samples (librosa's fix_length), so every octave's frame count is
    # known before any work: the output is allocated once, at its final size.
    n = len(y) if plan.early_factor == 1 else -(-len(y) // plan.early_factor)
    n_frames = []
    for octave in plan.octaves:
        n_frames.append(1 + n // octave.hop)
        n = -(-n // 2) if octave.halve_after else n
    out = np.empty((n_bins, min(n_frames)), dtype=np.float32)
    if plan.early_factor > 1:
        y = _downsample(y, plan.early_factor)
    for octave in plan.octaves:
        _octave_response(y, octave, out=out[octave.rows])
        if octave.halve_after:
            y = _downsample(y, 2)
    return out


def _octave_response(y: np.ndarray, octave: _Octave, *, out: np.ndarray) -> None:
    """Fill out (n_filters, frames) with the magnitudes of this octave's filters on y's centred frames.

    Frames are built chunk by chunk from a zero-padded slice of y, so memory stays bounded however long y is.
    """
    n_fft, hop, kernel = octave.n_fft, octave.hop, octave.kernel
    n_filters, n_frames = out.shape
    half = n_fft // 2
    chunk = max(1, _CHUNK_VALUES // n_fft)
    for t0 in range(0, n_frames, chunk):
        t1 = min(t0 + chunk, n_frames)
        # Samples [start, stop) of y (zero outside it: constant padding) cover frames t0 .. t1 - 1.
        start, stop = t0 * hop - half, (t1 - 1) * hop - half + n_fft
        buf = np.zeros(stop - start, dtype=np.float32)
        lo, hi = max(start, 0), min(stop, len(y))
        if hi > lo:
            buf[lo - start:hi - start] = y[lo:hi]
        step = buf.itemsize
        frames = np.lib.stride_tricks.as_strided(buf, shape=(t1 - t0, n_fft), strides=(hop * step, step), writeable=False)
        # A copy lets BLAS take overlapping frames (it needs a row stride of at least n_fft).
        resp = np.ascontiguousarray(frames) @ kernel
        out[:, t0:t1] = np.hypot(resp[:, :n_filters], resp[:, n_filters:]).T


def _downsample(y: np.ndarray, factor: int) -> np.ndarray:
    """y (n,) float32 at a factor-times lower rate: librosa.resample(y, orig_sr=factor, target_sr=1,
    res_type="soxr_hq", scale=True), i.e. soxr, cut or zero-padded to ceil(n / factor), times sqrt(factor)."""
    import soxr

    ratio = 1.0 / factor
    n_out = int(np.ceil(len(y) * ratio))
    y_hat = soxr.resample(y, factor, 1, quality="soxr_hq")
    if len(y_hat) >= n_out:
        y_hat = y_hat[:n_out]
    else:
        y_hat = np.pad(y_hat, (0, n_out - len(y_hat)))
    y_hat = np.array(y_hat, dtype=np.float32)
    y_hat /= np.sqrt(ratio)  # the same float64 divisor as librosa, for the same rounding
    return y_hat


@lru_cache(maxsize=8)
def _plan(sample_rate: int, hop_length: int, fmin: float, n_bins: int, bins_per_octave: int) -> _Plan:
    """The octave passes and their kernels for one configuration (the same for every call: cached)."""
    n_octaves = int(np.ceil(float(n_bins) / bins_per_octave))
    n_filters = min(bins_per_octave, n_bins)
    ratios = 2.0 ** (np.arange(0, bins_per_octave, dtype=float) / bins_per_octave)
    freqs = np.sort(np.multiply.outer(2.0 ** np.arange(n_octaves), ratios).flatten()[:n_bins]) * fmin
    alpha = _relative_bandwidth(freqs)
    q = 1.0 / alpha  # filter_scale 1
    f_cutoff = max(freqs * (1 + 0.5 * _HANN_BANDWIDTH / q))
    nyquist = sample_rate / 2.0
    if f_cutoff > nyquist:
        raise ValueError(f"CQT filters reach {f_cutoff:.0f} Hz, above the Nyquist frequency {nyquist:.0f} Hz")

    early = _early_downsample_count(nyquist, f_cutoff, hop_length, n_octaves)
    early_factor = 2 ** early
    sr, hop = sample_rate / early_factor, hop_length // early_factor
    # librosa's final scale=True step: divide by sqrt(filter length) at the rate after early downsampling.
    length_scale = 1.0 / np.sqrt(q * sr / freqs)

    octaves = []
    my_sr, my_hop = sr, hop
    for i in range(n_octaves):
        sl = slice(-n_filters, None) if i == 0 else slice(-n_filters * (i + 1), -n_filters * i)
        freqs_oct = freqs[sl]
        basis, n_fft = _fft_basis(my_sr, freqs_oct, alpha[sl])
        basis[:] *= np.sqrt(sr / my_sr)  # compensates for downsampling, in complex64 like librosa
        # Output rows: the highest octave fills the top rows; a partial lowest octave the first ones.
        top = n_bins - n_filters * i
        rows = slice(top - len(freqs_oct), top)
        # Time-domain kernel: column j is sum_k basis[j, k] exp(-2 pi i k n / n_fft), n = 0 .. n_fft - 1.
        padded = np.zeros((len(freqs_oct), n_fft), dtype=np.complex128)
        padded[:, :basis.shape[1]] = basis
        k = np.fft.fft(padded, axis=1).T * length_scale[rows]
        kernel = np.ascontiguousarray(np.concatenate([k.real, k.imag], axis=1), dtype=np.float32)
        kernel.setflags(write=False)
        halve = my_hop % 2 == 0
        octaves.append(_Octave(hop=my_hop, n_fft=n_fft, kernel=kernel, rows=rows, halve_after=halve))
        if halve:
            my_hop //= 2
            my_sr /= 2.0
    return _Plan(early_factor=early_factor, octaves=tuple(octaves))


def _fft_basis(sr: float, freqs: np.ndarray, alpha: np.ndarray) -> tuple[np.ndarray, int]:
    """((n_filters, n_fft // 2 + 1) complex64 sparsified frequency-domain wavelets, n_fft), as librosa's
    __vqt_filter_fft: L1-normalised Hann-windowed complex sinusoids of length Q sr / f, centred in n_fft
    (the next power of two), scaled by length / n_fft, FFT'd in complex64, then sparsified."""
    lengths = (1.0 / alpha) * sr / (freqs + 0.0)
    filters = []
    for ilen, freq in zip(lengths, freqs):
        angles = np.arange(-ilen // 2, ilen // 2, dtype=float) * 2 * np.pi * freq / sr
        sig = np.cos(angles) + 1j * np.sin(angles)
        sig *= _hann(len(sig))
        sig = sig / np.sum(np.abs(sig))
        filters.append(sig)
    n_fft = int(2.0 ** (np.ceil(np.log2(max(lengths)))))
    basis = np.zeros((len(filters), n_fft), dtype=np.complex64)
    for row, sig in zip(basis, filters):
        lpad = (n_fft - len(sig)) // 2
        row[lpad:lpad + len(sig)] = sig
    basis *= lengths[:, np.newaxis] / float(n_fft)
    fft_basis = np.fft.fft(basis, n=n_fft, axis=1)[:, : (n_fft // 2) + 1]
    return _sparsify_rows(fft_basis, _SPARSITY), n_fft


def _sparsify_rows(x: np.ndarray, quantile: float) -> np.ndarray:
    """x with each row's smallest entries zeroed, those whose magnitudes sum to under `quantile` of the
    row's L1 norm (librosa.util.sparsify_rows, dense)."""
    mags = np.abs(x)
    norms = np.sum(mags, axis=1, keepdims=True)
    mag_sort = np.sort(mags, axis=1)
    cumulative_mag = np.cumsum(mag_sort / norms, axis=1)
    threshold_idx = np.argmin(cumulative_mag < quantile, axis=1)
    keep = mags >= mag_sort[np.arange(len(x)), threshold_idx][:, np.newaxis]
    return np.where(keep, x, 0).astype(x.dtype)


def _hann(n: int) -> np.ndarray:
    """(n,) periodic Hann window, computed as scipy.signal.get_window("hann", n) does."""
    if n == 1:
        return np.ones(1)
    fac = np.linspace(-np.pi, np.pi, n + 1)[:-1]
    return 0.5 + 0.5 * np.cos(fac)


def _relative_bandwidth(freqs: np.ndarray) -> np.ndarray:
    """(n,) relative bandwidths alpha of log-spaced freqs (librosa.filters._relative_bandwidth)."""
    bpo = np.empty_like(freqs)
    logf = np.log2(freqs)
    bpo[0] = 1 / (logf[1] - logf[0])
    bpo[-1] = 1 / (logf[-1] - logf[-2])
    bpo[1:-1] = 2 / (logf[2:] - logf[:-2])
    return (2.0 ** (2 / bpo) - 1) / (2.0 ** (2 / bpo) + 1)


def _early_downsample_count(nyquist: float, filter_cutoff: float, hop_length: int, n_octaves: int) -> int:
    """How many times librosa halves the whole signal before the first octave."""
    count1 = max(0, int(np.ceil(np.log2(nyquist / filter_cutoff)) - 1) - 1)
    twos = 0
    while hop_length > 0 and hop_length % 2 == 0:
        twos += 1
        hop_length //= 2
    count2 = max(0, twos - n_octaves + 1)
    return min(count1, count2)
