"""The one place every named choice and every default of keras-itl is written down.

Every user option's declaration (``keras_itl.options``: flag, help, type) takes its default and its
choices from here, and so do the configuration dataclasses built from those declarations, ``TrainConfig``,
``select_drops`` and the influence engine: changing a default or adding an architecture is one edit in
this file. Methods and selection rankers are plug-ins with registries of their own. Pure Python (no
TensorFlow, no Keras): the CLI reads it while its options are declared, before anything heavy loads.
"""
from __future__ import annotations

from dataclasses import dataclass

# ----------------------------------------------------------------------------------------- choices
# Transfer methods and selection rankers are plug-ins, registered by name: keras_itl.methods and
# keras_itl.selection.rankers.


@dataclass(frozen=True)
class Architecture:
    """What the rest of keras-itl needs to know about one architecture (keras_itl.backbones builds it)."""

    name: str
    default_image_size: int
    min_image_size: int
    needs_rgb: bool
    supports_imagenet: bool


ARCHITECTURES: dict[str, Architecture] = {
    "small-cnn": Architecture("small-cnn", 28, 8, needs_rgb=False, supports_imagenet=False),
    "vgg16": Architecture("vgg16", 32, 32, needs_rgb=True, supports_imagenet=True),
    "resnet50": Architecture("resnet50", 32, 32, needs_rgb=True, supports_imagenet=True),
    "densenet121": Architecture("densenet121", 32, 32, needs_rgb=True, supports_imagenet=True),
}

OPTIMIZERS = ("adam", "sgd")
LR_SCHEDULES = ("cosine", "constant")
NOISE_KINDS = ("symmetric", "pair")  # symmetric: a uniformly random other class; pair: c -> c + 1 mod K
EVALUATION_SPLITS = ("test", "val", "train")

# Influence: parameter scopes (``top:K`` takes a number) and inverse-Hessian-vector solvers.
SCOPE_HELP = "head (the final Dense layer), top:K (the last K layers that have weights) or all"
SOLVERS = ("cg", "exact", "lissa")
HESSIANS = ("exact", "gauss-newton")  # the curvature solved with: the loss's Hessian, or the PSD Gauss-Newton matrix

# Selection policies are written with the registered rankers' kinds (keras_itl.selection.rankers).
AUTO_JUDGES = ("head", "full")  # how auto measures a candidate drop set: head-only refit, or full refit
INSTANCE_STARTS = ("source", "warmup")  # what the final refit of the instance method starts from
# The domain-adaptation methods (coral, mmd, dann) align the output of one of the model's top-level layers: the
# backbone's features (the head's input) or the head's class probabilities.
ALIGN_LAYERS = ("backbone", "head")

# ---------------------------------------------------------------------------------------- defaults
# The training budget of one run (TransferConfig, Preset, TrainConfig, `keras-itl train`).
ARCH = "small-cnn"
EPOCHS = 10
HEAD_EPOCHS = 2  # model-based: head-only epochs before fine-tuning
SOURCE_EPOCHS = 5  # pretraining when the source is a dataset
BATCH_SIZE = 32
LEARNING_RATE = 1e-3
FINE_TUNE_LR_FACTOR = None  # None: chosen on the validation data among FINE_TUNE_LR_FACTORS
# No one factor suits every source: a low one keeps an ImageNet backbone close to its features, a small CNN
# pretrained on another digit set must move (at 0.1 it left pair-flip digits at 20% error, at 1.0 16%).
FINE_TUNE_LR_FACTORS = (0.1, 1.0)
OPTIMIZER = "adam"
LR_SCHEDULE = "cosine"
PATIENCE = 5  # early stopping; None (the CLI's 0) disables it
SEED = 0
VAL_FRACTION = 0.1
LABEL_NOISE = 0.0
NOISE_KIND = "symmetric"

# The instance method (InstanceOptions, SolverOptions, select_drops, `keras-itl train/influence`).
POLICY = "auto"  # train --method instance
INSPECT_POLICY = "sign"  # keras-itl influence: auto needs refits, which only train runs
AUTO_JUDGE = "head"
AUTO_MARGIN = 0.05  # with AUTO_MIN_Z 0: auto keeps the fewest drops within this relative margin of the lowest loss
AUTO_MIN_Z = 2.0  # auto drops only on a paired win beyond this many standard errors (raised per set tested)
SCOPE = "head"
SOLVER = "cg"
# Gauss-Newton: positive semi-definite at any weights, so cg is valid on top:K and all, where the exact Hessian of
# a non-convex sub-network away from a minimum is indefinite (cg met curvature -2.2e6 on a ResNet50's last block at
# every damping 0.01-10); on a softmax Dense head it equals the exact Hessian.
HESSIAN = "gauss-newton"
DAMPING = 0.1  # ~3x the head Hessian's mean eigenvalue on digits-noisy; 0.01 let near-null directions rank
DAMPING_RETRIES = 3  # a failed solve is retried at 10x the damping rather than losing the warm-up
CG_MAX_ITERATIONS = 200
LISSA_SCALE = 10.0
LISSA_DEPTH = 1000
MAX_DROP_FRACTION = 0.5
MIN_CLASS_KEEP_FRACTION = 0.5
INSTANCE_START = "source"
INFLUENCE_BATCH_SIZE = 64  # gradient, Hessian-vector and scoring passes

# Target labels and the domain-adaptation methods (TargetOptions, TransferConfig, keras_itl.methods).
TARGET_LABELS = "all"  # all | none | N labelled training images per class
# The weights and the layer were chosen on mnist-5k -> 300 digits, seed 0, by the target validation loss of
# weights 0.1, 1 and 10 and of each layer (docs/results.md): stronger alignment cost more than it gave there,
# for DANN (0.080 at 0.1, 0.196 at 1, 0.472 at 10) and MMD (0.077, 0.082, 0.568); CORAL was best at 1
# (0.079, 0.076, 0.103); aligning the head's probabilities did worse than the backbone's features.
ALIGN_LAYER = "backbone"
CORAL_WEIGHT = 1.0
MMD_WEIGHT = 0.1
DANN_WEIGHT = 0.1
