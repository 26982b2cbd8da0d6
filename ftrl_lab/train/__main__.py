"""``python -m ftrl_lab.train``: the iteration loop's command line (:func:`ftrl_lab.train.loop.main`)."""

from ftrl_lab.train.loop import main

if __name__ == "__main__":
    from ftrl_lab.core.cli import run_cli

    raise SystemExit(run_cli(main))
