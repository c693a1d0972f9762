"""pifs: the shared code of pifs-book, the executable companion to

A. Dooms (2026), *Fractals made Practical: Denoising Diffusion as Partitioned
Iterated Function Systems*, arXiv:2603.13069.

Sub-modules are imported on use (``import pifs.geometry``); importing ``pifs``
itself is cheap and does not import torch.
"""
__version__ = "0.1.0"
