"""The daemon process: the listening socket, request handlers, the scheduler and
the composition root (``server``) that builds the engine, cache and pipeline."""
