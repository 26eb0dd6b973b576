"""Generated references: the recipe's JSON Schema, field docs and the docs generator."""
