"""hushdrop core: config, jobs, the chain runner, outputs, originals, the CLI."""
