"""The core: environment records, model-output parsing, the verifiable reward and the sandbox.

Imports no torch or transformers, so it loads fast inside sandbox workers. Everything later in
the pipeline (envgen, agent, train, benchmarks, analysis) builds on it.
"""
