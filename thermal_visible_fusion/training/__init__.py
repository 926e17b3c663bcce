"""Training of the streaming fusion network: data, degradations, losses, teachers.

The entry point is ``thermal_visible_fusion.train`` (``tvf train``).  Nothing here is
needed at inference time.
"""
