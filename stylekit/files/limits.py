"""Limits on what stylekit reads and runs, shared by the recipe schema (its defaults and
bounds), the built-in components and the readers that enforce them. Kept free of heavy imports:
the schema is read without torch."""

#: Pillow's own limit (its DecompressionBombError is raised at twice this).
DEFAULT_MAX_PIXELS = 89_478_485
#: The most steps a run or stage takes: a run record keeps a row of losses per step (about
#: 150 bytes with three loss terms, 400 with ten), so 100,000 steps stay well within the
#: 64 MB stylekit reads of a record (files.reading.RECORD_LIMIT); it is also hours of
#: steps on a GPU, where recipes take hundreds.
MAX_STEPS = 100_000
