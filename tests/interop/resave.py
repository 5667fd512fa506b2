"""Reads a refcast model with the Python safetensors package and writes it again with it.

Checks on the way that the metadata document parses and that the quantized tensors have the
byte sizes the document implies, so both directions of the format are exercised.
"""
import json
import sys

from safetensors import safe_open
from safetensors.numpy import save_file

BLOCK_BYTES = {"q8_0": 34, "q4_0": 18}

src, dst = sys.argv[1], sys.argv[2]
with safe_open(src, framework="numpy") as f:
    meta = f.metadata()
    doc = json.loads(meta["refcast"])
    tensors = {k: f.get_tensor(k) for k in f.keys()}
for name, spec in doc["tensors"].items():
    rows, cols = spec["shape"]
    want = rows * cols // 32 * BLOCK_BYTES[spec["dtype"]]
    assert tensors[name].nbytes == want, (name, tensors[name].nbytes, want)
assert len(doc["genes"]) == doc["architecture"]["genes"]
save_file(tensors, dst, metadata=meta)
