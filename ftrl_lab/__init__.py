"""ftrl_lab: a research workbench reproducing FTRL (arXiv 2508.08791).

Data flows one way: envgen -> environment records -> sandbox/reward -> rollout ->
train/evaluate -> analysis. The core modules (environment, sandbox, parsing, reward)
import no torch or transformers.
"""

__version__ = "0.1.0"
