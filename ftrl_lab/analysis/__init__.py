"""Which parameters moved, and which moved ones carry the gain: the change map
(:mod:`~ftrl_lab.analysis.change_map`), the transplant (:mod:`~ftrl_lab.analysis.transplant`) and
streamed checkpoint I/O (:mod:`~ftrl_lab.analysis.checkpoint_io`); and where a run's gain
transfers: its start and final checkpoints on FTRL's test set, the benchmark suite and HumanEval
(:mod:`~ftrl_lab.analysis.transfer`).

Command line: ``python -m ftrl_lab.analysis change-map|transplant|transfer ...``."""
