"""`stylekit plugins` reads right whatever a plugin declares: a tuple's elements each with
their constraints (no commas that read as more elements), and columns that stay in place
beside long component names."""

from stylekit.testing import run_cli

LONG_NAMES = """
from typing import Annotated
from pydantic import Field
from stylekit import hookimpl
from stylekit.contract import Optimizer, Params

Decay = Annotated[float, Field(ge=0, lt=1)]

class Short(Optimizer):
    '''A short name.'''
    name = "brief"

    class Params(Params):
        betas: tuple[Decay, Decay] = Field((0.9, 0.999), description="decay rates")
        sizes: tuple[Annotated[int, Field(gt=0, le=8)], ...] = Field((3,), description="sides")

    def build(self, variables):
        return None

class Longer(Short):
    '''A name wider than the usual column.'''
    name = "a_rather_long_name_20"

class Longest(Short):
    '''A name wider than any column should be.'''
    name = "an_optimizer_whose_name_goes_on_and_on"

@hookimpl
def register_optimizers(register):
    for cls in (Short, Longer, Longest):
        register(cls)
"""


def test_tuple_params_read_as_their_elements(install_dist):
    install_dist("stylekit-names", LONG_NAMES)
    status, out, err = run_cli("plugins")
    assert status == 0, err
    assert "betas: tuple[float in [0, 1), float in [0, 1)] (default (0.9, 0.999)) - decay rates" in out
    assert "sizes: tuple[int in (0, 8], ...] (default (3,)) - sides" in out


def test_long_component_names_keep_the_columns(install_dist):
    install_dist("stylekit-names", LONG_NAMES)
    status, out, err = run_cli("plugins")
    assert status == 0, err
    lines = out.splitlines()
    summaries = {line.index(summary) for summary in ("A short name.", "A name wider than the usual column.",
                                                     "A name wider than any column should be.", "Adam (Kingma")
                 for line in lines if summary in line}
    assert len(summaries) == 1, "every summary starts in the same column"
    params = {line.index(text) for text in ("betas:", "lr: float > 0 (default 0.02)") for line in lines
              if line.lstrip().startswith(text)}
    assert params == {summaries.pop() + 2}, "every param line is indented alike, under the summaries"
    # The longest name stands alone; its summary follows on the next line, in the column.
    at = lines.index("  optimizer an_optimizer_whose_name_goes_on_and_on")
    assert lines[at + 1].strip() == "A name wider than any column should be."
