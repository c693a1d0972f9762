"""Backward-compatible shim: the block-Jacobian measurements now live in :mod:`pifs.block_jacobian`.

Every name below is re-exported from :mod:`pifs.block_jacobian` (norms and block statistics of
§7.4–7.5: Tables 4–9) so that existing notebooks keep working; new code imports
:mod:`pifs.block_jacobian` directly.
"""
from .block_jacobian import *  # noqa: F401,F403
from .block_jacobian import __all__  # noqa: F401
