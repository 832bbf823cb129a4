"""Specialization of the OFA supernet for a latency budget: latency model (measured through :mod:`..bench`),
accuracy predictor, evolutionary search, and the ``mobile-sr search`` driver in :mod:`.run`."""
