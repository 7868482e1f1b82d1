"""The benchmark: speed as ratios against baselines measured in the same run."""
