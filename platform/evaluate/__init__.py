"""evaluate: track a split (spread over Ray), write result files, score with benchmark metrics, plot."""
