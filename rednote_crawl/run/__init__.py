"""A run as its user sees it: start-up checks, progress and the summary, the report, the plan
of a dry run, and the probe's one call."""
