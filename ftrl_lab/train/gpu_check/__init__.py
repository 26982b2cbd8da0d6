"""The GPU check: engine vs ``model.generate``, SFT and GRPO steps on random models of real shapes.

Run with ``python -m ftrl_lab.gpu_check`` (or ``bash scripts/gpu_check.sh`` on a GPU machine);
``--tiny`` runs the same path on a CPU (``tests/train/test_gpu_check.py``). See :mod:`.run`.
"""
