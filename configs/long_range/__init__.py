"""The long-range recipe (benchmarks/long_range.py): the network on single events, then heads."""
