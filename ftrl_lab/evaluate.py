"""``python -m ftrl_lab.evaluate``: evaluation on the FTRL test set (code: :mod:`ftrl_lab.agent.evaluate`)."""

from ftrl_lab.agent.evaluate import main

if __name__ == "__main__":
    from ftrl_lab.core.cli import run_cli

    raise SystemExit(run_cli(main))
