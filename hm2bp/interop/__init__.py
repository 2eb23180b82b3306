"""A trained network in other tools' terms: the Neuromorphic Intermediate Representation (`hm2bp.interop.nir`,
`to_nir` / `from_nir`, docs/nir.md).

This room sits above `hm2bp.train` (it reads checkpoints) and below the command line; `nir` is an optional
dependency (`pip install 'spikedata-hm2bp[nir]'`), imported only when a graph is made or read.
"""
