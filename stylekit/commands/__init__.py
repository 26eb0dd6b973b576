"""The command line (`stylekit run`, `batch`, `validate`, `plugins`, `schema`, `new-plugin`),
its progress display and the live page. The top layer: nothing below imports from here."""
