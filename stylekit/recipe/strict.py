"""The base of every recipe table: unknown keys rejected, no NaN or infinity."""

from pydantic import BaseModel, ConfigDict


class Strict(BaseModel):
    # nan and inf are never meant: a NaN weight turns every step's loss NaN.
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
