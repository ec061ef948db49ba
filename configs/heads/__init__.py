"""One config per temporal head: each imports configs/temporal_head.py and picks the head."""
