"""Training and evaluation, in layers that import one way (see docs/architecture.md):

config -> state -> steps -> checkpoints / run_utils -> evaluation -> video (the I3D task) ->
loop (`train_and_evaluate`) and evaluate (`eval.py`). Evaluation never imports the loop.
"""
