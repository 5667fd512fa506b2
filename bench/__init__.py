"""The peer benchmark (BENCHMARKS.md): refcast against the runtimes a user would pick instead.

    run.py              entry point: the command line and the order of a run
    context.py          paths, the run's settings and inputs (`Run`), running a peer process
    spec.py             inputs and workloads, the spec every native peer reads
    peers/              one module per peer: refcast (CPU, GPU), the Python peers (PyTorch,
                        ONNX Runtime f32 / int8), the browser runtimes
    peer.py, graph.py   the Python peers' process, and the network they run (training/model.py's)
                        with its ONNX export
    refcast_bench.rs    refcast's side (a cargo example)
    machine.py, scaling.py, stats.py   the machine and its ceilings, kernels and gene scaling
    report.py, report_browser.py, results.py, notes.md   BENCHMARKS.md and results.json
"""
