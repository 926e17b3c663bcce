"""Training data of the streaming fusion network: real clips and their degradations.

The entry point is ``thermal_visible_fusion.train`` (``tvf train``), which holds the
training loop and the losses.  Nothing here is needed at inference time.
"""
