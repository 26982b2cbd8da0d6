"""Automated environment construction: the paper's five-stage pipeline, offline and LLM-driven.

Modules, in data-flow order:

* ``schema`` / ``world`` -- a seeded, fictional knowledge world (17 domains, 37 entity types);
* ``decompose`` -- stage 1, a question, its sub-questions and their dependency graph;
* ``documents`` -- stage 2, one OpenAI function schema per sub-question;
* ``integrate`` -- stage 3, merge overlapping tools (n -> m);
* ``scaling`` (+ ``options``) -- stage 4, four complexity strategies, levels 0-3;
* ``deploy`` -- stage 5, Python tool code and the FTRL record (``env_meta`` holds the gold plan);
* ``validate`` -- the gate: gold plan, decoy / echo calls and probes run in the sandbox;
* ``backend`` / ``llm`` -- the ``EnvGenerator`` interface, ``ProceduralBackend``, ``LLMBackend``;
* ``pipeline`` / ``__main__`` -- resumable, deterministic JSONL generation and its CLI;
* ``stats`` -- per-scenario statistics beside FTRL's test set; ``explore`` -- notebook helpers.

``python -m ftrl_lab.envgen --n 2000 --split train --seed 0 --out data/envs/train.jsonl``
"""
