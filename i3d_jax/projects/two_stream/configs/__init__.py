"""The two-stream task's configs (`rgb.py`, `flow.py`): `get_config()` files."""
