"""Runs as data: `RunSpec` (what a run is), its `--config` file, the one fan-out of RunSpecs to a launcher, and the
orchestration path each job takes (`pipeline`, `reproduce`). Importing this package loads nothing heavy: the
command line reads and checks specs before torch or pandas are imported.
"""
