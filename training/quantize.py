"""GGML-style Q8_0 / Q4_0 block quantization in numpy (docs/FORMAT.md)."""
import numpy as np

BLOCK = 32


def q8_0(w):
    w = np.asarray(w, dtype=np.float32)
    rows, cols = w.shape
    assert cols % BLOCK == 0
    b = w.reshape(rows, cols // BLOCK, BLOCK)
    amax = np.abs(b).max(-1, keepdims=True)
    d = (amax / 127.0).astype(np.float32)
    d16 = d.astype(np.float16)
    inv = np.divide(1.0, d, out=np.zeros_like(d), where=d != 0)
    q = np.clip(np.round(b * inv), -127, 127).astype(np.int8)
    out = np.empty((rows, cols // BLOCK, 34), dtype=np.uint8)
    out[..., :2] = d16.view(np.uint8).reshape(rows, cols // BLOCK, 2)
    out[..., 2:] = q.view(np.uint8)
    return out.reshape(-1)


def dq8_0(buf, shape):
    rows, cols = shape
    b = np.asarray(buf, dtype=np.uint8).reshape(rows, cols // BLOCK, 34)
    d = b[..., :2].copy().view(np.float16).astype(np.float32)          # [rows, nb, 1]
    q = b[..., 2:].copy().view(np.int8).astype(np.float32)
    return (q * d).reshape(rows, cols)


def q4_0(w):
    w = np.asarray(w, dtype=np.float32)
    rows, cols = w.shape
    assert cols % BLOCK == 0
    b = w.reshape(rows, cols // BLOCK, BLOCK)
    idx = np.abs(b).argmax(-1)[..., None]
    m = np.take_along_axis(b, idx, -1)                                   # signed max-magnitude value
    d = (m / -8.0).astype(np.float32)
    d16 = d.astype(np.float16)
    inv = np.divide(1.0, d, out=np.zeros_like(d), where=d != 0)
    q = np.clip(np.round(b * inv) + 8, 0, 15).astype(np.uint8)
    out = np.empty((rows, cols // BLOCK, 18), dtype=np.uint8)
    out[..., :2] = d16.view(np.uint8).reshape(rows, cols // BLOCK, 2)
    out[..., 2:] = q[..., :16] | (q[..., 16:] << 4)
    return out.reshape(-1)


def dq4_0(buf, shape):
    rows, cols = shape
    b = np.asarray(buf, dtype=np.uint8).reshape(rows, cols // BLOCK, 18)
    d = b[..., :2].copy().view(np.float16).astype(np.float32)
    lo = (b[..., 2:] & 0x0F).astype(np.float32)
    hi = (b[..., 2:] >> 4).astype(np.float32)
    q = np.concatenate([lo, hi], -1) - 8.0
    return (q * d).reshape(rows, cols)


QUANT = {"q8_0": (q8_0, dq8_0), "q4_0": (q4_0, dq4_0)}


def roundtrip(w, kind):
    qf, dqf = QUANT[kind]
    return dqf(qf(w), w.shape)


if __name__ == "__main__":
    rng = np.random.default_rng(0)
    w = rng.normal(size=(4, 64)).astype(np.float32)
    w[1, :32] = 0
    for k in QUANT:
        err = np.abs(roundtrip(w, k) - w).max()
        print(k, "max abs err", err)
