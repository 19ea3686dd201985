"""The strategies' core: the :class:`~strategies.core.base.Strategy` contract and its configs
(:mod:`~strategies.core.base`), names to classes (:mod:`~strategies.core.registry`), stacks
(:mod:`~strategies.core.stack`), and what several strategies share: the training loop and its
weight cache (:mod:`~strategies.core.training`), data augmentation
(:mod:`~strategies.core.augment`) and the decoding-loop base (:mod:`~strategies.core.decoding`).

Imports nothing itself, so that ``strategies.core.base`` stays free of torch.
"""
