"""ml_collections config files (`get_config()`); pass one to train.py/eval.py with --config."""
