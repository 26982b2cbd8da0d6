"""The agent: models, the generation engine, policies, the multi-turn rollout loop, trajectories
and evaluation on the FTRL test set. Heavy imports (torch, transformers) stay inside functions."""
