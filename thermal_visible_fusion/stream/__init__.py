"""
The input front end, ROS-free: everything between a camera message and a fusable pair.

Decoding (``image_codec``), thermal scaling (``thermal_normalizer``), stamp order and
pairing (``stamp_order``, ``pairing``), per-input statistics (``stats``), registration
and per-frame diagnostics; ``gate.InputGate`` puts the checks together for the node and
``tvf evaluate`` alike.
"""
