"""Limits on what stylekit reads, shared by the recipe schema (its defaults) and the readers
that enforce them. Kept free of heavy imports: the schema is read without torch."""

#: Pillow's own limit (its DecompressionBombError is raised at twice this).
DEFAULT_MAX_PIXELS = 89_478_485
