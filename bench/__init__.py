"""Peer comparisons: manifesto against docker manifest, curl and buildah, measured in one run.

Every benchmark times manifesto and its peer in the same run, interleaved (A B, B A, ...), and
judges the ratio of the medians, never an absolute time, except where the issue sets an
absolute budget (`--version` wall time, peak RSS of a blob push). Entry point: bench/run.py.
"""
