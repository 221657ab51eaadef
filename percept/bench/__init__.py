"""`percept bench`: the benchmark suite. Every figure is a ratio of two numbers measured in one run.

Modules in the order of a run: ``networks`` (the ONNX under test), ``facts`` (what the machine and
the server are, read, not typed in), ``measure`` (in-process ONNX Runtime, PyTorch eager, matmul
peak), ``served`` (repositories, tritonserver, load-test sweeps, `percept video`, bytes on the
wire), ``results`` (the typed record of a run), ``figures`` (one table of key/title/goal/builder),
``report`` (BENCHMARKS.md), ``history`` (earlier runs' ratios), ``run`` (the orchestration) and
``command`` (the thin typer command).
"""
