"""One thin entry point per command; `stark.jobs.cli` dispatches `stark SUBCOMMAND` to them."""
