"""The HM2-BP maths written once: pure torch functions of spikes, currents, counts and weights (any device).

* `lif`: the LIF forward of `docs/algorithm.md` §1 (input current, threshold, scan);
* `spsp`: the S-PSP read-out of §3.1 / §3.17;
* `gradient`: the output error, the silent label, the side effect, the lateral factor, the weight gradient, the
  back-propagated error and the regulariser of §3.2-§3.7;
* `conv`: the same for conv and pool layers (§1, §3.16).

This is the readable reference: every kernel set (`hm2bp.kernels`) computes the same spikes bit for bit and the same
gradients to float rounding, and the torch set is these functions bound to the kernel-set interface.
"""
