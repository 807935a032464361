"""data: manifests -> frame index -> sample specs -> decoded crops, as the Ray Data training stream."""
