"""Ready-made scorers, the public `predictions.scorers` (they live in `predictions.scoring.ready_made`)."""

from predictions.scoring.ready_made import ChoiceMatch, JsonValid, NumericAnswer, RegexMatch, last_number

__all__ = ["ChoiceMatch", "JsonValid", "NumericAnswer", "RegexMatch", "last_number"]
