"""The `numba` kernel set (`set.NumbaKernels`) and its CPU kernels, one module per concept: `csr` (spike lists),
`lif` (input current, LIF scan), `spsp` (S-PSP read-out), `gradient` (weight gradient, effect sums, gradient finish,
the small per-sample rules in numpy), `conv` (conv currents, gradients, effect sums), `optim` (fused Adam / SGD),
`memory` (allocator tuning), `tuning` (chunk size, threads)."""
