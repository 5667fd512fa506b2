"""GGML-style Q8_0 / Q4_0 block quantization in numpy (docs/FORMAT.md)."""
import numpy as np

BLOCK = 32


def q8_0(w, importance=None):
    """Q8_0 blocks of `w` [rows, cols], the GGML way (d = max|x| / 127): its rounding error is already
    far inside the error budget, so `importance` is accepted for a common signature and unused."""
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


def q4_0(w, importance=None):
    """Q4_0 blocks of `w` [rows, cols]. Each block's scale is the least-squares one for its own
    rounding, searched over 19 candidates around the GGML scale m / −8 (m: the value of largest
    magnitude), as llama.cpp's make_qx_quants does. `importance` [cols] weights each column's
    squared error, e.g. the mean square of the layer's input there: within a block the scale then
    fits the columns whose errors reach the output, and leaves the error on the others."""
    w = np.asarray(w, dtype=np.float32)
    rows, cols = w.shape
    assert cols % BLOCK == 0
    b = w.reshape(rows, cols // BLOCK, BLOCK)
    d16 = q4_0_scales(b, importance)
    d = d16.astype(np.float32)                                           # round with the scale stored
    inv = np.divide(1.0, d, out=np.zeros_like(d), where=d != 0)
    return pack_q4_0(d16, np.clip(np.round(b * inv) + 8, 0, 15).astype(np.uint8))


def q4_0_scales(b, importance=None):
    """The f16 scales [rows, blocks, 1] of `q4_0` for blocks `b` [rows, blocks, 32]."""
    weight = np.ones((1,) + b.shape[1:], np.float32) if importance is None else \
        np.asarray(importance, np.float32).reshape((1,) + b.shape[1:])
    idx = np.abs(b).argmax(-1)[..., None]
    m = np.take_along_axis(b, idx, -1)                                   # signed max-magnitude value
    nonzero = np.where(m == 0, 1.0, m)
    best_d = m / -8.0
    best_fit = np.full(m.shape, -np.inf, np.float32)
    for step in range(-9, 10):
        q = np.clip(np.round(b * (-(8.0 + 0.1 * step) / nonzero)), -8, 7)
        sum_xq = (weight * b * q).sum(-1, keepdims=True)
        sum_qq = (weight * q * q).sum(-1, keepdims=True)
        ok = sum_qq > 0
        # with the best scale d = Σwxq / Σwqq, the weighted error is Σwx² − (Σwxq)² / Σwqq
        fit = np.where(ok, sum_xq ** 2 / np.where(ok, sum_qq, 1.0), -np.inf)
        better = fit > best_fit
        best_fit = np.where(better, fit, best_fit)
        best_d = np.where(better, sum_xq / np.where(ok, sum_qq, 1.0), best_d)
    return np.where(m == 0, 0.0, best_d).astype(np.float16)


def pack_q4_0(d16, q):
    """The Q4_0 bytes of scales `d16` [rows, blocks, 1] and quants `q` + 8 [rows, blocks, 32]."""
    rows, blocks = q.shape[:2]
    out = np.empty((rows, blocks, 18), dtype=np.uint8)
    out[..., :2] = d16.view(np.uint8).reshape(rows, blocks, 2)
    out[..., 2:] = q[..., :16] | (q[..., 16:] << 4)
    return out.reshape(-1)


def q4_0_compensated(w, gram, importance=None, damp=0.01):
    """Q4_0 blocks of `w` [rows, cols] whose rounding compensates its own error over the layer's
    inputs (GPTQ: Frantar et al., ICLR 2023). `gram` [cols, cols] is Σ x xᵀ over calibration inputs
    x of the layer (centred where the layer's bias absorbs the mean). Columns are rounded in
    order; each column's rounding error is spread over the columns not yet rounded through the
    Cholesky factor of gram⁻¹, which minimises ‖(W − Q) x‖² over those inputs instead of ‖W − Q‖²
    per block. A block's scale is q4_0's search on the block as updated when it is reached.
    `damp` (a fraction of the mean diagonal) keeps a low-rank gram invertible. With a diagonal
    gram nothing is spread, and the bytes are q4_0's."""
    from scipy.linalg.lapack import dtrtri
    w = np.asarray(w, dtype=np.float32)
    rows, cols = w.shape
    assert cols % BLOCK == 0 and gram.shape == (cols, cols)
    W = w.astype(np.float64)
    H = np.array(gram, dtype=np.float64)
    diag = np.diag(H).copy()
    unseen = diag == 0                                   # inputs always zero: nothing to compensate
    H[unseen, unseen] = 1.0
    H[np.diag_indices(cols)] += damp * (diag.mean() if diag.mean() > 0 else 1.0)
    # U, upper triangular with Uᵀ U = gram⁻¹: with J the reversal and J H J = L Lᵀ, U = J L⁻¹ J
    # (one Cholesky and one triangular inverse of the 15,360-input layer's 1.9 GB matrices)
    L = np.linalg.cholesky(H[::-1, ::-1])
    del H
    Linv, info = dtrtri(L, lower=1)
    assert info == 0, f"gram factor: dtrtri info {info}"
    del L
    U = Linv[::-1, ::-1]
    q = np.zeros((rows, cols // BLOCK, BLOCK), np.uint8)
    d16 = np.zeros((rows, cols // BLOCK, 1), np.float16)
    for blk, b0 in enumerate(range(0, cols, BLOCK)):
        b1 = b0 + BLOCK
        d16[:, blk] = q4_0_scales(W[:, None, b0:b1].astype(np.float32), None if importance is None else importance[b0:b1])[:, 0]
        d = d16[:, blk, 0].astype(np.float64)
        inv = np.divide(1.0, d, out=np.zeros_like(d), where=d != 0)
        err = np.zeros((rows, BLOCK))
        for j in range(BLOCK):
            c = b0 + j
            qc = np.clip(np.round(W[:, c] * inv), -8, 7)
            q[:, blk, j] = (qc + 8).astype(np.uint8)
            err[:, j] = (W[:, c] - qc * d) / U[c, c]
            W[:, c + 1:b1] -= np.outer(err[:, j], U[c, c + 1:b1])
        W[:, b1:] -= err @ U[b0:b1, b1:]
    return pack_q4_0(d16, q)


def dq4_0(buf, shape):
    rows, cols = shape
    b = np.asarray(buf, dtype=np.uint8).reshape(rows, cols // BLOCK, 18)
    d = b[..., :2].copy().view(np.float16).astype(np.float32)
    lo = (b[..., 2:] & 0x0F).astype(np.float32)
    hi = (b[..., 2:] >> 4).astype(np.float32)
    q = np.concatenate([lo, hi], -1) - 8.0
    return (q * d).reshape(rows, cols)


QUANT = {"q8_0": (q8_0, dq8_0), "q4_0": (q4_0, dq4_0)}


def roundtrip(w, kind, importance=None):
    qf, dqf = QUANT[kind]
    return dqf(qf(w, importance), w.shape)


if __name__ == "__main__":
    rng = np.random.default_rng(0)
    w = rng.normal(size=(4, 64)).astype(np.float32)
    w[1, :32] = 0
    for k in QUANT:
        err = np.abs(roundtrip(w, k) - w).max()
        print(k, "max abs err", err)
