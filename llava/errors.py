"""Errors with a one-line message meant for the user (the command line prints them without a traceback)."""


class HookError(RuntimeError):
    """A hook or host could not find what it needs from transformers (the KV cache, the visual tokens), so
    going on would silently compute something else (a video dropped, a sequence restarted)."""
