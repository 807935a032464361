"""ingest: benchmark folders and user footage -> validated sequences -> H.264 clips + a Parquet manifest.

Layout readers (got10k, lasot, trackingnet, footage) produce `sources.SequenceSource`s; `importers` picks
one; `sequence_clips` encodes one sequence; `run` drives a whole source; `synthetic` generates data."""
