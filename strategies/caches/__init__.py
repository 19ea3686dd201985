"""diffusers' own cache hooks on transformer denoisers, one module and registry name each.

* :mod:`~strategies.caches.first_block` (``fbcache``): FirstBlockCache;
* :mod:`~strategies.caches.taylorseer` (``taylorseer``): TaylorSeer;
* :mod:`~strategies.caches.pyramid_broadcast` (``pab``): Pyramid Attention Broadcast;
* :mod:`~strategies.caches.faster_cache` (``fastercache``): FasterCache;
* :mod:`~strategies.caches.magcache` (``magcache``): MagCache (ratios calibrated once per model);
* :mod:`~strategies.caches.seacache` (``seacache``): SeaCache (spectral indicator on image latents).

Each strategy builds the technique's diffusers config and calls ``denoiser.enable_cache(config)``
(:class:`diffusers.models.cache_utils.CacheMixin`); nothing of the techniques is reimplemented.
The denoising loop of the embedded pipelines wraps every denoiser call in
``denoiser.cache_context("cond_uncond")`` (guidance batched) as diffusers' pipelines do, and
``maybe_free_model_hooks()`` at the end of each call resets the hooks' state, so every
generation starts from an empty cache. Only the techniques this diffusers offers are
registered. What they share (the config handed to diffusers, putting the hooks on, the
checks of ``supports``) is :mod:`strategies.caches.common`.

Transformers without ``CacheMixin``: ``enable_cache`` only dispatches to diffusers' public
``apply_*`` hook functions, which work on any module, so a transformer denoiser that diffusers
0.42 leaves without the mixin (SD3's, PixArt's and Sana's) gets the same hooks through those
functions. Their pipelines also open no ``cache_context`` and have no ``current_timestep``, so
the strategy adds what they would: a hook on the denoiser (outside the cache hooks) that runs
every call in the ``"cond_uncond"`` context (guidance is batched there), records the call's
timestep for PAB's and FasterCache's timestep windows, and resets the hooks' state when a new
generation starts (the timestep goes up again: within a generation it only falls, or repeats
for Heun's second evaluation). The same hook opens the context for any call the pipeline
opened none for: FLUX.2 [dev]'s pipeline opens none although its transformer has the mixin,
and without a context the stateful hooks run fail-open (they never cache). UNets (no transformer block lists; use deepcache) and layouts a
technique cannot hook (FirstBlockCache needs blocks in diffusers' ``TransformerBlockRegistry``:
Sana's are not) are refused with the reason.

Which speedups depend on the activations (``depends_on_activations``): FirstBlockCache skips a
step when the first block's residual changed less than ``threshold``, so how many steps it
skips depends on the values the model computes, and a random-weight model's are not a real
model's. TaylorSeer, PAB and FasterCache follow fixed schedules (every ``interval``-th step,
timestep windows), so the work they save is the same for any weights (their error is not).
"""
