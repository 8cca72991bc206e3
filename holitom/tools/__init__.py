"""The tools around the method: the command line's subcommands (`make-tiny`, `generate`, `demo`, `bench`),
the GPU check, tiny checkpoints and synthetic videos, random-weight models at the published shapes, timing,
host-sync counting and run provenance. Front ends: they import the registry, the hosts and the algorithms,
and nothing below imports them."""
