"""track: the STARK-S/ST online tracker, the frame sources it reads, and drawing its boxes."""
