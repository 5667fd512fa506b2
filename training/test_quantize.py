"""The exporter's Q4_0 quantizer (training/quantize.py) against the plain GGML rounding.

    python3 -m training.test_quantize

Checks, on fresh random matrices whose columns differ in importance as a real layer's inputs do:
the file layout reads back through the GGML dequantizer; each block's weighted squared error is
never above the GGML scale's (the search includes it, up to the f16 rounding of the scale); the
weighted error over a matrix drops by at least 10 % (typically 25–30 %); blocks of zeros give
d = 0 and zeros back. The error-compensating rounding (q4_0_compensated) gives q4_0's bytes when
the inputs are uncorrelated and a smaller output error when they are not.
"""
import numpy as np

from .quantize import BLOCK, dq4_0, q4_0, q4_0_compensated


def ggml_q4_0(w):
    """GGML's reference Q4_0 (d = m / −8, m the value of largest magnitude), dequantized."""
    b = w.reshape(w.shape[0], -1, BLOCK)
    m = np.take_along_axis(b, np.abs(b).argmax(-1)[..., None], -1)
    d = (m / -8.0).astype(np.float16).astype(np.float32)
    inv = np.divide(1.0, m / -8.0, out=np.zeros_like(m), where=m != 0)
    return (np.clip(np.round(b * inv), -8, 7) * d).reshape(w.shape)


def main():
    rng = np.random.default_rng()
    for rows, cols in [(7, 96), (33, 320), (129, 1024)]:
        w = rng.normal(size=(rows, cols)).astype(np.float32) * rng.uniform(0.01, 2.0, size=(rows, 1))
        w[0, :BLOCK] = 0.0                                   # a block of zeros
        importance = rng.lognormal(0.0, 1.5, size=cols).astype(np.float32)
        buf = q4_0(w, importance)
        assert buf.dtype == np.uint8 and buf.size == rows * cols // BLOCK * 18, "Q4_0 layout"
        new = dq4_0(buf, w.shape)
        old = ggml_q4_0(w)
        assert np.all(new[0, :BLOCK] == 0.0) and np.all(buf[:2] == 0), "a block of zeros has d = 0"
        blocks = lambda e: (importance.reshape(1, -1, BLOCK) * e.reshape(rows, -1, BLOCK) ** 2).sum(-1)
        e_new, e_old = blocks(new - w), blocks(old - w)
        # f16 scales move an error by ~1e-3 relative; the search never loses more than that
        worst = float(np.max(e_new - e_old * (1 + 2e-3) - 1e-12))
        assert worst <= 0, f"{rows}x{cols}: a block's weighted error rose above GGML's by {worst:.3g}"
        ratio = float(e_new.sum() / e_old.sum())
        assert ratio <= 0.9, f"{rows}x{cols}: weighted error {ratio:.3f} of GGML's, expected <= 0.9"
        # unweighted, the search still helps a little (least-squares scales)
        plain = dq4_0(q4_0(w), w.shape)
        assert ((plain - w) ** 2).sum() < ((old - w) ** 2).sum(), f"{rows}x{cols}: plain search no better"
        print(f"test_quantize: {rows}x{cols}: weighted error {ratio:.3f} of GGML's, "
              f"unweighted {((plain - w) ** 2).sum() / ((old - w) ** 2).sum():.3f}")
    compensated(rng)
    print("test_quantize: ok")


def compensated(rng):
    """q4_0_compensated: with a diagonal gram, q4_0's bytes; with correlated inputs (a few shared
    factors plus noise, as genes move together), a smaller output error ‖(W − Q) x‖² over held-out
    inputs from the same distribution than q4_0 with the gram's diagonal as its importance."""
    for rows, cols in [(5, 64), (40, 320)]:
        w = rng.normal(size=(rows, cols)).astype(np.float32)
        imp = rng.lognormal(0.0, 1.0, size=cols).astype(np.float32)
        assert np.array_equal(q4_0_compensated(w, np.diag(imp.astype(np.float64)), imp, damp=0.0), q4_0(w, imp)), \
            f"{rows}x{cols}: a diagonal gram changed the bytes"
        mix = rng.normal(size=(6, cols))
        draw = lambda n: rng.normal(size=(n, 6)) @ mix + 0.3 * rng.normal(size=(n, cols))  # noqa: E731
        x, held = draw(400), draw(400)
        gram = x.T @ x
        plain = dq4_0(q4_0(w, np.diag(gram).astype(np.float32)), w.shape)
        comp = dq4_0(q4_0_compensated(w, gram, np.diag(gram).astype(np.float32)), w.shape)
        e_plain, e_comp = (((w - plain) @ held.T) ** 2).sum(), (((w - comp) @ held.T) ** 2).sum()
        assert e_comp < 0.7 * e_plain, f"{rows}x{cols}: compensated {e_comp:.3g} against {e_plain:.3g}"
        print(f"test_quantize: {rows}x{cols}: compensated rounding's output error {e_comp / e_plain:.3f} of q4_0's")


if __name__ == "__main__":
    main()
