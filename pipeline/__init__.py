"""hushdrop core: config, jobs, the chain runner, outputs, originals, the CLI."""

if __name__ != "hushdrop.pipeline":  # imported as a bare top-level `pipeline`: a second copy of every module
    raise ImportError(f"hushdrop's pipeline package is imported as hushdrop.pipeline, not as {__name__!r}")

