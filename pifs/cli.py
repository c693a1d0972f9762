"""Command line of the project's network: ``train``, ``sample``, ``finalize``.

``python -m pifs.cli`` (also reachable as ``python -m pifs.models``). It imports both
:mod:`pifs.models` and :mod:`pifs.training`, so that neither imports the other back.
"""
from __future__ import annotations

import torch

from .models import ddim_sample, ddim_timesteps, load_pretrained, save_image_grid



def _cmd_sample(args) -> None:
    torch.set_num_threads(args.threads)
    pre = load_pretrained(args.checkpoint)
    g = torch.Generator().manual_seed(args.seed)
    x_T = torch.randn((args.n, pre.unet.config.in_channels, pre.unet.config.sample_size,
                       pre.unet.config.sample_size), generator=g)
    ts = ddim_timesteps(args.steps, pre.alpha_bar.size - 1)
    x0 = ddim_sample(pre.model, x_T, pre.alpha_bar, ts, progress=True, clip_x0=args.clip_x0)
    save_image_grid(x0, args.out, scale=args.scale)
    print(f"wrote {args.out}: {args.n} samples, {args.steps}-step DDIM (η = 0{', x0 clipped' if args.clip_x0 else ''}), "
          f"seed {args.seed}, from {args.checkpoint}; {float((x0.abs() > 1).float().mean()):.1%} of values outside [-1, 1]")


def main(argv=None) -> None:
    """Command line: ``train``, ``sample``, ``finalize`` (see the module docstring)."""
    import argparse

    p = argparse.ArgumentParser(prog="python -m pifs.models", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    from pifs import training

    training.add_train_arguments(sub.add_parser("train", help="train the small UNet by denoising score matching"))
    s = sub.add_parser("sample", help="DDIM samples from a checkpoint as a PNG grid")
    s.add_argument("--checkpoint", required=True, help="folder, shipped name or hub name")
    s.add_argument("--n", type=int, default=16)
    s.add_argument("--steps", type=int, default=50)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--threads", type=int, default=1)
    s.add_argument("--out", default="samples.png")
    s.add_argument("--scale", type=int, default=3, help="nearest-neighbour up-scaling of the PNG")
    s.add_argument("--clip-x0", action="store_true", help="clamp x0-hat to [-1, 1] each step (diffusers' default)")
    training.add_finalize_arguments(sub.add_parser("finalize", help="export EMA weights, README, samples; drop state"))
    args = p.parse_args(argv)
    if args.cmd == "train":
        training.train_from_args(args)
    elif args.cmd == "sample":
        _cmd_sample(args)
    else:
        training.finalize_from_args(args)


if __name__ == "__main__":
    main()
