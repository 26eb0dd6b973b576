"""Running a plan: components built, the optimization loop, stages, signals, checkpoints,
colour transfer and the memory estimate. Internal: the API's `stylekit.stylize` is the way in."""
