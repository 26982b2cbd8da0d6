"""Feedback-driven training: config, prefix data, SFT warm start, TRL trainers, the iteration loop
(:mod:`ftrl_lab.train.loop`), the run-folder format, reports and the verl export.

Command line: ``python -m ftrl_lab.train --preset cpu-smollm2`` (see :mod:`ftrl_lab.train.loop`)."""
