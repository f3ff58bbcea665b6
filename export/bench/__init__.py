"""The benchmark: every format of a model measured side by side (`tumor-bench`, `run_bench`).

`run` orchestrates, each format is measured in a fresh `worker` process, `report` holds the results,
their table and figure, `cli` is the command line.
"""
