#!/usr/bin/env bash
# The real-GPU measurements in one call (BENCHMARKS.md, "Real GPU"): on the adapter wgpu picks,
# refcast's GPU backend against ONNX Runtime's CUDA provider and PyTorch on CUDA at batch 1 and
# batch 256; the Q4_0 matrix–vector kernel's GB/s against the device's measured copy bandwidth;
# a 1,000-perturbation screen of one sample; refcast's f16-weight kernels and whether the
# adapter offers shader-f16. Prints a table and writes bench/out/gpu/GPU.md and results.json.
#
#     bash bench/gpu/run.sh             # needs a hardware adapter; refuses a software one
#     bash bench/gpu/run.sh --dry-run   # any adapter (lavapipe), CPU stand-ins for the CUDA
#                                       # peers, few runs: checks that the script works
#
# Needs: cargo, python3 with numpy, onnxruntime-gpu (or onnxruntime for --dry-run), torch (CUDA
# build) and onnx for the export (bench/graph.py), as bench/requirements.txt says.
set -euo pipefail
cd "$(dirname "$0")/../.."
exec python3 bench/gpu/gpu.py "$@"
