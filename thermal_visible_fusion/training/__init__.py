"""
Training of the streaming fusion network.

The loop and the losses (``train``, run as ``tvf train``), real clips and still pairs
(``data``) and their degradations (``degrade``). Nothing here is needed at inference time.
"""
