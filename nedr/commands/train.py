"""Train NeDR: `supervised` (paired L1) or `paper` (the D4/NeDR unpaired scheme), resumable."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from nedr.errors import UserError

HELP = "train on synthetic, paired or unpaired data"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--preset", choices=("supervised", "paper"), default="supervised")
    data = parser.add_argument_group("data (default: synthetic haze on bundled photos and clips)")
    data.add_argument("--hazy", help="folder of hazy images")
    data.add_argument("--clean", help="folder of clean images")
    data.add_argument("--paired", action="store_true", help="hazy/clean files are pairs (matched by name, RESIDE names too)")
    data.add_argument("--bank", help="a sample bank .npz (nedr.model.samples.save_bank) instead of the bundled samples")
    data.add_argument("--sources", nargs="+", default=[], metavar="DIR",
                      help="extra folders of clean photos for synthetic haze (searched recursively; docs/training-data.md)")
    data.add_argument("--rooms", type=int, default=0, metavar="N",
                      help="add N rendered rooms (indoor scenes with true depth, textured from the sources; "
                           "nedr.model.rooms) to the synthetic-haze sources (default: 0)")
    data.add_argument("--convention", choices=("linear", "srgb"), default=None,
                      help="haze synthesis convention (default: both, drawn per crop)")
    data.add_argument("--channel-shuffle", type=float, default=0.0, metavar="P",
                      help="fraction of crops with their RGB channels permuted (training the prior gate: "
                           "remembered scenes then look new to the network)")
    data.add_argument("--segment-depth", type=float, default=0.0, metavar="P",
                      help="fraction of crops whose depth jumps along the image's own segments, as real depth "
                           "does at object outlines (nedr.model.synthesis.segment_depth; default: 0)")
    data.add_argument("--scale", type=float, nargs=2, default=(0.4, 1.0), metavar=("MIN", "MAX"),
                      help="random rescale range of a source before cropping (default: 0.4 1.0)")
    parser.add_argument("-o", "--output", default="nedr-train", help="run folder: log, train_state.pt, final weights")
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--crop", type=int, default=256)
    parser.add_argument("--lr", type=float, default=None, help="default: 2e-4 supervised, 1e-4 paper")
    parser.add_argument("--lr-milestones", type=int, nargs="*", default=[], help="steps where the lr halves")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--val-every", type=int, default=500)
    parser.add_argument("--ckpt-every", type=int, default=500)
    parser.add_argument("--average-every", type=int, default=0, metavar="N",
                        help="save the mean of the weights taken every N steps instead of the last step's "
                             "(stochastic weight averaging; default 0: the last step)")
    parser.add_argument("--time-limit", type=float, default=None, help="stop after this many seconds (state is saved)")
    parser.add_argument("--resume", action="store_true", help="continue from OUTPUT/train_state.pt")
    parser.add_argument("--init", help="start from these weights (fine-tuning)")
    parser.add_argument("--atmosphere", choices=("brightest", "dark_channel", "max"), default="dark_channel",
                        help="A estimate used in training (and saved as the weights' default)")
    parser.add_argument("--freeze-bn", action="store_true", help="keep BatchNorm statistics fixed (fine-tuning)")
    parser.add_argument("--loss-atmosphere", choices=("estimate", "true"), default="estimate",
                        help="A in the J loss: the inference estimate on the crop (default) or, for synthetic "
                             "haze, the A it was made with (t then learns the haze, not A's error)")
    parser.add_argument("--t-weight", type=float, default=0.1, help="weight of the L1 loss on t (synthetic haze)")
    parser.add_argument("--prior-gate", action="store_true",
                        help="add the prior gate (a learned mix of the network's t with the dark-channel prior's)")
    parser.add_argument("--train-only", choices=("prior_gate",), default=None,
                        help="train only this part, the rest of the network frozen (with --init)")
    parser.add_argument("--loss-guided", action="store_true",
                        help="J loss through the guided filter, as at inference (what the prior gate needs)")
    parser.add_argument("--arch", choices=("nedr", "nedr-s"), default="nedr",
                        help="layer sizes: nedr (public network) or nedr-s (light variant; --init from full weights "
                             "copies every layer whose shape matches)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--no-amp", action="store_true", help="disable bf16 autocast on CUDA")
    parser.set_defaults(handler=run)


def build_datasets(args: argparse.Namespace, crop: int, seed: int):
    """(train, validation) datasets for the chosen data source; validation may be None."""
    from nedr.model.datasets import FolderImages, PairedFolders, SyntheticHaze, UnpairedFolders
    from nedr.model.evaluation import pair_images
    from nedr.model.samples import folder_samples, heldout_samples, load_bank, training_samples

    if args.hazy or args.clean:
        if not (args.hazy and args.clean):
            raise UserError("--hazy and --clean go together")
        if args.paired:
            return PairedFolders(pair_images(args.hazy, args.clean), crop, seed, length=10**9), None
        if args.preset != "paper":
            raise UserError("unpaired folders need --preset paper (or pass --paired)")
        return UnpairedFolders(FolderImages(args.hazy, crop, seed, 10**9), FolderImages(args.clean, crop, seed + 1, 10**9)), None
    if args.bank:
        train = load_bank(args.bank) + folder_samples(args.sources)
    else:
        train = training_samples(args.sources)
    if args.rooms < 0:
        raise UserError(f"--rooms {args.rooms}: give a count >= 0")
    for flag, fraction in (("--channel-shuffle", args.channel_shuffle), ("--segment-depth", args.segment_depth)):
        if not 0.0 <= fraction <= 1.0:
            raise UserError(f"{flag} {fraction}: give a fraction in [0, 1]")
    if args.rooms:
        from nedr.model.rooms import room_samples

        print(f"rendering {args.rooms} rooms ...", flush=True)
        train = train + room_samples(args.rooms, [s.image for s in train], seed=seed, workers=args.workers)
    val = SyntheticHaze(heldout_samples(), 256, seed=777, scale=(1.0, 1.0)) if args.val_every > 0 else None
    return SyntheticHaze(train, crop, seed, scale=tuple(args.scale), convention=args.convention,
                         channel_shuffle=args.channel_shuffle, segment_depth=args.segment_depth), val


def run(args: argparse.Namespace) -> int:
    from nedr.model.network import ARCHITECTURES
    from nedr.model.training import TrainConfig, Trainer

    lr = args.lr or (2e-4 if args.preset == "supervised" else 1e-4)
    try:
        cfg = TrainConfig(preset=args.preset, steps=args.steps, batch=args.batch, crop=args.crop, lr=lr,
                          lr_milestones=args.lr_milestones, seed=args.seed, device=args.device,
                          amp=not args.no_amp, workers=args.workers, val_every=args.val_every,
                          ckpt_every=args.ckpt_every, average_every=args.average_every,
                          atmosphere=args.atmosphere, freeze_bn=args.freeze_bn,
                          loss_atmosphere=args.loss_atmosphere, t_weight=args.t_weight,
                          loss_guided=args.loss_guided, train_only=args.train_only,
                          architecture={**ARCHITECTURES[args.arch].to_config(), "prior_gate": args.prior_gate},
                          data={"hazy": args.hazy, "clean": args.clean, "paired": args.paired, "bank": args.bank,
                                "sources": args.sources, "rooms": args.rooms, "convention": args.convention or "both",
                                "scale": list(args.scale), "channel_shuffle": args.channel_shuffle,
                                "segment_depth": args.segment_depth})
    except ValueError as exc:
        raise UserError(str(exc)) from None
    train, val = build_datasets(args, cfg.crop, cfg.seed)
    trainer = Trainer(cfg, train, args.output, val, init=args.init)
    if trainer.init_transfer:
        t = trainer.init_transfer
        print(f"--init {args.init}: copied {t['copied']} of {t['total']} entries "
              f"({t['copied_parameters']:,} of {t['total_parameters']:,} parameters); the rest start fresh")
    if args.resume:
        if not trainer.state_path.is_file():
            raise UserError(f"{trainer.state_path}: nothing to resume")
        print(f"resuming at step {trainer.resume()}")
    result = trainer.fit(time_limit=args.time_limit)
    weights = trainer.export(Path(args.output) / "final.safetensors")
    print(json.dumps({"steps": result["step"], "seconds": round(result["seconds"], 1), **result["last"]}))
    print(f"weights: {weights}  (use: nedr dehaze --checkpoint {weights})")
    return 0
