"""Generated references (the recipe's JSON Schema, field docs and the docs generator) and the
progress bar shared by `stylekit run` and `stylekit.stylize(progress=...)`."""
