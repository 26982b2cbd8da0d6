"""``python -m ftrl_lab.gpu_check``: the prepared GPU check (code: :mod:`ftrl_lab.train.gpu_check.run`)."""

from ftrl_lab.train.gpu_check.run import main

if __name__ == "__main__":
    raise SystemExit(main())
