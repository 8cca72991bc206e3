"""`holitom.config`: HoliTom's typed configuration (defined with its method in `holitom.methods.holitom`)."""

from holitom.methods.holitom import INNER_UPDATES, PAPER_MERGE_LAYER, HoliTomConfig, paper_tau

__all__ = ["INNER_UPDATES", "PAPER_MERGE_LAYER", "HoliTomConfig", "paper_tau"]
