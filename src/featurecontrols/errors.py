"""One error type for bad input: every message names the problem and the fix."""

from __future__ import annotations


class FeatureControlsError(ValueError):
    """Bad input to featurecontrols.

    The message always has two parts: what is wrong, and what to do about it.
    Subclasses ``ValueError`` so callers that already catch ``ValueError`` keep working.
    """

    def __init__(self, problem: str, fix: str) -> None:
        self.problem = problem
        self.fix = fix
        super().__init__(f"{problem}\n  fix: {fix}")

    def __reduce__(self) -> tuple[type[FeatureControlsError], tuple[str, str]]:
        """Pickled as (problem, fix), so an error raised in a worker process reaches the parent whole."""
        return type(self), (self.problem, self.fix)
