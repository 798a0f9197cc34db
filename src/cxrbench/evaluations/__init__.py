"""Evaluations: what is measured on a prepared study once an encoder's features are cached.

Each evaluation plugs into the one orchestration path (`cxrbench.pipeline.evaluate`): it checks what it can
before any data is read, may adapt the study (e.g. pick the targets it scores), says which features it needs, then
evaluates one encoder's features and writes its run folders.

- `probe`: heads trained on binary, multiclass and regression targets (`cxrbench run`);
- `localisation`: attention maps against radiologists' boxes (`cxrbench explain`).
"""
