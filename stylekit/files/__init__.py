"""Images in and out: decoding with limits, atomic writes of results and records, plots."""
