"""tune: Ray Tune search over the tracker's update_interval x score_threshold, and its report."""
