"""Expert policies: training backends (sample-factory, stable-baselines3), bots and scripted experts,
the expert store and the quality gate. Importing this package imports no backend (see `experts.base`)."""
