"""
Frame sources and generators.

Frame sources and generators: mp4 pairs and frame folders (``sources``), the
synthetic demo scene (``synthetic``) and the seeded degradation of the long-stream
benchmark (``degradation``).  Nothing here is needed by the node on a robot.
"""
