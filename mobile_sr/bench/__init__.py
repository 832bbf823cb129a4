"""Benchmarks: latency, memory and quality of exported artifacts, on this machine or on a phone over adb.

- :mod:`.artifact` reads what is benchmarked (an exported file and its sidecar, or a checkpoint);
- :mod:`.host` times it in-process in its runtime; :mod:`.remote` on a phone (benchmark binary or demo app)
  through :mod:`.adb`; :mod:`.parse` reads the binaries' output;
- :mod:`.run` does one run over many artifacts; :mod:`.report` turns it into JSON (``results.schema.json``),
  CSV, a table and a plot; :mod:`.matmul` measures the machine's fp32 peak;
- :mod:`.latency_table` times single layers for the architecture search.

Nothing heavy is imported here: each module imports its runtime when it needs it.
"""
