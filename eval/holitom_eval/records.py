"""The names of the files a run leaves behind, in one place (the plugin writes them, the runner and the
tables read them).

    OUT/<run>/run.json                          what the runner launched
    OUT/<run>/log.txt                           lmms-eval's output
    OUT/<run>/lmms_eval/**/<date>_results.json  lmms-eval's results
    OUT/<run>/holitom_run.json                  the model's settings, provenance and paper-style FLOPs
    OUT/<run>/holitom_samples_rank<R>.jsonl     one record per request and rank (visual tokens, FLOPs)
    OUT/<run>/holitom_done.json                 written by the runner once lmms-eval wrote its results
    OUT/.sweep.lock                             held (flock) by the sweep writing into OUT, names its holder
"""

from __future__ import annotations

RUN_SPEC = "run.json"
RUN_LOG = "log.txt"
LMMS_DIR = "lmms_eval"
RESULTS_GLOB = "*_results.json"
RUN_RECORD = "holitom_run.json"
SAMPLES_GLOB = "holitom_samples_rank*.jsonl"
DONE_FILE = "holitom_done.json"
SWEEP_LOCK = ".sweep.lock"


def samples_file(rank: int) -> str:
    return f"holitom_samples_rank{rank}.jsonl"
