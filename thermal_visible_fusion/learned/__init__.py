"""
The learned fuser's network and its runtime.

``model`` (StreamingFusionNet), ``weights`` (the shipped file, save/load; importable
without torch), ``runtime`` (the memory carried over a stream, compiled steps) and
``lookahead`` (offline look-ahead).

Look-ahead is kept in two places, one per kind of data it delays: ``runtime.StreamingRunner``
holds the network's window (tensors for the backward memory) and carries each frame's tag
(the fuser's chroma, so ``fusers.learned`` keeps no window of its own); ``lookahead.DelayedEngine``
sits above ``FusionEngine`` and re-attaches each late frame to its pair's name, stamp and
diagnostics, flushing before an engine reset.  The node runs without look-ahead.
"""
