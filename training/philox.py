"""refcast's random stream: Philox4x32-10 + Box-Muller, in numpy (the runtime implements the same).

For latent element j of group g (stream 0 technical, 1 biological, 2 perturbation), input row
`row` and sample index s: counter = (j // 4, row, s, stream), key = (seed & 0xffffffff, seed >> 32),
output word w = j % 4. u(x) = ((x >> 8) + 0.5) * 2^-24 in float32. Box-Muller on words (0,1) and
(2,3): r = sqrt(-2 ln u(a)); word 0 -> r01 cos(2 pi u(b01)), word 1 -> r01 sin(...), word 2 -> r23 cos,
word 3 -> r23 sin.
"""
import numpy as np

M0, M1 = 0xD2511F53, 0xCD9E8D57
W0, W1 = 0x9E3779B9, 0xBB67AE85
MASK = 0xFFFFFFFF
STREAMS = {"technical": 0, "biological": 1, "perturbation": 2}


def philox4x32_10(counter, key):
    c0, c1, c2, c3 = (int(v) & MASK for v in counter)
    k0, k1 = (int(v) & MASK for v in key)
    for r in range(10):
        if r:
            k0 = (k0 + W0) & MASK
            k1 = (k1 + W1) & MASK
        p0 = M0 * c0
        p1 = M1 * c2
        hi0, lo0 = p0 >> 32, p0 & MASK
        hi1, lo1 = p1 >> 32, p1 & MASK
        c0, c1, c2, c3 = hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0
    return c0, c1, c2, c3


def uniform(x):
    return np.float32((np.float32(x >> 8) + np.float32(0.5)) * np.float32(2.0 ** -24))


def normals4(words):
    u = [uniform(w) for w in words]
    two_pi = np.float32(2.0 * np.pi)
    r01 = np.sqrt(np.float32(-2.0) * np.log(u[0]), dtype=np.float32)
    r23 = np.sqrt(np.float32(-2.0) * np.log(u[2]), dtype=np.float32)
    a01 = np.float32(two_pi * u[1])
    a23 = np.float32(two_pi * u[3])
    return np.array([r01 * np.cos(a01), r01 * np.sin(a01), r23 * np.cos(a23), r23 * np.sin(a23)],
                    dtype=np.float32)


def eps(seed, group, dim, row=0, sample=0):
    """The N(0,1) noise for `dim` latent elements of `group`."""
    key = (seed & MASK, (seed >> 32) & MASK)
    stream = STREAMS[group]
    out = np.zeros(dim, dtype=np.float32)
    for blk in range((dim + 3) // 4):
        z = normals4(philox4x32_10((blk, row, sample, stream), key))
        for w in range(4):
            j = blk * 4 + w
            if j < dim:
                out[j] = z[w]
    return out


def _self_test():
    got = philox4x32_10((0, 0, 0, 0), (0, 0))
    want = (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)
    assert got == want, [hex(v) for v in got]


_self_test()

if __name__ == "__main__":
    print("philox known answer ok;", eps(42, "technical", 8))
