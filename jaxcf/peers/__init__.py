"""Peers: jaxcf's networks and searches re-implemented in other frameworks, for benchmarks.

* :mod:`jaxcf.peers.torch_export`: a jaxcf classifier (eval mode) and its feature density as
  plain PyTorch modules computing the same functions.
* :mod:`jaxcf.peers.torch_pixels`: DeDUCE and JSMA in PyTorch, run the way the published code
  runs them (a batch of queries sharing one target, iterated until its slowest query finishes).

Both need the optional ``torch`` extra (``pip install -e '.[torch]'``). Nothing here imports
torch until one of those modules is imported, so ``import jaxcf`` never does.
"""
