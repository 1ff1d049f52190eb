"""The revision of the training arithmetic, part of every cache key.

Raise it whenever a change makes the same recipe, data and seed train to different bits (an
optimizer rewritten, a reduction reordered), so a cache never serves models the current code
would not produce. 2: one fused Adam call per step over all models (StackedAdam), bias
gradients in the compute dtype, subnormals flushed to zero while training. 3: DP-SGD steps on
empty Poisson batches (noise alone) instead of skipping them, which changes a DP unit's bits
and its privacy record whenever a round drew no record.
"""

TRAINING_REVISION = 3
